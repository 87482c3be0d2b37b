//! [`ApiError`], an error as the Prometheus API reports it, and the one
//! place that turns the querier's errors (the engine's, the storage's
//! service errors) into it; and [`StartError`], why the querier service could
//! not start. A leaf under the API, the querier and the service, which
//! return them.

use axum::http::StatusCode;
use strata_ring::RingError;
use strata_status::{Coded, ErrorCode, ServiceError};

use crate::engine::EngineError;
use crate::params::invalid_param;

/// An error as the Prometheus API reports it: an HTTP status, an `errorType`
/// and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error_type: "bad_data",
            message: message.into(),
        }
    }

    pub fn execution(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error_type: "execution",
            message: message.into(),
        }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error_type: "timeout",
            message: message.into(),
        }
    }

    pub fn canceled(message: impl Into<String>) -> Self {
        Self {
            status: ErrorCode::Canceled.http_status(),
            error_type: "canceled",
            message: message.into(),
        }
    }

    /// A service error keeps its code's HTTP status (the one mapping in
    /// `strata-status`). Internal details go to the log, not to the client.
    pub fn from_service(error: ServiceError) -> Self {
        let error_type = match error.code {
            ErrorCode::BadRequest => "bad_data",
            ErrorCode::Unauthenticated => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Canceled => "canceled",
            ErrorCode::Internal => "internal",
        };
        let message = if error.code == ErrorCode::Internal {
            tracing::error!(error = %error.message, "internal error serving a query");
            "internal error; details are in the querier's log".to_string()
        } else {
            error.message
        };
        Self {
            status: error.code.http_status(),
            error_type,
            message,
        }
    }
}

impl From<EngineError> for ApiError {
    /// The two classes the Prometheus API has and the service codes lack
    /// (`bad_data` naming the parameter, 422 `execution`) are kept; every
    /// other error takes its code's status and type.
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::BadQuery(m) => ApiError::bad_data(invalid_param("query", m)),
            EngineError::Execution(m) => ApiError::execution(m),
            other => ApiError::from_service(ServiceError::from_coded(&other)),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Why the querier service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A ring the querier reads through could not be read: without it the
    /// querier cannot tell whom to ask.
    #[error("reading the {ring} ring: {source}")]
    ReadRing {
        ring: &'static str,
        #[source]
        source: RingError,
    },
}

impl Coded for StartError {
    fn code(&self) -> ErrorCode {
        match self {
            // The ring's KV store out of reach.
            StartError::ReadRing { .. } => ErrorCode::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_the_prometheus_classes() {
        let bad = ApiError::from(EngineError::BadQuery("unexpected end".into()));
        assert_eq!(
            (bad.status, bad.error_type),
            (StatusCode::BAD_REQUEST, "bad_data")
        );
        let exec = ApiError::from(EngineError::Execution("too many samples".into()));
        assert_eq!(exec.status, StatusCode::UNPROCESSABLE_ENTITY);
        let timeout = ApiError::from(EngineError::Timeout("query timed out".into()));
        assert_eq!(timeout, ApiError::timeout("query timed out"));
        let canceled = ApiError::from(EngineError::Canceled("canceled".into()));
        assert_eq!(canceled, ApiError::canceled("canceled"));
        let storage = ApiError::from(EngineError::Storage(ServiceError::new(
            ErrorCode::TooManyRequests,
            "slow down",
        )));
        assert_eq!(
            (storage.status, storage.error_type, storage.message.as_str()),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "slow down"
            )
        );
        // Ours: the details stay in the log.
        let internal = ApiError::from(EngineError::Internal("index out of bounds".into()));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.message.contains("index"), "{internal:?}");
    }

    #[test]
    fn a_ring_read_failure_is_unavailable() {
        let err = StartError::ReadRing {
            ring: "ingester",
            source: RingError::EmptyRing,
        };
        assert_eq!(err.code(), ErrorCode::Unavailable);
        assert_eq!(
            err.to_string(),
            "reading the ingester ring: the ring is empty"
        );
    }
}
