//! The ClickHouse store's DDL and merge query on a current ClickHouse (chdb, an embedded ClickHouse
//! from PyPI, installed by .ci/run), as the production servers will see them.

use mcp_coordinator::store::clickhouse::{
    create_rollup_table_sql, create_table_sql, merged_with_timeline_sql, metrics_sql, roll_sql,
    TIME,
};

/// The filter the store puts on every windowed read: the MCP, receive times, and the `Date`
/// partition column compared with day strings.
const WINDOWED: &str = "mcp_id = 'ocr_workflow_mcp_001' AND received_ms >= 0 AND event_date >= '2025-12-31' AND received_ms < 9999999 AND event_date <= '2026-01-02'";
use serde_json::Value;

fn run_chdb(statements: &[String]) -> Vec<Value> {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/chdb_check.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(statements).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chdb failed (is it installed? .ci/run does `pip install chdb`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn schema_and_merge_query_work_on_current_clickhouse() {
    let columns = "event_id, mcp_id, interaction_id, kind, received_ms, event_date, timestamp_ms, success, processing_time, error_code";
    let statements = vec![
        "CREATE DATABASE IF NOT EXISTS mcp".to_string(),
        create_table_sql("mcp", (25, 8)),
        format!(
            "INSERT INTO mcp.interaction_events ({columns}) VALUES \
             ('e1', 'ocr_workflow_mcp_001', 'i1', 'start', 1000, toDate('2026-01-01'), 1000, NULL, NULL, NULL), \
             ('e2', 'ocr_workflow_mcp_001', 'i1', 'complete', 2000, toDate('2026-01-01'), NULL, 1, 5.5, NULL), \
             ('e2', 'ocr_workflow_mcp_001', 'i1', 'complete', 2000, toDate('2026-01-01'), NULL, 1, 5.5, NULL), \
             ('e3', 'ocr_workflow_mcp_001', 'i2', 'error', 3000, toDate('2026-01-01'), 3000, 0, 1.0, 'TIMEOUT')"
        ),
        format!(
            "SELECT * FROM ({}) WHERE {TIME} >= 0 AND {TIME} < 9999999999999 ORDER BY {TIME} DESC, interaction_id DESC LIMIT 10",
            merged_with_timeline_sql("mcp", WINDOWED)
        ),
    ];
    let mut aggregate = statements[..3].to_vec();
    aggregate.push(metrics_sql("mcp", WINDOWED).replacen('?', "0", 1).replacen(
        '?',
        "9999999999999",
        1,
    ));
    let metrics = run_chdb(&aggregate);
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    let m = &metrics[0];
    assert_eq!(
        (
            m["count"].as_u64(),
            m["completed"].as_u64(),
            m["failed"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{m}"
    );
    assert_eq!(m["p50"], 1.0);
    assert_eq!(m["p99"], 5.5);
    assert_eq!(m["error_codes"], serde_json::json!(["TIMEOUT"]));

    let rows = run_chdb(&statements);
    assert_eq!(
        rows.len(),
        2,
        "start, complete and a duplicate complete are one interaction: {rows:?}"
    );
    assert_eq!(rows[0]["interaction_id"], "i2");
    assert_eq!(rows[0]["error_code"], "TIMEOUT");
    assert_eq!(rows[1]["interaction_id"], "i1");
    assert_eq!(rows[1]["success"], 1);
    assert_eq!(rows[1]["processing_time"], 5.5);
    assert_eq!(rows[1]["first_received_ms"], 1000);
}

#[test]
fn rollups_roll_on_current_clickhouse() {
    let columns = "event_id, mcp_id, interaction_id, kind, received_ms, event_date, timestamp_ms, request_type, success, processing_time, error_code";
    let roll = |generation: i64| {
        roll_sql("mcp", WINDOWED, generation)
            .replacen('?', "0", 1)
            .replacen('?', "9999999999999", 1)
    };
    let rows = run_chdb(&[
        "CREATE DATABASE IF NOT EXISTS mcp".to_string(),
        create_table_sql("mcp", (25, 8)),
        create_rollup_table_sql("mcp", (25, 8)),
        format!(
            "INSERT INTO mcp.interaction_events ({columns}) VALUES \
             ('e1', 'ocr_workflow_mcp_001', 'i1', 'start', 1000, toDate('2026-01-01'), 1000, 'ocr', NULL, NULL, NULL), \
             ('e2', 'ocr_workflow_mcp_001', 'i1', 'complete', 2000, toDate('2026-01-01'), NULL, NULL, 1, 5.5, NULL), \
             ('e3', 'ocr_workflow_mcp_001', 'i2', 'error', 3000, toDate('2026-01-01'), 61000, 'ocr', 0, 1.0, 'TIMEOUT')"
        ),
        roll(1),
        // A second generation of the same minutes, as a re-roll writes it.
        roll(2),
        "SELECT minute, request_type, error_code, interactions, completed, failed, length(time_buckets) AS buckets, rolled_at \
         FROM mcp.interaction_rollups WHERE rolled_at = 2 ORDER BY minute".to_string(),
    ]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["minute"], 0);
    assert_eq!(rows[0]["request_type"], "ocr");
    assert_eq!(rows[0]["completed"], 1);
    assert_eq!(rows[0]["buckets"], 1);
    assert_eq!(rows[1]["minute"], 60000);
    assert_eq!(rows[1]["error_code"], "TIMEOUT");
    assert_eq!(rows[1]["failed"], 1);
}
