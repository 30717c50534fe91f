//! The decision inside a set of tiers: which tier, then the best of a few weighted random
//! choices by expected cost, then the fallbacks in order. Shared by the route endpoint (a
//! capability's tiers) and the gateway (the tiers of the MCPs offering one tool).

use std::sync::atomic::Ordering;

use rand::Rng;
use rand_distr::{Beta, Distribution};

use super::learned::{typical_latency, Learned};
use super::router::{Fallback, Member, Route, RouteError, Router, Tier};

impl Router {
    /// Picks from `tiers` (not empty, best priority first).
    pub(super) fn pick<R: Rng + ?Sized>(
        &self,
        tiers: &[Tier],
        capability: &str,
        request_type: Option<&str>,
        now: f64,
        rng: &mut R,
    ) -> Result<Route, RouteError> {
        let Some(chosen_tier) = tiers
            .iter()
            .position(|t| t.members.iter().any(Member::has_capacity))
        else {
            return Err(RouteError::Saturated {
                capability: capability.to_string(),
            });
        };
        let tier = &tiers[chosen_tier];
        let open: Vec<&Member> = tier.members.iter().filter(|m| m.has_capacity()).collect();
        let views: Vec<Learned> = open
            .iter()
            .map(|m| self.view(m, request_type, now))
            .collect();
        let typical = typical_latency(&views);
        let mean_weight = open
            .iter()
            .map(|m| f64::from(m.candidate.weight))
            .sum::<f64>()
            / open.len() as f64;
        let chosen = if open.len() == 1 {
            0
        } else {
            let mut best = (usize::MAX, f64::INFINITY);
            for i in draw_by_weight(&open, self.config.choices, rng) {
                let cost = self.cost(
                    open[i],
                    &views[i],
                    now,
                    typical,
                    mean_weight,
                    Some(&mut *rng),
                );
                if cost < best.1 {
                    best = (i, cost);
                }
            }
            best.0
        };
        let rest_costs: Vec<(usize, f64)> = (0..open.len())
            .filter(|i| *i != chosen)
            .map(|i| {
                (
                    i,
                    self.cost(
                        open[i],
                        &views[i],
                        now,
                        typical,
                        mean_weight,
                        None::<&mut R>,
                    ),
                )
            })
            .collect();
        let chosen = open[chosen];
        let mut rest = rest_costs;
        rest.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut fallbacks: Vec<Fallback> =
            rest.into_iter().map(|(i, _)| fallback(open[i])).collect();
        for later in &tiers[chosen_tier + 1..] {
            fallbacks.extend(
                later
                    .members
                    .iter()
                    .filter(|m| m.has_capacity())
                    .map(fallback),
            );
        }
        Ok(Route {
            capability: capability.to_string(),
            request_type: request_type.map(str::to_string),
            mcp_id: chosen.candidate.mcp_id.clone(),
            endpoint: chosen.candidate.endpoint.clone(),
            process_path: chosen.candidate.process_path.clone(),
            priority: tier.priority,
            failed_over: chosen_tier > 0,
            fallbacks,
        })
    }

    /// What is known about `m` for this request: its request type's statistics when there are
    /// enough, else its overall ones (read without a lock).
    fn view(&self, m: &Member, request_type: Option<&str>, now: f64) -> Learned {
        if let Some(t) = request_type {
            if m.stats.typed.load(Ordering::Relaxed) {
                if let Some(typed) = m.stats.learned().by_type.get(t) {
                    if typed.reports(now, &self.config) >= self.config.min_type_reports {
                        return *typed;
                    }
                }
            }
        }
        m.stats.published.load()
    }

    /// Expected cost of sending one more request to an MCP; with `rng`, success is a Thompson
    /// sample.
    fn cost<R: Rng + ?Sized>(
        &self,
        member: &Member,
        learned: &Learned,
        now: f64,
        typical: f64,
        mean_weight: f64,
        rng: Option<&mut R>,
    ) -> f64 {
        let latency = learned
            .latency(now, typical, &self.config)
            .unwrap_or(typical);
        let (successes, failures) = learned.outcomes(now, &self.config);
        let p_success = match rng.and_then(|r| {
            Beta::new(1.0 + successes, 1.0 + failures)
                .ok()
                .map(|b| b.sample(r))
        }) {
            Some(p) => p,
            None => (1.0 + successes) / (2.0 + successes + failures),
        };
        let in_flight = f64::from(member.stats.in_flight.load(Ordering::Relaxed));
        let weight = f64::from(member.candidate.weight) / mean_weight;
        latency.max(1e-6) * (in_flight + 1.0) / (p_success.max(1e-3) * weight)
    }
}

fn fallback(m: &Member) -> Fallback {
    Fallback {
        mcp_id: m.candidate.mcp_id.clone(),
        endpoint: m.candidate.endpoint.clone(),
        process_path: m.candidate.process_path.clone(),
        priority: m.candidate.priority,
    }
}

/// Up to `k` distinct member indexes, drawn one after another with probability proportional to
/// weight (all of them when `k` covers the tier).
fn draw_by_weight<R: Rng + ?Sized>(open: &[&Member], k: usize, rng: &mut R) -> Vec<usize> {
    if k >= open.len() {
        return (0..open.len()).collect();
    }
    let mut drawn = Vec::with_capacity(k);
    let mut remaining: u64 = open.iter().map(|m| u64::from(m.candidate.weight)).sum();
    while drawn.len() < k && remaining > 0 {
        let mut target = rng.random_range(0..remaining);
        for (i, m) in open.iter().enumerate() {
            if drawn.contains(&i) {
                continue;
            }
            let w = u64::from(m.candidate.weight);
            if target < w {
                drawn.push(i);
                remaining -= w;
                break;
            }
            target -= w;
        }
    }
    drawn
}
