//! The write-ahead spool between the HTTP acknowledgement and the store.
//!
//! Accepted events are appended to segment files (`seg-<n>.log`), each record framed as
//! `[length u32][crc32 u32][record]` (the compact record of `InteractionEvent::encode_into`; JSON
//! in spools an earlier version wrote, which are still read), and fsynced before the request is
//! acknowledged. Appends from concurrent requests are committed together (group commit): one
//! fsync covers every request waiting at that moment, so throughput grows with concurrency
//! instead of collapsing.
//!
//! The shipper reads records in order from a checkpoint (`checkpoint`, replaced atomically),
//! hands batches to the store, moves the checkpoint only after the store confirmed, and deletes a
//! segment only when every record in it is confirmed. After a crash, a torn record at the end of
//! the newest segment (never acknowledged) is cut off and everything from the checkpoint is
//! shipped again; the store's event identity makes the replay harmless.
//!
//! A thread (`spool-preparer`) writes the next segment ahead, full of zeros (`prepared.seg`), so
//! that records go into blocks the file has and an fsync writes only them. A closed segment is
//! cut to its records' end before the next one starts, and the newest one's unused zeros are cut
//! at the next start: every segment but the one being written ends where its records end.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot, Notify};

use crate::interaction::InteractionEvent;
pub use reader::{RegionRead, RegionReader, Skipped, SpoolReader};
use segments::*;
pub use segments::{encode, encode_into, private_file};

mod reader;
mod segments;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({used} of {limit} bytes waiting for the store); retry later")]
    Full { used: u64, limit: u64 },
    #[error("spool I/O failed in {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the spool is shutting down")]
    Closed,
    /// Refused before anything was written: a frame this large could not be read back.
    #[error("record {index} is {size} bytes once stored (free-form parameters are kept as JSON text, escapes included); a record may be at most {limit} bytes")]
    TooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Roll to a new segment past this size.
    pub segment_bytes: u64,
    /// Refuse new events while this many bytes wait for the store.
    pub max_bytes: u64,
}

/// Position of the next unshipped record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    /// After every position: a read up to it stops only where the spool's durable records end.
    pub const END: Position = Position {
        segment: u64::MAX,
        offset: u64::MAX,
    };
}

/// What the spool holds, for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpoolStats {
    pub records: u64,
    pub bytes: u64,
    /// Receive time of the oldest unshipped record, if any.
    pub oldest_ms: Option<i64>,
}

struct State {
    /// Segment being appended to, and how much of it is fsynced (readable).
    active: u64,
    durable_len: u64,
    /// Unshipped records and bytes (from the checkpoint to the durable end).
    records: u64,
    bytes: u64,
    oldest_ms: Option<i64>,
}

/// Records already framed by the requesting task, so the writer thread only writes.
struct AppendRequest {
    frames: Vec<u8>,
    count: u64,
    oldest_ms: Option<i64>,
    done: oneshot::Sender<Result<(), SpoolError>>,
}

/// Handle for appending; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
    appends: mpsc::Sender<AppendRequest>,
}

