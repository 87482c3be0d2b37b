//! The seam between the querier and the ingesters: [`IngesterQuery`] is what the
//! querier asks of "the ingesters"; the ingester's own client
//! ([`strata_ingester::IngesterClient`], remote or in-process) asks one, and
//! [`crate::ReplicatedQuery`] fans a query out to the replicas the ingester
//! ring names through the same trait.

use std::fmt;

use strata_ingester::IngesterClient;
use strata_model::Labels;
use strata_proto::ingester::{
    ExemplarQueryRequest, LabelNamesRequest, LabelValuesRequest, MetricsMetadataRequest,
    QueryRequest, SeriesRequest,
};
use strata_proto::prometheus::{MetricMetadata, TimeSeries};
use strata_proto::types::StreamSeries;
use strata_status::ServiceError;

/// Read access to the recent data of the ingesters, one tenant per call.
#[async_trait::async_trait]
pub trait IngesterQuery: Send + Sync + fmt::Debug {
    /// Series matching the request's matchers, with their chunks overlapping
    /// [start, end] (chunks may extend beyond it).
    async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError>;

    /// Label names of the series matching the request, in any order.
    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError>;

    /// Values of one label among the series matching the request, in any order.
    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError>;

    /// Label sets of the series matching any of the request's matcher sets.
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError>;

    /// The tenant's metric metadata; replicas' entries may repeat. The
    /// default holds none (for test doubles that serve only series).
    async fn metrics_metadata(
        &self,
        _tenant: &str,
        _request: MetricsMetadataRequest,
    ) -> Result<Vec<MetricMetadata>, ServiceError> {
        Ok(Vec::new())
    }

    /// The tenant's exemplars of the series the request selects (labels and
    /// exemplars per series); replicas' copies may repeat. The default holds
    /// none (for test doubles that serve only series).
    async fn query_exemplars(
        &self,
        _tenant: &str,
        _request: ExemplarQueryRequest,
    ) -> Result<Vec<TimeSeries>, ServiceError> {
        Ok(Vec::new())
    }
}

/// One ingester, over gRPC or in-process: its own client, asked the same
/// questions.
#[async_trait::async_trait]
impl IngesterQuery for IngesterClient {
    async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        IngesterClient::query_stream(self, tenant, request).await
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        IngesterClient::label_names(self, tenant, request).await
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        IngesterClient::label_values(self, tenant, request).await
    }

    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        IngesterClient::series(self, tenant, request).await
    }

    async fn metrics_metadata(
        &self,
        tenant: &str,
        request: MetricsMetadataRequest,
    ) -> Result<Vec<MetricMetadata>, ServiceError> {
        IngesterClient::metrics_metadata(self, tenant, request).await
    }

    async fn query_exemplars(
        &self,
        tenant: &str,
        request: ExemplarQueryRequest,
    ) -> Result<Vec<TimeSeries>, ServiceError> {
        IngesterClient::query_exemplars(self, tenant, request).await
    }
}
