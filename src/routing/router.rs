//! The route decision: which MCP serves the next request for a capability.
//!
//! - **Tiers.** Candidates are grouped by priority (0 first). A tier is used when it has a
//!   routable member (weight > 0) with free capacity (interactions in flight below
//!   `maxConcurrentRequests`); otherwise the next tier takes the request (failover).
//! - **Inside a tier: best of a few random choices.** Three members (`choices`) are drawn at
//!   random in proportion to their weights; the one with the lowest cost wins, where
//!   `cost = latency × (in flight + 1) / (p(success) × weight / mean weight of the tier)`,
//!   so between equals an MCP with twice the weight takes requests until it has about twice
//!   as many in flight.
//!   - `latency` is a peak-EWMA of reported processing times: a slow response takes effect at once,
//!     fast ones pull it down over ~`latency_decay` seconds. Without reports for a while it drifts
//!     back toward the tier's typical latency, so an MCP that was slow gets tried again.
//!   - `p(success)` is a Thompson sample from Beta(1 + successes, 1 + failures), with outcomes
//!     discounted over ~`outcome_decay` seconds: MCPs that fail lose traffic, and an uncertain
//!     MCP is still explored now and then.
//!   - When the request names a `request_type` and an MCP has enough recent reports of that type,
//!     that type's statistics are used; otherwise the MCP's overall ones.
//! - **Fallbacks.** The other routable members with free capacity, the chosen tier first (by
//!   expected cost), then the later tiers.
//!
//! Everything is learned from the interactions the MCPs report (start, complete, error), so a
//! decision needs no I/O. The table sits behind an `ArcSwap` and each MCP's statistics behind
//! its own lock, so concurrent decisions never wait on one another except on the same MCP.
//! Time is a parameter (seconds on any monotonic clock), which lets the simulation run it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rand::Rng;
use serde::Serialize;

use super::learned::McpStats;
pub use super::learned::{Outcome, RouterConfig};
use super::table::{Candidate, RoutingTable};

#[derive(Debug)]
pub(super) struct Member {
    pub(super) candidate: Candidate,
    pub(super) stats: Arc<McpStats>,
}

impl Member {
    pub(super) fn has_capacity(&self) -> bool {
        self.stats.in_flight.load(Ordering::Relaxed) < self.candidate.max_concurrent_requests
    }
}

#[derive(Debug)]
pub(super) struct Tier {
    pub(super) priority: u32,
    /// Routable members only (weight > 0).
    pub(super) members: Vec<Member>,
}

#[derive(Debug, Default)]
struct Snapshot {
    tiers: HashMap<String, Vec<Tier>>,
    known: HashMap<String, Vec<String>>,
    by_id: HashMap<String, Arc<McpStats>>,
    /// Each MCP as the table lists it (the same under every capability it offers).
    candidates: HashMap<String, Candidate>,
}

/// One answer of the route endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub capability: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_type: Option<String>,
    pub mcp_id: String,
    pub endpoint: String,
    pub process_path: String,
    pub priority: u32,
    /// True when a better tier had no routable capacity.
    pub failed_over: bool,
    pub fallbacks: Vec<Fallback>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fallback {
    pub mcp_id: String,
    pub endpoint: String,
    pub process_path: String,
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no MCP offers capability {0:?}; check spec.capabilities of your MCPRegistrations")]
    UnknownCapability(String),
    #[error("no MCP offering {capability:?} is Ready ({known} registered); see their status.routing.reason")]
    NoneRoutable { capability: String, known: usize },
    #[error("every Ready MCP offering {capability:?} is at maxConcurrentRequests; retry shortly")]
    Saturated { capability: String },
}

pub struct Router {
    snapshot: ArcSwap<Snapshot>,
    /// Statistics by MCP ID, kept across table updates.
    registry: Mutex<HashMap<String, Arc<McpStats>>>,
    pub(super) config: RouterConfig,
    epoch: std::time::Instant,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("capabilities", &self.snapshot.load().tiers.len())
            .field("config", &self.config)
            .finish()
    }
}

