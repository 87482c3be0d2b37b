//! Condensing closed segments into a checkpoint, then deleting them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::record::{Record, WalBatch};
use super::replay::replay_files;
use super::segment::{checkpoint_path, checkpoint_tmp_path, segment_path, sync_dir, Layout};
use crate::head::SeriesRef;

/// What a checkpoint keeps of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRetain {
    /// The tenant's samples before this are in blocks: dropped, and recorded
    /// as the tenant's bound (a [`Record::MinValidTime`]) unless `i64::MIN`.
    pub keep_from_ts: i64,
    /// Late samples behind the bound ([`Record::LateSamples`]) from this on
    /// are kept: the head's oldest that no block holds yet (`i64::MAX`:
    /// none).
    pub keep_late_from_ts: i64,
    /// Series with a ref at or above this are kept (created after the head was
    /// looked at); below it, only those in `refs`.
    pub next_ref: SeriesRef,
    /// The series the head holds, sorted.
    pub refs: Vec<SeriesRef>,
}

impl TenantRetain {
    /// A tenant with no head left (closed): only its bound is kept.
    pub fn bound_only(keep_from_ts: i64) -> Self {
        Self {
            keep_from_ts,
            keep_late_from_ts: i64::MAX,
            next_ref: SeriesRef(u64::MAX),
            refs: Vec::new(),
        }
    }

    fn is_live(&self, r: SeriesRef) -> bool {
        r >= self.next_ref || self.refs.binary_search(&r).is_ok()
    }
}

/// What a checkpoint keeps, by tenant; the records of a tenant not named are
/// dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retain {
    pub tenants: HashMap<String, TenantRetain>,
}

impl Retain {
    pub fn insert(&mut self, tenant: &str, keep: TenantRetain) {
        self.tenants.insert(tenant.to_string(), keep);
    }
}

/// What a checkpoint kept and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The last segment the new checkpoint stands for; `None` if there was
    /// nothing to checkpoint.
    pub through_segment: Option<u32>,
    pub series_kept: u64,
    pub series_dropped: u64,
    pub samples_kept: u64,
    pub samples_dropped: u64,
    /// Segments and older checkpoints deleted.
    pub segments_deleted: usize,
    pub checkpoints_deleted: usize,
}

