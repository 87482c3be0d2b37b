//! The ingester's client, the one the distributor pushes through and the
//! querier reads through: one ingester over gRPC ([`IngesterClient::remote`]),
//! or the process's own through its gRPC service trait
//! ([`IngesterClient::in_process`], `-target=all`), so both paths run the same
//! server code (tenant metadata, validation, error mapping). The distributor's
//! `IngesterPush` and the querier's `IngesterQuery` are implemented for it in
//! their crates.

use strata_grpc_client::{CallSpan, ClientOptions, ClientTarget};
use strata_model::Labels;
use strata_proto::ingester::ingester_client::IngesterClient as GeneratedClient;
use strata_proto::ingester::ingester_server::Ingester as IngesterApi;
use strata_proto::ingester::{
    ExemplarQueryRequest, LabelNamesRequest, LabelValuesRequest, MetricsMetadataRequest,
    QueryRequest, QueryStreamResponse, SeriesRequest,
};
use strata_proto::prometheus::{MetricMetadata, TimeSeries, WriteRequest};
use strata_proto::types::StreamSeries;
use strata_service::Slot;
use strata_status::ServiceError;
use tonic::transport::Channel;

use crate::ingester::Ingester;
use crate::service::IngesterGrpc;

/// One ingester, remote or in-process; cheap to clone.
#[derive(Debug, Clone)]
pub struct IngesterClient {
    target: ClientTarget<GeneratedClient<Channel>, IngesterGrpc>,
}

impl IngesterClient {
    /// The ingester at `address` (`host:port` or a URI). Must be called
    /// inside a Tokio runtime; does not connect yet.
    pub fn remote(address: &str, options: &ClientOptions) -> Result<Self, ServiceError> {
        let target = ClientTarget::remote("ingester", address, options, |channel| {
            GeneratedClient::new(channel)
                .max_encoding_message_size(usize::MAX)
                .max_decoding_message_size(options.max_recv_message_size)
        })?;
        Ok(Self { target })
    }

    /// The process's own ingester, once the slot holds it; until then calls
    /// are refused as unavailable, as a remote ingester's would be.
    pub fn in_process(ingester: Slot<Ingester>) -> Self {
        Self {
            target: ClientTarget::InProcess(IngesterGrpc::of_slot(ingester)),
        }
    }

    /// Stores the series of `request` for `tenant`; `Ok` means stored durably.
    pub async fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
        let span = CallSpan::new("ingester.push").with_series(request.timeseries.len());
        self.target
            .unary(
                span,
                tenant,
                request,
                |mut client, r| async move { client.push(r).await },
                |service, r| service.push(r),
            )
            .await?;
        Ok(())
    }

    /// Series matching the request's matchers, with their chunks
    /// overlapping [start, end].
    pub async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        self.target
            .server_stream(
                "ingester.query_stream",
                tenant,
                request,
                |mut client, r| async move { client.query_stream(r).await },
                |service, r| service.query_stream(r),
                |batch: QueryStreamResponse| batch.series,
            )
            .await
    }

    /// Label names of the series matching the request, in any order.
    pub async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = self
            .target
            .unary(
                "ingester.label_names",
                tenant,
                request,
                |mut client, r| async move { client.label_names(r).await },
                |service, r| service.label_names(r),
            )
            .await?;
        Ok(response.label_names)
    }

    /// Values of one label among the series matching the request.
    pub async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = self
            .target
            .unary(
                "ingester.label_values",
                tenant,
                request,
                |mut client, r| async move { client.label_values(r).await },
                |service, r| service.label_values(r),
            )
            .await?;
        Ok(response.label_values)
    }

    /// Label sets of the series matching any of the request's matcher sets.
    pub async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        let response = self
            .target
            .unary(
                "ingester.series",
                tenant,
                request,
                |mut client, r| async move { client.series(r).await },
                |service, r| service.series(r),
            )
            .await?;
        Ok(response
            .series
            .into_iter()
            .map(|set| strata_proto::labels_from_proto(set.labels))
            .collect())
    }

    /// The tenant's exemplars of the series the request selects: labels and
    /// exemplars per series, sorted by labels.
    pub async fn query_exemplars(
        &self,
        tenant: &str,
        request: ExemplarQueryRequest,
    ) -> Result<Vec<TimeSeries>, ServiceError> {
        let response = self
            .target
            .unary(
                "ingester.query_exemplars",
                tenant,
                request,
                |mut client, r| async move { client.query_exemplars(r).await },
                |service, r| service.query_exemplars(r),
            )
            .await?;
        Ok(response.timeseries)
    }

    /// The tenant's metric metadata this ingester holds, sorted.
    pub async fn metrics_metadata(
        &self,
        tenant: &str,
        request: MetricsMetadataRequest,
    ) -> Result<Vec<MetricMetadata>, ServiceError> {
        let response = self
            .target
            .unary(
                "ingester.metrics_metadata",
                tenant,
                request,
                |mut client, r| async move { client.metrics_metadata(r).await },
                |service, r| service.metrics_metadata(r),
            )
            .await?;
        Ok(response.metadata)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn unreachable_ingester_is_an_error_not_a_panic() {
        let options = ClientOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(200),
            max_recv_message_size: 1 << 20,
        };
        // Port 1 on localhost: nothing listens there.
        let client = IngesterClient::remote("127.0.0.1:1", &options).unwrap();
        let err = client
            .label_names("t", LabelNamesRequest::default())
            .await
            .unwrap_err();
        assert!(!err.code.is_client_error(), "{err:?}");
        assert!(err.message.contains("ingester 127.0.0.1:1"), "{err:?}");
        let err = client.push("t", WriteRequest::default()).await.unwrap_err();
        assert!(err.message.contains("ingester 127.0.0.1:1"), "{err:?}");

        assert!(IngesterClient::remote("not a uri", &options).is_err());
        let err = client
            .label_names("bad\ntenant", LabelNamesRequest::default())
            .await
            .unwrap_err();
        assert!(err.code.is_client_error());
    }

    #[tokio::test]
    async fn a_starting_in_process_ingester_is_unavailable() {
        let client = IngesterClient::in_process(Slot::default());
        let err = client.push("t", WriteRequest::default()).await.unwrap_err();
        assert_eq!(err.code, strata_status::ErrorCode::Unavailable, "{err:?}");
        let err = client
            .label_names("bad\ntenant", LabelNamesRequest::default())
            .await
            .unwrap_err();
        assert!(err.code.is_client_error());
    }
}
