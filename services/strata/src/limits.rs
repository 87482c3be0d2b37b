//! Wiring of the per-tenant limits: the runtime config file (Mimir's
//! `runtime_config`), loaded at start and re-read every period; the
//! `/runtime_config` page; and the ring counts an ingester divides the global
//! series limits by. The limits themselves and the file's parsing live in
//! `strata-limits`; enforcing them is each component's job.

use crate::config::RuntimeConfigSettings;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{IntGauge, Registry};
use strata_limits::Overrides;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Reads and applies the runtime config file.
#[derive(Debug)]
struct Loader {
    path: String,
    overrides: Arc<Overrides>,
    last_reload_successful: IntGauge,
    /// The text last applied, to skip parsing an unchanged file.
    applied: Option<String>,
}

impl Loader {
    async fn load(&mut self) -> Result<(), String> {
        let result = self.try_load().await;
        self.last_reload_successful.set(i64::from(result.is_ok()));
        result
    }

    async fn try_load(&mut self) -> Result<(), String> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.path))?;
        if self.applied.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let tenants = strata_limits::parse_runtime_config(&text, self.overrides.defaults())
            .map_err(|e| format!("{}: {e}", self.path))?;
        tracing::info!(file = %self.path, tenants = tenants.len(), "runtime config loaded: per-tenant overrides in force");
        self.overrides.replace_tenant_overrides(tenants);
        self.applied = Some(text);
        Ok(())
    }
}

/// Loads the runtime config file named by `settings` into `overrides` and
/// starts re-reading it every period until `shutdown` turns true. A file that
/// cannot be read or parsed now is an error (naming `runtime_config.file`);
/// later, it is logged and the overrides in force are kept. Registers
/// `strata_runtime_config_last_reload_successful`. No file: nothing to do.
pub async fn start(
    settings: &RuntimeConfigSettings,
    overrides: Arc<Overrides>,
    registry: &Registry,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, String> {
    if settings.file.is_empty() {
        return Ok(None);
    }
    let gauge = IntGauge::new(
        "strata_runtime_config_last_reload_successful",
        "Whether the last load of the runtime config file (runtime_config.file) succeeded.",
    )
    .map_err(|e| e.to_string())?;
    registry
        .register(Box::new(gauge.clone()))
        .map_err(|e| e.to_string())?;
    let mut loader = Loader {
        path: settings.file.clone(),
        overrides,
        last_reload_successful: gauge,
        applied: None,
    };
    loader
        .load()
        .await
        .map_err(|e| format!("runtime_config.file: {e}"))?;
    let period = settings.period.0;
    Ok(Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            if let Err(e) = loader.load().await {
                tracing::warn!(error = %e, "cannot reload the runtime config file; keeping the overrides in force");
            }
        }
    })))
}

/// The runtime config as a service: loaded while starting (an unreadable or
/// invalid file stops the process, naming `runtime_config.file`), re-read
/// every period while running.
pub struct RuntimeConfigService {
    settings: RuntimeConfigSettings,
    overrides: Arc<Overrides>,
    registry: Registry,
    reloads: parking_lot::Mutex<Option<JoinHandle<()>>>,
    stop_reloads: watch::Sender<bool>,
}

impl RuntimeConfigService {
    pub fn new(
        settings: RuntimeConfigSettings,
        overrides: Arc<Overrides>,
        registry: Registry,
    ) -> Self {
        Self {
            settings,
            overrides,
            registry,
            reloads: parking_lot::Mutex::new(None),
            stop_reloads: watch::channel(false).0,
        }
    }
}

#[async_trait::async_trait]
impl strata_service::Service for RuntimeConfigService {
    async fn starting(&self) -> Result<(), strata_service::BoxError> {
        let reloads = start(
            &self.settings,
            self.overrides.clone(),
            &self.registry,
            self.stop_reloads.subscribe(),
        )
        .await?;
        *self.reloads.lock() = reloads;
        Ok(())
    }

    async fn running(&self, stop: strata_service::Stop) -> Result<(), strata_service::BoxError> {
        let reloads = self.reloads.lock().take();
        let mut stop_here = stop.clone();
        let forward = async {
            stop_here.wait().await;
            let _ = self.stop_reloads.send(true);
        };
        match reloads {
            Some(task) => {
                let (_, watched) =
                    tokio::join!(forward, strata_service::watch_loops(stop, vec![task]));
                watched?;
            }
            None => forward.await,
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    async fn started(
        text: &str,
    ) -> (
        tempfile::NamedTempFile,
        Arc<Overrides>,
        Registry,
        Result<Option<JoinHandle<()>>, String>,
        watch::Sender<bool>,
    ) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let overrides = Arc::new(Overrides::new(Default::default()));
        let registry = Registry::new();
        let (tx, rx) = watch::channel(false);
        let settings = RuntimeConfigSettings {
            file: file.path().display().to_string(),
            period: strata_model::ConfigDuration(Duration::from_millis(20)),
        };
        let result = start(&settings, overrides.clone(), &registry, rx).await;
        (file, overrides, registry, result, tx)
    }

    fn gauge(registry: &Registry) -> String {
        strata_telemetry::render(registry)
            .lines()
            .find(|l| l.starts_with("strata_runtime_config_last_reload_successful "))
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn an_invalid_file_at_start_is_an_error_naming_the_key() {
        let (_f, _o, _r, result, _tx) = started("overrides:\n  a:\n    ingestion_rat: 1\n").await;
        let err = result.unwrap_err();
        assert!(err.starts_with("runtime_config.file: "), "{err}");
        assert!(
            err.contains("overrides.a: unknown limit `ingestion_rat`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reloads_apply_and_invalid_reloads_keep_the_overrides() {
        let (file, overrides, registry, result, tx) =
            started("overrides:\n  a:\n    ingestion_rate: 5\n").await;
        let task = result.unwrap().unwrap();
        assert_eq!(overrides.for_tenant("a").ingestion_rate, 5.0);
        assert_eq!(
            gauge(&registry),
            "strata_runtime_config_last_reload_successful 1"
        );

        std::fs::write(file.path(), "overrides:\n  a:\n    ingestion_rate: 7\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(overrides.for_tenant("a").ingestion_rate, 7.0);

        std::fs::write(file.path(), "overrides: [").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(overrides.for_tenant("a").ingestion_rate, 7.0);
        assert_eq!(
            gauge(&registry),
            "strata_runtime_config_last_reload_successful 0"
        );

        std::fs::write(file.path(), "").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(overrides.for_tenant("a").ingestion_rate, 10_000.0);
        assert_eq!(
            gauge(&registry),
            "strata_runtime_config_last_reload_successful 1"
        );

        let _ = tx.send(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
