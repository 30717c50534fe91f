//! The spool's files: segments of framed records (`[length u32][crc32 u32][record]`, the record in
//! the compact record of `InteractionEvent::encode_into`, or JSON where an earlier version wrote it), and the
//! shipper's checkpoint.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Position, SpoolError};
use crate::interaction::InteractionEvent;

pub(super) const HEADER: usize = 8;
/// One record may not exceed this (a batch request is split into records per event).
pub(super) const MAX_RECORD: usize = 16 * 1024 * 1024;

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:020}.log"))
}

pub(super) fn segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The next segment, written ahead as zeros. Records then go into blocks the file already has, so
/// the fsync of an acknowledgement writes only the data: appending to a growing file also wrote its
/// new size and blocks at every fsync (single reports at 4 connections: 11–28 % fewer per second).
pub(super) const PREPARED: &str = "prepared.seg";
/// Where [`PREPARED`] is written, so that a crash never leaves half of one under that name.
pub(super) const PREPARING: &str = "prepared.seg.tmp";
/// Zeros written (and synced) at a time while preparing: small enough not to queue a large write
/// ahead of the acknowledgements' fsyncs.
const PREPARE_STEP: u64 = 1 << 20;

/// Writes a zero-filled segment of `bytes` as [`PREPARED`] unless one is waiting already.
pub(super) fn prepare_segment(dir: &Path, bytes: u64) -> Result<(), SpoolError> {
    let prepared = dir.join(PREPARED);
    if prepared.exists() {
        return Ok(());
    }
    let tmp = dir.join(PREPARING);
    let zeros = vec![0u8; PREPARE_STEP.min(bytes) as usize];
    let written = private_file()
        .write(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut file| {
            let mut written = 0;
            while written < bytes {
                let step = (bytes - written).min(PREPARE_STEP) as usize;
                file.write_all(&zeros[..step])?;
                file.sync_data()?;
                written += step as u64;
            }
            Ok(())
        });
    if let Err(e) = written {
        // A full disk, most likely: the space goes back to the records.
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, &prepared).map_err(io_err(dir))?;
    sync_dir(dir)
}

/// Moves the prepared segment, when one is waiting, to `path`; answers whether it did.
pub(super) fn take_prepared(dir: &Path, path: &Path) -> Result<bool, SpoolError> {
    match fs::rename(dir.join(PREPARED), path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Opens segment `path` for writing at offsets (never appending: a prepared segment's end is its
/// zeros'), taking the prepared segment for it when one is waiting.
pub(super) fn open_segment(dir: &Path, path: &Path) -> Result<File, SpoolError> {
    take_prepared(dir, path)?;
    private_file().write(true).open(path).map_err(io_err(path))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Appends `event` framed to `out`; answers the size of its payload.
pub fn encode_into(event: &InteractionEvent, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    event.encode_into(out);
    let len = out.len() - start - HEADER;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    len
}

/// `event` framed.
pub fn encode(event: &InteractionEvent) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_into(event, &mut frame);
    frame
}

/// Reads a frame's payload: the compact form, or JSON as versions before it wrote.
fn decode(payload: &[u8]) -> Result<InteractionEvent, String> {
    if payload.first() == Some(&b'{') {
        serde_json::from_slice(payload).map_err(|e| e.to_string())
    } else {
        InteractionEvent::decode(payload).map_err(|e| e.to_string())
    }
}

/// Result of reading one frame.
pub(super) enum Frame {
    Record(Box<InteractionEvent>, u64),
    /// Clean end of the readable bytes.
    End,
    /// A torn or corrupt frame at this offset.
    Bad(String),
}

/// Frames read in order from one segment, through a buffer: one read call per megabyte instead
/// of a seek and two reads per record, which is what the shipper spent its time on.
pub(super) struct Frames {
    file: BufReader<File>,
    offset: u64,
}

impl Frames {
    /// Reads `file` from `offset` on.
    pub(super) fn new(mut file: File, offset: u64) -> io::Result<Self> {
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            file: BufReader::with_capacity(READ_BUFFER, file),
            offset,
        })
    }

    /// Where the next frame starts.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// The frame at [`Self::offset`]; `limit` is where the readable bytes end. A bad frame leaves
    /// the offset where that frame starts.
    pub(super) fn next(&mut self, limit: u64) -> io::Result<Frame> {
        let offset = self.offset;
        if offset + HEADER as u64 > limit {
            return Ok(if offset == limit {
                Frame::End
            } else {
                Frame::Bad("truncated header".into())
            });
        }
        let mut header = [0u8; HEADER];
        self.file.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD || offset + (HEADER + len) as u64 > limit {
            self.rewind()?;
            return Ok(Frame::Bad(format!("record length {len} runs past the end")));
        }
        let mut payload = vec![0u8; len];
        self.file.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            self.rewind()?;
            return Ok(Frame::Bad("checksum mismatch".into()));
        }
        match decode(&payload) {
            Ok(event) => {
                self.offset = offset + (HEADER + len) as u64;
                Ok(Frame::Record(Box::new(event), self.offset))
            }
            Err(e) => {
                self.rewind()?;
                Ok(Frame::Bad(format!("undecodable record: {e}")))
            }
        }
    }

    /// Back to the start of the frame just tried, so the offset stays true.
    fn rewind(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.offset)).map(|_| ())
    }
}

/// How much of a segment one read takes in.
const READ_BUFFER: usize = 1 << 20;

pub(super) fn load_checkpoint(dir: &Path) -> Position {
    fs::read_to_string(dir.join("checkpoint"))
        .ok()
        .and_then(|t| {
            let (s, o) = t.trim().split_once(':')?;
            Some(Position {
                segment: s.parse().ok()?,
                offset: o.parse().ok()?,
            })
        })
        .unwrap_or_default()
}

/// Options that create a file only its owner can read (the spool holds what MCPs reported).
pub fn private_file() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates `dir` (and its parents) readable by its owner only, when it does not exist yet.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), SpoolError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err(dir))
}

pub(super) fn store_checkpoint(dir: &Path, pos: Position) -> Result<(), SpoolError> {
    let tmp = dir.join("checkpoint.tmp");
    let mut f = private_file()
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(format!("{}:{}\n", pos.segment, pos.offset).as_bytes())
        .map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, dir.join("checkpoint")).map_err(io_err(dir))?;
    sync_dir(dir)
}
