//! What to compact next, decided from blocks' metas alone (no I/O), so the
//! rules are unit-tested here and the pass only carries them out.
//!
//! 1. Vertical: blocks whose time ranges overlap — the RF copies of one range
//!    that the replicated ingesters upload, or a late upload overlapping an
//!    already compacted block — are merged, all of one overlapping group at once.
//! 2. Levels: with no overlap left, for each range after the first
//!    (`block_ranges`, e.g. 12h then 24h), blocks shorter than the range that
//!    fall inside one range-aligned window are merged once the window is
//!    complete: some block of the tenant reaches the window's end or beyond.
//!
//! Separately, [`redundant`] finds blocks whose data another block already
//! holds (its sources include theirs): what a compaction interrupted between
//! uploading its result and marking its sources leaves behind.

use std::collections::{BTreeMap, BTreeSet};

use strata_tsdb::block::{BlockMeta, Ulid};

/// One compaction: merge `blocks` into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) kind: JobKind,
    /// Sorted by (min_time, ULID): the merge keeps the first block's sample
    /// when copies disagree, so the order is deterministic.
    pub(crate) blocks: Vec<Ulid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// Overlapping blocks.
    Vertical,
    /// Adjacent blocks into one window of this range (ms).
    Level(i64),
}

impl JobKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            JobKind::Vertical => "vertical",
            JobKind::Level(_) => "level",
        }
    }
}

/// The next job for `blocks` (the tenant's live blocks: complete, not marked
/// for deletion), or `None` when nothing is left to do.
pub(crate) fn plan(blocks: &[&BlockMeta], ranges: &[i64]) -> Option<Job> {
    let mut sorted: Vec<&BlockMeta> = blocks.to_vec();
    sorted.sort_by_key(|m| (m.min_time, m.ulid));

    // Overlapping groups: a sweep in start order.
    let mut group: Vec<&BlockMeta> = Vec::new();
    let mut group_end = i64::MIN;
    for m in &sorted {
        if !group.is_empty() && m.min_time >= group_end {
            if group.len() > 1 {
                return Some(job(JobKind::Vertical, &group));
            }
            group.clear();
        }
        group_end = if group.is_empty() {
            m.max_time
        } else {
            group_end.max(m.max_time)
        };
        group.push(m);
    }
    if group.len() > 1 {
        return Some(job(JobKind::Vertical, &group));
    }

    let newest_end = sorted.iter().map(|m| m.max_time).max()?;
    for &range in ranges.iter().skip(1) {
        if range <= 0 {
            continue;
        }
        let mut windows: BTreeMap<i64, Vec<&BlockMeta>> = BTreeMap::new();
        for m in &sorted {
            // Saturating: meta.json comes from the bucket and may hold any value.
            if m.max_time.saturating_sub(m.min_time) >= range {
                continue;
            }
            let start = m.min_time.div_euclid(range).saturating_mul(range);
            // A block straddling two windows stays as it is at this level.
            if m.max_time > start.saturating_add(range) {
                continue;
            }
            windows.entry(start).or_default().push(m);
        }
        for (start, members) in windows {
            if members.len() > 1 && start.saturating_add(range) <= newest_end {
                return Some(job(JobKind::Level(range), &members));
            }
        }
    }
    None
}

fn job(kind: JobKind, blocks: &[&BlockMeta]) -> Job {
    Job {
        kind,
        blocks: blocks.iter().map(|m| m.ulid).collect(),
    }
}

/// A block's sources; a block that lists none is its own.
fn sources(m: &BlockMeta) -> BTreeSet<Ulid> {
    if m.compaction.sources.is_empty() {
        BTreeSet::from([m.ulid])
    } else {
        m.compaction.sources.iter().copied().collect()
    }
}

