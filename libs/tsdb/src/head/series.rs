//! The head's in-memory series and their chunk lists, and the outcome and
//! errors of an append: what the head ([`super::Head`]) and its append loop
//! ([`super::append`]) share. A leaf: it takes nothing from either, only the
//! chunk encoding and a series' out-of-order samples ([`super::ooo`]).

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use strata_model::{Labels, Rfc3339};
use thiserror::Error;

use crate::chunk::{XorChunk, SAMPLES_PER_CHUNK};

use super::ooo::{OutOfOrder, Part};

/// A series' reference in the write-ahead log: assigned by its head when the
/// series is created, never given to another series of that head, and restored by
/// WAL replay ([`Head::restore_series`](super::Head::restore_series)), so
/// records written before and after a restart agree. Unlike
/// [`SeriesId`](super::SeriesId) it is not a position in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesRef(pub u64);

/// A handle on one series of a [`Head`](super::Head), to append to it without
/// looking its labels up again (WAL replay, an ingester that logs series refs).
/// Only meaningful with the head that returned it.
#[derive(Clone)]
pub struct HeadSeries(pub(super) Arc<MemSeries>);

impl HeadSeries {
    pub fn series_ref(&self) -> SeriesRef {
        SeriesRef(self.0.series_ref)
    }
}

impl fmt::Debug for HeadSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadSeries")
            .field("series_ref", &self.0.series_ref)
            .finish_non_exhaustive()
    }
}

/// One series: its labels as symbol IDs (name, value, name, value, …, in label
/// order) and its chunks.
pub(super) struct MemSeries {
    pub(super) series_ref: u64,
    pub(super) labels: Box<[u32]>,
    pub(super) chunks: Mutex<ChunkList>,
}

struct ClosedChunk {
    min_time: i64,
    max_time: i64,
    data: Box<[u8]>,
}

/// Closed chunks in time order, then the open one. The open chunk holds the
/// series' latest in-order sample (chunks are cut lazily, when the next sample
/// arrives). Out-of-order samples, if the series has any, live apart
/// ([`OutOfOrder`]); readers get both merged.
#[derive(Default)]
pub(super) struct ChunkList {
    closed: Vec<ClosedChunk>,
    pub(super) open: XorChunk,
    /// Boxed: most series never get one, and then it costs a pointer.
    pub(super) ooo: Option<Box<OutOfOrder>>,
}

impl ChunkList {
    pub(super) fn ooo_value_at(&self, t: i64) -> Option<u64> {
        self.ooo.as_ref()?.value_at(t)
    }

    /// The value bits of the series' sample at `t`, in-order or not.
    pub(super) fn value_at(&self, t: i64) -> Option<u64> {
        let in_chunk = |min: i64, max: i64, data: &[u8]| -> Option<u64> {
            if t < min || t > max {
                return None;
            }
            crate::chunk::decode_xor(data)
                .ok()?
                .iter()
                .find(|s| s.timestamp_ms == t)
                .map(|s| s.value.to_bits())
        };
        self.open_range()
            .and_then(|(min, max)| in_chunk(min, max, self.open.bytes()))
            .or_else(|| {
                self.closed
                    .iter()
                    .rev()
                    .find_map(|c| in_chunk(c.min_time, c.max_time, &c.data))
            })
            .or_else(|| self.ooo_value_at(t))
    }

    /// Inserts a late sample, `behind` the head's block bound or not.
    pub(super) fn insert_out_of_order(&mut self, t: i64, v: f64, behind: bool) {
        self.ooo
            .get_or_insert_with(Box::default)
            .insert(t, v, behind);
    }

    /// The timestamp of the series' earliest sample at or after `t` that
    /// the head's next in-order block could hold (late samples behind the
    /// block bound go into blocks of their own).
    pub(super) fn earliest_from(&self, t: i64) -> Option<i64> {
        let first_at_or_after = |min: i64, max: i64, data: &[u8]| -> Option<i64> {
            if max < t {
                return None;
            }
            if min >= t {
                return Some(min);
            }
            // The chunk straddles `t`: only its samples tell. A chunk that
            // does not decode counts from its end (it is never cut before it).
            Some(
                crate::chunk::decode_xor(data)
                    .ok()
                    .and_then(|samples| samples.iter().map(|s| s.timestamp_ms).find(|&ts| ts >= t))
                    .unwrap_or(max),
            )
        };
        let in_order = self
            .closed
            .iter()
            .find_map(|c| first_at_or_after(c.min_time, c.max_time, &c.data))
            .or_else(|| {
                let (min, max) = (self.open.min_time()?, self.open.max_time()?);
                first_at_or_after(min, max, self.open.bytes())
            });
        let ooo = self.ooo.as_ref().and_then(|o| o.earliest_ahead_from(t));
        in_order.into_iter().chain(ooo).min()
    }

