//! Ranged reads of one block file in object storage, behind the synchronous
//! [`ReadAt`] the block readers of `strata-tsdb` parse through.
//!
//! The choice: the TSDB readers stay synchronous and every query of a block
//! runs on Tokio's blocking pool, where a read waits on its object-store
//! request with `Handle::block_on`. This keeps one parser for local and
//! remote blocks (no async copy of the index and chunk decoding), and a slow
//! bucket only ties up blocking threads, never the async workers serving
//! gRPC. Reads ahead ([`BucketFile::prefetch`]) send their requests
//! concurrently, so a batch of series or chunks costs a few round trips, not
//! one per entry.
//!
//! Every request is counted (requests and bytes per operation), and every
//! read first looks in the cache its range belongs to: postings lists
//! (fetched whole: a list ends where the next starts, known from the
//! index-header), series entries and chunks.

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_tsdb::block::ReadAt;
use tokio::runtime::Handle;

use crate::cache::{Caches, FileId, RangeCache};
use crate::metrics::StoreMetrics;

/// Requests a prefetch keeps in flight at once.
const PREFETCH_CONCURRENCY: usize = 8;

static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

/// What a file holds, for choosing the cache of a read.
#[derive(Debug, Clone)]
pub(crate) enum FileKind {
    /// The block's `index`: postings lists start at `postings_starts` (sorted)
    /// and the section ends at `postings_end`; series entries lie in `series`.
    Index {
        postings_starts: Arc<[u64]>,
        postings_end: u64,
        series: Range<u64>,
    },
    /// A chunks segment file.
    Chunks,
    /// Read without caching (building an index-header).
    Plain,
}

/// One object read by ranges. Reads must run outside async workers (on the
/// blocking pool): see the module documentation.
pub(crate) struct BucketFile {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
    id: FileId,
    kind: FileKind,
    caches: Arc<Caches>,
    metrics: StoreMetrics,
    handle: Handle,
    /// The file's first bytes when known locally (a segment's header).
    prefix: Option<Bytes>,
}

