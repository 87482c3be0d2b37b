//! The per-tenant bucket index and block deletion marks, in Mimir's layout, so
//! readers (store-gateways, queriers) learn a tenant's blocks from one small
//! object instead of listing the bucket:
//!
//! - `<tenant>/bucket-index.json.gz`: gzip'd JSON [`BucketIndex`] — `version`,
//!   `blocks` (every complete block, those marked for deletion included, with
//!   `block_id`, `min_time`, `max_time`, `uploaded_at`, …),
//!   `block_deletion_marks` and `updated_at` (Unix seconds). The compactor
//!   rewrites it after each pass; readers must tolerate it being a pass behind.
//! - `<tenant>/<ULID>/deletion-mark.json` ([`DeletionMark`], Thanos's format)
//!   and its copy `<tenant>/markers/<ULID>-deletion-mark.json`, which lets the
//!   marks be found by listing one prefix. A marked block stays readable until
//!   the compactor deletes it after its deletion delay, so a reader that has
//!   not seen the mark yet never reads a half-deleted block.
//!
//! [`Bucket::scan_tenant`] is the listing the compactor (and a reader without an
//! index) builds its view from; [`Bucket::delete_block`] removes a block in the
//! order that keeps every intermediate state valid. Everything read from the
//! bucket is input: malformed objects end in a [`BucketIndexError`].

use std::collections::BTreeMap;
use std::io::{Read, Write};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use strata_status::{Coded, ErrorCode};

use crate::{Bucket, StorageError, META_FILENAME};

/// The index's object name under `<tenant>/`.
pub const BUCKET_INDEX_FILENAME: &str = "bucket-index.json.gz";
/// The only index format version (Mimir's `IndexVersion1`).
pub const BUCKET_INDEX_VERSION: u32 = 1;
/// A block's deletion mark, inside the block's directory.
pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";
/// The directory under `<tenant>/` holding a copy of every mark.
pub const MARKERS_DIR: &str = "markers";
/// The only deletion-mark version (Thanos's `DeletionMarkVersion1`).
pub const DELETION_MARK_VERSION: u32 = 1;
/// Mimir's name for segment files `000001`, `000002`, … (1-based, 6 digits).
pub const SEGMENTS_FORMAT_1B6D: &str = "1b6d";

/// A gzip'd index larger than this once decompressed is refused: a real one
/// holds ~200 bytes per block.
const MAX_INDEX_BYTES: u64 = 512 << 20;
/// A deletion mark is a few dozen bytes.
const MAX_MARK_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum BucketIndexError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
}

/// A bucket index that does not parse is ours to fix (Internal); reading or
/// writing it fails as the object store does.
impl Coded for BucketIndexError {
    fn code(&self) -> ErrorCode {
        match self {
            BucketIndexError::Storage(e) => e.code(),
            BucketIndexError::Corrupt { .. } => ErrorCode::Internal,
        }
    }
}

impl From<object_store::Error> for BucketIndexError {
    fn from(e: object_store::Error) -> Self {
        BucketIndexError::Storage(StorageError::ObjectStore(e))
    }
}

/// `<tenant>/bucket-index.json.gz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketIndex {
    pub version: u32,
    /// Complete blocks (with `meta.json`), marked ones included, sorted by ID.
    #[serde(default)]
    pub blocks: Vec<IndexBlock>,
    #[serde(default)]
    pub block_deletion_marks: Vec<IndexDeletionMark>,
    /// When the index was written, Unix seconds.
    #[serde(default)]
    pub updated_at: i64,
}