/// Condenses the previous checkpoint and the closed segments up to `last` of
/// the WAL in `dir` into `checkpoint.<last>` by `retain`: every tenant's bound
/// first, then the live series and their samples at or after the bound, in
/// log order. Then deletes those segments and the previous checkpoint. A crash
/// at any point leaves a WAL that replays to the same heads.
pub(super) fn condense(
    dir: &Path,
    segment_size: u64,
    last: u32,
    retain: &Retain,
) -> Result<CheckpointStats, WalError> {
    let layout = Layout::scan(dir)?;
    let previous = layout
        .checkpoints
        .iter()
        .copied()
        .filter(|&c| c <= last)
        .max();
    let sources: Vec<u32> = layout
        .segments
        .iter()
        .copied()
        .filter(|&s| s <= last && previous.is_none_or(|c| s > c))
        .collect();
    if sources.is_empty() {
        return Ok(CheckpointStats::default());
    }
    Layout {
        segments: sources.clone(),
        ..Layout::default()
    }
    .check_contiguous(dir)?;

    let mut stats = CheckpointStats {
        through_segment: Some(last),
        ..CheckpointStats::default()
    };
    let tmp = checkpoint_tmp_path(dir, last);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| WalError::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| WalError::io(&tmp, e))?;
    let mut out = CheckpointWriter::new(&tmp, segment_size)?;
    let mut batch = WalBatch::new("");
    let mut error = None;
    let mut bounds: Vec<(&String, i64)> = retain
        .tenants
        .iter()
        .map(|(t, k)| (t, k.keep_from_ts))
        .filter(|&(_, ts)| ts > i64::MIN)
        .collect();
    bounds.sort();
    for (tenant, ts) in bounds {
        batch.set_tenant(tenant);
        batch.add_min_valid_time(ts);
    }
    if let Err(e) = out.write(batch.finish().0) {
        error = Some(e);
    }
    batch.clear();
    // Bounds of the previous checkpoint higher than the new ones (a bound
    // never goes back): kept after the rest, replay applies the highest.
    let mut previous_bounds: HashMap<String, i64> = HashMap::new();
    let mut filter = |tenant: &str, record: Record| {
        if error.is_some() {
            return;
        }
        let Some(keep) = retain.tenants.get(tenant) else {
            match &record {
                Record::Series(list) => stats.series_dropped += list.len() as u64,
                Record::Samples(list) | Record::LateSamples(list) => {
                    stats.samples_dropped += list.len() as u64
                }
                Record::MinValidTime(_) | Record::Exemplars(_) => {}
            }
            return;
        };
        let kept = match record {
            Record::MinValidTime(t) => {
                if t > keep.keep_from_ts {
                    let b = previous_bounds.entry(tenant.to_string()).or_insert(t);
                    *b = (*b).max(t);
                }
                return;
            }
            Record::Series(mut list) => {
                let before = list.len();
                list.retain(|s| keep.is_live(s.series_ref));
                stats.series_kept += list.len() as u64;
                stats.series_dropped += (before - list.len()) as u64;
                Record::Series(list)
            }
            Record::Samples(mut list) => {
                let before = list.len();
                list.retain(|s| s.timestamp_ms >= keep.keep_from_ts && keep.is_live(s.series_ref));
                stats.samples_kept += list.len() as u64;
                stats.samples_dropped += (before - list.len()) as u64;
                Record::Samples(list)
            }
            Record::LateSamples(mut list) => {
                let before = list.len();
                list.retain(|s| {
                    s.timestamp_ms >= keep.keep_late_from_ts && keep.is_live(s.series_ref)
                });
                stats.samples_kept += list.len() as u64;
                stats.samples_dropped += (before - list.len()) as u64;
                if list.is_empty() {
                    return;
                }
                Record::LateSamples(list)
            }
            // Exemplars of live series, no older than the samples kept.
            Record::Exemplars(mut list) => {
                list.retain(|e| {
                    e.exemplar.timestamp_ms >= keep.keep_from_ts && keep.is_live(e.series_ref)
                });
                if list.is_empty() {
                    return;
                }
                Record::Exemplars(list)
            }
        };
        batch.set_tenant(tenant);
        let result = batch
            .add_record(&kept)
            .map_err(WalError::from)
            .and_then(|()| out.write(batch.finish().0));
        batch.clear();
        if let Err(e) = result {
            error = Some(e);
        }
    };
    replay_files(dir, previous, &sources, &mut filter)?;
    if let Some(e) = error {
        return Err(e);
    }
    let mut raised: Vec<(String, i64)> = previous_bounds.into_iter().collect();
    raised.sort();
    for (tenant, t) in raised {
        batch.set_tenant(&tenant);
        batch.add_min_valid_time(t);
    }
    out.write(batch.finish().0)?;
    batch.clear();
    out.finish()?;
    sync_dir(&tmp)?;
    let done = checkpoint_path(dir, last);
    fs::rename(&tmp, &done).map_err(|e| WalError::io(&done, e))?;
    sync_dir(dir)?;

    // Oldest first, so that a crash leaves the remaining segments contiguous.
    for &s in &sources {
        let path = segment_path(dir, s);
        fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
        stats.segments_deleted += 1;
    }
    for &c in layout.checkpoints.iter().filter(|&&c| c < last) {
        let path = checkpoint_path(dir, c);
        fs::remove_dir_all(&path).map_err(|e| WalError::io(&path, e))?;
        stats.checkpoints_deleted += 1;
    }
    // Segments before the previous checkpoint that a crash left behind.
    for &s in layout.segments.iter().filter(|&&s| s <= last) {
        let path = segment_path(dir, s);
        if !sources.contains(&s) && path.exists() {
            fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
            stats.segments_deleted += 1;
        }
    }
    sync_dir(dir)?;
    tracing::info!(
        dir = %dir.display(),
        through_segment = last,
        series = stats.series_kept,
        samples = stats.samples_kept,
        "WAL checkpoint written"
    );
    Ok(stats)
}

/// Writes frames to the segments of a checkpoint directory.
struct CheckpointWriter {
    dir: PathBuf,
    segment_size: u64,
    index: u32,
    len: u64,
    file: BufWriter<File>,
    /// Closed segments, to fsync at the end.
    closed: Vec<File>,
}

impl CheckpointWriter {
    fn new(dir: &Path, segment_size: u64) -> Result<Self, WalError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_size,
            index: 0,
            len: 0,
            file: BufWriter::new(Self::create(dir, 0)?),
            closed: Vec::new(),
        })
    }

    fn create(dir: &Path, index: u32) -> Result<File, WalError> {
        let path = segment_path(dir, index);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.len > 0 && self.len + bytes.len() as u64 > self.segment_size {
            let next = BufWriter::new(Self::create(&self.dir, self.index + 1)?);
            let full = std::mem::replace(&mut self.file, next);
            let path = segment_path(&self.dir, self.index);
            self.closed.push(
                full.into_inner()
                    .map_err(|e| WalError::io(&path, e.into_error()))?,
            );
            self.index += 1;
            self.len = 0;
        }
        let path = segment_path(&self.dir, self.index);
        self.file
            .write_all(bytes)
            .map_err(|e| WalError::io(&path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs every segment written.
    fn finish(mut self) -> Result<(), WalError> {
        let path = segment_path(&self.dir, self.index);
        let last = self
            .file
            .into_inner()
            .map_err(|e| WalError::io(&path, e.into_error()))?;
        self.closed.push(last);
        for file in &self.closed {
            file.sync_all().map_err(|e| WalError::io(&self.dir, e))?;
        }
        Ok(())
    }
}