/// Blocks whose sources are all among another block's sources, each with the
/// block that holds its data. Of blocks with equal sources the lowest ULID
/// stays.
pub(crate) fn redundant(blocks: &[&BlockMeta]) -> Vec<(Ulid, Ulid)> {
    let sets: Vec<(Ulid, BTreeSet<Ulid>)> = blocks.iter().map(|m| (m.ulid, sources(m))).collect();
    let mut out = Vec::new();
    for (id, set) in &sets {
        let keeper = sets.iter().find(|(other, other_set)| {
            other != id && set.is_subset(other_set) && (other_set.len() > set.len() || other < id)
        });
        if let Some((other, _)) = keeper {
            out.push((*id, *other));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use strata_tsdb::block::{BlockCompaction, META_VERSION};

    use super::*;

    const H: i64 = 3_600_000;
    const RANGES: [i64; 3] = [2 * H, 12 * H, 24 * H];

    fn meta(id: u128, min: i64, max: i64, sources: &[u128]) -> BlockMeta {
        BlockMeta {
            ulid: Ulid(id),
            min_time: min,
            max_time: max,
            stats: Default::default(),
            compaction: BlockCompaction {
                level: 1,
                sources: sources.iter().map(|s| Ulid(*s)).collect(),
                parents: Vec::new(),
            },
            version: META_VERSION,
            thanos: None,
        }
    }

    fn ids(job: &Job) -> Vec<u128> {
        job.blocks.iter().map(|u| u.0).collect()
    }

    #[test]
    fn replica_copies_of_a_range_are_merged_first() {
        let blocks = [
            meta(5, 2 * H, 4 * H, &[5]),
            meta(1, 0, 2 * H, &[1]),
            meta(2, 0, 2 * H, &[2]),
            meta(3, 0, 2 * H, &[3]),
            meta(4, 2 * H, 4 * H, &[4]),
        ];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        let job = plan(&refs, &RANGES).unwrap();
        assert_eq!(job.kind, JobKind::Vertical);
        assert_eq!(ids(&job), vec![1, 2, 3]);
        // Without the first range's copies, the next range's are next.
        let job = plan(&[&blocks[0], &blocks[4]], &RANGES).unwrap();
        assert_eq!(ids(&job), vec![4, 5]);
    }

    #[test]
    fn a_late_copy_overlapping_a_larger_block_joins_it() {
        let blocks = [meta(1, 0, 12 * H, &[1, 2]), meta(9, 4 * H, 6 * H, &[9])];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        let job = plan(&refs, &RANGES).unwrap();
        assert_eq!((job.kind, ids(&job)), (JobKind::Vertical, vec![1, 9]));
    }

    #[test]
    fn levels_wait_for_a_complete_window() {
        // Three 2h blocks in the first 12h window, nothing after it yet.
        let mut blocks = vec![
            meta(1, 0, 2 * H, &[1]),
            meta(2, 2 * H, 4 * H, &[2]),
            meta(3, 4 * H, 6 * H, &[3]),
        ];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        assert_eq!(plan(&refs, &RANGES), None);
        // A block past the window's end: the window is done.
        blocks.push(meta(4, 12 * H, 14 * H, &[4]));
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        let job = plan(&refs, &RANGES).unwrap();
        assert_eq!(job.kind, JobKind::Level(12 * H));
        assert_eq!(ids(&job), vec![1, 2, 3]);
        // Two 12h blocks of one day, and a block of the next day: 24h.
        let blocks = [
            meta(1, 0, 12 * H, &[1]),
            meta(2, 12 * H, 24 * H, &[2]),
            meta(3, 24 * H, 26 * H, &[3]),
        ];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        let job = plan(&refs, &RANGES).unwrap();
        assert_eq!((job.kind, ids(&job)), (JobKind::Level(24 * H), vec![1, 2]));
        // A window whose own blocks reach its end is complete too.
        let blocks = [meta(1, 10 * H, 12 * H, &[1]), meta(2, 0, 2 * H, &[2])];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        assert_eq!(ids(&plan(&refs, &RANGES).unwrap()), vec![2, 1]);
    }

    #[test]
    fn nothing_to_do_for_single_blocks_or_straddlers() {
        assert_eq!(plan(&[], &RANGES), None);
        let blocks = [
            meta(1, 0, 12 * H, &[1]),
            meta(2, 12 * H, 24 * H, &[2]),
            // Crosses the 24h boundary: not merged at the 24h level.
            meta(3, 23 * H, 25 * H, &[3]),
        ];
        // 3 overlaps 2, so they are merged (vertically) first.
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        assert_eq!(ids(&plan(&refs, &RANGES).unwrap()), vec![2, 3]);
        let blocks = [meta(1, 0, 24 * H, &[1]), meta(3, 24 * H, 26 * H, &[3])];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        assert_eq!(plan(&refs, &RANGES), None);
        // Negative times (before 1970) align too.
        let blocks = [meta(1, -4 * H, -2 * H, &[1]), meta(2, -2 * H, 0, &[2])];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        assert_eq!(ids(&plan(&refs, &RANGES).unwrap()), vec![1, 2]);
    }

    #[test]
    fn blocks_contained_in_another_are_redundant() {
        let blocks = [
            meta(10, 0, 2 * H, &[1, 2, 3]),
            meta(1, 0, 2 * H, &[1]),
            meta(2, 0, 2 * H, &[]),
            meta(4, 0, 2 * H, &[4]),
            // Two results of the same sources: the lower ULID stays.
            meta(20, 2 * H, 4 * H, &[5, 6]),
            meta(21, 2 * H, 4 * H, &[5, 6]),
        ];
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        let mut got: Vec<(u128, u128)> = redundant(&refs)
            .into_iter()
            .map(|(a, b)| (a.0, b.0))
            .collect();
        got.sort();
        assert_eq!(got, vec![(1, 10), (2, 10), (21, 20)]);
    }

    /// meta.json comes from the bucket: any min/max, extreme or inverted,
    /// plans without overflow or panic.
    #[test]
    fn extreme_block_times_plan_without_overflow() {
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            7_200_000,
            i64::MAX - 1,
            i64::MAX,
        ];
        let mut metas = Vec::new();
        let mut id = 1;
        for &min in &edges {
            for &max in &edges {
                metas.push(meta(id, min, max, &[id]));
                id += 1;
            }
        }
        let ranges = [7_200_000, 43_200_000, 86_400_000];
        for window in metas.windows(3) {
            let refs: Vec<&BlockMeta> = window.iter().collect();
            let _ = plan(&refs, &ranges);
        }
        let all: Vec<&BlockMeta> = metas.iter().collect();
        let _ = plan(&all, &ranges);
    }
}
