//! The WAL's error type: every failure names the file or directory it is about.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::frame::MAX_RECORD_LEN;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("WAL I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt WAL file {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("unusable WAL directory {}: {reason}", dir.display())]
    Layout { dir: PathBuf, reason: String },
    #[error("invalid WAL options: {0}")]
    Options(String),
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// An earlier write or fsync failed; nothing logged after it is durable.
    #[error("the WAL in {} failed and accepts no more writes: {reason}", dir.display())]
    Failed { dir: PathBuf, reason: String },
}

impl WalError {
    pub(super) fn io(path: &Path, source: io::Error) -> Self {
        WalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A series whose labels cannot fit in one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "series labels of about {len} bytes exceed the largest WAL record ({MAX_RECORD_LEN} bytes)"
)]
pub struct TooLarge {
    pub len: usize,
}
