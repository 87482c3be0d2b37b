//! The compactor's error type, [`CompactorError`], and the one mapping of its
//! variants to the service-level codes of `strata-status`. A leaf module: the
//! passes, the service and the HTTP endpoint all report it.

use std::path::{Path, PathBuf};

use strata_status::{Coded, ErrorCode};
use strata_storage::bucket_index::BucketIndexError;
use strata_storage::StorageError;
use strata_tsdb::block::BlockError;

use crate::config::CompactorConfigError;

/// Why a compactor could not be built or a pass (or a tenant's turn) failed.
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error(transparent)]
    Config(#[from] CompactorConfigError),
    #[error("compactor metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Bucket(#[from] BucketIndexError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The blocking task that merges a job's blocks panicked or was
    /// cancelled (the runtime shutting down).
    #[error("the merge task failed: {0}")]
    MergeTask(#[source] tokio::task::JoinError),
}

impl From<object_store::Error> for CompactorError {
    fn from(e: object_store::Error) -> Self {
        CompactorError::Bucket(BucketIndexError::Storage(StorageError::ObjectStore(e)))
    }
}

impl From<StorageError> for CompactorError {
    fn from(e: StorageError) -> Self {
        CompactorError::Bucket(BucketIndexError::Storage(e))
    }
}

impl Coded for CompactorError {
    /// A config the compactor refuses is the operator's to fix; the bucket
    /// out of reach passes (the next pass retries); everything else — a
    /// corrupt block or index, the local disk, a merge that panicked — is
    /// ours.
    fn code(&self) -> ErrorCode {
        match self {
            CompactorError::Config(_)
            | CompactorError::Bucket(BucketIndexError::Storage(
                StorageError::Config { .. } | StorageError::Unsupported(_),
            )) => ErrorCode::BadRequest,
            CompactorError::Bucket(BucketIndexError::Storage(StorageError::ObjectStore(_))) => {
                ErrorCode::Unavailable
            }
            CompactorError::Bucket(
                BucketIndexError::Storage(StorageError::Io { .. })
                | BucketIndexError::Corrupt { .. },
            )
            | CompactorError::Metrics(_)
            | CompactorError::Block(_)
            | CompactorError::Io { .. }
            | CompactorError::MergeTask(_) => ErrorCode::Internal,
        }
    }
}

/// Maps an I/O error on `path` (the compactor's own disk) to its variant.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CompactorError + '_ {
    move |source| CompactorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_bucket_is_unavailable_a_bad_config_the_operator_s() {
        let unreachable = CompactorError::from(object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        });
        assert_eq!(unreachable.code(), ErrorCode::Unavailable);
        let config = CompactorError::Config(CompactorConfigError {
            key: "compaction_interval",
            value: "0s".into(),
            reason: "must be greater than 0s".into(),
        });
        assert_eq!(config.code(), ErrorCode::BadRequest);
        let disk = io_err(Path::new("/data"))(std::io::Error::other("full"));
        assert_eq!(disk.code(), ErrorCode::Internal);
        assert_eq!(
            strata_status::ServiceError::from_coded(&disk).message,
            "/data: full"
        );
    }

    #[tokio::test]
    async fn a_panicked_merge_keeps_its_cause() {
        let joined = tokio::task::spawn_blocking(|| panic!("merge bug")).await;
        let Err(cause) = joined else {
            panic!("the task did not fail");
        };
        let err = CompactorError::MergeTask(cause);
        assert_eq!(err.code(), ErrorCode::Internal);
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("panicked")), "{err:?}");
    }
}
