//! Retention: each MCP's `privacy.retentionDays` (carried to the ingest server on its key Secret)
//! and a global default, enforced by a periodic job on whichever store is in use.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Upkeep;

const DAY_MS: i64 = 86_400_000;

/// Retention days by MCP ID, for MCPs that set their own.
#[derive(Default)]
pub struct RetentionDays(RwLock<BTreeMap<String, u32>>);

impl RetentionDays {
    pub fn set(&self, mcp_id: &str, days: u32) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(mcp_id.to_string(), days);
    }
    pub fn remove(&self, mcp_id: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(mcp_id);
    }
    pub fn snapshot(&self) -> BTreeMap<String, u32> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// One deletion: interactions older than `cutoff_ms` of `mcp_id` (or, when `None`, of every MCP
/// not listed in `except`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub mcp_id: Option<String>,
    pub except: Vec<String>,
    pub cutoff_ms: i64,
}

/// The deletions that enforce `default_days` and the per-MCP days at `now_ms`. An MCP whose days
/// equal the default needs nothing of its own; only MCPs that keep data longer than the default are
/// kept out of the default's deletion (so a store may drop whole days that hold none of theirs).
pub fn plan(now_ms: i64, default_days: u32, per_mcp: &BTreeMap<String, u32>) -> Vec<Expiry> {
    let cutoff = |days: u32| now_ms - i64::from(days) * DAY_MS;
    let mut out: Vec<Expiry> = per_mcp
        .iter()
        .filter(|(_, days)| **days != default_days)
        .map(|(id, days)| Expiry {
            mcp_id: Some(id.clone()),
            except: Vec::new(),
            cutoff_ms: cutoff(*days),
        })
        .collect();
    out.push(Expiry {
        mcp_id: None,
        except: per_mcp
            .iter()
            .filter(|(_, days)| **days > default_days)
            .map(|(id, _)| id.clone())
            .collect(),
        cutoff_ms: cutoff(default_days),
    });
    out
}

/// Runs the retention plan every `interval` until the task is dropped.
pub async fn run(
    store: Arc<dyn Upkeep>,
    days: Arc<RetentionDays>,
    default_days: u32,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let now = jiff::Timestamp::now().as_millisecond();
        for expiry in plan(now, default_days, &days.snapshot()) {
            match store.expire(&expiry).await {
                Ok(()) => tracing::debug!(?expiry, "retention applied"),
                Err(e) => {
                    tracing::warn!(error = %e, ?expiry, "retention run failed; retrying next interval")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_mcp_days_override_the_default() {
        let per = BTreeMap::from([
            ("long".to_string(), 90u32),
            ("same".to_string(), 30u32),
            ("short".to_string(), 7u32),
        ]);
        let p = plan(100 * DAY_MS, 30, &per);
        assert_eq!(
            p,
            vec![
                Expiry {
                    mcp_id: Some("long".into()),
                    except: vec![],
                    cutoff_ms: 10 * DAY_MS
                },
                Expiry {
                    mcp_id: Some("short".into()),
                    except: vec![],
                    cutoff_ms: 93 * DAY_MS
                },
                // Only an MCP that keeps data longer holds back the default's deletion.
                Expiry {
                    mcp_id: None,
                    except: vec!["long".into()],
                    cutoff_ms: 70 * DAY_MS
                },
            ]
        );
    }
}
