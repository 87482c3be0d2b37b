//! Condensing closed segments into a checkpoint, then deleting them.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::record::{Record, WalBatch};
use super::replay::{read_checkpoint, read_segment};
use super::segment::{checkpoint_path, checkpoint_tmp_path, segment_path, sync_dir, Layout};
use super::{Wal, WalError};
use crate::head::SeriesRef;

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

impl Wal {
    /// Closes the current segment, then condenses the previous checkpoint and
    /// every closed segment into `checkpoint.NNNNNNNN` (`NNNNNNNN` the last closed
    /// segment): the series for which `is_live` holds and their samples at or
    /// after `keep_from_ts` (those the head holds that are not yet in a block),
    /// preceded by a [`Record::MinValidTime`] of `keep_from_ts` (unless it is
    /// `i64::MIN`) so that a replayed head refuses older samples. Then deletes
    /// those segments and the previous checkpoint. Writers go on meanwhile; a
    /// crash at any point leaves a WAL that replays to the same head.
    ///
    /// The previous checkpoint is rewritten even when no segment was written
    /// since it (the current segment, empty, is closed so that the new one gets
    /// a new number): a block cut from a head that took no sample since the last
    /// checkpoint must still take its samples out of the WAL.
    pub fn checkpoint(
        &self,
        keep_from_ts: i64,
        is_live: impl Fn(SeriesRef) -> bool,
    ) -> Result<CheckpointStats, WalError> {
        let _one_at_a_time = self.shared.checkpointing.lock();
        let dir = self.shared.dir.as_path();
        // Checkpoints change only under `checkpointing`: scanned outside the
        // writer lock, so that pushes never wait on a directory listing.
        let has_checkpoint = !Layout::scan(dir)?.checkpoints.is_empty();
        let last = {
            let mut w = self.shared.writer.lock();
            if let Some(reason) = &w.failed {
                return Err(self.shared.failed(reason));
            }
            // An empty current segment is closed too when a checkpoint
            // exists: it may have to be rewritten with a new bound, under a
            // new number.
            if w.segment_len > 0 || has_checkpoint {
                self.shared.rotate(&mut w)?;
            }
            match w.segment.checked_sub(1) {
                Some(last) => last,
                None => return Ok(CheckpointStats::default()),
            }
        };
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
        let mut out = CheckpointWriter::new(&tmp, self.shared.options.segment_size)?;
        let mut batch = WalBatch::new();
        let mut error = None;
        if keep_from_ts > i64::MIN {
            batch.add_min_valid_time(keep_from_ts);
            if let Err(e) = out.write(batch.finish().0) {
                error = Some(e);
            }
            batch.clear();
        }
        // The bound of the previous checkpoint, if higher (it never goes back).
        let mut previous_bound = i64::MIN;
        let mut filter = |record: Record| {
            if error.is_some() {
                return;
            }
            let kept = match record {
                Record::MinValidTime(t) => {
                    if t > keep_from_ts {
                        previous_bound = previous_bound.max(t);
                    }
                    return;
                }
                Record::Series(mut list) => {
                    let before = list.len();
                    list.retain(|s| is_live(s.series_ref));
                    stats.series_kept += list.len() as u64;
                    stats.series_dropped += (before - list.len()) as u64;
                    Record::Series(list)
                }
                Record::Samples(mut list) => {
                    let before = list.len();
                    list.retain(|s| s.timestamp_ms >= keep_from_ts && is_live(s.series_ref));
                    stats.samples_kept += list.len() as u64;
                    stats.samples_dropped += (before - list.len()) as u64;
                    Record::Samples(list)
                }
            };
            let result = batch
                .add_record(&kept)
                .map_err(WalError::from)
                .and_then(|()| out.write(batch.finish().0));
            batch.clear();
            if let Err(e) = result {
                error = Some(e);
            }
        };
        if let Some(c) = previous {
            read_checkpoint(&checkpoint_path(dir, c), &mut filter)?;
        }
        for &s in &sources {
            read_segment(&segment_path(dir, s), false, &mut filter)?;
        }
        if let Some(e) = error {
            return Err(e);
        }
        if previous_bound > i64::MIN {
            // Rare (a caller lowering the bound): replay applies the highest.
            batch.add_min_valid_time(previous_bound);
            out.write(batch.finish().0)?;
            batch.clear();
        }
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
