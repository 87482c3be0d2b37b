//! The block `index`, Prometheus format v2: header (magic, version 2), symbol
//! table, series (each 16-byte aligned; a series' reference is its offset / 16),
//! label indices, postings lists, label offset table, postings offset table and
//! a fixed-size TOC at the end. Sections with a 4-byte length end in a CRC32C of
//! their content; series entries have a uvarint length and a CRC32C too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_model::{Label, Labels, Matcher};

use super::encoding::{
    put_be32, put_be64, put_uvarint, put_uvarint_str, put_varint, DecodeError, Decoder,
};
use super::error::BlockError;
use super::read_at::{ReadAt, Source};
use crate::postings::{self, PostingsIndex};

pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
pub const INDEX_FORMAT_V2: u8 = 2;

const HEADER_LEN: u64 = 5;
const TOC_LEN: u64 = 6 * 8 + 4;
/// How much of a series entry to read before its length is known.
const SERIES_READ_GUESS: u64 = 512;

/// A series' reference in a block: its entry's offset in the index / 16.
pub type SeriesRef = u32;

/// Where the index's sections start; 0 means absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_offset_table: u64,
    pub postings: u64,
    pub postings_offset_table: u64,
}

/// A chunk's time range (both ends inclusive: first and last sample) and its
/// reference into the segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: u64,
}

/// A series entry of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesEntry {
    pub labels: Labels,
    pub chunks: Vec<ChunkMeta>,
}

/// Counts bytes written so sections can record their offsets.
struct Sink {
    w: BufWriter<File>,
    pos: u64,
    path: std::path::PathBuf,
}

