//! The runtime config file kept in force, after dskit's `runtimeconfig`
//! manager: [`RuntimeConfigService`] reads and applies the file while it
//! starts (a file that cannot be used then stops the start, so a typo never
//! runs silently on the defaults) and re-reads it every period while it runs
//! (a bad file then is logged and the overrides in force are kept). The gauge
//! `strata_runtime_config_last_reload_successful` says whether the last read
//! worked.
//!
//! It takes the file's path and the period as plain values: which flag or
//! config section holds them is the binary's business. Only the start errors
//! name the keys (`runtime_config.file`, `runtime_config.period`), because
//! that is what the docs tell an operator to look for in the last log line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{IntGauge, Registry};
use strata_service::{BoxError, Service, Stop};
use strata_status::{Coded, ErrorCode};

use crate::overrides::Overrides;
use crate::runtime::{parse_runtime_config, RuntimeConfigError};

const RELOAD_GAUGE: &str = "strata_runtime_config_last_reload_successful";

/// Why the runtime config file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: RuntimeConfigError,
    },
}

/// Why [`RuntimeConfigService`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigStartError {
    #[error("runtime_config.file: {0}")]
    FirstLoad(#[source] ReloadError),
    /// A zero period would re-read the file in a busy loop.
    #[error("runtime_config.period: must be more than 0")]
    ZeroPeriod,
    #[error("cannot register the runtime config metrics: {0}")]
    Metrics(#[source] prometheus::Error),
}

/// The file and the period are the operator's setup: no request causes these.
impl Coded for ReloadError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

impl Coded for RuntimeConfigStartError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// Reads and applies the file.
#[derive(Debug)]
struct Loader {
    path: PathBuf,
    overrides: Arc<Overrides>,
    last_reload_successful: IntGauge,
    /// The text last applied, to skip parsing an unchanged file.
    applied: Option<String>,
}

impl Loader {
    async fn load(&mut self) -> Result<(), ReloadError> {
        let result = self.try_load().await;
        self.last_reload_successful.set(i64::from(result.is_ok()));
        result
    }

    async fn try_load(&mut self) -> Result<(), ReloadError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| ReloadError::Read {
                path: self.path.clone(),
                source,
            })?;
        if self.applied.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let tenants = parse_runtime_config(&text, self.overrides.defaults()).map_err(|source| {
            ReloadError::Invalid {
                path: self.path.clone(),
                source,
            }
        })?;
        tracing::info!(file = %self.path.display(), tenants = tenants.len(), "runtime config loaded: per-tenant overrides in force");
        self.overrides.replace_tenant_overrides(tenants);
        self.applied = Some(text);
        Ok(())
    }
}

/// The runtime config file as a service: applied while starting, re-read
/// every period while running. Without a file it has nothing to do.
#[derive(Debug)]
pub struct RuntimeConfigService {
    file: Option<PathBuf>,
    period: Duration,
    overrides: Arc<Overrides>,
    registry: Registry,
    /// Made by `starting`, which applies the file once; `running` takes it.
    loader: Mutex<Option<Loader>>,
}

