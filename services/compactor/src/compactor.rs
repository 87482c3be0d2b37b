//! One compactor's passes over its bucket: the steps the crate documentation
//! lists, tenant after tenant, and which tenants are its to compact
//! ([`TenantOwnership`]). It owns the work; starting it, its ring and its
//! HTTP endpoint are [`crate::lifecycle`]'s and [`crate::http`]'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde::Serialize;
use strata_limits::Overrides;
use strata_storage::bucket_index::{
    global_deletion_mark_path, BucketIndex, DeletionMark, IndexBlock, IndexDeletionMark,
    DELETION_MARK_VERSION, SEGMENTS_FORMAT_1B6D,
};
use strata_storage::{Bucket, META_FILENAME};
use strata_tsdb::block::{compact, BlockMeta, BlockOptions, BlockReader, Ulid};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::config::CompactorConfig;
use crate::error::{io_err, CompactorError};
use crate::metrics::CompactorMetrics;
use crate::planner::{plan, redundant, Job};

/// At most this many merges per tenant and pass, so one tenant cannot hold
/// the others up indefinitely (the rest waits for the next pass).
const MAX_JOBS_PER_TENANT: usize = 100;

/// What one pass did, summed over tenants (`POST /compactor/run` answers it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassStats {
    pub tenants: usize,
    /// Tenants left to another compactor (see [`TenantOwnership`]).
    pub tenants_owned_elsewhere: usize,
    /// Blocks written by merging others.
    pub compactions: usize,
    pub blocks_marked_for_deletion: usize,
    pub blocks_deleted: usize,
    pub partial_blocks_deleted: usize,
    /// Tenants whose turn failed, with the error; the others went on.
    pub failed_tenants: BTreeMap<String, String>,
}

/// Which tenants this compactor works on. Several compactors on one bucket
/// must each own a tenant alone, or two would merge the same blocks at once
/// (nothing would be lost, but the work and the bucket's blocks would double
/// until the next pass merged the copies).
pub trait TenantOwnership: Send + Sync + std::fmt::Debug {
    fn owns(&self, tenant: &str) -> bool;
}

/// The compactor of one bucket.
#[derive(Debug)]
pub struct Compactor {
    config: CompactorConfig,
    bucket: Bucket,
    overrides: Arc<Overrides>,
    metrics: CompactorMetrics,
    /// One pass at a time, whoever starts it.
    running: tokio::sync::Mutex<()>,
    /// `None`: every tenant is this compactor's.
    ownership: Option<Arc<dyn TenantOwnership>>,
}

/// A complete block as the pass sees it.
#[derive(Debug, Clone)]
struct Entry {
    meta: BlockMeta,
    /// When its upload completed, Unix seconds.
    uploaded_at: i64,
    /// When it was marked for deletion, Unix seconds.
    marked_at: Option<i64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Compactor {
    pub fn new(
        config: CompactorConfig,
        bucket: Bucket,
        overrides: Arc<Overrides>,
        registry: &prometheus::Registry,
    ) -> Result<Self, CompactorError> {
        config.validate()?;
        Ok(Self {
            metrics: CompactorMetrics::new(registry)?,
            config,
            bucket,
            overrides,
            running: tokio::sync::Mutex::new(()),
            ownership: None,
        })
    }

    /// Compacts only the tenants `ownership` gives this compactor.
    pub fn with_ownership(mut self, ownership: Arc<dyn TenantOwnership>) -> Self {
        self.ownership = Some(ownership);
        self
    }

    pub fn config(&self) -> &CompactorConfig {
        &self.config
    }

    /// Runs a pass every `compaction_interval`, the first one interval after
    /// start (so restarting a process does not set off a pass), until
    /// `shutdown` turns true. A pass in progress at shutdown is abandoned where
    /// it is: the bucket is valid at every step.
    pub fn spawn(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let interval = self.config.compaction_interval.0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                tokio::select! {
                    _ = self.run_once() => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        })
    }

