//! One tenant's TSDB on the ingester's disk: the head, its WAL, the blocks cut
//! from it and the record of which of them were shipped.
//!
//! ```text
//! <tsdb dir>/<tenant>/wal/            segments and checkpoints
//! <tsdb dir>/<tenant>/<ULID>/         blocks cut from the head
//! <tsdb dir>/<tenant>/shipper.json    ULIDs already uploaded
//! ```
//!
//! After a block is cut, the WAL is checkpointed without the samples before
//! the block's end and with that end as the head's lower bound (a
//! `MinValidTime` record), so a restart neither replays what a block holds
//! nor takes such samples again, even once the block is gone from the disk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_storage::{Bucket, TsdbConfig};
use strata_tsdb::block::{BlockMeta, BlockOptions, BlockReader, BlockWriter};
use strata_tsdb::head::{Head, SeriesRef};
use strata_tsdb::wal::{FsyncPolicy, ReplayStats, Wal, WalOptions};

use crate::metrics::IngesterMetrics;
use crate::IngesterError;

pub(crate) const WAL_DIR: &str = "wal";
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
            ship_interval: tsdb.ship_interval.0,
        }
    }
}

/// One tenant's head with what makes it durable. `wal` is `None` for an
/// ingester without local storage (tests).
#[derive(Debug)]
pub(crate) struct TenantDb {
    pub(crate) tenant: String,
    pub(crate) head: Arc<Head>,
    pub(crate) wal: Option<Wal>,
    /// Serialises appends (and the WAL records of a push) per tenant, so the
    /// WAL's order of a series' samples is the head's.
    pub(crate) append: parking_lot::Mutex<()>,
    /// One block cut or shipping round at a time.
    pub(crate) cutting: tokio::sync::Mutex<()>,
    pub(crate) dir: Option<PathBuf>,
    /// Blocks whose last upload failed: the next attempt is a retry.
    failed_uploads: parking_lot::Mutex<HashSet<String>>,
    /// Readers of the local blocks by ULID, opened on first use and dropped
    /// once retention has deleted the block.
    block_readers: parking_lot::Mutex<HashMap<String, Arc<BlockReader>>>,
    /// Tests: the next cut fails, as a full or broken disk would make it.
    #[cfg(test)]
    pub(crate) fail_next_cut: std::sync::atomic::AtomicBool,
}

impl TenantDb {
    pub(crate) fn in_memory(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
            head: Arc::new(Head::new()),
            wal: None,
            append: parking_lot::Mutex::new(()),
            cutting: tokio::sync::Mutex::new(()),
            dir: None,
            failed_uploads: parking_lot::Mutex::new(HashSet::new()),
            block_readers: parking_lot::Mutex::new(HashMap::new()),
            #[cfg(test)]
            fail_next_cut: Default::default(),
        }
    }

    /// Opens `<dir>/<tenant>`: samples older than the newest local block's end
    /// are out of bounds, the WAL is replayed into a new head (which also
    /// restores the bound its last checkpoint recorded), then opened for
    /// writing, reporting to `metrics`.
    pub(crate) fn open(
        settings: &DbSettings,
        tenant: &str,
        metrics: &IngesterMetrics,
    ) -> Result<(Self, ReplayStats), IngesterError> {
        let dir = settings.dir.join(tenant);
        std::fs::create_dir_all(&dir).map_err(|e| IngesterError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let head = Arc::new(Head::new());
        let existing = local_blocks(&dir);
        if let Some(max) = existing.iter().map(|(_, m)| m.max_time).max() {
            head.set_min_valid_time(max);
        }
        let mut block_readers = HashMap::new();
        for (block_dir, meta) in existing {
            match BlockReader::open(&block_dir) {
                Ok(reader) => {
                    block_readers.insert(meta.ulid.to_string(), Arc::new(reader));
                }
                // Serve the rest; the other replicas answer for this block.
                Err(e) => {
                    tracing::warn!(tenant, block = %meta.ulid, error = %e, "cannot open a local block for queries");
                }
            }
        }
        let wal_dir = dir.join(WAL_DIR);
        let (wal, stats) = if settings.wal_enabled {
            let stats = Wal::replay_into(&wal_dir, &head)?;
            let wal = Wal::open_observed(&wal_dir, settings.wal, Some(metrics.wal_observer()))?;
            (Some(wal), stats)
        } else {
            if wal_dir.exists() {
                tracing::warn!(
                    tenant,
                    dir = %wal_dir.display(),
                    "the WAL is disabled (blocks_storage.tsdb.wal_enabled=false): not replaying the WAL left in this directory"
                );
            }
            (None, ReplayStats::default())
        };
        Ok((
            Self {
                tenant: tenant.to_string(),
                head,
                wal,
                append: parking_lot::Mutex::new(()),
                cutting: tokio::sync::Mutex::new(()),
                dir: Some(dir),
                failed_uploads: parking_lot::Mutex::new(HashSet::new()),
                block_readers: parking_lot::Mutex::new(block_readers),
                #[cfg(test)]
                fail_next_cut: Default::default(),
            },
            stats,
        ))
    }

    /// Readers of the local blocks overlapping `[mint, maxt]`. Data cut from
    /// the head lives in these blocks until retention deletes them, and
    /// queriers ask ingesters (not store-gateways) for the recent
    /// `query_ingesters_within`, so queries must see them next to the head.
    /// The set is kept where blocks come and go (open, cut, retention), so a
    /// query does no I/O to find them.
    pub(crate) fn local_block_readers(&self, mint: i64, maxt: i64) -> Vec<Arc<BlockReader>> {
        self.block_readers
            .lock()
            .values()
            .filter(|r| r.meta().min_time <= maxt && r.meta().max_time > mint)
            .cloned()
            .collect()
    }

    /// Cuts blocks of `range_ms` from the head while it spans more than 1.5
    /// ranges (with `force`, all of it before `force_before`), truncates the
    /// head behind them and checkpoints the WAL. Returns the blocks written.
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
            let head = self.head.clone();
            let parent = dir.clone();
            let options = BlockOptions {
                tenant: Some(self.tenant.clone()),
                ..BlockOptions::default()
            };
            // The block is opened for queries before the head lets go of its
            // samples, so they never drop out of the ingester's answers.
            let cut = tokio::task::spawn_blocking(move || {
                let Some(meta) =
                    BlockWriter::new(options).write_head(&parent, &head, mint, maxt)?
                else {
                    return Ok::<_, IngesterError>(None);
                };
                let reader = BlockReader::open(&parent.join(meta.ulid.to_string()))?;
                Ok(Some((meta, reader)))
            })
            .await
            .map_err(IngesterError::Task)??;
            let meta = cut.map(|(meta, reader)| {
                self.block_readers
                    .lock()
                    .insert(meta.ulid.to_string(), Arc::new(reader));
                meta
            });
            let (refs, next_ref, truncated) = {
                let _append = self.append.lock();
                let truncated = self.head.truncate_before(maxt);
                (
                    self.head.series_refs(),
                    self.head.next_series_ref(),
                    truncated,
                )
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
            let db = self.clone();
            let stats = tokio::task::spawn_blocking(move || match &db.wal {
                Some(wal) => wal
                    .checkpoint(maxt, |r: SeriesRef| {
                        r >= next_ref || refs.binary_search(&r).is_ok()
                    })
                    .map(Some),
                None => Ok(None),
            })
            .await
            .map_err(IngesterError::Task)??;
            tracing::debug!(tenant = %self.tenant, ?stats, "WAL checkpoint");
        }
        Ok(written)
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
                self.block_readers.lock().remove(&ulid);
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
