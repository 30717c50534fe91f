//! Where probes may not go, and the HTTP client that keeps them from going there.

use std::net::IpAddr;

/// Whether a probe may not reach `ip` (unless allowed): link-local addresses, where cloud
/// metadata services answer (169.254.169.254) — for IPv4, IPv6 and IPv4 mapped into IPv6.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// The names every cluster gives its API server (the `kubernetes` Service in `default`).
const API_SERVER_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Where probes may not go. A probe is a request the coordinator makes to an address a
/// registration chose, from the coordinator's place in the network and, with probe headers, with
/// credentials: it must not reach cloud metadata services or the Kubernetes API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbePolicy {
    /// Let probes reach link-local addresses (`--allow-link-local-probes`).
    pub allow_link_local: bool,
    /// The API server's own addresses as (host, port); empty when probes there are allowed
    /// (`--allow-api-server-probes`) or there is no API server (standalone mode).
    pub api_server: Vec<(String, u16)>,
}

impl ProbePolicy {
    /// Also refuses the API server the controller talks to at `url`, the address the cluster
    /// gives pods for it (`KUBERNETES_SERVICE_HOST`/`_PORT`), and its well-known names.
    pub fn refusing_api_server(mut self, url: &str) -> Self {
        self.api_server.extend(host_port(url));
        if let (Ok(host), Ok(port)) = (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) {
            if let Ok(port) = port.parse() {
                self.api_server.push((normal_host(&host), port));
            }
        }
        for name in API_SERVER_NAMES {
            self.api_server.push((name.to_string(), 443));
        }
        self.api_server.sort();
        self.api_server.dedup();
        self
    }

    /// Why a probe target is refused, if it is.
    pub fn refusal(&self, url: &str) -> Option<String> {
        let parsed = reqwest::Url::parse(url).ok()?;
        if !self.allow_link_local && forbidden_host(&parsed) {
            return Some(format!(
                "{parsed} is a link-local address (where cloud metadata services answer); probes do not go there unless the coordinator runs with --allow-link-local-probes"
            ));
        }
        let target = host_port(url)?;
        let at_api_server = self
            .api_server
            .iter()
            .any(|(host, port)| *port == target.1 && same_host(host, &target.0));
        at_api_server.then(|| {
            format!(
                "{parsed} is the Kubernetes API server's own address; probes do not go there unless the controller runs with --allow-api-server-probes"
            )
        })
    }

    /// API server addresses refused whatever name leads to them: cluster addresses only, since
    /// a loopback address is shared by everything on the machine (and told apart by port above).
    fn refused_ips(&self) -> Vec<IpAddr> {
        self.api_server
            .iter()
            .filter_map(|(host, _)| host.parse::<IpAddr>().ok())
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .collect()
    }
}

/// Whether two host names (as in URLs) name the same host: equal up to a final dot, or both this
/// machine.
fn same_host(a: &str, b: &str) -> bool {
    let bare = |host: &str| host.strip_suffix('.').unwrap_or(host).to_string();
    let local =
        |host: &str| host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    bare(a) == bare(b) || (local(&bare(a)) && local(&bare(b)))
}

fn normal_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

fn host_port(url: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(url).ok()?;
    Some((normal_host(url.host_str()?), url.port_or_known_default()?))
}

fn forbidden_host(url: &reqwest::Url) -> bool {
    url.host_str()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|host| host.parse::<IpAddr>().ok())
        .is_some_and(forbidden)
}

/// Resolves names for probes, leaving out forbidden addresses: a name that resolves only to them
/// is refused.
struct GuardedResolver {
    refuse_link_local: bool,
    refused: Vec<IpAddr>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let refuse_link_local = self.refuse_link_local;
        let refused = self.refused.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<std::net::SocketAddr> = found
                .filter(|a| {
                    let link_local = refuse_link_local && forbidden(a.ip());
                    !(link_local || refused.contains(&a.ip()))
                })
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves only to link-local addresses or the Kubernetes API server; probes do not go there unless the coordinator runs with --allow-link-local-probes or --allow-api-server-probes"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client probes use: at most 3 redirects, and no way to an address `policy` refuses,
/// by name, by address or by redirect.
pub fn client(policy: &ProbePolicy) -> Result<reqwest::Client, reqwest::Error> {
    let redirect_policy = policy.clone();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 3 {
            attempt.error("more than 3 redirects")
        } else if let Some(refusal) = redirect_policy.refusal(attempt.url().as_str()) {
            attempt.error(format!("a redirect was refused: {refusal}"))
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!(
            "mcp-coordinator/",
            env!("CARGO_PKG_VERSION"),
            " health-probe"
        ))
        .redirect(redirects);
    let refused = policy.refused_ips();
    if !policy.allow_link_local || !refused.is_empty() {
        builder = builder.dns_resolver(std::sync::Arc::new(GuardedResolver {
            refuse_link_local: !policy.allow_link_local,
            refused,
        }));
    }
    builder.build()
}

#[cfg(test)]
mod link_local_tests {
    use super::*;

    #[test]
    fn link_local_and_metadata_addresses_are_refused_and_others_are_not() {
        let policy = ProbePolicy::default();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.0.1:8080/health",
            "http://[fe80::1]/health",
            "http://[::ffff:169.254.169.254]/",
        ] {
            assert!(policy.refusal(url).is_some(), "{url} was allowed");
        }
        for url in [
            "http://10.0.0.1/health",
            "http://127.0.0.1:9000/health",
            "http://ocr.team-a.svc:8080/health",
            "http://[2001:db8::1]/",
        ] {
            assert_eq!(policy.refusal(url), None, "{url} was refused");
        }
    }

    #[test]
    fn the_api_server_is_refused_by_address_and_by_its_names_but_its_neighbours_are_not() {
        let policy = ProbePolicy::default().refusing_api_server("https://10.96.0.1:443");
        for url in [
            "https://10.96.0.1/healthz",
            "https://kubernetes.default.svc/api",
            "https://KUBERNETES.default.svc.cluster.local./version",
            "https://kubernetes/",
        ] {
            let refusal = policy.refusal(url);
            assert!(
                refusal
                    .as_deref()
                    .is_some_and(|r| r.contains("--allow-api-server-probes")),
                "{url}: {refusal:?}"
            );
        }
        for url in [
            "http://10.96.0.2:443/",
            "http://kubernetes.team-a.svc:8080/health",
        ] {
            assert_eq!(policy.refusal(url), None, "{url} was refused");
        }
        // On one machine only the port tells the API server from an MCP next to it.
        let local = ProbePolicy::default().refusing_api_server("http://127.0.0.1:6443");
        assert!(local.refusal("http://127.0.0.1:6443/").is_some());
        assert!(local.refusal("http://localhost:6443/").is_some());
        assert_eq!(local.refusal("http://127.0.0.1:8080/health"), None);
        assert!(
            local.refused_ips().is_empty(),
            "loopback is never refused by address alone"
        );
        assert_eq!(
            policy.refused_ips(),
            vec!["10.96.0.1".parse::<IpAddr>().unwrap()]
        );
    }
}