    /// One pass over every tenant (waits for a pass already running to end).
    /// A tenant that fails is logged and listed in the result; the others go on.
    pub async fn run_once(&self) -> Result<PassStats, CompactorError> {
        let _running = self.running.lock().await;
        self.metrics.runs_started.inc();
        let started = std::time::Instant::now();
        let tenants = match self.bucket.list_tenants().await {
            Ok(t) => t,
            Err(e) => {
                self.metrics.runs_failed.inc();
                tracing::error!(error = %e, "compactor: listing tenants failed");
                return Err(e.into());
            }
        };
        let mut stats = PassStats::default();
        for tenant in tenants {
            if let Err(e) = strata_model::validate_tenant_id(&tenant) {
                tracing::warn!(%tenant, error = %e, "compactor: skipping a bucket prefix that is not a tenant ID");
                continue;
            }
            if self.ownership.as_ref().is_some_and(|o| !o.owns(&tenant)) {
                stats.tenants_owned_elsewhere += 1;
                continue;
            }
            stats.tenants += 1;
            if let Err(e) = self.compact_tenant(&tenant, &mut stats).await {
                tracing::error!(%tenant, error = %e, "compactor: tenant's pass failed");
                stats.failed_tenants.insert(tenant.clone(), e.to_string());
            }
        }
        if stats.failed_tenants.is_empty() {
            self.metrics.runs_completed.inc();
            self.metrics
                .last_successful_run
                .set(now_ms() as f64 / 1000.0);
        } else {
            self.metrics.runs_failed.inc();
        }
        tracing::info!(?stats, took = ?started.elapsed(), "compactor: pass done");
        Ok(stats)
    }

    /// One tenant's turn: the steps of the crate documentation, in order, in
    /// a scratch directory of its own.
    async fn compact_tenant(
        &self,
        tenant: &str,
        stats: &mut PassStats,
    ) -> Result<(), CompactorError> {
        let work = self.fresh_work_dir(tenant).await?;
        let mut blocks = self.list_blocks(tenant, stats).await?;
        self.mark_expired_and_redundant(tenant, &mut blocks, stats)
            .await?;
        self.merge_blocks(tenant, &work, &mut blocks, stats).await?;
        self.delete_marked(tenant, &mut blocks, stats).await?;
        self.write_bucket_index(tenant, &blocks).await?;
        let _ = tokio::fs::remove_dir_all(&work).await;
        Ok(())
    }

