//! Reading a WAL back: the newest checkpoint, then the segments after it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_model::Sample;

use super::record::{decode, Record, RefSample};
use super::segment::{
    checkpoint_path, segment_path, truncate, valid_prefix, FrameError, FrameReader, Layout,
};
use super::{Wal, WalError};
use crate::head::{Head, HeadSeries};

/// What a replay read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// The checkpoint read first, by the last segment it covers.
    pub checkpoint: Option<u32>,
    /// Segments read after the checkpoint.
    pub segments: usize,
    pub records: u64,
    /// Series and samples in the records read.
    pub series: u64,
    pub samples: u64,
    /// The last segment's torn tail, cut off: the file and the offset it now ends at.
    pub truncated: Option<(PathBuf, u64)>,
    /// Bytes cut off with the torn tail (0 if none).
    pub dropped_bytes: u64,
    /// Why the tail was cut off (the first invalid frame's problem).
    pub corruption: Option<String>,
    /// The highest [`Record::MinValidTime`] read, if any.
    pub min_valid_time: Option<i64>,
    /// [`Wal::replay_into`] only: samples of series no record defined (dropped).
    pub unknown_series_samples: u64,
    /// [`Wal::replay_into`] only: samples the head rejected as out of order or
    /// duplicate (dropped).
    pub rejected_samples: u64,
}

impl Wal {
    /// Calls `f` with every record of the WAL in `dir`, in order: the newest
    /// checkpoint's, then those of the segments after it. Reads one frame at a
    /// time. A torn or corrupt tail of the last segment is cut off the file with a
    /// warning and replay ends there; an invalid frame anywhere else, a record
    /// that does not decode or a missing segment is an error. A missing
    /// directory is an empty WAL.
    pub fn replay(
        dir: impl AsRef<Path>,
        mut f: impl FnMut(Record),
    ) -> Result<ReplayStats, WalError> {
        let dir = dir.as_ref();
        let layout = Layout::scan(dir)?;
        let mut stats = ReplayStats::default();
        let mut count = |record: Record, stats: &mut ReplayStats| {
            stats.records += 1;
            match &record {
                Record::Series(s) => stats.series += s.len() as u64,
                Record::Samples(s) => stats.samples += s.len() as u64,
                Record::MinValidTime(t) => {
                    stats.min_valid_time = Some(stats.min_valid_time.map_or(*t, |m| m.max(*t)));
                }
            }
            f(record);
        };
        let mut segments = layout.segments.as_slice();
        if let Some(&cp) = layout.checkpoints.last() {
            read_checkpoint(&checkpoint_path(dir, cp), &mut |r| count(r, &mut stats))?;
            stats.checkpoint = Some(cp);
            segments = &segments[segments.partition_point(|&s| s <= cp)..];
            if let Some(&first) = segments.first() {
                if first != cp + 1 {
                    return Err(WalError::Layout {
                        dir: dir.to_path_buf(),
                        reason: format!(
                            "checkpoint.{cp:08} is followed by segment {first:08}, not {:08}",
                            cp + 1
                        ),
                    });
                }
            }
        }
        let after = Layout {
            segments: segments.to_vec(),
            ..Layout::default()
        };
        after.check_contiguous(dir)?;
        for (i, &index) in segments.iter().enumerate() {
            let path = segment_path(dir, index);
            let last = i + 1 == segments.len();
            let mut sink = |r| count(r, &mut stats);
            let torn = read_segment(&path, last, &mut sink)?;
            stats.segments += 1;
            if let Some((offset, reason)) = torn {
                let len = std::fs::metadata(&path)
                    .map_err(|e| WalError::io(&path, e))?
                    .len();
                let dropped = len.saturating_sub(offset);
                // What is dropped cannot be decoded (that is why), so the
                // line names the bytes: the records that were in them are the
                // last ones written before the crash.
                tracing::warn!(
                    segment = %path.display(),
                    offset,
                    dropped_bytes = dropped,
                    %reason,
                    "WAL replay dropped a torn or corrupt tail: {dropped} bytes of segment {} from offset {offset} ({reason}); the records before it are kept",
                    path.display()
                );
                truncate(&path, offset)?;
                stats.truncated = Some((path, offset));
                stats.dropped_bytes = dropped;
                stats.corruption = Some(reason);
            }
        }
        Ok(stats)
    }

