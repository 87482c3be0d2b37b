//! [`Authenticator`]: turns the `auth` config section into the tenant
//! resolvers the HTTP routers take and the admission check the HTTP server
//! runs before every route ([`Authenticator::admit`]), and keeps the tenants
//! file current.
//!
//! Two entry points, one verdict. [`Authenticator::admit`] is async: it runs
//! bcrypt on a blocking thread, counts failures per credential (metric) and
//! per source address (back-off, [`crate::backoff`]), and decides admin
//! routes. The resolvers the routers call are synchronous and run after it:
//! a bcrypt password admitted a moment before is found in the cache of
//! successful checks, so they cost a SHA-256 and never block the executor.
//!
//! The cache holds, per bcrypt credential, a keyed SHA-256 of the last
//! password that verified against it (its first 72 bytes: all bcrypt reads).
//! The key is random per process, and the entry's slot is named by the user
//! name and the stored hash, so a changed hash in the file never matches an
//! old entry; the cache is emptied on every reload. Its size is bounded by
//! the number of bcrypt credentials in the file.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use http::HeaderMap;
use parking_lot::{Mutex, RwLock};
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_model::ConfigDuration;
use strata_status::{ErrorCode, ServiceError};

use crate::access::{Access, Refused};
use crate::backoff::SourceFailures;
use crate::error::AuthError;
use crate::hash::{constant_time_eq, SecretHash, BCRYPT_MAX_PASSWORD_BYTES};
use crate::metrics::AuthMetrics;
use crate::tenant_header::{resolver, shorten, TenantResolver, TENANT_HEADER};
use crate::tenants::{Credential, Scope, TenantsFile};

/// How often, at most, a request checks whether the tenants file changed.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The `auth` config section.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: bool,
    pub tenants_file: String,
    /// Failed authentications from one address within `failure_window`
    /// after which its requests get 429 until the window ends; 0: never.
    pub max_failures_per_source: u32,
    pub failure_window: ConfigDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tenants_file: String::new(),
            max_failures_per_source: 10,
            failure_window: ConfigDuration::from_secs(60),
        }
    }
}

impl AuthConfig {
    /// Checks the settings without reading the tenants file (which
    /// [`Authenticator::new`] does after this).
    pub fn validate(&self, multitenancy_enabled: bool) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if !multitenancy_enabled {
            return Err(AuthError::Config {
                key: "auth.enabled",
                reason: "true needs multitenancy_enabled=true (credentials name the tenant they act for)",
            });
        }
        if self.tenants_file.trim().is_empty() {
            return Err(AuthError::Config {
                key: "auth.tenants_file",
                reason: "must be set when auth.enabled is true",
            });
        }
        if self.max_failures_per_source > 0 && self.failure_window.0.is_zero() {
            return Err(AuthError::Config {
                key: "auth.failure_window",
                reason: "must be longer than 0 when auth.max_failures_per_source is above 0",
            });
        }
        Ok(())
    }
}

/// Decides who a request is and which tenant it acts for. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    /// Trust `X-Scope-OrgID` (or `anonymous` without multitenancy).
    Disabled {
        multitenancy_enabled: bool,
    },
    Enabled(Arc<Enabled>),
}

struct Enabled {
    path: PathBuf,
    tenants: RwLock<Arc<TenantsFile>>,
    watch: Mutex<Watch>,
    check_interval: Duration,
    metrics: AuthMetrics,
    failures: Mutex<SourceFailures>,
    /// Successful bcrypt checks: slot (user name and stored hash) to the
    /// keyed digest of the password that verified.
    verified: Mutex<HashMap<[u8; 32], [u8; 32]>>,
    /// The random key of those digests; `None` (no randomness): no cache.
    cache_key: Option<[u8; 32]>,
}

