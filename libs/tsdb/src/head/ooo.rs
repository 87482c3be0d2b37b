//! A series' out-of-order samples: those older than its newest sample that the
//! out-of-order window let in. Kept apart from the in-order chunks, as
//! Prometheus does, so that the in-order path (by far the common one) stays an
//! append to one XOR chunk: a small sorted buffer takes inserts at any
//! position; when full it is encoded as an XOR chunk of its own. Those chunks
//! may overlap each other and the in-order chunks; readers merge them.
//!
//! A series' late samples are kept in three parts by where they go
//! ([`OutOfOrder`]): those at or after the head's block bound when they came
//! are cut with the in-order samples of their range; those behind it (blocks
//! already cut cover their time) are cut into blocks of their own, which
//! overlap the older ones until the compactor merges them.

use crate::chunk::{decode_xor, XorChunk};

/// Samples the sorted buffer holds before it is encoded into a chunk
/// (Prometheus's default `out_of_order_cap_max`).
const BUFFER_CAPACITY: usize = 32;

/// An encoded out-of-order chunk.
struct OooChunk {
    min_time: i64,
    max_time: i64,
    data: Box<[u8]>,
}

impl OooChunk {
    fn encode(samples: &[(i64, f64)]) -> Option<Self> {
        let mut chunk = XorChunk::new();
        for &(t, v) in samples {
            // Sorted and unique by timestamp: the encoder takes them all.
            if chunk.append(t, v).is_err() {
                return None;
            }
        }
        Some(Self {
            min_time: chunk.min_time()?,
            max_time: chunk.max_time()?,
            data: chunk.into_bytes().into_boxed_slice(),
        })
    }

    /// The chunk's samples; a chunk this module encoded always decodes.
    fn samples(&self) -> Vec<(i64, f64)> {
        decode_xor(&self.data)
            .map(|s| s.iter().map(|s| (s.timestamp_ms, s.value)).collect())
            .unwrap_or_default()
    }
}

/// The out-of-order samples of one series. No timestamp is in it twice, nor
/// in it and in the series' in-order chunks (the head checks before inserting).
#[derive(Default)]
struct OooSamples {
    chunks: Vec<OooChunk>,
    /// Sorted by timestamp.
    buffer: Vec<(i64, f64)>,
}

impl OooSamples {
    /// The value bits at `t`, if a sample has that timestamp.
    fn value_at(&self, t: i64) -> Option<u64> {
        if let Ok(i) = self.buffer.binary_search_by_key(&t, |&(ts, _)| ts) {
            return Some(self.buffer[i].1.to_bits());
        }
        self.chunks
            .iter()
            .filter(|c| c.min_time <= t && t <= c.max_time)
            .find_map(|c| {
                c.samples()
                    .into_iter()
                    .find(|&(ts, _)| ts == t)
                    .map(|(_, v)| v.to_bits())
            })
    }

    /// Inserts a sample whose timestamp is not in the series yet.
    fn insert(&mut self, t: i64, v: f64) {
        if self.buffer.len() >= BUFFER_CAPACITY {
            self.seal();
        }
        let at = self.buffer.partition_point(|&(ts, _)| ts < t);
        self.buffer.insert(at, (t, v));
    }

    fn seal(&mut self) {
        if let Some(chunk) = OooChunk::encode(&self.buffer) {
            self.chunks.push(chunk);
        }
        self.buffer.clear();
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.buffer.is_empty()
    }

    /// Earliest and latest timestamp; `None` when empty.
    fn range(&self) -> Option<(i64, i64)> {
        let ranges = self.chunks.iter().map(|c| (c.min_time, c.max_time)).chain(
            self.buffer
                .first()
                .zip(self.buffer.last())
                .map(|(a, b)| (a.0, b.0)),
        );
        fold_ranges(ranges)
    }

    fn has_data_in(&self, mint: i64, maxt: i64) -> bool {
        self.buffer.iter().any(|&(t, _)| mint <= t && t <= maxt)
            || self
                .chunks
                .iter()
                .any(|c| c.min_time <= maxt && c.max_time >= mint)
    }

    /// The earliest timestamp at or after `t`.
    fn earliest_from(&self, t: i64) -> Option<i64> {
        let in_buffer = self.buffer.iter().map(|&(ts, _)| ts).find(|&ts| ts >= t);
        let in_chunks = self
            .chunks
            .iter()
            .filter(|c| c.max_time >= t)
            .filter_map(|c| {
                if c.min_time >= t {
                    Some(c.min_time)
                } else {
                    c.samples()
                        .into_iter()
                        .map(|(ts, _)| ts)
                        .find(|&ts| ts >= t)
                }
            })
            .min();
        in_buffer.into_iter().chain(in_chunks).min()
    }

    /// Appends the samples within `[mint, maxt]` to `out` (unsorted).
    fn collect(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        let within = |&(t, _): &(i64, f64)| mint <= t && t <= maxt;
        for c in &self.chunks {
            if c.min_time <= maxt && c.max_time >= mint {
                out.extend(c.samples().into_iter().filter(within));
            }
        }
        out.extend(self.buffer.iter().copied().filter(within));
    }

    /// Moves every sample of `other` into this one.
    fn take_all(&mut self, other: &mut OooSamples) {
        let mut samples = Vec::new();
        other.collect(i64::MIN, i64::MAX, &mut samples);
        *other = OooSamples::default();
        samples.sort_by_key(|&(t, _)| t);
        for (t, v) in samples {
            if self.value_at(t).is_none() {
                self.insert(t, v);
            }
        }
    }

