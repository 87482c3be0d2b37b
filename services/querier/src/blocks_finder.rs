//! Which blocks of a tenant a query over `[mint, maxt]` must read, learnt from
//! the bucket as the store-gateways learn it (the compactor's bucket index
//! when there is one, else a listing and each block's `meta.json`), so that
//! the querier can check that every block was answered by some store-gateway
//! and ask another replica for those that were not (Mimir's queried-blocks
//! consistency check).
//!
//! A tenant's view is read at most once per `sync_interval` (the
//! store-gateways' own sync period). A block is *required* — a query fails
//! rather than silently missing it — once it was uploaded longer ago than
//! [`BlocksFinder::upload_grace`] (by then every owner has loaded it). A
//! block marked for deletion stays required while the store-gateways serve
//! it (`ignore_deletion_mark_delay`, less one sync interval of margin): the
//! block that replaced it is fresh, so not required yet, and one of the two
//! must hold the data. Everything read from the bucket is input: an
//! unreadable `meta.json` leaves its block out, as the store-gateway does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use strata_status::ServiceError;
use strata_storage::bucket_index::BucketIndex;
use strata_storage::{Bucket, META_FILENAME};
use strata_tsdb::block::{BlockMeta, Ulid};

/// A `meta.json` larger than this is not a block's meta.
const MAX_META_BYTES: usize = 1 << 20;

/// One block as the bucket describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownBlock {
    id: String,
    min_time: i64,
    /// Exclusive, as in `meta.json`.
    max_time: i64,
    /// Unix seconds.
    uploaded_at: i64,
    /// When it was marked for deletion (Unix seconds), if it was.
    deletion_time: Option<i64>,
}

/// A block a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedBlock {
    pub id: String,
    /// Whether the query fails when no store-gateway answers for it.
    pub required: bool,
}

#[derive(Debug)]
struct TenantView {
    read_at: Instant,
    blocks: Arc<Vec<KnownBlock>>,
}

/// See the module's documentation.
#[derive(Debug)]
pub struct BlocksFinder {
    bucket: Bucket,
    refresh: Duration,
    upload_grace: Duration,
    ignore_deletion_mark_delay: Duration,
    /// Each tenant's view behind its own lock: concurrent queries of a
    /// tenant wait for one read instead of each listing the bucket, and a
    /// slow read of one tenant holds up no other.
    views: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<TenantView>>>>>,
    /// `(min_time, max_time)` by block ID: a `meta.json` never changes.
    metas: parking_lot::Mutex<HashMap<String, Option<(i64, i64)>>>,
    marks: parking_lot::Mutex<HashMap<String, i64>>,
}

