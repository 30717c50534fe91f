//! The durable pipeline: what happens to an accepted event between the acknowledgement and the
//! store. It knows events and the store's write side, nothing of HTTP; the ingest API and the
//! gateway both append to it.
//!
//! **On disk** (`spool/`): segment files `seg-<n>.log` (`n` a zero-padded counter), each record
//! framed as `[length u32 LE][crc32 u32 LE][record]`, the record being the compact form of
//! `InteractionEvent::encode_into` (JSON in spools written before it, still read); `checkpoint`
//! holds the position (segment, offset) up to which the store confirmed everything, replaced
//! atomically; `prepared.seg` is the next segment written ahead as zeros; `poison.ndjson` holds
//! what the store rejected and the bytes of damaged records, one JSON object a line.
//!
//! **Group commit**: an append is acknowledged only after the fsync that covers it; appends that
//! arrive while one fsync runs wait for the next, which covers them all, so one fsync serves every
//! request waiting at that moment.
//!
//! **Deletion**: a segment is deleted only once the checkpoint has passed its last record, that is
//! once the store confirmed every record in it and in every segment before it. The checkpoint
//! moves in spool order. After a crash everything from the checkpoint is shipped again; applying
//! an event twice changes nothing in either store.
//!
//! The shipper (`shipper/`) reads regions from the checkpoint and streams each into one store
//! insert, retrying while the store is away and setting aside what it rejects.

pub mod metrics;
pub mod shipper;
pub mod spool;

pub use metrics::PipelineMetrics;
pub use spool::{Spool, SpoolConfig, SpoolError, SpoolReader, SpoolStats};
