//! The ingester's error type, and the status each error is at the edge.

use std::path::PathBuf;

use strata_status::{Coded, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Wal(#[from] strata_tsdb::wal::WalError),
    #[error(transparent)]
    Block(#[from] strata_tsdb::block::BlockError),
    #[error(transparent)]
    Storage(#[from] strata_storage::StorageError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A blocking task (block writing, WAL work) panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The shipper's record of uploaded blocks could not be encoded.
    #[error("cannot encode the shipper file: {0}")]
    ShipperFile(#[source] serde_json::Error),
    /// A failure a test asked for.
    #[cfg(test)]
    #[error("injected failure: {0}")]
    Injected(&'static str),
    /// A flush cut its blocks (they are safe on local disk) but could not
    /// upload them; the background shipper keeps trying.
    #[error("{blocks_written} block(s) cut, but uploading failed (the shipper retries in the background): {source}")]
    Ship {
        blocks_written: usize,
        #[source]
        source: Box<IngesterError>,
    },
    /// A flush could not cut some tenants' heads; every other tenant was cut
    /// (and shipped, when it could be).
    #[error("{blocks_written} block(s) cut, but cutting failed for {}: {}", tenant_list(.failed), failure_list(.failed))]
    Cut {
        blocks_written: usize,
        /// Each failing tenant and its error.
        failed: Vec<(String, String)>,
    },
}

fn tenant_list(failed: &[(String, String)]) -> String {
    let names: Vec<&str> = failed.iter().map(|(t, _)| t.as_str()).collect();
    format!("tenant(s) {}", names.join(", "))
}

fn failure_list(failed: &[(String, String)]) -> String {
    let each: Vec<String> = failed.iter().map(|(t, e)| format!("{t}: {e}")).collect();
    each.join("; ")
}

impl Coded for IngesterError {
    fn code(&self) -> ErrorCode {
        match self {
            // The object store is away: a retry (or the shipper) may succeed.
            IngesterError::Storage(_) | IngesterError::Ship { .. } => ErrorCode::Unavailable,
            #[cfg(test)]
            IngesterError::Injected(_) => ErrorCode::Internal,
            IngesterError::Metrics(_)
            | IngesterError::Wal(_)
            | IngesterError::Block(_)
            | IngesterError::Io { .. }
            | IngesterError::Task(_)
            | IngesterError::ShipperFile(_)
            | IngesterError::Cut { .. } => ErrorCode::Internal,
        }
    }
}
