//! The HTTP server: HTTP/1.1 connections served by hyper with the bounds a
//! server facing the Internet needs, which `axum::serve` does not set: a
//! timeout for reading a request's headers (which also closes idle keep-alive
//! connections: hyper starts it whenever it waits for the next request), a
//! timeout for reading its body, a timeout for the whole request, and a limit
//! on connections open at once. A slowloris client, a stalled chunked push and
//! an idle connection are cut off and counted instead of holding a worker and a
//! file descriptor forever.

use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The server's bounds (`server.http_server_*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpServerLimits {
    /// Longest wait for a request's headers, and for the next request on an
    /// idle keep-alive connection.
    pub(crate) idle_timeout: Duration,
    /// Longest a request's body may take to arrive.
    pub(crate) read_timeout: Duration,
    /// Longest a request may take from its headers to its answer.
    pub(crate) write_timeout: Duration,
    /// Most connections open at once; more are closed at once (0: no limit).
    pub(crate) max_connections: usize,
}

/// Counters of connections the bounds cut off.
#[derive(Debug, Clone)]
pub(crate) struct HttpServerMetrics {
    closed: IntCounterVec,
    open: IntGauge,
}

impl HttpServerMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let closed = IntCounterVec::new(
            Opts::new(
                "strata_http_connections_closed_total",
                "HTTP connections the server closed for a bound: reason is header_timeout (headers or the next request did not arrive in time, idle connections included) or connection_limit (server.http_server_max_connections reached).",
            ),
            &["reason"],
        )?;
        let open = IntGauge::new("strata_http_connections_open", "HTTP connections open now.")?;
        // Both reasons exported from the start, at 0, for alerts and rates.
        for reason in ["header_timeout", "connection_limit"] {
            closed.with_label_values(&[reason]);
        }
        registry.register(Box::new(closed.clone()))?;
        registry.register(Box::new(open.clone()))?;
        Ok(Self { closed, open })
    }
}

/// What hyper buffers for a request's head (request line and headers). A URL
/// longer than the `http` crate's 64 KiB limit is answered 414 by hyper (with
/// no body: it never becomes a request); the buffer must hold such a URL for
/// hyper to get that far, else it answers 431 for the whole head. Only a
/// request that needs the room uses it.
const MAX_HEAD_BYTES: usize = 2 << 20;

/// Operator actions that run to completion whatever the write timeout:
/// dropping a flush or a compaction pass half-way helps no one.
const RUN_TO_COMPLETION: [&str; 2] = ["/ingester/flush", "/compactor/run"];

/// The write timeout: a request not answered within it gets 408.
async fn request_timeout(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if RUN_TO_COMPLETION.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            http::StatusCode::REQUEST_TIMEOUT,
            format!("the request was not answered within {timeout:?} (server.http_server_write_timeout)\n"),
        )
            .into_response(),
    }
}

/// Wraps `router` in the body and request timeouts.
pub(crate) fn with_request_timeouts(router: Router, limits: &HttpServerLimits) -> Router {
    router
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.read_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits.write_timeout,
            request_timeout,
        ))
}

/// Serves `router` on `listener` until `shutdown` turns true, then lets open
/// requests finish for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpServerLimits,
    metrics: HttpServerMetrics,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let slots =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // The guard `wait_for` returns must not live across an await.
            _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => break,
        };
        let permit = match &slots {
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    metrics
                        .closed
                        .with_label_values(&["connection_limit"])
                        .inc();
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        let service = hyper::service::service_fn({
            let router = router.clone();
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                // The peer, for what needs the source address (auth's back-off).
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(request.map(axum::body::Body::new))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            metrics.open.inc();
            if let Err(e) = connection.await {
                if e.is_timeout() {
                    metrics.closed.with_label_values(&["header_timeout"]).inc();
                } else {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
            }
            metrics.open.dec();
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "HTTP connections still open after the graceful shutdown timeout"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "done"
    }

    #[tokio::test]
    async fn the_write_timeout_cuts_requests_but_not_operator_actions() {
        let limits = HttpServerLimits {
            idle_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_millis(50),
            max_connections: 0,
        };
        let router = with_request_timeouts(
            Router::new()
                .route("/api/v1/query", get(slow))
                .route("/ingester/flush", post(slow)),
            &limits,
        );
        let request = |method: &str, path: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let cut = router
            .clone()
            .oneshot(request("GET", "/api/v1/query"))
            .await
            .unwrap();
        assert_eq!(cut.status(), http::StatusCode::REQUEST_TIMEOUT);
        let flushed = router
            .oneshot(request("POST", "/ingester/flush"))
            .await
            .unwrap();
        assert_eq!(flushed.status(), http::StatusCode::OK);
    }
}
