//! Where interactions are kept: ClickHouse in production, SQLite embedded by default, both behind
//! the capability traits of [`InteractionStore`] and held to the same contract
//! (`tests/store/contract.rs`). A caller holds only the capability it uses ([`Stores`]).

pub mod clickhouse;
pub mod copy;
pub mod metrics;
pub mod page;
pub mod retention;
pub mod sketch;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::interaction::{Interaction, InteractionEvent};
pub use metrics::{Breakdown, Dimension, McpMetrics, MetricsCell, TimeRange};
pub use page::{Cursor, PageBudget};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the interaction store is unavailable: {0}")]
    Unavailable(String),
    /// The store refused these rows for what they contain; retrying will not help.
    #[error("the interaction store rejected the rows: {0}")]
    Rejected(String),
    /// A breakdown would answer more cells than allowed.
    #[error("the answer would have more than {0} cells (groups × time buckets × MCPs); narrow the range, widen the step or leave out group_by")]
    TooLarge(usize),
}

/// How many interactions of an MCP reported one `metadata.mcp_version`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionCount {
    pub mcp_id: String,
    pub version: String,
    pub interactions: u64,
}

/// Interactions of one MCP, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub mcp_id: String,
    pub limit: usize,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only interactions after this position of the page order.
    pub after: Option<Cursor>,
    /// The page ends once its interactions pass this many bytes as JSON (it holds one at least).
    pub max_bytes: usize,
    /// Only the interactions of this user (the pseudonym stored in `user_id`): one caller's
    /// calls through the gateway, for example.
    pub user_id: Option<String>,
}

/// A page of history.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub interactions: Vec<Interaction>,
    /// The page ended because its bytes ran out (more may follow).
    pub full_by_bytes: bool,
}

impl Default for HistoryQuery {
    fn default() -> Self {
        Self {
            mcp_id: String::new(),
            limit: 100,
            since_ms: None,
            until_ms: None,
            after: None,
            max_bytes: page::DEFAULT_PAGE_BYTES,
            user_id: None,
        }
    }
}

/// One read of interaction data, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// Token name, or the MCP ID for an MCP's own key.
    pub who: String,
    pub role: String,
    /// The MCP read, or `*` for all.
    pub mcp_id: String,
    /// `history`, `metrics`, `all_metrics`, `heartbeats` or `audit`; `key_reissued` when a
    /// registration changed owner and got a new key (standalone mode).
    pub query: String,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub rows: u64,
}

/// Writing events: what the shipper needs.
pub trait EventSink: Send + Sync {
    /// Applies events, merging each into its interaction. Applying an event again changes nothing.
    /// Returns only once the store has made them durable.
    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Opens one insert that is fed events in pieces ([`EventInsert`]): what lets one insert (one
    /// ClickHouse part) hold far more events than the shipper keeps in memory. By default the
    /// pieces are gathered and [`EventSink::insert`]ed at the end.
    fn open_insert(&self) -> BoxFuture<'_, Result<Box<dyn EventInsert + '_>, StoreError>> {
        Box::pin(async move { Ok(GatheredInsert::open(self)) })
    }

    /// How many inserts the shipper may have out at once. One by default: the embedded store
    /// merges events in the order it applies them, so batches must arrive in spool order.
    fn inserts_in_flight(&self) -> usize {
        1
    }
}

/// Reading interactions and their performance: what the query API and the routing loop need.
pub trait InteractionReads: Send + Sync {
    /// One page of an MCP's interactions, newest first, bounded in count and in bytes.
    fn history_page<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>>;

    /// The interactions of [`InteractionReads::history_page`] alone.
    fn history<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Interaction>, StoreError>> {
        Box::pin(async move { Ok(self.history_page(query).await?.interactions) })
    }

    /// Performance of one MCP (or of every MCP that has interactions in range, when `mcp_id` is None).
    fn metrics<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>>;

    /// Performance cut by `by`: per MCP (one, or every MCP with interactions in range), per value
    /// of a dimension and per time bucket. Only cells holding interactions are answered.
    fn breakdown<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
        by: Breakdown,
    ) -> BoxFuture<'a, Result<Vec<MetricsCell>, StoreError>>;

    /// For each MCP, the `metadata.mcp_version`s its interactions in `range` reported, and how
    /// many interactions reported each (interactions that said none are left out).
    fn reported_versions(
        &self,
        range: TimeRange,
    ) -> BoxFuture<'_, Result<Vec<VersionCount>, StoreError>>;
}

