//! Opening a block and selecting series with their chunks by label matchers.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use strata_model::Matcher;

use super::chunks::{ChunkReader, ENCODING_XOR};
use super::error::BlockError;
use super::index::{IndexReader, SeriesEntry};
use super::meta::BlockMeta;
use super::read_at::{FileReadAt, ReadAt};
use crate::head::{ChunkData, SeriesChunks};

/// A readable block: its meta, index and chunks.
#[derive(Debug, Clone)]
pub struct BlockReader {
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
}

impl BlockReader {
    /// Opens the block directory `dir` (`meta.json`, `index`, `chunks/*`).
    pub fn open(dir: &Path) -> Result<Self, BlockError> {
        let meta_path = dir.join("meta.json");
        let raw = fs::read(&meta_path).map_err(|e| BlockError::io(&meta_path, "read", e))?;
        let meta: BlockMeta = serde_json::from_slice(&raw).map_err(|source| BlockError::Meta {
            path: meta_path.display().to_string(),
            source,
        })?;
        let index_path = dir.join("index");
        let index =
            FileReadAt::open(&index_path).map_err(|e| BlockError::io(&index_path, "open", e))?;

        let chunks_dir = dir.join("chunks");
        let mut names: Vec<String> = Vec::new();
        let listing =
            fs::read_dir(&chunks_dir).map_err(|e| BlockError::io(&chunks_dir, "list", e))?;
        for entry in listing {
            let entry = entry.map_err(|e| BlockError::io(&chunks_dir, "list", e))?;
            if let Some(name) = entry.file_name().to_str() {
                // Segment files are named by six or more digits.
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    names.push(name.to_string());
                }
            }
        }
        names.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        let mut segments: Vec<(String, Arc<dyn ReadAt>)> = Vec::with_capacity(names.len());
        for name in names {
            let path = chunks_dir.join(&name);
            let file = FileReadAt::open(&path).map_err(|e| BlockError::io(&path, "open", e))?;
            segments.push((path.display().to_string(), Arc::new(file)));
        }
        Self::from_parts(
            meta,
            (index_path.display().to_string(), Arc::new(index)),
            segments,
        )
    }

    /// A block from its parts, for object storage: the parsed meta, the index
    /// file and the segment files in order, each with the name errors use.
    pub fn from_parts(
        meta: BlockMeta,
        index: (String, Arc<dyn ReadAt>),
        segments: Vec<(String, Arc<dyn ReadAt>)>,
    ) -> Result<Self, BlockError> {
        let index = IndexReader::open(index.0, index.1)?;
        let chunks = ChunkReader::new(segments)?;
        Ok(Self {
            meta,
            index,
            chunks,
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    /// Series matching `matchers` (all series for none) with their chunks that
    /// overlap `[mint, maxt]` (both inclusive, as [`crate::head::Head::select_chunks`]);
    /// series without such a chunk are left out. Sorted by labels.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesChunks>, BlockError> {
        // The meta's range is [min_time, max_time).
        if mint > maxt || maxt < self.meta.min_time || mint >= self.meta.max_time {
            return Ok(Vec::new());
        }
        let ids = self.index.postings_for_matchers(matchers)?;
        let mut out = Vec::new();
        for id in ids {
            let SeriesEntry { labels, chunks } = self.index.series(id)?;
            let mut data = Vec::new();
            for meta in chunks
                .iter()
                .filter(|c| c.min_time <= maxt && c.max_time >= mint)
            {
                let raw = self.chunks.chunk(meta.chunk_ref)?;
                if raw.encoding != ENCODING_XOR {
                    return Err(BlockError::Unsupported {
                        file: "chunks".to_string(),
                        reason: format!(
                            "series {labels}: chunk {:#x} has encoding {} (only XOR floats, 1, \
                             are read)",
                            meta.chunk_ref, raw.encoding
                        ),
                    });
                }
                data.push(ChunkData {
                    min_time: meta.min_time,
                    max_time: meta.max_time,
                    data: raw.data.to_vec(),
                });
            }
            if !data.is_empty() {
                out.push(SeriesChunks {
                    labels,
                    chunks: data,
                });
            }
        }
        Ok(out)
    }
}
