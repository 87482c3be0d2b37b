//! Where blocks live: the object-storage configuration (Mimir's
//! `blocks_storage` section: `backend`, `filesystem`, `s3`, and the ingester's
//! local TSDB settings under `tsdb`) and the bucket layout
//! `<tenant>/<ULID>/{chunks/000001…, index, meta.json}`.
//!
//! A [`Bucket`] is an [`object_store::ObjectStore`] (local folder or S3 and
//! S3-compatible servers with path-style requests) plus the one operation the
//! ingester needs, [`Bucket::upload_block`]: chunks and index first, `meta.json`
//! last, so a block without `meta.json` is incomplete and invisible to readers.
//!
//! It deliberately knows nothing about the TSDB format beyond file names, nor
//! about tenants' data: GCS and Azure are recognised names that this build does
//! not support (a clear error at start-up).

pub mod bucket_index;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;
use strata_status::{Coded, ErrorCode};

/// The name of a block's meta file; uploaded last.
pub const META_FILENAME: &str = "meta.json";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid value {value:?} for blocks_storage.{key}: {reason}")]
    Config {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("blocks_storage.backend {0:?} is not supported in this build (use filesystem or s3)")]
    Unsupported(String),
    #[error("object storage: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The `blocks_storage` settings and the local disk are the operator's: a
/// caller cannot fix them and a retry will not either (Internal). The object
/// store answers for itself ([`object_store_code`]).
impl Coded for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            StorageError::Config { .. }
            | StorageError::Unsupported(_)
            | StorageError::Io { .. } => ErrorCode::Internal,
            StorageError::ObjectStore(e) => object_store_code(e),
        }
    }
}

/// An object store error as a caller sees it. Callers never name objects, so
/// none of these is their fault: the store down or slow (`Generic` carries the
/// network errors and the server's 5xx), or an object gone between listing
/// and reading (a compaction deleted it) is Unavailable, since a retry may
/// work; a path, an operation or credentials the store refuses is our setup
/// (Internal), the same on every retry.
pub fn object_store_code(e: &object_store::Error) -> ErrorCode {
    use object_store::Error as E;
    match e {
        E::InvalidPath { .. }
        | E::JoinError { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => ErrorCode::Internal,
        // Generic, NotFound, AlreadyExists, Precondition, NotModified, and
        // what later versions add (the enum is non-exhaustive).
        _ => ErrorCode::Unavailable,
    }
}

/// Mimir's `blocks_storage` section.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlocksStorageConfig {
    pub backend: String,
    pub filesystem: FilesystemConfig,
    pub s3: S3Config,
    pub tsdb: TsdbConfig,
    pub bucket_store: BucketStoreConfig,
}

impl Default for BlocksStorageConfig {
    fn default() -> Self {
        Self {
            backend: "filesystem".to_string(),
            filesystem: FilesystemConfig::default(),
            s3: S3Config::default(),
            tsdb: TsdbConfig::default(),
            bucket_store: BucketStoreConfig::default(),
        }
    }
}

/// Mimir's `blocks_storage.bucket_store`: how a store-gateway serves blocks.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BucketStoreConfig {
    pub sync_dir: String,
    pub sync_interval: ConfigDuration,
    pub ignore_deletion_mark_delay: ConfigDuration,
    pub postings_cache_max_bytes: u64,
    pub series_cache_max_bytes: u64,
    pub chunks_cache_max_bytes: u64,
    pub block_sync_concurrency: usize,
}

impl Default for BucketStoreConfig {
    fn default() -> Self {
        Self {
            sync_dir: "./data/tsdb-sync".to_string(),
            sync_interval: ConfigDuration::from_secs(60),
            ignore_deletion_mark_delay: ConfigDuration::from_secs(3600),
            postings_cache_max_bytes: 128 << 20,
            series_cache_max_bytes: 128 << 20,
            chunks_cache_max_bytes: 256 << 20,
            block_sync_concurrency: 4,
        }
    }
}

/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    pub dir: String,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            dir: "./data/blocks".to_string(),
        }
    }
}

/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket_name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub insecure: bool,
}

