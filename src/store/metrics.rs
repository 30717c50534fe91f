//! Performance metrics over a time range, computed the same way for every store.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::interaction::{Interaction, InteractionStatus};

/// A query window `[since_ms, until_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub since_ms: i64,
    pub until_ms: i64,
}

impl TimeRange {
    /// `15m`, `1h`, `24h`, `7d` (or any `<n><s|m|h|d>`) ending at `now_ms`.
    pub fn parse(text: &str, now_ms: i64) -> Result<Self, String> {
        let err = || {
            format!("range {text:?} is not a duration such as 15m, 1h, 24h or 7d (or the seed's last_24h, last_7d)")
        };
        // The seed's data protocol names ranges `last_24h`, `last_7d`, ...
        let duration = text.strip_prefix("last_").unwrap_or(text);
        // The unit is the last character; the text comes from a URL, so it may be anything.
        let unit_at = duration.char_indices().last().map_or(0, |(i, _)| i);
        let (number, unit) = duration.split_at(unit_at);
        let n: i64 = number.parse().map_err(|_| err())?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        if n <= 0 || n > 366 * 86_400_000 / unit_ms {
            return Err(format!(
                "range {text:?} must be positive and at most a year"
            ));
        }
        Ok(Self {
            since_ms: now_ms - n * unit_ms,
            until_ms: now_ms,
        })
    }

    pub fn contains(&self, ms: i64) -> bool {
        (self.since_ms..self.until_ms).contains(&ms)
    }

    pub fn minutes(&self) -> f64 {
        ((self.until_ms - self.since_ms) as f64 / 60_000.0).max(1.0 / 60.0)
    }
}

/// What a metrics read can be broken down by: a field of the interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    RequestType,
    AdapterUsed,
    Region,
    Environment,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::RequestType,
        Dimension::AdapterUsed,
        Dimension::Region,
        Dimension::Environment,
    ];

    /// The field (and column) name, as `group_by=` takes it.
    pub fn field(self) -> &'static str {
        match self {
            Dimension::RequestType => "request_type",
            Dimension::AdapterUsed => "adapter_used",
            Dimension::Region => "region",
            Dimension::Environment => "environment",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|d| d.field() == text)
            .ok_or_else(|| {
                format!("group_by {text:?} is not one of request_type, adapter_used, region, environment")
            })
    }
}

/// How a metrics read is cut: by a dimension, into time buckets of `step_ms` from the window's
/// start, both, or neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breakdown {
    pub group_by: Option<Dimension>,
    pub step_ms: Option<i64>,
}

/// The most cells (groups × buckets × MCPs) one breakdown answers.
pub const MAX_CELLS: usize = 20_000;

/// One cell of a breakdown: an MCP, a value of the dimension (None where the interactions did not
/// say, or without `group_by`), and a time bucket (index from the window's start; 0 without a step).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsCell {
    pub mcp_id: String,
    pub group: Option<String>,
    pub bucket: i64,
    pub metrics: McpMetrics,
}

/// The window of bucket `bucket` of `range` cut in steps of `step_ms` (the last may be shorter).
pub fn bucket_range(range: TimeRange, step_ms: Option<i64>, bucket: i64) -> TimeRange {
    match step_ms {
        None => range,
        Some(step) => {
            let since_ms = range.since_ms.saturating_add(bucket.saturating_mul(step));
            TimeRange {
                since_ms,
                until_ms: since_ms.saturating_add(step).min(range.until_ms),
            }
        }
    }
}

/// What `GET /v1/mcps/{id}/metrics` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McpMetrics {
    pub mcp_id: String,
    pub count: u64,
    pub completed: u64,
    pub failed: u64,
    pub in_progress: u64,
    /// Of finished interactions; null when none finished.
    pub success_rate: Option<f64>,
    pub error_rate: Option<f64>,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Processing time in seconds (nearest-rank percentiles).
    pub p50_processing_time: Option<f64>,
    pub p95_processing_time: Option<f64>,
    pub p99_processing_time: Option<f64>,
    pub interactions_per_minute: f64,
    pub mean_quality_score: Option<f64>,
    pub mean_confidence: Option<f64>,
    pub mean_cpu_usage: Option<f64>,
    pub mean_memory_usage: Option<f64>,
    pub mean_gpu_usage: Option<f64>,
}

/// What a store counts for one MCP over a window; the rates follow from it the same way for every
/// store ([`Tally::into_metrics`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub count: u64,
    pub completed: u64,
    pub failed: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub mean_quality_score: Option<f64>,
    pub mean_confidence: Option<f64>,
    pub mean_cpu_usage: Option<f64>,
    pub mean_memory_usage: Option<f64>,
    pub mean_gpu_usage: Option<f64>,
}

