//! Writing a block directory from series sorted by labels.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use strata_model::Labels;

use super::chunks::{SegmentWriter, DEFAULT_SEGMENT_SIZE, ENCODING_XOR, SEGMENT_HEADER_LEN};
use super::error::BlockError;
use super::index::{write_index, ChunkMeta};
use super::meta::{
    BlockCompaction, BlockMeta, BlockStats, ThanosDownsample, ThanosFile, ThanosMeta, META_VERSION,
    TENANT_LABEL,
};
use super::ulid::Ulid;
use crate::chunk::{decode_xor, XorChunk};
use crate::head::{BlockPart, ChunkData, Head};

/// How blocks are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOptions {
    /// Upper bound of a `chunks/` segment file's size (a larger chunk still gets
    /// a segment of its own). At most 4 GiB, the reach of a chunk reference.
    pub segment_size: u64,
    /// Recorded as the external label [`TENANT_LABEL`] in the Thanos section.
    pub tenant: Option<String>,
    /// Further Thanos external labels.
    pub external_labels: BTreeMap<String, String>,
    /// The Thanos `source` field.
    pub source: String,
}

impl Default for BlockOptions {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            tenant: None,
            external_labels: BTreeMap::new(),
            source: "ingester".to_string(),
        }
    }
}

/// Writes blocks. A block covers `[mint, maxt)`: every chunk overlapping the
/// range is included, and a chunk reaching outside it is re-encoded with only
/// the samples inside, so adjacent blocks cut from the same head neither lose
/// nor duplicate a sample.
#[derive(Debug, Clone, Default)]
pub struct BlockWriter {
    options: BlockOptions,
}

impl BlockWriter {
    pub fn new(options: BlockOptions) -> Self {
        Self { options }
    }

    pub fn options(&self) -> &BlockOptions {
        &self.options
    }