    /// Appends to the open chunk, first cutting it if full. False only if the
    /// encoder refused the sample, which cutting makes impossible.
    pub(super) fn push(&mut self, t: i64, v: f64) -> bool {
        if self.open.num_samples() >= SAMPLES_PER_CHUNK {
            let full = std::mem::take(&mut self.open);
            if let (Some(min_time), Some(max_time)) = (full.min_time(), full.max_time()) {
                self.closed.push(ClosedChunk {
                    min_time,
                    max_time,
                    data: full.into_bytes().into_boxed_slice(),
                });
            }
        }
        self.open.append(t, v).is_ok()
    }

    fn open_range(&self) -> Option<(i64, i64)> {
        Some((self.open.min_time()?, self.open.max_time()?))
    }

    /// Earliest and latest sample of the series; `None` without chunks.
    pub(super) fn range(&self) -> Option<(i64, i64)> {
        let open = self.open_range();
        let min = self
            .closed
            .first()
            .map(|c| c.min_time)
            .or(open.map(|r| r.0));
        let max = open.map(|r| r.1).or(self.closed.last().map(|c| c.max_time));
        let in_order = min.zip(max);
        let ooo = self.ooo.as_ref().and_then(|o| o.range());
        match (in_order, ooo) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (one, other) => one.or(other),
        }
    }

    /// Drops the chunks whose samples are all older than `ts`, but not the
    /// late samples behind the block bound (no block holds them yet); how
    /// many.
    pub(super) fn drop_before(&mut self, ts: i64) -> usize {
        let before = self.closed.len();
        self.closed.retain(|c| c.max_time >= ts);
        let mut dropped = before - self.closed.len();
        if self.open_range().is_some_and(|(_, max)| max < ts) {
            self.open = XorChunk::default();
            dropped += 1;
        }
        if let Some(ooo) = &mut self.ooo {
            dropped += ooo.drop_ahead_before(ts);
            self.drop_ooo_if_empty();
        }
        dropped
    }

    pub(super) fn drop_ooo_if_empty(&mut self) {
        if self.ooo.as_ref().is_some_and(|o| o.is_empty()) {
            self.ooo = None;
        }
    }

    pub(super) fn has_data_in(&self, mint: i64, maxt: i64) -> bool {
        let overlaps = |min: i64, max: i64| min <= maxt && max >= mint;
        self.open_range().is_some_and(|(a, b)| overlaps(a, b))
            || self.closed.iter().any(|c| overlaps(c.min_time, c.max_time))
            || self
                .ooo
                .as_ref()
                .is_some_and(|o| o.has_data_in(mint, maxt, Part::All))
    }

    /// The series' chunks of `part` overlapping `[mint, maxt]`, in time order
    /// and not overlapping each other, as every reader of a head expects: a
    /// series with out-of-order samples in the range gets its samples in the
    /// range merged and encoded afresh.
    pub(super) fn overlapping(&self, mint: i64, maxt: i64, part: Part) -> Vec<ChunkData> {
        let in_order = match part {
            Part::LateBlock => Vec::new(),
            Part::All | Part::InOrderBlock => self.overlapping_in_order(mint, maxt),
        };
        let Some(ooo) = self
            .ooo
            .as_ref()
            .filter(|o| o.has_data_in(mint, maxt, part))
        else {
            return in_order;
        };
        let mut samples: Vec<(i64, f64)> = Vec::new();
        ooo.collect(mint, maxt, part, &mut samples);
        for chunk in &in_order {
            // Chunks this head encoded always decode.
            for s in crate::chunk::decode_xor(&chunk.data).unwrap_or_default() {
                if mint <= s.timestamp_ms && s.timestamp_ms <= maxt {
                    samples.push((s.timestamp_ms, s.value));
                }
            }
        }
        // The head never holds a timestamp twice in a series; the stable
        // sort and dedup keep that true here whatever happens.
        samples.sort_by_key(|&(t, _)| t);
        samples.dedup_by_key(|&mut (t, _)| t);
        encode_chunks(&samples)
    }

    fn overlapping_in_order(&self, mint: i64, maxt: i64) -> Vec<ChunkData> {
        let overlaps = |min: i64, max: i64| min <= maxt && max >= mint;
        let mut out: Vec<ChunkData> = self
            .closed
            .iter()
            .filter(|c| overlaps(c.min_time, c.max_time))
            .map(|c| ChunkData {
                min_time: c.min_time,
                max_time: c.max_time,
                data: c.data.to_vec(),
            })
            .collect();
        if let Some((min_time, max_time)) = self.open_range() {
            if overlaps(min_time, max_time) {
                out.push(ChunkData {
                    min_time,
                    max_time,
                    data: self.open.bytes().to_vec(),
                });
            }
        }
        out
    }
}

/// `samples` (sorted, unique timestamps) as XOR chunks of at most
/// [`SAMPLES_PER_CHUNK`] samples.
fn encode_chunks(samples: &[(i64, f64)]) -> Vec<ChunkData> {
    let mut out = Vec::with_capacity(samples.len().div_ceil(usize::from(SAMPLES_PER_CHUNK)));
    for part in samples.chunks(usize::from(SAMPLES_PER_CHUNK)) {
        let mut chunk = XorChunk::new();
        for &(t, v) in part {
            if chunk.append(t, v).is_err() {
                break;
            }
        }
        if let (Some(min_time), Some(max_time)) = (chunk.min_time(), chunk.max_time()) {
            out.push(ChunkData {
                min_time,
                max_time,
                data: chunk.into_bytes(),
            });
        }
    }
    out
}

