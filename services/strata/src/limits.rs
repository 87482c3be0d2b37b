//! Wiring of the per-tenant limits: the runtime config service built from the
//! `runtime_config` section; the `/runtime_config` page; and the ring counts an
//! ingester divides the global series limits by. The limits themselves, the
//! file's parsing and its reloading live in `strata-limits`; enforcing them is
//! each component's job.

use crate::config::RuntimeConfigSettings;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::Registry;
use strata_limits::{Overrides, RuntimeConfigService};

/// The runtime config service for `settings`: an empty `runtime_config.file`
/// means no file, so no overrides beyond the defaults.
pub fn runtime_config_service(
    settings: &RuntimeConfigSettings,
    overrides: Arc<Overrides>,
    registry: Registry,
) -> RuntimeConfigService {
    let file = (!settings.file.is_empty()).then(|| PathBuf::from(&settings.file));
    RuntimeConfigService::new(file, settings.period.0, overrides, registry)
}

/// `GET /runtime_config`: the overrides in force, as YAML (each tenant with
/// its complete limits, as Mimir shows them).
pub fn router(overrides: Arc<Overrides>) -> Router {
    Router::new().route("/runtime_config", get(runtime_config).with_state(overrides))
}

async fn runtime_config(State(overrides): State<Arc<Overrides>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        overrides.runtime_config_yaml(),
    )
        .into_response()
}

/// The ingester ring as [`strata_ingester::RingCounts`]. The ingester starts
/// before the process reads the ring, so the ring is set later; until then
/// each ingester takes the whole global limit.
#[derive(Debug, Default)]
pub struct IngesterRingCounts {
    ring: OnceLock<strata_ring::Ring>,
}

impl IngesterRingCounts {
    pub fn set_ring(&self, ring: strata_ring::Ring) {
        let _ = self.ring.set(ring);
    }
}

impl strata_ingester::RingCounts for IngesterRingCounts {
    fn replication_factor(&self) -> usize {
        self.ring
            .get()
            .map_or(1, strata_ring::Ring::replication_factor)
    }

    /// ACTIVE ingesters with a fresh heartbeat (Mimir's healthy instances).
    fn healthy_ingesters(&self) -> usize {
        self.ring.get().map_or(0, |ring| {
            ring.all_healthy(strata_ring::Operation::Write)
                .map_or(0, |set| set.instances.len())
        })
    }
}