struct Inner {
    config: SpoolConfig,
    state: Mutex<State>,
    /// Signalled after every commit, for the shipper.
    committed: Notify,
    /// fsyncs so far (each covers every request waiting at that moment).
    commits: std::sync::atomic::AtomicU64,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Spool {
    /// Opens the spool in `config.dir` (creating it), repairs a torn tail, and starts the writer.
    /// Returns the spool and the reader the shipper drains.
    pub fn open(config: SpoolConfig) -> Result<(Spool, SpoolReader), SpoolError> {
        create_private_dir(&config.dir)?;
        let dir = config.dir.clone();
        // A segment being prepared when the process stopped: started again from nothing.
        let _ = fs::remove_file(dir.join(PREPARING));
        let mut existing = segments(&dir)?;
        let checkpoint = load_checkpoint(&dir);
        // Repair: cut the newest segment at its first bad frame (a write the crash interrupted).
        let active = match existing.last().copied() {
            Some(last) => {
                let path = segment_path(&dir, last);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let len = file.metadata().map_err(io_err(&path))?.len();
                let read = file.try_clone().map_err(io_err(&path))?;
                let mut frames = Frames::new(read, 0).map_err(io_err(&path))?;
                loop {
                    let offset = frames.offset();
                    match frames.next(len).map_err(io_err(&path))? {
                        Frame::Record(..) => {}
                        Frame::End => break,
                        Frame::Bad(why) => {
                            if unused_from(&file, offset).map_err(io_err(&path))? {
                                tracing::debug!(segment = %path.display(), offset, "cutting the prepared segment's unused zeros");
                            } else {
                                tracing::warn!(segment = %path.display(), offset, reason = %why, "cutting a torn record off the spool tail (it was never acknowledged)");
                            }
                            file.set_len(offset).map_err(io_err(&path))?;
                            file.sync_all().map_err(io_err(&path))?;
                            break;
                        }
                    }
                }
                last
            }
            None => {
                let first = checkpoint.segment.max(1);
                let path = segment_path(&dir, first);
                open_segment(&dir, &path)?;
                sync_dir(&dir)?;
                existing.push(first);
                first
            }
        };
        let active_path = segment_path(&dir, active);
        let durable_len = fs::metadata(&active_path)
            .map_err(io_err(&active_path))?
            .len();
        // Count what is waiting, for metrics and the size limit.
        let mut stats = SpoolStats::default();
        for &n in existing.iter().filter(|&&n| n >= checkpoint.segment) {
            let path = segment_path(&dir, n);
            let file = File::open(&path).map_err(io_err(&path))?;
            let len = file.metadata().map_err(io_err(&path))?.len();
            let offset = if n == checkpoint.segment {
                checkpoint.offset.min(len)
            } else {
                0
            };
            let mut frames = Frames::new(file, offset).map_err(io_err(&path))?;
            let mut offset = frames.offset();
            while let Frame::Record(event, next) = frames.next(len).map_err(io_err(&path))? {
                stats.records += 1;
                stats.bytes += next - offset;
                stats.oldest_ms.get_or_insert(event.received_ms);
                offset = next;
            }
        }
        let inner = Arc::new(Inner {
            config,
            state: Mutex::new(State {
                active,
                durable_len,
                records: stats.records,
                bytes: stats.bytes,
                oldest_ms: stats.oldest_ms,
            }),
            committed: Notify::new(),
            commits: std::sync::atomic::AtomicU64::new(0),
        });
        let (appends, requests) = mpsc::channel(4096);
        let writer_inner = inner.clone();
        let file = OpenOptions::new()
            .write(true)
            .open(&active_path)
            .map_err(io_err(&active_path))?;
        let prepare = start_preparer(&inner.config)?;
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_loop(writer_inner, requests, file, durable_len, prepare))
            .map_err(io_err(&dir))?;
        let reader = SpoolReader {
            inner: inner.clone(),
            position: Position {
                segment: checkpoint
                    .segment
                    .max(existing.first().copied().unwrap_or(active)),
                offset: if existing.contains(&checkpoint.segment) {
                    checkpoint.offset
                } else {
                    0
                },
            },
            skipped: Default::default(),
            last_batch_bytes: 0,
        };
        Ok((Spool { inner, appends }, reader))
    }

    /// Appends events durably; returns once they are fsynced. A record too large to be read back
    /// refuses the whole request before anything is written (`TooLarge` names it).
    pub async fn append(&self, events: &[InteractionEvent]) -> Result<(), SpoolError> {
        {
            let state = self.inner.state();
            if state.bytes >= self.inner.config.max_bytes {
                return Err(SpoolError::Full {
                    used: state.bytes,
                    limit: self.inner.config.max_bytes,
                });
            }
        }
        let mut frames = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let size = encode_into(event, &mut frames);
            if size > MAX_RECORD {
                return Err(SpoolError::TooLarge {
                    index,
                    size,
                    limit: MAX_RECORD,
                });
            }
        }
        let (done, wait) = oneshot::channel();
        let request = AppendRequest {
            frames,
            count: events.len() as u64,
            oldest_ms: events.iter().map(|e| e.received_ms).min(),
            done,
        };
        self.appends
            .send(request)
            .await
            .map_err(|_| SpoolError::Closed)?;
        wait.await.map_err(|_| SpoolError::Closed)?
    }

    /// How many group commits (fsyncs) the writer has made since start.
    pub fn commits(&self) -> u64 {
        self.inner
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stats(&self) -> SpoolStats {
        let s = self.inner.state();
        SpoolStats {
            records: s.records,
            bytes: s.bytes,
            oldest_ms: s.oldest_ms,
        }
    }
}

