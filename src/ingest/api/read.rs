//! The read path: who may read what, what the store answers, sealed fields revealed as the reader
//! may see them, and an audit record of every read of interaction data (a read whose audit
//! record cannot be written is refused). Each read answers a JSON value, without HTTP.

use serde_json::{json, Value};

use super::super::state::IngestState;
use super::guards::authorize_reader;
use super::now_ms;
use super::params::{group_by, limit, range, step, time, user_id, MINUTE_MS};
pub use super::params::{parse_query, Params};
use super::reply::{ApiError, ErrorCode};
use crate::interaction::{check_id, format_ms, Interaction};
use crate::privacy::seal::{Owner, Sealer, Unsealed};
use crate::store::{
    AuditEntry, Breakdown, Dimension, HistoryQuery, McpMetrics, MetricsCell, TimeRange,
};
use crate::trust::keys::Role;

/// A metrics answer: the range as given, per-MCP metrics, and the cells per group when asked.
type MetricsAnswer = (
    String,
    Vec<McpMetrics>,
    Option<(Dimension, Vec<MetricsCell>)>,
);

/// One read request: who asks (the bearer token) and the decoded query string.
pub struct Reading<'a> {
    pub state: &'a IngestState,
    pub auth: Option<&'a str>,
    pub params: Params,
}

