//! The tenants file: which credentials exist, which tenant each acts for, and
//! what it may do there.
//!
//! ```yaml
//! credentials:
//!   - name: grafana-team-a          # unique; appears in 403 messages and logs
//!     tenant: team-a
//!     scopes: [read]
//!     basic_auth:
//!       username: team-a
//!       password_hash: "$2y$10$<53 characters>"   # bcrypt: htpasswd -B
//!   - name: prometheus-team-a
//!     tenant: team-a
//!     scopes: [read, write]
//!     bearer_token_hash: "sha256$<salt>$<hex>"    # sha256 only
//!   - name: ops
//!     tenant: team-a
//!     scopes: [admin]                            # the admin routes
//!     basic_auth: {username: ops, password_hash: "$2y$10$..."}
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;
use strata_model::validate_tenant_id;

use crate::error::AuthError;
use crate::hash::{SecretHash, HASH_SCHEME};

/// What a credential may do: `read` (query APIs), `write` (remote write) or
/// `admin` (the administrative routes: flush, compaction, ring actions, the
/// config dumps; see `docs/authentication.md`). Each is granted on its own:
/// `admin` does not imply `read` or `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        })
    }
}

/// One credential of the tenants file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token_hash: Option<SecretHash>,
}

impl Credential {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A basic-auth user and the hash of its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password_hash: SecretHash,
}

/// A parsed and checked tenants file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantsFile {
    credentials: Vec<Credential>,
    by_username: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    credentials: Vec<RawCredential>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: String,
    tenant: String,
    scopes: Vec<Scope>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    bearer_token_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password_hash: String,
}

