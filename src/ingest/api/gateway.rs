//! `GET /v1/gateway/ejections`: the MCPs this replica's gateway has taken out of its rotation
//! after consecutive failures, until when, and how many times in a row. The controller reads it
//! into the registrations' `GatewayEjected` condition. Not interaction data: no audit entry.

use serde_json::{json, Value};

use super::read::Reading;
use super::reply::ApiError;
use crate::interaction::format_ms;

impl Reading<'_> {
    pub async fn ejections(&self) -> Result<Value, ApiError> {
        self.reader_of(None)?;
        let mcps: serde_json::Map<String, Value> = self
            .state
            .gateway
            .get()
            .map(|g| g.ejections())
            .unwrap_or_default()
            .into_iter()
            .map(|(id, until_ms, n)| (id, json!({"until": format_ms(until_ms), "ejections": n})))
            .collect();
        Ok(json!({"gateway": self.state.gateway.get().is_some(), "mcps": mcps}))
    }
}
