//! One block served from object storage: its meta, the index reader opened
//! from the local index-header, the chunk reader over ranged reads, and the
//! query paths over them in batches that read ahead.
//!
//! Everything here is synchronous and runs on the blocking pool (see
//! [`crate::reader`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use strata_model::Matcher;
use strata_proto::types::{Chunk, ChunkEncoding, StreamSeries};
use strata_tsdb::block::{
    BlockError, BlockMeta, ChunkReader, IndexHeader, IndexReader, ReadAt, SeriesRef, ENCODING_XOR,
};
use tokio::runtime::Handle;

use crate::cache::Caches;
use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::reader::{coalesce, BucketFile, FileKind};

/// Series entries read per batch (and streamed per message).
pub(crate) const SERIES_BATCH: usize = 256;
/// A series entry is read 512 bytes at a time until its length is known
/// (`strata-tsdb`'s guess); reading ahead covers that much past each start.
const SERIES_TAIL: u64 = 512;
/// The same for a chunk.
const CHUNK_TAIL: u64 = 512;
/// A chunks segment starts with magic, version and padding: 8 bytes.
const SEGMENT_HEADER_LEN: u64 = 8;
/// Bytes between two wanted ranges worth fetching rather than paying for
/// another request.
const MAX_GAP: u64 = 64 << 10;
/// The largest range one read-ahead request asks for.
const MAX_RANGE: u64 = 16 << 20;

/// What a block directory in the bucket holds, kept next to the index-header
/// in `block.json` so a restart opens the block without a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BlockFiles {
    pub(crate) meta: BlockMeta,
    pub(crate) index_size: u64,
    /// Segment file names (`000001`, …) in order, with their sizes.
    pub(crate) segments: Vec<(String, u64)>,
    /// The 8-byte header of each segment, as read when the block was first
    /// opened (empty until then).
    #[serde(default)]
    pub(crate) segment_headers: Vec<Vec<u8>>,
}

pub(crate) const BLOCK_FILE: &str = "block.json";
pub(crate) const INDEX_HEADER_FILE: &str = "index-header";

/// A loaded block.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) files: BlockFiles,
    pub(crate) index: IndexReader,
    pub(crate) chunks: ChunkReader,
    index_file: Arc<BucketFile>,
    segment_files: Vec<Arc<BucketFile>>,
}

/// Where a block's objects are.
pub(crate) fn object(tenant: &str, block: &str, file: &str) -> ObjectPath {
    ObjectPath::from(format!("{tenant}/{block}/{file}"))
}

