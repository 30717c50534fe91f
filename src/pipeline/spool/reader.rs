//! The shipper's side of the spool.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::segments::{encode, io_err, segment_path, segments, store_checkpoint, Frame, Frames};
use super::{Inner, Position, SpoolError, State};
use crate::interaction::InteractionEvent;

/// The shipper's side: reads confirmed-durable records in order and commits progress.
pub struct SpoolReader {
    pub(super) inner: Arc<Inner>,
    pub(super) position: Position,
    /// Corrupt regions read past and not yet committed, by where they start.
    pub(super) skipped: BTreeMap<Position, Skipped>,
    /// The spool bytes of the records the last `read_batch` returned.
    pub(super) last_batch_bytes: u64,
}

/// A region of a segment that could not be read back (damage on disk): what the reader passed
/// over, so that it can be set aside and no longer counted as waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub at: Position,
    pub reason: String,
    pub bytes: Vec<u8>,
}

impl SpoolReader {
    /// Up to `max` records from the current position, and where reading would continue after them.
    /// Corrupt records inside older segments are skipped with an error log (they were acknowledged,
    /// so this is data loss on disk that an operator must hear about).
    pub fn read_batch(
        &mut self,
        max: usize,
    ) -> Result<(Vec<InteractionEvent>, Position), SpoolError> {
        self.read_batch_from(self.position, max)
    }

    /// Like [`Self::read_batch`], from `from` (at or after the position): how the shipper reads
    /// the next batch while the store still takes the one before it.
    pub fn read_batch_from(
        &mut self,
        from: Position,
        max: usize,
    ) -> Result<(Vec<InteractionEvent>, Position), SpoolError> {
        let mut out = Vec::with_capacity(max.min(READ_AHEAD_CAPACITY));
        let next = self.read_batch_within(from, max, u64::MAX, &mut out)?;
        Ok((out, next))
    }

    /// Like [`Self::read_batch_from`], into `out` (emptied first, its room kept), stopping also
    /// once the records read take `max_bytes` of the spool (at least one record is read). Damaged
    /// regions read past are kept until committed past (see [`Self::skipped_between`]).
    pub fn read_batch_within(
        &mut self,
        from: Position,
        max: usize,
        max_bytes: u64,
        out: &mut Vec<InteractionEvent>,
    ) -> Result<Position, SpoolError> {
        let read = self
            .region_reader()
            .read_within(from, Position::END, max, max_bytes, out)?;
        self.note_skipped(read.skipped);
        self.last_batch_bytes = read.bytes;
        Ok(read.next)
    }

    /// A reader of records that shares this spool, for the shipper's inserts to read their
    /// regions with (committing stays with this reader).
    pub fn region_reader(&self) -> RegionReader {
        RegionReader {
            inner: self.inner.clone(),
        }
    }

    /// Keeps damaged regions a [`RegionReader`] passed over, so that committing past them no
    /// longer counts their bytes as waiting.
    pub fn note_skipped(&mut self, skipped: Vec<Skipped>) {
        for region in skipped {
            self.skipped.entry(region.at).or_insert(region);
        }
    }

    /// The spool bytes of the records the last [`Self::read_batch`] returned (what
    /// [`Self::framed_size`] computes, without encoding them again).
    pub fn last_batch_bytes(&self) -> u64 {
        self.last_batch_bytes
    }

