//! Connecting on first use, so the ingest server starts (and spools) while ClickHouse is down.

use std::collections::HashMap;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::super::metrics::{Breakdown, McpMetrics, MetricsCell, TimeRange};
use super::super::{
    AuditEntry, AuditLog, EventInsert, EventSink, Heartbeats, HistoryPage, HistoryQuery,
    InteractionReads, StoreError, Upkeep, VersionCount,
};
use super::{ClickHouseConfig, ClickHouseStore};
use crate::interaction::InteractionEvent;

/// A ClickHouse store that connects on first use and again after failures, so the ingest server
/// starts (and spools) while ClickHouse is still down.
pub struct LazyClickHouseStore {
    config: ClickHouseConfig,
    store: tokio::sync::OnceCell<ClickHouseStore>,
}

impl LazyClickHouseStore {
    pub fn new(config: ClickHouseConfig) -> Self {
        Self {
            config,
            store: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self) -> Result<&ClickHouseStore, StoreError> {
        self.store
            .get_or_try_init(|| ClickHouseStore::connect(&self.config))
            .await
    }
}

impl EventSink for LazyClickHouseStore {
    fn inserts_in_flight(&self) -> usize {
        super::INSERTS_IN_FLIGHT
    }

    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.get().await?.insert(events).await }.boxed()
    }

    fn open_insert(&self) -> BoxFuture<'_, Result<Box<dyn EventInsert + '_>, StoreError>> {
        async move { self.get().await?.open_insert().await }.boxed()
    }
}

impl InteractionReads for LazyClickHouseStore {
    fn breakdown<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
        by: Breakdown,
    ) -> BoxFuture<'a, Result<Vec<MetricsCell>, StoreError>> {
        async move { self.get().await?.breakdown(mcp_id, range, by).await }.boxed()
    }

    fn history_page<'a>(
        &'a self,
        q: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        async move { self.get().await?.history_page(q).await }.boxed()
    }

    fn reported_versions(
        &self,
        range: TimeRange,
    ) -> BoxFuture<'_, Result<Vec<VersionCount>, StoreError>> {
        async move { self.get().await?.reported_versions(range).await }.boxed()
    }

    fn metrics<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>> {
        async move { self.get().await?.metrics(mcp_id, range).await }.boxed()
    }
}

impl AuditLog for LazyClickHouseStore {
    fn record_access<'a>(&'a self, e: &'a AuditEntry) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.get().await?.record_access(e).await }.boxed()
    }

    fn audit_log(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        async move { self.get().await?.audit_log(limit).await }.boxed()
    }
}

impl Heartbeats for LazyClickHouseStore {
    fn record_heartbeats<'a>(
        &'a self,
        beats: &'a [(String, i64)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.get().await?.record_heartbeats(beats).await }.boxed()
    }

    fn heartbeats(&self) -> BoxFuture<'_, Result<HashMap<String, i64>, StoreError>> {
        async move { self.get().await?.heartbeats().await }.boxed()
    }
}

impl Upkeep for LazyClickHouseStore {
    fn maintain(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { self.get().await?.maintain().await }.boxed()
    }

    fn expire<'a>(
        &'a self,
        e: &'a super::super::retention::Expiry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.get().await?.expire(e).await }.boxed()
    }
}
