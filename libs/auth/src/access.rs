//! [`Access`], the class of an HTTP route for authentication, and
//! [`Refused`], why a request may not reach it. A leaf: the authenticator
//! decides with them, the binary's route table names them.

use std::time::Duration;

use strata_status::{ErrorCode, ServiceError};

use crate::tenants::Scope;

/// Who may reach a route when `auth.enabled` is on (with auth off, anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential needed: read-only pages with no tenant data and no
    /// secrets (`/ready`, `/metrics`, ...).
    Open,
    /// A tenant's data API: a credential with this scope, acting for its own
    /// tenant.
    Tenant(Scope),
    /// An administrative route: a credential with the `admin` scope, for
    /// whichever tenant it belongs to (`X-Scope-OrgID` is not looked at).
    Admin,
}

/// A request refused before its route: the error, and for a source backing
/// off, how long until it may try again (`Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: ServiceError,
    pub retry_after: Option<Duration>,
}

impl Refused {
    pub(crate) fn throttled(wait: Duration) -> Self {
        // Whole seconds, rounded up: `Retry-After: 0` would invite a retry now.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Refused {
            error: ServiceError::new(
                ErrorCode::TooManyRequests,
                format!("too many failed authentications from this address; retry in {secs} s"),
            ),
            retry_after: Some(Duration::from_secs(secs)),
        }
    }
}

impl From<ServiceError> for Refused {
    fn from(error: ServiceError) -> Self {
        Refused {
            error,
            retry_after: None,
        }
    }
}
