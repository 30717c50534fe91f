//! WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs inside the commit
//! that crosses its threshold, so the thread applying the spool's batches also copied the WAL
//! back into the database and fsynced it: a third of its time in the ingest bench's profile. Here
//! a second connection copies what was committed while the writer goes on with the next batch.
//! The writer keeps a (much higher) automatic threshold as the bound on the WAL's size if this
//! thread falls behind.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use rusqlite::Connection;

use crate::store::StoreError;

/// WAL pages (4 KiB each by default) after which the writer checkpoints itself: the bound on the
/// WAL when the checkpoint thread lags.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 16_384;

/// Asks the checkpoint thread to copy what was committed; the thread ends when this is dropped.
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread, on its own connection to the database at `path`.
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {} for checkpoints: {e}",
                path.display()
            ))
        })?;
        // A passive checkpoint never waits for the writer, but opening the WAL index can.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(super::unavailable)?;
        let (wake, woken) = sync_channel(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_when_woken(&conn, &woken))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the SQLite checkpoint thread: {e}"))
            })?;
        Ok(Self { wake })
    }

    /// After a commit: one checkpoint soon, however many commits ask before it runs.
    pub(super) fn wake(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::warn!(
                    "the SQLite checkpoint thread has stopped; the writer checkpoints on its own"
                );
            }
        }
    }
}

fn checkpoint_when_woken(conn: &Connection, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        // PASSIVE: copies what no reader still needs and never blocks the writer. The WAL
        // starts over at the writer's next transaction once everything was copied.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = done {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the next commit tries again");
        }
    }
}
