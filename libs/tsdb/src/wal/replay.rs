//! Reading a WAL back: the newest checkpoint, then the segments after it, each
//! record with the tenant it belongs to; and applying those records to the
//! tenants' heads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_model::Sample;

use super::error::WalError;
use super::record::{decode, Decoded, Record, RefSample};
use super::segment::{checkpoint_path, scan_frames, segment_path, truncate, Layout};
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
    pub exemplars: u64,
    /// The last segment's torn tail, cut off: the file and the offset it now ends at.
    pub truncated: Option<(PathBuf, u64)>,
    /// Bytes cut off with the torn tail (0 if none).
    pub dropped_bytes: u64,
    /// Why the tail was cut off (the first invalid frame's problem).
    pub corruption: Option<String>,
    /// Damaged stretches inside the log that were skipped, the valid records
    /// after each read on: `(file, from, to, why)`. Only the records in them
    /// are lost (one tenant's, usually one record).
    pub skipped: Vec<(PathBuf, u64, u64, String)>,
    /// Records of a type this version does not know (a newer version's), or
    /// that failed to decode although their checksum matched: skipped.
    pub unreadable_records: u64,
    /// The highest [`Record::MinValidTime`] read, if any (of any tenant).
    pub min_valid_time: Option<i64>,
    /// [`HeadReplayer`] only: samples of series no record defined (dropped).
    pub unknown_series_samples: u64,
    /// [`HeadReplayer`] only: samples the head rejected as out of order or
    /// duplicate (dropped).
    pub rejected_samples: u64,
    /// [`HeadReplayer`] only: records of tenants the caller had no head for.
    pub unclaimed_records: u64,
}

impl ReplayStats {
    /// Whether the replay met damage of any kind (a torn tail, a skipped
    /// stretch, an unreadable record).
    pub fn damaged(&self) -> bool {
        self.truncated.is_some() || !self.skipped.is_empty() || self.unreadable_records > 0
    }
}

/// Reads the WAL in `dir`: calls `f` with every record and its tenant, in
/// order, the newest checkpoint's first. `legacy_tenant` is the tenant of
/// records that name none (a per-tenant WAL of earlier versions); without it
/// such a record is unreadable. A torn tail of the last segment (a crash
/// mid-write) is cut off the file with a warning; damage anywhere else skips
/// only the damaged records, with a warning. A missing segment is an error, a
/// missing directory an empty WAL.
pub(super) fn replay(
    dir: &Path,
    legacy_tenant: Option<&str>,
    f: &mut dyn FnMut(&str, Record),
) -> Result<ReplayStats, WalError> {
    let layout = Layout::scan(dir)?;
    let mut stats = ReplayStats::default();
    let mut segments = layout.segments.as_slice();
    if let Some(&cp) = layout.checkpoints.last() {
        read_checkpoint(&checkpoint_path(dir, cp), legacy_tenant, &mut stats, f)?;
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
    Layout {
        segments: segments.to_vec(),
        ..Layout::default()
    }
    .check_contiguous(dir)?;
    for (i, &index) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        read_file(
            &segment_path(dir, index),
            last,
            legacy_tenant,
            &mut stats,
            f,
        )?;
        stats.segments += 1;
    }
    Ok(stats)
}

/// Reads checkpoint `checkpoint` (if any), then the closed `segments` of the WAL
/// in `dir`, into `f`: what a new checkpoint condenses. Damage is skipped as
/// replay skips it (those records are lost either way).
pub(super) fn replay_files(
    dir: &Path,
    checkpoint: Option<u32>,
    segments: &[u32],
    f: &mut dyn FnMut(&str, Record),
) -> Result<ReplayStats, WalError> {
    let mut stats = ReplayStats::default();
    if let Some(cp) = checkpoint {
        read_checkpoint(&checkpoint_path(dir, cp), None, &mut stats, f)?;
    }
    for &index in segments {
        read_file(&segment_path(dir, index), false, None, &mut stats, f)?;
    }
    Ok(stats)
}

/// Reads a complete checkpoint directory's segments.
fn read_checkpoint(
    cp_dir: &Path,
    legacy_tenant: Option<&str>,
    stats: &mut ReplayStats,
    f: &mut dyn FnMut(&str, Record),
) -> Result<(), WalError> {
    let inner = Layout::scan(cp_dir)?;
    inner.check_contiguous(cp_dir)?;
    for &index in &inner.segments {
        read_file(&segment_path(cp_dir, index), false, legacy_tenant, stats, f)?;
    }
    Ok(())
}

