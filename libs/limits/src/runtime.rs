//! The runtime config file, Mimir's format: per-tenant overrides of the
//! defaults, re-read periodically by the `reloader`. This module is the pure
//! part: text in, overrides out.
//!
//! ```yaml
//! overrides:
//!   tenant-a:
//!     ingestion_rate: 50000
//!     max_global_series_per_user: 1000000
//! ```
//!
//! A tenant's entry is partial: the keys it leaves out take the defaults of the
//! config file. Unknown keys and invalid values are errors naming the tenant
//! and the key, so a typo never silently means "default".

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};
use strata_status::{Coded, ErrorCode};

use crate::limits::Limits;

/// Why a runtime config text cannot be used. Every variant names where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeConfigError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("the top level must be a mapping with the key `overrides`")]
    NotAMapping,
    #[error("unknown key `{0}` (the runtime config file takes `overrides`)")]
    UnknownTopLevelKey(String),
    #[error("overrides: must map tenant IDs to limits")]
    OverridesNotAMapping,
    #[error("overrides.{tenant}: {reason}")]
    Tenant { tenant: String, reason: String },
}

/// The runtime config file is the operator's, like the rest of the server's
/// setup: no request can have caused a bad one, and no retry fixes it, so to a
/// caller of the API it is an internal error. (The message, naming the tenant
/// and the key, is for the operator's log.)
impl Coded for RuntimeConfigError {
    fn code(&self) -> ErrorCode {
        match self {
            RuntimeConfigError::Yaml(_)
            | RuntimeConfigError::NotAMapping
            | RuntimeConfigError::UnknownTopLevelKey(_)
            | RuntimeConfigError::OverridesNotAMapping
            | RuntimeConfigError::Tenant { .. } => ErrorCode::Internal,
        }
    }
}

/// Parses a runtime config file and merges each tenant's overrides onto
/// `defaults`. An empty file, or one without `overrides`, has none.
pub fn parse_runtime_config(
    text: &str,
    defaults: &Limits,
) -> Result<HashMap<String, Limits>, RuntimeConfigError> {
    strata_model::check_bracket_nesting(text, strata_model::MAX_YAML_NESTING)
        .map_err(|e| RuntimeConfigError::Yaml(e.to_string()))?;
    let root: Value =
        serde_yaml::from_str(text).map_err(|e| RuntimeConfigError::Yaml(e.to_string()))?;
    let root = match root {
        Value::Null => return Ok(HashMap::new()),
        Value::Mapping(m) => m,
        _ => return Err(RuntimeConfigError::NotAMapping),
    };
    let mut overrides = Value::Null;
    for (key, value) in root {
        match key_text(&key).as_deref() {
            Some("overrides") => overrides = value,
            other => {
                return Err(RuntimeConfigError::UnknownTopLevelKey(
                    other.unwrap_or("?").to_string(),
                ))
            }
        }
    }
    let tenants = match overrides {
        Value::Null => return Ok(HashMap::new()),
        Value::Mapping(m) => m,
        _ => return Err(RuntimeConfigError::OverridesNotAMapping),
    };
    let base = match serde_yaml::to_value(defaults) {
        Ok(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    };
    let mut out = HashMap::with_capacity(tenants.len());
    for (tenant, partial) in tenants {
        let tenant = key_text(&tenant).unwrap_or_else(|| format!("{tenant:?}"));
        let limits = merge(&base, partial).map_err(|reason| RuntimeConfigError::Tenant {
            tenant: tenant.clone(),
            reason,
        })?;
        out.insert(tenant, limits);
    }
    Ok(out)
}

/// `partial` laid over the defaults' YAML form, then read as [`Limits`].
fn merge(base: &Mapping, partial: Value) -> Result<Limits, String> {
    let mut merged = base.clone();
    match partial {
        Value::Null => {}
        Value::Mapping(m) => {
            for (key, value) in m {
                let name = key_text(&key).unwrap_or_default();
                if !base.contains_key(name.as_str()) {
                    return Err(format!("unknown limit `{name}`"));
                }
                merged.insert(Value::String(name), value);
            }
        }
        _ => return Err("must be a mapping of limit names to values".to_string()),
    }
    let limits: Limits = serde_path_to_error::deserialize(Value::Mapping(merged))
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    limits
        .validate()
        .map_err(|e| format!("{}: {}", e.key, e.reason))?;
    Ok(limits)
}

/// A mapping key as text: tenant IDs like `123` are numbers to YAML.
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_internal_errors_not_the_callers() {
        let d = Limits::default();
        for text in [
            "overrides: [",
            "- a\n",
            "overides: {}\n",
            "overrides:\n  a:\n    x: 1\n",
        ] {
            let err = parse_runtime_config(text, &d).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Internal, "{text:?}: {err}");
        }
    }

    #[test]
    fn hostile_yaml_is_an_error_not_a_crash() {
        let deep = format!(
            "overrides: {}1{}",
            "{a: ".repeat(50_000),
            "}".repeat(50_000)
        );
        assert!(matches!(
            parse_runtime_config(&deep, &Limits::default()),
            Err(RuntimeConfigError::Yaml(_))
        ));
        let mut bomb = String::from("x: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        for w in names.windows(2) {
            let (prev, name) = (w[0], w[1]);
            bomb.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
        }
        bomb.push_str("overrides: *j\n");
        assert!(parse_runtime_config(&bomb, &Limits::default()).is_err());
    }

    #[test]
    fn partial_overrides_take_the_other_limits_from_the_defaults() {
        let defaults = Limits {
            max_label_names_per_series: 40,
            ..Default::default()
        };
        let parsed = parse_runtime_config(
            "overrides:\n  a:\n    ingestion_rate: 5\n    creation_grace_period: 1m\n  123:\n    max_global_series_per_user: 7\n  b:\n",
            &defaults,
        )
        .unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed["a"].ingestion_rate, 5.0);
        assert_eq!(parsed["a"].creation_grace_period.0.as_secs(), 60);
        assert_eq!(parsed["a"].max_label_names_per_series, 40);
        assert_eq!(parsed["a"].ingestion_burst_size, 200_000);
        assert_eq!(parsed["123"].max_global_series_per_user, 7);
        assert_eq!(parsed["b"], defaults);
    }

    #[test]
    fn empty_files_have_no_overrides() {
        let d = Limits::default();
        assert!(parse_runtime_config("", &d).unwrap().is_empty());
        assert!(parse_runtime_config("overrides:\n", &d).unwrap().is_empty());
        assert!(parse_runtime_config("overrides: {}\n", &d)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn errors_name_the_tenant_and_the_key() {
        let d = Limits::default();
        let err = parse_runtime_config("overrides:\n  a:\n    ingestion_rat: 5\n", &d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "overrides.a: unknown limit `ingestion_rat`"
        );
        let err = parse_runtime_config(
            "overrides:\n  a:\n    max_global_series_per_user: lots\n",
            &d,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("overrides.a: max_global_series_per_user: invalid type"),
            "{text}"
        );
        let err =
            parse_runtime_config("overrides:\n  a:\n    ingestion_rate: -3\n", &d).unwrap_err();
        assert!(err.to_string().contains("ingestion_rate"), "{err}");
        let err = parse_runtime_config("overides:\n  a: {}\n", &d).unwrap_err();
        assert!(err.to_string().contains("`overides`"), "{err}");
        assert!(matches!(
            parse_runtime_config("overrides: [", &d),
            Err(RuntimeConfigError::Yaml(_))
        ));
        assert_eq!(
            parse_runtime_config("- a\n", &d),
            Err(RuntimeConfigError::NotAMapping)
        );
    }
}
