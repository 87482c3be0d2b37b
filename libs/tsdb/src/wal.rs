//! The write-ahead log of an ingester's heads, shared by all its tenants: what
//! an ingester replays after a crash to rebuild every tenant's head, and what
//! lets it acknowledge a push only once the samples would survive one. One log
//! per ingester, not one per tenant: one flusher thread, one open segment and
//! one fsync for every tenant's pushes in flight, however many tenants there
//! are.
//!
//! # Layout
//!
//! Modelled on Prometheus's `wlog`. A WAL directory holds numbered segment files
//! `00000000`, `00000001`, … of at most [`WalOptions::segment_size`] bytes (a
//! batch larger than that gets a segment of its own; a batch never spans two
//! segments), and at most one complete checkpoint `checkpoint.NNNNNNNN/` that
//! stands for every segment up to and including `NNNNNNNN`. Opening a WAL always
//! starts a new segment.
//!
//! # Frames and records
//!
//! Simpler than Prometheus's 32 KiB pages: a segment is a sequence of frames
//!
//! ```text
//! [u32 LE payload length][u32 LE CRC32C(length bytes ‖ payload)][payload]
//! ```
//!
//! with no header or padding. A length of 0 or above 32 MiB is corruption, so a
//! zero-filled tail is detected too. The payload is a record: a type byte, the
//! tenant, then the body (series, samples or a tenant's lower bound; see the
//! `record` module and `docs/wal.md` for the layouts and the types reserved for
//! exemplars, metadata and native histograms). Refs are the tenant's head's
//! [`SeriesRef`](crate::head::SeriesRef)s; a series' record always precedes the
//! records of its samples.
//!
//! # Durability
//!
//! [`Wal::log`] writes a [`WalBatch`] with one `write` call under a mutex and
//! returns the batch's end position ([`Lsn`]); [`Wal::wait_durable`] (blocking)
//! or [`Wal::durable`] (async) return once the [`FsyncPolicy`] says the batch is
//! durable. With `Always` and `Batch` a flusher thread fsyncs the current segment
//! outside the mutex and publishes how far the log is durable: one fsync covers
//! every batch written before it started, of every tenant (group commit). A
//! failed write is rolled back; a failed fsync fails the WAL for good, as the
//! kernel may have dropped the dirty pages.
//!
//! # Replay, damage and checkpoints
//!
//! [`Wal::replay`] streams records with their tenants, one frame in memory at a
//! time: the newest checkpoint, then the segments after it. A torn tail of the
//! last segment (a crash mid-write) is cut off with a warning. Damage anywhere
//! else costs only the damaged records: the reader finds the next valid frame
//! and goes on, so one tenant's damaged record never makes another tenant's
//! records unreadable. [`Wal::open`] cuts a torn tail the same way before
//! starting a new segment. [`Wal::checkpoint`] condenses the previous
//! checkpoint and the closed segments into a new checkpoint (written to
//! `checkpoint.NNNNNNNN.tmp/`, then renamed) and deletes them, keeping what
//! each tenant's head still needs ([`Retain`]): its live series and its samples
//! at or after its bound, which it records as a MinValidTime record that
//! [`HeadReplayer`] applies to the head. It always produces a checkpoint with
//! the new bounds, even with nothing written since the previous one, so a head
//! flushed whole replays to an empty head that refuses what the blocks hold.
//!
//! Replay holds one frame and a map from refs to series at a time: memory
//! during replay is the heads being rebuilt plus a few bytes per series.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{fmt, fs};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

mod checkpoint;
mod error;
mod frame;
mod record;
mod replay;
mod segment;
#[cfg(test)]
mod tests;

pub use checkpoint::{CheckpointStats, Retain, TenantRetain};
pub use error::{TooLarge, WalError};
pub use record::{Record, RefExemplar, RefSample, RefSeries, WalBatch};
pub use replay::{HeadReplayer, ReplayStats};

use segment::{segment_path, sync_dir, Layout};

/// Prometheus's default segment size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 << 20;

/// When a logged batch counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Durable once an fsync that started after the batch was written returned.
    /// Batches written while an fsync runs share the next one.
    Always,
    /// Like `Always`, but the flusher waits up to `max_delay` after the first
    /// unsynced write to gather more batches into one fsync: fewer fsyncs, longer
    /// waits. `Batch { max_delay: Duration::ZERO }` is `Always`.
    Batch { max_delay: Duration },
    /// Durable as soon as written to the OS: survives the process being killed,
    /// not the machine crashing. For tests and benchmarks.
    Never,
}

/// How to open a [`Wal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Bytes after which the next batch goes to a new segment.
    pub segment_size: u64,
    pub fsync: FsyncPolicy,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            fsync: FsyncPolicy::Always,
        }
    }
}

