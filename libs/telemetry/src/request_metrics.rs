//! `strata_request_duration_seconds`: one histogram family for every request a
//! process serves, HTTP and gRPC alike (as Mimir's `cortex_request_duration_seconds`),
//! so one alert on error ratios and latency covers every component.
//!
//! HTTP requests are labelled `method="GET|POST|…"`, `route`, `status_code="200"`;
//! gRPC calls `method="gRPC"`, `route="/strata.ingester.Ingester/Push"` and
//! `status_code` the gRPC code name (`OK`, `Unavailable`, …).

use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, Registry};

/// The process-wide family; [`register_shared`](crate::register_shared) adds it
/// to a registry.
pub fn request_duration() -> &'static HistogramVec {
    static HISTOGRAM: OnceLock<HistogramVec> = OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        HistogramVec::new(
            HistogramOpts::new(
                "strata_request_duration_seconds",
                "Time spent serving HTTP requests and gRPC calls, by method, route and status code.",
            )
            .buckets(vec![
                0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
            ]),
            &["method", "route", "status_code"],
        )
        .unwrap_or_else(|_| unreachable!("constant metric options are valid"))
    })
}

pub(crate) fn register(registry: &Registry) -> Result<(), prometheus::Error> {
    match registry.register(Box::new(request_duration().clone())) {
        Ok(()) | Err(prometheus::Error::AlreadyReg) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The gRPC code name for the numeric `grpc-status`.
fn grpc_code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Observes every gRPC call a server answers in [`request_duration`]. The time
/// is until the response head: for a unary call that is the whole call, for a
/// server stream the time to its first message. A failed call answered without
/// a body carries its `grpc-status` in the head; a call whose status comes only
/// in the trailers (after a body) counts as `OK` here.
#[derive(Debug, Clone, Default)]
pub struct GrpcServerMetricsLayer;

impl<S> tower::Layer<S> for GrpcServerMetricsLayer {
    type Service = GrpcServerMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerMetrics { inner }
    }
}

/// The service [`GrpcServerMetricsLayer`] wraps around a gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcServerMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcServerMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let route = request.uri().path().to_string();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let status = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(grpc_code_name)
                    .unwrap_or("OK"),
                Err(_) => "Internal",
            };
            request_duration()
                .with_label_values(&["gRPC", &route, status])
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Axum middleware recording every HTTP request in [`request_duration`],
/// labelled by the route that matched (`other` when none did).
pub async fn observe_http_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let response = next.run(request).await;
    request_duration()
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_have_their_names() {
        assert_eq!(grpc_code_name("0"), "OK");
        assert_eq!(grpc_code_name("14"), "Unavailable");
        assert_eq!(grpc_code_name("99"), "Unknown");
    }

    #[tokio::test]
    async fn a_call_is_observed_with_its_route_and_status() {
        use tower::{Layer as _, Service as _};
        let inner = tower::service_fn(|_req: http::Request<()>| async {
            let mut response = http::Response::new(());
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("8"));
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut service = GrpcServerMetricsLayer.layer(inner);
        let request = http::Request::builder()
            .uri("/strata.test.Test/Method")
            .body(())
            .unwrap_or_default();
        let _ = service.call(request).await;
        let count = request_duration()
            .with_label_values(&["gRPC", "/strata.test.Test/Method", "ResourceExhausted"])
            .get_sample_count();
        assert_eq!(count, 1);
    }
}
