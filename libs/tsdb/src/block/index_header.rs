//! Index-headers: the parts of a block's `index` a reader needs before it can
//! answer anything — the 5-byte header, the symbol table, the postings offset
//! table and the TOC — fetched with three ranged reads and kept in a small
//! local file. A store-gateway opens a block that lives in object storage
//! without downloading its index, and after a restart without a single
//! request: [`IndexHeader::open_index`] serves those ranges from the header
//! and sends every other read (postings lists, series) to the remote file.
//!
//! The local file is Strata's own format (Thanos's binary index-header is a
//! re-encoding of the same two tables; keeping the original bytes instead lets
//! [`IndexReader`] parse them with the checksums of the block itself):
//! `magic "STIH" | version 1 | index size u64 | part count u32 |
//! (offset u64 | length u64 | bytes)* | CRC32C of everything before`, all
//! integers big-endian.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::encoding::{put_be32, put_be64, Decoder};
use super::error::BlockError;
use super::index::{IndexReader, Toc};
use super::read_at::{ReadAt, Source};

const MAGIC: &[u8; 4] = b"STIH";
const VERSION: u8 = 1;
/// Prometheus's index format: a 5-byte header (magic, version) and a TOC of
/// six 8-byte offsets and a CRC32C at the very end.
const INDEX_HEADER_LEN: u64 = 5;
const TOC_LEN: u64 = 6 * 8 + 4;

/// The locally kept parts of one block's index.
#[derive(Debug, Clone)]
pub struct IndexHeader {
    index_size: u64,
    toc: Toc,
    /// `(offset in the index, bytes)`, sorted by offset, not overlapping.
    parts: Vec<(u64, Bytes)>,
}

impl IndexHeader {
    /// Reads the header parts of `index` (named `name` in errors): the TOC
    /// first, then everything from the start of the file to the end of the
    /// symbol table, then the postings offset table — three reads.
    pub fn build(name: &str, index: Arc<dyn ReadAt>) -> Result<Self, BlockError> {
        let src = Source::new(name.to_string(), index);
        let size = src.size();
        if size < INDEX_HEADER_LEN + TOC_LEN {
            return Err(src.corrupt(
                0,
                format!("{size} bytes is too short for an index header and TOC"),
            ));
        }
        let toc_at = size - TOC_LEN;
        let toc_bytes = src.read(toc_at, TOC_LEN)?;
        let toc = parse_toc(&src, toc_at, &toc_bytes)?;
        let offsets = [
            toc.symbols,
            toc.series,
            toc.label_indices,
            toc.label_offset_table,
            toc.postings,
            toc.postings_offset_table,
        ];
        if let Some(bad) = offsets.iter().find(|&&o| o >= toc_at) {
            return Err(src.corrupt(toc_at, format!("TOC offset {bad} is past the TOC")));
        }
        // A section ends where the next one (by offset) starts, or at the TOC.
        let section_end = |start: u64| {
            offsets
                .iter()
                .copied()
                .filter(|&o| o > start)
                .min()
                .unwrap_or(toc_at)
        };
        let head_end = if toc.symbols == 0 {
            INDEX_HEADER_LEN
        } else {
            section_end(toc.symbols)
        };
        let mut parts = vec![(0, src.read(0, head_end)?)];
        if toc.postings_offset_table != 0 {
            let start = toc.postings_offset_table;
            let end = section_end(start);
            parts.push((start, src.read(start, end - start)?));
        }
        parts.push((toc_at, toc_bytes));
        let header = Self {
            index_size: size,
            toc,
            parts,
        };
        header.check()?;
        Ok(header)
    }

    fn check(&self) -> Result<(), BlockError> {
        let mut end = 0;
        for (offset, data) in &self.parts {
            if *offset < end {
                return Err(BlockError::InvalidInput(
                    "index-header parts overlap".to_string(),
                ));
            }
            end = offset + data.len() as u64;
            if end > self.index_size {
                return Err(BlockError::InvalidInput(format!(
                    "index-header part at {offset} reaches past the {}-byte index",
                    self.index_size
                )));
            }
        }
        Ok(())
    }

    /// The size of the index file the header was built from.
    pub fn index_size(&self) -> u64 {
        self.index_size
    }

    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// Bytes kept locally.
    pub fn local_bytes(&self) -> u64 {
        self.parts.iter().map(|(_, d)| d.len() as u64).sum()
    }