impl fmt::Debug for BucketFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketFile")
            .field("path", &self.path.as_ref())
            .field("size", &self.size)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BucketFile {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        size: u64,
        kind: FileKind,
        caches: Arc<Caches>,
        metrics: StoreMetrics,
        handle: Handle,
    ) -> Self {
        Self {
            store,
            path,
            size,
            id: NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            caches,
            metrics,
            handle,
            prefix: None,
        }
    }

    /// Serves reads of the file's first `prefix.len()` bytes from `prefix`.
    pub(crate) fn set_prefix(&mut self, prefix: Bytes) {
        self.prefix = Some(prefix);
    }

    pub(crate) fn id(&self) -> FileId {
        self.id
    }

    /// The cache for a read at `offset`, and the range to fetch on a miss
    /// (a whole postings list; otherwise the read itself).
    fn plan(&self, offset: u64, len: u64) -> (Option<&RangeCache>, Range<u64>) {
        let exact = offset..offset + len;
        match &self.kind {
            FileKind::Chunks => (Some(&self.caches.chunks), exact),
            FileKind::Plain => (None, exact),
            FileKind::Index {
                postings_starts,
                postings_end,
                series,
            } => {
                if series.contains(&offset) {
                    return (Some(&self.caches.series), exact);
                }
                let first = postings_starts.first().copied().unwrap_or(u64::MAX);
                if offset >= first && offset < *postings_end {
                    let i = postings_starts.partition_point(|&s| s <= offset);
                    let start = postings_starts[i.saturating_sub(1)];
                    let end = postings_starts.get(i).copied().unwrap_or(*postings_end);
                    if exact.end <= end {
                        return (Some(&self.caches.postings), start..end);
                    }
                    return (Some(&self.caches.postings), exact);
                }
                (None, exact)
            }
        }
    }

    /// Fetches `range` with one request, counted.
    pub(crate) async fn fetch(&self, range: Range<u64>) -> io::Result<Bytes> {
        let len = range.end - range.start;
        self.metrics
            .requests
            .with_label_values(&["get_range"])
            .inc();
        match self.store.get_range(&self.path, range).await {
            Ok(data) => {
                self.metrics
                    .request_bytes
                    .with_label_values(&["get_range"])
                    .inc_by(data.len() as u64);
                if data.len() as u64 != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{}: short ranged read", self.path),
                    ));
                }
                Ok(data)
            }
            Err(e) => {
                self.metrics
                    .request_failures
                    .with_label_values(&["get_range"])
                    .inc();
                Err(io::Error::other(format!("{}: {e}", self.path)))
            }
        }
    }

    /// Reads `ranges` (sorted, not overlapping) into the cache the file's
    /// kind uses for them, skipping ranges already cached, with a few
    /// requests in flight. Does nothing when that cache is disabled: reads
    /// then go one by one. Failures are left to the reads that follow, which
    /// retry and report them.
    pub(crate) async fn prefetch(&self, cache: &RangeCache, ranges: Vec<Range<u64>>) {
        if !cache.enabled() {
            return;
        }
        let wanted: Vec<Range<u64>> = ranges
            .into_iter()
            .map(|r| r.start.min(self.size)..r.end.min(self.size))
            .filter(|r| r.start < r.end && !cache.contains(self.id, r.start, r.end - r.start))
            .collect();
        let mut fetched = futures::stream::iter(wanted)
            .map(|r| async move { (r.start, self.fetch(r).await) })
            .buffer_unordered(PREFETCH_CONCURRENCY);
        while let Some((start, result)) = fetched.next().await {
            if let Ok(data) = result {
                cache.insert(self.id, start, data);
            }
        }
    }

    /// [`BucketFile::prefetch`] from a blocking thread.
    pub(crate) fn prefetch_blocking(&self, cache: &RangeCache, ranges: Vec<Range<u64>>) {
        if !ranges.is_empty() && cache.enabled() {
            self.handle.block_on(self.prefetch(cache, ranges));
        }
    }

    pub(crate) fn caches(&self) -> &Caches {
        &self.caches
    }
}

impl ReadAt for BucketFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len64 = len as u64;
        if let Some(prefix) = &self.prefix {
            if offset + len64 <= prefix.len() as u64 {
                return Ok(prefix.slice(offset as usize..offset as usize + len));
            }
        }
        let (cache, fetch) = self.plan(offset, len64);
        if let Some(cache) = cache {
            if let Some(hit) = cache.get(self.id, offset, len64) {
                return Ok(hit);
            }
        }
        let start = fetch.start;
        let data = self.handle.block_on(self.fetch(fetch))?;
        let from = (offset - start) as usize;
        let out = data.slice(from..from + len);
        if let Some(cache) = cache {
            cache.insert(self.id, start, data);
        }
        Ok(out)
    }
}

/// Groups sorted offsets into ranges to fetch: each offset wants `[o, o +
/// tail)`, and neighbours closer than `max_gap` share one range of at most
/// `max_range` bytes (the bytes between them are cheaper than a request).
pub(crate) fn coalesce(
    offsets: &[u64],
    tail: u64,
    max_gap: u64,
    max_range: u64,
) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &o in offsets {
        let want = o..o.saturating_add(tail);
        match out.last_mut() {
            Some(last)
                if want.start <= last.end.saturating_add(max_gap)
                    && want.end.saturating_sub(last.start) <= max_range =>
            {
                last.end = last.end.max(want.end);
            }
            _ => out.push(want),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_neighbours_within_gap_and_size() {
        assert_eq!(coalesce(&[], 10, 5, 100), Vec::<Range<u64>>::new());
        assert_eq!(coalesce(&[0, 12, 40], 10, 5, 100), vec![0..22, 40..50]);
        assert_eq!(coalesce(&[0, 12, 24], 10, 5, 25), vec![0..22, 24..34]);
        assert_eq!(coalesce(&[5, 5, 6], 10, 0, 100), vec![5..16]);
    }
}
