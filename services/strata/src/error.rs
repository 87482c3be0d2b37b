//! The binary's error: what stops a process from starting or running, as the
//! last log line reports it.

use strata_service::{BoxError, DependencyError, RunError};

use crate::modules::Module;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    BadAddress(#[from] crate::addresses::BadAddress),
    #[error(transparent)]
    Dependencies(#[from] DependencyError),
    #[error("{module}: {source}")]
    Wiring {
        module: Module,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Run(#[from] RunError),
}
