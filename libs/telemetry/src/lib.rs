//! Process-wide observability plumbing: structured logging set-up, OpenTelemetry
//! tracing (OTLP export and trace-context propagation over gRPC, see [`otel`])
//! and the metrics registry every component registers its metrics in. It owns
//! no metrics itself beyond the shared families below; each component defines
//! the metrics it reports, and the spans it opens.

mod error;
mod otel;
mod request_metrics;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use error::TelemetryError;
pub use otel::{
    inject_trace_context, GrpcServerTrace, GrpcServerTraceLayer, TelemetryGuard, TracingConfig,
    TracingConfigError, OTLP_ENDPOINT_ENV,
};

pub use request_metrics::{
    observe_http_request, request_duration, GrpcServerMetrics, GrpcServerMetricsLayer,
};

pub use prometheus::{self, Registry};

/// Installs logging (as [`init_logging`]) and, when `tracing` names an OTLP
/// endpoint, span export to it. Must run inside the Tokio runtime when tracing
/// is on: the exporter's batches are sent from a task of that runtime. Keep the
/// guard until the process stops, then call [`TelemetryGuard::shutdown`] to
/// export the last spans.
pub fn init(
    level: &str,
    format: &str,
    tracing: &TracingConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = log_filter(level)?;
    check_log_format(format)?;
    otel::install_propagator();
    let provider = match tracing.endpoint() {
        Some(endpoint) => Some(otel::provider(tracing, &endpoint)?),
        None => None,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(false);
    let fmt = if format == "json" {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    // Spans go to the exporter whatever the log level, but never the HTTP/2
    // plumbing's own (the exporter's requests would trace themselves).
    let otel_layer = provider.as_ref().map(|p| {
        otel::layer(p).with_filter(
            EnvFilter::new("info,h2=off,hyper=off,hyper_util=off,tower=off,tonic=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off"),
        )
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    if let Some(endpoint) = tracing.endpoint() {
        tracing::info!(%endpoint, service_name = %tracing.service_name, sample_ratio = tracing.sample_ratio, "exporting traces over OTLP/gRPC");
    }
    Ok(TelemetryGuard::new(provider))
}

/// Checks a log level the way [`init`] takes it: `error`, `warn`, `info`,
/// `debug` or `trace`.
pub fn check_log_level(level: &str) -> Result<(), TelemetryError> {
    if !matches!(level, "error" | "warn" | "info" | "debug" | "trace") {
        return Err(TelemetryError::BadLogLevel(level.to_string()));
    }
    Ok(())
}

/// Checks a log format the way [`init`] takes it: `logfmt` or `json`.
pub fn check_log_format(format: &str) -> Result<(), TelemetryError> {
    if !matches!(format, "logfmt" | "json") {
        return Err(TelemetryError::BadLogFormat(format.to_string()));
    }
    Ok(())
}

fn log_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    check_log_level(level)?;
    EnvFilter::try_new(format!("{level},h2=warn,hyper=warn,tower=warn"))
        .map_err(|e| TelemetryError::Install(e.to_string()))
}

/// Installs the global log subscriber. `format` is `logfmt` (human-readable
/// key=value lines) or `json` (one object per line).
pub fn init_logging(level: &str, format: &str) -> Result<(), TelemetryError> {
    let filter = log_filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(false);
    let result = match format {
        "logfmt" => builder.try_init(),
        "json" => builder.json().flatten_event(true).try_init(),
        other => return Err(TelemetryError::BadLogFormat(other.to_string())),
    };
    result.map_err(|e| TelemetryError::Install(e.to_string()))
}

/// Renders a registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    // Encoding into a Vec cannot fail for I/O reasons; a metric family that fails
    // to encode is left out rather than failing the whole scrape.
    let _ = encoder.encode(&registry.gather(), &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A counter family labelled by tenant and reason, for the process-wide
/// discard counters below.
fn by_tenant_and_reason(name: &str, help: &str) -> prometheus::IntCounterVec {
    prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &["tenant", "reason"])
        // The options are constants and valid; this cannot fail.
        .unwrap_or_else(|_| unreachable!("constant metric options are valid"))
}

/// `strata_discarded_samples_total{tenant,reason}`: samples rejected anywhere on
/// the write path (distributor validation, ingester appends). One family for the
/// whole process, like Mimir's `cortex_discarded_samples_total`, so components
/// share it instead of registering twins; [`register_shared`] adds it to a
/// registry once.
pub fn discarded_samples() -> &'static prometheus::IntCounterVec {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        by_tenant_and_reason(
            "strata_discarded_samples_total",
            "Samples rejected on the write path, by tenant and reason.",
        )
    })
}

/// `strata_discarded_metadata_total{tenant,reason}`: remote-write metadata
/// entries dropped on the write path (distributor validation, ingester
/// limits), like Mimir's `cortex_discarded_metadata_total`; shared as
/// [`discarded_samples`] is.
pub fn discarded_metadata() -> &'static prometheus::IntCounterVec {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        by_tenant_and_reason(
            "strata_discarded_metadata_total",
            "Metric metadata entries dropped on the write path, by tenant and reason.",
        )
    })
}

/// `strata_discarded_exemplars_total{tenant,reason}`: exemplars dropped on the
/// write path (distributor validation, the ingesters' store rules), like
/// Mimir's `cortex_discarded_exemplars_total`.
pub fn discarded_exemplars() -> &'static prometheus::IntCounterVec {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        by_tenant_and_reason(
            "strata_discarded_exemplars_total",
            "Exemplars dropped on the write path, by tenant and reason.",
        )
    })
}

/// Registers the process-wide metric families of this crate in `registry`.
pub fn register_shared(registry: &Registry) -> Result<(), prometheus::Error> {
    for family in [
        discarded_samples(),
        discarded_metadata(),
        discarded_exemplars(),
    ] {
        match registry.register(Box::new(family.clone())) {
            Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
            Err(e) => return Err(e),
        }
    }
    // process_cpu_seconds_total, process_resident_memory_bytes, open fds, ...:
    // what capacity planning and the memory alerts in docs/operations.md use.
    #[cfg(target_os = "linux")]
    match registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    )) {
        Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
        Err(e) => return Err(e),
    }
    request_metrics::register(registry)
}
