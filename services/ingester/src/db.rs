//! One tenant's TSDB on the ingester's disk: the head, the blocks cut from it
//! and the record of which of them were shipped. The WAL is not here: one WAL
//! per ingester holds every tenant's records (see the crate's docs).
//!
//! ```text
//! <tsdb dir>/@wal/                    the ingester's WAL, every tenant's records
//! <tsdb dir>/<tenant>/<ULID>/         blocks cut from the tenant's head
//! <tsdb dir>/<tenant>/shipper.json    ULIDs already uploaded
//! <tsdb dir>/<tenant>/wal/            an earlier version's per-tenant WAL: migrated
//!                                     into `@wal` on start, then removed
//! ```
//!
//! After blocks are cut, the shared WAL is checkpointed with each tenant's
//! [`TenantDb::retain`]: without the samples before the end of its blocks,
//! and with that end as the head's lower bound (a `MinValidTime` record), so a
//! restart neither replays what a block holds nor takes such samples again,
//! even once the block is gone from the disk.
//!
//! Local blocks are known by their `meta.json` alone; a block's files are open
//! only while a query has recently read it ([`TenantDb::close_idle_readers`]),
//! so the open files do not grow with the tenants.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_storage::{Bucket, TsdbConfig};
use strata_tsdb::block::{BlockMeta, BlockOptions, BlockReader, BlockWriter};
use strata_tsdb::head::{BlockPart, Head, SeriesRef};
use strata_tsdb::strings::SharedStrings;
use strata_tsdb::wal::{FsyncPolicy, TenantRetain, WalOptions};

use crate::error::IngesterError;
use crate::metrics::IngesterMetrics;

/// An earlier version's per-tenant WAL, inside the tenant's directory.
pub(crate) const LEGACY_WAL_DIR: &str = "wal";
/// The ingester's WAL, beside the tenants' directories: `@` is not allowed in
/// a tenant ID, so no tenant's directory can take this name.
pub(crate) const SHARED_WAL_DIR: &str = "@wal";
const SHIPPER_FILE: &str = "shipper.json";

/// The local TSDB settings the ingester runs with.
#[derive(Debug, Clone)]
pub(crate) struct DbSettings {
    pub(crate) dir: PathBuf,
    pub(crate) wal: WalOptions,
    /// Off: no WAL is written or replayed (a crash loses the head); for
    /// benchmarks and throw-away setups.
    pub(crate) wal_enabled: bool,
    pub(crate) block_range_ms: i64,
    pub(crate) retention: Duration,
    pub(crate) head_compaction_interval: Duration,
    /// A head that took no push for this long is cut whole (0: never).
    pub(crate) head_compaction_idle_timeout: Duration,
    /// A tenant that took no push for this long, whose head is empty and whose
    /// blocks are all shipped, is closed and its local directory removed (0:
    /// never).
    pub(crate) close_idle_tsdb_timeout: Duration,
    /// A local block's files are closed once no query read it for this long.
    pub(crate) block_reader_idle_timeout: Duration,
    pub(crate) ship_interval: Duration,
}

impl DbSettings {
    pub(crate) fn from_config(tsdb: &TsdbConfig) -> Self {
        let fsync = match tsdb.wal_fsync.as_str() {
            "never" => FsyncPolicy::Never,
            "batch" => FsyncPolicy::Batch {
                max_delay: tsdb.wal_fsync_max_delay.0,
            },
            _ => FsyncPolicy::Always,
        };
        Self {
            dir: PathBuf::from(&tsdb.dir),
            wal: WalOptions {
                fsync,
                ..WalOptions::default()
            },
            wal_enabled: tsdb.wal_enabled,
            block_range_ms: tsdb.block_ranges_period.as_millis_i64().max(1),
            retention: tsdb.retention_period.0,
            head_compaction_interval: tsdb.head_compaction_interval.0,
            head_compaction_idle_timeout: tsdb.head_compaction_idle_timeout.0,
            close_idle_tsdb_timeout: tsdb.close_idle_tsdb_timeout.0,
            block_reader_idle_timeout: Duration::from_secs(5 * 60),
            ship_interval: tsdb.ship_interval.0,
        }
    }
}

