//! The error type of block writing and reading, which every part of the
//! block format shares.

use thiserror::Error;

/// Why a block could not be written or read.
#[derive(Debug, Error)]
pub enum BlockError {
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: corrupt data at offset {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "{file}: checksum mismatch in the section at offset {offset}: stored CRC32C \
         {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        file: String,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("{file}: unsupported: {reason}")]
    Unsupported { file: String, reason: String },
    #[error("{path}: invalid meta.json: {source}")]
    Meta {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid block input: {0}")]
    InvalidInput(String),
}

impl BlockError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: std::io::Error) -> Self {
        BlockError::Io {
            path: path.display().to_string(),
            op,
            source,
        }
    }
}