/// A block as the index lists it (Mimir's `bucketindex.Block`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlock {
    /// The block's ULID.
    pub block_id: String,
    /// The block's time range `[min_time, max_time)`, milliseconds.
    pub min_time: i64,
    pub max_time: i64,
    /// [`SEGMENTS_FORMAT_1B6D`] when the segment files are `000001…` in order,
    /// else empty (a reader then lists `chunks/`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub segments_format: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub segments_num: u32,
    /// When the block's upload completed (its `meta.json` was written), Unix seconds.
    #[serde(default)]
    pub uploaded_at: i64,
    /// What wrote the block (`ingester`, `compactor`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compaction_level: u32,
    /// The block's external labels (the tenant's `__org_id__`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// A deletion mark as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDeletionMark {
    pub block_id: String,
    /// When the block was marked, Unix seconds.
    pub deletion_time: i64,
}

/// `<tenant>/<ULID>/deletion-mark.json` (Thanos's `metadata.DeletionMark`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The block's ULID.
    pub id: String,
    /// When the block was marked, Unix seconds.
    pub deletion_time: i64,
    pub version: u32,
    /// Why, for people reading the bucket.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl BucketIndex {
    /// An index of `blocks` and `marks` written at `updated_at`; both lists are
    /// sorted by block ID so equal contents encode equally.
    pub fn new(
        mut blocks: Vec<IndexBlock>,
        mut marks: Vec<IndexDeletionMark>,
        updated_at: i64,
    ) -> Self {
        blocks.sort_by(|a, b| a.block_id.cmp(&b.block_id));
        marks.sort_by(|a, b| a.block_id.cmp(&b.block_id));
        Self {
            version: BUCKET_INDEX_VERSION,
            blocks,
            block_deletion_marks: marks,
            updated_at,
        }
    }

    /// Whether `block_id` is marked for deletion.
    pub fn is_marked(&self, block_id: &str) -> bool {
        self.block_deletion_marks
            .iter()
            .any(|m| m.block_id == block_id)
    }

    /// The blocks not marked for deletion: what a reader should query.
    pub fn live_blocks(&self) -> impl Iterator<Item = &IndexBlock> {
        self.blocks.iter().filter(|b| !self.is_marked(&b.block_id))
    }

    /// The gzip'd JSON form.
    pub fn encode(&self) -> Result<Vec<u8>, BucketIndexError> {
        let json = serde_json::to_vec(self).map_err(|e| BucketIndexError::Corrupt {
            path: BUCKET_INDEX_FILENAME.to_string(),
            reason: format!("cannot encode: {e}"),
        })?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json)
            .and_then(|()| gz.finish())
            .map_err(|e| BucketIndexError::Corrupt {
                path: BUCKET_INDEX_FILENAME.to_string(),
                reason: format!("cannot compress: {e}"),
            })
    }

    /// Parses the gzip'd JSON form; `path` names it in errors.
    pub fn decode(path: &str, bytes: &[u8]) -> Result<Self, BucketIndexError> {
        let corrupt = |reason: String| BucketIndexError::Corrupt {
            path: path.to_string(),
            reason,
        };
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_INDEX_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| corrupt(format!("not gzip: {e}")))?;
        if json.len() as u64 > MAX_INDEX_BYTES {
            return Err(corrupt(format!(
                "larger than {MAX_INDEX_BYTES} bytes decompressed"
            )));
        }
        let index: BucketIndex =
            serde_json::from_slice(&json).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
        if index.version != BUCKET_INDEX_VERSION {
            return Err(corrupt(format!(
                "version {} (only {BUCKET_INDEX_VERSION} is known)",
                index.version
            )));
        }
        Ok(index)
    }
}

/// `<tenant>/bucket-index.json.gz`.
pub fn bucket_index_path(tenant: &str) -> ObjectPath {
    ObjectPath::from(format!("{tenant}/{BUCKET_INDEX_FILENAME}"))
}

/// `<tenant>/<block>/deletion-mark.json`.
pub fn deletion_mark_path(tenant: &str, block: &str) -> ObjectPath {
    ObjectPath::from(format!("{tenant}/{block}/{DELETION_MARK_FILENAME}"))
}

/// `<tenant>/markers/<block>-deletion-mark.json`.
pub fn global_deletion_mark_path(tenant: &str, block: &str) -> ObjectPath {
    ObjectPath::from(format!(
        "{tenant}/{MARKERS_DIR}/{block}-{DELETION_MARK_FILENAME}"
    ))
}

