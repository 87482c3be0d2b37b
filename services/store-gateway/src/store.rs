//! The bucket store: every tenant's blocks this store-gateway owns, kept in
//! sync with the bucket, and the queries over them.
//!
//! A sync lists the tenants, then each tenant's blocks — from its bucket
//! index (`<tenant>/bucket-index.json.gz`, written by the compactor) when
//! there is one, else by listing `<tenant>/` (blocks with a `meta.json`) —
//! drops blocks marked for deletion longer ago than
//! `ignore_deletion_mark_delay` and blocks another store-gateway owns, loads
//! the new ones (index-header and `block.json` from the local sync dir when
//! present, else built by ranged reads and written there) and unloads the
//! rest. A query holds the blocks it reads, so a sync never pulls a block
//! from under it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use strata_model::Matcher;
use strata_proto::storegateway::SeriesResponse;
use strata_storage::bucket_index::BucketIndex;
use strata_storage::{Bucket, BucketStoreConfig, META_FILENAME};
use strata_tsdb::block::{BlockMeta, Ulid};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::block::{object, read_block_files, Block, BlockFiles};
use crate::cache::Caches;
use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::sharding::ShardingStrategy;

/// Messages a series stream buffers ahead of its reader: with
/// [`crate::block::SERIES_BATCH`] series each, what bounds a query's memory.
const STREAM_BUFFER: usize = 2;

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub tenants: usize,
    pub blocks_loaded: usize,
    pub blocks_dropped: usize,
    pub load_failures: usize,
}

/// An answer and the blocks read for it (their ULIDs): what lets the querier
/// check that every block it needed was answered by some replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlocksAnswer<T> {
    pub value: T,
    pub queried_blocks: Vec<String>,
}

impl<T> BlocksAnswer<T> {
    fn new(value: T, blocks: &[Arc<Block>]) -> Self {
        Self {
            value,
            queried_blocks: block_ids(blocks),
        }
    }
}

fn block_ids(blocks: &[Arc<Block>]) -> Vec<String> {
    blocks.iter().map(|b| b.meta().ulid.to_string()).collect()
}

/// A block the bucket shows, before it is loaded.
#[derive(Debug, Clone)]
struct Candidate {
    id: String,
    /// Sizes from a listing: the index, and the segment files in order.
    index_size: Option<u64>,
    segments: Option<Vec<(String, u64)>>,
    /// When it was marked for deletion (Unix seconds), if it was.
    deletion_time: Option<i64>,
}

type TenantBlocks = BTreeMap<String, Arc<Block>>;

/// Serves the blocks of every tenant this store-gateway owns.
#[derive(Debug)]
pub struct BucketStore {
    bucket: Bucket,
    config: BucketStoreConfig,
    caches: Arc<Caches>,
    metrics: StoreMetrics,
    sharding: Option<ShardingStrategy>,
    tenants: RwLock<BTreeMap<String, TenantBlocks>>,
    /// Deletion times read from marks, so each mark is fetched once.
    mark_times: Mutex<HashMap<(String, String), i64>>,
    sync_lock: tokio::sync::Mutex<()>,
}

