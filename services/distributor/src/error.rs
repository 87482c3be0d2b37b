//! The distributor's own failures (building it), and their one
//! mapping to the service-level codes of `strata-status`. A push's errors
//! are not here: they are the client's or the ingesters', already
//! [`strata_status::ServiceError`]s, or a [`crate::DecodeError`].

use strata_status::{Coded, ErrorCode};

/// Why the distributor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DistributorError {
    #[error("cannot register distributor metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Coded for DistributorError {
    fn code(&self) -> ErrorCode {
        match self {
            DistributorError::Metrics(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let taken = prometheus::Error::AlreadyReg;
        assert_eq!(DistributorError::Metrics(taken).code(), ErrorCode::Internal);
    }
}