impl Sink {
    fn put(&mut self, b: &[u8]) -> Result<(), BlockError> {
        self.w
            .write_all(b)
            .map_err(|e| BlockError::io(&self.path, "write", e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn align(&mut self, to: u64) -> Result<(), BlockError> {
        let pad = (to - self.pos % to) % to;
        self.put(&[0u8; 16][..pad as usize])
    }

    /// `len <4b> | content | CRC32C(content) <4b>`.
    fn section(&mut self, content: &[u8]) -> Result<(), BlockError> {
        let len = u32::try_from(content.len()).map_err(|_| {
            BlockError::InvalidInput(format!(
                "index section of {} bytes exceeds the format's 4 GiB limit",
                content.len()
            ))
        })?;
        self.put(&len.to_be_bytes())?;
        self.put(content)?;
        self.put(&crc32c::crc32c(content).to_be_bytes())
    }
}

/// Writes the index of `series` (sorted by labels, strictly) to `path`; returns
/// the file's size.
pub(crate) fn write_index(
    path: &Path,
    series: &[(Labels, Vec<ChunkMeta>)],
) -> Result<u64, BlockError> {
    let f = File::create(path).map_err(|e| BlockError::io(path, "create", e))?;
    let mut sink = Sink {
        w: BufWriter::with_capacity(1 << 20, f),
        pos: 0,
        path: path.to_path_buf(),
    };
    let mut toc = Toc::default();
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    put_be32(&mut header, MAGIC_INDEX);
    header.push(INDEX_FORMAT_V2);
    sink.put(&header)?;

    // Symbols: every label name and value, sorted; referenced by position.
    let symbols: Vec<&str> = series
        .iter()
        .flat_map(|(labels, _)| labels.iter())
        .flat_map(|l| [l.name.as_str(), l.value.as_str()])
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let symbol_ref = |s: &str| -> Result<u32, BlockError> {
        symbols
            .binary_search(&s)
            .map(|i| i as u32)
            .map_err(|_| BlockError::InvalidInput(format!("symbol {s:?} missing")))
    };
    let count = u32::try_from(symbols.len())
        .map_err(|_| BlockError::InvalidInput("more than 2^32 symbols".to_string()))?;
    let mut buf = Vec::new();
    put_be32(&mut buf, count);
    for s in &symbols {
        put_uvarint_str(&mut buf, s);
    }
    toc.symbols = sink.pos;
    sink.section(&buf)?;

    // Series, each 16-byte aligned; collect postings on the way.
    sink.align(16)?;
    toc.series = sink.pos;
    let mut all: Vec<u32> = Vec::with_capacity(series.len());
    let mut by_label: BTreeMap<&str, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    for (labels, chunks) in series {
        sink.align(16)?;
        let id = u32::try_from(sink.pos / 16).map_err(|_| {
            BlockError::InvalidInput("index series section exceeds 64 GiB".to_string())
        })?;
        buf.clear();
        put_uvarint(&mut buf, labels.len() as u64);
        for l in labels.iter() {
            put_uvarint(&mut buf, u64::from(symbol_ref(&l.name)?));
            put_uvarint(&mut buf, u64::from(symbol_ref(&l.value)?));
            by_label
                .entry(l.name.as_str())
                .or_default()
                .entry(l.value.as_str())
                .or_default()
                .push(id);
        }
        put_uvarint(&mut buf, chunks.len() as u64);
        let mut prev: Option<&ChunkMeta> = None;
        for c in chunks {
            match prev {
                None => {
                    put_varint(&mut buf, c.min_time);
                    put_uvarint(&mut buf, c.max_time.wrapping_sub(c.min_time) as u64);
                    put_uvarint(&mut buf, c.chunk_ref);
                }
                Some(p) => {
                    put_uvarint(&mut buf, c.min_time.wrapping_sub(p.max_time) as u64);
                    put_uvarint(&mut buf, c.max_time.wrapping_sub(c.min_time) as u64);
                    put_varint(&mut buf, c.chunk_ref.wrapping_sub(p.chunk_ref) as i64);
                }
            }
            prev = Some(c);
        }
        let mut len = Vec::with_capacity(5);
        put_uvarint(&mut len, buf.len() as u64);
        sink.put(&len)?;
        sink.put(&buf)?;
        sink.put(&crc32c::crc32c(&buf).to_be_bytes())?;
        all.push(id);
    }

    // Label indices (unused by v2 readers, written as Prometheus does). Their
    // sizes and the postings' are multiples of 4, so aligning once keeps every
    // postings list 4-byte aligned without padding between lists.
    sink.align(4)?;
    toc.label_indices = sink.pos;
    let mut label_index_offsets = Vec::with_capacity(by_label.len());
    for (name, values) in &by_label {
        label_index_offsets.push((*name, sink.pos));
        buf.clear();
        put_be32(&mut buf, 1);
        put_be32(&mut buf, values.len() as u32);
        for value in values.keys() {
            put_be32(&mut buf, symbol_ref(value)?);
        }
        sink.section(&buf)?;
    }

    // Postings: all series under the empty pair first, then each label pair.
    toc.postings = sink.pos;
    let mut postings_offsets: Vec<(&str, &str, u64)> = Vec::new();
    let mut write_postings = |sink: &mut Sink, ids: &[u32]| -> Result<u64, BlockError> {
        let at = sink.pos;
        buf.clear();
        put_be32(&mut buf, ids.len() as u32);
        for &id in ids {
            put_be32(&mut buf, id);
        }
        sink.section(&buf)?;
        Ok(at)
    };
    postings_offsets.push(("", "", write_postings(&mut sink, &all)?));
    for (name, values) in &by_label {
        for (value, ids) in values {
            postings_offsets.push((name, value, write_postings(&mut sink, ids)?));
        }
    }

    let mut table = Vec::new();
    toc.label_offset_table = sink.pos;
    put_be32(&mut table, label_index_offsets.len() as u32);
    for (name, off) in &label_index_offsets {
        table.push(1);
        put_uvarint_str(&mut table, name);
        put_uvarint(&mut table, *off);
    }
    sink.section(&table)?;

    table.clear();
    toc.postings_offset_table = sink.pos;
    put_be32(&mut table, postings_offsets.len() as u32);
    for (name, value, off) in &postings_offsets {
        table.push(2);
        put_uvarint_str(&mut table, name);
        put_uvarint_str(&mut table, value);
        put_uvarint(&mut table, *off);
    }
    sink.section(&table)?;

    table.clear();
    for v in [
        toc.symbols,
        toc.series,
        toc.label_indices,
        toc.label_offset_table,
        toc.postings,
        toc.postings_offset_table,
    ] {
        put_be64(&mut table, v);
    }
    let crc = crc32c::crc32c(&table);
    put_be32(&mut table, crc);
    sink.put(&table)?;

    let size = sink.pos;
    let f = sink
        .w
        .into_inner()
        .map_err(|e| BlockError::io(path, "flush", e.into_error()))?;
    f.sync_all().map_err(|e| BlockError::io(path, "fsync", e))?;
    Ok(size)
}

/// Reads a v2 index: the TOC, symbol table and postings offset table at open
/// (kept in memory), postings lists and series entries on demand.
#[derive(Debug, Clone)]
pub struct IndexReader {
    src: Source,
    toc: Toc,
    symbols: Vec<String>,
    /// Label name → its values, sorted, with their postings lists' offsets. The
    /// empty name holds the all-series list under the empty value.
    postings: BTreeMap<String, Vec<(String, u64)>>,
}

impl IndexReader {
    /// Opens the index in `file`; `name` is what errors call it.
    pub fn open(name: impl Into<String>, file: Arc<dyn ReadAt>) -> Result<Self, BlockError> {
        let src = Source::new(name.into(), file);
        if src.size() < HEADER_LEN + TOC_LEN {
            return Err(src.corrupt(
                0,
                format!(
                    "{} bytes is too short for an index header and TOC",
                    src.size()
                ),
            ));
        }
        let header = src.read(0, HEADER_LEN)?;
        let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if magic != MAGIC_INDEX {
            return Err(src.corrupt(
                0,
                format!("magic {magic:#010x} is not the index magic {MAGIC_INDEX:#010x}"),
            ));
        }
        if header[4] != INDEX_FORMAT_V2 {
            return Err(BlockError::Unsupported {
                file: src.name().to_string(),
                reason: format!("index format version {} (only 2 is read)", header[4]),
            });
        }

        let toc_at = src.size() - TOC_LEN;
        let raw = src.read(toc_at, TOC_LEN)?;
        let body = &raw[..TOC_LEN as usize - 4];
        check_crc(&src, toc_at, body, &raw[TOC_LEN as usize - 4..])?;
        let mut d = Decoder::new(body);
        let mut next = || d.be64().map_err(|e| decode_err(&src, toc_at, e));
        let toc = Toc {
            symbols: next()?,
            series: next()?,
            label_indices: next()?,
            label_offset_table: next()?,
            postings: next()?,
            postings_offset_table: next()?,
        };

        let symbols = if toc.symbols == 0 {
            Vec::new()
        } else {
            let content = read_section(&src, toc.symbols)?;
            let base = toc.symbols + 4;
            let mut d = Decoder::new(&content);
            let count = d.be32().map_err(|e| decode_err(&src, base, e))?;
            let mut symbols = Vec::with_capacity((count as usize).min(content.len()));
            for _ in 0..count {
                let s = d.uvarint_str().map_err(|e| decode_err(&src, base, e))?;
                symbols.push(s.to_string());
            }
            symbols
        };

        let mut postings: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        if toc.postings_offset_table != 0 {
            let content = read_section(&src, toc.postings_offset_table)?;
            let base = toc.postings_offset_table + 4;
            let mut d = Decoder::new(&content);
            let count = d.be32().map_err(|e| decode_err(&src, base, e))?;
            let mut last: Option<(&str, &str)> = None;
            for _ in 0..count {
                let at = base + d.pos() as u64;
                let n = d.u8().map_err(|e| decode_err(&src, base, e))?;
                if n != 2 {
                    return Err(
                        src.corrupt(at, format!("postings offset entry has {n} keys, not 2"))
                    );
                }
                let name = d.uvarint_str().map_err(|e| decode_err(&src, base, e))?;
                let value = d.uvarint_str().map_err(|e| decode_err(&src, base, e))?;
                let off = d.uvarint().map_err(|e| decode_err(&src, base, e))?;
                if last.is_some_and(|prev| prev >= (name, value)) {
                    return Err(src.corrupt(at, "postings offset table is not sorted"));
                }
                last = Some((name, value));
                postings
                    .entry(name.to_string())
                    .or_default()
                    .push((value.to_string(), off));
            }
        }

        Ok(Self {
            src,
            toc,
            symbols,
            postings,
        })
    }

    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// The symbol table, sorted.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Label names, sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.postings
            .keys()
            .filter(|k| !k.is_empty())
            .map(String::as_str)
            .collect()
    }

    /// Values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        if name.is_empty() {
            return Vec::new();
        }
        self.postings
            .get(name)
            .map(|vs| vs.iter().map(|(v, _)| v.as_str()).collect())
            .unwrap_or_default()
    }

