//! [`Overrides`]: the defaults and the tenants that differ from them, the
//! object every component asks for a tenant's limits on each request, so a
//! reloaded runtime config file takes effect without a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use crate::limits::Limits;

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

    /// The limits of tenants without an override.
    pub fn defaults(&self) -> &Limits {
        &self.defaults
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

    /// The tenants with an override and their complete limits, sorted by tenant.
    pub fn tenant_overrides(&self) -> BTreeMap<String, Limits> {
        self.tenants
            .read()
            .iter()
            .map(|(tenant, limits)| (tenant.clone(), Limits::clone(limits)))
            .collect()
    }

    /// The overrides in force, as the runtime config file would state them
    /// (Mimir's `/runtime_config`): `overrides:` with each tenant's complete
    /// limits.
    pub fn runtime_config_yaml(&self) -> String {
        #[derive(Serialize)]
        struct View {
            overrides: BTreeMap<String, Limits>,
        }
        serde_yaml::to_string(&View {
            overrides: self.tenant_overrides(),
        })
        // Limits are plain numbers and strings; this cannot fail.
        .unwrap_or_else(|e| format!("# cannot render the overrides: {e}\n"))
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
        let yaml = overrides.runtime_config_yaml();
        assert!(yaml.starts_with("overrides:\n  b:\n"), "{yaml}");
        assert!(yaml.contains("max_label_names_per_series: 5"), "{yaml}");
    }
}