/// Whether a frame that did not read is where a prepared segment's unused zeros begin: a zero
/// header (a torn write leaves at least part of its header).
fn unused_from(file: &File, offset: u64) -> io::Result<bool> {
    let mut header = [0u8; HEADER];
    let read = file.read_at(&mut header, offset)?;
    Ok(read > 0 && header[..read].iter().all(|&b| b == 0))
}

/// Starts the thread that prepares the next segment whenever asked (and once now); asking while
/// it is busy is a no-op. It ends with the writer, which holds the sender.
fn start_preparer(config: &SpoolConfig) -> Result<SyncSender<()>, SpoolError> {
    let (prepare, asked) = sync_channel::<()>(1);
    let dir = config.dir.clone();
    let bytes = config.segment_bytes;
    std::thread::Builder::new()
        .name("spool-preparer".into())
        .spawn(move || {
            for () in asked {
                if let Err(e) = prepare_segment(&dir, bytes) {
                    tracing::warn!(error = %e, "could not prepare the next spool segment; it will grow as it is written instead");
                }
            }
        })
        .map_err(io_err(&config.dir))?;
    let _ = prepare.try_send(());
    Ok(prepare)
}

/// The writer thread: takes every request waiting, writes them, one fsync, acknowledges all.
fn write_loop(
    inner: Arc<Inner>,
    mut requests: mpsc::Receiver<AppendRequest>,
    mut file: File,
    mut len: u64,
    prepare: SyncSender<()>,
) {
    let dir = inner.config.dir.clone();
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = requests.try_recv() {
            batch.push(more);
        }
        let mut buffer = Vec::new();
        let mut count = 0u64;
        let mut oldest: Option<i64> = None;
        for request in &batch {
            buffer.extend_from_slice(&request.frames);
            count += request.count;
            oldest = match (oldest, request.oldest_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let active = inner.state().active;
        let path = segment_path(&dir, active);
        let result = file
            .write_all_at(&buffer, len)
            .and_then(|()| file.sync_data())
            .map_err(io_err(&path));
        match &result {
            Ok(()) => {
                inner
                    .commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                len += buffer.len() as u64;
                let mut state = inner.state();
                state.durable_len = len;
                state.records += count;
                state.bytes += buffer.len() as u64;
                if state.oldest_ms.is_none() {
                    state.oldest_ms = oldest;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "spool write failed; the requests are refused, not acknowledged");
                // Drop whatever part of the failed write landed, so the file stays a clean sequence.
                let _ = file.set_len(len);
            }
        }
        for request in batch {
            let _ = request.done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(SpoolError::Io {
                    path: path.clone(),
                    source: io::Error::other(e.to_string()),
                }),
            });
        }
        inner.committed.notify_waiters();
        if len >= inner.config.segment_bytes {
            // Readers take a closed segment's length for where its records end. Records fill a
            // prepared segment before it rolls, unless it was prepared for larger segments (an
            // earlier run's setting): then its zeros past them go first, durably.
            let cut = file.metadata().and_then(|m| {
                if m.len() > len {
                    file.set_len(len)?;
                    file.sync_all()?;
                }
                Ok(())
            });
            if let Err(e) = cut {
                tracing::error!(error = %e, segment = %path.display(), "could not close the spool segment at its last record; continuing in it");
                continue;
            }
            match roll(&inner, &dir) {
                Ok((next, new_file)) => {
                    file = new_file;
                    len = 0;
                    {
                        let mut state = inner.state();
                        state.active = next;
                        state.durable_len = 0;
                    }
                    let _ = prepare.try_send(());
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not start a new spool segment; continuing in the current one")
                }
            }
        }
    }
    let _ = file.sync_all();
}