/// Reads one segment file's records into `f`, noting damage in `stats`. With
/// `last` (the segment written when the process stopped), damage with nothing
/// valid after it is a torn write: cut off the file. Elsewhere it is skipped.
fn read_file(
    path: &Path,
    last: bool,
    legacy_tenant: Option<&str>,
    stats: &mut ReplayStats,
    f: &mut dyn FnMut(&str, Record),
) -> Result<(), WalError> {
    let mut on_frame = |offset: u64, payload: &[u8]| {
        let (tenant, record) = match decode(payload) {
            Ok(Decoded::Record { tenant, record }) => (tenant, record),
            Ok(Decoded::Skipped(kind)) => {
                stats.unreadable_records += 1;
                tracing::warn!(file = %path.display(), offset, kind, "WAL record of a type this version does not know: skipped");
                return;
            }
            Err(reason) => {
                stats.unreadable_records += 1;
                tracing::warn!(file = %path.display(), offset, %reason, "WAL record does not decode: skipped");
                return;
            }
        };
        let Some(tenant) = tenant.as_deref().or(legacy_tenant) else {
            stats.unreadable_records += 1;
            tracing::warn!(file = %path.display(), offset, "WAL record without a tenant in the shared WAL: skipped");
            return;
        };
        stats.records += 1;
        match &record {
            Record::Series(s) => stats.series += s.len() as u64,
            Record::Samples(s) | Record::LateSamples(s) => stats.samples += s.len() as u64,
            Record::Exemplars(e) => stats.exemplars += e.len() as u64,
            Record::MinValidTime(t) => {
                stats.min_valid_time = Some(stats.min_valid_time.map_or(*t, |m| m.max(*t)));
            }
        }
        f(tenant, record);
    };
    let scan = scan_frames(path, &mut on_frame)?;
    for (from, to, reason) in scan.holes {
        tracing::warn!(
            file = %path.display(),
            from,
            to,
            %reason,
            "WAL replay skipped {} damaged bytes of {} (offsets {from}..{to}: {reason}); the records after them are read",
            to - from,
            path.display()
        );
        stats.skipped.push((path.to_path_buf(), from, to, reason));
    }
    if let Some(reason) = scan.tail {
        let len = std::fs::metadata(path)
            .map_err(|e| WalError::io(path, e))?
            .len();
        let offset = scan.valid_end;
        let dropped = len.saturating_sub(offset);
        if last {
            // What is dropped cannot be decoded (that is why), so the line
            // names the bytes: the records that were in them are the last ones
            // written before the crash.
            tracing::warn!(
                segment = %path.display(),
                offset,
                dropped_bytes = dropped,
                %reason,
                "WAL replay dropped a torn or corrupt tail: {dropped} bytes of segment {} from offset {offset} ({reason}); the records before it are kept",
                path.display()
            );
            truncate(path, offset)?;
            stats.truncated = Some((path.to_path_buf(), offset));
            stats.dropped_bytes = dropped;
            stats.corruption = Some(reason);
        } else {
            tracing::warn!(
                file = %path.display(),
                offset,
                dropped_bytes = dropped,
                %reason,
                "WAL replay skipped the damaged end of a closed file: {dropped} bytes from offset {offset} ({reason})"
            );
            stats
                .skipped
                .push((path.to_path_buf(), offset, len, reason));
        }
    }
    Ok(())
}

/// Cuts a torn tail off segment `path` (damage with no valid frame after it),
/// with a warning; returns the offset it was cut at, if it was. Damage with
/// valid frames after it is left for replay to skip.
pub(super) fn repair(path: &Path) -> Result<Option<u64>, WalError> {
    let scan = scan_frames(path, &mut |_, _| {})?;
    let Some(reason) = scan.tail else {
        return Ok(None);
    };
    tracing::warn!(
        segment = %path.display(),
        offset = scan.valid_end,
        %reason,
        "WAL segment ends in a torn or corrupt record (crash mid-write?); cutting it off"
    );
    truncate(path, scan.valid_end)?;
    Ok(Some(scan.valid_end))
}

#[derive(Debug)]
struct TenantReplay {
    head: Arc<Head>,
    series: HashMap<u64, HeadSeries>,
    appended: u64,
}