    /// Writes the head's series with samples in `[mint, maxt)` as a block under
    /// `parent`: its in-order samples and the late ones ahead of its block
    /// bound. `None` if there are none (no block is written).
    pub fn write_head(
        &self,
        parent: &Path,
        head: &Head,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<BlockMeta>, BlockError> {
        self.write_head_part(parent, head, mint, maxt, BlockPart::InOrder)
    }

    /// [`BlockWriter::write_head`] of the samples of `part`.
    pub fn write_head_part(
        &self,
        parent: &Path,
        head: &Head,
        mint: i64,
        maxt: i64,
        part: BlockPart,
    ) -> Result<Option<BlockMeta>, BlockError> {
        check_range(mint, maxt)?;
        let series = head.block_chunks(mint, maxt - 1, part);
        self.write(
            parent,
            mint,
            maxt,
            series.into_iter().map(|s| (s.labels, s.chunks)),
        )
    }

    /// Writes `series` (strictly increasing by labels, each with XOR chunks in
    /// time order) restricted to `[mint, maxt)` as the block directory
    /// `parent/<ulid>`, created atomically (written under a temporary name, then
    /// renamed). Returns its meta, or `None` if no sample is in the range (no
    /// block is written).
    pub fn write<I>(
        &self,
        parent: &Path,
        mint: i64,
        maxt: i64,
        series: I,
    ) -> Result<Option<BlockMeta>, BlockError>
    where
        I: IntoIterator<Item = (Labels, Vec<ChunkData>)>,
    {
        check_range(mint, maxt)?;
        let size = self.options.segment_size;
        if !(SEGMENT_HEADER_LEN + 16..=u64::from(u32::MAX)).contains(&size) {
            return Err(BlockError::InvalidInput(format!(
                "segment size {size} is outside [{}, {}]",
                SEGMENT_HEADER_LEN + 16,
                u32::MAX
            )));
        }
        let ulid = Ulid::generate();
        let tmp = parent.join(format!("{ulid}.tmp-for-creation"));
        let result = self.write_into(&tmp, ulid, mint, maxt, series);
        match result {
            Ok(Some(meta)) => {
                let dir = parent.join(ulid.to_string());
                fs::rename(&tmp, &dir).map_err(|e| BlockError::io(&tmp, "rename", e))?;
                sync_dir(parent)?;
                Ok(Some(meta))
            }
            Ok(None) => {
                fs::remove_dir_all(&tmp).map_err(|e| BlockError::io(&tmp, "remove", e))?;
                Ok(None)
            }
            Err(e) => {
                // Best effort: the error being returned matters more.
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    fn write_into<I>(
        &self,
        dir: &Path,
        ulid: Ulid,
        mint: i64,
        maxt: i64,
        series: I,
    ) -> Result<Option<BlockMeta>, BlockError>
    where
        I: IntoIterator<Item = (Labels, Vec<ChunkData>)>,
    {
        let chunks_dir = dir.join("chunks");
        fs::create_dir_all(&chunks_dir).map_err(|e| BlockError::io(&chunks_dir, "mkdir", e))?;
        let mut segments = SegmentWriter::new(&chunks_dir, self.options.segment_size);
        let mut entries: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        let mut stats = BlockStats::default();
        for (labels, mut chunks) in series {
            if let Some((prev, _)) = entries.last() {
                if *prev >= labels {
                    return Err(BlockError::InvalidInput(format!(
                        "series must be sorted by labels and unique: {labels} comes after {prev}"
                    )));
                }
            }
            chunks.sort_by_key(|c| c.min_time);
            let mut metas = Vec::with_capacity(chunks.len());
            for c in &chunks {
                let Some((trimmed, samples)) = trim(&labels, c, mint, maxt - 1)? else {
                    continue;
                };
                let chunk = trimmed.as_ref().unwrap_or(c);
                let chunk_ref = segments.write(ENCODING_XOR, &chunk.data)?;
                metas.push(ChunkMeta {
                    min_time: chunk.min_time,
                    max_time: chunk.max_time,
                    chunk_ref,
                });
                stats.num_samples += samples;
            }
            if metas.is_empty() {
                continue;
            }
            stats.num_chunks += metas.len() as u64;
            stats.num_series += 1;
            entries.push((labels, metas));
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let segment_files = segments.finish()?;
        let index_path = dir.join("index");
        let index_size = write_index(&index_path, &entries)?;

        let mut labels = self.options.external_labels.clone();
        if let Some(tenant) = &self.options.tenant {
            labels.insert(TENANT_LABEL.to_string(), tenant.clone());
        }
        let files = thanos_files(&segment_files, index_size);
        let meta = BlockMeta {
            ulid,
            min_time: mint,
            max_time: maxt,
            stats,
            compaction: BlockCompaction {
                level: 1,
                sources: vec![ulid],
                parents: Vec::new(),
            },
            version: META_VERSION,
            thanos: Some(ThanosMeta {
                labels,
                downsample: ThanosDownsample { resolution: 0 },
                source: self.options.source.clone(),
                segment_files: segment_files.into_iter().map(|(name, _)| name).collect(),
                files,
            }),
        };
        write_meta(dir, &meta)?;
        sync_dir(&chunks_dir)?;
        sync_dir(dir)?;
        Ok(Some(meta))
    }
}

/// Writes `dir/meta.json` (synced).
pub(crate) fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<(), BlockError> {
    let path = dir.join("meta.json");
    let json = serde_json::to_vec_pretty(meta).map_err(|source| BlockError::Meta {
        path: path.display().to_string(),
        source,
    })?;
    fs::write(&path, json).map_err(|e| BlockError::io(&path, "write", e))?;
    File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(|e| BlockError::io(&path, "fsync", e))
}

fn check_range(mint: i64, maxt: i64) -> Result<(), BlockError> {
    if mint >= maxt {
        return Err(BlockError::InvalidInput(format!(
            "block range [{mint}, {maxt}) is empty"
        )));
    }
    Ok(())
}

/// The part of `c` within `[mint, last]` and its sample count: `None` if no
/// sample is inside, `Some((None, n))` if `c` lies wholly inside (kept as is),
/// else a re-encoded chunk.
fn trim(
    labels: &Labels,
    c: &ChunkData,
    mint: i64,
    last: i64,
) -> Result<Option<(Option<ChunkData>, u64)>, BlockError> {
    let count = match c.data.as_slice() {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => {
            return Err(BlockError::InvalidInput(format!(
                "series {labels}: chunk of {} bytes is shorter than its 2-byte header",
                c.data.len()
            )))
        }
    };
    if count == 0 || c.max_time < mint || c.min_time > last {
        return Ok(None);
    }
    if c.min_time >= mint && c.max_time <= last {
        return Ok(Some((None, u64::from(count))));
    }
    let samples = decode_xor(&c.data)
        .map_err(|e| BlockError::InvalidInput(format!("series {labels}: {e}")))?;
    let mut out = XorChunk::new();
    for s in samples
        .iter()
        .filter(|s| s.timestamp_ms >= mint && s.timestamp_ms <= last)
    {
        out.append(s.timestamp_ms, s.value)
            .map_err(|e| BlockError::InvalidInput(format!("series {labels}: {e}")))?;
    }
    let (Some(min_time), Some(max_time)) = (out.min_time(), out.max_time()) else {
        return Ok(None);
    };
    let n = u64::from(out.num_samples());
    Ok(Some((
        Some(ChunkData {
            min_time,
            max_time,
            data: out.into_bytes(),
        }),
        n,
    )))
}

fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| BlockError::io(dir, "fsync", e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The Thanos section's file list of a block: its chunk segments and index
/// with their sizes, and `meta.json` (written last, so without a size).
pub(crate) fn thanos_files(segment_files: &[(String, u64)], index_size: u64) -> Vec<ThanosFile> {
    let mut files: Vec<ThanosFile> = segment_files
        .iter()
        .map(|(name, size)| ThanosFile {
            rel_path: format!("chunks/{name}"),
            size_bytes: Some(*size),
        })
        .collect();
    files.push(ThanosFile {
        rel_path: "index".to_string(),
        size_bytes: Some(index_size),
    });
    files.push(ThanosFile {
        rel_path: "meta.json".to_string(),
        size_bytes: None,
    });
    files
}