/// What is left of a closed tenant: enough for its next head to refuse what
/// its blocks hold and to never reuse a ref its previous head logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClosedTenant {
    pub(crate) blocks_end: i64,
    pub(crate) next_ref: SeriesRef,
}

/// A block cut from the head, on the local disk: its files are open only
/// while queries read it.
#[derive(Debug)]
struct LocalBlock {
    meta: BlockMeta,
    dir: PathBuf,
    reader: Option<Arc<BlockReader>>,
    last_read: Instant,
}

/// One tenant's head with its blocks. `dir` is `None` for an ingester without
/// local storage (tests).
#[derive(Debug)]
pub(crate) struct TenantDb {
    pub(crate) tenant: String,
    pub(crate) head: Arc<Head>,
    /// Serialises appends (and the WAL records of a push) per tenant, so the
    /// WAL's order of a series' samples is the head's.
    pub(crate) append: parking_lot::Mutex<()>,
    /// One block cut or shipping round at a time.
    pub(crate) cutting: tokio::sync::Mutex<()>,
    pub(crate) dir: Option<PathBuf>,
    /// Samples before this are in blocks (local or shipped): what the WAL may
    /// drop. Moves only once a block is written, unlike the head's bound,
    /// which a cut raises before it writes the block.
    blocks_end: AtomicI64,
    /// When a push last appended (Unix ms).
    last_append_ms: AtomicI64,
    /// Set, under `append`, when the tenant is closed: a push that got this
    /// database before must take the tenant's new one.
    closed: AtomicBool,
    /// Blocks whose last upload failed: the next attempt is a retry.
    failed_uploads: parking_lot::Mutex<HashSet<String>>,
    /// The local blocks by ULID, until retention deletes them.
    local_blocks: parking_lot::Mutex<BTreeMap<String, LocalBlock>>,
    /// Tests: the next cut fails, as a full or broken disk would make it.
    #[cfg(test)]
    pub(crate) fail_next_cut: std::sync::atomic::AtomicBool,
}

impl TenantDb {
    fn new(tenant: &str, dir: Option<PathBuf>, now_ms: i64, strings: &Arc<SharedStrings>) -> Self {
        Self {
            tenant: tenant.to_string(),
            head: Arc::new(Head::with_strings(strings.clone())),
            append: parking_lot::Mutex::new(()),
            cutting: tokio::sync::Mutex::new(()),
            dir,
            blocks_end: AtomicI64::new(i64::MIN),
            last_append_ms: AtomicI64::new(now_ms),
            closed: AtomicBool::new(false),
            failed_uploads: parking_lot::Mutex::new(HashSet::new()),
            local_blocks: parking_lot::Mutex::new(BTreeMap::new()),
            #[cfg(test)]
            fail_next_cut: Default::default(),
        }
    }

    pub(crate) fn in_memory(tenant: &str, strings: &Arc<SharedStrings>) -> Self {
        Self::new(tenant, None, 0, strings)
    }

    /// Opens `<dir>/<tenant>` (created when the first block is cut): samples
    /// older than the newest local block's end, or than what `closed` says
    /// the tenant's earlier head had cut, are out of bounds. Reads only the
    /// blocks' `meta.json`; the WAL is replayed by the ingester, for every
    /// tenant at once.
    pub(crate) fn open(
        settings: &DbSettings,
        tenant: &str,
        closed: Option<ClosedTenant>,
        now_ms: i64,
        strings: &Arc<SharedStrings>,
    ) -> Self {
        let dir = settings.dir.join(tenant);
        let db = Self::new(tenant, Some(dir.clone()), now_ms, strings);
        let mut bound = closed.map_or(i64::MIN, |c| c.blocks_end);
        if let Some(c) = closed {
            db.head.reserve_refs_below(c.next_ref);
        }
        let mut blocks = db.local_blocks.lock();
        for (block_dir, meta) in local_blocks(&dir) {
            bound = bound.max(meta.max_time);
            blocks.insert(
                meta.ulid.to_string(),
                LocalBlock {
                    meta,
                    dir: block_dir,
                    reader: None,
                    last_read: Instant::now(),
                },
            );
        }
        drop(blocks);
        db.head.set_min_valid_time(bound);
        db.blocks_end.store(bound, Ordering::Release);
        db
    }

