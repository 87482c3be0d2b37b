//! The tenant a request names without authentication: `X-Scope-OrgID`, or
//! else the basic-auth user name, or `anonymous` without multitenancy. The
//! [`TenantResolver`] type every HTTP router takes lives here too, since the
//! authenticator hands out resolvers of the same type.

use std::sync::Arc;

use base64::Engine as _;
use http::HeaderMap;
use strata_model::validate_tenant_id;
use strata_status::{ErrorCode, ServiceError};

/// The header Cortex, Mimir and Loki read the tenant from.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// The tenant of every request when multitenancy is disabled (Mimir's default
/// `no_auth_tenant`).
pub const NO_AUTH_TENANT: &str = "anonymous";

/// Resolves the tenant of a request from its headers. The HTTP routers take one
/// of these so they do not depend on how tenants are decided.
pub type TenantResolver = Arc<dyn Fn(&HeaderMap) -> Result<String, ServiceError> + Send + Sync>;

/// The resolver for a process: header or basic-auth user when
/// `multitenancy_enabled`, otherwise always [`NO_AUTH_TENANT`].
pub fn resolver(multitenancy_enabled: bool) -> TenantResolver {
    if multitenancy_enabled {
        Arc::new(tenant_from_headers)
    } else {
        Arc::new(|_: &HeaderMap| Ok(NO_AUTH_TENANT.to_string()))
    }
}

/// The tenant named by `X-Scope-OrgID`, or else by the basic-auth user name.
/// No tenant is 401; an invalid tenant ID is 400 with the reason.
pub fn tenant_from_headers(headers: &HeaderMap) -> Result<String, ServiceError> {
    let tenant = match headers.get(TENANT_HEADER) {
        Some(value) => value
            .to_str()
            .map_err(|_| invalid("the X-Scope-OrgID header is not valid ASCII"))?
            .trim()
            .to_string(),
        None => match basic_auth_user(headers)? {
            Some(user) => user,
            None => {
                return Err(ServiceError::new(
                    ErrorCode::Unauthenticated,
                    "no tenant ID: send the X-Scope-OrgID header or a basic-auth user name",
                ))
            }
        },
    };
    validate_tenant_id(&tenant)
        .map_err(|e| invalid(&format!("invalid tenant ID {}: {e}", shorten(&tenant))))?;
    Ok(tenant)
}

/// The user name of `Authorization: Basic ...`, if that header is present.
fn basic_auth_user(headers: &HeaderMap) -> Result<Option<String>, ServiceError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| invalid("the Authorization header is not valid ASCII"))?;
    let Some((scheme, credentials)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .map_err(|_| invalid("the basic-auth credentials are not valid base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| invalid("the basic-auth credentials are not valid UTF-8"))?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    if user.is_empty() {
        return Ok(None);
    }
    Ok(Some(user.to_string()))
}

fn invalid(message: &str) -> ServiceError {
    ServiceError::new(ErrorCode::BadRequest, message)
}

/// Hostile tenant IDs can be long; error messages quote only their start.
pub(crate) fn shorten(tenant: &str) -> String {
    const SHOWN: usize = 64;
    if tenant.chars().count() <= SHOWN {
        format!("{tenant:?}")
    } else {
        let start: String = tenant.chars().take(SHOWN).collect();
        format!("{start:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn header_wins_over_basic_auth() {
        let h = headers(&[
            ("x-scope-orgid", "team-a"),
            ("authorization", &basic("team-b:secret")),
        ]);
        assert_eq!(tenant_from_headers(&h).unwrap(), "team-a");
    }

    #[test]
    fn basic_auth_user_is_the_tenant() {
        let h = headers(&[("authorization", &basic("tenant-a:"))]);
        assert_eq!(tenant_from_headers(&h).unwrap(), "tenant-a");
        let h = headers(&[("authorization", &basic("tenant-b"))]);
        assert_eq!(tenant_from_headers(&h).unwrap(), "tenant-b");
    }

    #[test]
    fn no_tenant_is_unauthenticated() {
        let err = tenant_from_headers(&HeaderMap::new()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthenticated);
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(
            tenant_from_headers(&h).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
        let h = headers(&[("authorization", &basic(":pw"))]);
        assert_eq!(
            tenant_from_headers(&h).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
    }

    #[test]
    fn invalid_tenants_are_bad_requests_naming_the_reason() {
        for bad in ["../x", "a/b", ".."] {
            let err = tenant_from_headers(&headers(&[("x-scope-orgid", bad)])).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{bad}");
            assert!(err.message.contains("invalid tenant ID"), "{}", err.message);
        }
        let long = "a".repeat(200);
        let err = tenant_from_headers(&headers(&[("x-scope-orgid", &long)])).unwrap_err();
        assert!(err.message.contains("200"), "{}", err.message);
        assert!(err.message.len() < 250, "{}", err.message);
        let err = tenant_from_headers(&headers(&[("authorization", "Basic !!!")])).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }

    #[test]
    fn multitenancy_disabled_is_anonymous() {
        let resolve = resolver(false);
        assert_eq!(resolve(&HeaderMap::new()).unwrap(), "anonymous");
        assert_eq!(
            resolve(&headers(&[("x-scope-orgid", "x")])).unwrap(),
            "anonymous"
        );
    }
}