    /// The tenant's scratch directory under `data_dir`, emptied: leftovers of
    /// an interrupted pass are of no use.
    async fn fresh_work_dir(&self, tenant: &str) -> Result<PathBuf, CompactorError> {
        let work = Path::new(&self.config.data_dir).join(tenant);
        match tokio::fs::remove_dir_all(&work).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&work)(e)),
        }
        tokio::fs::create_dir_all(&work)
            .await
            .map_err(io_err(&work))?;
        Ok(work)
    }

    /// Step 1: the tenant's complete blocks, from one listing, with their
    /// metas and deletion marks; deletes partial blocks older than
    /// `partial_block_deletion_delay`, and the `markers/` copies of deletion
    /// marks of blocks that are gone.
    async fn list_blocks(
        &self,
        tenant: &str,
        stats: &mut PassStats,
    ) -> Result<BTreeMap<Ulid, Entry>, CompactorError> {
        let now_s = now_ms() / 1000;
        let scan = self.bucket.scan_tenant(tenant).await?;
        let mut blocks: BTreeMap<Ulid, Entry> = BTreeMap::new();
        let partial_delay = self.config.partial_block_deletion_delay.0;
        for (name, objects) in &scan.blocks {
            let Ok(ulid) = name.parse::<Ulid>() else {
                continue;
            };
            if !objects.has_meta {
                if !partial_delay.is_zero()
                    && now_s - objects.newest_modified >= secs(partial_delay)
                {
                    tracing::info!(%tenant, block = %name, "compactor: deleting a partial block (no meta.json)");
                    self.bucket
                        .delete_block(tenant, name, &objects.objects)
                        .await?;
                    stats.partial_blocks_deleted += 1;
                    self.metrics.partial_blocks_deleted.inc();
                }
                continue;
            }
            let Some(meta) = self.read_meta(tenant, name, ulid).await? else {
                continue;
            };
            let marked_at = if objects.has_deletion_mark {
                match self.bucket.read_deletion_mark(tenant, name).await {
                    Ok(Some(mark)) => Some(mark.deletion_time),
                    // Deleted between the listing and now, or unreadable:
                    // count from now, the later of the possible times.
                    Ok(None) => Some(now_s),
                    Err(e) => {
                        tracing::warn!(%tenant, block = %name, error = %e, "compactor: unreadable deletion mark");
                        Some(now_s)
                    }
                }
            } else {
                None
            };
            blocks.insert(
                ulid,
                Entry {
                    meta,
                    uploaded_at: objects.meta_modified,
                    marked_at,
                },
            );
        }
        // Copies under markers/ of blocks that are gone (a deletion that
        // stopped after the block's own files).
        for id in &scan.global_marks {
            if !scan.blocks.contains_key(id) {
                match self
                    .bucket
                    .store()
                    .delete(&global_deletion_mark_path(tenant, id))
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        Ok(blocks)
    }

    /// Step 2: marks the blocks past the tenant's retention period, and those
    /// whose data another block already holds, for deletion.
    async fn mark_expired_and_redundant(
        &self,
        tenant: &str,
        blocks: &mut BTreeMap<Ulid, Entry>,
        stats: &mut PassStats,
    ) -> Result<(), CompactorError> {
        // Retention.
        let retention = self
            .overrides
            .for_tenant(tenant)
            .compactor_blocks_retention_period
            .as_millis_i64();
        if retention > 0 {
            let cutoff = now_ms().saturating_sub(retention);
            let expired: Vec<Ulid> = blocks
                .iter()
                .filter(|(_, e)| e.marked_at.is_none() && e.meta.max_time <= cutoff)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                self.mark(
                    tenant,
                    id,
                    "retention",
                    "past the retention period",
                    blocks,
                    stats,
                )
                .await?;
            }
        }
        // Blocks another block already holds.
        let live: Vec<&BlockMeta> = blocks
            .values()
            .filter(|e| e.marked_at.is_none())
            .map(|e| &e.meta)
            .collect();
        for (id, keeper) in redundant(&live) {
            let details = format!("its data is in block {keeper}");
            self.mark(tenant, id, "duplicate", &details, blocks, stats)
                .await?;
        }

        Ok(())
    }

    /// Step 3: runs the planner's jobs one after the other (at most
    /// [`MAX_JOBS_PER_TENANT`]), each on the blocks the previous left.
    async fn merge_blocks(
        &self,
        tenant: &str,
        work: &Path,
        blocks: &mut BTreeMap<Ulid, Entry>,
        stats: &mut PassStats,
    ) -> Result<(), CompactorError> {
        let ranges = self.config.ranges_ms();
        for _ in 0..MAX_JOBS_PER_TENANT {
            let live: Vec<&BlockMeta> = blocks
                .values()
                .filter(|e| e.marked_at.is_none())
                .map(|e| &e.meta)
                .collect();
            let Some(job) = plan(&live, &ranges) else {
                break;
            };
            self.run_job(tenant, &job, work, blocks, stats).await?;
        }

        Ok(())
    }

    /// Step 4: deletes the blocks marked longer than `deletion_delay` ago.
    async fn delete_marked(
        &self,
        tenant: &str,
        blocks: &mut BTreeMap<Ulid, Entry>,
        stats: &mut PassStats,
    ) -> Result<(), CompactorError> {
        // Deletion of blocks marked long enough ago.
        let delay = secs(self.config.deletion_delay.0);
        let due: Vec<Ulid> = blocks
            .iter()
            .filter(|(_, e)| e.marked_at.is_some_and(|t| now_ms() / 1000 - t >= delay))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let name = id.to_string();
            let prefix = ObjectPath::from(format!("{tenant}/{name}"));
            let objects: Vec<(ObjectPath, u64)> = self
                .bucket
                .store()
                .list(Some(&prefix))
                .map_ok(|o| (o.location, o.size))
                .try_collect()
                .await?;
            self.bucket.delete_block(tenant, &name, &objects).await?;
            blocks.remove(&id);
            stats.blocks_deleted += 1;
            self.metrics.blocks_deleted.inc();
        }

        Ok(())
    }

    /// Step 5: writes the tenant's bucket index of the blocks that remain.
    async fn write_bucket_index(
        &self,
        tenant: &str,
        blocks: &BTreeMap<Ulid, Entry>,
    ) -> Result<(), CompactorError> {
        let index = bucket_index(blocks, now_ms() / 1000);
        self.bucket.write_bucket_index(tenant, &index).await?;
        self.metrics.bucket_index_updates.inc();
        Ok(())
    }

    /// The block's `meta.json`, or `None` (logged) when it is not a readable
    /// meta of that block: such a block is left alone, neither merged nor
    /// deleted, for an operator to look at.
    async fn read_meta(
        &self,
        tenant: &str,
        name: &str,
        ulid: Ulid,
    ) -> Result<Option<BlockMeta>, CompactorError> {
        let path = Bucket::block_object(tenant, name, META_FILENAME);
        let bytes = match self.bucket.store().get(&path).await {
            Ok(r) => r.bytes().await?,
            // Deleted since the listing.
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<BlockMeta>(&bytes) {
            Ok(meta) if meta.ulid == ulid && meta.min_time < meta.max_time => Ok(Some(meta)),
            Ok(meta) => {
                tracing::warn!(%tenant, block = %name, meta_ulid = %meta.ulid, "compactor: meta.json does not describe its block; skipped");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(%tenant, block = %name, error = %e, "compactor: unreadable meta.json; block skipped");
                Ok(None)
            }
        }
    }

    async fn mark(
        &self,
        tenant: &str,
        id: Ulid,
        reason: &'static str,
        details: &str,
        blocks: &mut BTreeMap<Ulid, Entry>,
        stats: &mut PassStats,
    ) -> Result<(), CompactorError> {
        let now_s = now_ms() / 1000;
        let mark = DeletionMark {
            id: id.to_string(),
            deletion_time: now_s,
            version: DELETION_MARK_VERSION,
            details: details.to_string(),
        };
        self.bucket.write_deletion_mark(tenant, &mark).await?;
        if let Some(e) = blocks.get_mut(&id) {
            e.marked_at = Some(now_s);
        }
        tracing::info!(%tenant, block = %id, reason, details, "compactor: block marked for deletion");
        stats.blocks_marked_for_deletion += 1;
        self.metrics
            .marked_for_deletion
            .with_label_values(&[reason])
            .inc();
        Ok(())
    }

    /// Downloads the job's blocks, merges them, uploads the result and marks
    /// the sources, in that order.
    async fn run_job(
        &self,
        tenant: &str,
        job: &Job,
        work: &Path,
        blocks: &mut BTreeMap<Ulid, Entry>,
        stats: &mut PassStats,
    ) -> Result<(), CompactorError> {
        let started = std::time::Instant::now();
        let job_dir = work.join(format!("job-{}", Ulid::generate()));
        let mut dirs = Vec::with_capacity(job.blocks.len());
        for id in &job.blocks {
            let dir = job_dir.join(id.to_string());
            self.download_block(tenant, *id, &dir).await?;
            dirs.push(dir);
        }
        let out_dir = job_dir.join("out");
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(io_err(&out_dir))?;
        let options = BlockOptions {
            tenant: Some(tenant.to_string()),
            source: "compactor".to_string(),
            ..BlockOptions::default()
        };
        let merge_dir = out_dir.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let readers = dirs
                .iter()
                .map(|d| BlockReader::open(d))
                .collect::<Result<Vec<_>, _>>()?;
            compact(&merge_dir, &readers, &options)
        })
        .await
        .map_err(CompactorError::MergeTask)??;

        let details = match &outcome {
            Some(o) => {
                let ulid = o.meta.ulid;
                self.bucket
                    .upload_block(tenant, &out_dir.join(ulid.to_string()))
                    .await?;
                blocks.insert(
                    ulid,
                    Entry {
                        meta: o.meta.clone(),
                        uploaded_at: now_ms() / 1000,
                        marked_at: None,
                    },
                );
                stats.compactions += 1;
                self.metrics
                    .compactions
                    .with_label_values(&[job.kind.label()])
                    .inc();
                tracing::info!(
                    %tenant,
                    kind = job.kind.label(),
                    sources = ?job.blocks.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    block = %ulid,
                    samples_read = o.samples_read,
                    samples = o.meta.stats.num_samples,
                    series = o.meta.stats.num_series,
                    took = ?started.elapsed(),
                    "compactor: blocks merged"
                );
                format!("compacted into block {ulid}")
            }
            None => "compacted: no samples".to_string(),
        };
        for id in &job.blocks {
            self.mark(tenant, *id, "compaction", &details, blocks, stats)
                .await?;
        }
        tokio::fs::remove_dir_all(&job_dir)
            .await
            .map_err(io_err(&job_dir))?;
        Ok(())
    }

    /// Copies the block's `meta.json`, `index` and `chunks/*` to `dir`,
    /// streaming each object to its file.
    async fn download_block(
        &self,
        tenant: &str,
        id: Ulid,
        dir: &Path,
    ) -> Result<(), CompactorError> {
        let prefix = ObjectPath::from(format!("{tenant}/{id}"));
        let objects: Vec<_> = self
            .bucket
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await?;
        let chunks_dir = dir.join("chunks");
        tokio::fs::create_dir_all(&chunks_dir)
            .await
            .map_err(io_err(&chunks_dir))?;
        for o in objects {
            let parts: Vec<String> = o
                .location
                .parts()
                .skip(2)
                .map(|p| p.as_ref().to_string())
                .collect();
            // Only the block's own files; names are checked so an object
            // name can never point outside `dir`.
            let dst = match parts.as_slice() {
                [f] if f == META_FILENAME || f == "index" => dir.join(f),
                [c, f]
                    if c == "chunks" && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    chunks_dir.join(f)
                }
                _ => continue,
            };
            let mut stream = self.bucket.store().get(&o.location).await?.into_stream();
            let mut file = tokio::fs::File::create(&dst).await.map_err(io_err(&dst))?;
            while let Some(bytes) = stream.try_next().await? {
                file.write_all(&bytes).await.map_err(io_err(&dst))?;
            }
            file.flush().await.map_err(io_err(&dst))?;
        }
        Ok(())
    }
}