    /// Records that everything before `to` reached the store: moves the checkpoint and deletes
    /// segments that are wholly shipped. The file work (two fsyncs, and removing a segment, which
    /// takes milliseconds for a full one) runs on the blocking pool: on a runtime thread it held
    /// up the requests that thread was serving.
    pub async fn commit(
        &mut self,
        to: Position,
        records: u64,
        bytes: u64,
    ) -> Result<(), SpoolError> {
        let dir = self.inner.config.dir.clone();
        tokio::task::spawn_blocking(move || {
            store_checkpoint(&dir, to)?;
            for n in segments(&dir)? {
                if n < to.segment {
                    let path = segment_path(&dir, n);
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
            }
            Ok::<(), SpoolError>(())
        })
        .await
        .map_err(|e| SpoolError::Io {
            path: self.inner.config.dir.clone(),
            source: std::io::Error::other(format!("moving the checkpoint stopped: {e}")),
        })??;
        self.position = to;
        let passed: Vec<Position> = self.skipped.range(..to).map(|(at, _)| *at).collect();
        let skipped_bytes: u64 = passed
            .iter()
            .filter_map(|at| self.skipped.remove(at))
            .map(|s| s.bytes.len() as u64)
            .sum();
        let next_oldest = self.read_batch(1)?.0.first().map(|e| e.received_ms);
        let mut state = self.inner.state();
        if to.segment == state.active && to.offset >= state.durable_len {
            // Caught up with the writer: nothing waits, whatever was counted before.
            state.records = 0;
            state.bytes = 0;
        } else {
            state.records = state.records.saturating_sub(records);
            state.bytes = state.bytes.saturating_sub(bytes + skipped_bytes);
        }
        state.oldest_ms = if state.records == 0 {
            None
        } else {
            next_oldest.or(state.oldest_ms)
        };
        Ok(())
    }

    /// Where reading starts: everything before it was committed.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The corrupt regions read past from `from` up to `to`: what one read passed over, to set
    /// aside before committing `to`.
    pub fn skipped_between(&self, from: Position, to: Position) -> Vec<Skipped> {
        self.skipped
            .range(from..to)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// See [`RegionReader::wait_for_more`].
    pub async fn wait_for_more(&self, read_to: Position, timeout: std::time::Duration) {
        self.region_reader().wait_for_more(read_to, timeout).await;
    }

    /// Bytes a batch of records occupies in the spool.
    pub fn framed_size(events: &[InteractionEvent]) -> u64 {
        events.iter().map(|e| encode(e).len() as u64).sum()
    }
}

/// Reads records from any position up to where the writer made them durable; shares the spool
/// with its [`SpoolReader`] and reads on whatever thread holds it (file I/O: a blocking one).
#[derive(Clone)]
pub struct RegionReader {
    inner: Arc<Inner>,
}

/// What one [`RegionReader::read_within`] read.
#[derive(Debug)]
pub struct RegionRead {
    /// Where reading would continue.
    pub next: Position,
    /// The spool bytes of the records read.
    pub bytes: u64,
    /// Damaged regions passed over.
    pub skipped: Vec<Skipped>,
}

impl RegionReader {
    /// Reads records from `from` into `out` (emptied first, its room kept) until `max` records,
    /// or records taking `max_bytes` of the spool (at least one is read), or `until`, or the end
    /// of what is durable. Corrupt records inside older segments are skipped with an error log
    /// (they were acknowledged, so this is data loss on disk that an operator must hear about).
    /// Callers hand the same few lists back each time: a fresh large list each read had the
    /// kernel zero its pages and the list copy itself as it grew.
    pub fn read_within(
        &self,
        from: Position,
        until: Position,
        max: usize,
        max_bytes: u64,
        out: &mut Vec<InteractionEvent>,
    ) -> Result<RegionRead, SpoolError> {
        let dir = &self.inner.config.dir;
        out.clear();
        out.reserve(max.min(READ_AHEAD_CAPACITY));
        let mut pos = from;
        let mut bytes = 0;
        let mut skipped = Vec::new();
        while out.len() < max && bytes < max_bytes && pos < until {
            let (active, durable) = {
                let s = self.inner.state();
                (s.active, s.durable_len)
            };
            let path = segment_path(dir, pos.segment);
            let limit = if pos.segment == active {
                durable
            } else {
                match fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound && pos.segment < active => {
                        pos = Position {
                            segment: pos.segment + 1,
                            offset: 0,
                        };
                        continue;
                    }
                    Err(e) => return Err(io_err(&path)(e)),
                }
            };
            let limit = if pos.segment == until.segment {
                limit.min(until.offset)
            } else {
                limit
            };
            if pos.offset >= limit {
                if pos.segment < active && pos.segment < until.segment {
                    pos = Position {
                        segment: pos.segment + 1,
                        offset: 0,
                    };
                    continue;
                }
                break;
            }
            let file = File::open(&path).map_err(io_err(&path))?;
            let mut frames = Frames::new(file, pos.offset).map_err(io_err(&path))?;
            while out.len() < max && bytes < max_bytes {
                match frames.next(limit).map_err(io_err(&path))? {
                    Frame::Record(event, next) => {
                        out.push(*event);
                        bytes += next - pos.offset;
                        pos.offset = next;
                    }
                    Frame::End => break,
                    Frame::Bad(why) => {
                        tracing::error!(segment = %path.display(), offset = pos.offset, reason = %why, "corrupt spool record; skipping the rest of the segment");
                        let bytes = read_region(&path, pos.offset, limit).unwrap_or_default();
                        skipped.push(Skipped {
                            at: pos,
                            reason: why,
                            bytes,
                        });
                        pos.offset = limit;
                        break;
                    }
                }
            }
        }
        Ok(RegionRead {
            next: pos,
            bytes,
            skipped,
        })
    }

    /// Waits until the writer has committed records after `read_to` (where the last read
    /// stopped), or `timeout` passes. A commit between that read and this wait counts: waiting
    /// for the next commit signal alone missed it, and the records waited out the timeout.
    pub async fn wait_for_more(&self, read_to: Position, timeout: std::time::Duration) {
        self.wait_until(timeout, |state| {
            Position {
                segment: state.active,
                offset: state.durable_len,
            } > read_to
        })
        .await;
    }

    /// Waits until `ready` holds of the spool's state after a commit (or already does), or
    /// `timeout` passes.
    async fn wait_until(&self, timeout: std::time::Duration, ready: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a commit between the look and the wait still wakes it.
            let commit = self.inner.committed.notified();
            tokio::pin!(commit);
            commit.as_mut().enable();
            if ready(&self.inner.state()) {
                return;
            }
            if tokio::time::timeout_at(deadline, commit).await.is_err() {
                return;
            }
        }
    }
}

/// Room reserved for a batch up front; larger batches grow as they are read.
const READ_AHEAD_CAPACITY: usize = 10_000;

/// The bytes of `path` from `from` to `to` (a region that could not be read as records).
fn read_region(path: &Path, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(to.saturating_sub(from)).read_to_end(&mut bytes)?;
    Ok(bytes)
}
