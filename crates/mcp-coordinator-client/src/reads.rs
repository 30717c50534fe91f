//! The seed's reads, with the MCP's own key: its interaction history and its performance metrics
//! (`GET /v1/mcps/{id}/interactions`, `GET /v1/mcps/{id}/metrics`). A key reads only its own
//! MCP's data.

use serde_json::Value;

use crate::{Client, ClientError, Shared};

/// The most interactions one history read asks for (the API's own bound).
const MAX_HISTORY: usize = 1000;

impl Client {
    /// The latest `limit` interactions of `mcp_id` (at most 1,000), newest first, in the seed's
    /// standard record shape: the seed's `get_interaction_history`.
    #[doc(alias = "get_interaction_history")]
    pub async fn interaction_history(
        &self,
        mcp_id: &str,
        limit: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let limit = limit.clamp(1, MAX_HISTORY);
        let answer = self
            .shared
            .get(&format!(
                "/v1/mcps/{}/interactions?limit={limit}",
                path_part(mcp_id)?
            ))
            .await?;
        Ok(answer["interactions"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// `mcp_id`'s performance over `time_range` (`last_15m`, `last_1h`, `last_24h`, `last_7d`):
    /// count, success rate, latency percentiles, errors by code. The seed's
    /// `get_performance_metrics`.
    #[doc(alias = "get_performance_metrics")]
    pub async fn performance_metrics(
        &self,
        mcp_id: &str,
        time_range: &str,
    ) -> Result<Value, ClientError> {
        let range = path_part(time_range)?;
        let answer = self
            .shared
            .get(&format!(
                "/v1/mcps/{}/metrics?range={range}",
                path_part(mcp_id)?
            ))
            .await?;
        Ok(answer["metrics"].clone())
    }
}

/// A value that goes into a URL as it is: an ID or a range name.
fn path_part(value: &str) -> Result<&str, ClientError> {
    let plain = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        Ok(value)
    } else {
        Err(ClientError::BadValue(value.chars().take(64).collect()))
    }
}

impl Shared {
    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let request = self.http.get(&url).bearer_auth(self.key()?);
        self.send(request, url).await
    }
}
