//! The store-gateway's client, the one the querier reads blocks through: one
//! store-gateway over gRPC ([`StoreGatewayClient::remote`]), or the process's
//! own through its gRPC service trait ([`StoreGatewayClient::in_process`]),
//! so both paths run the same server code. The querier's `StoreGatewayQuery`
//! is implemented for it in the querier.

use std::sync::Arc;

use strata_grpc_client::{in_process, ClientOptions, Peer};
use strata_proto::storegateway::store_gateway_client::StoreGatewayClient as GeneratedClient;
use strata_proto::storegateway::store_gateway_server::StoreGateway as StoreGatewayApi;
use strata_proto::storegateway::{
    LabelNamesRequest, LabelValuesRequest, SeriesRequest, SeriesResponse,
};
use strata_proto::types::StreamSeries;
use strata_status::ServiceError;
use tonic::transport::Channel;

use crate::service::StoreGatewayGrpc;
use crate::store::BucketStore;

/// One store-gateway, remote or in-process; cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreGatewayClient {
    target: Target,
}

#[derive(Debug, Clone)]
enum Target {
    /// Connects on first use, re-connected by tonic after failures.
    Remote {
        peer: Peer,
        client: GeneratedClient<Channel>,
    },
    InProcess(StoreGatewayGrpc),
}

impl StoreGatewayClient {
    /// The store-gateway at `address` (`host:port` or a URI). Must be called
    /// inside a Tokio runtime; does not connect yet.
    pub fn remote(address: &str, options: &ClientOptions) -> Result<Self, ServiceError> {
        let (peer, channel) = Peer::connect_lazy("store-gateway", address, options)?;
        let client =
            GeneratedClient::new(channel).max_decoding_message_size(options.max_recv_message_size);
        Ok(Self {
            target: Target::Remote { peer, client },
        })
    }

    /// The process's own store-gateway.
    pub fn in_process(store: Arc<BucketStore>) -> Self {
        Self {
            target: Target::InProcess(StoreGatewayGrpc::new(store)),
        }
    }

    /// Series matching the request with their chunks overlapping [min, max]
    /// (labels only with `skip_chunks`), once per block holding them.
    pub async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let series = |batch: SeriesResponse| batch.series;
        match &self.target {
            Target::Remote { peer, client } => {
                let span = peer.span("store_gateway.series");
                let mut client = client.clone();
                peer.server_stream(span, tenant, request, |r| client.series(r), series)
                    .await
            }
            Target::InProcess(service) => {
                in_process::server_stream(tenant, request, |r| service.series(r), series).await
            }
        }
    }

    /// Label names of the series matching the request, in any order.
    pub async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = match &self.target {
            Target::Remote { peer, client } => {
                let span = peer.span("store_gateway.label_names");
                let mut client = client.clone();
                peer.unary(span, tenant, request, |r| client.label_names(r))
                    .await?
            }
            Target::InProcess(service) => {
                in_process::unary(tenant, request, |r| service.label_names(r)).await?
            }
        };
        Ok(response.label_names)
    }

    /// Values of one label among the series matching the request.
    pub async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = match &self.target {
            Target::Remote { peer, client } => {
                let span = peer.span("store_gateway.label_values");
                let mut client = client.clone();
                peer.unary(span, tenant, request, |r| client.label_values(r))
                    .await?
            }
            Target::InProcess(service) => {
                in_process::unary(tenant, request, |r| service.label_values(r)).await?
            }
        };
        Ok(response.label_values)
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
}
