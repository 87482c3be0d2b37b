//! A [`Peer`] and the functions around it: lazy connections with timeouts,
//! tenant and trace metadata, client spans, peer-named errors, `host:port` to
//! URI, and in-process calls with the same mapping.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use strata_status::{ErrorCode, ServiceError};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// How often a connection to a peer is pinged (HTTP/2 PING), also while no
/// call is in flight.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a ping may go unanswered before the connection is closed and
/// its calls fail.
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a client talks to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The longest one call may take.
    pub timeout: Duration,
    /// The longest establishing a connection may take.
    pub connect_timeout: Duration,
    /// The largest message accepted from the peer, in bytes.
    pub max_recv_message_size: usize,
}

/// The URI tonic wants for `address`: `host:port` (as the config and the
/// rings hold addresses, like Mimir's) becomes `http://host:port`; an address
/// with a scheme is kept as it is.
pub fn grpc_uri(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// Makes the client for the peer at an address (the shape
/// `strata_ring::ClientPool` pools, without this crate knowing rings).
pub type ClientFactory<C, E> = Arc<dyn Fn(&str) -> Result<Arc<C>, E> + Send + Sync>;

/// A client factory for a pool of peers: `own_address` (this process's own,
/// as the ring lists it) gets `local` when the process runs that service,
/// every other address a client `remote` makes.
pub fn local_or_remote<C, E, F>(
    own_address: &str,
    local: Option<Arc<C>>,
    remote: F,
) -> ClientFactory<C, E>
where
    C: ?Sized + Send + Sync + 'static,
    E: 'static,
    F: Fn(&str) -> Result<Arc<C>, E> + Send + Sync + 'static,
{
    let own_address = own_address.to_string();
    Arc::new(move |address: &str| match &local {
        Some(local) if address == own_address => Ok(local.clone()),
        _ => remote(address),
    })
}

/// One remote component a client calls (an ingester, a store-gateway).
#[derive(Debug, Clone)]
pub struct Peer {
    /// `ingester`, `store-gateway`: in spans and error messages.
    kind: &'static str,
    /// As given (`host:port`): in spans and error messages.
    address: String,
}

impl Peer {
    /// The `kind` peer at `address` (`host:port` or a URI) and a channel to
    /// it that connects on first use. Must be called inside a Tokio runtime.
    pub fn connect_lazy(
        kind: &'static str,
        address: &str,
        options: &ClientOptions,
    ) -> Result<(Self, Channel), ServiceError> {
        let endpoint = Endpoint::from_shared(grpc_uri(address))
            .map_err(|e| {
                ServiceError::internal(format!("invalid {kind} address {address:?}: {e}"))
            })?
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            // A peer that stops answering (a paused process, a black-holed
            // network) is noticed in seconds, not at the call's timeout or
            // the kernel's.
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let peer = Self {
            kind,
            address: address.to_string(),
        };
        Ok((peer, endpoint.connect_lazy()))
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The client span of one call, `name` (`ingester.push`) as its
    /// OpenTelemetry name. Its `series` field is empty until the caller
    /// records how many series the call sends.
    pub fn span(&self, name: &'static str) -> tracing::Span {
        tracing::info_span!(
            "grpc.client",
            otel.name = name,
            otel.kind = "client",
            rpc.system = "grpc",
            peer.kind = self.kind,
            peer.address = %self.address,
            series = tracing::field::Empty,
        )
    }

    /// A request carrying the tenant and the trace context of `span`.
    pub fn request<T>(
        &self,
        tenant: &str,
        message: T,
        span: &tracing::Span,
    ) -> Result<Request<T>, ServiceError> {
        let mut request = in_process::request(tenant, message)?;
        strata_telemetry::inject_trace_context(span, request.metadata_mut());
        Ok(request)
    }

    /// A failed call as a [`ServiceError`]; server-side failures name the
    /// peer (`ingester 10.0.0.1:9095: …`), the caller's own mistakes do not.
    ///
    /// A call the caller drops is never reported, so a call that ends as
    /// cancelled was cancelled by the peer or the connection (closed by a
    /// keep-alive that went unanswered, a peer shutting down): the peer's
    /// failure, not a request the caller gave up on (499).
    pub fn error(&self, status: Status) -> ServiceError {
        let mut error = ServiceError::from(status);
        if error.code == ErrorCode::Canceled {
            error.code = ErrorCode::Unavailable;
        }
        if !error.code.is_client_error() {
            error.message = format!("{} {}: {}", self.kind, self.address, error.message);
        }
        error
    }

    /// One unary call inside `span`: `call` sends the request (tenant and
    /// trace context set) with the peer's generated client.
    pub async fn unary<Req, Resp, Fut>(
        &self,
        span: tracing::Span,
        tenant: &str,
        message: Req,
        call: impl FnOnce(Request<Req>) -> Fut,
    ) -> Result<Resp, ServiceError>
    where
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let request = self.request(tenant, message, &span)?;
        let response = call(request)
            .instrument(span)
            .await
            .map_err(|s| self.error(s))?;
        Ok(response.into_inner())
    }

    /// One server-streaming call inside `span`: every item `items` takes out
    /// of the batches, in order, or the first error.
    pub async fn server_stream<Req, M, S, T, Fut>(
        &self,
        span: tracing::Span,
        tenant: &str,
        message: Req,
        call: impl FnOnce(Request<Req>) -> Fut,
        items: impl Fn(M) -> Vec<T>,
    ) -> Result<Vec<T>, ServiceError>
    where
        Fut: Future<Output = Result<Response<S>, Status>>,
        S: Stream<Item = Result<M, Status>> + Unpin,
    {
        let request = self.request(tenant, message, &span)?;
        async {
            let stream = call(request).await.map_err(|s| self.error(s))?;
            collect(stream.into_inner(), items, |s| self.error(s)).await
        }
        .instrument(span)
        .await
    }
}

/// Calling the process's own service through its gRPC trait: the same
/// tenant metadata, validation and error mapping as a remote call, without
/// the network (and without a client span: there is no hop to trace).
pub mod in_process {
    use super::*;

    /// `message` as a gRPC request for `tenant`; a tenant ID that cannot
    /// travel as metadata is the caller's mistake.
    pub fn request<T>(tenant: &str, message: T) -> Result<Request<T>, ServiceError> {
        strata_proto::tenant_request(tenant, message)
            .map_err(|e| ServiceError::bad_request(e.to_string()))
    }

    /// One unary call of the service's trait method `call`.
    pub async fn unary<Req, Resp, Fut>(
        tenant: &str,
        message: Req,
        call: impl FnOnce(Request<Req>) -> Fut,
    ) -> Result<Resp, ServiceError>
    where
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        Ok(call(request(tenant, message)?).await?.into_inner())
    }

    /// One server-streaming call of the service's trait method `call`: every
    /// item `items` takes out of the batches, in order.
    pub async fn server_stream<Req, M, S, T, Fut>(
        tenant: &str,
        message: Req,
        call: impl FnOnce(Request<Req>) -> Fut,
        items: impl Fn(M) -> Vec<T>,
    ) -> Result<Vec<T>, ServiceError>
    where
        Fut: Future<Output = Result<Response<S>, Status>>,
        S: Stream<Item = Result<M, Status>> + Unpin,
    {
        let stream = call(request(tenant, message)?).await?.into_inner();
        collect(stream, items, ServiceError::from).await
    }
}

