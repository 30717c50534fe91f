//! WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs inside the commit
//! that crosses its threshold, so the thread applying the spool's batches also copied the WAL
//! back into the database and fsynced it: a third of its time in the ingest bench's profile. Here
//! the writer's commits only count the WAL's pages (SQLite's WAL hook); past SQLite's own
//! threshold a second connection copies what was committed while the writer goes on with the next
//! batch. Past a much higher bound the writer copies itself, so the WAL stays bounded if the
//! thread falls behind.

use std::ffi::c_int;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;

use crate::store::StoreError;

/// WAL pages after which the checkpoint thread copies them: SQLite's own default threshold, so
/// the database file is written (and fsynced) as often as before, only not by the writer.
pub(super) const THREAD_CHECKPOINT_PAGES: c_int = 1_000;

/// WAL pages (4 KiB each by default) after which the writer checkpoints itself: the bound on the
/// WAL when the checkpoint thread lags.
pub(super) const WRITER_CHECKPOINT_PAGES: c_int = 16_384;

/// Starts the checkpoint thread on its own connection to the database at `path` and hooks
/// `writer`'s commits to it. The thread ends when `writer` is closed.
pub(super) fn start(path: &Path, writer: &mut Connection) -> Result<(), StoreError> {
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
        .spawn(move || {
            super::writer::lower_this_threads_priority();
            checkpoint_when_woken(&conn, &woken)
        })
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot start the SQLite checkpoint thread: {e}"))
        })?;
    // Replaces SQLite's automatic checkpoint, which is itself a WAL hook.
    writer
        .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
            if pages >= WRITER_CHECKPOINT_PAGES {
                // The commit happened whatever this answers: a failed copy is only reported.
                if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    tracing::warn!(error = %e, pages, "SQLite checkpoint by the writer failed");
                }
            } else if pages >= THREAD_CHECKPOINT_PAGES {
                // Full: a checkpoint is already asked for, and it copies this commit too.
                if let Err(TrySendError::Disconnected(())) = wake.try_send(()) {
                    tracing::warn!(
                        pages,
                        "the SQLite checkpoint thread has stopped; the writer copies its WAL at {WRITER_CHECKPOINT_PAGES} pages"
                    );
                }
            }
            Ok(())
        }))
        .map_err(super::unavailable)
}

fn checkpoint_when_woken(conn: &Connection, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        // PASSIVE: copies what no reader still needs and never blocks the writer. The WAL
        // starts over at the writer's next transaction once everything was copied.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = done {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the next commit past the threshold asks again");
        }
    }
}