struct Watch {
    last_check: Instant,
    /// The file's identity when it was last read (successfully or not).
    stamp: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Authenticator {
    /// An authenticator for `config`. With auth enabled this reads the tenants
    /// file, and fails if it is missing or invalid.
    /// Its metrics go to `registry`, only when enabled.
    pub fn new(
        config: &AuthConfig,
        multitenancy_enabled: bool,
        registry: &Registry,
    ) -> Result<Self, AuthError> {
        Self::with_check_interval(
            config,
            multitenancy_enabled,
            registry,
            RELOAD_CHECK_INTERVAL,
        )
    }

    fn with_check_interval(
        config: &AuthConfig,
        multitenancy_enabled: bool,
        registry: &Registry,
        check_interval: Duration,
    ) -> Result<Self, AuthError> {
        config.validate(multitenancy_enabled)?;
        if !config.enabled {
            return Ok(Authenticator {
                mode: Mode::Disabled {
                    multitenancy_enabled,
                },
            });
        }
        let path = PathBuf::from(&config.tenants_file);
        let stamp = file_stamp(&path).map_err(|e| AuthError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let tenants = TenantsFile::load(&path)?;
        log_loaded(&path, &tenants);
        let metrics = AuthMetrics::new(registry).map_err(|e| AuthError::Metrics(e.to_string()))?;
        Ok(Authenticator {
            mode: Mode::Enabled(Arc::new(Enabled::new(
                path,
                tenants,
                Some(stamp),
                check_interval,
                metrics,
                SourceFailures::new(config.max_failures_per_source, config.failure_window.0),
            ))),
        })
    }

    /// An authenticator over fixed credentials (no file, no reloads), with
    /// a back-off of `max_failures` per `window` per source and its metrics
    /// in `registry`.
    pub fn from_tenants(
        tenants: TenantsFile,
        max_failures: u32,
        window: Duration,
        registry: &Registry,
    ) -> Result<Self, AuthError> {
        let metrics = AuthMetrics::new(registry).map_err(|e| AuthError::Metrics(e.to_string()))?;
        Ok(Authenticator {
            mode: Mode::Enabled(Arc::new(Enabled::new(
                PathBuf::new(),
                tenants,
                None,
                Duration::MAX,
                metrics,
                SourceFailures::new(max_failures, window),
            ))),
        })
    }

    pub fn is_enabled(&self) -> bool {
        matches!(self.mode, Mode::Enabled(_))
    }

    /// The resolver for routes that need `scope`: with auth disabled, today's
    /// header-based one; enabled, [`Authenticator::authenticate`].
    pub fn resolver(&self, scope: Scope) -> TenantResolver {
        match &self.mode {
            Mode::Disabled {
                multitenancy_enabled,
            } => resolver(*multitenancy_enabled),
            Mode::Enabled(_) => {
                let this = self.clone();
                Arc::new(move |headers: &HeaderMap| this.authenticate(headers, scope))
            }
        }
    }

    /// The tenant a request acts for, after checking its credential and scope.
    ///
    /// - no, malformed, unknown or wrong credential: 401 (the message never
    ///   says which part was wrong, nor quotes it);
    /// - a valid credential without `scope`: 403 naming the scope;
    /// - an `X-Scope-OrgID` naming another tenant than the credential's: 403.
    pub fn authenticate(&self, headers: &HeaderMap, scope: Scope) -> Result<String, ServiceError> {
        let enabled = match &self.mode {
            Mode::Disabled {
                multitenancy_enabled,
            } => return resolver(*multitenancy_enabled)(headers),
            Mode::Enabled(enabled) => enabled,
        };
        enabled.reload_if_changed();
        let tenants = enabled.tenants.read().clone();
        let credential = poll_once(enabled.identify(&tenants, headers, Verify::Here))
            .ok_or_else(|| {
                ServiceError::new(ErrorCode::Internal, "authentication did not complete")
            })?
            .map_err(|f| f.error)?;
        check(credential, headers, scope)?;
        Ok(credential.tenant.clone())
    }

    /// Whether a request may reach a route of class `access`, from `source`
    /// (the TCP peer). Open routes and a disabled authenticator admit
    /// everything. Otherwise:
    ///
    /// - a source over the back-off limit: 429 with how long to wait;
    /// - no, malformed, unknown or wrong credential: 401 (counted as a failed
    ///   attempt, but for a missing `Authorization` header);
    /// - [`Access::Admin`] without the `admin` scope: 403 naming the
    ///   credential and the scope; `X-Scope-OrgID` is not looked at (admin
    ///   routes act on no one tenant);
    /// - [`Access::Tenant`]: the checks of [`Authenticator::authenticate`].
    pub async fn admit(
        &self,
        headers: &HeaderMap,
        source: Option<IpAddr>,
        access: Access,
    ) -> Result<(), Refused> {
        let Mode::Enabled(enabled) = &self.mode else {
            return Ok(());
        };
        if access == Access::Open {
            return Ok(());
        }
        enabled.reload_if_changed();
        if let Some(ip) = source {
            let blocked = enabled.failures.lock().blocked_for(ip, Instant::now());
            if let Some(wait) = blocked {
                enabled.metrics.throttled.inc();
                return Err(Refused::throttled(wait));
            }
        }
        if headers.get(http::header::AUTHORIZATION).is_none() {
            return Err(Refused::from(missing_credential()));
        }
        let tenants = enabled.tenants.read().clone();
        let credential = match enabled.identify(&tenants, headers, Verify::Blocking).await {
            Ok(credential) => credential,
            Err(failure) => {
                enabled.record_failure(&failure, source);
                return Err(Refused::from(failure.error));
            }
        };
        match access {
            Access::Open => Ok(()),
            Access::Admin => {
                if credential.has_scope(Scope::Admin) {
                    Ok(())
                } else {
                    Err(Refused::from(lacks(credential, Scope::Admin)))
                }
            }
            Access::Tenant(scope) => check(credential, headers, scope).map_err(Refused::from),
        }
    }
}

/// Where a slow (bcrypt) check runs: on this thread (the synchronous
/// resolvers, after `admit` filled the cache), or on a blocking thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Here,
    Blocking,
}

/// A failed identification: the error for the caller, and what the metric
/// and the log say about it.
struct Failure<'t> {
    error: ServiceError,
    /// The credential the request named (by its user name), if any.
    credential: Option<&'t Credential>,
    /// The metric's `reason` label.
    reason: &'static str,
}

