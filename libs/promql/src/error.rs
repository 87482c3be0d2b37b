//! The engine's error type.

use strata_status::{Coded, ErrorCode, ServiceError};

/// Which shape limit a query exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeLimit {
    LengthBytes,
    Depth,
    MatchersPerSelector,
    Matchers,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse or is not valid PromQL.
    #[error("{0}")]
    Parse(String),
    /// The query's text or tree exceeds one of the shape limits (length,
    /// depth, matchers): refused before it is parsed or evaluated.
    #[error("{message}")]
    ShapeLimit { limit: ShapeLimit, message: String },
    /// Evaluation failed (bad arguments, many-to-many matching, duplicate label
    /// sets, ...), or the query needs a feature the engine lacks
    /// ([`ExecutionError::unsupported`]).
    #[error("{0}")]
    Execution(ExecutionError),
    /// The query would hold more samples in memory than `max_samples` (the limit).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples(usize),
    /// The answer would be longer than the byte limit the caller set.
    #[error("the answer would be larger than the limit of {0} bytes")]
    ResponseTooLarge(usize),
    /// The query ran longer than its timeout.
    #[error("{0}")]
    Timeout(String),
    /// The query was canceled.
    #[error("{0}")]
    Canceled(String),
    /// A bug: the evaluation panicked (the process stays up; the caller
    /// answers 500 and logs the query).
    #[error("{0}")]
    Internal(String),
    /// Reading series from storage failed.
    #[error("{0}")]
    Storage(ServiceError),
}

/// What a query's failure is to the caller. The query is the caller's: one
/// that does not parse, is too complex, cannot be evaluated or asks for more
/// than the limits allow is theirs to change (BadRequest). The querier's HTTP
/// API refines this with Prometheus's error types (an evaluation failure is
/// 422 `execution` there, which no [`ErrorCode`] names); elsewhere, e.g. over
/// gRPC, this code is the answer.
impl Coded for QueryError {
    fn code(&self) -> ErrorCode {
        match self {
            QueryError::Parse(_)
            | QueryError::ShapeLimit { .. }
            | QueryError::Execution(_)
            | QueryError::TooManySamples(_)
            | QueryError::ResponseTooLarge(_) => ErrorCode::BadRequest,
            QueryError::Timeout(_) => ErrorCode::Timeout,
            QueryError::Canceled(_) => ErrorCode::Canceled,
            QueryError::Internal(_) => ErrorCode::Internal,
            // Storage keeps the code of whatever failed below it.
            QueryError::Storage(e) => e.code,
        }
    }
}

impl QueryError {
    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(ExecutionError::from(msg.into()))
    }

    /// The query is valid PromQL, but needs a feature this engine does not
    /// implement.
    pub(crate) fn unsupported(feature: UnsupportedFeature) -> Self {
        QueryError::Execution(ExecutionError {
            message: feature.to_string(),
            unsupported: Some(feature),
        })
    }

    /// The feature the engine lacks, when that is why the query failed.
    pub fn unsupported_feature(&self) -> Option<&UnsupportedFeature> {
        match self {
            QueryError::Execution(e) => e.unsupported.as_ref(),
            _ => None,
        }
    }
}

/// A PromQL feature the engine does not implement. Prometheus answers such a
/// query; Strata refuses it rather than answer something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedFeature {
    /// A function promql-parser knows but the engine does not evaluate.
    #[error("function {0}() is not supported")]
    Function(String),
}

/// Why an evaluation failed: the message the caller sees, and the missing
/// feature when that is the cause. It reads as its message (`Display`, and
/// `Deref` to `str`), so code that only shows or inspects the text is
/// unaffected by the typed reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionError {
    message: String,
    unsupported: Option<UnsupportedFeature>,
}

impl ExecutionError {
    /// The missing feature, when that is why the query failed.
    pub fn unsupported(&self) -> Option<&UnsupportedFeature> {
        self.unsupported.as_ref()
    }
}

impl From<String> for ExecutionError {
    fn from(message: String) -> Self {
        Self {
            message,
            unsupported: None,
        }
    }
}

impl From<&str> for ExecutionError {
    fn from(message: &str) -> Self {
        Self::from(message.to_string())
    }
}

impl std::ops::Deref for ExecutionError {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ExecutionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_queries_are_bad_requests_and_storage_keeps_its_code() {
        assert_eq!(
            QueryError::Parse("unexpected end of input".into()).code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            QueryError::exec("many-to-many matching not allowed").code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            QueryError::TooManySamples(50_000_000).code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            QueryError::Timeout("query timed out".into()).code(),
            ErrorCode::Timeout
        );
        assert_eq!(
            QueryError::Canceled("query canceled".into()).code(),
            ErrorCode::Canceled
        );
        assert_eq!(
            QueryError::Internal("panicked".into()).code(),
            ErrorCode::Internal
        );
        let down = QueryError::Storage(ServiceError::unavailable("no ingester answered"));
        assert_eq!(down.code(), ErrorCode::Unavailable);
        assert_eq!(
            ServiceError::from_coded(&down),
            ServiceError::unavailable("no ingester answered")
        );
    }
}
