//! What every gRPC client of the querier does the same way, whatever the
//! service: connect lazily with the configured timeouts, send the tenant and
//! the trace context with each call, open the call's client span, and name the
//! peer in server-side errors.

use strata_status::ServiceError;
use tonic::transport::{Channel, Endpoint};

use crate::config::IngesterClientConfig;

/// One remote component the querier calls (an ingester, a store-gateway).
#[derive(Debug, Clone)]
pub(crate) struct GrpcPeer {
    /// `ingester`, `store-gateway`: in span names and error messages.
    kind: &'static str,
    address: String,
}

impl GrpcPeer {
    /// The peer at `address` (`http://host:port`) and a channel to it that
    /// connects on first use. Must be called inside a Tokio runtime.
    pub(crate) fn connect_lazy(
        kind: &'static str,
        address: &str,
        config: &IngesterClientConfig,
    ) -> Result<(Self, Channel), ServiceError> {
        let endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|e| {
                ServiceError::internal(format!("invalid {kind} address {address:?}: {e}"))
            })?
            .timeout(config.timeout.0)
            .connect_timeout(config.connect_timeout.0);
        let peer = Self {
            kind,
            address: address.to_string(),
        };
        Ok((peer, endpoint.connect_lazy()))
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// A request carrying the tenant and the trace context of `span`.
    pub(crate) fn request<T>(
        &self,
        tenant: &str,
        message: T,
        span: &tracing::Span,
    ) -> Result<tonic::Request<T>, ServiceError> {
        let mut request = strata_proto::tenant_request(tenant, message)
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        strata_telemetry::inject_trace_context(span, request.metadata_mut());
        Ok(request)
    }

    /// The client span of one call, `name` as its OpenTelemetry name.
    pub(crate) fn span(&self, name: &'static str) -> tracing::Span {
        tracing::info_span!(
            "grpc.client",
            otel.name = name,
            otel.kind = "client",
            rpc.system = "grpc",
            peer.kind = self.kind,
            peer.address = %self.address,
        )
    }

    /// A failed call as a [`ServiceError`]; server-side failures name the peer.
    pub(crate) fn error(&self, status: tonic::Status) -> ServiceError {
        let mut error = ServiceError::from(status);
        if !error.code.is_client_error() {
            error.message = format!("{} {}: {}", self.kind, self.address, error.message);
        }
        error
    }
}
