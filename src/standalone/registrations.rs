//! The standalone loop: registrations read from the manifest directory, each brought in line by
//! the registration step, and what they feed (the router, `routing-table.json`, the view served
//! at `GET /v1/registrations`).

use crate::controller::probe::ProbePolicy;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::manifests::{self, Manifest, Problem};
use super::ports::{FilePorts, Shared};
use super::registry::{write_private, Registry};
use crate::controller::metrics::Metrics;
use crate::controller::prober::Prober;
use crate::controller::register::{register, Step};
use crate::controller::routing::{board, Readings};
use crate::crd::MCPRegistration;
use crate::ingest::state::RegistrationsView;
use crate::routing::router::Router;
use crate::routing::table::{self, RoutingTable};
use crate::routing::weights::{Measured, Observed};
use crate::store::{InteractionStore, TimeRange};
use crate::trust::keys::KeyRing;

pub(super) struct Entry {
    pub(super) file: PathBuf,
    pub(super) registration: MCPRegistration,
}

/// The standalone loop's state: the registrations as read and reconciled, and what they feed.
pub(super) struct Registrations {
    pub(super) manifest_dir: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) registry: Registry,
    pub(super) prober: Arc<Prober>,
    pub(super) shared: Shared,
    pub(super) store: Arc<dyn InteractionStore>,
    pub(super) router: Arc<Router>,
    /// The MCPs the gateway may call.
    pub(super) directory: Arc<crate::gateway::Directory>,
    pub(super) fleet: Arc<crate::ingest::fleet::Fleet>,
    /// The gateway, when it runs (its ejections become the `GatewayEjected` condition).
    pub(super) gateway: Option<Arc<crate::gateway::Gateway>>,
    pub(super) view: Arc<RegistrationsView>,
    /// The controller's series, served on the ingest server's `/metrics`.
    pub(super) metrics: Arc<Metrics>,
    pub(super) routing_interval: Duration,
    pub(super) probe_policy: ProbePolicy,
    pub(super) routing_window: String,
    pub(super) entries: BTreeMap<String, Entry>,
    pub(super) invalid: Vec<Problem>,
    pub(super) fingerprint: Option<Vec<(PathBuf, Option<std::time::SystemTime>, u64)>>,
    pub(super) performance: HashMap<String, Observed>,
    pub(super) routing_due: tokio::time::Instant,
    pub(super) installed: Option<RoutingTable>,
    /// Registrations changed since the view was last rendered.
    pub(super) view_stale: bool,
    pub(super) view_rendered: Option<tokio::time::Instant>,
}

/// The view of registrations is rendered at most this often between ticks.
const VIEW_EVERY: Duration = Duration::from_millis(250);

impl Registrations {
    /// Reads the manifests again when the directory changed; new problems are logged once.
    pub(super) fn reload_if_changed(&mut self) {
        let now = manifests::fingerprint(&self.manifest_dir);
        if self.fingerprint.as_ref() == Some(&now) {
            return;
        }
        self.fingerprint = Some(now);
        let (found, problems) = manifests::load_dir(&self.manifest_dir);
        for p in problems.iter().filter(|p| !self.invalid.contains(p)) {
            tracing::warn!(problem = %p, "skipping an invalid registration");
        }
        self.invalid = problems;
        self.take_in(found, true);
    }

    /// Brings the entries in line with `found`: the whole directory (what is not in it is
    /// retired), or only the registrations it holds.
    pub(super) fn take_in(&mut self, found: Vec<Manifest>, whole_directory: bool) {
        let mut with = Retire {
            registry: &mut self.registry,
            prober: &self.prober,
            keys: &self.shared.keys,
            metrics: &self.metrics,
            audit: &self.store,
        };
        if whole_directory {
            apply(&mut self.entries, found, &mut with);
        } else {
            for manifest in found {
                apply_one(&mut self.entries, manifest, &mut with);
            }
        }
    }