/// Told what a [`Wal`] does, for metrics. Called by writers (with the WAL's
/// writer lock held) and by the flusher thread: keep it cheap.
pub trait WalObserver: Send + Sync {
    /// A batch of `records` frames and `bytes` bytes was written to a segment.
    fn written(&self, records: usize, bytes: u64);
    /// An fsync of a segment returned (successfully or not) after `took`.
    fn fsynced(&self, took: Duration);
}

/// A position in the log: bytes written since the [`Wal`] was opened. A batch is
/// durable once the log is durable up to the `Lsn` [`Wal::log`] returned for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// The write-ahead log of an ingester's heads, open for writing. Share it (`Arc<Wal>`):
/// every method takes `&self`. Dropping it stops the flusher after a last fsync.
pub struct Wal {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    options: WalOptions,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    /// Wakes the flusher: a write happened, or the WAL is closing.
    flusher_wake: Condvar,
    /// Wakes blocking waiters: `synced` moved or the WAL failed.
    durable_cv: Condvar,
    /// The same news for async waiters.
    durable_tx: watch::Sender<Durable>,
    /// Serialises checkpoints.
    checkpointing: Mutex<()>,
    observer: Option<Arc<dyn WalObserver>>,
}

struct Writer {
    file: Arc<File>,
    segment: u32,
    segment_len: u64,
    written: u64,
    failed: Option<String>,
}

struct SyncState {
    written: u64,
    synced: u64,
    /// When the oldest unsynced write happened.
    pending_since: Option<Instant>,
    failed: Option<String>,
    closing: bool,
}

