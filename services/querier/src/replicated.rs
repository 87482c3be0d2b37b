//! Reading a tenant's recent data from every ingester of the ring. Each series
//! lives on RF ingesters, so all healthy ingesters are asked in parallel, up to
//! RF/2 of them may fail, and the replicas' answers are merged (duplicates are
//! removed when the querier merges series by labels and samples by timestamp).

use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use strata_model::Labels;
use strata_proto::ingester::{
    ExemplarQueryRequest, LabelNamesRequest, LabelValuesRequest, MetricsMetadataRequest,
    QueryRequest, SeriesRequest,
};
use strata_proto::prometheus::{MetricMetadata, TimeSeries};
use strata_proto::types::StreamSeries;
use strata_ring::{Operation, Ring};
use strata_status::ServiceError;

use crate::ingester::IngesterQuery;

/// Makes the client for the ingester at an address (gRPC, or in-process for
/// the process's own ingester).
pub type QueryClientFactory = strata_ring::ClientFactory<dyn IngesterQuery, ServiceError>;

/// One client per ingester address, made on first use and reused.
pub type QueryClientPool = strata_ring::ClientPool<dyn IngesterQuery, ServiceError>;

/// The ingesters of a ring, as one [`IngesterQuery`].
#[derive(Debug)]
pub struct ReplicatedQuery {
    ring: Ring,
    pool: QueryClientPool,
}

impl ReplicatedQuery {
    pub fn new(ring: Ring, pool: QueryClientPool) -> Self {
        Self { ring, pool }
    }

    /// Runs `call` on every healthy ingester; the answers of those that
    /// succeeded, or the first error when more than `max_errors` failed.
    async fn fan_out<T, F, Fut>(&self, call: F) -> Result<Vec<T>, ServiceError>
    where
        F: Fn(Arc<dyn IngesterQuery>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let set = self
            .ring
            .replication_set_for_operation(Operation::Read)
            .map_err(|e| ServiceError::unavailable(format!("cannot pick ingesters: {e}")))?;
        let calls = set.instances.iter().map(|instance| {
            let client = self.pool.client(&instance.addr);
            let call = &call;
            async move { call(client?).await }
        });
        let mut answers = Vec::with_capacity(set.instances.len());
        let mut errors = Vec::new();
        for outcome in join_all(calls).await {
            match outcome {
                Ok(answer) => answers.push(answer),
                // A client error (bad matcher, bad tenant) is the same on
                // every replica: report it rather than tolerate it.
                Err(e) if e.code.is_client_error() => return Err(e),
                Err(e) => errors.push(e),
            }
        }
        if errors.len() > set.max_errors {
            let first = errors.swap_remove(0);
            return Err(ServiceError::new(
                first.code,
                format!(
                    "{} of {} ingesters failed (at most {} may): {}",
                    errors.len() + 1,
                    set.instances.len(),
                    set.max_errors,
                    first.message
                ),
            ));
        }
        Ok(answers)
    }
}

#[async_trait::async_trait]
impl IngesterQuery for ReplicatedQuery {
    async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.query_stream(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.label_names(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.label_values(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.series(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn metrics_metadata(
        &self,
        tenant: &str,
        request: MetricsMetadataRequest,
    ) -> Result<Vec<MetricMetadata>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.metrics_metadata(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn query_exemplars(
        &self,
        tenant: &str,
        request: ExemplarQueryRequest,
    ) -> Result<Vec<TimeSeries>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.query_exemplars(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ring::{Lifecycler, MemoryKv, RingConfig};

    #[derive(Debug)]
    struct FakeIngester {
        names: Vec<String>,
        down: bool,
    }

    #[async_trait::async_trait]
    impl IngesterQuery for FakeIngester {
        async fn query_stream(
            &self,
            _: &str,
            _: QueryRequest,
        ) -> Result<Vec<StreamSeries>, ServiceError> {
            Ok(Vec::new())
        }
        async fn label_names(
            &self,
            _: &str,
            _: LabelNamesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            if self.down {
                Err(ServiceError::unavailable("connection refused"))
            } else {
                Ok(self.names.clone())
            }
        }
        async fn label_values(
            &self,
            _: &str,
            _: LabelValuesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            Ok(Vec::new())
        }
        async fn series(&self, _: &str, _: SeriesRequest) -> Result<Vec<Labels>, ServiceError> {
            Ok(Vec::new())
        }
        async fn metrics_metadata(
            &self,
            _: &str,
            _: MetricsMetadataRequest,
        ) -> Result<Vec<MetricMetadata>, ServiceError> {
            Ok(Vec::new())
        }
    }

    async fn cluster(down: &[bool]) -> (ReplicatedQuery, Vec<Lifecycler>) {
        let kv: Arc<dyn strata_ring::KvStore> = Arc::new(MemoryKv::new());
        let mut lifecyclers = Vec::new();
        for i in 0..down.len() {
            let config = RingConfig {
                instance_id: format!("ingester-{i}"),
                instance_addr: format!("addr-{i}"),
                num_tokens: 8,
                ..Default::default()
            };
            let lifecycler = Lifecycler::start(&config, kv.clone(), "ring")
                .await
                .unwrap();
            lifecycler.activate().await.unwrap();
            lifecyclers.push(lifecycler);
        }
        let ring = Ring::new(&RingConfig::default(), kv, "ring").await.unwrap();
        let down = down.to_vec();
        let pool = QueryClientPool::new(Arc::new(move |addr: &str| {
            let i: usize = addr.trim_start_matches("addr-").parse().unwrap();
            Ok(Arc::new(FakeIngester {
                names: vec![format!("label{i}")],
                down: down[i],
            }) as Arc<dyn IngesterQuery>)
        }));
        (ReplicatedQuery::new(ring, pool), lifecyclers)
    }

    #[tokio::test]
    async fn asks_every_ingester_and_tolerates_one_failure_of_three() {
        let (query, _l) = cluster(&[false, false, true]).await;
        let mut names = query
            .label_names("t", LabelNamesRequest::default())
            .await
            .unwrap();
        names.sort();
        assert_eq!(names, ["label0", "label1"]);

        let (query, _l) = cluster(&[false, true, true]).await;
        let err = query
            .label_names("t", LabelNamesRequest::default())
            .await
            .unwrap_err();
        assert!(
            err.message.contains("2 of 3 ingesters failed"),
            "{}",
            err.message
        );
    }
}
