//! [`Querier`]: PromQL queries for any tenant over the ingesters and the
//! store-gateways, within the querier's and the tenant's limits (samples,
//! time, concurrent queries). The HTTP API over it is [`crate::api`]'s, its
//! lifecycle [`crate::service`]'s.

use std::sync::Arc;
use std::time::Duration;

use strata_limits::Overrides;
use tokio::sync::Semaphore;

use crate::config::{ConfigError, QuerierConfig};
use crate::engine::{EngineError, QueryEngine, QueryOutput};
use crate::error::ApiError;
use crate::ingester::IngesterQuery;
use crate::params::RangeParams;
use crate::storage::{SourceSplit, TenantQueryable};
use crate::store_gateway::StoreGatewayQuery;

/// Runs PromQL queries for any tenant over the ingesters. One per process,
/// shared by the HTTP handlers (and later the ruler).
#[derive(Debug)]
pub struct Querier {
    config: QuerierConfig,
    ingesters: Arc<dyn IngesterQuery>,
    /// The store-gateways, when blocks in object storage are read.
    store: Option<Arc<dyn StoreGatewayQuery>>,
    engine: QueryEngine,
    /// Query slots when `max_concurrent` is set.
    slots: Option<Semaphore>,
    /// Per-tenant query limits (`max_fetched_series_per_query`); none if unset.
    overrides: Option<Arc<Overrides>>,
}

impl Querier {
    pub fn new(
        config: QuerierConfig,
        ingesters: Arc<dyn IngesterQuery>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let slots = (config.max_concurrent > 0).then(|| Semaphore::new(config.max_concurrent));
        Ok(Self {
            engine: QueryEngine::new(&config),
            config,
            ingesters,
            store: None,
            slots,
            overrides: None,
        })
    }

    /// Reads data older than `query_store_after` from `store` too.
    pub fn with_store_gateways(mut self, store: Arc<dyn StoreGatewayQuery>) -> Self {
        self.store = Some(store);
        self
    }

    /// Enforces the tenants' query limits from `overrides`.
    pub fn with_overrides(mut self, overrides: Arc<Overrides>) -> Self {
        self.overrides = Some(overrides);
        self
    }

    /// The tenant's metric metadata from the ingesters (the only place it is
    /// kept), merged and limited as [`crate::metadata`] describes.
    pub(crate) async fn metric_metadata(
        &self,
        tenant: &str,
        metric: &str,
        limits: crate::metadata::MetadataLimits,
    ) -> Result<crate::metadata::MetadataByMetric, ApiError> {
        let request = strata_proto::ingester::MetricsMetadataRequest {
            metric: metric.to_string(),
            limit: limits.metrics,
            limit_per_metric: limits.per_metric,
        };
        let call = self.ingesters.metrics_metadata(tenant, request);
        let entries = match tokio::time::timeout(self.config.timeout.0, call).await {
            Ok(result) => result.map_err(ApiError::from_service)?,
            Err(_) => return Err(ApiError::timeout("metadata request timed out")),
        };
        Ok(crate::metadata::merge(entries, limits))
    }

