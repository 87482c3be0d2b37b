//! The querier: the Prometheus HTTP API (`/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/<name>/values` and the small status endpoints, also under
//! `/prometheus/api/v1/`) over the PromQL engine, reading each tenant's recent
//! series from the ingesters and older ones from the store-gateways
//! (`query_ingesters_within`, `query_store_after`). It owns request parsing and validation as Prometheus
//! does them, the JSON shapes of Prometheus's responses, the mapping of engine and
//! storage errors to Prometheus's error types and statuses, the decoding of
//! streamed chunks into samples within the queried range, and the merging of
//! series that several sources return.
//!
//! It deliberately does not own PromQL evaluation (`strata-promql`), chunk
//! encoding (`strata-tsdb`), who the tenant is (a resolver passed to [`router`]),
//! which ingesters hold a tenant (the ring; [`ReplicatedQuery`] asks them
//! all and tolerates RF/2 failures) or which store-gateway serves which block
//! (their ring; [`StoreGatewaySet`] asks them all). It keeps no state between
//! requests.

mod api;
mod config;
mod engine;
mod ingester;
mod json;
mod params;
mod replicated;
mod storage;
mod store_gateway;

use std::sync::Arc;
use std::time::Duration;

use strata_limits::Overrides;
use tokio::sync::Semaphore;

pub use api::{router, ApiError, TenantResolver};
pub use config::{ConfigError, IngesterClientConfig, QuerierConfig};
pub use engine::{EngineError, QueryOutput};
pub use ingester::{GrpcIngesterQuery, IngesterQuery};
pub use json::{InstantSample, ResultData};
pub use params::{RangeParams, MAX_TIME_MS, MIN_TIME_MS};
pub use replicated::{QueryClientFactory, QueryClientPool, ReplicatedQuery};
pub use storage::{
    decode_stream_series, merge_samples, merge_series, IngesterQueryable, SourceSplit,
};
pub use store_gateway::{
    GrpcStoreGatewayQuery, StoreGatewayClientFactory, StoreGatewayClientPool, StoreGatewayQuery,
    StoreGatewaySet,
};

use engine::QueryEngine;

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

    pub fn config(&self) -> &QuerierConfig {
        &self.config
    }

    /// One tenant's series in the ingesters and store-gateways, for one
    /// query: it carries the tenant's per-query limits.
    pub fn queryable(&self, tenant: &str) -> IngesterQueryable {
        let max_series = self
            .overrides
            .as_ref()
            .map_or(0, |o| o.for_tenant(tenant).max_fetched_series_per_query);
        let queryable = IngesterQueryable::new(tenant, Arc::clone(&self.ingesters))
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
        self.run(timeout, self.engine.instant_query(&storage, query, time_ms))
            .await
    }

    /// Evaluates `query` over a validated range for `tenant`.
    pub async fn range_query(
        &self,
        tenant: &str,
        query: &str,
        range: RangeParams,
        timeout: Option<Duration>,
    ) -> Result<QueryOutput, ApiError> {
        let storage = self.queryable(tenant);
        self.run(
            timeout,
            self.engine
                .range_query(&storage, query, range.start_ms, range.end_ms, range.step_ms),
        )
        .await
    }

    async fn run(
        &self,
        timeout: Option<Duration>,
        evaluation: impl std::future::Future<Output = Result<QueryOutput, EngineError>>,
    ) -> Result<QueryOutput, ApiError> {
        let timeout = api::effective_timeout(self.config.timeout.0, timeout);
        let guarded = async {
            let _slot = match &self.slots {
                Some(slots) => Some(slots.acquire().await.map_err(|_| {
                    ApiError::from_service(strata_status::ServiceError::unavailable(
                        "the querier is shutting down",
                    ))
                })?),
                None => None,
            };
            evaluation.await.map_err(ApiError::from)
        };
        match tokio::time::timeout(timeout, guarded).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::timeout("query timed out in query execution")),
        }
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
        ) -> Result<Vec<strata_proto::ingester::StreamSeries>, strata_status::ServiceError>
        {
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
        let hanging = querier.run(Some(ms(200)), std::future::pending());
        let waiting = async {
            // Starts after the hanging query holds the only slot.
            tokio::time::sleep(ms(20)).await;
            querier.run(Some(ms(50)), async { Ok(output()) }).await
        };
        let (hanging, waiting) = tokio::join!(hanging, waiting);
        assert_eq!(hanging.unwrap_err().error_type, "timeout");
        assert_eq!(waiting.unwrap_err().error_type, "timeout");
        // The timed-out query gave its slot back.
        let ok = querier.run(Some(ms(50)), async { Ok(output()) }).await;
        assert_eq!(ok, Ok(output()));
    }

    #[tokio::test]
    async fn the_timeout_parameter_only_shortens() {
        let config = QuerierConfig {
            timeout: strata_model::ConfigDuration(Duration::from_millis(30)),
            ..QuerierConfig::default()
        };
        let querier = Querier::new(config, Arc::new(NoIngesters)).unwrap();
        let started = std::time::Instant::now();
        let err = querier
            .run(Some(Duration::from_secs(3600)), std::future::pending())
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
}