    /// Every routing interval: each MCP's success rate and p95 over the window, with its peers',
    /// and its latest heartbeat.
    pub(super) async fn refresh_performance_if_due(&mut self) {
        if tokio::time::Instant::now() < self.routing_due {
            return;
        }
        self.routing_due = tokio::time::Instant::now() + self.routing_interval;
        let range = match TimeRange::parse(
            &self.routing_window,
            jiff::Timestamp::now().as_millisecond(),
        ) {
            Ok(range) => range,
            Err(e) => return tracing::warn!(error = %e, "bad routing window"),
        };
        let read = async {
            let rows = self.store.metrics(None, range).await?;
            let heartbeats = self.store.heartbeats().await?;
            let versions = self.store.reported_versions(range).await?;
            Ok::<_, crate::store::StoreError>((rows, heartbeats, versions))
        };
        match read.await {
            Ok((rows, heartbeats, versions)) => {
                let mut readings = Readings {
                    metrics: rows
                        .into_iter()
                        .map(|m| {
                            let measured = Measured::of(
                                m.completed,
                                m.failed,
                                &m.errors_by_code,
                                m.p95_processing_time,
                            );
                            (m.mcp_id, measured)
                        })
                        .collect(),
                    heartbeats,
                    versions: HashMap::new(),
                    ejections: self
                        .gateway
                        .as_ref()
                        .map(|g| {
                            g.ejections()
                                .into_iter()
                                .map(|(id, until, n)| (id, (until, n)))
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                for v in versions {
                    readings
                        .versions
                        .entry(v.mcp_id)
                        .or_default()
                        .insert(v.version, v.interactions);
                }
                let regs: Vec<Arc<MCPRegistration>> = self
                    .entries
                    .values()
                    .map(|e| Arc::new(e.registration.clone()))
                    .collect();
                self.performance = board(&regs, &readings);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read performance; keeping the last known"),
        }
    }

    /// The registration step for each registration, over the data directory's ports.
    pub(super) async fn reconcile_all(&mut self) {
        let keys: Vec<String> = self.entries.keys().cloned().collect();
        self.reconcile(keys).await;
    }

    /// The registration step for the registrations of `keys`.
    pub(super) async fn reconcile(&mut self, keys: impl IntoIterator<Item = String>) {
        let step = Step {
            prober: &self.prober,
            reporting: &self.shared.reporting,
            metrics: &self.metrics,
            probes: &self.probe_policy,
        };
        let mut ports = FilePorts {
            registry: &mut self.registry,
            shared: &self.shared,
            performance: &self.performance,
        };
        for key in keys {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            self.metrics.reconciles.inc();
            match register(&entry.registration, &step, &mut ports).await {
                Ok(done) if done.written => entry.registration.status = Some(done.status),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(registration = %key, error = %e, "reconcile failed; retrying")
                }
            }
        }
    }

    /// The routing table (to the router and `routing-table.json`, when it changed) and the view.
    pub(super) fn publish(&mut self) {
        self.publish_routes();
        self.publish_view();
    }

    /// When the view is to be rendered again: never while it is current, and at most every
    /// [`VIEW_EVERY`] while self-registrations keep changing it (rendering it is linear in the
    /// registrations: once per registration made registering quadratic).
    pub(super) fn view_due(&self) -> Option<tokio::time::Instant> {
        self.view_stale.then(|| match self.view_rendered {
            Some(at) => at + VIEW_EVERY,
            None => tokio::time::Instant::now(),
        })
    }

    /// What routes calls (the gateway's directory, the fleet, the routing table); the view is
    /// then stale.
    pub(super) fn publish_routes(&mut self) {
        self.view_stale = true;
        self.directory.install(crate::gateway::backends_of(
            self.entries.values().map(|e| &e.registration),
            |_| Default::default(),
        ));
        self.fleet
            .install(self.entries.values().map(|e| &e.registration));
        let tables = table::build(self.entries.values().map(|e| &e.registration));
        let merged = RoutingTable::merge(tables.values());
        if self.installed.as_ref() != Some(&merged) {
            self.router.install(&merged);
            if let Ok(text) = serde_json::to_vec_pretty(&merged) {
                if let Err(e) = write_private(&self.data_dir.join("routing-table.json"), &text) {
                    tracing::warn!(error = %e, "cannot write the routing table file");
                }
            }
            self.installed = Some(merged);
        }
    }

    pub(super) fn publish_view(&mut self) {
        self.view_stale = false;
        self.view_rendered = Some(tokio::time::Instant::now());
        *self
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            render_view(&self.entries, &self.invalid, &self.performance);
    }
}

/// Who owns a registration: the file that declares it and the registrar token that made it (none
/// for the operator's own manifests). A key belongs to one owner.
fn owner(file: &std::path::Path, reg: &MCPRegistration) -> (PathBuf, Option<String>) {
    let registrar = reg
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::crd::REGISTERED_BY_ANNOTATION))
        .cloned();
    (file.to_path_buf(), registrar)
}

/// What [`apply_one`] needs besides the entries.
struct Retire<'a> {
    registry: &'a mut Registry,
    prober: &'a Prober,
    keys: &'a KeyRing,
    metrics: &'a Metrics,
    audit: &'a Arc<dyn InteractionStore>,
}

/// Brings one entry in line with its manifest: new, edited (a new generation), or taken over by
/// another owner (issue 34, attack 9: a registrar's `invoices` that the operator's
/// `invoices.yaml` now declares). A new owner gets a new key: the old one is revoked at once,
/// the key file rewritten, and the audit log records it.
fn apply_one(entries: &mut BTreeMap<String, Entry>, manifest: Manifest, with: &mut Retire<'_>) {
    let key = manifest.key();
    let Some(entry) = entries.get_mut(&key) else {
        let mut registration = manifest.registration;
        registration.metadata.generation = Some(1);
        tracing::info!(registration = %key, file = %manifest.file.display(), "registration found");
        entries.insert(
            key,
            Entry {
                file: manifest.file,
                registration,
            },
        );
        return;
    };
    let before = owner(&entry.file, &entry.registration);
    let after = owner(&manifest.file, &manifest.registration);
    let spec_changed = entry.registration.spec != manifest.registration.spec;
    let mut next = manifest.registration;
    let generation = entry.registration.metadata.generation.unwrap_or(1);
    next.metadata.generation = Some(if spec_changed {
        generation + 1
    } else {
        generation
    });
    next.status = entry.registration.status.take();
    if spec_changed {
        tracing::info!(registration = %key, file = %manifest.file.display(), "registration changed");
    }
    if before != after {
        reissue_key(&key, &mut next, before, after, with);
    }
    entry.registration = next;
    entry.file = manifest.file;
}

