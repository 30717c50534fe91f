//! The groups of metrics answers, decided before any work and built without I/O. A series answer: every bucket of every group
//! is answered, and one answer holds at most [`MAX_ANSWER_POINTS`] points. With `group_by`, the
//! busiest groups that fit (at most [`MAX_GROUPS`]) get a series each and the rest fold into one
//! `other` series (counts and errors; percentiles cannot be merged and stay null), so a dimension
//! with thousands of values answers in the same size as one with ten.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::interaction::format_ms;
use crate::store::metrics::{bucket_range, Tally};
use crate::store::{McpMetrics, MetricsCell, TimeRange};

/// Points (groups × buckets) in one series answer, at most.
pub const MAX_ANSWER_POINTS: i64 = 20_000;
/// Groups answered one by one, at most; the rest are `other`.
pub const MAX_GROUPS: usize = 20;

/// How many groups of a series of `buckets` buckets are answered one by one (one more series is
/// kept for `other`).
pub fn groups_that_fit(buckets: i64) -> usize {
    (MAX_ANSWER_POINTS / buckets.max(1) - 1).clamp(1, MAX_GROUPS as i64) as usize
}

/// One series of an answer: a group's (`value`), or `other`'s with the number of groups it holds.
#[derive(Debug, Serialize)]
pub struct Series {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    pub points: Vec<Point>,
}

/// One bucket of a series.
#[derive(Debug, Serialize)]
pub struct Point {
    pub start: String,
    pub metrics: McpMetrics,
}

/// The series of `cells`: one per group when `grouped` (the busiest that fit, then `other`),
/// else one; each with all `buckets` buckets of `step_ms` from `range`. Typed, not JSON values:
/// an answer of 20,000 points is written straight to its bytes (as values it took 16 times its
/// size in memory).
pub fn build(
    mcp_id: &str,
    range: TimeRange,
    step_ms: i64,
    buckets: i64,
    grouped: bool,
    cells: Vec<MetricsCell>,
) -> Vec<Series> {
    let mut by_group: BTreeMap<Option<String>, BTreeMap<i64, McpMetrics>> = BTreeMap::new();
    for cell in cells {
        by_group
            .entry(cell.group)
            .or_default()
            .insert(cell.bucket, cell.metrics);
    }
    if by_group.is_empty() && !grouped {
        by_group.insert(None, BTreeMap::new());
    }
    let fit = groups_that_fit(buckets);
    let mut other: BTreeMap<i64, Tally> = BTreeMap::new();
    let mut folded = 0usize;
    if grouped && by_group.len() > fit {
        let mut ranked: Vec<(u64, Option<String>)> = by_group
            .iter()
            .map(|(group, points)| (points.values().map(|m| m.count).sum(), group.clone()))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, group) in ranked.into_iter().skip(fit) {
            let Some(points) = by_group.remove(&group) else {
                continue;
            };
            folded += 1;
            for (bucket, metrics) in points {
                fold(other.entry(bucket).or_default(), &metrics);
            }
        }
    }
    let filled = |points: &mut dyn FnMut(i64, TimeRange) -> McpMetrics| -> Vec<Point> {
        (0..buckets)
            .map(|b| {
                let window = bucket_range(range, Some(step_ms), b);
                Point {
                    start: format_ms(window.since_ms),
                    metrics: points(b, window),
                }
            })
            .collect()
    };
    let empty = |window| Tally::default().into_metrics(mcp_id.to_string(), window);
    let mut series: Vec<Series> = by_group
        .into_iter()
        .map(|(group, mut points)| Series {
            value: Some(group),
            other: None,
            groups: None,
            points: filled(&mut |b, window| points.remove(&b).unwrap_or_else(|| empty(window))),
        })
        .collect();
    if folded > 0 {
        series.push(Series {
            value: None,
            other: Some(true),
            groups: Some(folded),
            points: filled(&mut |b, window| {
                other
                    .remove(&b)
                    .unwrap_or_default()
                    .into_metrics(mcp_id.to_string(), window)
            }),
        });
    }
    series
}

/// Groups a metrics answer lists one by one, per MCP, at most; the rest are `other`.
pub const MAX_LISTED_GROUPS: usize = 50;

