//! The engine's error type.

use strata_status::ServiceError;

use crate::guard::ShapeLimit;

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
    /// Evaluation failed (bad arguments, many-to-many matching, duplicate label sets, ...).
    #[error("{0}")]
    Execution(String),
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

impl QueryError {
    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }
}