    /// Where each postings list starts, sorted, from the postings offset
    /// table: a list ends where the next one starts, so a reader can fetch a
    /// whole list in one request.
    pub fn postings_list_starts(&self) -> Result<Vec<u64>, BlockError> {
        let at = self.toc.postings_offset_table;
        if at == 0 {
            return Ok(Vec::new());
        }
        let Some((_, data)) = self.parts.iter().find(|(o, _)| *o == at) else {
            return Ok(Vec::new());
        };
        let corrupt = |pos: usize, reason: &str| BlockError::Corrupt {
            file: "index-header".to_string(),
            offset: at + pos as u64,
            reason: format!("postings offset table: {reason}"),
        };
        let mut d = Decoder::new(data);
        let _len = d.be32().map_err(|e| corrupt(e.pos, e.what))?;
        let count = d.be32().map_err(|e| corrupt(e.pos, e.what))?;
        let mut starts = Vec::with_capacity((count as usize).min(data.len()));
        for _ in 0..count {
            let keys = d.u8().map_err(|e| corrupt(e.pos, e.what))?;
            for _ in 0..keys {
                d.uvarint_str().map_err(|e| corrupt(e.pos, e.what))?;
            }
            starts.push(d.uvarint().map_err(|e| corrupt(e.pos, e.what))?);
        }
        starts.sort_unstable();
        starts.dedup();
        Ok(starts)
    }

    /// The index reader of the block: symbols and postings offset table from
    /// this header, every other read from `remote` (the index file itself).
    pub fn open_index(
        &self,
        name: impl Into<String>,
        remote: Arc<dyn ReadAt>,
    ) -> Result<IndexReader, BlockError> {
        if remote.size() != self.index_size {
            return Err(BlockError::InvalidInput(format!(
                "index-header was built from a {}-byte index, the index has {} bytes",
                self.index_size,
                remote.size()
            )));
        }
        let backed = HeaderBacked {
            parts: self.parts.clone().into(),
            remote,
        };
        IndexReader::open(name, Arc::new(backed))
    }

    /// The header in its file format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.local_bytes() as usize + 64);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_be64(&mut out, self.index_size);
        put_be32(&mut out, self.parts.len() as u32);
        for (offset, data) in &self.parts {
            put_be64(&mut out, *offset);
            put_be64(&mut out, data.len() as u64);
            out.extend_from_slice(data);
        }
        let crc = crc32c::crc32c(&out);
        put_be32(&mut out, crc);
        out
    }

    /// Parses [`IndexHeader::encode`]'s output; anything else is an error.
    pub fn decode(name: &str, raw: &[u8]) -> Result<Self, BlockError> {
        let corrupt = |offset: usize, reason: &str| BlockError::Corrupt {
            file: name.to_string(),
            offset: offset as u64,
            reason: reason.to_string(),
        };
        if raw.len() < MAGIC.len() + 1 + 8 + 4 + 4 {
            return Err(corrupt(0, "too short for an index-header"));
        }
        let (body, crc) = raw.split_at(raw.len() - 4);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(BlockError::Checksum {
                file: name.to_string(),
                offset: 0,
                stored,
                computed,
            });
        }
        let mut d = Decoder::new(body);
        let err = |e: super::encoding::DecodeError| corrupt(e.pos, e.what);
        if d.bytes(4).map_err(err)? != MAGIC {
            return Err(corrupt(0, "not an index-header (bad magic)"));
        }
        let version = d.u8().map_err(err)?;
        if version != VERSION {
            return Err(BlockError::Unsupported {
                file: name.to_string(),
                reason: format!("index-header version {version}"),
            });
        }
        let index_size = d.be64().map_err(err)?;
        let count = d.be32().map_err(err)?;
        let mut parts = Vec::with_capacity((count as usize).min(16));
        for _ in 0..count {
            let offset = d.be64().map_err(err)?;
            let len = d.be64().map_err(err)?;
            let len = usize::try_from(len).map_err(|_| corrupt(d.pos(), "part too long"))?;
            let data = Bytes::copy_from_slice(d.bytes(len).map_err(err)?);
            parts.push((offset, data));
        }
        if d.remaining() != 0 {
            return Err(corrupt(d.pos(), "trailing bytes"));
        }
        let Some((toc_at, toc_bytes)) = parts.last() else {
            return Err(corrupt(0, "no parts"));
        };
        let src = Source::new(name.to_string(), Arc::new(toc_bytes.clone()));
        let toc = parse_toc(&src, *toc_at, toc_bytes)?;
        let header = Self {
            index_size,
            toc,
            parts,
        };
        header.check()?;
        Ok(header)
    }

    /// Writes the header to `path` atomically (a temporary file, fsynced,
    /// then renamed), so a crash never leaves a torn header behind.
    pub fn write_file(&self, path: &Path) -> Result<(), BlockError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| BlockError::io(dir, "mkdir", e))?;
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()
        };
        write().map_err(|e| BlockError::io(&tmp, "write", e))?;
        fs::rename(&tmp, path).map_err(|e| BlockError::io(path, "rename", e))
    }

    /// Reads a header written by [`IndexHeader::write_file`].
    pub fn read_file(path: &Path) -> Result<Self, BlockError> {
        let raw = fs::read(path).map_err(|e| BlockError::io(path, "read", e))?;
        Self::decode(&path.display().to_string(), &raw)
    }
}

