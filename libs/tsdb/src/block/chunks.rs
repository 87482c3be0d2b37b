//! The `chunks/` segment files: an 8-byte header (magic, version 1, 3 bytes of
//! padding), then chunks, each `uvarint len | encoding byte | data | CRC32C of
//! encoding and data`. A chunk reference is `segment index << 32 | offset`, the
//! segment index counting from 0 for `000001`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::encoding::{put_uvarint, uvarint_len, Decoder};
use super::error::BlockError;
use super::read_at::{ReadAt, Source};

pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Prometheus's segment size limit; a chunk never spans two segments.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 << 20;
/// The encoding byte of XOR float chunks (`chunkenc.EncXOR`).
pub const ENCODING_XOR: u8 = 1;

pub(crate) const SEGMENT_HEADER_LEN: u64 = 8;

/// How much of a chunk to read before its length is known: most XOR chunks of
/// 120 samples fit, so one read usually suffices.
const CHUNK_READ_GUESS: u64 = 512;

/// Writes chunks into numbered segment files, cutting a new one when the next
/// chunk would not fit.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    segment_size: u64,
    current: Option<(BufWriter<File>, PathBuf)>,
    pos: u64,
    /// Names and sizes of the segments written so far (the current one last).
    files: Vec<(String, u64)>,
    buf: Vec<u8>,
}

impl SegmentWriter {
    pub(crate) fn new(dir: &Path, segment_size: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            segment_size,
            current: None,
            pos: 0,
            files: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Writes one chunk; returns its reference.
    pub(crate) fn write(&mut self, encoding: u8, data: &[u8]) -> Result<u64, BlockError> {
        let entry_len = (uvarint_len(data.len() as u64) + 1 + data.len() + 4) as u64;
        let full = self.pos > SEGMENT_HEADER_LEN && self.pos + entry_len > self.segment_size;
        if self.current.is_none() || full {
            self.cut()?;
        }
        let offset = u32::try_from(self.pos).map_err(|_| {
            BlockError::InvalidInput(format!(
                "chunk offset {} does not fit the 32 bits of a chunk reference",
                self.pos
            ))
        })?;
        let seq = (self.files.len() - 1) as u64;
        self.buf.clear();
        put_uvarint(&mut self.buf, data.len() as u64);
        let crc_start = self.buf.len();
        self.buf.push(encoding);
        self.buf.extend_from_slice(data);
        let crc = crc32c::crc32c(&self.buf[crc_start..]);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        if let Some((w, path)) = self.current.as_mut() {
            w.write_all(&self.buf)
                .map_err(|e| BlockError::io(path, "write", e))?;
        }
        self.pos += entry_len;
        if let Some(last) = self.files.last_mut() {
            last.1 = self.pos;
        }
        Ok((seq << 32) | u64::from(offset))
    }

    fn close_current(&mut self) -> Result<(), BlockError> {
        if let Some((w, path)) = self.current.take() {
            let f = w
                .into_inner()
                .map_err(|e| BlockError::io(&path, "flush", e.into_error()))?;
            f.sync_all()
                .map_err(|e| BlockError::io(&path, "fsync", e))?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), BlockError> {
        self.close_current()?;
        let name = format!("{:06}", self.files.len() + 1);
        let path = self.dir.join(&name);
        let f = File::create(&path).map_err(|e| BlockError::io(&path, "create", e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        header[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
        header[4] = CHUNKS_FORMAT_V1;
        w.write_all(&header)
            .map_err(|e| BlockError::io(&path, "write", e))?;
        self.current = Some((w, path));
        self.pos = SEGMENT_HEADER_LEN;
        self.files.push((name, SEGMENT_HEADER_LEN));
        Ok(())
    }

    /// Flushes and syncs the last segment; returns every segment's name and size.
    pub(crate) fn finish(mut self) -> Result<Vec<(String, u64)>, BlockError> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.files))
    }
}

/// A chunk as stored: its encoding byte and data (for XOR, the bytes
/// [`crate::chunk::decode_xor`] takes, with the 2-byte sample count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    pub encoding: u8,
    pub data: Bytes,
}

/// Reads chunks by reference from a block's segment files.
#[derive(Debug, Clone)]
pub struct ChunkReader {
    segments: Vec<Source>,
}

impl ChunkReader {
    /// Checks each segment's header. `segments` are in file-name order, each with
    /// the name errors should use (e.g. `<block>/chunks/000001`).
    pub fn new(segments: Vec<(String, Arc<dyn ReadAt>)>) -> Result<Self, BlockError> {
        let segments: Vec<Source> = segments
            .into_iter()
            .map(|(name, r)| Source::new(name, r))
            .collect();
        for s in &segments {
            let header = s.read(0, SEGMENT_HEADER_LEN)?;
            let mut d = Decoder::new(&header);
            let magic = d.be32().map_err(|e| s.corrupt(0, e.what))?;
            if magic != MAGIC_CHUNKS {
                return Err(s.corrupt(
                    0,
                    format!("magic {magic:#010x} is not the chunks magic {MAGIC_CHUNKS:#010x}"),
                ));
            }
            let version = d.u8().map_err(|e| s.corrupt(4, e.what))?;
            if version != CHUNKS_FORMAT_V1 {
                return Err(BlockError::Unsupported {
                    file: s.name().to_string(),
                    reason: format!("chunks format version {version}"),
                });
            }
        }
        Ok(Self { segments })
    }

    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// The chunk at `chunk_ref`, its checksum verified.
    pub fn chunk(&self, chunk_ref: u64) -> Result<RawChunk, BlockError> {
        let seq = (chunk_ref >> 32) as usize;
        let offset = chunk_ref & 0xffff_ffff;
        let Some(src) = self.segments.get(seq) else {
            return Err(BlockError::Corrupt {
                file: "chunks".to_string(),
                offset,
                reason: format!(
                    "chunk reference {chunk_ref:#x} names segment {} but the block has {}",
                    seq + 1,
                    self.segments.len()
                ),
            });
        };
        if offset < SEGMENT_HEADER_LEN {
            return Err(src.corrupt(offset, "chunk reference points into the segment header"));
        }
        let mut raw = src.read_upto(offset, CHUNK_READ_GUESS)?;
        let mut d = Decoder::new(&raw);
        let len = d
            .uvarint()
            .map_err(|e| src.corrupt(offset, format!("chunk length: {}", e.what)))?;
        let header_len = d.pos() as u64;
        let total = len
            .checked_add(header_len + 1 + 4)
            .ok_or_else(|| src.corrupt(offset, format!("chunk length {len} overflows")))?;
        if total > raw.len() as u64 {
            raw = src.read(offset, total)?;
        }
        let start = header_len as usize;
        let end = start + 1 + len as usize;
        let body = &raw[start..end];
        let stored = u32::from_be_bytes([raw[end], raw[end + 1], raw[end + 2], raw[end + 3]]);
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(BlockError::Checksum {
                file: src.name().to_string(),
                offset,
                stored,
                computed,
            });
        }
        Ok(RawChunk {
            encoding: body[0],
            data: raw.slice(start + 1..end),
        })
    }
}
