//! Per-tenant limits: the defaults from the config file's `limits` section and
//! per-tenant overrides of them. Components ask [`Overrides::for_tenant`] on
//! every request, so an override takes effect without a restart (the runtime
//! overrides file that feeds it arrives with the ring work).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;

/// The limits of one tenant. Field names match Mimir's `limits` block, so a
/// Mimir user's settings carry over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest label name accepted, in bytes.
    pub max_label_name_length: usize,
    /// Longest label value accepted, in bytes.
    pub max_label_value_length: usize,
    /// Most labels (the metric name included) one series may have.
    pub max_label_names_per_series: usize,
    /// How far in the future a sample's timestamp may be, against the
    /// distributor's clock.
    pub creation_grace_period: ConfigDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_label_names_per_series: 30,
            creation_grace_period: ConfigDuration::from_secs(10 * 60),
        }
    }
}

/// The defaults and the tenants that differ from them.
#[derive(Debug)]
pub struct Overrides {
    defaults: Arc<Limits>,
    tenants: RwLock<HashMap<String, Arc<Limits>>>,
}

impl Overrides {
    pub fn new(defaults: Limits) -> Self {
        Self {
            defaults: Arc::new(defaults),
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// The limits that apply to `tenant` now.
    pub fn for_tenant(&self, tenant: &str) -> Arc<Limits> {
        self.tenants
            .read()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Replaces every per-tenant override at once (a reloaded overrides file).
    pub fn replace_tenant_overrides(&self, tenants: HashMap<String, Limits>) {
        let tenants = tenants
            .into_iter()
            .map(|(tenant, limits)| (tenant, Arc::new(limits)))
            .collect();
        *self.tenants.write() = tenants;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_without_override_get_the_defaults() {
        let overrides = Overrides::new(Limits::default());
        assert_eq!(*overrides.for_tenant("a"), Limits::default());
        let strict = Limits {
            max_label_names_per_series: 5,
            ..Default::default()
        };
        overrides.replace_tenant_overrides(HashMap::from([("b".to_string(), strict.clone())]));
        assert_eq!(*overrides.for_tenant("b"), strict);
        assert_eq!(*overrides.for_tenant("a"), Limits::default());
    }

    #[test]
    fn yaml_uses_mimir_names_and_rejects_unknown_keys() {
        let limits: Limits =
            serde_yaml::from_str("max_label_names_per_series: 40\ncreation_grace_period: 1h\n")
                .unwrap();
        assert_eq!(limits.max_label_names_per_series, 40);
        assert_eq!(limits.creation_grace_period.0.as_secs(), 3600);
        let err = serde_yaml::from_str::<Limits>("max_label_names: 1\n").unwrap_err();
        assert!(err.to_string().contains("max_label_names"), "{err}");
    }
}
