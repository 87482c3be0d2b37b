//! The store-gateway's client, the one the querier reads blocks through: one
//! store-gateway over gRPC ([`StoreGatewayClient::remote`]), or the process's
//! own through its gRPC service trait ([`StoreGatewayClient::in_process`]),
//! so both paths run the same server code. The querier's `StoreGatewayQuery`
//! is implemented for it in the querier.

use std::sync::Arc;

use strata_grpc_client::{ClientOptions, ClientTarget};
use strata_proto::storegateway::store_gateway_client::StoreGatewayClient as GeneratedClient;
use strata_proto::storegateway::store_gateway_server::StoreGateway as StoreGatewayApi;
use strata_proto::storegateway::{
    LabelNamesRequest, LabelValuesRequest, SeriesRequest, SeriesResponse,
};
use strata_proto::types::StreamSeries;
use strata_status::ServiceError;
use tonic::transport::Channel;

use crate::service::StoreGatewayGrpc;
use crate::store::{BlocksAnswer, BucketStore};

/// One store-gateway, remote or in-process; cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreGatewayClient {
    target: ClientTarget<GeneratedClient<Channel>, StoreGatewayGrpc>,
}

impl StoreGatewayClient {
    /// The store-gateway at `address` (`host:port` or a URI). Must be called
    /// inside a Tokio runtime; does not connect yet.
    pub fn remote(address: &str, options: &ClientOptions) -> Result<Self, ServiceError> {
        let target = ClientTarget::remote("store-gateway", address, options, |channel| {
            GeneratedClient::new(channel).max_decoding_message_size(options.max_recv_message_size)
        })?;
        Ok(Self { target })
    }

    /// The process's own store-gateway.
    pub fn in_process(store: Arc<BucketStore>) -> Self {
        Self {
            target: ClientTarget::InProcess(StoreGatewayGrpc::new(store)),
        }
    }

    /// Series matching the request with their chunks overlapping [min, max]
    /// (labels only with `skip_chunks`), once per block holding them, and
    /// the blocks read.
    pub async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<BlocksAnswer<Vec<StreamSeries>>, ServiceError> {
        let batches = self
            .target
            .server_stream(
                "store_gateway.series",
                tenant,
                request,
                |mut client, r| async move { client.series(r).await },
                |service, r| service.series(r),
                |batch: SeriesResponse| vec![batch],
            )
            .await?;
        let mut answer = BlocksAnswer::<Vec<StreamSeries>>::default();
        for batch in batches {
            answer.value.extend(batch.series);
            answer.queried_blocks.extend(batch.queried_blocks);
        }
        Ok(answer)
    }

    /// Label names of the series matching the request, in any order, and
    /// the blocks read.
    pub async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<BlocksAnswer<Vec<String>>, ServiceError> {
        let response = self
            .target
            .unary(
                "store_gateway.label_names",
                tenant,
                request,
                |mut client, r| async move { client.label_names(r).await },
                |service, r| service.label_names(r),
            )
            .await?;
        Ok(BlocksAnswer {
            value: response.label_names,
            queried_blocks: response.queried_blocks,
        })
    }

    /// Values of one label among the series matching the request, and the
    /// blocks read.
    pub async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<BlocksAnswer<Vec<String>>, ServiceError> {
        let response = self
            .target
            .unary(
                "store_gateway.label_values",
                tenant,
                request,
                |mut client, r| async move { client.label_values(r).await },
                |service, r| service.label_values(r),
            )
            .await?;
        Ok(BlocksAnswer {
            value: response.label_values,
            queried_blocks: response.queried_blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn unreachable_store_gateway_is_named_in_the_error() {
        let options = ClientOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(200),
            max_recv_message_size: 1 << 20,
        };
        // Port 1 on localhost: nothing listens there.
        let client = StoreGatewayClient::remote("127.0.0.1:1", &options).unwrap();
        let err = client
            .series("t", SeriesRequest::default())
            .await
            .unwrap_err();
        assert!(!err.code.is_client_error(), "{err:?}");
        assert!(err.message.contains("store-gateway 127.0.0.1:1"), "{err:?}");
    }

    #[tokio::test]
    async fn the_in_process_client_runs_the_service_s_own_checks() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let store = Arc::new(BucketStore::new(
            strata_storage::Bucket::new(Arc::new(bucket)),
            strata_storage::BucketStoreConfig {
                sync_dir: dir.path().join("sync").display().to_string(),
                ..Default::default()
            },
            crate::metrics::StoreMetrics::new(&prometheus::Registry::new()).unwrap(),
            None,
        ));
        let client = StoreGatewayClient::in_process(store);
        let names = client.label_names("t", LabelNamesRequest::default()).await;
        assert_eq!(names, Ok(BlocksAnswer::default()));
        let series = client.series("t", SeriesRequest::default()).await;
        assert_eq!(series, Ok(BlocksAnswer::default()));
        // The tenant travels as metadata, checked as a remote call's is.
        let err = client
            .label_values("bad\ntenant", LabelValuesRequest::default())
            .await
            .unwrap_err();
        assert!(err.code.is_client_error(), "{err:?}");
    }
}
