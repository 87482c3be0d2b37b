//! `-target=all`: the distributor and querier call the ingester of the same
//! process through its gRPC service trait, so the in-process path runs exactly
//! the code a remote call runs (tenant metadata, validation, error mapping),
//! only without the network.

use futures::StreamExt;
use strata_ingester::IngesterGrpc;
use strata_model::Labels;
use strata_proto::ingester::ingester_server::Ingester as IngesterApi;
use strata_proto::ingester::{
    LabelNamesRequest, LabelValuesRequest, QueryRequest, SeriesRequest, StreamSeries,
};
use strata_proto::prometheus::WriteRequest;

use strata_status::ServiceError;

#[derive(Debug, Clone)]
pub struct InProcessIngester {
    service: IngesterGrpc,
}

impl InProcessIngester {
    /// Calls the ingester the slot holds once it has started; until then
    /// calls are refused as unavailable, as a remote ingester's would be.
    pub fn new(ingester: strata_service::Slot<strata_ingester::Ingester>) -> Self {
        Self {
            service: IngesterGrpc::of_slot(ingester),
        }
    }
}

/// `message` as a gRPC request for `tenant`, for calling a service in-process.
pub(crate) fn request<T>(tenant: &str, message: T) -> Result<tonic::Request<T>, ServiceError> {
    strata_proto::tenant_request(tenant, message)
        .map_err(|e| ServiceError::bad_request(e.to_string()))
}

/// Every series of an in-process server stream, batch after batch.
pub(crate) async fn collect_series<M, S>(
    mut stream: S,
    series_of: impl Fn(M) -> Vec<StreamSeries>,
) -> Result<Vec<StreamSeries>, ServiceError>
where
    S: futures::Stream<Item = Result<M, tonic::Status>> + Unpin,
{
    let mut series = Vec::new();
    while let Some(batch) = stream.next().await {
        series.extend(series_of(batch?));
    }
    Ok(series)
}

#[async_trait::async_trait]
impl strata_distributor::IngesterPush for InProcessIngester {
    async fn push(&self, tenant: &str, message: WriteRequest) -> Result<(), ServiceError> {
        self.service.push(request(tenant, message)?).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl strata_querier::IngesterQuery for InProcessIngester {
    async fn query_stream(
        &self,
        tenant: &str,
        message: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let stream = self
            .service
            .query_stream(request(tenant, message)?)
            .await?
            .into_inner();
        collect_series(stream, |batch| batch.series).await
    }

    async fn label_names(
        &self,
        tenant: &str,
        message: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = self.service.label_names(request(tenant, message)?).await?;
        Ok(response.into_inner().label_names)
    }

    async fn label_values(
        &self,
        tenant: &str,
        message: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = self.service.label_values(request(tenant, message)?).await?;
        Ok(response.into_inner().label_values)
    }

    async fn series(
        &self,
        tenant: &str,
        message: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        let response = self.service.series(request(tenant, message)?).await?;
        Ok(response
            .into_inner()
            .series
            .into_iter()
            .map(|set| strata_proto::labels_from_proto(set.labels))
            .collect())
    }
}
