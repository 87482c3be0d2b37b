//! The one module that calls the PromQL engine (`strata_promql`): builds it from
//! the config, runs instant and range queries against an [`TenantQueryable`],
//! and turns its results and errors into this crate's [`ResultData`] and
//! [`EngineError`]. Nothing else in the crate names an engine type.
//!
//! The engine reads series through [`TenantQueryable`], which implements
//! [`strata_promql::Queryable`] here by delegating to `select_series`.

use strata_model::{Matcher, Series};
use strata_promql::{
    Engine, EngineOptions, QueryError, QueryResult, QueryShapeLimits, Queryable, ShapeLimit, Value,
};
use strata_status::{Coded, ErrorCode, ServiceError};

use crate::config::QuerierConfig;
use crate::json::{InstantSample, ResultData};
use crate::storage::TenantQueryable;

/// What a query produced.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub data: ResultData,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// Why a query failed, in the classes the Prometheus API distinguishes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The query does not parse or is invalid (400 `bad_data`).
    #[error("{0}")]
    BadQuery(String),
    /// Evaluation failed (422 `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran out of time (503 `timeout`).
    #[error("{0}")]
    Timeout(String),
    /// The query was canceled (499 `canceled`).
    #[error("{0}")]
    Canceled(String),
    /// Reading series failed; keeps the storage's own code.
    #[error("{0}")]
    Storage(ServiceError),
    /// A bug in the engine (a panic caught on its thread): 500, details in
    /// the log.
    #[error("{0}")]
    Internal(String),
}