impl TenantsFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<TenantsFile, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        TenantsFile::parse(&text).map_err(|reason| AuthError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses and checks tenants-file YAML. The error names the entry (by
    /// index and name) and the key, and never quotes a hash or secret.
    pub fn parse(text: &str) -> Result<TenantsFile, String> {
        strata_model::check_bracket_nesting(text, strata_model::MAX_YAML_NESTING)
            .map_err(|e| e.to_string())?;
        let tree: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let tree = match tree {
            Value::Null => Value::Mapping(Default::default()),
            other => other,
        };
        let raw: RawFile = serde_path_to_error::deserialize(tree.clone()).map_err(|e| {
            let path = e.path().to_string();
            let mut message = e.into_inner().to_string();
            if path.contains("basic_auth") || path.contains("bearer_token_hash") {
                message = redact_quoted(&message);
            }
            format!("{}: {message}", describe_path(&path, &tree))
        })?;

        let mut file = TenantsFile::default();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw.credentials.into_iter().enumerate() {
            let at = |key: &str| format!("credentials[{i}] ({:?}).{key}", raw.name);
            if raw.name.trim().is_empty() {
                return Err(format!("credentials[{i}].name: must not be empty"));
            }
            if let Some(first) = names.insert(raw.name.clone(), i) {
                return Err(format!(
                    "{}: duplicate name, already used by credentials[{first}]",
                    at("name")
                ));
            }
            validate_tenant_id(&raw.tenant).map_err(|e| format!("{}: {e}", at("tenant")))?;
            if raw.scopes.is_empty() {
                return Err(format!(
                    "{}: list at least one of read, write, admin",
                    at("scopes")
                ));
            }
            if raw.basic_auth.is_none() && raw.bearer_token_hash.is_none() {
                return Err(format!(
                    "credentials[{i}] ({:?}): set basic_auth or bearer_token_hash (or both)",
                    raw.name
                ));
            }
            let basic_auth = match raw.basic_auth {
                None => None,
                Some(b) => {
                    if b.username.is_empty() || b.username.contains(':') {
                        return Err(format!(
                            "{}: must be non-empty and contain no ':'",
                            at("basic_auth.username")
                        ));
                    }
                    if let Some(first) = file.by_username.get(&b.username) {
                        return Err(format!(
                            "{}: duplicate user name, already used by credentials[{first}]",
                            at("basic_auth.username")
                        ));
                    }
                    let password_hash = SecretHash::parse(&b.password_hash)
                        .map_err(|e| format!("{}: {e}", at("basic_auth.password_hash")))?;
                    file.by_username.insert(b.username.clone(), i);
                    Some(BasicAuth {
                        username: b.username,
                        password_hash,
                    })
                }
            };
            let bearer_token_hash = match raw.bearer_token_hash {
                None => None,
                Some(h) => {
                    let hash = SecretHash::parse(&h)
                        .map_err(|e| format!("{}: {e}", at("bearer_token_hash")))?;
                    if hash.is_slow() {
                        return Err(format!(
                            "{}: bcrypt is for basic_auth.password_hash; a bearer token is checked \
                             against every bearer credential, so it takes the fast \
                             {HASH_SCHEME}$<salt>$<hex> form (use a long random token)",
                            at("bearer_token_hash")
                        ));
                    }
                    Some(hash)
                }
            };
            file.credentials.push(Credential {
                name: raw.name,
                tenant: raw.tenant,
                scopes: raw.scopes,
                basic_auth,
                bearer_token_hash,
            });
        }
        Ok(file)
    }

    pub fn credentials(&self) -> &[Credential] {
        &self.credentials
    }

    /// The credential whose basic-auth user is `username` and whose password
    /// is `password`. An unknown user costs a hash too, so timing does not tell
    /// which user names exist.
    pub fn find_basic(&self, username: &str, password: &[u8]) -> Option<&Credential> {
        match self.by_username.get(username) {
            Some(&i) => {
                let credential = self.credentials.get(i)?;
                let basic = credential.basic_auth.as_ref()?;
                basic.password_hash.verify(password).then_some(credential)
            }
            None => {
                if let Ok(dummy) = SecretHash::new(DUMMY_SALT, b"") {
                    let _ = dummy.verify(password);
                }
                None
            }
        }
    }

    /// The credential whose basic-auth user is `username`, unchecked.
    pub fn basic_credential(&self, username: &str) -> Option<&Credential> {
        let credential = self.credentials.get(*self.by_username.get(username)?)?;
        credential.basic_auth.is_some().then_some(credential)
    }

    /// The bcrypt password hash of the highest cost in the file, if any: an
    /// unknown user name is checked against it (and refused whatever the
    /// result), so it costs what a known one does.
    pub fn costliest_password_hash(&self) -> Option<&SecretHash> {
        self.credentials
            .iter()
            .filter_map(|c| c.basic_auth.as_ref())
            .map(|b| &b.password_hash)
            .filter(|h| h.is_slow())
            .max_by_key(|h| h.bcrypt_cost())
    }

    /// The first credential (in file order) whose bearer token is `token`.
    /// Every bearer credential is checked, so timing does not tell which one
    /// matched; the cost is one SHA-256 per bearer credential.
    pub fn find_bearer(&self, token: &[u8]) -> Option<&Credential> {
        let mut found = None;
        for credential in &self.credentials {
            if let Some(hash) = &credential.bearer_token_hash {
                if hash.verify(token) && found.is_none() {
                    found = Some(credential);
                }
            }
        }
        found
    }
}

const DUMMY_SALT: &str = "strata-dummy-salt";

/// `credentials[1].scopes[0]` → `credentials[1] ("grafana").scopes[0]`.
fn describe_path(path: &str, tree: &Value) -> String {
    let Some(rest) = path.strip_prefix("credentials[") else {
        return path.to_string();
    };
    let Some((index, after)) = rest.split_once(']') else {
        return path.to_string();
    };
    let name = index
        .parse::<usize>()
        .ok()
        .and_then(|i| tree.get("credentials")?.get(i)?.get("name")?.as_str());
    match name {
        Some(name) => format!("credentials[{index}] ({name:?}){after}"),
        None => path.to_string(),
    }
}

/// serde's messages quote the values they reject; under secret-bearing keys
/// those values may be secrets.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"<redacted>");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(salt: &str, secret: &str) -> String {
        SecretHash::new(salt, secret.as_bytes())
            .unwrap()
            .to_string()
    }

    fn example() -> String {
        format!(
            r#"
credentials:
  - name: grafana-team-a
    tenant: team-a
    scopes: [read]
    basic_auth:
      username: team-a
      password_hash: "{}"
  - name: prom-team-b
    tenant: team-b
    scopes: [read, write]
    bearer_token_hash: "{}"
"#,
            hash("salt-one", "pw-a"),
            hash("salt-two", "token-b"),
        )
    }

    #[test]
    fn parses_and_finds_credentials() {
        let file = TenantsFile::parse(&example()).unwrap();
        assert_eq!(file.credentials().len(), 2);
        let a = file.find_basic("team-a", b"pw-a").unwrap();
        assert_eq!(a.tenant, "team-a");
        assert!(a.has_scope(Scope::Read) && !a.has_scope(Scope::Write));
        assert!(file.find_basic("team-a", b"wrong").is_none());
        assert!(file.find_basic("nobody", b"pw-a").is_none());
        let b = file.find_bearer(b"token-b").unwrap();
        assert_eq!(b.name, "prom-team-b");
        assert!(file.find_bearer(b"pw-a").is_none());
    }

    #[test]
    fn empty_file_has_no_credentials() {
        assert!(TenantsFile::parse("").unwrap().credentials().is_empty());
        assert!(TenantsFile::parse("credentials: []")
            .unwrap()
            .credentials()
            .is_empty());
    }

    #[test]
    fn errors_name_the_entry_and_key() {
        let good = hash("saltsalt", "pw");
        let cases = [
            (
                "credentials: [{name: x, tenant: t, scopes: [root], bearer_token_hash: h}]"
                    .to_string(),
                "credentials[0] (\"x\").scopes[0]: unknown variant `root`",
            ),
            (
                format!("credentials: [{{name: x, tenant: t, scopes: [read], bearer_token_hash: \"{good}\", colour: red}}]"),
                "credentials[0] (\"x\").colour: unknown field `colour`",
            ),
            (
                format!("credentials: [{{name: ok, tenant: t, scopes: [read], bearer_token_hash: \"{good}\"}}, {{name: y, tenant: ../t, scopes: [read], bearer_token_hash: \"{good}\"}}]"),
                "credentials[1] (\"y\").tenant:",
            ),
            (
                "credentials: [{name: z, tenant: t, scopes: [read], bearer_token_hash: not-a-hash}]"
                    .to_string(),
                "credentials[0] (\"z\").bearer_token_hash: expected a bcrypt hash",
            ),
            (
                "credentials: [{name: z, tenant: t, scopes: [read], basic_auth: {username: u, password_hash: hunter2}}]"
                    .to_string(),
                "credentials[0] (\"z\").basic_auth.password_hash:",
            ),
            (
                "credentials: [{name: z, tenant: t, scopes: [], bearer_token_hash: x}]".to_string(),
                "credentials[0] (\"z\").scopes: list at least one",
            ),
            (
                "credentials: [{name: z, tenant: t, scopes: [read]}]".to_string(),
                "set basic_auth or bearer_token_hash",
            ),
            (
                format!("credentials: [{{name: a, tenant: t, scopes: [read], bearer_token_hash: \"{good}\"}}, {{name: a, tenant: t, scopes: [read], bearer_token_hash: \"{good}\"}}]"),
                "credentials[1] (\"a\").name: duplicate name",
            ),
            (
                format!("credentials: [{{name: a, tenant: t, scopes: [read], basic_auth: {{username: u, password_hash: \"{good}\"}}}}, {{name: b, tenant: t, scopes: [read], basic_auth: {{username: u, password_hash: \"{good}\"}}}}]"),
                "credentials[1] (\"b\").basic_auth.username: duplicate user name",
            ),
            ("users: []".to_string(), "unknown field `users`"),
            ("credentials: [".to_string(), ""),
        ];
        for (text, want) in cases {
            let err = TenantsFile::parse(&text).unwrap_err();
            assert!(err.contains(want), "{text}\n  gave: {err}\n  want: {want}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn bcrypt_password_hashes_are_accepted_and_bad_ones_name_the_entry() {
        // htpasswd -nbB -C 4 team-a pw-bcrypt
        let good = "$2y$04$qMkFA1NEQNlyV1gyEHR93ufFAp8lukFWtq.s5R8aA/uRP3X9t9RLO";
        let text = format!(
            "credentials: [{{name: ops, tenant: t, scopes: [admin], basic_auth: {{username: ops, password_hash: '{good}'}}}}]"
        );
        let file = TenantsFile::parse(&text).unwrap();
        let ops = file.find_basic("ops", b"pw-bcrypt").unwrap();
        assert!(ops.has_scope(Scope::Admin) && !ops.has_scope(Scope::Read));
        assert!(file.find_basic("ops", b"wrong").is_none());
        assert_eq!(
            file.costliest_password_hash()
                .and_then(SecretHash::bcrypt_cost),
            Some(4)
        );

        let truncated = &good[..50];
        let bad = format!(
            "credentials: [{{name: ok, tenant: t, scopes: [read], basic_auth: {{username: a, password_hash: '{good}'}}}}, {{name: ops, tenant: t, scopes: [admin], basic_auth: {{username: ops, password_hash: '{truncated}'}}}}]"
        );
        let err = TenantsFile::parse(&bad).unwrap_err();
        assert!(
            err.starts_with("credentials[1] (\"ops\").basic_auth.password_hash: it has 50 bytes"),
            "{err}"
        );
        assert!(!err.contains(&good[7..20]), "{err}");

        // bcrypt is refused for bearer tokens, without quoting it.
        let bearer = format!(
            "credentials: [{{name: tok, tenant: t, scopes: [read], bearer_token_hash: '{good}'}}]"
        );
        let err = TenantsFile::parse(&bearer).unwrap_err();
        assert!(
            err.starts_with("credentials[0] (\"tok\").bearer_token_hash: bcrypt is for basic_auth.password_hash"),
            "{err}"
        );
        assert!(!err.contains(&good[7..20]), "{err}");
    }

    #[test]
    fn secrets_in_wrongly_typed_values_are_not_quoted() {
        let err = TenantsFile::parse(
            "credentials: [{name: z, tenant: t, scopes: [read], basic_auth: \"hunter2\"}]",
        )
        .unwrap_err();
        assert!(err.contains("credentials[0] (\"z\").basic_auth"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_shows_no_hashes() {
        let file = TenantsFile::parse(&example()).unwrap();
        let dbg = format!("{file:?}");
        assert!(dbg.contains("grafana-team-a"), "{dbg}");
        assert!(
            !dbg.contains("salt-one") && !dbg.contains("salt-two"),
            "{dbg}"
        );
        assert!(!dbg.contains("sha256$"), "{dbg}");
    }

    #[test]
    fn the_dummy_hash_is_valid() {
        assert!(SecretHash::new(DUMMY_SALT, b"").is_ok());
    }
}
