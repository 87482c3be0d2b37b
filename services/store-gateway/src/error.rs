//! The store-gateway's error type, [`StoreError`], and the one mapping of its
//! variants to the service-level codes of `strata-status`. A leaf module: the
//! block readers, the store and the gRPC service all return it, so it must
//! not depend on any of them.

use strata_status::{Coded, ErrorCode};

/// Why the store-gateway could not serve a request or a block.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Block(#[from] strata_tsdb::block::BlockError),
    #[error("object storage: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error(transparent)]
    Bucket(#[from] strata_storage::bucket_index::BucketIndexError),
    #[error("{path}: {reason}")]
    Local { path: String, reason: String },
    #[error("block {block}: {reason}")]
    InvalidBlock { block: String, reason: String },
    /// A blocking task (reading a block) panicked or was cancelled.
    #[error("store-gateway task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl Coded for StoreError {
    /// Reading blocks failing is never the caller's fault: the bucket being
    /// out of reach is worth a retry elsewhere (Unavailable), anything else
    /// is ours (Internal).
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::ObjectStore(_) | StoreError::Bucket(_) => ErrorCode::Unavailable,
            StoreError::Block(_)
            | StoreError::Local { .. }
            | StoreError::InvalidBlock { .. }
            | StoreError::Task(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_bucket_is_unavailable_a_broken_block_internal() {
        let unreachable = StoreError::ObjectStore(object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        });
        assert_eq!(unreachable.code(), ErrorCode::Unavailable);
        let broken = StoreError::InvalidBlock {
            block: "01H".into(),
            reason: "no index".into(),
        };
        assert_eq!(broken.code(), ErrorCode::Internal);
        let local = StoreError::Local {
            path: "/sync".into(),
            reason: "read-only".into(),
        };
        assert_eq!(local.code(), ErrorCode::Internal);
        assert!(!local.code().is_client_error());
    }
}