impl Default for Router {
    fn default() -> Self {
        Self::new(RouterConfig::default())
    }
}

impl Router {
    pub fn new(config: RouterConfig) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            registry: Mutex::default(),
            config,
            epoch: std::time::Instant::now(),
        }
    }

    /// Seconds since this router was created: the clock for live use.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Replaces the candidates; what was learned about MCPs that stay is kept.
    pub fn install(&self, table: &RoutingTable) {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut snapshot = Snapshot::default();
        for (capability, candidates) in &table.capabilities {
            let mut tiers: Vec<Tier> = Vec::new();
            for candidate in candidates {
                let stats = registry
                    .entry(candidate.mcp_id.clone())
                    .or_default()
                    .clone();
                snapshot
                    .by_id
                    .insert(candidate.mcp_id.clone(), stats.clone());
                snapshot
                    .candidates
                    .insert(candidate.mcp_id.clone(), candidate.clone());
                snapshot
                    .known
                    .entry(capability.clone())
                    .or_default()
                    .push(candidate.mcp_id.clone());
                if candidate.weight == 0 {
                    continue;
                }
                let member = Member {
                    candidate: candidate.clone(),
                    stats,
                };
                match tiers.iter_mut().find(|t| t.priority == candidate.priority) {
                    Some(tier) => tier.members.push(member),
                    None => tiers.push(Tier {
                        priority: candidate.priority,
                        members: vec![member],
                    }),
                }
            }
            tiers.sort_by_key(|t| t.priority);
            snapshot.tiers.insert(capability.clone(), tiers);
        }
        registry.retain(|id, _| snapshot.by_id.contains_key(id));
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Interactions in flight on `mcp_id`, as reported.
    pub fn in_flight(&self, mcp_id: &str) -> u32 {
        self.snapshot
            .load()
            .by_id
            .get(mcp_id)
            .map_or(0, |s| s.in_flight.load(Ordering::Relaxed))
    }

    /// An MCP reported that it started an interaction.
    pub fn started(
        &self,
        mcp_id: &str,
        interaction_id: &str,
        request_type: Option<&str>,
        now: f64,
    ) {
        if let Some(stats) = self.snapshot.load().by_id.get(mcp_id) {
            if stats.start(interaction_id, request_type, now, &self.config) {
                tracing::warn!(
                    mcp_id,
                    tracked = self.config.max_tracked_starts,
                    expiry_seconds = self.config.in_flight_expiry,
                    "this MCP has this many interactions started and not ended; later starts count as in flight only once some of these end or expire"
                );
            }
        }
    }

    /// An MCP reported how an interaction ended. Without a reported processing time, the time
    /// since its start report is used.
    pub fn finished(
        &self,
        mcp_id: &str,
        interaction_id: &str,
        request_type: Option<&str>,
        outcome: Outcome,
        now: f64,
    ) {
        if let Some(stats) = self.snapshot.load().by_id.get(mcp_id) {
            stats.finish(interaction_id, request_type, outcome, now, &self.config);
        }
    }

    /// Forgets starts that never reported an end (the MCP crashed, or its report was lost).
    pub fn expire_in_flight(&self, now: f64) {
        let cutoff = now - self.config.in_flight_expiry;
        for stats in self.snapshot.load().by_id.values() {
            stats.expire_started_before(cutoff);
        }
    }

    /// Picks an MCP for `capability` with the thread's random generator.
    pub fn route(
        &self,
        capability: &str,
        request_type: Option<&str>,
        now: f64,
    ) -> Result<Route, RouteError> {
        self.route_with(capability, request_type, now, &mut rand::rng())
    }

    /// Picks an MCP for `capability`, drawing from `rng` (seeded in simulations).
    pub fn route_with<R: Rng + ?Sized>(
        &self,
        capability: &str,
        request_type: Option<&str>,
        now: f64,
        rng: &mut R,
    ) -> Result<Route, RouteError> {
        let snapshot = self.snapshot.load();
        let Some(tiers) = snapshot.tiers.get(capability) else {
            return Err(RouteError::UnknownCapability(capability.to_string()));
        };
        if tiers.is_empty() {
            return Err(RouteError::NoneRoutable {
                capability: capability.to_string(),
                known: snapshot.known.get(capability).map_or(0, Vec::len),
            });
        }
        self.pick(tiers, capability, request_type, now, rng)
    }

    /// Picks one of the MCPs `mcp_ids` (the gateway's candidates for one tool), as
    /// [`Router::route_with`] picks among a capability's: tiers, weights, learned latency and
    /// success, capacity. `label` names the set in answers and errors. MCPs the table does not
    /// know, or that are not routable, are left out.
    pub fn route_among<R: Rng + ?Sized>(
        &self,
        mcp_ids: &[&str],
        label: &str,
        request_type: Option<&str>,
        now: f64,
        rng: &mut R,
    ) -> Result<Route, RouteError> {
        let snapshot = self.snapshot.load();
        let mut tiers: Vec<Tier> = Vec::new();
        for id in mcp_ids {
            let (Some(candidate), Some(stats)) =
                (snapshot.candidates.get(*id), snapshot.by_id.get(*id))
            else {
                continue;
            };
            if candidate.weight == 0 {
                continue;
            }
            let member = Member {
                candidate: candidate.clone(),
                stats: stats.clone(),
            };
            match tiers.iter_mut().find(|t| t.priority == candidate.priority) {
                Some(tier) => tier.members.push(member),
                None => tiers.push(Tier {
                    priority: candidate.priority,
                    members: vec![member],
                }),
            }
        }
        if tiers.is_empty() {
            return Err(RouteError::NoneRoutable {
                capability: label.to_string(),
                known: mcp_ids.len(),
            });
        }
        tiers.sort_by_key(|t| t.priority);
        self.pick(&tiers, label, request_type, now, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn candidate(id: &str, priority: u32, weight: u32, max: u32) -> Candidate {
        Candidate {
            mcp_id: id.into(),
            name: id.into(),
            namespace: "default".into(),
            endpoint: format!("http://{id}"),
            process_path: "/process".into(),
            priority,
            weight,
            max_concurrent_requests: max,
        }
    }

    fn router(candidates: Vec<Candidate>) -> Router {
        let router = Router::default();
        router.install(&RoutingTable {
            capabilities: [("ocr".to_string(), candidates)].into(),
        });
        router
    }

    /// One tier of `(id, weight)` members, each taking `max` requests at once.
    fn one_tier(members: &[(&str, u32)], max: u32) -> Router {
        router(
            members
                .iter()
                .map(|(id, weight)| candidate(id, 0, *weight, max))
                .collect(),
        )
    }

    fn shares(router: &Router, now: f64, n: usize) -> HashMap<String, usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = HashMap::new();
        for _ in 0..n {
            let r = router
                .route_with("ocr", None, now, &mut rng)
                .expect("routes");
            *counts.entry(r.mcp_id).or_default() += 1;
        }
        counts
    }

    fn report(router: &Router, id: &str, n: usize, ok: bool, latency: f64, now: f64) {
        for i in 0..n {
            router.finished(
                id,
                &format!("{id}-{i}"),
                None,
                Outcome {
                    success: ok,
                    processing_time: Some(latency),
                },
                now,
            );
        }
    }

    #[test]
    fn the_better_tier_serves_until_it_is_saturated_then_the_next_one_does() {
        let r = router(vec![
            candidate("primary", 0, 100, 2),
            candidate("backup", 1, 100, 10),
        ]);
        let first = r.route("ocr", None, 0.0).expect("routes");
        assert_eq!(
            (first.mcp_id.as_str(), first.failed_over),
            ("primary", false)
        );
        assert_eq!(first.fallbacks[0].mcp_id, "backup");
        r.started("primary", "i1", None, 0.0);
        r.started("primary", "i2", None, 0.0);
        let over = r.route("ocr", None, 0.0).expect("routes");
        assert_eq!((over.mcp_id.as_str(), over.failed_over), ("backup", true));
        assert!(
            over.fallbacks.is_empty(),
            "the saturated primary is no fallback"
        );
        r.finished(
            "primary",
            "i1",
            None,
            Outcome {
                success: true,
                processing_time: None,
            },
            1.0,
        );
        assert_eq!(r.in_flight("primary"), 1);
        assert_eq!(r.route("ocr", None, 1.0).expect("routes").mcp_id, "primary");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let r = router(vec![
            candidate("down", 0, 0, 5),
            candidate("full", 1, 100, 1),
        ]);
        assert!(matches!(
            r.route("translate", None, 0.0),
            Err(RouteError::UnknownCapability(_))
        ));
        r.started("full", "i1", None, 0.0);
        assert_eq!(
            r.route("ocr", None, 0.0),
            Err(RouteError::Saturated {
                capability: "ocr".into()
            })
        );
        let none = router(vec![candidate("down", 0, 0, 5)]);
        assert_eq!(
            none.route("ocr", None, 0.0),
            Err(RouteError::NoneRoutable {
                capability: "ocr".into(),
                known: 1
            })
        );
    }

    #[test]
    fn slow_and_failing_mcps_lose_traffic_and_win_it_back_after_recovering() {
        let r = one_tier(&[("fast", 100), ("slow", 100), ("flaky", 100)], 100);
        report(&r, "fast", 20, true, 0.05, 0.0);
        report(&r, "slow", 20, true, 0.5, 0.0);
        report(&r, "flaky", 10, true, 0.05, 0.0);
        report(&r, "flaky", 10, false, 0.05, 0.0);
        let s = shares(&r, 0.0, 3000);
        assert!(s["fast"] > 1800, "{s:?}");
        assert!(s.get("slow").copied().unwrap_or(0) < s["fast"] / 4, "{s:?}");
        assert!(
            s.get("flaky").copied().unwrap_or(0) < s["fast"] / 2,
            "{s:?}"
        );
        // A minute without reports: both drift back toward typical and get traffic again.
        let later = shares(&r, 120.0, 3000);
        assert!(later.get("slow").copied().unwrap_or(0) > 300, "{later:?}");
        assert!(later.get("flaky").copied().unwrap_or(0) > 300, "{later:?}");
    }

    #[test]
    fn weights_set_the_share_between_equals() {
        let r = one_tier(&[("big", 400), ("a", 100), ("b", 100)], 1000);
        for id in ["big", "a", "b"] {
            report(&r, id, 5, true, 0.1, 0.0);
        }
        // Sixty requests in flight at any time, the oldest finishing as each new one starts.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut in_flight = std::collections::VecDeque::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for n in 0..6000 {
            let id = r
                .route_with("ocr", None, 0.0, &mut rng)
                .expect("routes")
                .mcp_id;
            r.started(&id, &n.to_string(), None, 0.0);
            *counts.entry(id.clone()).or_default() += 1;
            in_flight.push_back((id, n));
            if in_flight.len() > 60 {
                if let Some((id, n)) = in_flight.pop_front() {
                    let outcome = Outcome {
                        success: true,
                        processing_time: Some(0.1),
                    };
                    r.finished(&id, &n.to_string(), None, outcome, 0.0);
                }
            }
        }
        let share = |id: &str| counts[id] as f64 / 6000.0;
        assert!(
            (0.55..0.75).contains(&share("big")),
            "4/6 expected: {counts:?}"
        );
        assert!(
            (0.1..0.22).contains(&share("a")),
            "1/6 expected: {counts:?}"
        );
    }

    #[test]
    fn request_types_with_statistics_of_their_own_are_bounded_per_mcp() {
        let r = one_tier(&[("a", 100)], 100);
        let outcome = Outcome {
            success: true,
            processing_time: Some(0.1),
        };
        for n in 0..1000 {
            r.finished(
                "a",
                &n.to_string(),
                Some(&format!("type-{n}")),
                outcome,
                0.0,
            );
        }
        let snapshot = r.snapshot.load();
        let types = snapshot.by_id["a"].learned().by_type.len();
        assert_eq!(types, super::super::learned::MAX_REQUEST_TYPES);
    }

    #[test]
    fn request_type_statistics_apply_once_there_are_enough() {
        let r = router(vec![
            candidate("a", 0, 100, 100),
            candidate("b", 0, 100, 100),
        ]);
        let mut n = 0;
        let mut run = |id: &str, request_type: &str, latency: f64| {
            n += 1;
            let interaction = format!("i{n}");
            r.started(id, &interaction, Some(request_type), 0.0);
            let outcome = Outcome {
                success: true,
                processing_time: Some(latency),
            };
            r.finished(id, &interaction, None, outcome, 0.0);
        };
        for _ in 0..10 {
            run("a", "pdf", 1.0);
            run("a", "image", 0.05);
            run("b", "pdf", 0.05);
            run("b", "image", 1.0);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut count = |request_type: &str, id: &str| {
            (0..200)
                .filter(|_| {
                    r.route_with("ocr", Some(request_type), 0.0, &mut rng)
                        .expect("routes")
                        .mcp_id
                        == id
                })
                .count()
        };
        assert!(
            count("pdf", "b") > 180,
            "pdf requests go to the MCP fast at pdf"
        );
        assert!(
            count("image", "a") > 180,
            "image requests go to the MCP fast at images"
        );
    }

    #[test]
    fn starts_that_never_end_expire() {
        let r = router(vec![candidate("a", 0, 100, 1)]);
        r.started("a", "lost", None, 0.0);
        assert!(r.route("ocr", None, 1.0).is_err());
        r.expire_in_flight(1000.0);
        assert_eq!(r.in_flight("a"), 0);
        assert!(r.route("ocr", None, 1000.0).is_ok());
    }

    #[test]
    fn starts_past_the_limit_are_not_remembered_until_some_end() {
        let r = Router::new(RouterConfig {
            max_tracked_starts: 3,
            ..RouterConfig::default()
        });
        r.install(&RoutingTable {
            capabilities: [("ocr".to_string(), vec![candidate("a", 0, 100, 100)])].into(),
        });
        for id in ["s1", "s2", "s3", "s4", "s5"] {
            r.started("a", id, None, 0.0);
        }
        assert_eq!(r.in_flight("a"), 3, "only the first three starts are kept");
        let stats = r
            .snapshot
            .load()
            .by_id
            .get("a")
            .cloned()
            .expect("a is routed");
        assert_eq!(stats.started().len(), 3);
        let ended = Outcome {
            success: true,
            processing_time: None,
        };
        r.finished("a", "s5", None, ended, 1.0);
        assert_eq!(
            r.in_flight("a"),
            3,
            "an end of a start never kept changes nothing"
        );
        r.finished("a", "s1", None, ended, 1.0);
        assert_eq!(r.in_flight("a"), 2);
        r.started("a", "s6", None, 2.0);
        assert_eq!(r.in_flight("a"), 3, "an end makes room for the next start");
        r.started("a", "s2", None, 2.0);
        assert_eq!(r.in_flight("a"), 3, "a start reported again is still one");
    }

    #[test]
    fn learning_survives_a_table_update() {
        let r = router(vec![
            candidate("a", 0, 100, 100),
            candidate("b", 0, 100, 100),
        ]);
        r.started("a", "i1", None, 0.0);
        r.install(&RoutingTable {
            capabilities: [("ocr".to_string(), vec![candidate("a", 0, 50, 100)])].into(),
        });
        assert_eq!(r.in_flight("a"), 1);
    }
}