    /// Series with label `name="value"`, sorted; empty if there are none.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<SeriesRef>, BlockError> {
        match self.postings.get(name) {
            Some(values) => self.postings_of(values, value),
            None => Ok(Vec::new()),
        }
    }

    /// Every series of the block, sorted (the empty label pair's list).
    pub fn all_postings(&self) -> Result<Vec<SeriesRef>, BlockError> {
        self.postings("", "")
    }

    fn postings_at(&self, offset: u64) -> Result<Vec<SeriesRef>, BlockError> {
        let content = read_section(&self.src, offset)?;
        let base = offset + 4;
        let mut d = Decoder::new(&content);
        let count = d.be32().map_err(|e| decode_err(&self.src, base, e))?;
        if u64::from(count) * 4 != d.remaining() as u64 {
            return Err(self.src.corrupt(
                offset,
                format!(
                    "postings list declares {count} entries in {} bytes",
                    d.remaining()
                ),
            ));
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let id = d.be32().map_err(|e| decode_err(&self.src, base, e))?;
            if out.last().is_some_and(|&last| last >= id) {
                return Err(self
                    .src
                    .corrupt(base + d.pos() as u64 - 4, "postings list is not sorted"));
            }
            out.push(id);
        }
        Ok(out)
    }

    /// The series entry `id`: labels and chunk metas.
    pub fn series(&self, id: SeriesRef) -> Result<SeriesEntry, BlockError> {
        let src = &self.src;
        let offset = u64::from(id) * 16;
        let mut raw = src.read_upto(offset, SERIES_READ_GUESS)?;
        let mut d = Decoder::new(&raw);
        let len = d
            .uvarint()
            .map_err(|e| src.corrupt(offset, format!("series length: {}", e.what)))?;
        let start = d.pos() as u64;
        let total = len
            .checked_add(start + 4)
            .ok_or_else(|| src.corrupt(offset, format!("series length {len} overflows")))?;
        if total > raw.len() as u64 {
            raw = src.read(offset, total)?;
        }
        let (start, end) = (start as usize, total as usize - 4);
        check_crc(src, offset, &raw[start..end], &raw[end..end + 4])?;
        let base = offset + start as u64;
        let mut d = Decoder::new(&raw[start..end]);
        let err = |e: DecodeError| decode_err(src, base, e);

        let nlabels = d.uvarint().map_err(err)?;
        let mut labels = Vec::with_capacity((nlabels as usize).min(d.remaining()));
        for _ in 0..nlabels {
            let at = base + d.pos() as u64;
            let name = d.uvarint32().map_err(err)?;
            let value = d.uvarint32().map_err(err)?;
            labels.push(Label::new(self.symbol(name, at)?, self.symbol(value, at)?));
        }
        let nchunks = d.uvarint().map_err(err)?;
        let mut chunks: Vec<ChunkMeta> = Vec::with_capacity((nchunks as usize).min(d.remaining()));
        for _ in 0..nchunks {
            let c = match chunks.last() {
                None => {
                    let min_time = d.varint().map_err(err)?;
                    let max_time = min_time.wrapping_add(d.uvarint().map_err(err)? as i64);
                    let chunk_ref = d.uvarint().map_err(err)?;
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref,
                    }
                }
                Some(p) => {
                    let min_time = p.max_time.wrapping_add(d.uvarint().map_err(err)? as i64);
                    let max_time = min_time.wrapping_add(d.uvarint().map_err(err)? as i64);
                    let chunk_ref = p.chunk_ref.wrapping_add(d.varint().map_err(err)? as u64);
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref,
                    }
                }
            };
            chunks.push(c);
        }
        Ok(SeriesEntry {
            labels: Labels::new(labels),
            chunks,
        })
    }

    fn symbol(&self, r: u32, at: u64) -> Result<&str, BlockError> {
        self.symbols
            .get(r as usize)
            .map(String::as_str)
            .ok_or_else(|| {
                self.src.corrupt(
                    at,
                    format!(
                        "symbol reference {r} past the {}-entry symbol table",
                        self.symbols.len()
                    ),
                )
            })
    }

    /// Series matching all `matchers` (all series for none), sorted, with
    /// Prometheus's semantics (a series lacking a label has it as `""`): the same
    /// algorithm as the head's index ([`postings::for_matchers`]), over postings
    /// lists read from the file.
    pub fn postings_for_matchers(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<SeriesRef>, BlockError> {
        postings::for_matchers(self, matchers)
    }
}

