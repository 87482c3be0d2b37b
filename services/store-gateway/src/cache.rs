//! In-memory LRU caches of byte ranges of block files, each within a byte
//! budget. An entry is a range `[start, start + len)` of one file; a read is a
//! hit when one cached range contains it, so a range fetched ahead (several
//! series entries, the chunks of a batch, a whole postings list) serves every
//! read inside it.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

use crate::metrics::StoreMetrics;

/// A file of a loaded block, unique within the process.
pub(crate) type FileId = u64;

/// How many cached ranges starting at or before a read are checked for
/// containing it (ranges rarely nest, so a few suffice).
const LOOKBACK: usize = 4;

/// One cache (postings, series or chunks).
#[derive(Debug)]
pub(crate) struct RangeCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    requests: IntCounter,
    hits: IntCounter,
    evictions: IntCounter,
    bytes: IntGauge,
    items: IntGauge,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per file: range start → entry.
    files: HashMap<FileId, BTreeMap<u64, Entry>>,
    /// Use order: tick → (file, start); the smallest tick is evicted first.
    lru: BTreeMap<u64, (FileId, u64)>,
    tick: u64,
    used: u64,
}

#[derive(Debug)]
struct Entry {
    data: Bytes,
    tick: u64,
}

impl RangeCache {
    pub(crate) fn new(name: &str, max_bytes: u64, metrics: &StoreMetrics) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(Inner::default()),
            requests: metrics.cache_requests.with_label_values(&[name]),
            hits: metrics.cache_hits.with_label_values(&[name]),
            evictions: metrics.cache_evictions.with_label_values(&[name]),
            bytes: metrics.cache_bytes.with_label_values(&[name]),
            items: metrics.cache_items.with_label_values(&[name]),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// `len` bytes at `offset` of `file`, if a cached range holds them all;
    /// counts a lookup and, when found, a hit.
    pub(crate) fn get(&self, file: FileId, offset: u64, len: u64) -> Option<Bytes> {
        self.requests.inc();
        let found = self.lookup(file, offset, len, true);
        if found.is_some() {
            self.hits.inc();
        }
        found
    }

    /// Whether the range is cached, without counting or touching it.
    pub(crate) fn contains(&self, file: FileId, offset: u64, len: u64) -> bool {
        self.lookup(file, offset, len, false).is_some()
    }

    fn lookup(&self, file: FileId, offset: u64, len: u64, touch: bool) -> Option<Bytes> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let ranges = inner.files.get_mut(&file)?;
        let end = offset.checked_add(len)?;
        let start = ranges
            .range(..=offset)
            .rev()
            .take(LOOKBACK)
            .find(|(start, e)| **start + e.data.len() as u64 >= end)
            .map(|(start, _)| *start)?;
        let entry = ranges.get_mut(&start)?;
        let from = (offset - start) as usize;
        let data = entry.data.slice(from..from + len as usize);
        if touch {
            inner.tick += 1;
            inner.lru.remove(&entry.tick);
            entry.tick = inner.tick;
            inner.lru.insert(entry.tick, (file, start));
        }
        Some(data)
    }

    /// Caches `data` as the range of `file` starting at `start`, evicting the
    /// least recently used ranges to stay within the budget. A range larger
    /// than the whole budget is not cached.
    pub(crate) fn insert(&self, file: FileId, start: u64, data: Bytes) {
        let len = data.len() as u64;
        if len == 0 || len > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.tick += 1;
        let tick = inner.tick;
        let ranges = inner.files.entry(file).or_default();
        if let Some(old) = ranges.get(&start) {
            if old.data.len() as u64 >= len {
                return;
            }
        }
        if let Some(old) = ranges.insert(start, Entry { data, tick }) {
            inner.lru.remove(&old.tick);
            inner.used -= old.data.len() as u64;
        }
        inner.lru.insert(tick, (file, start));
        inner.used += len;
        while inner.used > self.max_bytes {
            let Some((_, (f, s))) = inner.lru.pop_first() else {
                break;
            };
            if let Some(ranges) = inner.files.get_mut(&f) {
                if let Some(old) = ranges.remove(&s) {
                    inner.used -= old.data.len() as u64;
                    self.evictions.inc();
                }
                if ranges.is_empty() {
                    inner.files.remove(&f);
                }
            }
        }
        self.publish(inner);
    }

    /// Drops every range of `file` (its block is no longer served).
    pub(crate) fn remove_file(&self, file: FileId) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some(ranges) = inner.files.remove(&file) {
            for entry in ranges.values() {
                inner.lru.remove(&entry.tick);
                inner.used -= entry.data.len() as u64;
            }
        }
        self.publish(inner);
    }

    fn publish(&self, inner: &Inner) {
        self.bytes.set(inner.used as i64);
        self.items.set(inner.lru.len() as i64);
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.inner.lock().used
    }
}