    /// After the WAL replay: the bound the replayed checkpoint recorded counts
    /// as the end of the blocks too (they may be gone from the disk).
    pub(crate) fn replayed(&self) {
        self.blocks_end
            .fetch_max(self.head.min_valid_time(), Ordering::AcqRel);
    }

    pub(crate) fn touch(&self, now_ms: i64) {
        self.last_append_ms.store(now_ms, Ordering::Relaxed);
    }

    /// How long since a push last appended, at `now_ms`.
    pub(crate) fn idle_for(&self, now_ms: i64) -> Duration {
        let last = self.last_append_ms.load(Ordering::Relaxed);
        Duration::from_millis(u64::try_from(now_ms.saturating_sub(last)).unwrap_or(0))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the tenant closed (call with `append` held) and returns what its
    /// next head must know.
    pub(crate) fn close(&self) -> ClosedTenant {
        self.closed.store(true, Ordering::Release);
        self.local_blocks.lock().clear();
        ClosedTenant {
            blocks_end: self
                .blocks_end
                .load(Ordering::Acquire)
                .max(self.head.min_valid_time()),
            next_ref: self.head.next_series_ref(),
        }
    }

    /// What a WAL checkpoint must keep of this tenant: the head's series
    /// (those created after this call too), the samples from the end of
    /// the blocks on, and the late samples behind it that no block holds yet.
    pub(crate) fn retain(&self) -> TenantRetain {
        // The next ref first: a series created after it has a ref at or
        // above it; one created before is in `series_refs`.
        let next_ref = self.head.next_series_ref();
        TenantRetain {
            keep_from_ts: self.blocks_end.load(Ordering::Acquire),
            keep_late_from_ts: self.head.oldest_late_sample().unwrap_or(i64::MAX),
            next_ref,
            refs: self.head.series_refs(),
        }
    }

    /// Readers of the local blocks overlapping `[mint, maxt]`, opened if
    /// they are not. Data cut from the head lives in these blocks until
    /// retention deletes them, and queriers ask ingesters (not store-gateways)
    /// for the recent `query_ingesters_within`, so queries must see them next
    /// to the head. A block that cannot be opened is left out with a warning
    /// (the other replicas answer for it).
    pub(crate) fn local_block_readers(&self, mint: i64, maxt: i64) -> Vec<Arc<BlockReader>> {
        let mut blocks = self.local_blocks.lock();
        let mut out = Vec::new();
        for block in blocks.values_mut() {
            if block.meta.min_time > maxt || block.meta.max_time <= mint {
                continue;
            }
            block.last_read = Instant::now();
            if block.reader.is_none() {
                match BlockReader::open(&block.dir) {
                    Ok(reader) => block.reader = Some(Arc::new(reader)),
                    Err(e) => {
                        tracing::warn!(tenant = %self.tenant, block = %block.meta.ulid, error = %e, "cannot open a local block for queries");
                        continue;
                    }
                }
            }
            out.extend(block.reader.clone());
        }
        out
    }

    /// Closes the files of the local blocks no query read for `idle`.
    /// Returns how many readers were closed.
    pub(crate) fn close_idle_readers(&self, idle: Duration) -> usize {
        let mut closed = 0;
        for block in self.local_blocks.lock().values_mut() {
            if block.reader.is_some() && block.last_read.elapsed() >= idle {
                block.reader = None;
                closed += 1;
            }
        }
        closed
    }

    pub(crate) fn has_local_blocks(&self) -> bool {
        !self.local_blocks.lock().is_empty()
    }

    /// Local blocks whose files are open now.
    pub(crate) fn open_readers(&self) -> usize {
        self.local_blocks
            .lock()
            .values()
            .filter(|b| b.reader.is_some())
            .count()
    }

    /// Cuts blocks of `range_ms` from the head while it spans more than 1.5
    /// ranges (with `force`, all of it before `force_before`) and truncates the
    /// head behind them; the caller then checkpoints the WAL, once for every
    /// tenant it cut. Returns the blocks written.
    pub(crate) async fn cut_blocks(
        self: &Arc<Self>,
        range_ms: i64,
        force: bool,
        force_before: i64,
        metrics: &IngesterMetrics,
    ) -> Result<Vec<BlockMeta>, IngesterError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(Vec::new());
        };
        let _one = self.cutting.lock().await;
        #[cfg(test)]
        if self
            .fail_next_cut
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(IngesterError::Injected("cut"));
        }
        let mut written = Vec::new();
        while let Some((_, max)) = self.head.time_range() {
            // Truncation keeps whole chunks: what is left before the last
            // block's end is already in that block. The next block starts at
            // the earliest sample after it, not at the next range: a lone old
            // sample must not make the cut walk every empty range since.
            let Some(min) = self.head.earliest_sample_from(self.head.min_valid_time()) else {
                break;
            };
            if min > max {
                break;
            }
            // Saturating: a timestamp near i64::MIN or MAX (an old WAL, a
            // bug) must not wrap the span or the block boundary.
            if !force && max.saturating_sub(min) <= range_ms / 2 * 3 {
                break;
            }
            let mint = min.div_euclid(range_ms).saturating_mul(range_ms);
            let mut maxt = mint.saturating_add(range_ms);
            if force {
                maxt = maxt.min(max.saturating_add(1)).min(force_before);
            }
            // A sample at i64::MAX fits no block (their end is exclusive):
            // stop rather than cut the same empty range forever.
            if maxt <= min {
                break;
            }
            {
                // Appends in flight finish first; later ones see the bound.
                let _append = self.append.lock();
                self.head.set_min_valid_time(maxt);
            }
            let cut = self
                .write_block(&dir, mint, maxt, BlockPart::InOrder)
                .await?;
            let meta = cut.map(|meta| self.add_local_block(&dir, meta));
            // Everything before `maxt` is in a block now (or there was none).
            self.blocks_end.fetch_max(maxt, Ordering::AcqRel);
            let truncated = {
                let _append = self.append.lock();
                self.head.truncate_before(maxt)
            };
            tracing::info!(
                tenant = %self.tenant,
                block = ?meta.as_ref().map(|m| m.ulid.to_string()),
                mint,
                maxt,
                series = meta.as_ref().map_or(0, |m| m.stats.num_series),
                samples = meta.as_ref().map_or(0, |m| m.stats.num_samples),
                chunks_dropped = truncated.chunks_dropped,
                series_dropped = truncated.series_dropped,
                "cut a block from the head"
            );
            if let Some(meta) = meta {
                metrics.block_cut(&self.tenant, meta.stats.num_samples, self.head.num_series());
                written.push(meta);
            }
        }
        // Late samples behind the blocks wait for the head's next cut, as in
        // Prometheus (its out-of-order head is compacted with the in-order
        // one): few blocks, and the window bounds what waits.
        if force || !written.is_empty() {
            written.extend(self.cut_late_blocks(&dir, range_ms, metrics).await?);
        }
        Ok(written)
    }

    /// Writes the late samples behind the block bound into blocks of their
    /// own, one per block range they fall in (they overlap the blocks cut
    /// before, until the compactor merges them), then lets the head forget
    /// them. Late samples that come meanwhile wait for the next cut. Call
    /// with `cutting` held.
    async fn cut_late_blocks(
        self: &Arc<Self>,
        dir: &Path,
        range_ms: i64,
        metrics: &IngesterMetrics,
    ) -> Result<Vec<BlockMeta>, IngesterError> {
        let mut written = Vec::new();
        let mut until = None;
        loop {
            // Set aside under the append lock: a late sample is either in
            // what this cut writes or left for the next one.
            let range = {
                let _append = self.append.lock();
                self.head.begin_late_cut()
            };
            let Some((min, max)) = range else {
                break;
            };
            let mint = min.div_euclid(range_ms).saturating_mul(range_ms);
            let maxt = mint.saturating_add(range_ms);
            // What came after the first set-aside waits for the next cut, so
            // a sender that keeps sending late samples cannot hold this loop.
            let until = *until.get_or_insert(max);
            if mint > until || maxt <= min {
                break;
            }
            let cut = self.write_block(dir, mint, maxt, BlockPart::Late).await?;
            let meta = cut.map(|meta| self.add_local_block(dir, meta));
            self.head.finish_late_cut(maxt);
            tracing::info!(
                tenant = %self.tenant,
                block = ?meta.as_ref().map(|m| m.ulid.to_string()),
                mint,
                maxt,
                series = meta.as_ref().map_or(0, |m| m.stats.num_series),
                samples = meta.as_ref().map_or(0, |m| m.stats.num_samples),
                "cut a block of late samples behind the blocks"
            );
            if let Some(meta) = meta {
                metrics.block_cut(&self.tenant, meta.stats.num_samples, self.head.num_series());
                written.push(meta);
            }
        }
        if !written.is_empty() {
            // Series that held only late samples go.
            let _append = self.append.lock();
            self.head.truncate_before(self.head.min_valid_time());
        }
        Ok(written)
    }

    /// Writes the head's samples of `part` in `[mint, maxt)` as a block under
    /// `dir`, and opens it once: it must read back before the head lets go
    /// of its samples, so that they never drop out of the ingester's answers.
    async fn write_block(
        &self,
        dir: &Path,
        mint: i64,
        maxt: i64,
        part: BlockPart,
    ) -> Result<Option<BlockMeta>, IngesterError> {
        let head = self.head.clone();
        let parent = dir.to_path_buf();
        let options = BlockOptions {
            tenant: Some(self.tenant.clone()),
            ..BlockOptions::default()
        };
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&parent).map_err(|e| IngesterError::Io {
                path: parent.clone(),
                source: e,
            })?;
            let Some(meta) =
                BlockWriter::new(options).write_head_part(&parent, &head, mint, maxt, part)?
            else {
                return Ok::<_, IngesterError>(None);
            };
            // Its files close until a query wants them, so a flush of many
            // tenants opens no file per tenant.
            drop(BlockReader::open(&parent.join(meta.ulid.to_string()))?);
            Ok(Some(meta))
        })
        .await
        .map_err(IngesterError::Task)?
    }

    /// Makes a block just written under `dir` one the queries read.
    fn add_local_block(&self, dir: &Path, meta: BlockMeta) -> BlockMeta {
        self.local_blocks.lock().insert(
            meta.ulid.to_string(),
            LocalBlock {
                meta: meta.clone(),
                dir: dir.join(meta.ulid.to_string()),
                reader: None,
                last_read: Instant::now(),
            },
        );
        meta
    }

    /// Whether every local block is shipped (and none is left to cut).
    pub(crate) fn all_shipped(&self) -> Result<bool, IngesterError> {
        let Some(dir) = &self.dir else {
            return Ok(true);
        };
        let shipped = read_shipped(dir)?;
        Ok(local_blocks(dir)
            .iter()
            .all(|(_, m)| shipped.uploaded.contains(&m.ulid.to_string())))
    }

    /// Uploads the local blocks not yet shipped, recording each in
    /// `shipper.json` once its `meta.json` is up; then deletes shipped blocks
    /// older than `retention`. Returns how many were uploaded.
    pub(crate) async fn ship(
        &self,
        bucket: &Bucket,
        retention: Duration,
        metrics: &IngesterMetrics,
    ) -> Result<usize, IngesterError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(0);
        };
        let mut shipped = read_shipped(&dir)?;
        let blocks = local_blocks(&dir);
        let mut uploaded = 0;
        for (block_dir, meta) in &blocks {
            let ulid = meta.ulid.to_string();
            if shipped.uploaded.contains(&ulid) {
                continue;
            }
            if self.failed_uploads.lock().contains(&ulid) {
                metrics.upload_retried();
            }
            let bytes = match bucket.upload_block(&self.tenant, block_dir).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    metrics.upload_failed();
                    self.failed_uploads.lock().insert(ulid);
                    return Err(e.into());
                }
            };
            self.failed_uploads.lock().remove(&ulid);
            metrics.upload_succeeded();
            shipped.uploaded.push(ulid.clone());
            shipped.uploaded.sort();
            write_shipped(&dir, &shipped)?;
            uploaded += 1;
            tracing::info!(tenant = %self.tenant, block = %ulid, bytes, "shipped a block");
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // A retention too long for i64 milliseconds keeps everything.
        let horizon =
            now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut removed = false;
        for (block_dir, meta) in &blocks {
            let ulid = meta.ulid.to_string();
            if meta.max_time < horizon && shipped.uploaded.contains(&ulid) {
                std::fs::remove_dir_all(block_dir).map_err(|e| IngesterError::Io {
                    path: block_dir.clone(),
                    source: e,
                })?;
                self.local_blocks.lock().remove(&ulid);
                tracing::info!(tenant = %self.tenant, block = %ulid, "deleted a shipped block past retention");
                removed = true;
            }
        }
        if removed {
            let left: Vec<String> = local_blocks(&dir)
                .iter()
                .map(|(_, m)| m.ulid.to_string())
                .collect();
            shipped.uploaded.retain(|u| left.contains(u));
            write_shipped(&dir, &shipped)?;
        }
        Ok(uploaded)
    }
}