impl<'t> Failure<'t> {
    fn new(error: ServiceError, credential: Option<&'t Credential>, reason: &'static str) -> Self {
        Self {
            error,
            credential,
            reason,
        }
    }
}

/// The output of a future that completes without waiting, as
/// [`Verify::Here`] makes `identify`: the synchronous resolvers share the
/// async code path this way. `None` if it would wait (it cannot).
fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::Disabled {
                multitenancy_enabled,
            } => f
                .debug_struct("Authenticator")
                .field("enabled", &false)
                .field("multitenancy_enabled", multitenancy_enabled)
                .finish(),
            Mode::Enabled(enabled) => f
                .debug_struct("Authenticator")
                .field("enabled", &true)
                .field("tenants_file", &enabled.path)
                .field("credentials", &enabled.tenants.read().credentials().len())
                .finish_non_exhaustive(),
        }
    }
}

impl Enabled {
    fn new(
        path: PathBuf,
        tenants: TenantsFile,
        stamp: Option<FileStamp>,
        check_interval: Duration,
        metrics: AuthMetrics,
        failures: SourceFailures,
    ) -> Self {
        let mut key = [0u8; 32];
        let cache_key = getrandom::fill(&mut key).ok().map(|()| key);
        if cache_key.is_none() {
            tracing::warn!("no randomness for the bcrypt cache's key: every bcrypt password is checked in full on every request");
        }
        Enabled {
            path,
            tenants: RwLock::new(Arc::new(tenants)),
            watch: Mutex::new(Watch {
                last_check: Instant::now(),
                stamp,
            }),
            check_interval,
            metrics,
            failures: Mutex::new(failures),
            verified: Mutex::new(HashMap::new()),
            cache_key,
        }
    }

