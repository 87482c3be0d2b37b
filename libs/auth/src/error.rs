//! [`AuthError`]: why authentication cannot start or a tenants file reload
//! was refused. Its own module because both the config checks
//! (`authenticator`) and the tenants file parser (`tenants`) return it.

use strata_status::{Coded, ErrorCode};

/// Why authentication cannot start (or a reload was refused).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A setting of the `auth` section that cannot work; `key` is its full
    /// dotted path.
    #[error("{key}: {reason}")]
    Config {
        key: &'static str,
        reason: &'static str,
    },
    #[error("cannot read tenants file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("tenants file {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("registering the auth metrics: {0}")]
    Metrics(String),
}

/// Every variant is about the server's own setup (the `auth` section, the
/// tenants file), never about a request: a client cannot fix it, so to a
/// caller of the API it is an internal error. They happen at start or on a
/// reload, where the message names the key or the file for the operator.
impl Coded for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Config { .. }
            | AuthError::Read { .. }
            | AuthError::Invalid { .. }
            | AuthError::Metrics(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_are_internal_not_the_callers_fault() {
        let config = AuthError::Config {
            key: "auth.tenants_file",
            reason: "must be set",
        };
        assert_eq!(config.code(), ErrorCode::Internal);
        let unreadable = AuthError::Read {
            path: "/etc/strata/tenants.yaml".into(),
            reason: "permission denied".into(),
        };
        assert_eq!(unreadable.code(), ErrorCode::Internal);
        assert!(!unreadable.code().is_client_error());
    }
}
