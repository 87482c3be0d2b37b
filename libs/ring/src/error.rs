//! Errors of the KV stores, the ring and the lifecycler.

use std::path::PathBuf;
use std::time::Duration;

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
