use strata_status::{Coded, ErrorCode};
use thiserror::Error;

/// Tenant IDs become object-store path prefixes, so they are restricted the way
/// Cortex and Mimir restrict them.
pub const MAX_TENANT_ID_LENGTH: usize = 150;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TenantError {
    #[error("tenant ID is empty")]
    Empty,
    #[error("tenant ID is {0} characters long, more than the maximum of {MAX_TENANT_ID_LENGTH}")]
    TooLong(usize),
    #[error("tenant ID {0:?} is not allowed")]
    Reserved(String),
    #[error(
        "tenant ID contains unsupported character {0:?}; allowed are A-Z a-z 0-9 ! - _ . * ' ( )"
    )]
    BadCharacter(char),
}

/// A tenant ID comes from the request (a header, a basic-auth user): an
/// invalid one is the client's to fix.
impl Coded for TenantError {
    fn code(&self) -> ErrorCode {
        match self {
            TenantError::Empty
            | TenantError::TooLong(_)
            | TenantError::Reserved(_)
            | TenantError::BadCharacter(_) => ErrorCode::BadRequest,
        }
    }
}

/// Checks a tenant ID: 1..=150 characters from `[A-Za-z0-9!_.*'()-]`, and not `.` or `..`.
pub fn validate_tenant_id(id: &str) -> Result<(), TenantError> {
    if id.is_empty() {
        return Err(TenantError::Empty);
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(TenantError::TooLong(id.chars().count()));
    }
    if id == "." || id == ".." {
        return Err(TenantError::Reserved(id.to_string()));
    }
    if let Some(c) = id.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')'))
    }) {
        return Err(TenantError::BadCharacter(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_tenant_ids_are_bad_requests() {
        for id in ["", "..", "a/b", &"a".repeat(151)] {
            let err = validate_tenant_id(id).unwrap_err();
            assert_eq!(err.code(), ErrorCode::BadRequest, "{id:?}");
        }
    }

    #[test]
    fn accepts_usual_ids() {
        for id in ["tenant-a", "a.b_c", "(x)*!'", "0"] {
            assert_eq!(validate_tenant_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn rejects_paths_and_long_ids() {
        assert_eq!(
            validate_tenant_id("../x"),
            Err(TenantError::BadCharacter('/'))
        );
        assert_eq!(
            validate_tenant_id(".."),
            Err(TenantError::Reserved("..".into()))
        );
        assert_eq!(validate_tenant_id(""), Err(TenantError::Empty));
        assert_eq!(
            validate_tenant_id(&"a".repeat(200)),
            Err(TenantError::TooLong(200))
        );
        assert!(matches!(
            validate_tenant_id("a b"),
            Err(TenantError::BadCharacter(' '))
        ));
    }
}
