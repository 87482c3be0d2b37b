//! Who is calling: the tenant an HTTP request acts for, and, when `auth.enabled`
//! is set, whether the caller may act for it at all.
//!
//! By default Strata does not authenticate (a proxy in front of it does, as with
//! Mimir); it only decides which tenant's data a request reads or writes, and
//! rejects requests that name no tenant or an invalid one. The tenant comes from
//! `X-Scope-OrgID`; when that header is absent, from the user name of HTTP basic
//! auth, because Prometheus's `remote_write` can send `basic_auth` but (before
//! 2.43's `headers` support in Debian's 2.42) no custom headers. With
//! multitenancy disabled every request is the tenant `anonymous`.
//!
//! With authentication on ([`Authenticator`]), a tenants file maps credentials
//! (basic auth or bearer tokens, stored as bcrypt or salted SHA-256 hashes:
//! [`SecretHash`]) to a tenant and `read`/`write`/`admin` [`Scope`]s; the
//! tenant then comes from the credential, never from the header. Each route
//! is of an [`Access`] class (open, a tenant's with a scope, admin) that the
//! HTTP server checks before the route runs ([`Authenticator::admit`]),
//! counting failed attempts and backing off sources that keep failing. Which
//! route is of which class is the binary's table, not this crate's. This crate does not do TLS (terminate it
//! in front of Strata: basic auth and bearer tokens are cleartext on the wire),
//! OAuth/OIDC, or per-tenant limits.

mod access;
mod authenticator;
mod backoff;
mod error;
mod hash;
mod metrics;
mod tenant_header;
mod tenants;

pub use access::{Access, Refused};
pub use authenticator::{AuthConfig, Authenticator, RELOAD_CHECK_INTERVAL};
pub use backoff::MAX_SOURCES;
pub use error::AuthError;
pub use hash::{HashFormatError, SecretHash, BCRYPT_COSTS, HASH_SCHEME, MIN_SALT_LEN};
pub use tenant_header::{
    resolver, tenant_from_headers, TenantResolver, NO_AUTH_TENANT, TENANT_HEADER,
};
pub use tenants::{BasicAuth, Credential, Scope, TenantsFile};