/// The `groups` of a metrics answer (`?group_by=`): per MCP, the [`MAX_LISTED_GROUPS`] busiest
/// groups in the store's order, then one `{"other": true, "groups": N}` entry with the counts and
/// error codes of the rest. Clients choose the values (request types, adapters): thousands of
/// them answer in the size of fifty.
pub fn listed_groups(cells: Vec<MetricsCell>, with_mcp: bool) -> Vec<Value> {
    let mut by_mcp: BTreeMap<String, Vec<MetricsCell>> = BTreeMap::new();
    let mut order = Vec::new();
    for cell in cells {
        if !by_mcp.contains_key(&cell.mcp_id) {
            order.push(cell.mcp_id.clone());
        }
        by_mcp.entry(cell.mcp_id.clone()).or_default().push(cell);
    }
    let entry = |mcp_id: &str, mut body: Value| {
        if with_mcp {
            body["mcp_id"] = json!(mcp_id);
        }
        body
    };
    let mut listed = Vec::new();
    for mcp_id in order {
        let cells = by_mcp.remove(&mcp_id).unwrap_or_default();
        let mut ranked: Vec<(u64, usize)> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.metrics.count, i))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let kept: std::collections::BTreeSet<usize> = ranked
            .iter()
            .take(MAX_LISTED_GROUPS)
            .map(|(_, i)| *i)
            .collect();
        let (mut other, mut folded, mut per_minute) = (Tally::default(), 0usize, 0.0);
        for (i, cell) in cells.into_iter().enumerate() {
            if kept.contains(&i) {
                listed.push(entry(
                    &mcp_id,
                    json!({"value": cell.group, "metrics": cell.metrics}),
                ));
            } else {
                fold(&mut other, &cell.metrics);
                folded += 1;
                per_minute += cell.metrics.interactions_per_minute;
            }
        }
        if folded > 0 {
            let window = TimeRange {
                since_ms: 0,
                until_ms: 60_000,
            };
            let mut metrics = other.into_metrics(mcp_id.clone(), window);
            metrics.interactions_per_minute = per_minute;
            listed.push(entry(
                &mcp_id,
                json!({"other": true, "groups": folded, "metrics": metrics}),
            ));
        }
    }
    listed
}

/// Adds what can be added of one group's bucket to `other`'s.
fn fold(into: &mut Tally, metrics: &McpMetrics) {
    into.count += metrics.count;
    into.completed += metrics.completed;
    into.failed += metrics.failed;
    for (code, n) in &metrics.errors_by_code {
        *into.errors_by_code.entry(code.clone()).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(group: &str, bucket: i64, count: u64) -> MetricsCell {
        let window = TimeRange {
            since_ms: 0,
            until_ms: 60_000,
        };
        let tally = Tally {
            count,
            completed: count,
            errors_by_code: BTreeMap::from([("TIMEOUT".to_string(), 1)]),
            p95: Some(1.0),
            ..Tally::default()
        };
        MetricsCell {
            mcp_id: "m".into(),
            group: Some(group.into()),
            bucket,
            metrics: tally.into_metrics("m".into(), window),
        }
    }

    #[test]
    fn a_metrics_answer_lists_fifty_groups_per_mcp_and_folds_the_rest() {
        let cells: Vec<MetricsCell> = (0..60)
            .map(|t| cell(&format!("type{t:02}"), 0, 100 + t as u64))
            .collect();
        let listed = listed_groups(cells, true);
        assert_eq!(listed.len(), MAX_LISTED_GROUPS + 1);
        let other = listed.last().unwrap();
        assert_eq!(other["groups"], 10);
        assert_eq!(other["mcp_id"], "m");
        assert_eq!(
            other["metrics"]["count"],
            (100..110).sum::<u64>(),
            "the quietest ten"
        );
        assert!(listed[..50].iter().all(|g| g["value"] != "type00"));
    }

    #[test]
    fn the_groups_that_fit_shrink_as_buckets_grow() {
        assert_eq!(groups_that_fit(60), MAX_GROUPS);
        assert_eq!(
            groups_that_fit(2_000),
            9,
            "9 groups and other: 20,000 points"
        );
        assert_eq!(groups_that_fit(20_000), 1);
    }

    #[test]
    fn groups_beyond_what_fits_fold_into_other_with_their_counts() {
        let range = TimeRange {
            since_ms: 0,
            until_ms: 2_000 * 60_000,
        };
        // 12 request types in 2,000 one-minute buckets: before, 24,000 points.
        let cells: Vec<MetricsCell> = (0..12)
            .map(|t| cell(&format!("type{t:02}"), t, 100 - t as u64))
            .collect();
        let series = serde_json::to_value(build("m", range, 60_000, 2_000, true, cells)).unwrap();
        let series = series.as_array().unwrap();
        let points: usize = series
            .iter()
            .map(|s| s["points"].as_array().unwrap().len())
            .sum();
        assert!(points as i64 <= MAX_ANSWER_POINTS, "{points} points");
        assert_eq!(series.len(), 10);
        let other = series.last().unwrap();
        assert_eq!(other["groups"], 3, "the three quietest");
        assert!(series[..9].iter().all(|s| s["value"] != "type11"));
        let folded: Vec<&serde_json::Value> = other["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metrics"]["count"] != 0)
            .collect();
        assert_eq!(folded.len(), 3);
        assert_eq!(folded[2]["metrics"]["count"], 89);
        assert_eq!(folded[2]["metrics"]["errors_by_code"]["TIMEOUT"], 1);
        assert!(folded[2]["metrics"]["p95_processing_time"].is_null());
    }
}
