//! Frames, segment and checkpoint names, and reading a segment frame by frame.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::frame::{HEADER_LEN, MAX_RECORD_LEN};

const CHECKPOINT_PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";

pub(super) fn segment_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("{index:08}"))
}

pub(super) fn checkpoint_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("{CHECKPOINT_PREFIX}{index:08}"))
}

pub(super) fn checkpoint_tmp_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("{CHECKPOINT_PREFIX}{index:08}{TMP_SUFFIX}"))
}

fn parse_index(s: &str) -> Option<u32> {
    if s.len() >= 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// What a WAL (or checkpoint) directory holds; other entries are ignored.
#[derive(Debug, Default)]
pub(super) struct Layout {
    /// Segment numbers, ascending.
    pub(super) segments: Vec<u32>,
    /// Complete checkpoints (by the last segment each covers), ascending.
    pub(super) checkpoints: Vec<u32>,
    /// Unfinished checkpoint directories left by a crash.
    pub(super) tmp: Vec<PathBuf>,
}

impl Layout {
    /// Reads `dir`; a missing directory is an empty WAL.
    pub(super) fn scan(dir: &Path) -> Result<Self, WalError> {
        let mut layout = Layout::default();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(layout),
            Err(e) => return Err(WalError::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| WalError::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(index) = parse_index(name) {
                layout.segments.push(index);
            } else if let Some(rest) = name.strip_prefix(CHECKPOINT_PREFIX) {
                if rest
                    .strip_suffix(TMP_SUFFIX)
                    .and_then(parse_index)
                    .is_some()
                {
                    layout.tmp.push(entry.path());
                } else if let Some(index) = parse_index(rest) {
                    layout.checkpoints.push(index);
                }
            }
        }
        layout.segments.sort_unstable();
        layout.checkpoints.sort_unstable();
        Ok(layout)
    }

    /// Fails unless the segments are numbered without gaps.
    pub(super) fn check_contiguous(&self, dir: &Path) -> Result<(), WalError> {
        for pair in self.segments.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(WalError::Layout {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "segment {:08} is missing between {:08} and {:08}",
                        pair[0] + 1,
                        pair[0],
                        pair[1]
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Why a segment's frames stop being valid at some offset.
#[derive(Debug)]
pub(super) enum FrameError {
    Io(io::Error),
    Bad { offset: u64, reason: String },
}

/// Reads a segment's frames in order, one payload at a time.
#[derive(Debug)]
pub(super) struct FrameReader {
    path: PathBuf,
    file: BufReader<File>,
    /// Offset of the next frame.
    offset: u64,
    len: u64,
}

impl FrameReader {
    pub(super) fn open(path: &Path) -> Result<Self, WalError> {
        let file = File::open(path).map_err(|e| WalError::io(path, e))?;
        let len = file.metadata().map_err(|e| WalError::io(path, e))?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(256 << 10, file),
            offset: 0,
            len,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Offset of the next frame: after the last one read, the valid length.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Goes on reading at `offset` (a frame boundary [`find_next_frame`] found).
    pub(super) fn seek(&mut self, offset: u64) -> Result<(), WalError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| WalError::io(&self.path, e))?;
        self.offset = offset;
        Ok(())
    }

    /// Reads the next frame's payload into `buf`; `Ok(None)` at a clean end.
    pub(super) fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<()>, FrameError> {
        let left = self.len - self.offset;
        if left == 0 {
            return Ok(None);
        }
        let bad = |reason: String| FrameError::Bad {
            offset: self.offset,
            reason,
        };
        if left < HEADER_LEN as u64 {
            return Err(bad(format!(
                "truncated frame header ({left} of {HEADER_LEN} bytes)"
            )));
        }
        let mut header = [0u8; HEADER_LEN];
        self.file.read_exact(&mut header).map_err(FrameError::Io)?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len_bytes = [l0, l1, l2, l3];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(bad(format!("invalid record length {len}")));
        }
        if len as u64 > left - HEADER_LEN as u64 {
            return Err(bad(format!(
                "record of {len} bytes runs past the end of the segment ({} bytes left)",
                left - HEADER_LEN as u64
            )));
        }
        buf.clear();
        buf.resize(len, 0);
        self.file.read_exact(buf).map_err(FrameError::Io)?;
        let actual = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), buf);
        if actual != crc {
            return Err(bad(format!(
                "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
            )));
        }
        self.offset += (HEADER_LEN + len) as u64;
        Ok(Some(()))
    }
}

/// The offset of the first valid frame in `path` after `from` (a frame that
/// failed its checksum), or `None` if no valid frame follows.
///
/// This is how one damaged record costs only itself: the WAL is shared by
/// every tenant, so giving up at the first bad frame would lose every later
/// record of every tenant. A candidate must announce a plausible length that
/// fits the file, start with a known record type and match its CRC32C, so a
/// false match is about a 2⁻³² chance per candidate. Reads the rest of the
/// file into memory: only on this rare path, and a segment is bounded.
pub(super) fn find_next_frame(path: &Path, from: u64) -> Result<Option<u64>, WalError> {
    let mut file = File::open(path).map_err(|e| WalError::io(path, e))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| WalError::io(path, e))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)
        .map_err(|e| WalError::io(path, e))?;
    let mut p = 1;
    while p + HEADER_LEN < rest.len() {
        let header = &rest[p..p + HEADER_LEN];
        let len_bytes = [header[0], header[1], header[2], header[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let end = p + HEADER_LEN + len;
        if len > 0 && len <= MAX_RECORD_LEN && end <= rest.len() {
            let payload = &rest[p + HEADER_LEN..end];
            if super::record::is_known_type(payload[0])
                && crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) == crc
            {
                return Ok(Some(from + p as u64));
            }
        }
        p += 1;
    }
    Ok(None)
}

/// Where a segment's valid frames end and the damaged stretches inside it.
#[derive(Debug, Default)]
pub(super) struct SegmentScan {
    /// The end of the last valid frame.
    pub(super) valid_end: u64,
    /// Damaged stretches with valid frames after them, skipped:
    /// `(from, to, why)`.
    pub(super) holes: Vec<(u64, u64, String)>,
    /// Why the bytes after `valid_end` are invalid, if there are any.
    pub(super) tail: Option<String>,
}

/// Reads every valid frame of `path`, in order, giving `f` each one's offset and
/// payload; a damaged frame followed by valid ones is skipped (a hole), damage
/// with nothing valid after it is the tail. I/O errors end the scan.
pub(super) fn scan_frames(
    path: &Path,
    f: &mut dyn FnMut(u64, &[u8]),
) -> Result<SegmentScan, WalError> {
    let mut reader = FrameReader::open(path)?;
    let mut buf = Vec::new();
    let mut scan = SegmentScan::default();
    loop {
        let offset = reader.offset();
        match reader.next_frame(&mut buf) {
            Ok(Some(())) => {
                f(offset, &buf);
                scan.valid_end = reader.offset();
            }
            Ok(None) => return Ok(scan),
            Err(FrameError::Io(e)) => return Err(WalError::io(reader.path(), e)),
            Err(FrameError::Bad { offset, reason }) => match find_next_frame(path, offset)? {
                Some(next) => {
                    scan.holes.push((offset, next, reason));
                    reader.seek(next)?;
                }
                None => {
                    scan.tail = Some(reason);
                    return Ok(scan);
                }
            },
        }
    }
}

/// Cuts segment `path` to `len` bytes and makes that durable.
pub(super) fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    file.set_len(len).map_err(|e| WalError::io(path, e))?;
    file.sync_all().map_err(|e| WalError::io(path, e))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}
