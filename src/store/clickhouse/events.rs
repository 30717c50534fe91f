//! Writing events: one streamed `INSERT` per shipper region, one part on the server.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::rows::EventRow;
use super::sql::TABLE;
use super::{classify, ClickHouseStore, INSERTS_IN_FLIGHT};
use crate::interaction::InteractionEvent;
use crate::store::{EventInsert, EventSink, StoreError};

/// One `INSERT` kept open while events are written into it: the client compresses and sends the
/// rows as they come, and the server writes them as one part when it ends.
struct StreamedInsert<'s> {
    store: &'s ClickHouseStore,
    insert: clickhouse::insert::Insert<EventRow<'static>>,
    /// The receive times of the rows written, oldest and newest (for rollups they arrive late to).
    received: Option<(i64, i64)>,
}

impl ClickHouseStore {
    async fn open_streamed_insert(&self) -> Result<StreamedInsert<'_>, StoreError> {
        let insert = self
            .client
            .insert::<EventRow<'static>>(TABLE)
            .await
            .map_err(classify)?;
        Ok(StreamedInsert {
            store: self,
            insert,
            received: None,
        })
    }
}

impl EventInsert for StreamedInsert<'_> {
    fn write<'a>(
        &'a mut self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            for event in events {
                self.insert
                    .write(&EventRow::of(event))
                    .await
                    .map_err(classify)?;
                let at = event.received_ms;
                self.received = Some(match self.received {
                    None => (at, at),
                    Some((oldest, newest)) => (oldest.min(at), newest.max(at)),
                });
            }
            Ok(())
        }
        .boxed()
    }

    fn end<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), StoreError>>
    where
        Self: 'a,
    {
        async move {
            let Self {
                store,
                insert,
                received,
            } = *self;
            insert.end().await.map_err(classify)?;
            if let Some((oldest, newest)) = received {
                store.mark_late_insert(oldest, newest).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

impl EventSink for ClickHouseStore {
    fn inserts_in_flight(&self) -> usize {
        INSERTS_IN_FLIGHT
    }

    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut insert = self.open_streamed_insert().await?;
            insert.write(events).await?;
            Box::new(insert).end().await
        }
        .boxed()
    }

    fn open_insert(&self) -> BoxFuture<'_, Result<Box<dyn EventInsert + '_>, StoreError>> {
        async move {
            let insert: Box<dyn EventInsert + '_> = Box::new(self.open_streamed_insert().await?);
            Ok(insert)
        }
        .boxed()
    }
}