/// The objects of one block directory `<tenant>/<block>/`, from a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockObjects {
    /// Whether `meta.json` exists: the block is complete (else partial).
    pub has_meta: bool,
    pub has_deletion_mark: bool,
    /// When `meta.json` was written, Unix seconds (0 without one).
    pub meta_modified: i64,
    /// The newest object's modification time, Unix seconds: how long a
    /// partial block has been left alone.
    pub newest_modified: i64,
    /// Every object of the block, with its size.
    pub objects: Vec<(ObjectPath, u64)>,
}

/// What one listing of `<tenant>/` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantScan {
    /// Block directories by name (a ULID for anything Strata or Prometheus
    /// wrote; the caller decides what to do with other names).
    pub blocks: BTreeMap<String, BlockObjects>,
    /// Blocks with a mark under `markers/`.
    pub global_marks: Vec<String>,
}

impl Bucket {
    /// Tenants: the top-level "directories" of the bucket.
    pub async fn list_tenants(&self) -> Result<Vec<String>, BucketIndexError> {
        let listing = self.store().list_with_delimiter(None).await?;
        let mut tenants: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.parts().next().map(|s| s.as_ref().to_string()))
            .collect();
        tenants.sort();
        tenants.dedup();
        Ok(tenants)
    }

    /// Lists every object under `<tenant>/` once and groups them by block.
    pub async fn scan_tenant(&self, tenant: &str) -> Result<TenantScan, BucketIndexError> {
        let prefix = ObjectPath::from(tenant);
        let objects: Vec<_> = self.store().list(Some(&prefix)).try_collect().await?;
        let mut scan = TenantScan::default();
        let suffix = format!("-{DELETION_MARK_FILENAME}");
        for o in objects {
            let parts: Vec<String> = o.location.parts().map(|p| p.as_ref().to_string()).collect();
            let [_, dir, rest @ ..] = parts.as_slice() else {
                continue;
            };
            if dir == MARKERS_DIR {
                if let [name] = rest {
                    if let Some(block) = name.strip_suffix(&suffix) {
                        scan.global_marks.push(block.to_string());
                    }
                }
                continue;
            }
            if rest.is_empty() {
                // A file directly under <tenant>/, e.g. the bucket index.
                continue;
            }
            let modified = o.last_modified.timestamp();
            let block = scan.blocks.entry(dir.clone()).or_default();
            if let [name] = rest {
                if name == META_FILENAME {
                    block.has_meta = true;
                    block.meta_modified = modified;
                } else if name == DELETION_MARK_FILENAME {
                    block.has_deletion_mark = true;
                }
            }
            block.newest_modified = block.newest_modified.max(modified);
            block.objects.push((o.location, o.size));
        }
        scan.global_marks.sort();
        Ok(scan)
    }

    /// The tenant's bucket index; `None` if there is none yet.
    pub async fn read_bucket_index(
        &self,
        tenant: &str,
    ) -> Result<Option<BucketIndex>, BucketIndexError> {
        let path = bucket_index_path(tenant);
        let bytes = match self.store().get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        BucketIndex::decode(path.as_ref(), &bytes).map(Some)
    }

    /// Writes the tenant's bucket index (one PUT: readers see the old or the
    /// new one, never a mix).
    pub async fn write_bucket_index(
        &self,
        tenant: &str,
        index: &BucketIndex,
    ) -> Result<(), BucketIndexError> {
        let bytes = index.encode()?;
        self.store()
            .put(&bucket_index_path(tenant), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The block's deletion mark; `None` if it has none.
    pub async fn read_deletion_mark(
        &self,
        tenant: &str,
        block: &str,
    ) -> Result<Option<DeletionMark>, BucketIndexError> {
        let path = deletion_mark_path(tenant, block);
        let bytes = match self.store().get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let corrupt = |reason: String| BucketIndexError::Corrupt {
            path: path.to_string(),
            reason,
        };
        if bytes.len() > MAX_MARK_BYTES {
            return Err(corrupt(format!("{} bytes is too large", bytes.len())));
        }
        let mark: DeletionMark =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
        Ok(Some(mark))
    }

    /// Marks a block for deletion: the block's own mark first, then the copy
    /// under `markers/` (a crash in between leaves a mark the next scan sees,
    /// and re-marking rewrites both).
    pub async fn write_deletion_mark(
        &self,
        tenant: &str,
        mark: &DeletionMark,
    ) -> Result<(), BucketIndexError> {
        let json = serde_json::to_vec_pretty(mark).map_err(|e| BucketIndexError::Corrupt {
            path: deletion_mark_path(tenant, &mark.id).to_string(),
            reason: format!("cannot encode: {e}"),
        })?;
        let payload = PutPayload::from(json);
        self.store()
            .put(&deletion_mark_path(tenant, &mark.id), payload.clone())
            .await?;
        self.store()
            .put(&global_deletion_mark_path(tenant, &mark.id), payload)
            .await?;
        Ok(())
    }

    /// Deletes a block, `meta.json` first so that it turns partial (invisible)
    /// before anything it needs is gone, then its other files, its deletion
    /// mark, and last the copy of the mark under `markers/`. Interrupted, it
    /// leaves a partial block that a later call (or partial-block cleanup)
    /// finishes. `objects` are the block's objects from [`Bucket::scan_tenant`].
    pub async fn delete_block(
        &self,
        tenant: &str,
        block: &str,
        objects: &[(ObjectPath, u64)],
    ) -> Result<(), BucketIndexError> {
        let meta = crate::Bucket::block_object(tenant, block, META_FILENAME);
        let mark = deletion_mark_path(tenant, block);
        delete_if_exists(self, &meta).await?;
        for (path, _) in objects {
            if *path != meta && *path != mark {
                delete_if_exists(self, path).await?;
            }
        }
        delete_if_exists(self, &mark).await?;
        delete_if_exists(self, &global_deletion_mark_path(tenant, block)).await?;
        Ok(())
    }
}

async fn delete_if_exists(bucket: &Bucket, path: &ObjectPath) -> Result<(), BucketIndexError> {
    match bucket.store().delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_corrupt_index_is_internal_an_unreachable_one_unavailable() {
        let corrupt = BucketIndexError::Corrupt {
            path: "t/bucket-index.json.gz".into(),
            reason: "not gzip".into(),
        };
        assert_eq!(corrupt.code(), ErrorCode::Internal);
        let down = BucketIndexError::from(object_store::Error::Generic {
            store: "S3",
            source: "timed out".into(),
        });
        assert_eq!(down.code(), ErrorCode::Unavailable);
    }

    fn block(id: &str, min: i64) -> IndexBlock {
        IndexBlock {
            block_id: id.to_string(),
            min_time: min,
            max_time: min + 7_200_000,
            segments_format: SEGMENTS_FORMAT_1B6D.to_string(),
            segments_num: 1,
            uploaded_at: 1_700_000_000,
            source: "compactor".to_string(),
            compaction_level: 2,
            labels: BTreeMap::from([("__org_id__".to_string(), "t".to_string())]),
        }
    }

    #[test]
    fn index_round_trips_with_mimirs_field_names() {
        let index = BucketIndex::new(
            vec![block("01B", 10), block("01A", 0)],
            vec![IndexDeletionMark {
                block_id: "01A".to_string(),
                deletion_time: 1_700_000_100,
            }],
            1_700_000_200,
        );
        assert_eq!(index.blocks[0].block_id, "01A", "sorted by ID");
        assert!(index.is_marked("01A") && !index.is_marked("01B"));
        assert_eq!(
            index
                .live_blocks()
                .map(|b| b.block_id.as_str())
                .collect::<Vec<_>>(),
            vec!["01B"]
        );
        let bytes = index.encode().unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
        assert_eq!(BucketIndex::decode("x", &bytes).unwrap(), index);
        let mut json = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut json)
            .unwrap();
        for field in [
            "\"version\":1",
            "\"block_id\":\"01A\"",
            "\"min_time\":0",
            "\"max_time\":7200000",
            "\"segments_format\":\"1b6d\"",
            "\"uploaded_at\":1700000000",
            "\"block_deletion_marks\":[{\"block_id\":\"01A\",\"deletion_time\":1700000100}]",
            "\"updated_at\":1700000200",
        ] {
            assert!(json.contains(field), "{field} missing from {json}");
        }
    }

    #[test]
    fn hostile_indexes_are_errors() {
        assert!(BucketIndex::decode("x", b"not gzip").is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"{"version":2,"blocks":[]}"#).unwrap();
        let err = BucketIndex::decode("x", &gz.finish().unwrap()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"{"version":1,"blocks":[{"block_id":5}]}"#)
            .unwrap();
        assert!(BucketIndex::decode("x", &gz.finish().unwrap()).is_err());
        // A mark that is valid JSON of Thanos's shape.
        let mark: DeletionMark =
            serde_json::from_str(r#"{"id":"01A","deletion_time":5,"version":1}"#).unwrap();
        assert_eq!(mark.deletion_time, 5);
    }

    #[tokio::test]
    async fn scan_mark_index_and_delete_in_a_bucket() {
        let bucket = Bucket::new(Arc::new(object_store::memory::InMemory::new()));
        let put = |path: &str| {
            let bucket = bucket.clone();
            let path = ObjectPath::from(path);
            async move {
                bucket
                    .store()
                    .put(&path, PutPayload::from_static(b"x"))
                    .await
                    .unwrap();
            }
        };
        for f in ["index", "chunks/000001", "meta.json"] {
            put(&format!("t/01A/{f}")).await;
        }
        put("t/01B/chunks/000001").await; // partial: no meta.json
        put("u/01C/meta.json").await;
        assert_eq!(bucket.list_tenants().await.unwrap(), vec!["t", "u"]);
        assert_eq!(bucket.read_bucket_index("t").await.unwrap(), None);

        let mark = DeletionMark {
            id: "01A".to_string(),
            deletion_time: 42,
            version: DELETION_MARK_VERSION,
            details: String::new(),
        };
        bucket.write_deletion_mark("t", &mark).await.unwrap();
        assert_eq!(
            bucket.read_deletion_mark("t", "01A").await.unwrap(),
            Some(mark)
        );
        assert_eq!(bucket.read_deletion_mark("t", "01B").await.unwrap(), None);
        let scan = bucket.scan_tenant("t").await.unwrap();
        let a = &scan.blocks["01A"];
        assert!(a.has_meta && a.has_deletion_mark);
        assert_eq!(a.objects.len(), 4);
        assert!(!scan.blocks["01B"].has_meta);
        assert_eq!(scan.global_marks, vec!["01A"]);

        let index = BucketIndex::new(vec![block("01A", 0)], Vec::new(), 7);
        bucket.write_bucket_index("t", &index).await.unwrap();
        assert_eq!(bucket.read_bucket_index("t").await.unwrap(), Some(index));
        // The index is not mistaken for a block.
        assert!(!bucket
            .scan_tenant("t")
            .await
            .unwrap()
            .blocks
            .contains_key(BUCKET_INDEX_FILENAME));

        bucket.delete_block("t", "01A", &a.objects).await.unwrap();
        let scan = bucket.scan_tenant("t").await.unwrap();
        assert!(!scan.blocks.contains_key("01A"), "{scan:?}");
        assert!(scan.global_marks.is_empty());
        assert_eq!(bucket.list_blocks("t").await.unwrap(), Vec::<String>::new());
        // Deleting again (a retry after a crash) is fine.
        bucket.delete_block("t", "01A", &a.objects).await.unwrap();
    }
}
