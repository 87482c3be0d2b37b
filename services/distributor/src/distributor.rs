//! The distributor itself: its config section, and [`Distributor`], which
//! decodes a push, validates each series against the tenant's limits, applies
//! the tenant's ingestion rate and forwards what is valid to the ingesters
//! (an [`IngesterPush`]). Serving it over HTTP is [`crate::http_api`]'s, its
//! lifecycle [`crate::service`]'s.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strata_limits::Overrides;
use strata_proto::prometheus::WriteRequest;
use strata_status::{ErrorCode, ServiceError};

use crate::decode::decode_write_request;
use crate::error::DistributorError;
use crate::ha_tracker::{find_ha_labels, HaDecision, HaTracker, HaTrackerConfig};
use crate::push::IngesterPush;
use crate::validation::{format_series, validate_labels, Rejection};

/// The distributor's section of the config file.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributorConfig {
    pub max_recv_msg_size: usize,
    pub max_inflight_push_requests_per_ingester: usize,
    pub ha_tracker: HaTrackerConfig,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            max_recv_msg_size: 100 << 20,
            max_inflight_push_requests_per_ingester: 200,
            ha_tracker: HaTrackerConfig::default(),
        }
    }
}

/// What became of a push that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Its valid series are stored (on a quorum of ingesters).
    Stored,
    /// It came from an HA replica that is not the elected one and was
    /// dropped whole; answered 202 so the sender does not retry it.
    Deduplicated { message: String },
}

/// Validates pushes and forwards them. One per process.
#[derive(Debug)]
pub struct Distributor {
    config: DistributorConfig,
    overrides: Arc<Overrides>,
    ingesters: Arc<dyn IngesterPush>,
    metrics: crate::metrics::DistributorMetrics,
    rate_limiter: crate::rate_limit::RateLimiter,
    /// With `ha_tracker.enable_ha_tracker`.
    ha_tracker: Option<HaTracker>,
}

impl Distributor {
    pub fn new(
        config: DistributorConfig,
        overrides: Arc<Overrides>,
        ingesters: Arc<dyn IngesterPush>,
        registry: &prometheus::Registry,
    ) -> Result<Self, DistributorError> {
        Ok(Self {
            config,
            overrides,
            ingesters,
            metrics: crate::metrics::DistributorMetrics::new(registry)?,
            rate_limiter: crate::rate_limit::RateLimiter::default(),
            ha_tracker: None,
        })
    }

    /// De-duplicates HA pairs through `tracker` (for tenants with
    /// `accept_ha_samples`).
    pub fn with_ha_tracker(mut self, tracker: HaTracker) -> Self {
        self.ha_tracker = Some(tracker);
        self
    }

    pub fn ha_tracker(&self) -> Option<&HaTracker> {
        self.ha_tracker.as_ref()
    }

    pub fn config(&self) -> &DistributorConfig {
        &self.config
    }

    /// Handles one remote-write body for `tenant`. The valid series of a partly
    /// invalid push are stored, and the first rejection is returned as 400.
    /// Traced as `distributor.push`, the parent of the per-ingester spans.
    #[tracing::instrument(name = "distributor.push", skip_all, fields(tenant = %tenant, bytes = body.len()))]
    pub async fn push_body(&self, tenant: &str, body: &[u8]) -> Result<Pushed, ServiceError> {
        let request = decode_write_request(body, self.config.max_recv_msg_size)
            .map_err(|e| ServiceError::from_coded(&e))?;
        self.push(tenant, request).await
    }

