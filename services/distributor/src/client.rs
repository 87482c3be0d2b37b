//! Pushing to one ingester over gRPC.

use std::time::Duration;

use strata_proto::ingester::ingester_client::IngesterClient;
use strata_proto::prometheus::WriteRequest;

use strata_status::ServiceError;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::IngesterPush;

/// One ingester at a fixed address. The connection is made on first use and
/// re-made by tonic after failures.
#[derive(Debug, Clone)]
pub struct GrpcIngesterPush {
    address: String,
    client: IngesterClient<Channel>,
}

impl GrpcIngesterPush {
    /// A client for `address` (`host:port` or `http://host:port`). Must be called
    /// inside a Tokio runtime; does not connect yet.
    pub fn new(address: &str, timeout: Duration) -> Result<Self, ServiceError> {
        let uri = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| {
                ServiceError::internal(format!("invalid ingester address {address:?}: {e}"))
            })?
            .timeout(timeout)
            .connect_timeout(timeout);
        let client = IngesterClient::new(endpoint.connect_lazy())
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(16 << 20);
        Ok(Self {
            address: address.to_string(),
            client,
        })
    }
}

#[async_trait::async_trait]
impl IngesterPush for GrpcIngesterPush {
    async fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
        let span = tracing::info_span!(
            "ingester.push",
            otel.kind = "client",
            rpc.system = "grpc",
            ingester = %self.address,
            series = request.timeseries.len(),
        );
        let mut request = strata_proto::tenant_request(tenant, request)
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        strata_telemetry::inject_trace_context(&span, request.metadata_mut());
        let mut client = self.client.clone();
        match client.push(request).instrument(span).await {
            Ok(_) => Ok(()),
            Err(status) => {
                let mut error = ServiceError::from(status);
                if !error.code.is_client_error() {
                    error.message = format!("ingester {}: {}", self.address, error.message);
                }
                Err(error)
            }
        }
    }
}
