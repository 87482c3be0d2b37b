//! Process-wide observability plumbing: structured logging set-up and the metrics
//! registry every component registers its metrics in. It owns no metrics itself;
//! each component defines the metrics it reports.

use tracing_subscriber::EnvFilter;

pub use prometheus::{self, Registry};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log level {0:?} (use error, warn, info, debug or trace)")]
    BadLogLevel(String),
    #[error("invalid log format {0:?} (use logfmt or json)")]
    BadLogFormat(String),
    #[error("could not install the log subscriber: {0}")]
    Install(String),
}

/// Installs the global log subscriber. `format` is `logfmt` (human-readable
/// key=value lines) or `json` (one object per line).
pub fn init_logging(level: &str, format: &str) -> Result<(), TelemetryError> {
    if !matches!(level, "error" | "warn" | "info" | "debug" | "trace") {
        return Err(TelemetryError::BadLogLevel(level.to_string()));
    }
    let filter = EnvFilter::try_new(format!("{level},h2=warn,hyper=warn,tower=warn"))
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
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

/// `strata_discarded_samples_total{tenant,reason}`: samples rejected anywhere on
/// the write path (distributor validation, ingester appends). One family for the
/// whole process, like Mimir's `cortex_discarded_samples_total`, so components
/// share it instead of registering twins; [`register_shared`] adds it to a
/// registry once.
pub fn discarded_samples() -> &'static prometheus::IntCounterVec {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "strata_discarded_samples_total",
                "Samples rejected on the write path, by tenant and reason.",
            ),
            &["tenant", "reason"],
        )
        // The options are constants and valid; this cannot fail.
        .unwrap_or_else(|_| unreachable!("constant metric options are valid"))
    })
}

/// Registers the process-wide metric families of this crate in `registry`.
pub fn register_shared(registry: &Registry) -> Result<(), prometheus::Error> {
    match registry.register(Box::new(discarded_samples().clone())) {
        Ok(()) | Err(prometheus::Error::AlreadyReg) => Ok(()),
        Err(e) => Err(e),
    }
}