    /// Validates and forwards a decoded push. The valid samples count against
    /// the tenant's ingestion rate; a push over it is rejected whole (429).
    pub async fn push(
        &self,
        tenant: &str,
        mut request: WriteRequest,
    ) -> Result<Pushed, ServiceError> {
        let limits = self.overrides.for_tenant(tenant);
        let now_ms = now_ms();
        let received_samples: usize = request.timeseries.iter().map(|s| s.samples.len()).sum();
        self.metrics
            .received(tenant, request.timeseries.len(), received_samples);

        // HA de-duplication comes first, as in Mimir: a dropped replica's
        // push is not validated, and the replica label is gone before the
        // label limits are checked.
        if let (Some(tracker), true) = (&self.ha_tracker, limits.accept_ha_samples) {
            if let Some(message) = self
                .deduplicate(
                    tracker,
                    tenant,
                    &limits,
                    now_ms,
                    &mut request,
                    received_samples,
                )
                .await?
            {
                return Ok(Pushed::Deduplicated { message });
            }
        }

        let mut first_rejection: Option<Rejection> = None;
        let mut note = |rejection: Rejection, samples: usize| {
            strata_telemetry::discarded_samples()
                .with_label_values(&[tenant, rejection.reason])
                .inc_by(samples as u64);
            if first_rejection.is_none() {
                first_rejection = Some(rejection);
            }
        };
        request.timeseries.retain_mut(|series| {
            if !series.histograms.is_empty() {
                note(
                    Rejection {
                        reason: "native_histogram_unsupported",
                        message: format!(
                            "received a series with native histogram samples, which Strata does not store yet, series: {}",
                            format_series(&series.labels)
                        ),
                    },
                    series.histograms.len(),
                );
                series.histograms.clear();
            }
            if let Err(rejection) = validate_labels(&limits, &series.labels) {
                note(rejection, series.samples.len());
                return false;
            }
            if let Some((rejection, dropped)) =
                crate::validation::drop_samples_outside_grace(&limits, now_ms, series)
            {
                note(rejection, dropped);
            }
            // Exemplars off for the tenant (Mimir's default): dropped
            // unchecked. Otherwise an invalid one rejects its series, as in
            // Mimir (Prometheus sends exemplars in series entries of their own).
            if limits.max_global_exemplars_per_user == 0 {
                series.exemplars.clear();
            } else if let Err(rejection) =
                crate::validation::validate_exemplars(&series.labels, &series.exemplars)
            {
                strata_telemetry::discarded_exemplars()
                    .with_label_values(&[tenant, rejection.reason])
                    .inc_by(series.exemplars.len() as u64);
                note(rejection, series.samples.len());
                return false;
            }
            !series.samples.is_empty() || !series.exemplars.is_empty()
        });
        // Metadata entries are checked one by one; an invalid one is
        // dropped and answered 400 like an invalid series (Mimir's rule),
        // the valid ones are stored.
        request.metadata.retain_mut(|entry| {
            match crate::validation::validate_metadata(&limits, entry) {
                Ok(()) => true,
                Err(rejection) => {
                    strata_telemetry::discarded_metadata()
                        .with_label_values(&[tenant, rejection.reason])
                        .inc();
                    if first_rejection.is_none() {
                        first_rejection = Some(rejection);
                    }
                    false
                }
            }
        });

        // Like Mimir, only what passed validation counts against the rate.
        let valid_samples: usize = request.timeseries.iter().map(|s| s.samples.len()).sum();
        if !self.rate_limiter.allow_n(
            tenant,
            Instant::now(),
            valid_samples,
            limits.ingestion_rate,
            limits.ingestion_burst_size,
        ) {
            strata_telemetry::discarded_samples()
                .with_label_values(&[tenant, "rate_limited"])
                .inc_by(valid_samples as u64);
            return Err(ServiceError::new(
                ErrorCode::TooManyRequests,
                format!(
                    "the request has been rejected because the tenant exceeded the ingestion rate limit, \
                     set to {} samples/s (ingestion_rate) with a maximum allowed burst of {} samples \
                     (ingestion_burst_size); this push had {valid_samples} samples; \
                     each distributor applies the limit on its own (err-strata-tenant-max-ingestion-rate)",
                    limits.ingestion_rate, limits.ingestion_burst_size
                ),
            ));
        }

        let stored = if request.timeseries.is_empty() && request.metadata.is_empty() {
            Ok(())
        } else {
            self.ingesters.push(tenant, request).await
        };
        match (first_rejection, stored) {
            // A failure to store is reported first when it is retryable, so the
            // client retries and nothing acknowledged is lost; so is a limit
            // (429), which the client may retry later.
            (_, Err(e)) if !e.code.is_client_error() || e.code == ErrorCode::TooManyRequests => {
                Err(e)
            }
            (Some(rejection), _) => Err(ServiceError::bad_request(rejection.message)),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(Pushed::Stored),
        }
    }