    /// The credential `headers` present, checked against `tenants`.
    async fn identify<'t>(
        &self,
        tenants: &'t TenantsFile,
        headers: &HeaderMap,
        verify: Verify,
    ) -> Result<&'t Credential, Failure<'t>> {
        let presented = presented(headers).map_err(|e| {
            let reason = if headers.get(http::header::AUTHORIZATION).is_none() {
                "missing"
            } else {
                "malformed"
            };
            Failure::new(e, None, reason)
        })?;
        match presented {
            Presented::Basic { username, password } => {
                let wrong = || unauthenticated("invalid user name or password");
                let Some(credential) = tenants.basic_credential(&username) else {
                    // Cost what a known user costs, so timing does not tell
                    // which user names exist.
                    match tenants.costliest_password_hash() {
                        Some(slow) => {
                            let _ = self.slow_verify(slow, password.as_bytes(), verify).await;
                        }
                        None => {
                            if let Ok(dummy) = SecretHash::new(DUMMY_SALT, b"") {
                                let _ = dummy.verify(password.as_bytes());
                            }
                        }
                    }
                    return Err(Failure::new(wrong(), None, "unknown_user"));
                };
                let Some(basic) = credential.basic_auth.as_ref() else {
                    return Err(Failure::new(wrong(), None, "unknown_user"));
                };
                if self
                    .check_password(&username, &basic.password_hash, password.as_bytes(), verify)
                    .await
                {
                    Ok(credential)
                } else {
                    Err(Failure::new(wrong(), Some(credential), "wrong_password"))
                }
            }
            Presented::Bearer(token) => tenants.find_bearer(token.as_bytes()).ok_or_else(|| {
                Failure::new(
                    unauthenticated("invalid bearer token"),
                    None,
                    "unknown_token",
                )
            }),
        }
    }

    /// Whether `password` is `username`'s: salted SHA-256 at once; bcrypt
    /// from the cache, else in full (and remembered when right).
    async fn check_password(
        &self,
        username: &str,
        hash: &SecretHash,
        password: &[u8],
        verify: Verify,
    ) -> bool {
        if !hash.is_slow() {
            return hash.verify(password);
        }
        let slot = self.cache_slot(username, hash);
        let tag = self.cache_tag(password);
        if let (Some(slot), Some(tag)) = (&slot, &tag) {
            let hit = self
                .verified
                .lock()
                .get(slot)
                .is_some_and(|known| constant_time_eq(known, tag));
            if hit {
                self.metrics.bcrypt.with_label_values(&["cached"]).inc();
                return true;
            }
        }
        self.metrics.bcrypt.with_label_values(&["computed"]).inc();
        let ok = self.slow_verify(hash, password, verify).await;
        if ok {
            if let (Some(slot), Some(tag)) = (slot, tag) {
                self.verified.lock().insert(slot, tag);
            }
        }
        ok
    }

    async fn slow_verify(&self, hash: &SecretHash, password: &[u8], verify: Verify) -> bool {
        match verify {
            Verify::Here => hash.verify(password),
            Verify::Blocking => {
                let hash = hash.clone();
                let password = password.to_vec();
                tokio::task::spawn_blocking(move || hash.verify(&password))
                    .await
                    .unwrap_or(false)
            }
        }
    }

    /// The cache slot of a credential: its user name and stored hash.
    fn cache_slot(&self, username: &str, hash: &SecretHash) -> Option<[u8; 32]> {
        let key = self.cache_key?;
        let mut h = Sha256::new();
        h.update(key);
        h.update(b"slot");
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(hash.to_string().as_bytes());
        Some(h.finalize().into())
    }

    /// The keyed digest of a password, of the bytes bcrypt reads.
    fn cache_tag(&self, password: &[u8]) -> Option<[u8; 32]> {
        let key = self.cache_key?;
        let read = &password[..password.len().min(BCRYPT_MAX_PASSWORD_BYTES)];
        let mut h = Sha256::new();
        h.update(key);
        h.update(b"password");
        h.update(read);
        Some(h.finalize().into())
    }

    /// Counts a failed attempt (metric by credential, back-off by source)
    /// and logs it: the credential's name (never a user name the file does
    /// not know: it may be a mistyped password), the reason and the source.
    fn record_failure(&self, failure: &Failure<'_>, source: Option<IpAddr>) {
        let name = failure.credential.map_or("unknown", |c| c.name.as_str());
        self.metrics
            .failed
            .with_label_values(&[name, failure.reason])
            .inc();
        let Some(ip) = source else {
            tracing::warn!(
                credential = name,
                reason = failure.reason,
                "authentication failed"
            );
            return;
        };
        let recorded = self.failures.lock().record_failure(ip, Instant::now());
        tracing::warn!(
            credential = name,
            reason = failure.reason,
            source = %ip,
            failures_from_source = recorded.failures,
            "authentication failed"
        );
        if recorded.now_blocked {
            tracing::warn!(source = %ip, failures = recorded.failures,
                "too many failed authentications from this address: its requests get 429 until its failure window ends");
        }
    }

    /// Re-reads the tenants file when its modification time, size or inode
    /// changed, at most once per `check_interval`, on the calling request (a
    /// `stat`; the read only when it changed). A request that finds another
    /// one checking does not wait. An invalid new file is logged and the
    /// previous credentials stay in force until the file changes again.
    fn reload_if_changed(&self) {
        let Some(mut watch) = self.watch.try_lock() else {
            return;
        };
        if watch.last_check.elapsed() < self.check_interval {
            return;
        }
        watch.last_check = Instant::now();
        let stamp = match file_stamp(&self.path) {
            Ok(stamp) => stamp,
            Err(e) => {
                if watch.stamp.is_some() {
                    tracing::error!(path = %self.path.display(), error = %e,
                        "cannot read the tenants file; keeping the previous credentials");
                    watch.stamp = None;
                }
                return;
            }
        };
        if watch.stamp.as_ref() == Some(&stamp) {
            return;
        }
        watch.stamp = Some(stamp);
        match TenantsFile::load(&self.path) {
            Ok(tenants) => {
                log_loaded(&self.path, &tenants);
                *self.tenants.write() = Arc::new(tenants);
                self.verified.lock().clear();
            }
            Err(e) => tracing::error!(error = %e,
                "the changed tenants file is invalid; keeping the previous credentials"),
        }
    }
}