/// The complete blocks (a `meta.json` that parses) in a tenant directory.
pub(crate) fn local_blocks(dir: &Path) -> Vec<(PathBuf, BlockMeta)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, BlockMeta)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().len() == 26)
        .filter_map(|e| {
            let path = e.path();
            let text = std::fs::read(path.join(strata_storage::META_FILENAME)).ok()?;
            let meta: BlockMeta = serde_json::from_slice(&text).ok()?;
            Some((path, meta))
        })
        .collect();
    out.sort_by_key(|(_, m)| m.min_time);
    out
}

/// `shipper.json`: Thanos's shipper file, in the same shape.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Shipped {
    version: u32,
    uploaded: Vec<String>,
}

fn read_shipped(dir: &Path) -> Result<Shipped, IngesterError> {
    let path = dir.join(SHIPPER_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(s) => Ok(s),
            Err(e) => {
                // Re-uploading is harmless (same objects); skipping is not.
                tracing::warn!(file = %path.display(), error = %e, "unreadable shipper file: shipping every local block again");
                Ok(Shipped::default())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Shipped::default()),
        Err(e) => Err(IngesterError::Io { path, source: e }),
    }
}

fn write_shipped(dir: &Path, shipped: &Shipped) -> Result<(), IngesterError> {
    let body = serde_json::to_vec_pretty(&Shipped {
        version: 1,
        uploaded: shipped.uploaded.clone(),
    })
    .map_err(IngesterError::ShipperFile)?;
    write_atomically(dir, SHIPPER_FILE, &body)
}

/// Writes `dir/name` through a temporary file, fsynced, then renamed.
fn write_atomically(dir: &Path, name: &str, body: &[u8]) -> Result<(), IngesterError> {
    use std::io::Write;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| IngesterError::Io { path: p, source: e }
    };
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(body).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
