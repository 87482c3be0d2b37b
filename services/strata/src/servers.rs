//! The process's HTTP and gRPC servers as services: each binds its address
//! while starting (a port in use stops the process, naming the address),
//! serves while running (a server that dies stops the process), and drains
//! its connections on stop.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use parking_lot::Mutex;
use strata_service::{BoxError, Service, Stop};
use tokio::net::TcpListener;

use crate::http_server::{HttpServerLimits, HttpServerMetrics};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server was not started")]
    NotStarted,
    #[error("the gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

/// The HTTP server: every component's routes on one port.
pub struct HttpServerService {
    addr: SocketAddr,
    router: Router,
    limits: HttpServerLimits,
    metrics: HttpServerMetrics,
    grace: Duration,
    listener: Mutex<Option<TcpListener>>,
}

impl HttpServerService {
    pub fn new(
        addr: SocketAddr,
        router: Router,
        limits: HttpServerLimits,
        metrics: HttpServerMetrics,
        grace: Duration,
    ) -> Self {
        Self {
            addr,
            router,
            limits,
            metrics,
            grace,
            listener: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Service for HttpServerService {
    async fn starting(&self) -> Result<(), BoxError> {
        let listener = bind(self.addr).await?;
        tracing::info!(addr = %self.addr, "HTTP server listening");
        *self.listener.lock() = Some(listener);
        Ok(())
    }

    async fn running(&self, stop: Stop) -> Result<(), BoxError> {
        let listener = self.listener.lock().take().ok_or(ServerError::NotStarted)?;
        crate::http_server::serve(
            listener,
            self.router.clone(),
            self.limits,
            self.metrics.clone(),
            stop.receiver(),
            self.grace,
        )
        .await;
        Ok(())
    }
}

/// The gRPC services of this process's components, added to the server.
#[derive(Default)]
pub struct GrpcServices {
    pub ingester: Option<
        strata_proto::ingester::ingester_server::IngesterServer<strata_ingester::IngesterGrpc>,
    >,
    pub store_gateway: Option<
        strata_proto::storegateway::store_gateway_server::StoreGatewayServer<
            strata_store_gateway::StoreGatewayGrpc,
        >,
    >,
}

impl GrpcServices {
    pub fn is_empty(&self) -> bool {
        self.ingester.is_none() && self.store_gateway.is_none()
    }
}

/// The gRPC server: the ingester's and store-gateway's services.
pub struct GrpcServerService {
    addr: SocketAddr,
    services: Mutex<Option<GrpcServices>>,
    keepalive_time: Duration,
    keepalive_timeout: Duration,
    listener: Mutex<Option<TcpListener>>,
}

impl GrpcServerService {
    pub fn new(
        addr: SocketAddr,
        services: GrpcServices,
        keepalive_time: Duration,
        keepalive_timeout: Duration,
    ) -> Self {
        Self {
            addr,
            services: Mutex::new(Some(services)),
            keepalive_time,
            keepalive_timeout,
            listener: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Service for GrpcServerService {
    async fn starting(&self) -> Result<(), BoxError> {
        let listener = bind(self.addr).await?;
        tracing::info!(addr = %self.addr, "gRPC server listening");
        *self.listener.lock() = Some(listener);
        Ok(())
    }

    async fn running(&self, mut stop: Stop) -> Result<(), BoxError> {
        let listener = self.listener.lock().take().ok_or(ServerError::NotStarted)?;
        let services = self.services.lock().take().ok_or(ServerError::NotStarted)?;
        // Every gRPC call is a small request and a small answer: without
        // TCP_NODELAY, Nagle's algorithm meets the peer's delayed ACK and a
        // call between processes waits ~40 ms (measured: distributed query
        // medians 42–55 ms, 2–12 ms with it). `serve_with_incoming` leaves
        // the accepted sockets as they come, so it is set here.
        use tokio_stream::StreamExt as _;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
            if let Ok(stream) = &stream {
                let _ = stream.set_nodelay(true);
            }
            stream
        });
        tonic::transport::Server::builder()
            // Dead peers (a crashed distributor, a black-holed network) are
            // found by HTTP/2 pings, not kept forever.
            .http2_keepalive_interval(Some(self.keepalive_time))
            .http2_keepalive_timeout(Some(self.keepalive_timeout))
            // Each call a span (`ingester.Push`) in the caller's trace.
            .layer(strata_telemetry::GrpcServerTraceLayer::new("ingester"))
            .layer(strata_telemetry::GrpcServerMetricsLayer)
            .add_optional_service(services.ingester)
            .add_optional_service(services.store_gateway)
            .serve_with_incoming_shutdown(incoming, async move { stop.wait().await })
            .await
            .map_err(ServerError::Grpc)?;
        Ok(())
    }
}
