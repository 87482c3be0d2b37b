//! [`TelemetryError`]: why logging or tracing cannot be set up. Its own
//! module because both the logging set-up (in the crate root) and the
//! tracing set-up (`otel`) return it.

/// Why logging or tracing cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log level {0:?} (use error, warn, info, debug or trace)")]
    BadLogLevel(String),
    #[error("invalid log format {0:?} (use logfmt or json)")]
    BadLogFormat(String),
    #[error("could not install the log subscriber: {0}")]
    Install(String),
    #[error("invalid tracing config: {0}")]
    BadTracing(String),
}