/// Mimir's `blocks_storage.tsdb`: the ingester's local TSDB.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TsdbConfig {
    pub dir: String,
    pub wal_enabled: bool,
    pub wal_fsync: String,
    pub wal_fsync_max_delay: ConfigDuration,
    pub block_ranges_period: ConfigDuration,
    pub retention_period: ConfigDuration,
    pub head_compaction_interval: ConfigDuration,
    /// A head that took no push for this long is cut into blocks whole
    /// (Mimir's `head_compaction_idle_timeout`); 0 disables.
    pub head_compaction_idle_timeout: ConfigDuration,
    /// A tenant that took no push for this long, with an empty head and
    /// every block shipped, is closed and its local directory removed
    /// (Mimir's `close_idle_tsdb_timeout`); 0 disables.
    pub close_idle_tsdb_timeout: ConfigDuration,
    pub ship_interval: ConfigDuration,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        Self {
            dir: "./data/tsdb".to_string(),
            wal_enabled: true,
            wal_fsync: "always".to_string(),
            wal_fsync_max_delay: ConfigDuration(Duration::from_millis(10)),
            block_ranges_period: ConfigDuration::from_secs(2 * 3600),
            retention_period: ConfigDuration::from_secs(13 * 3600),
            head_compaction_interval: ConfigDuration::from_secs(60),
            head_compaction_idle_timeout: ConfigDuration::from_secs(3600),
            close_idle_tsdb_timeout: ConfigDuration::from_secs(0),
            ship_interval: ConfigDuration::from_secs(10),
        }
    }
}

impl BlocksStorageConfig {
    /// Checks every value, naming the key of the first bad one.
    pub fn validate(&self) -> Result<(), StorageError> {
        match self.backend.as_str() {
            "filesystem" => {
                if self.filesystem.dir.is_empty() {
                    return Err(StorageError::Config {
                        key: "filesystem.dir",
                        value: String::new(),
                        reason: "must not be empty".into(),
                    });
                }
            }
            "s3" => {
                if self.s3.bucket_name.is_empty() {
                    return Err(StorageError::Config {
                        key: "s3.bucket_name",
                        value: String::new(),
                        reason: "required with backend s3".into(),
                    });
                }
            }
            "gcs" | "azure" => return Err(StorageError::Unsupported(self.backend.clone())),
            other => {
                return Err(StorageError::Config {
                    key: "backend",
                    value: other.to_string(),
                    reason: "valid backends are filesystem, s3, gcs, azure".into(),
                })
            }
        }
        let b = &self.bucket_store;
        if b.sync_dir.is_empty() {
            return Err(StorageError::Config {
                key: "bucket_store.sync_dir",
                value: String::new(),
                reason: "must not be empty".into(),
            });
        }
        if b.sync_interval.0.is_zero() {
            return Err(StorageError::Config {
                key: "bucket_store.sync_interval",
                value: b.sync_interval.to_string(),
                reason: "must be positive".into(),
            });
        }
        if b.block_sync_concurrency == 0 {
            return Err(StorageError::Config {
                key: "bucket_store.block_sync_concurrency",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let t = &self.tsdb;
        if t.dir.is_empty() {
            return Err(StorageError::Config {
                key: "tsdb.dir",
                value: String::new(),
                reason: "must not be empty".into(),
            });
        }
        if !["always", "batch", "never"].contains(&t.wal_fsync.as_str()) {
            return Err(StorageError::Config {
                key: "tsdb.wal_fsync",
                value: t.wal_fsync.clone(),
                reason: "valid values are always, batch, never".into(),
            });
        }
        for (key, d) in [
            ("tsdb.block_ranges_period", t.block_ranges_period),
            ("tsdb.head_compaction_interval", t.head_compaction_interval),
            ("tsdb.ship_interval", t.ship_interval),
        ] {
            if d.0.is_zero() {
                return Err(StorageError::Config {
                    key,
                    value: d.to_string(),
                    reason: "must be positive".into(),
                });
            }
        }
        Ok(())
    }

    /// The bucket the config names; the filesystem folder is created if missing.
    pub fn bucket(&self) -> Result<Bucket, StorageError> {
        self.validate()?;
        let store: Arc<dyn ObjectStore> = match self.backend.as_str() {
            "s3" => {
                let s3 = &self.s3;
                let endpoint = if s3.endpoint.is_empty() || s3.endpoint.contains("://") {
                    s3.endpoint.clone()
                } else if s3.insecure {
                    format!("http://{}", s3.endpoint)
                } else {
                    format!("https://{}", s3.endpoint)
                };
                let region = if s3.region.is_empty() {
                    "us-east-1"
                } else {
                    &s3.region
                };
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket_name)
                    .with_region(region)
                    .with_allow_http(s3.insecure)
                    .with_virtual_hosted_style_request(false)
                    // The shipper retries with its own backoff; a request
                    // gives up soon so that it never holds anything up long.
                    .with_retry(object_store::RetryConfig {
                        backoff: object_store::BackoffConfig::default(),
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(10),
                    });
                if !endpoint.is_empty() {
                    builder = builder.with_endpoint(endpoint);
                }
                if !s3.access_key_id.is_empty() {
                    builder = builder
                        .with_access_key_id(&s3.access_key_id)
                        .with_secret_access_key(&s3.secret_access_key);
                }
                Arc::new(builder.build()?)
            }
            _ => {
                let dir = Path::new(&self.filesystem.dir);
                std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
            }
        };
        Ok(Bucket { store })
    }
}

/// Blocks of every tenant in one object store.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
}

impl Bucket {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `<tenant>/<block>/<file>` as an object path.
    pub fn block_object(tenant: &str, block: &str, file: &str) -> ObjectPath {
        ObjectPath::from(format!("{tenant}/{block}/{file}"))
    }