    /// Replays the WAL in `dir` into `head` (normally a new, empty one): series
    /// get back the refs they were logged with, so an ingester can go on logging
    /// to the same WAL. Samples the head rejects, or of a series no record
    /// defined, are counted in the stats and skipped.
    pub fn replay_into(dir: impl AsRef<Path>, head: &Head) -> Result<ReplayStats, WalError> {
        let mut series: HashMap<u64, HeadSeries> = HashMap::new();
        let mut unknown = 0u64;
        let mut rejected = 0u64;
        let mut run: Vec<Sample> = Vec::new();
        let mut stats = Wal::replay(dir, |record| match record {
            // Written first in a checkpoint, so it applies before its samples.
            Record::MinValidTime(t) => head.set_min_valid_time(t),
            Record::Series(list) => {
                for s in list {
                    let found = head.restore_series(s.series_ref, &s.labels);
                    series.insert(s.series_ref.0, found);
                }
            }
            Record::Samples(list) => {
                for chunk in list.chunk_by(|a, b| a.series_ref == b.series_ref) {
                    let Some(target) = series.get(&chunk[0].series_ref.0) else {
                        unknown += chunk.len() as u64;
                        continue;
                    };
                    run.clear();
                    run.extend(
                        chunk
                            .iter()
                            .map(|s: &RefSample| Sample::new(s.timestamp_ms, s.value)),
                    );
                    rejected += append_all(head, target, &run);
                }
            }
        })?;
        if unknown > 0 || rejected > 0 {
            tracing::warn!(
                unknown_series_samples = unknown,
                rejected_samples = rejected,
                "WAL replay dropped samples"
            );
        }
        stats.unknown_series_samples = unknown;
        stats.rejected_samples = rejected;
        Ok(stats)
    }
}

/// Appends `samples`, skipping each one the head rejects; returns how many it
/// rejected.
fn append_all(head: &Head, series: &HeadSeries, samples: &[Sample]) -> u64 {
    let mut rejected = 0;
    let mut rest = samples;
    while !rest.is_empty() {
        match head.append_to(series, rest) {
            Ok(_) => break,
            Err(e) => {
                rejected += 1;
                rest = rest.get(e.appended() + 1..).unwrap_or_default();
            }
        }
    }
    rejected
}

/// Reads a complete checkpoint directory's segments, all of which must be valid.
pub(super) fn read_checkpoint(dir: &Path, f: &mut dyn FnMut(Record)) -> Result<(), WalError> {
    let layout = Layout::scan(dir)?;
    layout.check_contiguous(dir)?;
    for &index in &layout.segments {
        read_segment(&segment_path(dir, index), false, f)?;
    }
    Ok(())
}

/// Reads one segment's records. With `tolerant`, an invalid frame ends the
/// segment and its offset and reason are returned; without, it is an error.
pub(super) fn read_segment(
    path: &Path,
    tolerant: bool,
    f: &mut dyn FnMut(Record),
) -> Result<Option<(u64, String)>, WalError> {
    let mut reader = FrameReader::open(path)?;
    let mut buf = Vec::new();
    loop {
        let offset = reader.offset();
        match reader.next_frame(&mut buf) {
            Ok(Some(())) => {
                let record = decode(&buf).map_err(|reason| WalError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    reason,
                })?;
                f(record);
            }
            Ok(None) => return Ok(None),
            Err(FrameError::Io(e)) => return Err(WalError::io(reader.path(), e)),
            Err(FrameError::Bad { offset, reason }) => {
                if tolerant {
                    return Ok(Some((offset, reason)));
                }
                return Err(WalError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    reason,
                });
            }
        }
    }
}

/// Cuts a torn or corrupt tail off segment `path`, with a warning; returns the
/// offset it was cut at, if it was.
pub(super) fn repair(path: &Path) -> Result<Option<u64>, WalError> {
    let (valid, reason) = valid_prefix(path)?;
    let Some(reason) = reason else {
        return Ok(None);
    };
    tracing::warn!(
        segment = %path.display(),
        offset = valid,
        %reason,
        "WAL segment ends in a torn or corrupt record (crash mid-write?); cutting it off"
    );
    truncate(path, valid)?;
    Ok(Some(valid))
}