impl BlocksFinder {
    /// The finder over `bucket`, refreshing each tenant's view every
    /// `sync_interval` and treating blocks marked longer than
    /// `ignore_deletion_mark_delay` ago as gone (as store-gateways do).
    pub fn new(
        bucket: Bucket,
        sync_interval: Duration,
        ignore_deletion_mark_delay: Duration,
    ) -> Self {
        Self {
            bucket,
            refresh: sync_interval,
            upload_grace: Self::upload_grace(sync_interval),
            ignore_deletion_mark_delay,
            views: parking_lot::Mutex::new(HashMap::new()),
            metas: parking_lot::Mutex::new(HashMap::new()),
            marks: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// With another grace period for fresh uploads (tests: none).
    #[cfg(test)]
    pub(crate) fn with_upload_grace(mut self, grace: Duration) -> Self {
        self.upload_grace = grace;
        self
    }

    /// How long after its upload a block is required: three store-gateway
    /// syncs, time for every owner to see and load it.
    pub fn upload_grace(sync_interval: Duration) -> Duration {
        sync_interval * 3
    }

    /// The tenant's blocks overlapping `[mint, maxt]` that store-gateways
    /// still serve, oldest first.
    pub async fn blocks(
        &self,
        tenant: &str,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<WantedBlock>, ServiceError> {
        let known = self.view(tenant).await?;
        let now = unix_now();
        let grace = self.upload_grace.as_secs() as i64;
        let ignore_marked_after = self.ignore_deletion_mark_delay.as_secs() as i64;
        let require_marked_for = ignore_marked_after - self.refresh.as_secs() as i64;
        Ok(known
            .iter()
            .filter(|b| mint <= maxt && b.min_time <= maxt && b.max_time > mint)
            .filter(|b| {
                b.deletion_time
                    .is_none_or(|t| now - t < ignore_marked_after)
            })
            .map(|b| WantedBlock {
                id: b.id.clone(),
                required: now - b.uploaded_at >= grace
                    && b.deletion_time.is_none_or(|t| now - t < require_marked_for),
            })
            .collect())
    }

    /// The tenant's blocks, re-read when older than the refresh interval; a
    /// failed re-read keeps the last view (logged) until the next interval,
    /// and fails the query only when there is none.
    async fn view(&self, tenant: &str) -> Result<Arc<Vec<KnownBlock>>, ServiceError> {
        let slot = self
            .views
            .lock()
            .entry(tenant.to_string())
            .or_default()
            .clone();
        let mut view = slot.lock().await;
        if let Some(v) = view.as_ref() {
            if v.read_at.elapsed() < self.refresh {
                return Ok(v.blocks.clone());
            }
        }
        match self.read(tenant).await {
            Ok(blocks) => {
                let blocks = Arc::new(blocks);
                *view = Some(TenantView {
                    read_at: Instant::now(),
                    blocks: blocks.clone(),
                });
                Ok(blocks)
            }
            Err(e) => match view.as_mut() {
                Some(v) => {
                    tracing::warn!(%tenant, error = %e, "querier: cannot re-read the tenant's blocks; using the last view");
                    v.read_at = Instant::now();
                    Ok(v.blocks.clone())
                }
                None => Err(ServiceError::unavailable(format!(
                    "cannot learn the tenant's blocks from object storage: {e}"
                ))),
            },
        }
    }

    async fn read(&self, tenant: &str) -> Result<Vec<KnownBlock>, String> {
        let index = self
            .bucket
            .read_bucket_index(tenant)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(index) = index {
            return Ok(from_index(&index));
        }
        let scan = self
            .bucket
            .scan_tenant(tenant)
            .await
            .map_err(|e| e.to_string())?;
        let mut blocks = Vec::new();
        for (id, objects) in &scan.blocks {
            if !objects.has_meta {
                continue;
            }
            let Ok(ulid) = id.parse::<Ulid>() else {
                continue;
            };
            let Some((min_time, max_time)) = self.time_range(tenant, id, ulid).await? else {
                continue;
            };
            let marked = objects.has_deletion_mark || scan.global_marks.binary_search(id).is_ok();
            let deletion_time = if marked {
                Some(self.deletion_time(tenant, id).await)
            } else {
                None
            };
            blocks.push(KnownBlock {
                id: id.clone(),
                min_time,
                max_time,
                uploaded_at: objects.meta_modified,
                deletion_time,
            });
        }
        Ok(blocks)
    }

    /// The block's time range from its `meta.json`; `None` when that is not
    /// a readable meta of this block.
    async fn time_range(
        &self,
        tenant: &str,
        id: &str,
        ulid: Ulid,
    ) -> Result<Option<(i64, i64)>, String> {
        if let Some(range) = self.metas.lock().get(id) {
            return Ok(*range);
        }
        let path = Bucket::block_object(tenant, id, META_FILENAME);
        let bytes = match self.bucket.store().get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| e.to_string())?,
            // Deleted since the listing.
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let range = match serde_json::from_slice::<BlockMeta>(&bytes) {
            Ok(meta)
                if bytes.len() <= MAX_META_BYTES
                    && meta.ulid == ulid
                    && meta.min_time < meta.max_time =>
            {
                Some((meta.min_time, meta.max_time))
            }
            _ => {
                tracing::warn!(%tenant, block = %id, "querier: meta.json does not describe its block; the block is not read");
                None
            }
        };
        self.metas.lock().insert(id.to_string(), range);
        Ok(range)
    }

    /// When the block was marked; a mark that cannot be read counts as made
    /// now (the store-gateways serve the block for the delay still).
    async fn deletion_time(&self, tenant: &str, id: &str) -> i64 {
        if let Some(t) = self.marks.lock().get(id) {
            return *t;
        }
        let time = match self.bucket.read_deletion_mark(tenant, id).await {
            Ok(Some(mark)) => mark.deletion_time,
            Ok(None) | Err(_) => unix_now(),
        };
        self.marks.lock().insert(id.to_string(), time);
        time
    }
}

fn from_index(index: &BucketIndex) -> Vec<KnownBlock> {
    let marks: HashMap<&str, i64> = index
        .block_deletion_marks
        .iter()
        .map(|m| (m.block_id.as_str(), m.deletion_time))
        .collect();
    index
        .blocks
        .iter()
        .map(|b| KnownBlock {
            id: b.block_id.clone(),
            min_time: b.min_time,
            max_time: b.max_time,
            uploaded_at: b.uploaded_at,
            deletion_time: marks.get(b.block_id.as_str()).copied(),
        })
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use object_store::PutPayload;
    use strata_storage::bucket_index::{IndexBlock, IndexDeletionMark};

    use super::*;

    const BLOCK_A: &str = "01HQ0000000000000000000000";
    const BLOCK_B: &str = "01HQ0000000000000000000001";
    const BLOCK_C: &str = "01HQ0000000000000000000002";

    fn bucket() -> (tempfile::TempDir, Bucket) {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        (dir, Bucket::new(Arc::new(store)))
    }

    async fn put(bucket: &Bucket, path: &str, body: &str) {
        let path = object_store::path::Path::from(path);
        let payload = PutPayload::from(body.as_bytes().to_vec());
        bucket.store().put(&path, payload).await.unwrap();
    }

    async fn put_meta(bucket: &Bucket, id: &str, min: i64, max: i64) {
        let meta = format!(
            r#"{{"ulid":"{id}","minTime":{min},"maxTime":{max},"version":1,"stats":{{}},"compaction":{{"level":1,"sources":["{id}"]}}}}"#
        );
        put(bucket, &format!("t/{id}/meta.json"), &meta).await;
        put(bucket, &format!("t/{id}/index"), "x").await;
    }

    fn ids(blocks: &[WantedBlock]) -> Vec<(&str, bool)> {
        blocks.iter().map(|b| (b.id.as_str(), b.required)).collect()
    }

    #[tokio::test]
    async fn a_listing_gives_the_overlapping_blocks_recent_ones_not_required() {
        let (_dir, bucket) = bucket();
        put_meta(&bucket, BLOCK_A, 0, 1000).await;
        put_meta(&bucket, BLOCK_B, 1000, 2000).await;
        put(&bucket, &format!("t/{BLOCK_C}/meta.json"), "{not json").await;
        put(&bucket, "t/not-a-block/meta.json", "{}").await;
        let finder = BlocksFinder::new(
            bucket.clone(),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        let found = finder.blocks("t", 500, 999).await.unwrap();
        // Just uploaded: read, but a query does not fail without them.
        assert_eq!(ids(&found), [(BLOCK_A, false)]);
        let found = finder.blocks("t", 999, 1000).await.unwrap();
        assert_eq!(ids(&found), [(BLOCK_A, false), (BLOCK_B, false)]);
        assert!(finder.blocks("other", 0, 5000).await.unwrap().is_empty());
        // No grace: every block is required at once.
        let strict = BlocksFinder::new(bucket, Duration::ZERO, Duration::from_secs(3600))
            .with_upload_grace(Duration::ZERO);
        let found = strict.blocks("t", 0, 5000).await.unwrap();
        assert_eq!(ids(&found), [(BLOCK_A, true), (BLOCK_B, true)]);
    }

    #[tokio::test]
    async fn the_bucket_index_wins_and_marked_blocks_are_required_then_dropped() {
        let (_dir, bucket) = bucket();
        put_meta(&bucket, BLOCK_C, 0, 1000).await;
        let now = unix_now();
        let block = |id: &str, min, max| IndexBlock {
            block_id: id.to_string(),
            min_time: min,
            max_time: max,
            uploaded_at: now - 3600,
            ..serde_json::from_str(r#"{"block_id":"","min_time":0,"max_time":0}"#).unwrap()
        };
        let index = BucketIndex::new(
            vec![block(BLOCK_A, 0, 1000), block(BLOCK_B, 0, 1000)],
            vec![IndexDeletionMark {
                block_id: BLOCK_B.to_string(),
                deletion_time: now - 60,
            }],
            now,
        );
        bucket.write_bucket_index("t", &index).await.unwrap();
        let finder = BlocksFinder::new(
            bucket.clone(),
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let found = finder.blocks("t", 0, 10).await.unwrap();
        // Marked a minute ago, served for ten: still required (the block
        // replacing it may be too fresh to be).
        assert_eq!(ids(&found), [(BLOCK_A, true), (BLOCK_B, true)]);
        // Within a sync interval of being dropped: read, not required.
        let finder = BlocksFinder::new(
            bucket.clone(),
            Duration::from_secs(60),
            Duration::from_secs(100),
        );
        let found = finder.blocks("t", 0, 10).await.unwrap();
        assert_eq!(ids(&found), [(BLOCK_A, true), (BLOCK_B, false)]);
        // Marked longer ago than the store-gateways keep serving it: gone.
        let finder = BlocksFinder::new(bucket, Duration::from_secs(60), Duration::from_secs(30));
        let found = finder.blocks("t", 0, 10).await.unwrap();
        assert_eq!(ids(&found), [(BLOCK_A, true)]);
    }

    #[tokio::test]
    async fn a_view_is_reused_within_the_refresh_interval() {
        let (_dir, bucket) = bucket();
        let finder = BlocksFinder::new(bucket.clone(), Duration::from_secs(3600), Duration::ZERO);
        assert!(finder.blocks("t", 0, 5000).await.unwrap().is_empty());
        put_meta(&bucket, BLOCK_A, 0, 1000).await;
        assert!(finder.blocks("t", 0, 5000).await.unwrap().is_empty());
        let fresh = BlocksFinder::new(bucket, Duration::from_secs(3600), Duration::ZERO);
        assert_eq!(fresh.blocks("t", 0, 5000).await.unwrap().len(), 1);
    }
}