impl Reading<'_> {
    /// `GET /v1/mcps/{id}/interactions?limit=&since=&until=`: newest first.
    pub async fn history(&self, mcp_id: &str) -> Result<Value, ApiError> {
        let role = self.reader_of(Some(mcp_id))?;
        let limit = limit(&self.params)?;
        let time_param = |name| self.params.get(name).map(|s| time(s, name)).transpose();
        let (since_ms, until_ms) = (time_param("since")?, time_param("until")?);
        let after = self
            .params
            .get("cursor")
            .map(|c| crate::store::Cursor::parse(c).map_err(|p| ApiError::query("cursor", &p)))
            .transpose()?;
        let query = HistoryQuery {
            mcp_id: mcp_id.to_string(),
            limit,
            since_ms,
            until_ms,
            after,
            max_bytes: self.state.limits.page_bytes,
            user_id: user_id(&self.params)?,
        };
        let page = self.state.store.reads.history_page(&query).await?;
        // More may follow a page that is full, in count or in bytes.
        let next = (page.full_by_bytes || page.interactions.len() >= limit)
            .then(|| {
                page.interactions
                    .last()
                    .map(|i| crate::store::Cursor::of(i).text())
            })
            .flatten();
        let items: Vec<Value> = page
            .interactions
            .into_iter()
            .map(|mut i| {
                reveal(&self.state.protection.sealer, &role, &mut i);
                i.to_json()
            })
            .collect();
        let read = Read {
            mcp_id,
            query: "history",
            since_ms,
            until_ms,
        };
        self.audit(&role, read, items.len() as u64).await?;
        Ok(
            json!({"mcp_id": mcp_id, "count": items.len(), "interactions": items, "next_cursor": next}),
        )
    }

    /// `GET /v1/mcps/{id}/metrics?range=&group_by=`.
    pub async fn mcp_metrics(&self, mcp_id: &str) -> Result<Value, ApiError> {
        let (text, mut metrics, groups) = self.metrics_over(Some(mcp_id)).await?;
        let one = metrics
            .pop()
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        // Zeros are an answer for a known MCP that was quiet, not for a name nobody registered.
        let quiet = one["count"].as_u64().unwrap_or(0) == 0;
        if quiet && !self.state.keys.knows(mcp_id) {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no MCP {mcp_id} here: no key is registered for it and it has no interactions in {text}; `mcp-coordinator status` lists the IDs"),
            ));
        }
        let mut body = json!({"range": text, "metrics": one});
        if let Some((dimension, cells)) = groups {
            body["group_by"] = json!(dimension.field());
            body["groups"] = super::series::listed_groups(cells, false).into();
        }
        Ok(body)
    }

    /// `GET /v1/metrics?range=&group_by=`: every MCP with interactions in range.
    pub async fn all_metrics(&self) -> Result<Value, ApiError> {
        let (text, all, groups) = self.metrics_over(None).await?;
        let mut body = json!({"range": text, "mcps": all});
        if let Some((dimension, cells)) = groups {
            body["group_by"] = json!(dimension.field());
            body["groups"] = super::series::listed_groups(cells, true).into();
        }
        Ok(body)
    }

    /// `GET /v1/mcps/{id}/metrics/series?range=&step=&group_by=`: the window (from the whole
    /// minute it starts in) in buckets of `step`, every bucket answered, per group if asked. The
    /// answer is JSON text, written from typed series (see `series`).
    pub async fn series(&self, mcp_id: &str) -> Result<Vec<u8>, ApiError> {
        let role = self.reader_of(Some(mcp_id))?;
        let (text, range) = range(&self.params)?;
        let range = TimeRange {
            since_ms: range.since_ms.div_euclid(MINUTE_MS) * MINUTE_MS,
            until_ms: range.until_ms,
        };
        let (step_text, step_ms) = step(&self.params, range)?;
        let group_by = group_by(&self.params)?;
        let by = Breakdown {
            group_by,
            step_ms: Some(step_ms),
        };
        let cells = self
            .state
            .store
            .reads
            .breakdown(Some(mcp_id), range, by)
            .await?;
        let rows = cells.iter().map(|c| c.metrics.count).sum();
        self.audit(&role, Read::over(mcp_id, "series", range), rows)
            .await?;
        let buckets = (range.until_ms - range.since_ms + step_ms - 1) / step_ms;
        let series =
            super::series::build(mcp_id, range, step_ms, buckets, group_by.is_some(), cells);
        #[derive(serde::Serialize)]
        struct Answer<'a> {
            mcp_id: &'a str,
            range: String,
            step: String,
            start: String,
            group_by: Option<&'static str>,
            series: Vec<super::series::Series>,
        }
        let answer = Answer {
            mcp_id,
            range: text,
            step: step_text,
            start: format_ms(range.since_ms),
            group_by: group_by.map(Dimension::field),
            series,
        };
        serde_json::to_vec(&answer).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
    }

    /// Metrics of one MCP (or all) over the `range` parameter, and per value of `group_by` when
    /// asked, audited.
    async fn metrics_over(&self, mcp_id: Option<&str>) -> Result<MetricsAnswer, ApiError> {
        let role = self.reader_of(mcp_id)?;
        let (text, range) = range(&self.params)?;
        let group_by = group_by(&self.params)?;
        let metrics = self.state.store.reads.metrics(mcp_id, range).await?;
        let groups = match group_by {
            Some(dimension) => {
                let by = Breakdown {
                    group_by: Some(dimension),
                    step_ms: None,
                };
                Some((
                    dimension,
                    self.state.store.reads.breakdown(mcp_id, range, by).await?,
                ))
            }
            None => None,
        };
        let rows = metrics.iter().map(|m| m.count).sum();
        let read = match mcp_id {
            Some(id) => Read::over(id, "metrics", range),
            None => Read::over("*", "all_metrics", range),
        };
        self.audit(&role, read, rows).await?;
        Ok((text, metrics, groups))
    }

    /// `GET /v1/audit?limit=`: admins only.
    pub async fn audit_log(&self) -> Result<Value, ApiError> {
        let role = self.reader_of(None)?;
        if !matches!(role, Role::Admin(_)) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only admin tokens may read the audit log",
            ));
        }
        let entries = self
            .state
            .store
            .audit
            .audit_log(limit(&self.params)?)
            .await?;
        self.audit(&role, Read::all("audit"), entries.len() as u64)
            .await?;
        Ok(json!({"count": entries.len(), "entries": entries}))
    }

    /// `GET /v1/versions?range=`: for each MCP, the `metadata.mcp_version`s its interactions in
    /// the window reported, with how many reported each (the controller compares them with
    /// `spec.version`).
    pub async fn versions(&self) -> Result<Value, ApiError> {
        let role = self.reader_of(None)?;
        let (text, range) = range(&self.params)?;
        let counted = self.state.store.reads.reported_versions(range).await?;
        let mut mcps = serde_json::Map::new();
        for v in &counted {
            let entry = mcps
                .entry(v.mcp_id.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            entry[v.version.as_str()] = json!(v.interactions);
        }
        let rows = counted.iter().map(|v| v.interactions).sum();
        self.audit(&role, Read::over("*", "versions", range), rows)
            .await?;
        Ok(json!({"range": text, "mcps": mcps}))
    }

    /// `GET /v1/heartbeats`: each MCP's last heartbeat, as every replica stored it, and the ones
    /// this replica has not stored yet.
    pub async fn heartbeats(&self) -> Result<Value, ApiError> {
        let role = self.reader_of(None)?;
        let mut latest = self.state.store.heartbeats.heartbeats().await?;
        for (mcp_id, at_ms) in self.state.heartbeats() {
            let kept = latest.entry(mcp_id).or_insert(at_ms);
            *kept = (*kept).max(at_ms);
        }
        let body: serde_json::Map<String, Value> = latest
            .into_iter()
            .map(|(k, v)| (k, json!(format_ms(v))))
            .collect();
        self.audit(&role, Read::all("heartbeats"), body.len() as u64)
            .await?;
        Ok(Value::Object(body))
    }

    /// `GET /v1/registrations` (standalone mode): every registration with its status, the
    /// manifests that were skipped and why, and when each MCP was last seen.
    pub fn registrations(&self) -> Result<Value, ApiError> {
        let Some(view) = &self.state.registrations else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "registrations are served in standalone mode only; in a cluster use kubectl get mcpcreg",
            ));
        };
        self.reader_of(None)?;
        let mut body = view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let seen = self.state.last_seen();
        if let Some(list) = body["registrations"].as_array_mut() {
            for r in list {
                let at = r["mcp_id"].as_str().and_then(|id| seen.get(id));
                r["last_seen"] = json!(at.map(|ms| format_ms(*ms)));
            }
        }
        Ok(body)
    }

    /// `GET /v1/protocols`: the fleet's protocol versions, for a reader of everyone's data.
    pub fn protocols(&self) -> Result<Value, ApiError> {
        self.reader_of(None)?;
        Ok(self.state.fleet.view())
    }

    /// Who reads: of one MCP's data (its ID checked), or of everyone's.
    pub(super) fn reader_of(&self, mcp_id: Option<&str>) -> Result<Role, ApiError> {
        let role = authorize_reader(self.state, self.auth, mcp_id)?;
        if let Some(id) = mcp_id {
            check_id(id, "mcp_id").map_err(ApiError::bad)?;
        }
        Ok(role)
    }

    /// Records a read of interaction data; the answer is withheld if the record cannot be
    /// written.
    async fn audit(&self, role: &Role, read: Read<'_>, rows: u64) -> Result<(), ApiError> {
        let entry = AuditEntry {
            at_ms: now_ms(),
            who: role.who().to_string(),
            role: role.name().to_string(),
            mcp_id: read.mcp_id.to_string(),
            query: read.query.to_string(),
            since_ms: read.since_ms,
            until_ms: read.until_ms,
            rows,
        };
        let recorded = self.state.store.audit.record_access(&entry).await;
        recorded.map_err(ApiError::from)
    }
}

