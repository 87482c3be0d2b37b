//! Errors of the KV stores, the ring and the lifecycler.

use std::path::PathBuf;
use std::time::Duration;

use strata_status::{Coded, ErrorCode};
use thiserror::Error;

/// A KV store operation failed.
#[derive(Debug, Error)]
pub enum KvError {
    /// The etcd client or server reported an error.
    #[error("etcd {op} failed: {source}")]
    Etcd {
        /// What was being done (`get`, `txn`, `watch`, ...).
        op: &'static str,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// The store did not answer in time.
    #[error("KV {op} timed out after {timeout:?}")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// Every compare-and-swap attempt lost to a concurrent writer.
    #[error("compare-and-swap on {key:?} gave up after {attempts} conflicting attempts")]
    CasConflict {
        /// The key.
        key: String,
        /// How many times it was tried.
        attempts: usize,
    },
    /// The stored value could not be decoded (it is corrupt or from an
    /// incompatible version).
    #[error("the value stored at {key:?} is invalid: {source}")]
    Decode {
        /// The key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be encoded.
    #[error("could not encode a KV value: {source}")]
    Encode {
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// An invalid `ring` configuration; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid ring config: {key}: {message}")]
pub struct ConfigError {
    /// The offending config key, e.g. `ring.replication_factor`.
    pub key: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// A ring, replication or lifecycler operation failed.
#[derive(Debug, Error)]
pub enum RingError {
    /// No instance owns any token yet.
    #[error("the ring is empty")]
    EmptyRing,
    /// Fewer healthy replicas than the quorum needs.
    #[error(
        "too many unhealthy instances in the ring: at least {required} live replicas required, \
         could only find {healthy} (unhealthy: {unhealthy:?})"
    )]
    TooManyUnhealthy {
        /// Healthy instances needed.
        required: usize,
        /// Healthy instances found.
        healthy: usize,
        /// Addresses of the unhealthy instances met.
        unhealthy: Vec<String>,
    },
    /// The KV store failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokens file could not be read or written.
    #[error("tokens file {path}: {source}")]
    TokensFileIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The tokens file is not valid JSON of the expected shape.
    #[error("tokens file {path} is invalid: {source}")]
    TokensFileFormat {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The lifecycler has been stopped.
    #[error("the lifecycler is stopped")]
    Stopped,
}

/// To a caller, a store that cannot be used now (down, slow, contended) is
/// the service being unavailable: retrying later may work. A value that does
/// not decode or encode is ours to fix.
impl Coded for KvError {
    fn code(&self) -> ErrorCode {
        match self {
            KvError::Etcd { .. } | KvError::Timeout { .. } | KvError::CasConflict { .. } => {
                ErrorCode::Unavailable
            }
            KvError::Decode { .. } | KvError::Encode { .. } => ErrorCode::Internal,
        }
    }
}

/// A ring without enough healthy instances, or a lifecycler shutting down,
/// cannot serve the request now but may later (Unavailable, as the
/// distributor answers when it cannot pick ingesters); the ring's config and
/// tokens file are the operator's (Internal); the KV store decides for itself.
impl Coded for RingError {
    fn code(&self) -> ErrorCode {
        match self {
            RingError::EmptyRing | RingError::TooManyUnhealthy { .. } | RingError::Stopped => {
                ErrorCode::Unavailable
            }
            RingError::Kv(e) => e.code(),
            RingError::Config(_)
            | RingError::TokensFileIo { .. }
            | RingError::TokensFileFormat { .. } => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_say_whether_a_retry_may_help() {
        let unhealthy = RingError::TooManyUnhealthy {
            required: 2,
            healthy: 1,
            unhealthy: vec!["10.0.0.1:9095".into()],
        };
        assert_eq!(unhealthy.code(), ErrorCode::Unavailable);
        assert_eq!(RingError::EmptyRing.code(), ErrorCode::Unavailable);
        let timeout = KvError::Timeout {
            op: "get",
            timeout: Duration::from_secs(1),
        };
        assert_eq!(timeout.code(), ErrorCode::Unavailable);
        assert_eq!(RingError::Kv(timeout).code(), ErrorCode::Unavailable);
        let corrupt = KvError::Decode {
            key: "collectors/ring".into(),
            source: serde_json::from_str::<u32>("{").unwrap_err(),
        };
        assert_eq!(RingError::Kv(corrupt).code(), ErrorCode::Internal);
        let config = RingError::Config(ConfigError {
            key: "ring.replication_factor",
            message: "must be at least 1".into(),
        });
        assert_eq!(config.code(), ErrorCode::Internal);
    }
}