#[derive(Debug, Clone, Default)]
struct Durable {
    synced: u64,
    failed: Option<String>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.shared.writer.lock();
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("options", &self.shared.options)
            .field("segment", &w.segment)
            .field("written", &w.written)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` for writing: removes an
    /// unfinished checkpoint, cuts a torn tail off the last segment (see
    /// [`Wal::replay`], which an ingester calls first) and starts a new segment.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal, WalError> {
        Self::open_observed(dir, options, None)
    }

    /// [`Wal::open`], reporting writes and fsyncs to `observer` (metrics).
    pub fn open_observed(
        dir: impl AsRef<Path>,
        options: WalOptions,
        observer: Option<Arc<dyn WalObserver>>,
    ) -> Result<Wal, WalError> {
        let dir = dir.as_ref().to_path_buf();
        if options.segment_size == 0 {
            return Err(WalError::Options("segment_size must be positive".into()));
        }
        fs::create_dir_all(&dir).map_err(|e| WalError::io(&dir, e))?;
        let layout = Layout::scan(&dir)?;
        for tmp in &layout.tmp {
            fs::remove_dir_all(tmp).map_err(|e| WalError::io(tmp, e))?;
        }
        layout.check_contiguous(&dir)?;
        if let Some(&last) = layout.segments.last() {
            replay::repair(&segment_path(&dir, last))?;
        }
        let next = match (layout.segments.last(), layout.checkpoints.last()) {
            (Some(&s), Some(&c)) => s.max(c) + 1,
            (Some(&n), None) | (None, Some(&n)) => n + 1,
            (None, None) => 0,
        };
        let file = create_segment(&dir, next, options.fsync)?;
        let (durable_tx, _) = watch::channel(Durable::default());
        let shared = Arc::new(Shared {
            dir,
            options,
            writer: Mutex::new(Writer {
                file: Arc::new(file),
                segment: next,
                segment_len: 0,
                written: 0,
                failed: None,
            }),
            sync: Mutex::new(SyncState {
                written: 0,
                synced: 0,
                pending_since: None,
                failed: None,
                closing: false,
            }),
            flusher_wake: Condvar::new(),
            durable_cv: Condvar::new(),
            durable_tx,
            checkpointing: Mutex::new(()),
            observer,
        });
        let flusher = match options.fsync {
            FsyncPolicy::Never => None,
            FsyncPolicy::Always => Some(Duration::ZERO),
            FsyncPolicy::Batch { max_delay } => Some(max_delay),
        }
        .map(|delay| {
            let worker = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("wal-flusher".into())
                .spawn(move || worker.run_flusher(delay))
                .map_err(|e| WalError::io(&shared.dir, e))
        })
        .transpose()?;
        Ok(Wal { shared, flusher })
    }

    /// Writes `batch` (as one `write` call, to one segment) and empties it.
    /// Returns the position the log must be durable up to for the batch to be;
    /// an empty batch returns the current position.
    pub fn log(&self, batch: &mut WalBatch) -> Result<Lsn, WalError> {
        let (bytes, records) = batch.finish();
        let result = self.shared.write(bytes, records);
        batch.clear();
        result
    }

    /// Blocks until the log is durable up to `lsn` by the fsync policy.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.shared.options.fsync == FsyncPolicy::Never {
            return self.shared.check_writable();
        }
        let mut s = self.shared.sync.lock();
        loop {
            if s.synced >= lsn.0 {
                return Ok(());
            }
            if let Some(reason) = &s.failed {
                return Err(self.shared.failed(reason));
            }
            self.shared.durable_cv.wait(&mut s);
        }
    }

    /// Resolves once the log is durable up to `lsn` by the fsync policy.
    pub async fn durable(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.shared.options.fsync == FsyncPolicy::Never {
            return self.shared.check_writable();
        }
        let mut rx = self.shared.durable_tx.subscribe();
        let failed = {
            let state = rx
                .wait_for(|d| d.synced >= lsn.0 || d.failed.is_some())
                .await
                .map_err(|_| self.shared.failed("the flusher stopped"))?;
            (state.synced < lsn.0).then(|| state.failed.clone().unwrap_or_default())
        };
        match failed {
            None => Ok(()),
            Some(reason) => Err(self.shared.failed(&reason)),
        }
    }

    /// [`Wal::log`], then [`Wal::durable`]: resolves when the batch is durable,
    /// the moment an ingester may acknowledge it.
    pub async fn log_durable(&self, batch: &mut WalBatch) -> Result<(), WalError> {
        let lsn = self.log(batch)?;
        self.durable(lsn).await
    }

    /// Calls `f` with every record of the WAL in `dir` and the tenant it
    /// belongs to, in log order (see the module's docs for damage). A missing
    /// directory is an empty WAL.
    pub fn replay(
        dir: impl AsRef<Path>,
        mut f: impl FnMut(&str, Record),
    ) -> Result<ReplayStats, WalError> {
        replay::replay(dir.as_ref(), None, &mut f)
    }

    /// [`Wal::replay`] of a per-tenant WAL written by an earlier version, whose
    /// records name no tenant: they are `tenant`'s.
    pub fn replay_legacy(
        dir: impl AsRef<Path>,
        tenant: &str,
        mut f: impl FnMut(&str, Record),
    ) -> Result<ReplayStats, WalError> {
        replay::replay(dir.as_ref(), Some(tenant), &mut f)
    }

    /// Replays the WAL in `dir` into the heads `head_for` gives for each tenant
    /// (normally new, empty ones; `None` skips the tenant's records).
    pub fn replay_into(
        dir: impl AsRef<Path>,
        head_for: impl FnMut(&str) -> Option<Arc<crate::head::Head>>,
    ) -> Result<ReplayStats, WalError> {
        let mut heads = HeadReplayer::new(head_for);
        let mut stats = replay::replay(dir.as_ref(), None, &mut |t, r| heads.apply(t, r))?;
        heads.finish(&mut stats);
        Ok(stats)
    }

    /// Closes the current segment, then condenses the previous checkpoint and
    /// every closed segment into `checkpoint.NNNNNNNN` (`NNNNNNNN` the last
    /// closed segment), keeping what `retain()` says each tenant's head still
    /// needs (see [`Retain`]); then deletes those segments and the previous
    /// checkpoint. `retain` is called after the segment is closed, so that
    /// every record it does not cover (a series created later) has a ref at or
    /// above the `next_ref` it reports. Writers go on meanwhile; a crash at any
    /// point leaves a WAL that replays to the same heads.
    ///
    /// The previous checkpoint is rewritten even when no segment was written
    /// since it (the current segment, empty, is closed so that the new one gets
    /// a new number): a block cut from a head that took no sample since the last
    /// checkpoint must still take its samples out of the WAL.
    pub fn checkpoint(&self, retain: impl FnOnce() -> Retain) -> Result<CheckpointStats, WalError> {
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
        let retain = retain();
        checkpoint::condense(dir, self.shared.options.segment_size, last, &retain)
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn options(&self) -> WalOptions {
        self.shared.options
    }

    /// The segment being written to.
    pub fn current_segment(&self) -> u32 {
        self.shared.writer.lock().segment
    }

    /// Everything logged so far, durable or not.
    pub fn written(&self) -> Lsn {
        Lsn(self.shared.writer.lock().written)
    }

    /// Stops the flusher after a last fsync; fails if the WAL failed.
    pub fn close(mut self) -> Result<(), WalError> {
        self.stop_flusher();
        self.shared.check_writable()
    }

    fn stop_flusher(&mut self) {
        self.shared.sync.lock().closing = true;
        self.shared.flusher_wake.notify_all();
        if let Some(handle) = self.flusher.take() {
            if handle.join().is_err() {
                tracing::error!(dir = %self.shared.dir.display(), "WAL flusher panicked");
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

/// Creates segment `index` (which must not exist) for appending.
fn create_segment(dir: &Path, index: u32, fsync: FsyncPolicy) -> Result<File, WalError> {
    let path = segment_path(dir, index);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    if fsync != FsyncPolicy::Never {
        sync_dir(dir)?;
    }
    Ok(file)
}

impl Shared {
    fn failed(&self, reason: &str) -> WalError {
        WalError::Failed {
            dir: self.dir.clone(),
            reason: reason.to_string(),
        }
    }

    fn check_writable(&self) -> Result<(), WalError> {
        let s = self.sync.lock();
        match &s.failed {
            Some(reason) => Err(self.failed(reason)),
            None => Ok(()),
        }
    }

    /// Marks the WAL failed for writers and waiters.
    fn fail(&self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "WAL failed");
        let durable = {
            let mut s = self.sync.lock();
            s.failed.get_or_insert(reason);
            Durable {
                synced: s.synced,
                failed: s.failed.clone(),
            }
        };
        self.durable_cv.notify_all();
        self.durable_tx.send_replace(durable);
    }

    fn write(&self, bytes: &[u8], records: usize) -> Result<Lsn, WalError> {
        let mut w = self.writer.lock();
        if let Some(reason) = &w.failed {
            return Err(self.failed(reason));
        }
        if bytes.is_empty() {
            return Ok(Lsn(w.written));
        }
        let len = bytes.len() as u64;
        if w.segment_len > 0 && w.segment_len + len > self.options.segment_size {
            self.rotate(&mut w)?;
        }
        if let Err(e) = (&*w.file).write_all(bytes) {
            let path = segment_path(&self.dir, w.segment);
            // Cut the partial batch off, or later batches would follow garbage.
            if let Err(undo) = w.file.set_len(w.segment_len) {
                let reason = format!(
                    "write to {} failed ({e}) and cutting it back failed ({undo})",
                    path.display()
                );
                w.failed = Some(reason.clone());
                drop(w);
                self.fail(reason);
            }
            return Err(WalError::io(&path, e));
        }
        w.segment_len += len;
        w.written += len;
        let lsn = w.written;
        if let Some(o) = &self.observer {
            o.written(records, len);
        }
        let never = self.options.fsync == FsyncPolicy::Never;
        {
            let mut s = self.sync.lock();
            s.written = lsn;
            if never {
                s.synced = lsn;
            } else if s.pending_since.is_none() {
                s.pending_since = Some(Instant::now());
            }
        }
        drop(w);
        if !never {
            self.flusher_wake.notify_one();
        }
        Ok(Lsn(lsn))
    }

    /// Closes the current segment (fsynced unless the policy is `Never`) and
    /// starts the next one. Called with the writer locked.
    fn rotate(&self, w: &mut Writer) -> Result<(), WalError> {
        if self.options.fsync != FsyncPolicy::Never {
            if let Err(e) = self.timed_sync(&w.file) {
                let path = segment_path(&self.dir, w.segment);
                let reason = format!("fsync of {} failed: {e}", path.display());
                w.failed = Some(reason.clone());
                self.fail(reason);
                return Err(WalError::io(&path, e));
            }
        }
        let file = create_segment(&self.dir, w.segment + 1, self.options.fsync)?;
        w.file = Arc::new(file);
        w.segment += 1;
        w.segment_len = 0;
        Ok(())
    }

    /// `fdatasync`, reported to the observer.
    fn timed_sync(&self, file: &File) -> io::Result<()> {
        let start = Instant::now();
        let result = file.sync_data();
        if let Some(o) = &self.observer {
            o.fsynced(start.elapsed());
        }
        result
    }

    fn run_flusher(&self, max_delay: Duration) {
        loop {
            {
                let mut s = self.sync.lock();
                while s.written == s.synced && !s.closing && s.failed.is_none() {
                    self.flusher_wake.wait(&mut s);
                }
                if s.failed.is_some() || s.written == s.synced {
                    return;
                }
                if !max_delay.is_zero() {
                    let deadline = s.pending_since.unwrap_or_else(Instant::now) + max_delay;
                    while !s.closing && Instant::now() < deadline {
                        self.flusher_wake.wait_until(&mut s, deadline);
                    }
                }
            }
            let (file, target, segment) = {
                let w = self.writer.lock();
                (Arc::clone(&w.file), w.written, w.segment)
            };
            // Segments before `segment` were fsynced when they were closed.
            if let Err(e) = self.timed_sync(&file) {
                let path = segment_path(&self.dir, segment);
                let reason = format!("fsync of {} failed: {e}", path.display());
                self.writer.lock().failed = Some(reason.clone());
                self.fail(reason);
                return;
            }
            let durable = {
                let mut s = self.sync.lock();
                s.synced = s.synced.max(target);
                s.pending_since = (s.written > s.synced).then(Instant::now);
                Durable {
                    synced: s.synced,
                    failed: s.failed.clone(),
                }
            };
            self.durable_cv.notify_all();
            self.durable_tx.send_replace(durable);
        }
    }
}
