//! OpenTelemetry tracing: the OTLP/gRPC exporter behind the `tracing` spans, and
//! W3C trace-context (`traceparent`) propagation over gRPC metadata, so a push
//! or a query is one trace across the distributor, querier and ingesters.
//!
//! Off unless an endpoint is configured. Spans are ordinary `tracing` spans;
//! this module only decides where they go and how their context travels.

use std::task::{Context as TaskContext, Poll};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::TelemetryError;

/// The environment variable consulted when `tracing.otlp_endpoint` is empty.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The `tracing` section of the config file.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    pub otlp_endpoint: String,
    pub service_name: String,
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "strata".to_string(),
            sample_ratio: 1.0,
        }
    }
}

impl TracingConfig {
    /// The collector spans go to, or `None` when tracing is off.
    pub fn endpoint(&self) -> Option<String> {
        let configured = self.otlp_endpoint.trim();
        if !configured.is_empty() {
            return Some(configured.to_string());
        }
        std::env::var(OTLP_ENDPOINT_ENV)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), TracingConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(TracingConfigError {
                key: "sample_ratio",
                reason: format!("must be between 0 and 1, got {}", self.sample_ratio),
            });
        }
        if self.service_name.trim().is_empty() {
            return Err(TracingConfigError {
                key: "service_name",
                reason: "must not be empty".to_string(),
            });
        }
        Ok(())
    }
}

/// A value of the `tracing` section that cannot be used; `key` is relative to
/// the section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tracing.{key}: {reason}")]
pub struct TracingConfigError {
    pub key: &'static str,
    pub reason: String,
}

/// Keeps the span exporter alive; [`TelemetryGuard::shutdown`] exports what is
/// still buffered. Dropping the guard shuts down too.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    pub(crate) fn new(provider: Option<SdkTracerProvider>) -> Self {
        Self { provider }
    }

    /// Whether spans are being exported.
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes buffered spans and stops the exporter. Call it outside async
    /// code (after the runtime's `block_on` returns, the runtime still alive):
    /// it blocks until the runtime's export task has sent the last batch.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "flushing the last spans failed");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the tracer provider: OTLP/gRPC export in batches from a task of the
/// current Tokio runtime (so this must run inside one), parent-based sampling.
pub(crate) fn provider(
    config: &TracingConfig,
    endpoint: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    config
        .validate()
        .map_err(|e| TelemetryError::BadTracing(e.to_string()))?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TelemetryError::BadTracing(
            "the OTLP exporter must be started inside the Tokio runtime".to_string(),
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| {
            TelemetryError::BadTracing(format!("tracing.otlp_endpoint {endpoint:?}: {e}"))
        })?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("strata"))
}

/// Installs the W3C trace-context propagator (`traceparent`, `tracestate`).
pub(crate) fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the trace context of `span` into outgoing gRPC metadata
/// (`traceparent`), so the server's spans join the caller's trace. Does
/// nothing when tracing is off.
pub fn inject_trace_context(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata))
    });
}

/// A tower layer for a gRPC server: each call runs in a server span
/// (`<component>.<Method>`, e.g. `ingester.Push`) whose parent is the trace
/// context the caller sent in `traceparent`.
#[derive(Debug, Clone)]
pub struct GrpcServerTraceLayer {
    component: &'static str,
}

impl GrpcServerTraceLayer {
    /// Spans are named `<component>.<Method>`.
    pub fn new(component: &'static str) -> Self {
        Self { component }
    }
}

impl<S> tower::Layer<S> for GrpcServerTraceLayer {
    type Service = GrpcServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerTrace {
            inner,
            component: self.component,
        }
    }
}

/// The service [`GrpcServerTraceLayer`] wraps around a gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcServerTrace<S> {
    inner: S,
    component: &'static str,
}

impl<S, B> tower::Service<http::Request<B>> for GrpcServerTrace<S>
where
    S: tower::Service<http::Request<B>>,
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
        let span = server_span(self.component, &request);
        let future = self.inner.call(request);
        Box::pin(future.instrument(span))
    }
}

/// The server span of one gRPC call, child of the caller's context if it sent one.
fn server_span<B>(component: &str, request: &http::Request<B>) -> tracing::Span {
    // `/strata.ingester.Ingester/Push` -> `Push`.
    let path = request.uri().path();
    let method = path.rsplit('/').next().unwrap_or(path);
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %format_args!("{component}.{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %method,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(request.headers()))
    });
    // Fails only when tracing is off (no layer, or the span filtered out).
    let _ = span.set_parent(parent);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_comes_from_the_config_then_the_environment() {
        let config = TracingConfig {
            otlp_endpoint: "http://collector:4317".to_string(),
            ..TracingConfig::default()
        };
        assert_eq!(config.endpoint().as_deref(), Some("http://collector:4317"));
        assert!(TracingConfig::default().validate().is_ok());
        let bad = TracingConfig {
            sample_ratio: 1.5,
            ..TracingConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "sample_ratio");
    }
}
