//! Prometheus TSDB blocks: writing a block directory from series and their XOR
//! chunks, and reading one back by label matchers.
//!
//! A block is a directory named by its [`Ulid`] holding `meta.json`
//! ([`BlockMeta`], with the Thanos section object-storage tools expect), an
//! `index` in Prometheus's format v2 ([`index`](IndexReader): symbols, series,
//! label indices, postings and their offset tables, TOC) and `chunks/000001…`
//! segment files ([`ChunkReader`]). The layout is Prometheus's own, so `promtool
//! tsdb analyze`/`dump` read the blocks [`BlockWriter`] writes, and
//! [`BlockReader`] reads blocks written by Prometheus, Thanos and Mimir.
//!
//! Readers reach their files only through [`ReadAt`] (positional reads of known
//! size), so the same code serves a local directory today and ranged reads from
//! object storage later. Nothing in a file is trusted: every offset and length is
//! checked against the file's size, every checksum is verified, and corrupt input
//! ends in a [`BlockError`] naming the file and offset, never in a panic.
//!
//! What this module does not do (yet): tombstones (none are written; a
//! `tombstones` file is ignored), native-histogram chunks (read as an
//! [`BlockError::Unsupported`] error) and an index-header (the reader keeps the
//! symbol table and the postings offset table in memory). [`compact`] merges
//! blocks into one (the compactor's vertical and level compaction).

mod chunks;
mod compact;
mod encoding;
mod error;
mod index;
mod index_header;
mod meta;
mod read_at;
mod reader;
mod ulid;
mod writer;

#[cfg(test)]
mod promtool_tests;
#[cfg(test)]
mod tests;

pub use chunks::{
    ChunkReader, RawChunk, CHUNKS_FORMAT_V1, DEFAULT_SEGMENT_SIZE, ENCODING_XOR, MAGIC_CHUNKS,
};
pub use compact::{compact, CompactOutcome};
pub use error::BlockError;
pub use index::{
    ChunkMeta, IndexReader, SeriesEntry, SeriesRef, Toc, INDEX_FORMAT_V2, MAGIC_INDEX,
};
pub use index_header::IndexHeader;
pub use meta::{
    BlockCompaction, BlockDesc, BlockMeta, BlockStats, ThanosDownsample, ThanosFile, ThanosMeta,
    META_VERSION, TENANT_LABEL,
};
pub use read_at::{FileReadAt, ReadAt};
pub use reader::BlockReader;
pub use ulid::{Ulid, UlidError};
pub use writer::{BlockOptions, BlockWriter};