fn parse_toc(src: &Source, toc_at: u64, raw: &[u8]) -> Result<Toc, BlockError> {
    if raw.len() as u64 != TOC_LEN {
        return Err(src.corrupt(toc_at, "truncated TOC"));
    }
    let (body, crc) = raw.split_at(raw.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(BlockError::Checksum {
            file: src.name().to_string(),
            offset: toc_at,
            stored,
            computed,
        });
    }
    let mut d = Decoder::new(body);
    let mut next = || {
        d.be64()
            .map_err(|e| src.corrupt(toc_at + e.pos as u64, e.what))
    };
    Ok(Toc {
        symbols: next()?,
        series: next()?,
        label_indices: next()?,
        label_offset_table: next()?,
        postings: next()?,
        postings_offset_table: next()?,
    })
}

/// The index file as [`IndexReader`] sees it: reads within a header part come
/// from memory, all others from the remote file.
#[derive(Debug)]
struct HeaderBacked {
    parts: Arc<[(u64, Bytes)]>,
    remote: Arc<dyn ReadAt>,
}

impl ReadAt for HeaderBacked {
    fn size(&self) -> u64 {
        self.remote.size()
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        for (start, data) in self.parts.iter() {
            let end = start + data.len() as u64;
            if offset >= *start && offset + len as u64 <= end {
                let from = (offset - start) as usize;
                return Ok(data.slice(from..from + len));
            }
        }
        self.remote.read_at(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::tests::{gen_series, head_from, HOUR, T0};
    use super::super::{BlockReader, BlockWriter, FileReadAt};
    use super::*;
    use strata_model::{MatchOp, Matcher};

    /// Counts the reads that reach the file.
    #[derive(Debug)]
    struct Counting {
        inner: FileReadAt,
        reads: AtomicUsize,
    }

    impl ReadAt for Counting {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read_at(offset, len)
        }
    }

    #[test]
    fn three_reads_build_it_and_none_open_the_index() {
        let series = gen_series(200, 7, false);
        let head = head_from(&series);
        let tmp = tempfile::tempdir().unwrap();
        let meta = BlockWriter::default()
            .write_head(tmp.path(), &head, T0, T0 + 2 * HOUR)
            .unwrap()
            .unwrap();
        let dir = tmp.path().join(meta.ulid.to_string());
        let index = Arc::new(Counting {
            inner: FileReadAt::open(&dir.join("index")).unwrap(),
            reads: AtomicUsize::new(0),
        });
        let header = IndexHeader::build("index", index.clone()).unwrap();
        assert_eq!(index.reads.load(Ordering::Relaxed), 3);
        assert!(header.local_bytes() < header.index_size());

        // Through the file format and back.
        let path = tmp.path().join("headers/index-header");
        header.write_file(&path).unwrap();
        let header = IndexHeader::read_file(&path).unwrap();

        index.reads.store(0, Ordering::Relaxed);
        let reader = header.open_index("index", index.clone()).unwrap();
        assert_eq!(index.reads.load(Ordering::Relaxed), 0);

        // Same answers as the reader of the whole directory.
        let full = BlockReader::open(&dir).unwrap();
        assert_eq!(reader.symbols(), full.index().symbols());
        assert_eq!(reader.label_names(), full.index().label_names());
        let m = [Matcher::new(MatchOp::RegexMatch, "job", "api|db").unwrap()];
        let ids = reader.postings_for_matchers(&m).unwrap();
        assert_eq!(ids, full.index().postings_for_matchers(&m).unwrap());
        assert!(!ids.is_empty());
        for id in ids {
            assert_eq!(reader.series(id).unwrap(), full.index().series(id).unwrap());
        }

        // Every postings list starts at an offset the header knows.
        let starts = header.postings_list_starts().unwrap();
        assert!(starts.len() > 5);
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(starts[0], header.toc().postings);
    }

    #[test]
    fn corrupt_or_mismatched_headers_are_errors() {
        let series = gen_series(20, 3, false);
        let head = head_from(&series);
        let tmp = tempfile::tempdir().unwrap();
        let meta = BlockWriter::default()
            .write_head(tmp.path(), &head, T0, T0 + 2 * HOUR)
            .unwrap()
            .unwrap();
        let index_path = tmp.path().join(meta.ulid.to_string()).join("index");
        let index: Arc<dyn ReadAt> = Arc::new(FileReadAt::open(&index_path).unwrap());
        let header = IndexHeader::build("index", index.clone()).unwrap();
        let good = header.encode();
        for i in [0, 4, 5, 13, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x55;
            assert!(IndexHeader::decode("h", &bad).is_err(), "flip at {i}");
        }
        for len in [0, 3, 10, good.len() - 1] {
            assert!(
                IndexHeader::decode("h", &good[..len]).is_err(),
                "cut at {len}"
            );
        }
        // Built from another index: refused rather than misread.
        let short: Arc<dyn ReadAt> = Arc::new(Bytes::from(vec![0u8; 100]));
        assert!(header.open_index("index", short).is_err());
        // Not an index at all.
        let junk: Arc<dyn ReadAt> = Arc::new(Bytes::from(vec![7u8; 200]));
        assert!(IndexHeader::build("junk", junk).is_err());
    }
}