impl Coded for EngineError {
    /// A query that does not parse or cannot be evaluated is the client's
    /// (the Prometheus API answers 400 and 422); reading series keeps the
    /// storage's code; a caught panic is ours.
    fn code(&self) -> ErrorCode {
        match self {
            EngineError::BadQuery(_) | EngineError::Execution(_) => ErrorCode::BadRequest,
            EngineError::Timeout(_) => ErrorCode::Timeout,
            EngineError::Canceled(_) => ErrorCode::Canceled,
            EngineError::Storage(e) => e.code,
            EngineError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// The PromQL engine's settings, configured once per querier; each query runs
/// on an engine with its own sample and time limits (the tenant's may be lower).
#[derive(Debug)]
pub(crate) struct QueryEngine {
    options: EngineOptions,
    max_response_bytes: usize,
}

/// Limits of one query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_samples: usize,
    pub(crate) timeout: std::time::Duration,
}

#[async_trait::async_trait]
impl Queryable for TenantQueryable {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, ServiceError> {
        self.select_series(matchers, start_ms, end_ms).await
    }
}

impl QueryEngine {
    pub(crate) fn new(config: &QuerierConfig) -> Self {
        Self {
            options: EngineOptions {
                lookback_delta_ms: config.lookback_delta.as_millis_i64(),
                max_samples: config.max_samples,
                timeout: config.timeout.0,
                shape: shape_limits(config),
            },
            max_response_bytes: config.max_response_size_bytes,
        }
    }

    /// Parses and prettifies `query` as `/api/v1/format_query` answers it.
    pub(crate) async fn format_query(&self, query: &str) -> Result<String, EngineError> {
        strata_promql::format_query(query, &self.options.shape, self.max_response_bytes)
            .await
            .map_err(|e| logged(query, engine_error(e)))
    }

    /// The limits on a query's text and tree.
    pub(crate) fn shape(&self) -> &QueryShapeLimits {
        &self.options.shape
    }

    fn engine(&self, limits: Limits) -> Engine {
        Engine::new(EngineOptions {
            max_samples: limits.max_samples,
            timeout: limits.timeout,
            ..self.options.clone()
        })
    }

    pub(crate) async fn instant_query(
        &self,
        storage: &TenantQueryable,
        query: &str,
        time_ms: i64,
        limits: Limits,
    ) -> Result<QueryOutput, EngineError> {
        self.engine(limits)
            .instant_query(storage, query, time_ms)
            .await
            .map(output)
            .map_err(|e| logged(query, limit_or_engine_error(storage, e)))
    }

    pub(crate) async fn range_query(
        &self,
        storage: &TenantQueryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        limits: Limits,
    ) -> Result<QueryOutput, EngineError> {
        self.engine(limits)
            .range_query(storage, query, start_ms, end_ms, step_ms)
            .await
            .map(output)
            .map_err(|e| logged(query, limit_or_engine_error(storage, e)))
    }
}

fn output(r: QueryResult) -> QueryOutput {
    let data = match r.value {
        Value::Scalar {
            timestamp_ms,
            value,
        } => ResultData::Scalar {
            timestamp_ms,
            value,
        },
        Value::String {
            timestamp_ms,
            value,
        } => ResultData::String {
            timestamp_ms,
            value,
        },
        Value::Vector(v) => ResultData::Vector(
            v.into_iter()
                .map(|s| InstantSample {
                    labels: s.labels,
                    timestamp_ms: s.timestamp_ms,
                    value: s.value,
                })
                .collect(),
        ),
        Value::Matrix(m) => ResultData::Matrix(m),
    };
    QueryOutput {
        data,
        warnings: r.warnings,
        infos: r.infos,
    }
}

/// A query stopped by a per-query limit fails as an execution error (422)
/// naming the limit, whatever error the engine surfaced it as.
fn limit_or_engine_error(storage: &TenantQueryable, e: QueryError) -> EngineError {
    match storage.exceeded_limit() {
        Some(message) => EngineError::Execution(message),
        None => engine_error(e),
    }
}

/// Parses PromQL from outside (a `match[]` selector, an exemplar query)
/// within the shape limits; the message names the limit it exceeds.
pub(crate) fn parse_guarded(
    text: &str,
    shape: &QueryShapeLimits,
) -> Result<promql_parser::parser::Expr, String> {
    strata_promql::parse_query(text, shape).map_err(|e| match engine_error(e) {
        EngineError::BadQuery(m) => m,
        other => other.to_string(),
    })
}

/// The engine's shape limits from the querier's config.
fn shape_limits(config: &QuerierConfig) -> QueryShapeLimits {
    QueryShapeLimits {
        max_length_bytes: config.max_query_expression_size_bytes,
        max_depth: config.max_query_expression_depth,
        max_matchers_per_selector: config.max_query_matchers_per_selector,
        max_matchers: config.max_query_matchers,
    }
}

/// The config key of each shape limit, named in the refusal.
fn shape_limit_key(limit: ShapeLimit) -> &'static str {
    match limit {
        ShapeLimit::LengthBytes => "querier.max_query_expression_size_bytes",
        ShapeLimit::Depth => "querier.max_query_expression_depth",
        ShapeLimit::MatchersPerSelector => "querier.max_query_matchers_per_selector",
        ShapeLimit::Matchers => "querier.max_query_matchers",
    }
}

/// A bug (a caught panic) is logged with the query that hit it.
fn logged(query: &str, e: EngineError) -> EngineError {
    if let EngineError::Internal(message) = &e {
        // At most the first KiB of the query: enough to reproduce the shape.
        let shown: String = query.chars().take(1024).collect();
        tracing::error!(error = %message, query = %shown, "query evaluation failed internally");
    }
    e
}

fn engine_error(e: QueryError) -> EngineError {
    match e {
        QueryError::Parse(m) => EngineError::BadQuery(m),
        QueryError::ShapeLimit { limit, message } => EngineError::BadQuery(format!(
            "{message} ({}; err-strata-query-too-complex)",
            shape_limit_key(limit)
        )),
        e @ (QueryError::Execution(_) | QueryError::TooManySamples(_)) => {
            EngineError::Execution(e.to_string())
        }
        e @ QueryError::ResponseTooLarge(_) => EngineError::Execution(format!(
            "{e} (querier.max_response_size_bytes; err-strata-response-too-large)"
        )),
        QueryError::Timeout(m) => EngineError::Timeout(m),
        QueryError::Canceled(m) => EngineError::Canceled(m),
        QueryError::Storage(e) => EngineError::Storage(e),
        QueryError::Internal(m) => EngineError::Internal(m),
    }
}

/// A float as PromQL renders it in API responses.
pub(crate) fn format_value(v: f64) -> String {
    strata_promql::format_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for (error, code) in [
            (EngineError::BadQuery("x".into()), ErrorCode::BadRequest),
            (EngineError::Execution("x".into()), ErrorCode::BadRequest),
            (EngineError::Timeout("x".into()), ErrorCode::Timeout),
            (EngineError::Canceled("x".into()), ErrorCode::Canceled),
            (EngineError::Internal("x".into()), ErrorCode::Internal),
            (
                EngineError::Storage(ServiceError::unavailable("ingester down")),
                ErrorCode::Unavailable,
            ),
        ] {
            assert_eq!(error.code(), code, "{error:?}");
        }
        let limit = engine_error(QueryError::ShapeLimit {
            limit: ShapeLimit::Depth,
            message: "too deep".into(),
        });
        assert_eq!(
            ServiceError::from_coded(&limit),
            ServiceError::bad_request(
                "too deep (querier.max_query_expression_depth; err-strata-query-too-complex)"
            )
        );
    }
}
