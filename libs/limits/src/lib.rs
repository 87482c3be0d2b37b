//! Per-tenant limits: the defaults from the config file's `limits` section and
//! per-tenant overrides of them from the runtime config file ([`runtime`]).
//! Components ask [`Overrides::for_tenant`] on every request, so a reloaded
//! override takes effect without a restart.
//!
//! This crate owns the limit values, their YAML form (Mimir's key names) and the
//! arithmetic shared by the components ([`local_series_limit`]). It does not
//! enforce anything: the distributor, ingester and querier do, each for the
//! limits of its stage. It also keeps the runtime config file in force
//! ([`RuntimeConfigService`]: read at start, re-read every period), given the
//! file's path and the period; which flags name them is the binary's business.

mod limits;
mod overrides;
mod reloader;
pub mod runtime;

pub use limits::{local_series_limit, Limits, LimitsError};
pub use overrides::Overrides;
pub use reloader::{ReloadError, RuntimeConfigService, RuntimeConfigStartError};
pub use runtime::{parse_runtime_config, RuntimeConfigError};
