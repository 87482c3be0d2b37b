//! The authenticator's metrics. Labels are bounded: a credential's name (from
//! the tenants file, or `unknown`) and a fixed set of reasons; never a user
//! name a request made up, never a source address.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub(crate) struct AuthMetrics {
    /// Failed attempts by `credential` and `reason`.
    pub(crate) failed: IntCounterVec,
    /// Requests refused with 429 because their source was backing off.
    pub(crate) throttled: IntCounter,
    /// bcrypt checks by `outcome`: `cached` or `computed`.
    pub(crate) bcrypt: IntCounterVec,
}

impl AuthMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.failed.clone()))?;
        registry.register(Box::new(metrics.throttled.clone()))?;
        registry.register(Box::new(metrics.bcrypt.clone()))?;
        Ok(metrics)
    }

    /// The metrics, in no registry yet.
    fn unregistered() -> Result<Self, prometheus::Error> {
        let failed = IntCounterVec::new(
            Opts::new(
                "strata_auth_failed_attempts_total",
                "Failed authentications by credential (the tenants file's name; unknown when the request named none of its users or tokens) and reason: unknown_user, wrong_password, unknown_token, malformed. A missing Authorization header is not counted.",
            ),
            &["credential", "reason"],
        )?;
        let throttled = IntCounter::new(
            "strata_auth_throttled_requests_total",
            "Requests answered 429 because their source address had too many failed authentications (auth.max_failures_per_source within auth.failure_window).",
        )?;
        let bcrypt = IntCounterVec::new(
            Opts::new(
                "strata_auth_bcrypt_checks_total",
                "bcrypt password checks by outcome: cached (the password verified before, a SHA-256) or computed (a full bcrypt, on a blocking thread).",
            ),
            &["outcome"],
        )?;
        for outcome in ["cached", "computed"] {
            bcrypt.with_label_values(&[outcome]);
        }
        Ok(Self {
            failed,
            throttled,
            bcrypt,
        })
    }
}
