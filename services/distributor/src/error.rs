//! The distributor's own failures (building it, starting it), and their one
//! mapping to the service-level codes of `strata-status`. A push's errors
//! are not here: they are the client's or the ingesters', already
//! [`strata_status::ServiceError`]s, or a [`crate::DecodeError`].

use strata_ring::RingError;
use strata_status::{Coded, ErrorCode};

/// Why the distributor could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum DistributorError {
    #[error("cannot register distributor metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The start's read of the ingester ring failed: without it the
    /// distributor cannot tell where a series goes.
    #[error("reading the ingester ring: {0}")]
    ReadRing(#[source] RingError),
    /// A push found no ingesters to take a series (too few healthy in the
    /// ring, or the ring not read yet).
    #[error("cannot pick ingesters: {0}")]
    PickIngesters(#[source] RingError),
}

impl Coded for DistributorError {
    fn code(&self) -> ErrorCode {
        match self {
            DistributorError::Metrics(_) => ErrorCode::Internal,
            // The ring's KV store out of reach.
            DistributorError::ReadRing(_) => ErrorCode::Unavailable,
            DistributorError::PickIngesters(e) => e.code(),
        }
    }
}

/// Too many clusters is the sender's to fix (Mimir answers 400); a KV
/// store out of reach is retryable.
impl Coded for crate::ha_tracker::HaError {
    fn code(&self) -> ErrorCode {
        match self {
            crate::ha_tracker::HaError::TooManyClusters { .. } => ErrorCode::BadRequest,
            crate::ha_tracker::HaError::Kv(_) => ErrorCode::Unavailable,
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
        let err = DistributorError::ReadRing(RingError::Stopped);
        assert_eq!(err.code(), ErrorCode::Unavailable);
        assert_eq!(
            strata_status::ServiceError::from_coded(&err).message,
            "reading the ingester ring: the lifecycler is stopped"
        );
        let err = DistributorError::PickIngesters(RingError::EmptyRing);
        assert_eq!(err.code(), ErrorCode::Unavailable);
    }
}
