//! [`AuthError`]: why authentication cannot start or a tenants file reload
//! was refused. Its own module because both the config checks
//! (`authenticator`) and the tenants file parser (`tenants`) return it.

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
}
