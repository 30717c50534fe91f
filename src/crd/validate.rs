//! Checks the schema cannot express. Each problem names the field and what to do about it, because
//! the messages end up verbatim in the `Ready` condition a user reads with `kubectl describe`.

use super::{Endpoint, MCPRegistrationSpec};

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Whether `name` is an RFC 1123 label, as namespace (and many other) names must be: lowercase
/// letters, digits and '-', at most 63, starting and ending with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Every problem in `spec`; empty when it is valid.
pub fn validate_spec(spec: &MCPRegistrationSpec) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    if semver::Version::parse(spec.version.trim_start_matches('v')).is_err() {
        problems.push(FieldProblem {
            field: "spec.version",
            message: format!(
                "{:?} is not a semantic version; use MAJOR.MINOR.PATCH such as 1.0.0",
                spec.version
            ),
        });
    }
    if spec.capabilities.is_empty() {
        problems.push(FieldProblem {
            field: "spec.capabilities",
            message: "list at least one capability, e.g. [text_extraction]".into(),
        });
    }
    if let Some(policy) = &spec.gateway_policy {
        check_policy(policy, &mut problems);
    }
    check_endpoint(
        &spec.endpoint,
        spec.health_check.probe_type == super::ProbeType::None,
        &mut problems,
    );
    if let Some(compat) = &spec.compatibility {
        if let Err(err) = semver::VersionReq::parse(&compat.coordinator_version) {
            problems.push(FieldProblem {
                field: "spec.compatibility.coordinatorVersion",
                message: format!(
                    "{:?} is not a semver range ({err}); write e.g. \">=0.1, <2\"",
                    compat.coordinator_version
                ),
            });
        }
    }
    let hc = &spec.health_check;
    if hc.timeout_seconds > hc.interval_seconds {
        problems.push(FieldProblem {
            field: "spec.healthCheck.timeoutSeconds",
            message: format!(
                "timeout {}s is longer than the probe interval {}s; lower it or raise intervalSeconds",
                hc.timeout_seconds, hc.interval_seconds
            ),
        });
    }
    if let Some(call) = &hc.call {
        if hc.probe_type != super::ProbeType::Mcp {
            problems.push(FieldProblem {
                field: "spec.healthCheck.call",
                message: "a functional probe calls a tool over MCP: set healthCheck.type: mcp"
                    .into(),
            });
        }
        if call.arguments.as_ref().is_some_and(|a| !a.is_object()) {
            problems.push(FieldProblem {
                field: "spec.healthCheck.call.arguments",
                message: "the tool's arguments are a JSON object (name: value)".into(),
            });
        }
    }
    problems
}

fn check_endpoint(endpoint: &Endpoint, unprobed: bool, problems: &mut Vec<FieldProblem>) {
    match (&endpoint.service, &endpoint.url) {
        (Some(_), Some(_)) => problems.push(FieldProblem {
            field: "spec.endpoint",
            message: "set either service or url, not both".into(),
        }),
        (None, None) if unprobed => {}
        (None, None) => problems.push(FieldProblem {
            field: "spec.endpoint",
            message: "set service {name, port} or an absolute url (or, for an MCP without an address of its own such as a stdio server, healthCheck.type: none)".into(),
        }),
        (None, Some(url)) => match reqwest::Url::parse(url) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
            Ok(_) => problems.push(FieldProblem {
                field: "spec.endpoint.url",
                message: format!("{url:?} must be an absolute http:// or https:// URL with a host"),
            }),
            Err(err) => problems.push(FieldProblem {
                field: "spec.endpoint.url",
                message: format!("{url:?} is not a valid URL: {err}"),
            }),
        },
        (Some(service), None) => {
            if service.port == 0 {
                problems.push(FieldProblem {
                    field: "spec.endpoint.service.port",
                    message: "port must be between 1 and 65535".into(),
                });
            }
        }
    }
}

/// Rule names unique, each expression CEL that parses; rate-limit names unique.
fn check_policy(policy: &super::GatewayPolicy, problems: &mut Vec<FieldProblem>) {
    let mut seen = std::collections::BTreeSet::new();
    for rule in &policy.rules {
        if !seen.insert(rule.name.as_str()) {
            problems.push(FieldProblem {
                field: "spec.gatewayPolicy.rules",
                message: format!(
                    "two rules are named {:?}; give each its own name",
                    rule.name
                ),
            });
        }
        if let Err(e) = cel::Program::compile(&rule.expression) {
            problems.push(FieldProblem {
                field: "spec.gatewayPolicy.rules",
                message: format!("rule {:?} is not a CEL expression: {e}", rule.name),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for limit in &policy.rate_limits {
        if !seen.insert(limit.name.as_str()) {
            problems.push(FieldProblem {
                field: "spec.gatewayPolicy.rateLimits",
                message: format!("two rate limits are named {:?}", limit.name),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MCPRegistrationSpec;

    fn spec(yaml: &str) -> MCPRegistrationSpec {
        serde_saphyr::from_str(yaml).expect("test spec parses")
    }

    const GOOD: &str = "version: 1.0.0\ntype: workflow\ncapabilities: [ocr]\nendpoint: {url: 'http://ocr.example:8080'}\n";

    #[test]
    fn a_complete_spec_has_no_problems() {
        assert_eq!(validate_spec(&spec(GOOD)), vec![]);
    }

    #[test]
    fn a_gateway_policy_rule_that_is_not_cel_or_a_repeated_name_is_named() {
        let s = spec(&format!(
            "{GOOD}gatewayPolicy:\n  rules:\n    - {{name: ok, expression: 'tool.name != \"x\"'}}\n    - {{name: broken, expression: 'tool.name =='}}\n    - {{name: ok, expression: 'true'}}\n"
        ));
        let problems = validate_spec(&s);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .all(|p| p.field == "spec.gatewayPolicy.rules"));
        assert!(problems
            .iter()
            .any(|p| p.message.contains("\"broken\" is not a CEL expression")));
        assert!(problems
            .iter()
            .any(|p| p.message.contains("two rules are named \"ok\"")));
    }

    #[test]
    fn both_service_and_url_is_reported_on_the_endpoint() {
        let s = spec("version: 1.0.0\ntype: tool\ncapabilities: [x]\nendpoint: {url: 'http://a', service: {name: a, port: 80}}\n");
        let problems = validate_spec(&s);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.endpoint");
        assert!(problems[0].message.contains("not both"));
    }

    #[test]
    fn relative_url_and_bad_range_are_both_named() {
        let s = spec(
            "version: '1.0'\ntype: tool\ncapabilities: [x]\nendpoint: {url: 'ftp://a'}\ncompatibility: {coordinatorVersion: '>>1'}\n",
        );
        let fields: Vec<_> = validate_spec(&s).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.version",
                "spec.endpoint.url",
                "spec.compatibility.coordinatorVersion"
            ]
        );
    }

    #[test]
    fn timeout_longer_than_interval_is_refused() {
        let s = spec(&format!(
            "{GOOD}healthCheck: {{intervalSeconds: 2, timeoutSeconds: 5}}\n"
        ));
        let problems = validate_spec(&s);
        assert_eq!(problems[0].field, "spec.healthCheck.timeoutSeconds");
    }
}