/// Revokes the key of a registration whose owner changed and issues another.
fn reissue_key(
    key: &str,
    reg: &mut MCPRegistration,
    before: (PathBuf, Option<String>),
    after: (PathBuf, Option<String>),
    with: &mut Retire<'_>,
) {
    let (namespace, name) = (reg.namespace().unwrap_or_default(), reg.name_any());
    let mcp_id = reg.status.as_ref().and_then(|s| s.mcp_id.clone());
    if let Some(id) = &mcp_id {
        with.keys.remove(id);
    }
    if let Err(e) = with.registry.rotate_key(&namespace, &name) {
        tracing::warn!(registration = %key, error = %e, "could not issue a new key after an owner change");
    }
    let describe = |(file, registrar): &(PathBuf, Option<String>)| match registrar {
        Some(r) => format!("registrar {r} ({})", file.display()),
        None => file.display().to_string(),
    };
    let (from, to) = (describe(&before), describe(&after));
    tracing::warn!(registration = %key, %from, %to, "the registration changed owner: its key is revoked and a new one issued");
    let entry = crate::store::AuditEntry {
        at_ms: jiff::Timestamp::now().as_millisecond(),
        who: to,
        role: format!("owner (was {from})"),
        mcp_id: mcp_id.unwrap_or_else(|| key.to_string()),
        query: "key_reissued".into(),
        since_ms: None,
        until_ms: None,
        rows: 0,
    };
    let audit = with.audit.clone();
    tokio::spawn(async move {
        if let Err(e) = audit.record_access(&entry).await {
            tracing::warn!(error = %e, "cannot record the key's reissue in the audit log");
        }
    });
}

/// Brings the entries in line with the manifests: new ones appear, edited ones get a new
/// generation, removed ones are retired (prober stopped, key revoked, files removed).
fn apply(entries: &mut BTreeMap<String, Entry>, found: Vec<Manifest>, with: &mut Retire<'_>) {
    let mut seen = std::collections::HashSet::with_capacity(found.len());
    for manifest in found {
        seen.insert(manifest.key());
        apply_one(entries, manifest, with);
    }
    let gone: Vec<String> = entries
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    for key in gone {
        let Some(entry) = entries.remove(&key) else {
            continue;
        };
        let reg = &entry.registration;
        let (namespace, name) = (reg.namespace().unwrap_or_default(), reg.name_any());
        let object = ObjectRef::from(reg);
        with.prober.remove(&object);
        let mcp_id = reg.status.as_ref().and_then(|s| s.mcp_id.as_deref());
        with.metrics.forget_registration(&object, mcp_id);
        if let Some(id) = mcp_id {
            with.keys.remove(id);
        }
        if let Err(e) = with.registry.retire(&namespace, &name) {
            tracing::warn!(registration = %key, error = %e, "could not retire the registration's ID");
        }
        let _ = std::fs::remove_file(with.registry.status_file(&namespace, &name));
        tracing::info!(registration = %key, "registration removed: retired its ID and revoked its key");
    }
}

pub(super) fn render_view(
    entries: &BTreeMap<String, Entry>,
    invalid: &[Problem],
    performance: &HashMap<String, Observed>,
) -> Value {
    let registrations: Vec<Value> = entries
        .values()
        .map(|e| {
            let reg = &e.registration;
            let status = reg.status.as_ref();
            let id = status.and_then(|s| s.mcp_id.clone());
            let observed = id.as_ref().and_then(|id| performance.get(id));
            json!({
                "namespace": reg.namespace(),
                "name": reg.name_any(),
                "file": e.file.display().to_string(),
                "generation": reg.metadata.generation,
                "mcp_id": id,
                "phase": status.map(|s| s.phase.as_str()),
                "effective_weight": status.and_then(|s| s.routing.as_ref()).map(|r| r.effective_weight),
                "protocol_version": status
                    .and_then(|s| s.server_info.as_ref())
                    .map(|i| i.protocol_version.as_str()),
                "success_rate": observed.and_then(|o| o.success_rate),
                "p95_processing_time": observed.and_then(|o| o.p95_processing_time),
                "last_heartbeat": observed
                    .and_then(|o| o.last_heartbeat_ms)
                    .map(crate::interaction::format_ms),
                "heartbeat_missing": status.is_some_and(|s| s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "HeartbeatMissing" && c.status == "True")),
                "status": status,
            })
        })
        .collect();
    json!({"registrations": registrations, "invalid": invalid})
}
