//! The tables of the human-facing commands: `status` (the registrations) and
//! `query interactions|metrics`. Pure, so they are unit-tested.

use std::fmt::Write as _;

use serde_json::Value;

/// Left-aligned columns separated by three spaces, like `kubectl get`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                let _ = write!(text, "{cell:<width$}   ", width = widths[i]);
            } else {
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// One row of cells per item of a JSON array (none when it is not one).
fn rows_of(list: &Value, cells: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().into_iter().flatten().map(cells).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A group's value, or what an `other` entry folds ("(12 others)").
fn group_label(group: &Value) -> String {
    if group["other"] == true {
        format!("({} others)", text(&group["groups"]))
    } else {
        text(&group["value"])
    }
}

/// Seconds as milliseconds ("120ms"); "-" without data.
fn millis(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |s| format!("{:.0}ms", s * 1000.0))
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// How long ago an RFC 3339 time was, relative to `now_ms` ("4s", "3m", "2h"); "-" if never.
fn ago(v: &Value, now_ms: i64) -> String {
    let Some(at) = v.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "-".into();
    };
    let secs = ((now_ms - at.as_millisecond()) / 1000).max(0);
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

/// When the last heartbeat came, and `MISSING` once three intervals passed without one.
fn heartbeat(r: &Value, now_ms: i64) -> String {
    let when = ago(&r["last_heartbeat"], now_ms);
    if r["heartbeat_missing"] == true {
        format!("MISSING ({when})")
    } else {
        when
    }
}

/// The protocol version an `mcp` probe learned, marked when it is not the current revision.
fn protocol(r: &Value) -> String {
    match r["protocol_version"].as_str() {
        None => "-".into(),
        Some(v) if v == crate::mcp::wire::MODERN_VERSION => v.into(),
        Some(v) => format!("{v} (legacy)"),
    }
}

/// The `status` table from a `GET /v1/registrations` answer, then the skipped manifests.
pub fn status_table(view: &Value, now_ms: i64) -> String {
    let rows = rows_of(&view["registrations"], |r| {
        vec![
            text(&r["name"]),
            text(&r["mcp_id"]),
            text(&r["phase"]),
            protocol(r),
            text(&r["effective_weight"]),
            millis(&r["p95_processing_time"]),
            percent(&r["success_rate"]),
            heartbeat(r, now_ms),
            ago(&r["last_seen"], now_ms),
        ]
    });
    let mut out = table(
        &[
            "NAME",
            "ID",
            "PHASE",
            "PROTOCOL",
            "WEIGHT",
            "P95",
            "SUCCESS",
            "HEARTBEAT",
            "LAST SEEN",
        ],
        &rows,
    );
    for p in view["invalid"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "skipped {} (document {}): {}{}",
            text(&p["file"]),
            text(&p["document"]),
            p["field"]
                .as_str()
                .filter(|f| !f.is_empty())
                .map(|f| format!("{f}: "))
                .unwrap_or_default(),
            text(&p["reason"])
        );
    }
    out
}

/// The `query interactions` table from `GET /v1/mcps/{id}/interactions`.
pub fn interactions_table(answer: &Value) -> String {
    let rows = rows_of(&answer["interactions"], |i| {
        vec![
            text(&i["interaction_id"]),
            text(&i["status"]),
            // The client's own timestamp, else when the coordinator received it.
            match &i["timestamp"] {
                Value::Null => text(&i["received_at"]),
                reported => text(reported),
            },
            text(&i["request_data"]["request_type"]),
            millis(&i["processing_data"]["processing_time"]),
            text(&i["result_data"]["error_code"]),
        ]
    });
    table(
        &[
            "INTERACTION",
            "STATUS",
            "TIME",
            "REQUEST TYPE",
            "PROCESSING",
            "ERROR",
        ],
        &rows,
    )
}

/// The `query metrics` listing from `GET /v1/mcps/{id}/metrics`.
pub fn metrics_table(answer: &Value) -> String {
    let m = &answer["metrics"];
    let rows = vec![
        vec!["range".into(), text(&answer["range"])],
        vec!["interactions".into(), text(&m["count"])],
        vec!["completed".into(), text(&m["completed"])],
        vec!["failed".into(), text(&m["failed"])],
        vec!["in progress".into(), text(&m["in_progress"])],
        vec!["success rate".into(), percent(&m["success_rate"])],
        vec![
            "p50 / p95 / p99".into(),
            format!(
                "{} / {} / {}",
                millis(&m["p50_processing_time"]),
                millis(&m["p95_processing_time"]),
                millis(&m["p99_processing_time"])
            ),
        ],
        vec![
            "per minute".into(),
            m["interactions_per_minute"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.1}")),
        ],
        vec!["errors by code".into(), text(&m["errors_by_code"])],
    ];
    let mut out = table(&["METRIC", "VALUE"], &rows);
    // With --group-by: one row per value.
    if let Some(groups) = answer["groups"].as_array() {
        let by = text(&answer["group_by"]).to_uppercase();
        let rows = rows_of(&answer["groups"], |g| {
            let m = &g["metrics"];
            vec![
                group_label(g),
                text(&m["count"]),
                percent(&m["success_rate"]),
                millis(&m["p95_processing_time"]),
            ]
        });
        if !groups.is_empty() {
            out.push('\n');
            out.push_str(&table(&[&by, "INTERACTIONS", "SUCCESS", "P95"], &rows));
        }
    }
    out
}

/// The `query series` table from `GET /v1/mcps/{id}/metrics/series`: a row per step (and
/// group, with `--group-by`).
pub fn series_table(answer: &Value) -> String {
    let grouped = !answer["group_by"].is_null();
    let mut rows = Vec::new();
    for series in answer["series"].as_array().into_iter().flatten() {
        for point in series["points"].as_array().into_iter().flatten() {
            let m = &point["metrics"];
            let mut row = vec![text(&point["start"])];
            if grouped {
                row.push(group_label(series));
            }
            row.extend([
                text(&m["count"]),
                percent(&m["success_rate"]),
                millis(&m["p95_processing_time"]),
            ]);
            rows.push(row);
        }
    }
    let by = text(&answer["group_by"]).to_uppercase();
    let mut header = vec!["START"];
    if grouped {
        header.push(&by);
    }
    header.extend(["INTERACTIONS", "SUCCESS", "P95"]);
    table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn folded_groups_read_as_others_not_as_a_missing_value() {
        let answer = json!({"range": "1h", "metrics": {"count": 3}, "group_by": "request_type", "groups": [
            {"value": "ocr", "metrics": {"count": 2}},
            {"value": null, "metrics": {"count": 1}},
            {"other": true, "groups": 12, "metrics": {"count": 40}}
        ]});
        let table = metrics_table(&answer);
        assert!(table.contains("(12 others)"), "{table}");
        assert!(
            table.lines().any(|l| l.starts_with("- ")),
            "a missing value stays `-`: {table}"
        );
    }

    #[test]
    fn the_status_table_lines_up_and_says_what_is_missing() {
        let view = json!({
            "registrations": [
                {"name": "ocr-fast", "mcp_id": "ocr_fast_workflow_mcp_001", "phase": "Ready", "effective_weight": 141, "protocol_version": "2026-07-28",
                 "p95_processing_time": 0.0423, "success_rate": 0.995, "last_seen": "2026-11-24T10:00:00Z",
                 "last_heartbeat": "2026-11-24T10:00:00Z", "heartbeat_missing": false},
                {"name": "quiet", "mcp_id": "quiet_tool_mcp_001", "phase": "Degraded", "effective_weight": 50, "protocol_version": "2025-06-18",
                 "p95_processing_time": null, "success_rate": null, "last_seen": "2026-11-24T09:58:00Z",
                 "last_heartbeat": "2026-11-24T09:58:00Z", "heartbeat_missing": true},
                {"name": "new", "mcp_id": null, "phase": "Pending", "effective_weight": null,
                 "p95_processing_time": null, "success_rate": null, "last_seen": null}
            ],
            "invalid": [{"file": "regs/bad.yaml", "document": 1, "field": "spec.routing.weight", "reason": "too big"}]
        });
        let now = "2026-11-24T10:00:05Z"
            .parse::<jiff::Timestamp>()
            .expect("time")
            .as_millisecond();
        let out = status_table(&view, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME       ID                          PHASE      PROTOCOL              WEIGHT   P95    SUCCESS   HEARTBEAT          LAST SEEN"
        );
        assert_eq!(
            lines[1],
            "ocr-fast   ocr_fast_workflow_mcp_001   Ready      2026-07-28            141      42ms   99.5%     5s ago             5s ago"
        );
        assert_eq!(
            lines[2],
            "quiet      quiet_tool_mcp_001          Degraded   2025-06-18 (legacy)   50       -      -         MISSING (2m ago)   2m ago"
        );
        assert_eq!(
            lines[3],
            "new        -                           Pending    -                     -        -      -         -                  -"
        );
        assert_eq!(
            lines[4],
            "skipped regs/bad.yaml (document 1): spec.routing.weight: too big"
        );
    }

    #[test]
    fn metrics_and_interactions_render_without_data() {
        let out = metrics_table(&json!({"range": "1h", "metrics": {"count": 0}}));
        assert!(out.contains("success rate      -"), "{out}");
        let out = interactions_table(&json!({"interactions": []}));
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn an_interaction_without_a_timestamp_of_its_own_shows_when_it_was_received() {
        let out = interactions_table(&json!({"interactions": [
            {"interaction_id": "a", "status": "completed", "timestamp": null,
             "received_at": "2026-12-07T10:00:00.000Z"},
            {"interaction_id": "b", "status": "completed", "timestamp": "2026-12-07T09:00:00.000Z",
             "received_at": "2026-12-07T10:00:01.000Z"},
        ]}));
        let row = |id: &str| out.lines().find(|l| l.starts_with(id)).unwrap().to_string();
        assert!(row("a").contains("2026-12-07T10:00:00.000Z"), "{out}");
        assert!(row("b").contains("2026-12-07T09:00:00.000Z"), "{out}");
        assert!(
            !row("b").contains("10:00:01"),
            "the reported time wins: {out}"
        );
    }
}