/// Sealed fields as `role` may see them: opened for admins and the MCP itself, redacted for
/// readers, `[erased]` once the sealing key was destroyed.
pub fn reveal(sealer: &Sealer, role: &Role, interaction: &mut Interaction) {
    let may_open = matches!(role, Role::Admin(_) | Role::Mcp(_));
    let fields = &mut interaction.fields;
    for (field, value, redacted) in [
        ("parameters", &mut fields.parameters, "{\"redacted\":true}"),
        ("error_message", &mut fields.error_message, "[redacted]"),
    ] {
        let Some(text) = value.as_deref() else {
            continue;
        };
        if !Sealer::is_sealed(text) {
            continue;
        }
        let owner = Owner {
            mcp_id: &interaction.mcp_id,
            interaction_id: &interaction.interaction_id,
            field,
        };
        *value = Some(match (may_open, sealer.unseal(text, owner)) {
            (true, Some(Unsealed::Plain(plain))) => plain,
            (true, _) if redacted.starts_with('{') => "{\"erased\":true}".to_string(),
            (true, _) => "[erased]".to_string(),
            (false, _) => redacted.to_string(),
        });
    }
}

/// What was read, for the audit log.
struct Read<'a> {
    mcp_id: &'a str,
    query: &'a str,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

impl<'a> Read<'a> {
    fn all(query: &'a str) -> Self {
        Self {
            mcp_id: "*",
            query,
            since_ms: None,
            until_ms: None,
        }
    }