impl PostingsIndex for IndexReader {
    type Ref = SeriesRef;
    /// A label's values, sorted, each with the offset of its postings list.
    type Values = [(String, u64)];
    type Error = BlockError;

    fn values(&self, name: &str) -> Option<&Self::Values> {
        if name.is_empty() {
            // The empty pair is the list of all series, not a label.
            return None;
        }
        self.postings.get(name).map(Vec::as_slice)
    }

    fn postings_of(
        &self,
        values: &Self::Values,
        value: &str,
    ) -> Result<Vec<SeriesRef>, BlockError> {
        match values.binary_search_by(|(v, _)| v.as_str().cmp(value)) {
            Ok(i) => self.postings_at(values[i].1),
            Err(_) => Ok(Vec::new()),
        }
    }

    fn union_of(
        &self,
        values: &Self::Values,
        wanted: &[String],
    ) -> Result<Vec<SeriesRef>, BlockError> {
        let mut lists = Vec::with_capacity(wanted.len());
        for v in wanted {
            lists.push(self.postings_of(values, v)?);
        }
        let refs: Vec<&[SeriesRef]> = lists.iter().map(Vec::as_slice).collect();
        Ok(postings::union_many(&refs))
    }

    fn union_where(
        &self,
        values: &Self::Values,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<SeriesRef>, BlockError> {
        let mut lists = Vec::new();
        for (v, off) in values {
            if keep(v) {
                lists.push(self.postings_at(*off)?);
            }
        }
        let refs: Vec<&[SeriesRef]> = lists.iter().map(Vec::as_slice).collect();
        Ok(postings::union_many(&refs))
    }

    fn all(&self) -> Result<Vec<SeriesRef>, BlockError> {
        self.all_postings()
    }
}

fn decode_err(src: &Source, base: u64, e: DecodeError) -> BlockError {
    src.corrupt(base + e.pos as u64, e.what)
}

fn check_crc(src: &Source, offset: u64, body: &[u8], stored: &[u8]) -> Result<(), BlockError> {
    let stored = match stored {
        [a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => return Err(src.corrupt(offset, "truncated checksum")),
    };
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(BlockError::Checksum {
            file: src.name().to_string(),
            offset,
            stored,
            computed,
        });
    }
    Ok(())
}

/// The content of the `len <4b> | content | CRC32C <4b>` section at `offset`,
/// checksum verified.
fn read_section(src: &Source, offset: u64) -> Result<Bytes, BlockError> {
    let len = src.read(offset, 4)?;
    let len = u64::from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]));
    let raw = src.read(offset + 4, len + 4)?;
    let end = len as usize;
    check_crc(src, offset, &raw[..end], &raw[end..])?;
    Ok(raw.slice(..end))
}