/// The bucket index of the pass's view of the tenant's blocks.
fn bucket_index(blocks: &BTreeMap<Ulid, Entry>, now_s: i64) -> BucketIndex {
    let mut index_blocks = Vec::with_capacity(blocks.len());
    let mut marks = Vec::new();
    for (id, e) in blocks {
        let thanos = e.meta.thanos.as_ref();
        let segments = thanos.map(|t| t.segment_files.as_slice()).unwrap_or(&[]);
        // Mimir's "1b6d": 000001, 000002, … in order.
        let numbered = !segments.is_empty()
            && segments
                .iter()
                .enumerate()
                .all(|(i, name)| *name == format!("{:06}", i + 1));
        index_blocks.push(IndexBlock {
            block_id: id.to_string(),
            min_time: e.meta.min_time,
            max_time: e.meta.max_time,
            segments_format: if numbered {
                SEGMENTS_FORMAT_1B6D.to_string()
            } else {
                String::new()
            },
            segments_num: if numbered {
                u32::try_from(segments.len()).unwrap_or(0)
            } else {
                0
            },
            uploaded_at: e.uploaded_at,
            source: thanos.map(|t| t.source.clone()).unwrap_or_default(),
            compaction_level: e.meta.compaction.level,
            labels: thanos.map(|t| t.labels.clone()).unwrap_or_default(),
        });
        if let Some(t) = e.marked_at {
            marks.push(IndexDeletionMark {
                block_id: id.to_string(),
                deletion_time: t,
            });
        }
    }
    BucketIndex::new(index_blocks, marks, now_s)
}
