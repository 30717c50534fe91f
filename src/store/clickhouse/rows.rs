//! The rows that travel between the store and ClickHouse (plain RowBinary: the column lists here
//! and in `sql` are in the same order). The interaction's columns come from the field list.

use serde::{Deserialize, Serialize};

use super::super::metrics::{McpMetrics, Tally, TimeRange};
use super::super::AuditEntry;
use crate::interaction::{timeline, Fields, Interaction, InteractionEvent, ProgressNote};

macro_rules! define_rows {
    ($($name:ident: $ty:ty = $kind:ident @ $section:ident $key:literal | $low:literal;)*) => {
        /// One event, as `interaction_events` stores it, borrowed from the event (serialized
        /// as it is, without a copy of its texts).
        #[derive(Debug, clickhouse::Row, Serialize)]
        pub(super) struct EventRow<'a> {
            event_id: &'a str,
            mcp_id: &'a str,
            interaction_id: &'a str,
            kind: &'a str,
            received_ms: i64,
            /// Days since the epoch (ClickHouse `Date`), the partition key.
            event_date: u16,
            $($name: Option<&'a $ty>,)*
        }

        impl<'a> EventRow<'a> {
            pub(super) fn of(e: &'a InteractionEvent) -> Self {
                let f = &e.fields;
                EventRow {
                    event_id: &e.event_id,
                    mcp_id: &e.mcp_id,
                    interaction_id: &e.interaction_id,
                    kind: e.kind.as_str(),
                    received_ms: e.received_ms,
                    event_date: days_since_epoch(e.received_ms),
                    $($name: f.$name.as_ref(),)*
                }
            }
        }

        /// One interaction, its events merged by `merged_sql`.
        #[derive(Debug, clickhouse::Row, Deserialize)]
        pub(super) struct MergedRow {
            mcp_id: String,
            interaction_id: String,
            first_received_ms: i64,
            last_received_ms: i64,
            $($name: Option<$ty>,)*
            timeline: Vec<Note>,
        }

        impl From<MergedRow> for Interaction {
            fn from(r: MergedRow) -> Self {
                Interaction {
                    interaction_id: r.interaction_id,
                    mcp_id: r.mcp_id,
                    first_received_ms: r.first_received_ms,
                    last_received_ms: r.last_received_ms,
                    fields: Fields { $($name: r.$name,)* }.normalize(),
                    timeline: notes(r.timeline),
                }
            }
        }
    };
}
crate::interaction::interaction_fields!(define_rows);

/// One progress note as the timeline query gives it: (received_ms, progress, message, event_id,
/// details).
type Note = (i64, Option<f64>, Option<String>, String, Option<String>);

/// The timeline from its rows, oldest first: each event once (the first time it was received).
fn notes(rows: Vec<Note>) -> Vec<ProgressNote> {
    let mut seen = std::collections::HashSet::new();
    let kept = rows
        .into_iter()
        .filter(|(_, _, _, event_id, _)| seen.insert(event_id.clone()))
        .map(|(at_ms, progress, message, _, details)| ProgressNote {
            at_ms,
            progress,
            message,
            details,
        })
        .collect();
    timeline(kept)
}

/// ClickHouse `Date`: days since the epoch.
pub(super) fn days_since_epoch(ms: i64) -> u16 {
    ms.div_euclid(86_400_000).clamp(0, i64::from(u16::MAX)) as u16
}

/// One read, as `audit_log` keeps it.
#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
pub(super) struct AuditRow {
    at_ms: i64,
    /// The partition key.
    at_date: u16,
    who: String,
    role: String,
    mcp_id: String,
    query: String,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    rows: u64,
}

impl AuditRow {
    pub(super) fn of(e: &AuditEntry) -> Self {
        Self {
            at_ms: e.at_ms,
            at_date: days_since_epoch(e.at_ms),
            who: e.who.clone(),
            role: e.role.clone(),
            mcp_id: e.mcp_id.clone(),
            query: e.query.clone(),
            since_ms: e.since_ms,
            until_ms: e.until_ms,
            rows: e.rows,
        }
    }
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            at_ms: r.at_ms,
            who: r.who,
            role: r.role,
            mcp_id: r.mcp_id,
            query: r.query,
            since_ms: r.since_ms,
            until_ms: r.until_ms,
            rows: r.rows,
        }
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
pub(super) struct MetricsRow {
    mcp_id: String,
    count: u64,
    completed: u64,
    failed: u64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    error_codes: Vec<String>,
    mean_quality_score: f64,
    mean_confidence: f64,
    mean_cpu_usage: f64,
    mean_memory_usage: f64,
    mean_gpu_usage: f64,
}

impl MetricsRow {
    pub(super) fn into_metrics(self, range: TimeRange) -> McpMetrics {
        // avg over no rows is NaN in ClickHouse; the API says null.
        let finite = |v: f64| v.is_finite().then_some(v);
        let mut errors_by_code = std::collections::BTreeMap::new();
        for code in self.error_codes {
            *errors_by_code.entry(code).or_insert(0) += 1;
        }
        Tally {
            count: self.count,
            completed: self.completed,
            failed: self.failed,
            errors_by_code,
            p50: self.p50,
            p95: self.p95,
            p99: self.p99,
            mean_quality_score: finite(self.mean_quality_score),
            mean_confidence: finite(self.mean_confidence),
            mean_cpu_usage: finite(self.mean_cpu_usage),
            mean_memory_usage: finite(self.mean_memory_usage),
            mean_gpu_usage: finite(self.mean_gpu_usage),
        }
        .into_metrics(self.mcp_id, range)
    }
}

/// Partial aggregates of one MCP, group, time bucket and error code (see `rollup.rs`).
#[derive(Debug, clickhouse::Row, Deserialize)]
pub(super) struct RollupRow {
    pub mcp_id: String,
    pub error_code: String,
    /// The value of the dimension cut by ('' without one, or where interactions did not say).
    pub group: String,
    /// The time bucket (0 without a step).
    pub bucket: i64,
    pub interactions: u64,
    pub completed: u64,
    pub failed: u64,
    /// Processing-time buckets and their counts.
    pub histogram: (Vec<i16>, Vec<u64>),
    quality_score_sum: f64,
    quality_score_n: u64,
    confidence_sum: f64,
    confidence_n: u64,
    cpu_usage_sum: f64,
    cpu_usage_n: u64,
    memory_usage_sum: f64,
    memory_usage_n: u64,
    gpu_usage_sum: f64,
    gpu_usage_n: u64,
}

impl RollupRow {
    /// Sum and count of quality score, confidence, CPU, memory and GPU usage, in that order.
    pub fn means(&self) -> [(f64, u64); 5] {
        [
            (self.quality_score_sum, self.quality_score_n),
            (self.confidence_sum, self.confidence_n),
            (self.cpu_usage_sum, self.cpu_usage_n),
            (self.memory_usage_sum, self.memory_usage_n),
            (self.gpu_usage_sum, self.gpu_usage_n),
        ]
    }
}

/// How many interactions of an MCP reported a version.
#[derive(Debug, clickhouse::Row, Deserialize)]
pub(super) struct VersionRow {
    pub mcp_id: String,
    pub version: String,
    pub interactions: u64,
}

/// One heartbeat: written as it came, read back as each MCP's latest.
#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
pub(super) struct HeartbeatRow {
    pub mcp_id: String,
    pub at_ms: i64,
}
