//! Per-tenant limits: the defaults from the config file's `limits` section and
//! per-tenant overrides of them from the runtime config file ([`runtime`]).
//! Components ask [`Overrides::for_tenant`] on every request, so a reloaded
//! override takes effect without a restart.
//!
//! This crate owns the limit values, their YAML form (Mimir's key names) and the
//! arithmetic shared by the components ([`local_series_limit`]). It does not
//! enforce anything: the distributor, ingester and querier do, each for the
//! limits of its stage. Reading the runtime file periodically is the binary's
//! job; [`runtime::parse_runtime_config`] is the pure part of it.

mod limits;
mod overrides;
pub mod runtime;

pub use limits::{local_series_limit, Limits, LimitsError};
pub use overrides::Overrides;
pub use runtime::{parse_runtime_config, RuntimeConfigError};