    /// The tenant's exemplars within `[start_ms, end_ms]` of the series any of
    /// `matcher_sets` selects, from the ingesters (the only place they are
    /// kept), merged as [`crate::exemplars`] describes.
    pub(crate) async fn exemplars(
        &self,
        tenant: &str,
        matcher_sets: &[Vec<strata_model::Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<crate::exemplars::ExemplarsBySeries, ApiError> {
        let request = strata_proto::ingester::ExemplarQueryRequest {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matcher_sets: matcher_sets
                .iter()
                .map(|set| strata_proto::ingester::MatcherSet {
                    matchers: set.iter().map(strata_proto::matcher_to_proto).collect(),
                })
                .collect(),
        };
        let call = self.ingesters.query_exemplars(tenant, request);
        let answers = match tokio::time::timeout(self.config.timeout.0, call).await {
            Ok(result) => result.map_err(ApiError::from_service)?,
            Err(_) => return Err(ApiError::timeout("exemplar query timed out")),
        };
        Ok(crate::exemplars::merge(answers))
    }

    pub fn config(&self) -> &QuerierConfig {
        &self.config
    }

    /// One tenant's series in the ingesters and store-gateways, for one
    /// query: it carries the tenant's per-query limits.
    pub fn queryable(&self, tenant: &str) -> TenantQueryable {
        let max_series = self
            .overrides
            .as_ref()
            .map_or(0, |o| o.for_tenant(tenant).max_fetched_series_per_query);
        let queryable = TenantQueryable::new(tenant, Arc::clone(&self.ingesters))
            .with_max_fetched_series(max_series);
        match &self.store {
            Some(store) => queryable.with_store(
                Arc::clone(store),
                SourceSplit {
                    ingesters_within_ms: self.config.query_ingesters_within.as_millis_i64(),
                    store_after_ms: self.config.query_store_after.as_millis_i64(),
                },
            ),
            None => queryable,
        }
    }

    /// Evaluates `query` at `time_ms` for `tenant`. `timeout` can shorten the
    /// configured timeout, which covers waiting for a query slot too.
    pub async fn instant_query(
        &self,
        tenant: &str,
        query: &str,
        time_ms: i64,
        timeout: Option<Duration>,
    ) -> Result<QueryOutput, ApiError> {
        let storage = self.queryable(tenant);
        let limits = self.query_limits(tenant);
        self.run(
            limits.timeout(timeout),
            self.engine
                .instant_query(&storage, query, time_ms, limits.engine(timeout)),
        )
        .await
    }

    /// The querier's query limits, lowered by the tenant's where it has them.
    fn query_limits(&self, tenant: &str) -> QueryLimits {
        let mut limits = QueryLimits {
            max_samples: self.config.max_samples,
            timeout: self.config.timeout.0,
        };
        if let Some(tenant_limits) = self.overrides.as_ref().map(|o| o.for_tenant(tenant)) {
            limits.max_samples =
                lower_nonzero(limits.max_samples, tenant_limits.max_samples_per_query);
            let tenant_timeout = tenant_limits.query_timeout.0;
            if !tenant_timeout.is_zero() {
                limits.timeout = limits.timeout.min(tenant_timeout);
            }
        }
        limits
    }

    /// The tenant's `max_total_query_length` refusal of the range
    /// [start, end], if it is longer (None when within it or without a limit).
    pub(crate) fn query_length_refusal(
        &self,
        tenant: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Option<String> {
        let limit = self
            .overrides
            .as_ref()?
            .for_tenant(tenant)
            .max_total_query_length;
        let limit_ms = limit.as_millis_i64();
        let length_ms = end_ms.saturating_sub(start_ms);
        (limit_ms > 0 && length_ms > limit_ms).then(|| {
            let length = strata_model::format_duration(Duration::from_millis(
                u64::try_from(length_ms).unwrap_or(u64::MAX),
            ));
            format!(
                "the total query time range exceeds the limit (query length: {length}, limit: {}; \
                 max_total_query_length) (err-strata-max-total-query-length)",
                strata_model::format_duration(limit.0)
            )
        })
    }

    /// Evaluates `query` over a validated range for `tenant`.
    pub async fn range_query(
        &self,
        tenant: &str,
        query: &str,
        range: RangeParams,
        timeout: Option<Duration>,
    ) -> Result<QueryOutput, ApiError> {
        if let Some(refusal) = self.query_length_refusal(tenant, range.start_ms, range.end_ms) {
            return Err(ApiError::bad_data(refusal));
        }
        let storage = self.queryable(tenant);
        let limits = self.query_limits(tenant);
        self.run(
            limits.timeout(timeout),
            self.engine.range_query(
                &storage,
                query,
                range.start_ms,
                range.end_ms,
                range.step_ms,
                limits.engine(timeout),
            ),
        )
        .await
    }

    /// `query` prettified as `/api/v1/format_query` answers it, within the
    /// shape limits and the response byte limit.
    pub async fn format_query(&self, query: &str) -> Result<String, ApiError> {
        self.engine
            .format_query(query)
            .await
            .map_err(ApiError::from)
    }

    /// The limits on a query's text and tree (also for `match[]` selectors).
    pub(crate) fn shape_limits(&self) -> &strata_promql::QueryShapeLimits {
        self.engine.shape()
    }

    /// Runs `evaluation` within `timeout` (waiting for a query slot included).
    async fn run(
        &self,
        timeout: Duration,
        evaluation: impl std::future::Future<Output = Result<QueryOutput, EngineError>>,
    ) -> Result<QueryOutput, ApiError> {
        self.guarded(timeout, async { evaluation.await.map_err(ApiError::from) })
            .await
    }

    /// Runs `work` in a query slot within `timeout` (waiting for the slot
    /// included): what every query, PromQL or remote read, goes through.
    pub(crate) async fn guarded<T>(
        &self,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let guarded = async {
            let _slot = match &self.slots {
                Some(slots) => Some(slots.acquire().await.map_err(|_| {
                    ApiError::from_service(strata_status::ServiceError::unavailable(
                        "the querier is shutting down",
                    ))
                })?),
                None => None,
            };
            work.await
        };
        match tokio::time::timeout(timeout, guarded).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::timeout("query timed out in query execution")),
        }
    }

    /// The sample limit and timeout of one remote-read request of `tenant`:
    /// those of a query (the querier's, lowered by the tenant's).
    pub(crate) fn read_limits(&self, tenant: &str) -> (usize, Duration) {
        let limits = self.query_limits(tenant);
        (limits.max_samples, limits.timeout)
    }
}

/// One query's limits: the querier's, lowered by its tenant's.
#[derive(Debug, Clone, Copy)]
struct QueryLimits {
    max_samples: usize,
    timeout: Duration,
}

impl QueryLimits {
    /// The request's `timeout` parameter can only shorten the limit.
    fn timeout(&self, requested: Option<Duration>) -> Duration {
        effective_timeout(self.timeout, requested)
    }