fn log_loaded(path: &Path, tenants: &TenantsFile) {
    let count = tenants.credentials().len();
    if count == 0 {
        tracing::warn!(path = %path.display(), "the tenants file has no credentials: every request will be refused");
    } else {
        tracing::info!(path = %path.display(), credentials = count, "loaded the tenants file");
    }
}

fn file_stamp(path: &Path) -> std::io::Result<FileStamp> {
    let meta = std::fs::metadata(path)?;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

/// The credential a request presents. Its `Debug` hides the secret.
enum Presented {
    Basic { username: String, password: String },
    Bearer(String),
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presented::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Presented::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

fn missing_credential() -> ServiceError {
    unauthenticated(
        "authentication required: send HTTP basic auth or a bearer token in the Authorization header",
    )
}

fn presented(headers: &HeaderMap) -> Result<Presented, ServiceError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(missing_credential());
    };
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("the Authorization header is not valid ASCII"))?;
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| unauthenticated("malformed basic-auth credentials"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| unauthenticated("malformed basic-auth credentials"))?;
        Ok(Presented::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Ok(Presented::Bearer(rest.to_string()))
    } else {
        Err(unauthenticated(
            "unsupported Authorization header: use Basic or Bearer",
        ))
    }
}

/// Scope first, then the tenant header: both are 403, since the caller is
/// known but not allowed.
fn check(credential: &Credential, headers: &HeaderMap, scope: Scope) -> Result<(), ServiceError> {
    if !credential.has_scope(scope) {
        return Err(lacks(credential, scope));
    }
    if let Some(value) = headers.get(TENANT_HEADER) {
        let named = value.to_str().map(str::trim).map_err(|_| {
            ServiceError::new(
                ErrorCode::BadRequest,
                "the X-Scope-OrgID header is not valid ASCII",
            )
        })?;
        if named != credential.tenant {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                format!(
                    "credential for tenant {:?} cannot act for tenant {}",
                    credential.tenant,
                    shorten(named)
                ),
            ));
        }
    }
    Ok(())
}

/// 403: the credential is valid but not allowed this.
fn lacks(credential: &Credential, scope: Scope) -> ServiceError {
    ServiceError::new(
        ErrorCode::Forbidden,
        format!(
            "credential {:?} for tenant {:?} lacks the {scope} scope",
            credential.name, credential.tenant
        ),
    )
}

const DUMMY_SALT: &str = "strata-dummy-salt";