/// A chunk as handed to queriers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkData {
    pub min_time: i64,
    pub max_time: i64,
    /// Prometheus XOR chunk bytes ([`XorChunk::bytes`]).
    pub data: Vec<u8>,
}

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Samples stored; silent duplicates (same timestamp, same value) are not counted.
    pub appended: usize,
    /// Of those, the samples stored out of order (older than the series'
    /// newest, within the out-of-order window).
    pub out_of_order: usize,
}

/// A rejected sample. Samples of the same call before it stay appended; the rest of
/// that call's samples are not looked at.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AppendError {
    #[error(
        "out-of-order sample: timestamp {} is older than the latest sample {} of series {series}; \
         samples of a series must be sent in timestamp order (err-strata-sample-out-of-order)",
        Rfc3339(*.timestamp_ms),
        Rfc3339(*.latest_ms)
    )]
    OutOfOrder {
        series: Labels,
        timestamp_ms: i64,
        latest_ms: i64,
        appended: usize,
        /// Position of the rejected sample in the call's samples.
        index: usize,
    },
    #[error(
        "duplicate sample for timestamp: new value for timestamp {}, which is the latest sample {} \
         of series {series} and holds a different value (err-strata-sample-duplicate-timestamp)",
        Rfc3339(*.timestamp_ms),
        Rfc3339(*.latest_ms)
    )]
    DuplicateTimestamp {
        series: Labels,
        timestamp_ms: i64,
        latest_ms: i64,
        appended: usize,
        /// Position of the rejected sample in the call's samples.
        index: usize,
    },
    #[error(
        "sample timestamp too old: timestamp {} of series {series} is older than {}, the oldest \
         sample this ingester's head takes out of order now (the out-of-order window of {} ms \
         before the head's newest sample) (err-strata-sample-too-old)",
        Rfc3339(*.timestamp_ms),
        Rfc3339(*.oldest_ms),
        .window_ms
    )]
    TooOld {
        series: Labels,
        timestamp_ms: i64,
        oldest_ms: i64,
        window_ms: i64,
        appended: usize,
        /// Position of the rejected sample in the call's samples.
        index: usize,
    },
    #[error(
        "out-of-bounds sample: timestamp {} of series {series} is older than {}, the oldest this \
         ingester's head accepts now (an hour or half a block range before its newest sample, or \
         where its data was already cut into a block) (err-strata-sample-out-of-bounds)",
        Rfc3339(*.timestamp_ms),
        Rfc3339(*.min_valid_ms)
    )]
    OutOfBounds {
        series: Labels,
        timestamp_ms: i64,
        min_valid_ms: i64,
        appended: usize,
        /// Position of the rejected sample in the call's samples.
        index: usize,
    },
}

impl AppendError {
    /// Samples of the failed call that were appended before the rejected one.
    pub fn appended(&self) -> usize {
        match self {
            AppendError::OutOfOrder { appended, .. }
            | AppendError::DuplicateTimestamp { appended, .. }
            | AppendError::OutOfBounds { appended, .. }
            | AppendError::TooOld { appended, .. } => *appended,
        }
    }

    /// Position of the rejected sample in the call's samples: the samples
    /// before it were appended or skipped as duplicates, none after it was
    /// looked at. An ingester logs `samples[..index()]` to its WAL.
    pub fn index(&self) -> usize {
        match self {
            AppendError::OutOfOrder { index, .. }
            | AppendError::DuplicateTimestamp { index, .. }
            | AppendError::OutOfBounds { index, .. }
            | AppendError::TooOld { index, .. } => *index,
        }
    }

    /// The discard reason, as Mimir names it in `cortex_discarded_samples_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AppendError::OutOfOrder { .. } => "sample-out-of-order",
            AppendError::DuplicateTimestamp { .. } => "new-value-for-timestamp",
            AppendError::OutOfBounds { .. } => "sample-out-of-bounds",
            AppendError::TooOld { .. } => "sample-too-old",
        }
    }

    /// The series the rejected sample belongs to.
    pub fn series(&self) -> &Labels {
        match self {
            AppendError::OutOfOrder { series, .. }
            | AppendError::DuplicateTimestamp { series, .. }
            | AppendError::OutOfBounds { series, .. }
            | AppendError::TooOld { series, .. } => series,
        }
    }

    /// The rejected sample's timestamp (ms).
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            AppendError::OutOfOrder { timestamp_ms, .. }
            | AppendError::DuplicateTimestamp { timestamp_ms, .. }
            | AppendError::OutOfBounds { timestamp_ms, .. }
            | AppendError::TooOld { timestamp_ms, .. } => *timestamp_ms,
        }
    }
}

/// Why [`Head::append_series`](super::Head::append_series) stopped.
#[derive(Clone, Copy)]
pub(super) enum Rejection {
    OutOfOrder,
    Duplicate,
    OutOfBounds,
    TooOld,
}