fn roll(inner: &Inner, dir: &Path) -> Result<(u64, File), SpoolError> {
    let next = inner.state().active + 1;
    let path = segment_path(dir, next);
    let file = open_segment(dir, &path)?;
    sync_dir(dir)?;
    Ok((next, file))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::interaction::Fields;
    use crate::test_dir::TestDir;

    fn dir(name: &str) -> TestDir {
        TestDir::new(&format!("spool-unit-{name}"))
    }

    fn config(d: &Path) -> SpoolConfig {
        SpoolConfig {
            dir: d.to_path_buf(),
            segment_bytes: 2048,
            max_bytes: 1 << 20,
        }
    }

    fn event(i: usize) -> InteractionEvent {
        InteractionEvent::numbered(i)
    }

    /// A spool in a fresh directory named for the test, holding `n` events one by one.
    async fn spool_with(tag: &str, n: usize) -> (TestDir, Spool, SpoolReader) {
        let d = dir(tag);
        let (spool, reader) = Spool::open(config(&d)).unwrap();
        for i in 0..n {
            spool.append(&[event(i)]).await.unwrap();
        }
        (d, spool, reader)
    }

    #[tokio::test]
    async fn a_list_handed_back_holds_only_the_records_read_into_it() {
        let (_d, _spool, mut reader) = spool_with("reused-list", 12).await;
        let mut list = Vec::new();
        let next = reader
            .read_batch_within(reader.position(), 5, u64::MAX, &mut list)
            .unwrap();
        let second = reader
            .read_batch_within(next, 5, u64::MAX, &mut list)
            .unwrap();
        let ids: Vec<&str> = list.iter().map(|e| e.interaction_id.as_str()).collect();
        let expected: Vec<String> = (5..10).map(|i| event(i).interaction_id).collect();
        assert_eq!(
            ids, expected,
            "the records before are gone, not shipped again"
        );
        let (rest, _) = reader.read_batch_from(second, 10).unwrap();
        assert_eq!(rest.len(), 2);
    }

    #[tokio::test]
    async fn damaged_records_are_passed_over_reported_and_no_longer_counted() {
        let (d, spool, mut reader) = spool_with("damaged", 60).await;
        let all = segments(&d).unwrap();
        assert!(all.len() >= 3, "{all:?}");
        // Damage on disk: one byte of the first record's payload in the first segment.
        let first = segment_path(&d, all[0]);
        let mut bytes = fs::read(&first).unwrap();
        bytes[HEADER + 1] ^= 0xff;
        fs::write(&first, &bytes).unwrap();
        let waiting = spool.stats().bytes;

        let from = reader.position();
        let (events, next) = reader.read_batch(5).unwrap();
        assert_eq!(
            reader.last_batch_bytes(),
            SpoolReader::framed_size(&events),
            "the reader counts what it read as the writer framed it"
        );
        assert_eq!(events.len(), 5, "reading goes on in the next segment");
        let skipped = reader.skipped_between(from, next);
        assert_eq!(skipped.len(), 1);
        assert_eq!(
            skipped[0].bytes.len(),
            bytes.len(),
            "the whole damaged remainder"
        );
        reader
            .commit(next, 5, SpoolReader::framed_size(&events))
            .await
            .unwrap();
        assert_eq!(
            spool.stats().bytes,
            waiting - bytes.len() as u64 - SpoolReader::framed_size(&events),
            "the damaged bytes no longer count as waiting"
        );
        assert!(
            reader.skipped_between(from, next).is_empty(),
            "reported once"
        );
        loop {
            let (events, next) = reader.read_batch(100).unwrap();
            if events.is_empty() {
                break;
            }
            let size = SpoolReader::framed_size(&events);
            reader
                .commit(next, events.len() as u64, size)
                .await
                .unwrap();
        }
        assert_eq!((spool.stats().records, spool.stats().bytes), (0, 0));
    }

    #[tokio::test]
    async fn a_record_too_large_to_read_back_is_refused_and_nothing_is_written() {
        let d = dir("too-large");
        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        let mut huge = event(0);
        huge.fields.error_message = Some("x".repeat(MAX_RECORD + 1));
        let err = spool.append(&[event(1), huge]).await.unwrap_err();
        assert!(
            matches!(err, SpoolError::TooLarge { index: 1, .. }),
            "{err}"
        );
        assert_eq!((spool.stats().records, spool.stats().bytes), (0, 0));
        spool.append(&[event(2)]).await.unwrap();
        let (events, _) = reader.read_batch(10).unwrap();
        let ids: Vec<&str> = events.iter().map(|e| e.interaction_id.as_str()).collect();
        assert_eq!(ids, ["i2"]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn spool_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        // The spool makes its own directory (the test's is made by the test, with its mode).
        let root = dir("private");
        let d = root.join("spool");
        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        for i in 0..40 {
            spool.append(&[event(i)]).await.unwrap();
        }
        let (events, next) = reader.read_batch(100).unwrap();
        let bytes = SpoolReader::framed_size(&events);
        reader
            .commit(next, events.len() as u64, bytes)
            .await
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700, "the spool directory");
        let files: Vec<PathBuf> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() >= 2, "{files:?}");
        for file in files {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[tokio::test]
    async fn concurrent_appends_are_all_readable_in_order_across_segments() {
        let d = dir("order");
        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        let appends = (0..100).map(|i| {
            let spool = spool.clone();
            async move { spool.append(&[event(i)]).await.unwrap() }
        });
        futures::future::join_all(appends).await;
        // The writer rolls segments between commits; one more append comes after that roll.
        spool.append(&[event(100)]).await.unwrap();
        assert_eq!(spool.stats().records, 101);
        let (events, pos) = reader.read_batch(1000).unwrap();
        assert_eq!(events.len(), 101);
        assert_eq!(events[100].interaction_id, "i100");
        assert!(segments(&d).unwrap().len() > 1, "small segments roll over");
        let bytes = SpoolReader::framed_size(&events);
        reader.commit(pos, 101, bytes).await.unwrap();
        assert_eq!(spool.stats(), SpoolStats::default());
        assert!(
            segments(&d).unwrap().len() <= 2,
            "shipped segments are deleted"
        );
        let _ = fs::remove_dir_all(&d);
    }

    /// Waits (up to 10 s) for the preparer to have the next segment ready.
    fn wait_for_prepared(d: &Path) {
        for _ in 0..1000 {
            if d.join(PREPARED).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no segment was prepared in {}", d.display());
    }

    /// Appends events numbered from `next` one by one until `d` holds `segments_wanted`
    /// segments; answers the next number.
    async fn append_until_segments(
        d: &Path,
        spool: &Spool,
        segments_wanted: usize,
        mut next: usize,
    ) -> usize {
        while segments(d).unwrap().len() < segments_wanted {
            spool.append(&[event(next)]).await.unwrap();
            next += 1;
        }
        next
    }

    /// Every frame of segment `n` reads, up to exactly its file's end.
    fn ends_at_its_last_record(d: &Path, n: u64) -> bool {
        let path = segment_path(d, n);
        let len = fs::metadata(&path).unwrap().len();
        let mut frames = Frames::new(File::open(&path).unwrap(), 0).unwrap();
        loop {
            match frames.next(len).unwrap() {
                Frame::Record(..) => {}
                Frame::End => return true,
                Frame::Bad(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn segments_are_written_into_prepared_zeros_and_read_back_exactly_after_a_restart() {
        let d = dir("prepared");
        let (spool, _reader) = Spool::open(config(&d)).unwrap();
        wait_for_prepared(&d);
        let mut appended = append_until_segments(&d, &spool, 2, 0).await;
        let [closed, active] = segments(&d).unwrap()[..] else {
            panic!("two segments")
        };
        assert!(ends_at_its_last_record(&d, closed));
        assert_eq!(
            fs::metadata(segment_path(&d, active)).unwrap().len(),
            config(&d).segment_bytes,
            "the new segment is the prepared one, its records still to come"
        );
        for _ in 0..3 {
            spool.append(&[event(appended)]).await.unwrap();
            appended += 1;
        }
        drop((spool, _reader));

        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        assert!(
            ends_at_its_last_record(&d, active),
            "the unused zeros are cut at the start"
        );
        assert_eq!(spool.stats().records, appended as u64);
        spool.append(&[event(appended)]).await.unwrap();
        let (events, _) = reader.read_batch(10_000).unwrap();
        let ids: Vec<String> = events.into_iter().map(|e| e.interaction_id).collect();
        let expected: Vec<String> = (0..=appended).map(|i| format!("i{i}")).collect();
        assert_eq!(
            ids, expected,
            "every record once, in order, none from the zeros"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_segment_prepared_larger_than_segments_now_are_is_closed_at_its_last_record() {
        let d = dir("prepared-larger");
        let larger = SpoolConfig {
            segment_bytes: 4 * config(&d).segment_bytes,
            ..config(&d)
        };
        drop(Spool::open(larger).unwrap());
        wait_for_prepared(&d);
        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        let appended = append_until_segments(&d, &spool, 3, 0).await;
        let prepared_larger = segments(&d).unwrap()[1];
        assert!(
            ends_at_its_last_record(&d, prepared_larger),
            "its zeros past the records are cut when the next segment starts"
        );
        let (events, _) = reader.read_batch(10_000).unwrap();
        assert_eq!(events.len(), appended);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_torn_record_in_a_prepared_segment_is_cut_with_the_zeros_after_it() {
        let d = dir("torn-prepared");
        {
            let (spool, _reader) = Spool::open(config(&d)).unwrap();
            wait_for_prepared(&d);
            append_until_segments(&d, &spool, 2, 0).await;
        }
        let records_before = Spool::open(config(&d)).unwrap().0.stats().records;
        // Half a record written into the zeros, as a crash in the middle of a write leaves it.
        let active = *segments(&d).unwrap().last().unwrap();
        let path = segment_path(&d, active);
        let end = fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&encode(&event(999))[..10], end).unwrap();
        file.set_len(end + 512).unwrap();
        drop(file);
        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        assert_eq!(spool.stats().records, records_before);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            end,
            "cut at the torn record"
        );
        let (events, _) = reader.read_batch(10_000).unwrap();
        assert!(events.iter().all(|e| e.interaction_id != "i999"));
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_rest_replays_after_restart() {
        let d = dir("torn");
        {
            let (spool, _reader) = Spool::open(config(&d)).unwrap();
            spool.append(&[event(1), event(2)]).await.unwrap();
        }
        // A crash in the middle of a write leaves half a record behind.
        let last = *segments(&d).unwrap().last().unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(&d, last))
            .unwrap();
        f.write_all(&encode(&event(3))[..10]).unwrap();
        drop(f);
        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        assert_eq!(spool.stats().records, 2);
        let (events, _) = reader.read_batch(10).unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| e.interaction_id.as_str())
                .collect::<Vec<_>>(),
            ["i1", "i2"]
        );
        spool.append(&[event(4)]).await.unwrap();
        let (events, _) = reader.read_batch(10).unwrap();
        assert_eq!(events.len(), 3, "new appends follow the repaired tail");
        let _ = fs::remove_dir_all(&d);
    }

    /// A spool an earlier version wrote (records as JSON) is read after the upgrade, before and
    /// beside the compact records appended after it.
    #[tokio::test]
    async fn records_an_earlier_version_wrote_as_json_are_still_read() {
        let d = dir("json");
        create_private_dir(&d).unwrap();
        let old = InteractionEvent {
            fields: Fields {
                user_id: Some("u".into()),
                processing_time: Some(1.5),
                ..Fields::default()
            },
            ..event(1)
        };
        let payload = serde_json::to_vec(&old).unwrap();
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        fs::write(segment_path(&d, 1), &frame).unwrap();
        let (spool, mut reader) = Spool::open(config(&d)).unwrap();
        assert_eq!(spool.stats().records, 1, "counted, not cut as a torn tail");
        spool.append(&[event(2)]).await.unwrap();
        let (events, _) = reader.read_batch(10).unwrap();
        assert_eq!(events, [old, event(2)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_instead_of_growing() {
        let d = dir("full");
        let (spool, _reader) = Spool::open(SpoolConfig {
            max_bytes: 20,
            ..config(&d)
        })
        .unwrap();
        spool.append(&[event(1)]).await.unwrap();
        assert!(matches!(
            spool.append(&[event(2)]).await,
            Err(SpoolError::Full { .. })
        ));
        let _ = fs::remove_dir_all(&d);
    }
}