fn unauthenticated(message: &str) -> ServiceError {
    ServiceError::new(ErrorCode::Unauthenticated, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SecretHash;

    fn hash(salt: &str, secret: &str) -> String {
        SecretHash::new(salt, secret.as_bytes())
            .unwrap()
            .to_string()
    }

    fn tenants_yaml(team_a_password: &str) -> String {
        format!(
            r#"
credentials:
  - name: grafana-team-a
    tenant: team-a
    scopes: [read]
    basic_auth:
      username: team-a
      password_hash: "{}"
  - name: prom-team-a
    tenant: team-a
    scopes: [read, write]
    bearer_token_hash: "{}"
  - name: prom-team-b
    tenant: team-b
    scopes: [write]
    bearer_token_hash: "{}"
"#,
            hash("salt-aaaa", team_a_password),
            hash("salt-bbbb", "token-a"),
            hash("salt-cccc", "token-b"),
        )
    }

    fn auth() -> Authenticator {
        Authenticator::from_tenants(
            TenantsFile::parse(&tenants_yaml("pw-a")).unwrap(),
            10,
            Duration::from_secs(60),
            &Registry::new(),
        )
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    fn code(result: Result<String, ServiceError>) -> ErrorCode {
        result.unwrap_err().code
    }

    #[test]
    fn basic_auth_and_bearer_resolve_to_the_credentials_tenant() {
        let a = auth();
        let read = a.resolver(Scope::Read);
        let write = a.resolver(Scope::Write);
        assert_eq!(
            read(&headers(&[("authorization", &basic("team-a:pw-a"))])).unwrap(),
            "team-a"
        );
        assert_eq!(
            write(&headers(&[("authorization", "Bearer token-a")])).unwrap(),
            "team-a"
        );
        assert_eq!(
            write(&headers(&[("authorization", "bearer  token-b ")])).unwrap(),
            "team-b"
        );
    }

    #[test]
    fn wrong_or_missing_credentials_are_401_without_secrets() {
        let a = auth();
        let cases = [
            headers(&[]),
            headers(&[("x-scope-orgid", "team-a")]),
            headers(&[("authorization", &basic("team-a:wrong-pw"))]),
            headers(&[("authorization", &basic("nobody:pw-a"))]),
            headers(&[("authorization", &basic("team-a"))]),
            headers(&[("authorization", "Basic !!!notbase64")]),
            headers(&[("authorization", "Bearer wrong-token")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Digest abc")]),
        ];
        for h in cases {
            let err = a.authenticate(&h, Scope::Read).unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthenticated, "{h:?}: {err}");
            for secret in ["wrong-pw", "pw-a", "wrong-token", "nobody", "notbase64"] {
                assert!(!err.message.contains(secret), "{err}");
            }
        }
    }

    #[test]
    fn missing_scope_is_403_naming_the_scope() {
        let a = auth();
        let err = a
            .authenticate(
                &headers(&[("authorization", &basic("team-a:pw-a"))]),
                Scope::Write,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err.message.contains("write scope"), "{}", err.message);
        assert!(err.message.contains("grafana-team-a"), "{}", err.message);
        let err = a
            .authenticate(
                &headers(&[("authorization", "Bearer token-b")]),
                Scope::Read,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err.message.contains("read scope"), "{}", err.message);
    }

    #[test]
    fn tenant_header_must_match_the_credential() {
        let a = auth();
        let ok = headers(&[
            ("authorization", "Bearer token-a"),
            ("x-scope-orgid", "team-a"),
        ]);
        assert_eq!(a.authenticate(&ok, Scope::Read).unwrap(), "team-a");
        let other = headers(&[
            ("authorization", "Bearer token-a"),
            ("x-scope-orgid", "team-b"),
        ]);
        let err = a.authenticate(&other, Scope::Read).unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert_eq!(
            err.message,
            "credential for tenant \"team-a\" cannot act for tenant \"team-b\""
        );
    }

    #[test]
    fn disabled_behaves_as_before() {
        let config = AuthConfig::default();
        let a = Authenticator::new(&config, true, &Registry::new()).unwrap();
        assert!(!a.is_enabled());
        let resolve = a.resolver(Scope::Write);
        assert_eq!(
            resolve(&headers(&[("x-scope-orgid", "team-x")])).unwrap(),
            "team-x"
        );
        assert_eq!(code(resolve(&headers(&[]))), ErrorCode::Unauthenticated);
        let a = Authenticator::new(&config, false, &Registry::new()).unwrap();
        assert_eq!(a.resolver(Scope::Read)(&headers(&[])).unwrap(), "anonymous");
    }

    #[test]
    fn config_errors() {
        let enabled = AuthConfig {
            enabled: true,
            tenants_file: String::new(),
            ..AuthConfig::default()
        };
        assert!(matches!(
            Authenticator::new(&enabled, true, &Registry::new()),
            Err(AuthError::Config {
                key: "auth.tenants_file",
                ..
            })
        ));
        assert!(matches!(
            Authenticator::new(&enabled, false, &Registry::new()),
            Err(AuthError::Config {
                key: "auth.enabled",
                ..
            })
        ));
        let missing = AuthConfig {
            enabled: true,
            tenants_file: "/nonexistent/tenants.yaml".into(),
            ..AuthConfig::default()
        };
        let err = Authenticator::new(&missing, true, &Registry::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/tenants.yaml"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.yaml");
        std::fs::write(
            &path,
            "credentials: [{name: x, tenant: t, scopes: [read], bearer_token_hash: hunter2}]",
        )
        .unwrap();
        let bad = AuthConfig {
            enabled: true,
            tenants_file: path.display().to_string(),
            ..AuthConfig::default()
        };
        let err = Authenticator::new(&bad, true, &Registry::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tenants.yaml")
                && err.contains("credentials[0] (\"x\").bearer_token_hash"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn reloads_when_the_file_changes_and_keeps_the_old_one_when_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.yaml");
        std::fs::write(&path, tenants_yaml("old-pw")).unwrap();
        let config = AuthConfig {
            enabled: true,
            tenants_file: path.display().to_string(),
            ..AuthConfig::default()
        };
        let a = Authenticator::with_check_interval(&config, true, &Registry::new(), Duration::ZERO)
            .unwrap();
        let old = headers(&[("authorization", &basic("team-a:old-pw"))]);
        let new = headers(&[("authorization", &basic("team-a:new-pw"))]);
        assert!(a.authenticate(&old, Scope::Read).is_ok());
        assert_eq!(
            code(a.authenticate(&new, Scope::Read)),
            ErrorCode::Unauthenticated
        );

        // Replace the file atomically, as config management does.
        let tmp = dir.path().join("tenants.yaml.tmp");
        std::fs::write(&tmp, tenants_yaml("new-pw")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(a.authenticate(&new, Scope::Read).is_ok());
        assert_eq!(
            code(a.authenticate(&old, Scope::Read)),
            ErrorCode::Unauthenticated
        );

        // A broken file keeps the last good credentials.
        std::fs::write(&path, "credentials: [{name: broken").unwrap();
        assert!(a.authenticate(&new, Scope::Read).is_ok());
        // So does a deleted one.
        std::fs::remove_file(&path).unwrap();
        assert!(a.authenticate(&new, Scope::Read).is_ok());
        // And it comes back when fixed.
        std::fs::write(&path, tenants_yaml("third-pw")).unwrap();
        let third = headers(&[("authorization", &basic("team-a:third-pw"))]);
        assert!(a.authenticate(&third, Scope::Read).is_ok());
    }

    #[test]
    fn debug_redacts() {
        let a = auth();
        let dbg = format!("{a:?}");
        assert!(dbg.contains("credentials: 3"), "{dbg}");
        assert!(!dbg.contains("salt-") && !dbg.contains("sha256"), "{dbg}");
        let p = Presented::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(!format!("{:?}", Presented::Bearer("tok-secret".into())).contains("tok-secret"));
    }

    /// htpasswd -nbB -C 4 ops pw-bcrypt
    const OPS_BCRYPT: &str = "$2y$04$qMkFA1NEQNlyV1gyEHR93ufFAp8lukFWtq.s5R8aA/uRP3X9t9RLO";

    fn admin_auth(max_failures: u32, registry: &Registry) -> Authenticator {
        let yaml = format!(
            "{}  - name: ops\n    tenant: team-a\n    scopes: [admin]\n    basic_auth:\n      username: ops\n      password_hash: '{OPS_BCRYPT}'\n",
            tenants_yaml("pw-a")
        );
        Authenticator::from_tenants(
            TenantsFile::parse(&yaml).unwrap(),
            max_failures,
            Duration::from_secs(60),
            registry,
        )
        .unwrap()
    }

    fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    #[tokio::test]
    async fn admin_routes_need_the_admin_scope_whatever_the_tenant_header() {
        let a = admin_auth(10, &Registry::new());
        let code = |r: Result<(), Refused>| r.map_err(|e| e.error.code);
        assert_eq!(
            code(a.admit(&headers(&[]), None, Access::Admin).await),
            Err(ErrorCode::Unauthenticated)
        );
        assert_eq!(
            code(
                a.admit(
                    &headers(&[("authorization", &basic("ops:wrong"))]),
                    None,
                    Access::Admin
                )
                .await
            ),
            Err(ErrorCode::Unauthenticated)
        );
        let err = a
            .admit(
                &headers(&[("authorization", "Bearer token-a")]),
                None,
                Access::Admin,
            )
            .await
            .unwrap_err();
        assert_eq!(err.error.code, ErrorCode::Forbidden);
        assert_eq!(
            err.error.message,
            "credential \"prom-team-a\" for tenant \"team-a\" lacks the admin scope"
        );
        let ops = basic("ops:pw-bcrypt");
        for tenant in [None, Some("team-a"), Some("team-b")] {
            let mut h = headers(&[("authorization", &ops)]);
            if let Some(t) = tenant {
                h.insert("x-scope-orgid", t.parse().unwrap());
            }
            assert_eq!(a.admit(&h, None, Access::Admin).await, Ok(()), "{tenant:?}");
        }
        // admin grants neither read nor write.
        let err = a
            .admit(
                &headers(&[("authorization", &ops)]),
                None,
                Access::Tenant(Scope::Read),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error.code, ErrorCode::Forbidden);
        // Open routes need nothing.
        assert_eq!(a.admit(&headers(&[]), None, Access::Open).await, Ok(()));
        // Tenant routes are checked as the resolvers check them.
        assert_eq!(
            a.admit(
                &headers(&[("authorization", "Bearer token-a")]),
                None,
                Access::Tenant(Scope::Write)
            )
            .await,
            Ok(())
        );
        let err = a
            .admit(
                &headers(&[
                    ("authorization", "Bearer token-a"),
                    ("x-scope-orgid", "team-b"),
                ]),
                None,
                Access::Tenant(Scope::Read),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error.code, ErrorCode::Forbidden);
    }

    #[tokio::test]
    async fn with_auth_off_everything_is_admitted() {
        let a = Authenticator::new(&AuthConfig::default(), true, &Registry::new()).unwrap();
        assert_eq!(a.admit(&headers(&[]), None, Access::Admin).await, Ok(()));
    }

    #[tokio::test]
    async fn bcrypt_is_computed_once_then_cached() {
        let registry = Registry::new();
        let a = admin_auth(10, &registry);
        let ops = headers(&[("authorization", &basic("ops:pw-bcrypt"))]);
        let computed = |r: &Registry| {
            counter(
                r,
                "strata_auth_bcrypt_checks_total",
                &[("outcome", "computed")],
            )
        };
        let cached = |r: &Registry| {
            counter(
                r,
                "strata_auth_bcrypt_checks_total",
                &[("outcome", "cached")],
            )
        };
        a.admit(&ops, None, Access::Admin).await.unwrap();
        assert_eq!((computed(&registry), cached(&registry)), (1.0, 0.0));
        for _ in 0..5 {
            a.admit(&ops, None, Access::Admin).await.unwrap();
        }
        // The synchronous resolver finds it too.
        let err = a.authenticate(&ops, Scope::Read).unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert_eq!((computed(&registry), cached(&registry)), (1.0, 6.0));
        // A wrong password is computed every time, and never cached.
        let wrong = headers(&[("authorization", &basic("ops:pw-bcrypT"))]);
        for _ in 0..2 {
            assert!(a.admit(&wrong, None, Access::Admin).await.is_err());
        }
        assert_eq!(computed(&registry), 3.0);
        // The right one is still cached: the wrong ones did not evict it.
        a.admit(&ops, None, Access::Admin).await.unwrap();
        assert_eq!((computed(&registry), cached(&registry)), (3.0, 7.0));
    }

    #[tokio::test]
    async fn failures_are_counted_and_a_failing_source_backs_off() {
        let registry = Registry::new();
        let a = admin_auth(3, &registry);
        let attacker: IpAddr = "192.0.2.9".parse().unwrap();
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        let wrong = headers(&[("authorization", &basic("ops:guess"))]);
        let unknown = headers(&[("authorization", &basic("root:guess"))]);
        let ops = headers(&[("authorization", &basic("ops:pw-bcrypt"))]);
        for h in [&wrong, &unknown, &wrong] {
            let err = a.admit(h, Some(attacker), Access::Admin).await.unwrap_err();
            assert_eq!(err.error.code, ErrorCode::Unauthenticated);
            assert_eq!(err.retry_after, None);
        }
        // The limit is reached: even the right password is refused now.
        let err = a
            .admit(&ops, Some(attacker), Access::Admin)
            .await
            .unwrap_err();
        assert_eq!(err.error.code, ErrorCode::TooManyRequests);
        let wait = err.retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(
            !err.error.message.contains("192.0.2.9"),
            "{}",
            err.error.message
        );
        // Another source is not.
        assert_eq!(a.admit(&ops, Some(other), Access::Admin).await, Ok(()));
        // A missing credential is refused but not counted.
        let missing = a
            .admit(&headers(&[]), Some(other), Access::Admin)
            .await
            .unwrap_err();
        assert_eq!(missing.error.code, ErrorCode::Unauthenticated);

        let failed = |labels: &[(&str, &str)]| {
            counter(&registry, "strata_auth_failed_attempts_total", labels)
        };
        assert_eq!(
            failed(&[("credential", "ops"), ("reason", "wrong_password")]),
            2.0
        );
        assert_eq!(
            failed(&[("credential", "unknown"), ("reason", "unknown_user")]),
            1.0
        );
        assert_eq!(failed(&[]), 3.0);
        assert_eq!(
            counter(&registry, "strata_auth_throttled_requests_total", &[]),
            1.0
        );
        // No label names a source or a made-up user.
        let text = format!("{:?}", registry.gather());
        assert!(
            !text.contains("192.0.2") && !text.contains("root"),
            "{text}"
        );
    }
}