impl Block {
    /// Opens the block `files` describes, with the index-header in
    /// `local_dir` when there is a valid one, else built by ranged reads and
    /// written there. Blocking.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        store: Arc<dyn ObjectStore>,
        tenant: &str,
        mut files: BlockFiles,
        local_dir: PathBuf,
        caches: Arc<Caches>,
        metrics: StoreMetrics,
        handle: Handle,
    ) -> Result<Self, StoreError> {
        let ulid = files.meta.ulid.to_string();
        let index_path = object(tenant, &ulid, "index");
        let name = index_path.to_string();
        let header_path = local_dir.join(INDEX_HEADER_FILE);
        let header = match IndexHeader::read_file(&header_path) {
            Ok(h) if h.index_size() == files.index_size => h,
            _ => {
                let plain = Arc::new(BucketFile::new(
                    store.clone(),
                    index_path.clone(),
                    files.index_size,
                    FileKind::Plain,
                    caches.clone(),
                    metrics.clone(),
                    handle.clone(),
                ));
                let header = IndexHeader::build(&name, plain)?;
                header.write_file(&header_path)?;
                header
            }
        };
        let toc = *header.toc();
        let series_end = [
            toc.label_indices,
            toc.postings,
            toc.label_offset_table,
            toc.postings_offset_table,
        ]
        .into_iter()
        .filter(|&o| o > toc.series)
        .min()
        .unwrap_or(files.index_size);
        let postings_end = [toc.label_offset_table, toc.postings_offset_table]
            .into_iter()
            .filter(|&o| o > toc.postings)
            .min()
            .unwrap_or(files.index_size);
        let index_file = Arc::new(BucketFile::new(
            store.clone(),
            index_path,
            files.index_size,
            FileKind::Index {
                postings_starts: header.postings_list_starts()?.into(),
                postings_end,
                series: if toc.series == 0 {
                    0..0
                } else {
                    toc.series..series_end
                },
            },
            caches.clone(),
            metrics.clone(),
            handle.clone(),
        ));
        let index = header.open_index(name, index_file.clone())?;
        let mut segment_files = Vec::with_capacity(files.segments.len());
        let mut segments: Vec<(String, Arc<dyn ReadAt>)> = Vec::new();
        let mut headers = Vec::with_capacity(files.segments.len());
        for (i, (seg, size)) in files.segments.iter().enumerate() {
            let path = object(tenant, &ulid, &format!("chunks/{seg}"));
            let mut file = BucketFile::new(
                store.clone(),
                path.clone(),
                *size,
                FileKind::Chunks,
                caches.clone(),
                metrics.clone(),
                handle.clone(),
            );
            let known = files
                .segment_headers
                .get(i)
                .filter(|h| h.len() as u64 == SEGMENT_HEADER_LEN)
                .map(|h| bytes::Bytes::copy_from_slice(h));
            let header = match known {
                Some(h) => h,
                None if *size >= SEGMENT_HEADER_LEN => {
                    file.read_at(0, SEGMENT_HEADER_LEN as usize).map_err(|e| {
                        StoreError::Block(BlockError::Io {
                            path: path.to_string(),
                            op: "read",
                            source: e,
                        })
                    })?
                }
                None => bytes::Bytes::new(),
            };
            headers.push(header.to_vec());
            file.set_prefix(header);
            let file = Arc::new(file);
            segment_files.push(file.clone());
            segments.push((path.to_string(), file));
        }
        // ChunkReader checks each header (served from the prefix).
        let chunks = ChunkReader::new(segments)?;
        files.segment_headers = headers;
        let block_json = serde_json::to_vec(&files).map_err(|e| StoreError::Local {
            path: local_dir.join(BLOCK_FILE).display().to_string(),
            reason: e.to_string(),
        })?;
        write_atomically(&local_dir.join(BLOCK_FILE), &block_json)?;
        Ok(Self {
            files,
            index,
            chunks,
            index_file,
            segment_files,
        })
    }

    pub(crate) fn meta(&self) -> &BlockMeta {
        &self.files.meta
    }

    /// Whether the block's `[min_time, max_time)` meets `[mint, maxt]`.
    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        mint <= maxt && self.files.meta.min_time <= maxt && self.files.meta.max_time > mint
    }

    /// Drops the block's cached ranges.
    pub(crate) fn forget_caches(&self) {
        let caches = self.index_file.caches();
        caches.remove_file(self.index_file.id());
        for f in &self.segment_files {
            caches.remove_file(f.id());
        }
    }

    /// Reads the series entries of `ids` ahead into the series cache.
    fn prefetch_series(&self, ids: &[SeriesRef]) {
        let offsets: Vec<u64> = ids.iter().map(|&id| u64::from(id) * 16).collect();
        let ranges = coalesce(&offsets, SERIES_TAIL, MAX_GAP, MAX_RANGE);
        let caches = self.index_file.caches();
        self.index_file.prefetch_blocking(&caches.series, ranges);
    }

    /// Reads the chunks of `refs` (sorted) ahead into the chunks cache, one
    /// set of ranges per segment.
    fn prefetch_chunks(&self, refs: &[u64]) {
        let caches = self.index_file.caches();
        let mut i = 0;
        while i < refs.len() {
            let seq = refs[i] >> 32;
            let j = i + refs[i..].partition_point(|r| r >> 32 == seq);
            if let Some(file) = self.segment_files.get(seq as usize) {
                let offsets: Vec<u64> = refs[i..j].iter().map(|r| r & 0xffff_ffff).collect();
                let ranges = coalesce(&offsets, CHUNK_TAIL, MAX_GAP, MAX_RANGE);
                file.prefetch_blocking(&caches.chunks, ranges);
            }
            i = j;
        }
    }

    /// Streams the series matching `matchers` with their chunks overlapping
    /// `[mint, maxt]` (labels only with `skip_chunks`) in batches to `emit`,
    /// which returns false to stop (the caller went away). Series without
    /// such a chunk are left out.
    pub(crate) fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        skip_chunks: bool,
        metrics: &StoreMetrics,
        mut emit: impl FnMut(Vec<StreamSeries>) -> bool,
    ) -> Result<(), StoreError> {
        let ids = self.index.postings_for_matchers(matchers)?;
        for batch in ids.chunks(SERIES_BATCH) {
            self.prefetch_series(batch);
            let mut entries = Vec::with_capacity(batch.len());
            for &id in batch {
                let mut entry = self.index.series(id)?;
                entry
                    .chunks
                    .retain(|c| c.min_time <= maxt && c.max_time >= mint);
                if !entry.chunks.is_empty() {
                    entries.push(entry);
                }
            }
            if !skip_chunks {
                let mut refs: Vec<u64> = entries
                    .iter()
                    .flat_map(|e| e.chunks.iter().map(|c| c.chunk_ref))
                    .collect();
                refs.sort_unstable();
                self.prefetch_chunks(&refs);
            }
            let mut out = Vec::with_capacity(entries.len());
            for entry in entries {
                let mut chunks = Vec::new();
                if !skip_chunks {
                    chunks.reserve(entry.chunks.len());
                    for meta in &entry.chunks {
                        let raw = self.chunks.chunk(meta.chunk_ref)?;
                        if raw.encoding != ENCODING_XOR {
                            return Err(StoreError::Block(BlockError::Unsupported {
                                file: format!("block {}", self.files.meta.ulid),
                                reason: format!(
                                    "series {}: chunk {:#x} has encoding {} (only XOR float \
                                     chunks are served)",
                                    entry.labels, meta.chunk_ref, raw.encoding
                                ),
                            }));
                        }
                        chunks.push(Chunk {
                            min_time_ms: meta.min_time,
                            max_time_ms: meta.max_time,
                            encoding: ChunkEncoding::Xor as i32,
                            data: raw.data,
                        });
                    }
                    metrics.chunks_returned.inc_by(chunks.len() as u64);
                }
                out.push(StreamSeries {
                    labels: strata_proto::labels_to_proto(&entry.labels),
                    chunks,
                });
            }
            metrics.series_returned.inc_by(out.len() as u64);
            if !out.is_empty() && !emit(out) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Label names of the series matching `matchers` with data in `[mint,
    /// maxt]`; without matchers, every name of the block, from the
    /// index-header alone.
    pub(crate) fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<String>, StoreError> {
        if matchers.is_empty() {
            return Ok(self
                .index
                .label_names()
                .into_iter()
                .map(str::to_string)
                .collect());
        }
        let mut names = BTreeSet::new();
        self.for_each_series_labels(matchers, mint, maxt, |labels| {
            names.extend(labels.iter().map(|l| l.name.clone()));
        })?;
        Ok(names)
    }

    /// Values of label `name` among the series matching `matchers` with data
    /// in `[mint, maxt]`; without matchers, from the index-header alone.
    pub(crate) fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<String>, StoreError> {
        if matchers.is_empty() {
            return Ok(self
                .index
                .label_values(name)
                .into_iter()
                .map(str::to_string)
                .collect());
        }
        let mut values = BTreeSet::new();
        self.for_each_series_labels(matchers, mint, maxt, |labels| {
            if let Some(v) = labels.get(name) {
                values.insert(v.to_string());
            }
        })?;
        Ok(values)
    }

    fn for_each_series_labels(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(&strata_model::Labels),
    ) -> Result<(), StoreError> {
        let ids = self.index.postings_for_matchers(matchers)?;
        for batch in ids.chunks(SERIES_BATCH) {
            self.prefetch_series(batch);
            for &id in batch {
                let entry = self.index.series(id)?;
                if entry
                    .chunks
                    .iter()
                    .any(|c| c.min_time <= maxt && c.max_time >= mint)
                {
                    f(&entry.labels);
                }
            }
        }
        Ok(())
    }
}

/// Writes `data` to `path` through a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let local = |e: std::io::Error| StoreError::Local {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(local)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(local)?;
    std::fs::rename(&tmp, path).map_err(local)
}

/// Reads `block.json` from a block's local directory, if it is there and
/// valid.
pub(crate) fn read_block_files(local_dir: &Path) -> Option<BlockFiles> {
    let raw = std::fs::read(local_dir.join(BLOCK_FILE)).ok()?;
    serde_json::from_slice(&raw).ok()
}