/// The audit log of reads of interaction data.
pub trait AuditLog: Send + Sync {
    /// Records a read of interaction data; queries are refused when this fails.
    fn record_access<'a>(&'a self, entry: &'a AuditEntry) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The newest `limit` audit entries, newest first.
    fn audit_log(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>>;
}

/// Heartbeats, stored so that every ingest replica (and the controller, through any of them)
/// sees them.
pub trait Heartbeats: Send + Sync {
    /// Records heartbeats as `(mcp_id, epoch ms)`; an MCP's older heartbeat never replaces a newer
    /// one.
    fn record_heartbeats<'a>(
        &'a self,
        beats: &'a [(String, i64)],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The latest heartbeat of every MCP that sent one, epoch ms.
    fn heartbeats(&self) -> BoxFuture<'_, Result<HashMap<String, i64>, StoreError>>;
}

/// Upkeep: retention and whatever the store does in the background.
pub trait Upkeep: Send + Sync {
    /// Deletes what `expiry` says has expired. May complete asynchronously on the server
    /// (ClickHouse mutations); the rows disappear from queries once it has.
    fn expire<'a>(&'a self, expiry: &'a retention::Expiry)
        -> BoxFuture<'a, Result<(), StoreError>>;

    /// Periodic upkeep (ClickHouse rolls completed hours into rollups); nothing by default.
    fn maintain(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A whole store: every capability. Implemented for anything that has them all; callers hold the
/// capability they use ([`Stores`]), so a test double implements only what its caller needs.
pub trait InteractionStore: EventSink + InteractionReads + AuditLog + Heartbeats + Upkeep {}

impl<T: EventSink + InteractionReads + AuditLog + Heartbeats + Upkeep + ?Sized> InteractionStore
    for T
{
}

/// One store seen by capability, each a handle on the same store unless a caller (a test) puts
/// another in its place.
#[derive(Clone)]
pub struct Stores {
    pub events: Arc<dyn EventSink>,
    pub reads: Arc<dyn InteractionReads>,
    pub audit: Arc<dyn AuditLog>,
    pub heartbeats: Arc<dyn Heartbeats>,
    pub upkeep: Arc<dyn Upkeep>,
}

impl Stores {
    /// Every capability from one store.
    pub fn of<S: InteractionStore + 'static>(store: Arc<S>) -> Self {
        Self::of_dyn(store)
    }

    /// Every capability from one store behind a trait object.
    pub fn of_dyn(store: Arc<dyn InteractionStore>) -> Self {
        Self {
            events: store.clone(),
            reads: store.clone(),
            audit: store.clone(),
            heartbeats: store.clone(),
            upkeep: store,
        }
    }
}

impl<S: InteractionStore + 'static> From<Arc<S>> for Stores {
    fn from(store: Arc<S>) -> Self {
        Self::of(store)
    }
}

impl From<Arc<dyn InteractionStore>> for Stores {
    fn from(store: Arc<dyn InteractionStore>) -> Self {
        Self::of_dyn(store)
    }
}

/// One insert in progress ([`EventSink::open_insert`]). Dropped without [`EventInsert::end`],
/// it is abandoned; events a store applied already stay applied, which is harmless, since applying
/// an event again changes nothing.
pub trait EventInsert: Send {
    /// Adds `events` to the insert.
    fn write<'a>(
        &'a mut self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ends the insert; returns once the store has made every event written durable.
    fn end<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), StoreError>>
    where
        Self: 'a;
}

/// The default insert: the pieces gathered and inserted at once.
pub(crate) struct GatheredInsert<'s, S: ?Sized> {
    store: &'s S,
    events: Vec<InteractionEvent>,
}

impl<'s, S: EventSink + ?Sized> GatheredInsert<'s, S> {
    /// An insert into `store` that gathers its pieces and inserts them when it ends.
    pub(crate) fn open(store: &'s S) -> Box<dyn EventInsert + 's> {
        Box::new(Self {
            store,
            events: Vec::new(),
        })
    }
}

impl<S: EventSink + ?Sized> EventInsert for GatheredInsert<'_, S> {
    fn write<'a>(
        &'a mut self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.events.extend_from_slice(events);
        Box::pin(async { Ok(()) })
    }

    fn end<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), StoreError>>
    where
        Self: 'a,
    {
        Box::pin(async move { self.store.insert(&self.events).await })
    }
}

/// The time an interaction is filed under: its reported timestamp, else its start, else when the
/// coordinator first heard of it.
pub fn interaction_time_ms(i: &Interaction) -> i64 {
    i.fields
        .timestamp_ms
        .or(i.fields.start_time_ms)
        .unwrap_or(i.first_received_ms)
}