    /// Asks the HA tracker about `request`. Returns the 202 message if the
    /// push is to be dropped; otherwise strips the replica label from every
    /// series (the cluster label stays) so both replicas write one series.
    async fn deduplicate(
        &self,
        tracker: &HaTracker,
        tenant: &str,
        limits: &strata_limits::Limits,
        now_ms: i64,
        request: &mut WriteRequest,
        samples: usize,
    ) -> Result<Option<String>, ServiceError> {
        let Some((cluster, replica)) = request.timeseries.first().and_then(|s| {
            find_ha_labels(
                &s.labels,
                &limits.ha_cluster_label,
                &limits.ha_replica_label,
            )
        }) else {
            self.metrics.non_ha_samples(tenant, samples);
            return Ok(None);
        };
        let (cluster, replica) = (cluster.to_string(), replica.to_string());
        let decision = tracker
            .check(tenant, &cluster, &replica, now_ms, limits.ha_max_clusters)
            .await
            .map_err(|e| ServiceError::from_coded(&e))?;
        match decision {
            HaDecision::Deduplicated { elected } => {
                self.metrics.deduped_samples(tenant, &cluster, samples);
                Ok(Some(format!(
                    "replicas did not match, rejecting sample: cluster={cluster}, replica={replica}, elected={elected}"
                )))
            }
            HaDecision::Accept => {
                let replica_label = limits.ha_replica_label.as_str();
                for series in &mut request.timeseries {
                    series.labels.retain(|l| l.name != replica_label);
                }
                Ok(None)
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake::Recorder;
    use strata_proto::prometheus::{Label, Sample, TimeSeries};

    mod fake {
        use super::*;
        use std::sync::Mutex;

        /// Records what reaches the "ingester".
        #[derive(Debug, Default)]
        pub(super) struct Recorder {
            pub(super) pushed: Mutex<Vec<(String, WriteRequest)>>,
            pub(super) fail_with: Option<ServiceError>,
        }

        #[async_trait::async_trait]
        impl IngesterPush for Recorder {
            async fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
                self.pushed
                    .lock()
                    .unwrap()
                    .push((tenant.to_string(), request));
                match &self.fail_with {
                    Some(e) => Err(e.clone()),
                    None => Ok(()),
                }
            }
        }
    }

    fn series(name_value: &[(&str, &str)], ts: i64) -> TimeSeries {
        TimeSeries {
            labels: name_value
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: ts,
            }],
            ..Default::default()
        }
    }

