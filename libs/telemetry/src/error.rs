//! [`TelemetryError`]: why logging or tracing cannot be set up. Its own
//! module because both the logging set-up (in the crate root) and the
//! tracing set-up (`otel`) return it.

use strata_status::{Coded, ErrorCode};

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

/// Logging and tracing are the server's own setup, checked and installed at
/// start: no request causes these, so to a caller of the API they are
/// internal errors.
impl Coded for TelemetryError {
    fn code(&self) -> ErrorCode {
        match self {
            TelemetryError::BadLogLevel(_)
            | TelemetryError::BadLogFormat(_)
            | TelemetryError::Install(_)
            | TelemetryError::BadTracing(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_are_internal() {
        let bad_level = TelemetryError::BadLogLevel("loud".into());
        assert_eq!(bad_level.code(), ErrorCode::Internal);
        let bad_format = TelemetryError::BadLogFormat("xml".into());
        assert_eq!(bad_format.code(), ErrorCode::Internal);
        assert!(!bad_format.code().is_client_error());
    }
}