/// The three caches of a store-gateway.
#[derive(Debug)]
pub(crate) struct Caches {
    pub(crate) postings: RangeCache,
    pub(crate) series: RangeCache,
    pub(crate) chunks: RangeCache,
}

impl Caches {
    pub(crate) fn new(
        postings_bytes: u64,
        series_bytes: u64,
        chunks_bytes: u64,
        metrics: &StoreMetrics,
    ) -> Self {
        Self {
            postings: RangeCache::new("postings", postings_bytes, metrics),
            series: RangeCache::new("series", series_bytes, metrics),
            chunks: RangeCache::new("chunks", chunks_bytes, metrics),
        }
    }

    pub(crate) fn remove_file(&self, file: FileId) {
        self.postings.remove_file(file);
        self.series.remove_file(file);
        self.chunks.remove_file(file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: u64) -> (RangeCache, StoreMetrics) {
        let metrics = StoreMetrics::new(&prometheus::Registry::new()).unwrap();
        (RangeCache::new("chunks", max, &metrics), metrics)
    }

    #[test]
    fn reads_inside_a_cached_range_hit() {
        let (c, metrics) = cache(1000);
        c.insert(1, 100, Bytes::from((0u8..50).collect::<Vec<_>>()));
        assert_eq!(
            c.get(1, 110, 5).unwrap(),
            Bytes::from(vec![10, 11, 12, 13, 14])
        );
        assert_eq!(c.get(1, 100, 50).unwrap().len(), 50);
        assert!(c.get(1, 140, 11).is_none(), "reaches past the range");
        assert!(c.get(1, 99, 2).is_none(), "starts before the range");
        assert!(c.get(2, 110, 5).is_none(), "another file");
        assert_eq!(metrics.cache_stats("chunks"), (5, 2));
        // A nested smaller range does not hide the larger one.
        c.insert(1, 120, Bytes::from(vec![9u8; 5]));
        assert_eq!(c.get(1, 121, 20).unwrap()[0], 21);
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let (c, _) = cache(100);
        c.insert(1, 0, Bytes::from(vec![1u8; 40]));
        c.insert(1, 100, Bytes::from(vec![2u8; 40]));
        // Touch the first so the second is the least recently used.
        assert!(c.get(1, 0, 1).is_some());
        c.insert(2, 0, Bytes::from(vec![3u8; 40]));
        assert!(c.used() <= 100);
        assert!(c.contains(1, 0, 40));
        assert!(!c.contains(1, 100, 40));
        assert!(c.contains(2, 0, 40));
        // Larger than the budget: not cached at all.
        c.insert(3, 0, Bytes::from(vec![0u8; 101]));
        assert!(!c.contains(3, 0, 1));
        c.remove_file(2);
        assert!(!c.contains(2, 0, 1));
        assert_eq!(c.used(), 40);
        // A disabled cache keeps nothing.
        let (off, _) = cache(0);
        off.insert(1, 0, Bytes::from(vec![1u8; 4]));
        assert!(!off.enabled() && !off.contains(1, 0, 1));
    }
}