    fn distributor(recorder: Arc<Recorder>) -> Distributor {
        Distributor::new(
            DistributorConfig::default(),
            Arc::new(Overrides::new(Default::default())),
            recorder,
            &prometheus::Registry::new(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn metadata_is_forwarded_and_an_invalid_entry_is_dropped_with_400() {
        let recorder = Arc::new(Recorder::default());
        let d = distributor(recorder.clone());
        let entry = |name: &str| strata_proto::prometheus::MetricMetadata {
            r#type: 2,
            metric_family_name: name.to_string(),
            help: "h".into(),
            unit: String::new(),
        };
        // A metadata-only push (Prometheus sends them apart) reaches the ingesters.
        let only = WriteRequest {
            metadata: vec![entry("up")],
            ..Default::default()
        };
        assert!(matches!(d.push("t", only).await, Ok(Pushed::Stored)));
        let bad = WriteRequest {
            timeseries: vec![series(&[("__name__", "good")], now_ms())],
            metadata: vec![entry(""), entry("kept")],
        };
        let err = d.push("t", bad).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(
            err.message.contains("without a metric family name"),
            "{}",
            err.message
        );
        let pushed = recorder.pushed.lock().unwrap();
        let names: Vec<Vec<&str>> = pushed
            .iter()
            .map(|(_, r)| {
                r.metadata
                    .iter()
                    .map(|m| m.metric_family_name.as_str())
                    .collect()
            })
            .collect();
        assert_eq!(names, [vec!["up"], vec!["kept"]]);
        assert_eq!(pushed[1].1.timeseries.len(), 1);
    }

    #[tokio::test]
    async fn valid_series_of_a_partly_invalid_push_are_stored() {
        let recorder = Arc::new(Recorder::default());
        let d = distributor(recorder.clone());
        let now = now_ms();
        let request = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "good")], now),
                series(&[("__name__", "bad"), ("in-valid", "x")], now),
                series(&[("__name__", "good2")], now),
            ],
            ..Default::default()
        };
        let err = d.push("t", request).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("'in-valid'"), "{}", err.message);
        let pushed = recorder.pushed.lock().unwrap();
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].1.timeseries.len(), 2);
    }

    #[tokio::test]
    async fn ingester_unavailability_wins_over_validation_errors() {
        let recorder = Arc::new(Recorder {
            fail_with: Some(ServiceError::unavailable("down")),
            ..Default::default()
        });
        let d = distributor(recorder);
        let request = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "good")], now_ms()),
                series(&[("job", "no-name")], now_ms()),
            ],
            ..Default::default()
        };
        assert_eq!(
            d.push("t", request).await.unwrap_err().code,
            ErrorCode::Unavailable
        );
    }

    #[tokio::test]
    async fn an_all_invalid_push_reaches_no_ingester() {
        let recorder = Arc::new(Recorder::default());
        let d = distributor(recorder.clone());
        let request = WriteRequest {
            timeseries: vec![series(&[("job", "no-name")], now_ms())],
            ..Default::default()
        };
        let err = d.push("t", request).await.unwrap_err();
        assert!(
            err.message.contains("without metric name"),
            "{}",
            err.message
        );
        assert!(recorder.pushed.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_tenant_over_its_ingestion_rate_gets_429_naming_the_limit() {
        let recorder = Arc::new(Recorder::default());
        let overrides = Arc::new(Overrides::new(Default::default()));
        overrides.replace_tenant_overrides(std::collections::HashMap::from([(
            "slow".to_string(),
            strata_limits::Limits {
                ingestion_rate: 1.0,
                ingestion_burst_size: 2,
                ..Default::default()
            },
        )]));
        let d = Distributor::new(
            DistributorConfig::default(),
            overrides,
            recorder.clone(),
            &prometheus::Registry::new(),
        )
        .unwrap();
        let push = |name: &str| WriteRequest {
            timeseries: vec![series(&[("__name__", name)], now_ms())],
            ..Default::default()
        };
        d.push("slow", push("a")).await.unwrap();
        d.push("slow", push("b")).await.unwrap();
        let before = strata_telemetry::discarded_samples()
            .with_label_values(&["slow", "rate_limited"])
            .get();
        let err = d.push("slow", push("c")).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(
            err.message.contains("1 samples/s (ingestion_rate)")
                && err
                    .message
                    .contains("burst of 2 samples (ingestion_burst_size)"),
            "{}",
            err.message
        );
        assert_eq!(
            strata_telemetry::discarded_samples()
                .with_label_values(&["slow", "rate_limited"])
                .get(),
            before + 1
        );
        assert_eq!(recorder.pushed.lock().unwrap().len(), 2);
        // Other tenants have their own bucket.
        d.push("other", push("c")).await.unwrap();
    }

    #[tokio::test]
    async fn ha_pushes_are_deduplicated_and_lose_the_replica_label() {
        let recorder = Arc::new(Recorder::default());
        let overrides = Arc::new(Overrides::new(strata_limits::Limits {
            accept_ha_samples: true,
            ..Default::default()
        }));
        let config = DistributorConfig::default();
        let registry = prometheus::Registry::new();
        let tracker = HaTracker::new(
            &config.ha_tracker,
            Arc::new(strata_ring::MemoryKv::new()),
            "",
            &registry,
        )
        .unwrap();
        let d = Distributor::new(config, overrides, recorder.clone(), &registry)
            .unwrap()
            .with_ha_tracker(tracker);
        let push = |replica: &str, name: &str| WriteRequest {
            timeseries: vec![series(
                &[
                    ("__name__", name),
                    ("__replica__", replica),
                    ("cluster", "c"),
                ],
                now_ms(),
            )],
            ..Default::default()
        };
        assert_eq!(d.push("t", push("r1", "a")).await.unwrap(), Pushed::Stored);
        let Pushed::Deduplicated { message } = d.push("t", push("r2", "b")).await.unwrap() else {
            panic!("r2 is not elected");
        };
        assert!(message.contains("replica=r2, elected=r1"), "{message}");
        // A push without the labels is stored unchanged.
        let plain = WriteRequest {
            timeseries: vec![series(&[("__name__", "c"), ("__replica__", "x")], now_ms())],
            ..Default::default()
        };
        assert_eq!(d.push("t", plain).await.unwrap(), Pushed::Stored);
        let pushed = recorder.pushed.lock().unwrap();
        assert_eq!(pushed.len(), 2);
        let names = |i: usize| -> Vec<String> {
            pushed[i].1.timeseries[0]
                .labels
                .iter()
                .map(|l| l.name.clone())
                .collect()
        };
        assert_eq!(names(0), ["__name__", "cluster"]);
        assert_eq!(names(1), ["__name__", "__replica__"]);
    }

    #[tokio::test]
    async fn an_ingester_limit_wins_over_validation_errors() {
        let recorder = Arc::new(Recorder {
            fail_with: Some(ServiceError::new(
                ErrorCode::TooManyRequests,
                "per-tenant series limit of 1 exceeded",
            )),
            ..Default::default()
        });
        let d = distributor(recorder);
        let request = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "good")], now_ms()),
                series(&[("job", "no-name")], now_ms()),
            ],
            ..Default::default()
        };
        let err = d.push("t", request).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(err.message.contains("series limit"), "{}", err.message);
    }
}