/// Every item of a server stream, batch after batch.
async fn collect<M, S, T>(
    mut stream: S,
    items: impl Fn(M) -> Vec<T>,
    error: impl Fn(Status) -> ServiceError,
) -> Result<Vec<T>, ServiceError>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
{
    let mut all = Vec::new();
    while let Some(batch) = stream.next().await {
        all.extend(items(batch.map_err(&error)?));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_uris_once() {
        assert_eq!(grpc_uri("10.0.0.1:9095"), "http://10.0.0.1:9095");
        assert_eq!(grpc_uri("http://10.0.0.1:9095"), "http://10.0.0.1:9095");
        assert_eq!(grpc_uri("https://ingester:9095"), "https://ingester:9095");
    }

    #[test]
    fn own_address_gets_the_local_client() {
        let local: Arc<str> = Arc::from("local");
        let factory = local_or_remote("me:9095", Some(local), |address: &str| {
            Ok::<Arc<str>, ()>(Arc::from(format!("remote {address}")))
        });
        assert_eq!(factory("me:9095").as_deref(), Ok("local"));
        assert_eq!(factory("other:9095").as_deref(), Ok("remote other:9095"));

        // A process without the service calls even its own address remotely.
        let factory = local_or_remote("me:9095", None, |address: &str| {
            Ok::<Arc<str>, ()>(Arc::from(format!("remote {address}")))
        });
        assert_eq!(factory("me:9095").as_deref(), Ok("remote me:9095"));
    }

    #[tokio::test]
    async fn server_errors_name_the_peer_client_errors_do_not() {
        let options = ClientOptions {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_recv_message_size: 1 << 20,
        };
        let (peer, _channel) = Peer::connect_lazy("ingester", "10.0.0.1:9095", &options)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let error = peer.error(Status::unavailable("connection refused"));
        assert_eq!(error.message, "ingester 10.0.0.1:9095: connection refused");
        let error = peer.error(Status::invalid_argument("bad matcher"));
        assert_eq!(error.message, "bad matcher");
        // Cancelled by the connection, not by the caller: the peer failed.
        let error = peer.error(Status::cancelled("operation was canceled"));
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(
            error.message,
            "ingester 10.0.0.1:9095: operation was canceled"
        );

        assert!(Peer::connect_lazy("ingester", "not a uri", &options).is_err());
        let span = peer.span("ingester.push");
        assert!(peer.request("bad\ntenant", (), &span).is_err());
    }
}