    /// Drops exactly the samples older than `ts` (a chunk reaching `ts` is
    /// re-encoded without them): unlike in-order chunks, which truncation
    /// keeps whole, these are cut into the block before `ts` and must not be
    /// cut again into the next one. Returns how many chunks went.
    fn drop_before(&mut self, ts: i64) -> usize {
        let before = self.chunks.len();
        let mut kept = Vec::with_capacity(before);
        for c in std::mem::take(&mut self.chunks) {
            if c.max_time < ts {
                continue;
            }
            if c.min_time >= ts {
                kept.push(c);
                continue;
            }
            let rest: Vec<(i64, f64)> = c.samples().into_iter().filter(|&(t, _)| t >= ts).collect();
            kept.extend(OooChunk::encode(&rest));
        }
        let dropped = before.saturating_sub(kept.len());
        self.chunks = kept;
        self.buffer.retain(|&(t, _)| t >= ts);
        dropped
    }
}

/// Which of a series' samples a reader wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// Every sample: what queries read.
    All,
    /// The in-order samples and the late ones ahead of the block bound: what
    /// the head's next in-order block holds.
    InOrderBlock,
    /// The late samples behind the block bound that a late cut is writing.
    LateBlock,
}

/// A series' out-of-order samples, by where they go.
#[derive(Default)]
pub(super) struct OutOfOrder {
    /// At or after the head's block bound when they came: the head's next
    /// in-order block takes them, and truncation behind it drops them.
    ahead: OooSamples,
    /// Behind the bound when they came: truncation keeps them; a late cut
    /// writes them into blocks of their own.
    behind: OooSamples,
    /// The `behind` samples a late cut is writing into blocks now: queries
    /// read them until the blocks are in place.
    cutting: OooSamples,
}

impl OutOfOrder {
    fn parts(&self) -> [&OooSamples; 3] {
        [&self.ahead, &self.behind, &self.cutting]
    }

    pub(super) fn value_at(&self, t: i64) -> Option<u64> {
        self.parts().into_iter().find_map(|p| p.value_at(t))
    }

    /// Inserts a sample whose timestamp is not in the series yet, `behind`
    /// the head's block bound or not.
    pub(super) fn insert(&mut self, t: i64, v: f64, behind: bool) {
        if behind {
            self.behind.insert(t, v);
        } else {
            self.ahead.insert(t, v);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.parts().iter().all(|p| p.is_empty())
    }

    pub(super) fn range(&self) -> Option<(i64, i64)> {
        fold_ranges(self.parts().into_iter().filter_map(OooSamples::range))
    }

    /// Earliest and latest timestamp behind the block bound (being cut or
    /// not).
    pub(super) fn late_range(&self) -> Option<(i64, i64)> {
        fold_ranges(
            [&self.behind, &self.cutting]
                .into_iter()
                .filter_map(OooSamples::range),
        )
    }

    pub(super) fn has_data_in(&self, mint: i64, maxt: i64, part: Part) -> bool {
        match part {
            Part::All => self.parts().iter().any(|p| p.has_data_in(mint, maxt)),
            Part::InOrderBlock => self.ahead.has_data_in(mint, maxt),
            Part::LateBlock => self.cutting.has_data_in(mint, maxt),
        }
    }

    /// Appends the samples of `part` within `[mint, maxt]` to `out`.
    pub(super) fn collect(&self, mint: i64, maxt: i64, part: Part, out: &mut Vec<(i64, f64)>) {
        match part {
            Part::All => {
                for p in self.parts() {
                    p.collect(mint, maxt, out);
                }
            }
            Part::InOrderBlock => self.ahead.collect(mint, maxt, out),
            Part::LateBlock => self.cutting.collect(mint, maxt, out),
        }
    }

    /// The earliest timestamp at or after `t` that the next in-order block
    /// could hold.
    pub(super) fn earliest_ahead_from(&self, t: i64) -> Option<i64> {
        self.ahead.earliest_from(t)
    }

    /// Truncation behind a block just cut: drops the samples ahead of the
    /// old bound older than `ts` (they are in that block). Returns how many
    /// chunks went.
    pub(super) fn drop_ahead_before(&mut self, ts: i64) -> usize {
        self.ahead.drop_before(ts)
    }

    /// A late cut begins: the samples behind the bound join those being cut
    /// (left there by a cut that failed). Returns their time range.
    pub(super) fn begin_late_cut(&mut self) -> Option<(i64, i64)> {
        if self.cutting.is_empty() {
            std::mem::swap(&mut self.cutting, &mut self.behind);
        } else {
            self.cutting.take_all(&mut self.behind);
        }
        self.cutting.range()
    }

    /// The late cut's blocks before `ts` are in place: their samples go.
    pub(super) fn drop_cut_before(&mut self, ts: i64) {
        self.cutting.drop_before(ts);
    }
}

fn fold_ranges(ranges: impl IntoIterator<Item = (i64, i64)>) -> Option<(i64, i64)> {
    ranges.into_iter().fold(None, |acc, (min, max)| match acc {
        None => Some((min, max)),
        Some((a, b)) => Some((a.min(min), b.max(max))),
    })
}