impl RuntimeConfigService {
    /// Keeps `file` (none: no overrides) applied to `overrides`, re-reading
    /// it every `period`; its gauge goes into `registry` when it starts.
    pub fn new(
        file: Option<PathBuf>,
        period: Duration,
        overrides: Arc<Overrides>,
        registry: Registry,
    ) -> Self {
        Self {
            file,
            period,
            overrides,
            registry,
            loader: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Service for RuntimeConfigService {
    async fn starting(&self) -> Result<(), BoxError> {
        let Some(path) = self.file.clone() else {
            return Ok(());
        };
        if self.period.is_zero() {
            return Err(RuntimeConfigStartError::ZeroPeriod.into());
        }
        let gauge = IntGauge::new(
            RELOAD_GAUGE,
            "Whether the last load of the runtime config file (runtime_config.file) succeeded.",
        )
        .map_err(RuntimeConfigStartError::Metrics)?;
        self.registry
            .register(Box::new(gauge.clone()))
            .map_err(RuntimeConfigStartError::Metrics)?;
        let mut loader = Loader {
            path,
            overrides: self.overrides.clone(),
            last_reload_successful: gauge,
            applied: None,
        };
        loader
            .load()
            .await
            .map_err(RuntimeConfigStartError::FirstLoad)?;
        *self.loader.lock() = Some(loader);
        Ok(())
    }

    async fn running(&self, mut stop: Stop) -> Result<(), BoxError> {
        let loader = self.loader.lock().take();
        let Some(mut loader) = loader else {
            stop.wait().await;
            return Ok(());
        };
        loop {
            // A sleep rather than an interval: the period counts from the end
            // of the last read, and a huge period cannot overflow the clock.
            tokio::select! {
                () = tokio::time::sleep(self.period) => {}
                () = stop.wait() => return Ok(()),
            }
            if let Err(e) = loader.load().await {
                tracing::warn!(error = %e, "cannot reload the runtime config file; keeping the overrides in force");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    const PERIOD: Duration = Duration::from_millis(20);

    fn service(file: &tempfile::NamedTempFile) -> (Arc<RuntimeConfigService>, Arc<Overrides>) {
        let overrides = Arc::new(Overrides::new(Default::default()));
        let service = Arc::new(RuntimeConfigService::new(
            Some(file.path().to_path_buf()),
            PERIOD,
            overrides.clone(),
            Registry::new(),
        ));
        (service, overrides)
    }

    /// Replaces the file's content at once (a rename), so a reload never
    /// reads it half written.
    fn replace(file: &tempfile::NamedTempFile, text: &str) {
        let next = file.path().with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, file.path()).unwrap();
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn gauge(service: &RuntimeConfigService) -> Option<i64> {
        service
            .registry
            .gather()
            .iter()
            .find(|family| family.name() == RELOAD_GAUGE)
            .and_then(|family| family.get_metric().first())
            .map(|metric| metric.get_gauge().get_value() as i64)
    }

    /// Waits (on a loaded machine too) until `done` holds; fails after 10 s.
    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn an_invalid_file_at_start_is_an_error_naming_the_key() {
        let file = file_with("overrides:\n  a:\n    ingestion_rat: 1\n");
        let (service, _) = service(&file);
        let err = service.starting().await.unwrap_err().to_string();
        assert!(err.starts_with("runtime_config.file: "), "{err}");
        assert!(
            err.contains("overrides.a: unknown limit `ingestion_rat`"),
            "{err}"
        );
        assert_eq!(gauge(&service), Some(0));
    }

    #[tokio::test]
    async fn a_missing_file_at_start_is_an_error_naming_the_key() {
        let file = file_with("");
        let path = file.path().to_path_buf();
        let (service, _) = service(&file);
        drop(file);
        let err = service.starting().await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "runtime_config.file: cannot read {}",
                path.display()
            )),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reloads_apply_and_invalid_reloads_keep_the_overrides() {
        let file = file_with("overrides:\n  a:\n    ingestion_rate: 5\n");
        let (service, overrides) = service(&file);
        service.starting().await.unwrap();
        assert_eq!(overrides.for_tenant("a").ingestion_rate, 5.0);
        assert_eq!(gauge(&service), Some(1));
        let (stop, signal) = Stop::new();
        let running = tokio::spawn({
            let service = service.clone();
            async move { service.running(signal).await.map_err(|e| e.to_string()) }
        });

        replace(&file, "overrides:\n  a:\n    ingestion_rate: 7\n");
        eventually("the new override applies", || {
            overrides.for_tenant("a").ingestion_rate == 7.0
        })
        .await;

        replace(&file, "overrides: [");
        eventually("the bad reload shows in the gauge", || {
            gauge(&service) == Some(0)
        })
        .await;
        assert_eq!(overrides.for_tenant("a").ingestion_rate, 7.0);

        replace(&file, "");
        eventually("an empty file clears the overrides", || {
            overrides.for_tenant("a").ingestion_rate == 10_000.0
        })
        .await;
        assert_eq!(gauge(&service), Some(1));

        let _ = stop.send(true);
        let stopped = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stopped, Ok(()));
    }

    #[tokio::test]
    async fn without_a_file_it_only_waits_for_the_stop() {
        let service = RuntimeConfigService::new(
            None,
            PERIOD,
            Arc::new(Overrides::new(Default::default())),
            Registry::new(),
        );
        service.starting().await.unwrap();
        assert_eq!(gauge(&service), None);
        let (stop, signal) = Stop::new();
        let _ = stop.send(true);
        service.running(signal).await.unwrap();
    }

    #[tokio::test]
    async fn a_zero_period_is_refused_not_a_busy_loop() {
        let file = file_with("");
        let service = RuntimeConfigService::new(
            Some(file.path().to_path_buf()),
            Duration::ZERO,
            Arc::new(Overrides::new(Default::default())),
            Registry::new(),
        );
        let err = service.starting().await.unwrap_err().to_string();
        assert_eq!(err, "runtime_config.period: must be more than 0");
    }
}