    /// Uploads the local block directory `dir` (named by its ULID) to
    /// `<tenant>/<ULID>/`: every file but `meta.json` first (in name order),
    /// `meta.json` last. Re-uploading a block overwrites the same objects.
    pub async fn upload_block(&self, tenant: &str, dir: &Path) -> Result<u64, StorageError> {
        let block = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StorageError::Config {
                key: "tsdb.dir",
                value: dir.display().to_string(),
                reason: "a block directory must be named by its ULID".into(),
            })?
            .to_string();
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files)?;
        files.sort_by_key(|rel| (rel == META_FILENAME, rel.clone()));
        if files.last().map(String::as_str) != Some(META_FILENAME) {
            return Err(StorageError::Io {
                path: dir.join(META_FILENAME),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "block has no meta.json"),
            });
        }
        let mut bytes = 0u64;
        for rel in files {
            let path = dir.join(&rel);
            let data = tokio::fs::read(&path)
                .await
                .map_err(|source| StorageError::Io {
                    path: path.clone(),
                    source,
                })?;
            bytes += data.len() as u64;
            self.store
                .put(
                    &Self::block_object(tenant, &block, &rel),
                    PutPayload::from(data),
                )
                .await?;
        }
        Ok(bytes)
    }

    /// ULIDs of the tenant's blocks that have a `meta.json` in the bucket.
    pub async fn list_blocks(&self, tenant: &str) -> Result<Vec<String>, StorageError> {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from(tenant);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut out: Vec<String> = objects
            .iter()
            .filter_map(|o| {
                let parts: Vec<_> = o.location.parts().collect();
                (parts.len() == 3 && parts[2].as_ref() == META_FILENAME)
                    .then(|| parts[1].as_ref().to_string())
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Paths of the files under `dir`, relative to `root`, with `/` separators.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), StorageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io(&path))?.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(rel.join("/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_codes_say_whose_problem_it_is() {
        let down = StorageError::ObjectStore(object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        });
        assert_eq!(down.code(), ErrorCode::Unavailable);
        let gone = StorageError::ObjectStore(object_store::Error::NotFound {
            path: "t/01H/index".into(),
            source: "404".into(),
        });
        assert_eq!(gone.code(), ErrorCode::Unavailable);
        let refused = StorageError::ObjectStore(object_store::Error::PermissionDenied {
            path: "t/01H/index".into(),
            source: "403".into(),
        });
        assert_eq!(refused.code(), ErrorCode::Internal);
        assert_eq!(
            StorageError::Unsupported("gcs".into()).code(),
            ErrorCode::Internal
        );
    }

    #[test]
    fn backends_are_checked() {
        let mut c = BlocksStorageConfig::default();
        c.validate().unwrap();
        c.backend = "gcs".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not supported in this build"));
        c.backend = "s3".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bucket_name"));
        c.backend = "nope".into();
        assert!(c.validate().is_err());
        let mut c = BlocksStorageConfig::default();
        c.tsdb.wal_fsync = "sometimes".into();
        assert!(c.validate().unwrap_err().to_string().contains("wal_fsync"));
    }

    #[tokio::test]
    async fn uploads_meta_last_into_tenant_and_ulid() {
        let local = tempfile::tempdir().unwrap();
        let bucket_dir = tempfile::tempdir().unwrap();
        let block = local.path().join("01HZZZZZZZZZZZZZZZZZZZZZZZ");
        std::fs::create_dir_all(block.join("chunks")).unwrap();
        std::fs::write(block.join("chunks/000001"), b"c").unwrap();
        std::fs::write(block.join("index"), b"i").unwrap();
        std::fs::write(block.join("meta.json"), b"{}").unwrap();
        let config = BlocksStorageConfig {
            filesystem: FilesystemConfig {
                dir: bucket_dir.path().display().to_string(),
            },
            ..Default::default()
        };
        let bucket = config.bucket().unwrap();
        assert_eq!(bucket.upload_block("t", &block).await.unwrap(), 4);
        assert!(bucket_dir
            .path()
            .join("t/01HZZZZZZZZZZZZZZZZZZZZZZZ/chunks/000001")
            .exists());
        assert_eq!(
            bucket.list_blocks("t").await.unwrap(),
            vec!["01HZZZZZZZZZZZZZZZZZZZZZZZ".to_string()]
        );
    }
}