impl BucketStore {
    /// A store over `bucket` with no block loaded yet ([`BucketStore::sync`]
    /// loads them). With `sharding`, only the blocks this instance owns.
    pub fn new(
        bucket: Bucket,
        config: BucketStoreConfig,
        metrics: StoreMetrics,
        sharding: Option<ShardingStrategy>,
    ) -> Self {
        let caches = Arc::new(Caches::new(
            config.postings_cache_max_bytes,
            config.series_cache_max_bytes,
            config.chunks_cache_max_bytes,
            &metrics,
        ));
        Self {
            bucket,
            config,
            caches,
            metrics,
            sharding,
            tenants: RwLock::new(BTreeMap::new()),
            mark_times: Mutex::new(HashMap::new()),
            sync_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// The metas of the tenant's loaded blocks, by ULID.
    pub fn blocks(&self, tenant: &str) -> Vec<BlockMeta> {
        self.tenants
            .read()
            .get(tenant)
            .map(|blocks| blocks.values().map(|b| b.meta().clone()).collect())
            .unwrap_or_default()
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        self.bucket.store().clone()
    }

    fn count(&self, op: &str) {
        self.metrics.requests.with_label_values(&[op]).inc();
    }

    fn local_dir(&self, tenant: &str, block: &str) -> PathBuf {
        PathBuf::from(&self.config.sync_dir)
            .join(tenant)
            .join(block)
    }

    /// Brings the loaded blocks in line with the bucket and the ring.
    pub async fn sync(&self) -> Result<SyncStats, StoreError> {
        let _one = self.sync_lock.lock().await;
        self.metrics.syncs.inc();
        let result = self.sync_inner().await;
        if result.is_err() {
            self.metrics.sync_failures.inc();
        }
        self.metrics
            .blocks_loaded
            .set(self.tenants.read().values().map(|b| b.len() as i64).sum());
        result
    }

    async fn sync_inner(&self) -> Result<SyncStats, StoreError> {
        let mut stats = SyncStats::default();
        self.count("list");
        let tenants: Vec<String> = self
            .bucket
            .list_tenants()
            .await?
            .into_iter()
            .filter(|t| strata_model::validate_tenant_id(t).is_ok())
            .collect();
        stats.tenants = tenants.len();
        let now = unix_now();
        let mut first_error = None;
        for tenant in &tenants {
            let candidates = match self.discover(tenant).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "cannot list the tenant's blocks; keeping what is loaded");
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let loaded: BTreeSet<String> = self
                .tenants
                .read()
                .get(tenant)
                .map(|b| b.keys().cloned().collect())
                .unwrap_or_default();
            let delay = self.config.ignore_deletion_mark_delay.0.as_secs() as i64;
            let wanted: Vec<Candidate> = candidates
                .into_iter()
                .filter(|c| c.deletion_time.is_none_or(|t| now - t <= delay))
                .filter(|c| match self.sharding.as_ref().map(|s| s.owns(&c.id)) {
                    None => true,
                    Some(Some(owned)) => owned,
                    Some(None) => loaded.contains(&c.id),
                })
                .collect();
            let wanted_ids: BTreeSet<String> = wanted.iter().map(|c| c.id.clone()).collect();
            let to_load: Vec<Candidate> = wanted
                .into_iter()
                .filter(|c| !loaded.contains(&c.id))
                .collect();
            let mut loads = futures::stream::iter(to_load)
                .map(|c| async move {
                    let id = c.id.clone();
                    (id, self.load(tenant, c).await)
                })
                .buffer_unordered(self.config.block_sync_concurrency.max(1));
            while let Some((id, result)) = loads.next().await {
                match result {
                    Ok(block) => {
                        self.metrics.block_loads.inc();
                        stats.blocks_loaded += 1;
                        self.tenants
                            .write()
                            .entry(tenant.clone())
                            .or_default()
                            .insert(id, Arc::new(block));
                        // Queryable from now on: counted now, not at the end
                        // of the sync (which sets the exact number).
                        self.metrics.blocks_loaded.inc();
                    }
                    Err(e) => {
                        self.metrics.block_load_failures.inc();
                        stats.load_failures += 1;
                        tracing::warn!(tenant, block = %id, error = %e, "cannot load block; retrying at the next sync");
                    }
                }
            }
            stats.blocks_dropped += self.drop_blocks(tenant, |id| !wanted_ids.contains(id));
        }
        // Tenants gone from the bucket.
        let gone: Vec<String> = self
            .tenants
            .read()
            .keys()
            .filter(|t| !tenants.contains(t))
            .cloned()
            .collect();
        for tenant in gone {
            stats.blocks_dropped += self.drop_blocks(&tenant, |_| true);
            self.tenants.write().remove(&tenant);
        }
        self.clean_sync_dir();
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Unloads the tenant's blocks `drop` selects; returns how many.
    fn drop_blocks(&self, tenant: &str, drop: impl Fn(&str) -> bool) -> usize {
        let dropped: Vec<Arc<Block>> = {
            let mut tenants = self.tenants.write();
            let Some(blocks) = tenants.get_mut(tenant) else {
                return 0;
            };
            let ids: Vec<String> = blocks.keys().filter(|id| drop(id)).cloned().collect();
            ids.iter().filter_map(|id| blocks.remove(id)).collect()
        };
        for block in &dropped {
            block.forget_caches();
            self.metrics.block_drops.inc();
            tracing::info!(tenant, block = %block.meta().ulid, "unloaded block");
        }
        dropped.len()
    }

    /// Removes the local directories of blocks that are not loaded.
    fn clean_sync_dir(&self) {
        let root = PathBuf::from(&self.config.sync_dir);
        let Ok(tenant_dirs) = std::fs::read_dir(&root) else {
            return;
        };
        let tenants = self.tenants.read();
        for tenant_dir in tenant_dirs.flatten() {
            let tenant = tenant_dir.file_name().to_string_lossy().into_owned();
            let Ok(blocks) = std::fs::read_dir(tenant_dir.path()) else {
                continue;
            };
            for block in blocks.flatten() {
                let id = block.file_name().to_string_lossy().into_owned();
                let loaded = tenants.get(&tenant).is_some_and(|b| b.contains_key(&id));
                if !loaded {
                    let _ = std::fs::remove_dir_all(block.path());
                }
            }
        }
    }

    /// The tenant's blocks as the bucket index (or a listing) shows them.
    async fn discover(&self, tenant: &str) -> Result<Vec<Candidate>, StoreError> {
        self.count("get");
        if let Some(index) = self.bucket.read_bucket_index(tenant).await? {
            return Ok(candidates_from_index(&index));
        }
        self.count("list");
        let scan = self.bucket.scan_tenant(tenant).await?;
        let mut out = Vec::new();
        for (id, objects) in &scan.blocks {
            if !objects.has_meta || id.parse::<Ulid>().is_err() {
                continue;
            }
            let prefix = format!("{tenant}/{id}/");
            let mut index_size = None;
            let mut segments = Vec::new();
            for (path, size) in &objects.objects {
                let rel = path.as_ref().strip_prefix(&prefix).unwrap_or_default();
                if rel == "index" {
                    index_size = Some(*size);
                } else if let Some(seg) = rel.strip_prefix("chunks/") {
                    if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                        segments.push((seg.to_string(), *size));
                    }
                }
            }
            segments.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
            let marked = objects.has_deletion_mark || scan.global_marks.binary_search(id).is_ok();
            let deletion_time = if marked {
                Some(self.deletion_time(tenant, id).await)
            } else {
                None
            };
            out.push(Candidate {
                id: id.clone(),
                index_size,
                segments: Some(segments),
                deletion_time,
            });
        }
        Ok(out)
    }

    /// When the block was marked for deletion; a mark that cannot be read
    /// counts as made now (the block is served for the delay still).
    async fn deletion_time(&self, tenant: &str, block: &str) -> i64 {
        let key = (tenant.to_string(), block.to_string());
        if let Some(t) = self.mark_times.lock().get(&key) {
            return *t;
        }
        self.count("get");
        let time = match self.bucket.read_deletion_mark(tenant, block).await {
            Ok(Some(mark)) => mark.deletion_time,
            Ok(None) | Err(_) => unix_now(),
        };
        self.mark_times.lock().insert(key, time);
        time
    }

    /// Loads one block: its files' description and index-header from the
    /// sync dir when valid, else from the bucket.
    async fn load(&self, tenant: &str, c: Candidate) -> Result<Block, StoreError> {
        let local_dir = self.local_dir(tenant, &c.id);
        let cached = read_block_files(&local_dir).filter(|f| {
            f.meta.ulid.to_string() == c.id
                && c.index_size.is_none_or(|s| s == f.index_size)
                && c.segments.as_ref().is_none_or(|s| *s == f.segments)
        });
        let files = match cached {
            Some(files) => files,
            None => self.describe(tenant, &c).await?,
        };
        let store = self.store();
        let tenant = tenant.to_string();
        let caches = self.caches.clone();
        let metrics = self.metrics.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            Block::open(store, &tenant, files, local_dir, caches, metrics, handle)
        })
        .await
        .map_err(StoreError::Task)?
    }

    /// Reads what a block holds from the bucket: `meta.json`, and the sizes
    /// of the index and segments when the listing did not give them.
    async fn describe(&self, tenant: &str, c: &Candidate) -> Result<BlockFiles, StoreError> {
        let store = self.store();
        let meta_path = object(tenant, &c.id, META_FILENAME);
        self.count("get");
        let raw = store.get(&meta_path).await?.bytes().await?;
        self.metrics
            .request_bytes
            .with_label_values(&["get"])
            .inc_by(raw.len() as u64);
        let meta: BlockMeta =
            serde_json::from_slice(&raw).map_err(|e| StoreError::InvalidBlock {
                block: c.id.clone(),
                reason: format!("meta.json: {e}"),
            })?;
        if meta.ulid.to_string() != c.id {
            return Err(StoreError::InvalidBlock {
                block: c.id.clone(),
                reason: format!("meta.json names block {}", meta.ulid),
            });
        }
        let index_size = match c.index_size {
            Some(s) => s,
            None => {
                self.count("head");
                store.head(&object(tenant, &c.id, "index")).await?.size
            }
        };
        let segments = match &c.segments {
            Some(s) => s.clone(),
            None => {
                self.count("list");
                let prefix = ObjectPath::from(format!("{tenant}/{}/chunks", c.id));
                let listing = store.list_with_delimiter(Some(&prefix)).await?;
                let mut segs: Vec<(String, u64)> = listing
                    .objects
                    .iter()
                    .filter_map(|o| {
                        let name = o.location.filename()?;
                        (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
                            .then(|| (name.to_string(), o.size))
                    })
                    .collect();
                segs.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
                segs
            }
        };
        if segments.is_empty() {
            return Err(StoreError::InvalidBlock {
                block: c.id.clone(),
                reason: "no chunk segment files".to_string(),
            });
        }
        Ok(BlockFiles {
            meta,
            index_size,
            segments,
            segment_headers: Vec::new(),
        })
    }

    /// The tenant's loaded blocks overlapping `[mint, maxt]`, oldest first;
    /// with `only` not empty, just those of them it names.
    fn blocks_for(&self, tenant: &str, mint: i64, maxt: i64, only: &[String]) -> Vec<Arc<Block>> {
        let mut blocks: Vec<Arc<Block>> = self
            .tenants
            .read()
            .get(tenant)
            .map(|b| {
                b.iter()
                    .filter(|(id, _)| only.is_empty() || only.contains(id))
                    .map(|(_, block)| block)
                    .filter(|b| b.overlaps(mint, maxt))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        blocks.sort_by_key(|b| (b.meta().min_time, b.meta().ulid.to_string()));
        blocks
    }

    /// Streams the tenant's series matching `matchers` with their chunks
    /// overlapping `[mint, maxt]`, block by block, in messages of at most
    /// [`crate::block::SERIES_BATCH`] series; the last message names the
    /// blocks read. With `only` not empty, only the blocks it names. Reading
    /// stops when the receiver is dropped.
    pub fn series(
        &self,
        tenant: &str,
        matchers: Vec<Matcher>,
        (mint, maxt): (i64, i64),
        only: &[String],
        skip_chunks: bool,
    ) -> mpsc::Receiver<Result<SeriesResponse, StoreError>> {
        let blocks = self.blocks_for(tenant, mint, maxt, only);
        let metrics = self.metrics.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::task::spawn_blocking(move || {
            for block in &blocks {
                let sent = block.series(&matchers, mint, maxt, skip_chunks, &metrics, |series| {
                    tx.blocking_send(Ok(SeriesResponse {
                        series,
                        queried_blocks: Vec::new(),
                    }))
                    .is_ok()
                });
                if let Err(e) = sent {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                if tx.is_closed() {
                    return;
                }
            }
            let _ = tx.blocking_send(Ok(SeriesResponse {
                series: Vec::new(),
                queried_blocks: block_ids(&blocks),
            }));
        });
        rx
    }

    /// Label names of the tenant's series matching `matchers` in `[mint,
    /// maxt]`, sorted (with `only` not empty, in the blocks it names).
    pub async fn label_names(
        &self,
        tenant: &str,
        matchers: Vec<Matcher>,
        (mint, maxt): (i64, i64),
        only: &[String],
    ) -> Result<BlocksAnswer<Vec<String>>, StoreError> {
        let blocks = self.blocks_for(tenant, mint, maxt, only);
        tokio::task::spawn_blocking(move || {
            let mut names = BTreeSet::new();
            for block in &blocks {
                names.extend(block.label_names(&matchers, mint, maxt)?);
            }
            Ok(BlocksAnswer::new(names.into_iter().collect(), &blocks))
        })
        .await
        .map_err(StoreError::Task)?
    }

    /// Values of label `name` among the tenant's series matching `matchers`
    /// in `[mint, maxt]`, sorted, without the empty value (with `only` not
    /// empty, in the blocks it names).
    pub async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: Vec<Matcher>,
        (mint, maxt): (i64, i64),
        only: &[String],
    ) -> Result<BlocksAnswer<Vec<String>>, StoreError> {
        let blocks = self.blocks_for(tenant, mint, maxt, only);
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let mut values = BTreeSet::new();
            for block in &blocks {
                values.extend(block.label_values(&name, &matchers, mint, maxt)?);
            }
            values.remove("");
            Ok(BlocksAnswer::new(values.into_iter().collect(), &blocks))
        })
        .await
        .map_err(StoreError::Task)?
    }

    /// Syncs every `sync_interval`, and soon after the store-gateway ring
    /// changes its members (blocks change owners), until `shutdown`.
    pub fn spawn_sync_loop(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ring_changes = store.sharding.as_ref().map(|s| s.ring().subscribe());
            let mut members = store.ring_members();
            let mut interval = tokio::time::interval(store.config.sync_interval.0);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                enum Wake {
                    Tick,
                    Ring(bool),
                    Stop,
                }
                let wake = tokio::select! {
                    _ = interval.tick() => Wake::Tick,
                    changed = async {
                        match ring_changes.as_mut() {
                            Some(rx) => rx.changed().await.is_ok(),
                            None => futures::future::pending().await,
                        }
                    } => Wake::Ring(changed),
                    _ = shutdown.wait_for(|s| *s) => Wake::Stop,
                };
                match wake {
                    Wake::Stop => return,
                    Wake::Ring(false) => {
                        ring_changes = None;
                        continue;
                    }
                    Wake::Ring(true) => {
                        let now = store.ring_members();
                        if now == members {
                            continue;
                        }
                        members = now;
                        // Let the ring settle (several instances joining).
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Wake::Tick => {}
                }
                match store.sync().await {
                    Ok(stats) if stats.blocks_loaded + stats.blocks_dropped > 0 => {
                        tracing::info!(?stats, "store-gateway synced its blocks");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "store-gateway sync failed"),
                }
            }
        })
    }

    /// The ring's members, states and token counts: what decides ownership.
    fn ring_members(&self) -> Vec<(String, String, usize)> {
        let Some(sharding) = &self.sharding else {
            return Vec::new();
        };
        sharding
            .ring()
            .instances()
            .iter()
            .map(|i| (i.id.clone(), format!("{:?}", i.state), i.tokens.len()))
            .collect()
    }
}

fn candidates_from_index(index: &BucketIndex) -> Vec<Candidate> {
    let marks: HashMap<&str, i64> = index
        .block_deletion_marks
        .iter()
        .map(|m| (m.block_id.as_str(), m.deletion_time))
        .collect();
    index
        .blocks
        .iter()
        .filter(|b| b.block_id.parse::<Ulid>().is_ok())
        .map(|b| Candidate {
            id: b.block_id.clone(),
            index_size: None,
            segments: None,
            deletion_time: marks.get(b.block_id.as_str()).copied(),
        })
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
