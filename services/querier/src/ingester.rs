//! The seam between the querier and the ingesters: [`IngesterQuery`] is what the
//! querier asks of "the ingesters", [`GrpcIngesterQuery`] asks one ingester over
//! gRPC; [`crate::ReplicatedQuery`] fans a query out to the replicas the
//! ingester ring names through the same trait.

use std::fmt;
use std::time::Duration;

use strata_model::Labels;
use strata_proto::ingester::ingester_client::IngesterClient;
use strata_proto::ingester::{
    LabelNamesRequest, LabelValuesRequest, QueryRequest, SeriesRequest, StreamSeries,
};
use strata_proto::labels_from_proto;
use strata_status::ServiceError;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::config::IngesterClientConfig;
use crate::grpc_peer::GrpcPeer;

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
}

/// One ingester over gRPC. The connection is made on first use and re-made by
/// tonic after failures; every call carries the tenant in `x-scope-orgid`.
#[derive(Debug, Clone)]
pub struct GrpcIngesterQuery {
    peer: GrpcPeer,
    client: IngesterClient<Channel>,
}

impl GrpcIngesterQuery {
    /// A client for the ingester at `address` (`http://host:port`). Must be called
    /// inside a Tokio runtime; does not connect yet.
    pub fn new(address: &str, config: &IngesterClientConfig) -> Result<Self, ServiceError> {
        let (peer, channel) = GrpcPeer::connect_lazy("ingester", address, config)?;
        let client =
            IngesterClient::new(channel).max_decoding_message_size(config.max_recv_message_size);
        Ok(Self { peer, client })
    }

    pub fn address(&self) -> &str {
        self.peer.address()
    }
}

#[async_trait::async_trait]
impl IngesterQuery for GrpcIngesterQuery {
    async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let span = self.peer.span("ingester.query_stream");
        let request = self.peer.request(tenant, request, &span)?;
        async {
            let mut stream = self
                .client
                .clone()
                .query_stream(request)
                .await
                .map_err(|s| self.peer.error(s))?
                .into_inner();
            let mut series = Vec::new();
            while let Some(batch) = stream.message().await.map_err(|s| self.peer.error(s))? {
                series.extend(batch.series);
            }
            Ok(series)
        }
        .instrument(span)
        .await
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let span = self.peer.span("ingester.label_names");
        let request = self.peer.request(tenant, request, &span)?;
        let response = self
            .client
            .clone()
            .label_names(request)
            .instrument(span)
            .await
            .map_err(|s| self.peer.error(s))?;
        Ok(response.into_inner().label_names)
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let span = self.peer.span("ingester.label_values");
        let request = self.peer.request(tenant, request, &span)?;
        let response = self
            .client
            .clone()
            .label_values(request)
            .instrument(span)
            .await
            .map_err(|s| self.peer.error(s))?;
        Ok(response.into_inner().label_values)
    }

    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        let span = self.peer.span("ingester.series");
        let request = self.peer.request(tenant, request, &span)?;
        let response = self
            .client
            .clone()
            .series(request)
            .instrument(span)
            .await
            .map_err(|s| self.peer.error(s))?;
        Ok(response
            .into_inner()
            .series
            .into_iter()
            .map(|set| labels_from_proto(set.labels))
            .collect())
    }
}

/// The default for [`IngesterClientConfig::timeout`].
pub(crate) const DEFAULT_INGESTER_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_ingester_is_an_error_not_a_panic() {
        let config = IngesterClientConfig {
            connect_timeout: strata_model::ConfigDuration(Duration::from_millis(200)),
            ..IngesterClientConfig::default()
        };
        // Port 1 on localhost: nothing listens there.
        let client = GrpcIngesterQuery::new("http://127.0.0.1:1", &config).unwrap();
        let err = client
            .label_names("t", LabelNamesRequest::default())
            .await
            .unwrap_err();
        assert!(!err.code.is_client_error(), "{err:?}");
        assert!(err.message.contains("127.0.0.1:1"), "{err:?}");

        assert!(GrpcIngesterQuery::new("not a uri", &config).is_err());
        let err = client
            .label_names("bad\ntenant", LabelNamesRequest::default())
            .await
            .unwrap_err();
        assert!(err.code.is_client_error());
    }
}
