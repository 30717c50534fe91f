//! `GET /v1/store` (reader token): the store behind this ingest server, reachable and writable
//! with the credentials it runs with. It writes one audit record (`store_check`) and reads it
//! back; `helm test` asks it, so a chart whose ClickHouse is unreachable or read-only fails
//! there, not at the first report.

use serde_json::{json, Value};

use super::super::state::IngestState;
use super::guards::authorize_reader;
use super::now_ms;
use super::reply::{ApiError, ErrorCode};
use crate::store::AuditEntry;

pub async fn check(state: &IngestState, auth: Option<&str>) -> Result<Value, ApiError> {
    let role = authorize_reader(state, auth, None)?;
    let entry = AuditEntry {
        at_ms: now_ms(),
        who: role.who().to_string(),
        role: role.name().to_string(),
        mcp_id: "*".into(),
        query: "store_check".into(),
        since_ms: None,
        until_ms: None,
        rows: 0,
    };
    state
        .store
        .audit
        .record_access(&entry)
        .await
        .map_err(|e| unavailable(&format!("cannot write to the store: {e}")))?;
    let log = state
        .store
        .audit
        .audit_log(20)
        .await
        .map_err(|e| unavailable(&format!("wrote to the store but cannot read it: {e}")))?;
    if !log.contains(&entry) {
        return Err(unavailable(
            "wrote to the store, but reading back did not find what was written",
        ));
    }
    Ok(json!({
        "store": "ok",
        "written": true,
        "read": true,
        "spool_records": state.spool.stats().records,
    }))
}

fn unavailable(message: &str) -> ApiError {
    ApiError::new(ErrorCode::StoreUnavailable, message.to_string())
}