    fn over(mcp_id: &'a str, query: &'a str, range: TimeRange) -> Self {
        Self {
            mcp_id,
            query,
            since_ms: Some(range.since_ms),
            until_ms: Some(range.until_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ingest::metrics::IngestMetrics;
    use crate::ingest::IngestConfig;
    use crate::interaction::{EventKind, Fields, InteractionEvent};
    use crate::pipeline::Spool;
    use crate::store::sqlite::SqliteStore;
    use crate::test_dir::TestDir;
    use crate::trust::keys::{KeyRing, ReaderTokens};

    const MCP: &str = "ocr_mcp_001";

    /// An ingest state over an in-memory store holding one sensitive interaction of `MCP`, and
    /// its spool's directory.
    async fn state(tag: &str) -> (IngestState, TestDir) {
        let dir = TestDir::new(&format!("read-unit-{tag}"));
        let config = IngestConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf()).unwrap();
        let (spool, _reader) = Spool::open(config.spool.clone()).unwrap();
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let fields = Fields {
            error_message: Some(
                config
                    .sealer
                    .seal(
                        "card 4111 declined",
                        Owner {
                            mcp_id: MCP,
                            interaction_id: "i1",
                            field: "error_message",
                        },
                    )
                    .unwrap(),
            ),
            success: Some(false),
            timestamp_ms: Some(now_ms()),
            ..Default::default()
        };
        let event = InteractionEvent::new("i1".into(), MCP.into(), EventKind::Record, 1, fields);
        crate::store::EventSink::insert(store.as_ref(), &[event])
            .await
            .unwrap();
        let keys = KeyRing::default();
        keys.set(MCP, "mcp-key");
        keys.set("other_mcp_001", "other-key");
        let readers = ReaderTokens::from_tokens(["reader-token"]);
        readers.add_admin("root", "admin-token");
        let metrics = Arc::new(IngestMetrics::new().unwrap());
        let state = IngestState::new(
            &config,
            spool,
            store.into(),
            Arc::new(keys),
            Arc::new(readers),
            metrics,
        );
        (state, dir)
    }

    fn reading<'a>(state: &'a IngestState, token: &'a str, query: &str) -> Reading<'a> {
        Reading {
            state,
            auth: Some(token),
            params: parse_query(query),
        }
    }

    #[tokio::test]
    async fn readers_see_sealed_fields_redacted_and_the_mcp_itself_sees_them_opened() {
        let (state, _dir) = state("reveal").await;
        let as_reader = reading(&state, "Bearer reader-token", "")
            .history(MCP)
            .await;
        let item = &as_reader.unwrap()["interactions"][0];
        assert_eq!(item["result_data"]["error_message"], "[redacted]");
        let as_mcp = reading(&state, "Bearer mcp-key", "").history(MCP).await;
        let item = &as_mcp.unwrap()["interactions"][0];
        assert_eq!(item["result_data"]["error_message"], "card 4111 declined");
    }

    #[tokio::test]
    async fn an_mcp_key_reads_only_its_own_data_and_every_read_is_audited() {
        let (state, _dir) = state("own").await;
        let other = reading(&state, "Bearer other-key", "").history(MCP).await;
        assert_eq!(other.unwrap_err().code, ErrorCode::Forbidden);
        let all = reading(&state, "Bearer mcp-key", "").all_metrics().await;
        assert_eq!(all.unwrap_err().code, ErrorCode::Forbidden);
        reading(&state, "Bearer reader-token", "range=1h")
            .mcp_metrics(MCP)
            .await
            .unwrap();
        let log = reading(&state, "Bearer admin-token", "").audit_log().await;
        let log = log.unwrap();
        let queries: Vec<&str> = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["query"].as_str())
            .collect();
        assert!(queries.contains(&"metrics"), "{log}");
        let audit = reading(&state, "Bearer reader-token", "").audit_log().await;
        assert_eq!(audit.unwrap_err().code, ErrorCode::Forbidden);
    }

    #[tokio::test]
    async fn bad_parameters_name_the_parameter() {
        let (state, _dir) = state("params").await;
        let err = reading(&state, "Bearer reader-token", "limit=0")
            .history(MCP)
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            (ErrorCode::InvalidQuery, Some("limit"))
        );
        let err = reading(&state, "Bearer reader-token", "range=forever")
            .all_metrics()
            .await
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("range"));
        let err = reading(&state, "Bearer reader-token", "")
            .history("../etc")
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidReport);
    }
}