impl Tally {
    pub fn into_metrics(self, mcp_id: String, range: TimeRange) -> McpMetrics {
        let finished = self.completed + self.failed;
        McpMetrics {
            mcp_id,
            count: self.count,
            completed: self.completed,
            failed: self.failed,
            in_progress: self.count.saturating_sub(finished),
            success_rate: (finished > 0).then(|| self.completed as f64 / finished as f64),
            error_rate: (finished > 0).then(|| self.failed as f64 / finished as f64),
            errors_by_code: top_codes(self.errors_by_code),
            p50_processing_time: self.p50,
            p95_processing_time: self.p95,
            p99_processing_time: self.p99,
            interactions_per_minute: self.count as f64 / range.minutes(),
            mean_quality_score: self.mean_quality_score,
            mean_confidence: self.mean_confidence,
            mean_cpu_usage: self.mean_cpu_usage,
            mean_memory_usage: self.mean_memory_usage,
            mean_gpu_usage: self.mean_gpu_usage,
        }
    }
}

/// Error codes one metrics answer names, at most; clients choose the codes, so the rest are
/// counted together.
pub const MAX_ERROR_CODES: usize = 20;

/// The [`MAX_ERROR_CODES`] most frequent codes; the others are summed into `CALLER_OTHER` (codes
/// that blame the caller, which routing does not hold against an MCP) and `OTHER`.
fn top_codes(codes: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    if codes.len() <= MAX_ERROR_CODES {
        return codes;
    }
    let mut ranked: Vec<(String, u64)> = codes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = ranked.split_off(MAX_ERROR_CODES);
    let mut kept: BTreeMap<String, u64> = ranked.into_iter().collect();
    for (code, n) in rest {
        let into = if code.starts_with("CALLER_") {
            "CALLER_OTHER"
        } else {
            "OTHER"
        };
        *kept.entry(into.to_string()).or_default() += n;
    }
    kept
}

/// Metrics of `interactions` (all of one MCP, already limited to `range`).
pub fn compute(mcp_id: &str, interactions: &[Interaction], range: TimeRange) -> McpMetrics {
    let mut tally = Tally::default();
    let mut times = Vec::new();
    for i in interactions {
        match i.status() {
            InteractionStatus::Completed => tally.completed += 1,
            InteractionStatus::Failed => {
                tally.failed += 1;
                let code = i
                    .fields
                    .error_code
                    .clone()
                    .unwrap_or_else(|| "unknown".into());
                *tally.errors_by_code.entry(code).or_insert(0) += 1;
            }
            InteractionStatus::InProgress => {}
        }
        if let Some(t) = i.fields.processing_time {
            times.push(t);
        }
    }
    times.sort_by(f64::total_cmp);
    tally.count = interactions.len() as u64;
    let mean = |get: fn(&Interaction) -> Option<f64>| {
        let values: Vec<f64> = interactions.iter().filter_map(get).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    tally.p50 = percentile(&times, 0.50);
    tally.p95 = percentile(&times, 0.95);
    tally.p99 = percentile(&times, 0.99);
    tally.mean_quality_score = mean(|i| i.fields.quality_score);
    tally.mean_confidence = mean(|i| i.fields.confidence);
    tally.mean_cpu_usage = mean(|i| i.fields.cpu_usage);
    tally.mean_memory_usage = mean(|i| i.fields.memory_usage);
    tally.mean_gpu_usage = mean(|i| i.fields.gpu_usage);
    tally.into_metrics(mcp_id.to_string(), range)
}

/// The 1-based nearest rank of the `p` percentile among `n` sorted values (`n` ≥ 1).
pub fn nearest_rank(n: usize, p: f64) -> usize {
    ((p * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[nearest_rank(sorted.len(), p) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_names_the_busiest_error_codes_and_counts_the_rest_by_whom_they_blame() {
        // Issue 34, attack 6: clients choose error codes; an answer lists at most 20.
        let mut codes: BTreeMap<String, u64> =
            (0..30).map(|i| (format!("E{i:02}"), 100 - i)).collect();
        codes.insert("CALLER_BAD_INPUT".into(), 1);
        let kept = top_codes(codes);
        assert_eq!(kept.len(), MAX_ERROR_CODES + 2);
        assert_eq!(kept["E00"], 100);
        assert!(!kept.contains_key("E25"));
        assert_eq!(kept["OTHER"], (20..30).map(|i| 100 - i).sum::<u64>());
        assert_eq!(kept["CALLER_OTHER"], 1);
    }

    #[test]
    fn ranges_that_are_not_ascii_are_refused_not_panicked_on() {
        for text in ["1é", "é", "15m\u{301}", "", "\u{1F600}"] {
            assert!(TimeRange::parse(text, 0).is_err(), "{text:?}");
        }
    }

    #[test]
    fn ranges_parse() {
        let r = TimeRange::parse("15m", 1_000_000_000).unwrap();
        assert_eq!(r.until_ms - r.since_ms, 900_000);
        assert_eq!(TimeRange::parse("7d", 0).unwrap().since_ms, -7 * 86_400_000);
        assert!(TimeRange::parse("1w", 0).is_err());
        assert!(TimeRange::parse("", 0).is_err());
        assert!(TimeRange::parse("-1h", 0).is_err());
        // The seed's names.
        assert_eq!(
            TimeRange::parse("last_24h", 0).unwrap().since_ms,
            -86_400_000
        );
        assert_eq!(
            TimeRange::parse("last_7d", 0).unwrap(),
            TimeRange::parse("7d", 0).unwrap()
        );
        assert!(TimeRange::parse("last_", 0).is_err());
        assert!(TimeRange::parse("last_week", 0).is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