    /// What the engine enforces itself: the sample limit, and the deadline it
    /// checks at every step (so a long evaluation stops, not only its caller).
    fn engine(&self, requested: Option<Duration>) -> crate::engine::Limits {
        crate::engine::Limits {
            max_samples: self.max_samples,
            timeout: self.timeout(requested),
        }
    }
}

/// How long a request may wait for a query slot and run: the querier's timeout,
/// shortened by the request's `timeout` parameter.
fn effective_timeout(configured: Duration, requested: Option<Duration>) -> Duration {
    requested.map_or(configured, |r| r.min(configured))
}

/// The lower of two limits where 0 means "none" for `tenant`.
fn lower_nonzero(querier: usize, tenant: usize) -> usize {
    match (querier, tenant) {
        (q, 0) => q,
        (0, t) => t,
        (q, t) => q.min(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::ResultData;

    #[derive(Debug)]
    struct NoIngesters;

    #[async_trait::async_trait]
    impl IngesterQuery for NoIngesters {
        async fn query_stream(
            &self,
            _: &str,
            _: strata_proto::ingester::QueryRequest,
        ) -> Result<Vec<strata_proto::types::StreamSeries>, strata_status::ServiceError> {
            Ok(vec![])
        }
        async fn label_names(
            &self,
            _: &str,
            _: strata_proto::ingester::LabelNamesRequest,
        ) -> Result<Vec<String>, strata_status::ServiceError> {
            Ok(vec![])
        }
        async fn label_values(
            &self,
            _: &str,
            _: strata_proto::ingester::LabelValuesRequest,
        ) -> Result<Vec<String>, strata_status::ServiceError> {
            Ok(vec![])
        }
        async fn series(
            &self,
            _: &str,
            _: strata_proto::ingester::SeriesRequest,
        ) -> Result<Vec<strata_model::Labels>, strata_status::ServiceError> {
            Ok(vec![])
        }
    }

    fn output() -> QueryOutput {
        QueryOutput {
            data: ResultData::Vector(vec![]),
            warnings: vec![],
            infos: vec![],
        }
    }

    #[tokio::test]
    async fn slots_are_released_when_a_query_times_out() {
        let config = QuerierConfig {
            max_concurrent: 1,
            ..QuerierConfig::default()
        };
        let querier = Querier::new(config, Arc::new(NoIngesters)).unwrap();
        let ms = Duration::from_millis;
        let hanging = querier.run(ms(200), std::future::pending());
        let waiting = async {
            // Starts after the hanging query holds the only slot.
            tokio::time::sleep(ms(20)).await;
            querier.run(ms(50), async { Ok(output()) }).await
        };
        let (hanging, waiting) = tokio::join!(hanging, waiting);
        assert_eq!(hanging.unwrap_err().error_type, "timeout");
        assert_eq!(waiting.unwrap_err().error_type, "timeout");
        // The timed-out query gave its slot back.
        let ok = querier.run(ms(50), async { Ok(output()) }).await;
        assert_eq!(ok, Ok(output()));
    }

    #[tokio::test]
    async fn the_timeout_parameter_only_shortens() {
        let config = QuerierConfig {
            timeout: strata_model::ConfigDuration(Duration::from_millis(30)),
            ..QuerierConfig::default()
        };
        let querier = Querier::new(config, Arc::new(NoIngesters)).unwrap();
        let limits = querier.query_limits("t");
        assert_eq!(
            limits.timeout(Some(Duration::from_secs(3600))),
            Duration::from_millis(30)
        );
        assert_eq!(
            limits.timeout(Some(Duration::from_millis(5))),
            Duration::from_millis(5)
        );
        let started = std::time::Instant::now();
        let err = querier
            .run(
                limits.timeout(Some(Duration::from_secs(3600))),
                std::future::pending(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(Querier::new(
            QuerierConfig {
                max_samples: 0,
                ..QuerierConfig::default()
            },
            Arc::new(NoIngesters)
        )
        .is_err());
    }

    #[tokio::test]
    async fn a_tenant_s_query_limits_lower_the_querier_s_and_are_enforced() {
        let querier_config = QuerierConfig {
            max_samples: 1_000,
            timeout: strata_model::ConfigDuration(Duration::from_secs(60)),
            ..QuerierConfig::default()
        };
        let overrides = Arc::new(Overrides::new(strata_limits::Limits::default()));
        let small = strata_limits::Limits {
            max_samples_per_query: 5,
            query_timeout: strata_model::ConfigDuration(Duration::from_millis(20)),
            ..strata_limits::Limits::default()
        };
        let big = strata_limits::Limits {
            max_samples_per_query: 1_000_000,
            query_timeout: strata_model::ConfigDuration(Duration::from_secs(3600)),
            ..strata_limits::Limits::default()
        };
        overrides.replace_tenant_overrides(
            [("small".to_string(), small), ("big".to_string(), big)].into(),
        );
        let querier = Querier::new(querier_config, Arc::new(NoIngesters))
            .unwrap()
            .with_overrides(overrides);

        let limits = querier.query_limits("small");
        assert_eq!(limits.max_samples, 5);
        assert_eq!(limits.timeout(None), Duration::from_millis(20));
        // A tenant's limit never raises the querier's.
        let limits = querier.query_limits("big");
        assert_eq!(limits.max_samples, 1_000);
        assert_eq!(limits.timeout(None), Duration::from_secs(60));
        let limits = querier.query_limits("someone-else");
        assert_eq!(
            (limits.max_samples, limits.timeout(None)),
            (1_000, Duration::from_secs(60))
        );

        // A subquery of 11 steps holds 11 samples: over "small"'s 5, not over 1000.
        let query = "sum_over_time(vector(1)[10m:1m])";
        let err = querier
            .instant_query("small", query, 3_600_000, None)
            .await
            .unwrap_err();
        assert_eq!(err.error_type, "execution", "{err:?}");
        assert!(err.message.contains("too many samples"), "{err:?}");
        let ok = querier
            .instant_query("someone-else", query, 3_600_000, None)
            .await
            .unwrap();
        assert!(
            matches!(ok.data, ResultData::Vector(ref v) if v.len() == 1),
            "{ok:?}"
        );
    }
}
