//! [`Authenticator`]: turns the `auth` config section into the tenant
//! resolvers the HTTP routers take, and keeps the tenants file current.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use http::HeaderMap;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use strata_status::{ErrorCode, ServiceError};

use crate::error::AuthError;
use crate::tenant_header::{resolver, shorten, TenantResolver, TENANT_HEADER};
use crate::tenants::{Credential, Scope, TenantsFile};

/// How often, at most, a request checks whether the tenants file changed.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The `auth` config section.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: bool,
    pub tenants_file: String,
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
    pub fn new(config: &AuthConfig, multitenancy_enabled: bool) -> Result<Self, AuthError> {
        Self::with_check_interval(config, multitenancy_enabled, RELOAD_CHECK_INTERVAL)
    }

    fn with_check_interval(
        config: &AuthConfig,
        multitenancy_enabled: bool,
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
        Ok(Authenticator {
            mode: Mode::Enabled(Arc::new(Enabled {
                path,
                tenants: RwLock::new(Arc::new(tenants)),
                watch: Mutex::new(Watch {
                    last_check: Instant::now(),
                    stamp: Some(stamp),
                }),
                check_interval,
            })),
        })
    }

    /// An authenticator over fixed credentials (no file, no reloads).
    pub fn from_tenants(tenants: TenantsFile) -> Self {
        Authenticator {
            mode: Mode::Enabled(Arc::new(Enabled {
                path: PathBuf::new(),
                tenants: RwLock::new(Arc::new(tenants)),
                watch: Mutex::new(Watch {
                    last_check: Instant::now(),
                    stamp: None,
                }),
                check_interval: Duration::MAX,
            })),
        }
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
        let credential = match presented(headers)? {
            Presented::Basic { username, password } => tenants
                .find_basic(&username, password.as_bytes())
                .ok_or_else(|| unauthenticated("invalid user name or password"))?,
            Presented::Bearer(token) => tenants
                .find_bearer(token.as_bytes())
                .ok_or_else(|| unauthenticated("invalid bearer token"))?,
        };
        check(credential, headers, scope)?;
        Ok(credential.tenant.clone())
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

fn presented(headers: &HeaderMap) -> Result<Presented, ServiceError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(unauthenticated(
            "authentication required: send HTTP basic auth or a bearer token in the Authorization header",
        ));
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
        return Err(ServiceError::new(
            ErrorCode::Forbidden,
            format!(
                "credential {:?} for tenant {:?} lacks the {scope} scope",
                credential.name, credential.tenant
            ),
        ));
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
        Authenticator::from_tenants(TenantsFile::parse(&tenants_yaml("pw-a")).unwrap())
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
        let a = Authenticator::new(&config, true).unwrap();
        assert!(!a.is_enabled());
        let resolve = a.resolver(Scope::Write);
        assert_eq!(
            resolve(&headers(&[("x-scope-orgid", "team-x")])).unwrap(),
            "team-x"
        );
        assert_eq!(code(resolve(&headers(&[]))), ErrorCode::Unauthenticated);
        let a = Authenticator::new(&config, false).unwrap();
        assert_eq!(a.resolver(Scope::Read)(&headers(&[])).unwrap(), "anonymous");
    }

    #[test]
    fn config_errors() {
        let enabled = AuthConfig {
            enabled: true,
            tenants_file: String::new(),
        };
        assert!(matches!(
            Authenticator::new(&enabled, true),
            Err(AuthError::Config {
                key: "auth.tenants_file",
                ..
            })
        ));
        assert!(matches!(
            Authenticator::new(&enabled, false),
            Err(AuthError::Config {
                key: "auth.enabled",
                ..
            })
        ));
        let missing = AuthConfig {
            enabled: true,
            tenants_file: "/nonexistent/tenants.yaml".into(),
        };
        let err = Authenticator::new(&missing, true).unwrap_err().to_string();
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
        };
        let err = Authenticator::new(&bad, true).unwrap_err().to_string();
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
        };
        let a = Authenticator::with_check_interval(&config, true, Duration::ZERO).unwrap();
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
}