/// Applies replayed records to the heads of their tenants: series get back the
/// refs they were logged with (so the ingester goes on logging to the same
/// WAL), samples are appended, bounds set. Samples a head rejects, or of a
/// series no record defined, are counted and skipped.
pub struct HeadReplayer<F> {
    head_for: F,
    /// Per tenant: its head, the series by logged ref and the samples it took.
    tenants: HashMap<String, Option<TenantReplay>>,
    run: Vec<Sample>,
    unknown: u64,
    unknown_exemplars: u64,
    rejected: u64,
    unclaimed: u64,
}

impl<F> std::fmt::Debug for HeadReplayer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadReplayer")
            .field("tenants", &self.tenants.len())
            .field("unknown", &self.unknown)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl<F: FnMut(&str) -> Option<Arc<Head>>> HeadReplayer<F> {
    /// `head_for(tenant)` gives the head a tenant's records go to (asked once
    /// per tenant); `None` drops that tenant's records.
    pub fn new(head_for: F) -> Self {
        Self {
            head_for,
            tenants: HashMap::new(),
            run: Vec::new(),
            unknown: 0,
            unknown_exemplars: 0,
            rejected: 0,
            unclaimed: 0,
        }
    }

    pub fn apply(&mut self, tenant: &str, record: Record) {
        if !self.tenants.contains_key(tenant) {
            let head = (self.head_for)(tenant).map(|head| TenantReplay {
                head,
                series: HashMap::new(),
                appended: 0,
            });
            self.tenants.insert(tenant.to_string(), head);
        }
        let Some(Some(TenantReplay {
            head,
            series,
            appended,
        })) = self.tenants.get_mut(tenant)
        else {
            self.unclaimed += 1;
            return;
        };
        let late = matches!(record, Record::LateSamples(_));
        match record {
            // Written first in a checkpoint, so it applies before its samples.
            Record::MinValidTime(t) => head.set_min_valid_time(t),
            Record::Series(list) => {
                for s in list {
                    let found = head.restore_series(s.series_ref, &s.labels);
                    series.insert(s.series_ref.0, found);
                }
            }
            Record::Samples(list) | Record::LateSamples(list) => {
                for chunk in list.chunk_by(|a, b| a.series_ref == b.series_ref) {
                    let Some(target) = series.get(&chunk[0].series_ref.0) else {
                        self.unknown += chunk.len() as u64;
                        continue;
                    };
                    self.run.clear();
                    self.run.extend(
                        chunk
                            .iter()
                            .map(|s: &RefSample| Sample::new(s.timestamp_ms, s.value)),
                    );
                    let rejected = append_all(head, target, &self.run, late);
                    self.rejected += rejected;
                    *appended += self.run.len() as u64 - rejected;
                }
            }
            // Into the head's store, by the ref the series has again; repeats
            // of what a checkpoint kept are skipped by the store's own rules.
            Record::Exemplars(list) => {
                let mut store = head.exemplars();
                for e in list {
                    if !series.contains_key(&e.series_ref.0) {
                        self.unknown_exemplars += 1;
                        continue;
                    }
                    let _ = store.add(e.series_ref.0, e.exemplar);
                }
            }
        }
    }

    /// Adds what was dropped to `stats`, with a warning if anything was;
    /// returns the samples each tenant's head took.
    pub fn finish(self, stats: &mut ReplayStats) -> HashMap<String, u64> {
        if self.unknown > 0 || self.rejected > 0 || self.unknown_exemplars > 0 {
            tracing::warn!(
                unknown_series_samples = self.unknown,
                unknown_series_exemplars = self.unknown_exemplars,
                rejected_samples = self.rejected,
                "WAL replay dropped samples"
            );
        }
        stats.unknown_series_samples += self.unknown;
        stats.rejected_samples += self.rejected;
        stats.unclaimed_records += self.unclaimed;
        self.tenants
            .into_iter()
            .filter_map(|(tenant, t)| Some((tenant, t?.appended)))
            .collect()
    }
}

/// Appends `samples` (`late`: behind the block bound), skipping each one the
/// head rejects; returns how many it rejected.
fn append_all(head: &Head, series: &HeadSeries, samples: &[Sample], late: bool) -> u64 {
    let mut rejected = 0;
    let mut rest = samples;
    while !rest.is_empty() {
        let result = if late {
            head.append_replayed_late(series, rest)
        } else {
            head.append_replayed(series, rest)
        };
        match result {
            Ok(_) => break,
            Err(e) => {
                rejected += 1;
                rest = rest.get(e.appended() + 1..).unwrap_or_default();
            }
        }
    }
    rejected
}
