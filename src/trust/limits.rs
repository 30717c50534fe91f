//! Rate limits as token buckets, pure apart from the lock: a bucket per MCP, limit and key (the
//! caller, the tool, or both), `requests` deep, refilled at `requests / periodSeconds`. Buckets are
//! per gateway replica. The map is bounded: past [`MAX_BUCKETS`], buckets idle long enough to be
//! full again (which is what a missing bucket means) are dropped first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::crd::{RateLimit, RateLimitKey};

/// Buckets kept at once.
pub const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// How long this bucket takes to fill from empty.
    period: Duration,
}

/// Every bucket of the gateway.
#[derive(Default)]
pub struct Buckets {
    buckets: Mutex<HashMap<(String, String, String), Bucket>>,
}

impl Buckets {
    /// Takes one call from each of `limits` (an MCP's) for `caller` on `tool` at `now`, or none of
    /// them: the limit that is out and how long until it has a call again.
    pub fn take(
        &self,
        mcp_id: &str,
        limits: &[RateLimit],
        caller: &str,
        tool: &str,
        now: Instant,
    ) -> Result<(), (String, Duration)> {
        if limits.is_empty() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < b.period);
        }
        let key = |limit: &RateLimit| {
            let subject = match limit.per {
                RateLimitKey::Caller => caller.to_string(),
                RateLimitKey::Tool => tool.to_string(),
                RateLimitKey::CallerAndTool => format!("{caller}\u{0}{tool}"),
            };
            (mcp_id.to_string(), limit.name.clone(), subject)
        };
        // First see that every limit has a call, then take them all.
        let mut refilled = Vec::with_capacity(limits.len());
        for limit in limits {
            // The schema keeps both at 1 or more; a zero must not divide by nothing.
            let capacity = f64::from(limit.requests.max(1));
            let period = Duration::from_secs(u64::from(limit.period_seconds.max(1)));
            let rate = capacity / period.as_secs_f64();
            let k = key(limit);
            let bucket = buckets.get(&k).copied().unwrap_or(Bucket {
                tokens: capacity,
                at: now,
                period,
            });
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            let tokens = (bucket.tokens + elapsed * rate).min(capacity);
            if tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - tokens) / rate);
                return Err((limit.name.clone(), wait));
            }
            refilled.push((k, tokens, period));
        }
        for (k, tokens, period) in refilled {
            buckets.insert(
                k,
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                    period,
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(name: &str, per: RateLimitKey, requests: u32, period_seconds: u32) -> RateLimit {
        RateLimit {
            name: name.into(),
            per,
            requests,
            period_seconds,
        }
    }

    #[test]
    fn a_caller_over_its_rate_waits_and_others_do_not() {
        let buckets = Buckets::default();
        let limits = [limit("per-caller", RateLimitKey::Caller, 2, 10)];
        let t0 = Instant::now();
        assert!(buckets.take("m", &limits, "a", "t", t0).is_ok());
        assert!(buckets.take("m", &limits, "a", "t", t0).is_ok());
        let (name, wait) = buckets.take("m", &limits, "a", "t", t0).unwrap_err();
        assert_eq!(name, "per-caller");
        assert_eq!(
            wait,
            Duration::from_secs(5),
            "one call refills in period / requests"
        );
        // Another caller has its own bucket; the first gets a call back as the bucket refills.
        assert!(buckets.take("m", &limits, "b", "t", t0).is_ok());
        assert!(buckets
            .take("m", &limits, "a", "t", t0 + Duration::from_secs(5))
            .is_ok());
    }

    #[test]
    fn a_zero_limit_from_outside_the_schema_counts_as_one_and_does_not_panic() {
        let buckets = Buckets::default();
        let limits = [limit("zero", RateLimitKey::Caller, 0, 0)];
        let t0 = Instant::now();
        assert!(buckets.take("m", &limits, "a", "t", t0).is_ok());
        let (_, wait) = buckets.take("m", &limits, "a", "t", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn every_limit_must_have_a_call_and_none_is_spent_otherwise() {
        let buckets = Buckets::default();
        let limits = [
            limit("tool", RateLimitKey::Tool, 1, 60),
            limit("caller", RateLimitKey::Caller, 100, 60),
        ];
        let t0 = Instant::now();
        assert!(buckets.take("m", &limits, "a", "ocr", t0).is_ok());
        // The tool's bucket is empty: refused, and the caller's bucket is not charged for it.
        assert_eq!(
            buckets.take("m", &limits, "b", "ocr", t0).unwrap_err().0,
            "tool"
        );
        assert!(buckets.take("m", &limits, "a", "other", t0).is_ok());
        // Buckets are per MCP.
        assert!(buckets.take("n", &limits, "a", "ocr", t0).is_ok());
    }
}
