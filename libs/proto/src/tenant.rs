//! The tenant ID on gRPC calls between components: clients put it in the
//! `x-scope-orgid` metadata, servers take it back out and check it.

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// gRPC metadata key carrying the tenant ID between components.
pub const TENANT_METADATA_KEY: &str = "x-scope-orgid";

/// A tenant ID that cannot travel as gRPC metadata (not visible ASCII).
#[derive(Debug, thiserror::Error)]
#[error("tenant ID {0:?} cannot be sent as gRPC metadata")]
pub struct TenantNotSendable(pub String);

/// `message` as a request for `tenant`.
pub fn tenant_request<T>(tenant: &str, message: T) -> Result<Request<T>, TenantNotSendable> {
    let value: MetadataValue<_> = tenant
        .parse()
        .map_err(|_| TenantNotSendable(tenant.to_string()))?;
    let mut request = Request::new(message);
    request.metadata_mut().insert(TENANT_METADATA_KEY, value);
    Ok(request)
}

/// The tenant a request is for: present, ASCII and a valid tenant ID, or an
/// `Unauthenticated` status saying which of these it is not.
pub fn request_tenant<T>(request: &Request<T>) -> Result<String, Status> {
    let value = request
        .metadata()
        .get(TENANT_METADATA_KEY)
        .ok_or_else(|| Status::unauthenticated("no tenant ID in the x-scope-orgid metadata"))?;
    let tenant = value.to_str().map_err(|_| {
        Status::unauthenticated("the tenant ID in x-scope-orgid is not valid ASCII")
    })?;
    strata_model::validate_tenant_id(tenant).map_err(|e| Status::unauthenticated(e.to_string()))?;
    Ok(tenant.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_travels_and_comes_back() {
        let request = tenant_request("team-a", ()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(request_tenant(&request).ok().as_deref(), Some("team-a"));
    }

    #[test]
    fn bad_tenants_are_refused_on_both_ends() {
        assert!(tenant_request("bad\ntenant", ()).is_err());
        let missing = Request::new(());
        assert_eq!(
            request_tenant(&missing).map_err(|s| s.code()).err(),
            Some(tonic::Code::Unauthenticated)
        );
        let invalid = tenant_request("..", ()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            request_tenant(&invalid).map_err(|s| s.code()).err(),
            Some(tonic::Code::Unauthenticated)
        );
    }
}
