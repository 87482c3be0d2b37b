//! The ingester: one in-memory head per tenant (from `strata-tsdb`) behind the
//! gRPC `Ingester` service of `proto/ingester.proto`. Distributors push to it;
//! queriers read recent data from it as streamed XOR chunks.
//!
//! The WAL, block cutting and the ring lifecycle are not here yet; the service
//! surface is the one they will sit behind.
//!
//! Series limits: with [`Ingester::with_limits`], a push that would create a
//! series beyond the tenant's share of `max_global_series_per_user` or
//! `max_global_series_per_metric` has that series rejected (429). The share
//! is [`strata_limits::local_series_limit`] of the counts a [`RingCounts`]
//! reports. The check and the creation are not one atomic step, so concurrent
//! pushes can overshoot a limit by the series they create at the same moment.

mod metrics;
mod service;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use strata_limits::Overrides;
use strata_model::{validate_tenant_id, Labels, Matcher, Sample};
use strata_proto::prometheus::WriteRequest;
use strata_status::{ErrorCode, ServiceError};
use strata_tsdb::head::{AppendError, Head, SeriesChunks};

pub use service::{grpc_service, IngesterGrpc};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngesterConfig {
    /// Series per message of a QueryStream response.
    pub query_stream_batch_size: usize,
    /// The ingester ring: how this ingester joins it, and how distributors and
    /// queriers find ingesters (Mimir's `ingester.ring`).
    pub ring: strata_ring::RingConfig,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            query_stream_batch_size: 128,
            ring: strata_ring::RingConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// How many rejected series a push error names before summarising.
const MAX_REJECTIONS_NAMED: usize = 1;

/// What an ingester needs to know of its ring to take its share of a global
/// series limit. The binary implements it over the ring; tests use
/// [`FixedRingCounts`].
pub trait RingCounts: Send + Sync + std::fmt::Debug {
    /// Ingesters each series is written to.
    fn replication_factor(&self) -> usize;
    /// Healthy ingesters in the ring now (0 if unknown).
    fn healthy_ingesters(&self) -> usize;
}

/// Counts that do not change: a single ingester is `{ 1, 1 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedRingCounts {
    pub replication_factor: usize,
    pub healthy_ingesters: usize,
}

impl RingCounts for FixedRingCounts {
    fn replication_factor(&self) -> usize {
        self.replication_factor
    }
    fn healthy_ingesters(&self) -> usize {
        self.healthy_ingesters
    }
}

/// The per-tenant limits this ingester enforces and how to find its share.
#[derive(Debug, Clone)]
struct LimitsSource {
    overrides: Arc<Overrides>,
    ring: Arc<dyn RingCounts>,
}

/// One push's series limits: global values and this ingester's share (0: off).
#[derive(Debug, Clone, Copy)]
struct SeriesLimits {
    user_global: usize,
    user_local: usize,
    metric_global: usize,
    metric_local: usize,
}

impl SeriesLimits {
    /// Why the head may not get the new series `labels`, if it may not:
    /// the discard reason (Mimir's) and the message.
    fn check_new_series(&self, head: &Head, labels: &Labels) -> Result<(), (&'static str, String)> {
        if self.user_local > 0 && head.num_series() >= self.user_local {
            return Err((
                "per_user_series_limit",
                format!(
                    "per-tenant series limit of {} exceeded (max_global_series_per_user, {} on this ingester): \
                     series {labels} was not created (err-strata-max-series-per-user)",
                    self.user_global, self.user_local
                ),
            ));
        }
        if self.metric_local > 0 {
            let name = labels.get(strata_model::METRIC_NAME).unwrap_or_default();
            if head.num_series_with(strata_model::METRIC_NAME, name) >= self.metric_local {
                return Err((
                    "per_metric_series_limit",
                    format!(
                        "per-metric series limit of {} exceeded for metric {name} (max_global_series_per_metric, \
                         {} on this ingester): series {labels} was not created (err-strata-max-series-per-metric)",
                        self.metric_global, self.metric_local
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The tenants' heads and the operations the gRPC service exposes.
#[derive(Debug)]
pub struct Ingester {
    config: IngesterConfig,
    heads: RwLock<HashMap<String, Arc<Head>>>,
    metrics: metrics::IngesterMetrics,
    limits: Option<LimitsSource>,
}

impl Ingester {
    pub fn new(
        config: IngesterConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, IngesterError> {
        Ok(Self {
            config,
            heads: RwLock::new(HashMap::new()),
            metrics: metrics::IngesterMetrics::new(registry)?,
            limits: None,
        })
    }

    /// Enforces the tenants' series limits from `overrides`, each global limit
    /// divided among the ingesters `ring` reports. Without this, no limits.
    pub fn with_limits(mut self, overrides: Arc<Overrides>, ring: Arc<dyn RingCounts>) -> Self {
        self.limits = Some(LimitsSource { overrides, ring });
        self
    }

    /// The series limits of `tenant` on this ingester now; `None` if none apply.
    fn series_limits(&self, tenant: &str) -> Option<SeriesLimits> {
        let source = self.limits.as_ref()?;
        let limits = source.overrides.for_tenant(tenant);
        let rf = source.ring.replication_factor();
        let ingesters = source.ring.healthy_ingesters();
        let share = |global| strata_limits::local_series_limit(global, rf, ingesters);
        let series = SeriesLimits {
            user_global: limits.max_global_series_per_user,
            user_local: share(limits.max_global_series_per_user),
            metric_global: limits.max_global_series_per_metric,
            metric_local: share(limits.max_global_series_per_metric),
        };
        (series.user_local > 0 || series.metric_local > 0).then_some(series)
    }

    pub fn config(&self) -> &IngesterConfig {
        &self.config
    }

    fn head(&self, tenant: &str) -> Option<Arc<Head>> {
        self.heads.read().get(tenant).cloned()
    }

    fn head_or_create(&self, tenant: &str) -> Arc<Head> {
        if let Some(h) = self.head(tenant) {
            return h;
        }
        self.heads
            .write()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Head::new()))
            .clone()
    }

    /// Appends every series of the request; valid series are stored even when some
    /// are rejected, and the first rejection is reported: a series over a limit
    /// as TooManyRequests (429), otherwise BadRequest (400).
    pub fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
        check_tenant(tenant)?;
        let head = self.head_or_create(tenant);
        let series_limits = self.series_limits(tenant);
        let mut appended = 0u64;
        let mut rejected = 0u64;
        let mut first_error: Option<String> = None;
        let mut first_limit: Option<String> = None;
        let mut samples = Vec::new();
        for series in request.timeseries {
            let labels = strata_proto::labels_from_proto(series.labels);
            if let Some(limits) = &series_limits {
                if !series.samples.is_empty() && !head.contains(&labels) {
                    if let Err((reason, message)) = limits.check_new_series(&head, &labels) {
                        let n = series.samples.len() as u64;
                        rejected += n;
                        self.metrics.discarded(tenant, reason, n);
                        first_limit.get_or_insert(message);
                        continue;
                    }
                }
            }
            samples.clear();
            samples.extend(
                series
                    .samples
                    .iter()
                    .map(|s| Sample::new(s.timestamp, s.value)),
            );
            match head.append(&labels, &samples) {
                Ok(outcome) => appended += outcome.appended as u64,
                Err(e) => {
                    appended += e.appended() as u64;
                    rejected += (samples.len() - e.appended()) as u64;
                    self.metrics.discarded(
                        tenant,
                        e.reason(),
                        (samples.len() - e.appended()) as u64,
                    );
                    if first_error.is_none() {
                        first_error = Some(describe_append_error(&e));
                    }
                }
            }
        }
        self.metrics.ingested(tenant, appended, head.num_series());
        let more = if rejected > MAX_REJECTIONS_NAMED as u64 {
            format!(" ({rejected} samples rejected in all)")
        } else {
            String::new()
        };
        match (first_limit, first_error) {
            (Some(msg), _) => Err(ServiceError::new(
                ErrorCode::TooManyRequests,
                format!("{msg}{more}"),
            )),
            (None, Some(msg)) => Err(ServiceError::bad_request(format!("{msg}{more}"))),
            (None, None) => Ok(()),
        }
    }

    pub fn query(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesChunks>, ServiceError> {
        check_tenant(tenant)?;
        Ok(self
            .head(tenant)
            .map(|h| h.select_chunks(matchers, mint, maxt))
            .unwrap_or_default())
    }

    pub fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, ServiceError> {
        check_tenant(tenant)?;
        Ok(self
            .head(tenant)
            .map(|h| h.label_names(matchers, mint, maxt))
            .unwrap_or_default())
    }

    pub fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, ServiceError> {
        check_tenant(tenant)?;
        Ok(self
            .head(tenant)
            .map(|h| h.label_values(name, matchers, mint, maxt))
            .unwrap_or_default())
    }

    /// Series matching any of the matcher sets, sorted and deduplicated.
    pub fn series(
        &self,
        tenant: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, ServiceError> {
        check_tenant(tenant)?;
        let Some(head) = self.head(tenant) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Labels> = matcher_sets
            .iter()
            .flat_map(|ms| head.series(ms, mint, maxt))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

fn check_tenant(tenant: &str) -> Result<(), ServiceError> {
    validate_tenant_id(tenant)
        .map_err(|e| ServiceError::new(ErrorCode::Unauthenticated, e.to_string()))
}

/// Mimir-like wording, so a Prometheus log line tells the operator what happened.
fn describe_append_error(e: &AppendError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::prometheus::{Label, Sample as WireSample, TimeSeries};

    fn request(name: &str, samples: &[(i64, f64)]) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                samples: samples
                    .iter()
                    .map(|(t, v)| WireSample {
                        timestamp: *t,
                        value: *v,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn push_then_query_per_tenant() {
        let ingester =
            Ingester::new(IngesterConfig::default(), &prometheus::Registry::new()).unwrap();
        ingester
            .push("a", request("m", &[(1, 1.0), (2, 2.0)]))
            .unwrap();
        let m = [Matcher::equal("__name__", "m")];
        assert_eq!(ingester.query("a", &m, 0, 10).unwrap().len(), 1);
        assert!(ingester.query("b", &m, 0, 10).unwrap().is_empty());
        assert_eq!(
            ingester.label_values("a", "__name__", &[], 0, 10).unwrap(),
            vec!["m".to_string()]
        );
        assert!(ingester.label_names("b", &[], 0, 10).unwrap().is_empty());
    }

    #[test]
    fn out_of_order_is_a_bad_request_naming_the_series() {
        let ingester =
            Ingester::new(IngesterConfig::default(), &prometheus::Registry::new()).unwrap();
        ingester.push("a", request("m", &[(10, 1.0)])).unwrap();
        let err = ingester.push("a", request("m", &[(5, 1.0)])).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(
            err.message.contains("m{}") || err.message.contains("\"m\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn invalid_tenant_is_rejected() {
        let ingester =
            Ingester::new(IngesterConfig::default(), &prometheus::Registry::new()).unwrap();
        assert_eq!(
            ingester
                .push("../x", request("m", &[(1, 1.0)]))
                .unwrap_err()
                .code,
            ErrorCode::Unauthenticated
        );
    }

    fn series_request(series: &[(&str, &str)]) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(name, instance)| TimeSeries {
                    labels: vec![
                        Label {
                            name: "__name__".into(),
                            value: name.to_string(),
                        },
                        Label {
                            name: "instance".into(),
                            value: instance.to_string(),
                        },
                    ],
                    samples: vec![WireSample {
                        timestamp: 1,
                        value: 1.0,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn limited(limits: strata_limits::Limits, counts: FixedRingCounts) -> Ingester {
        let overrides = Arc::new(Overrides::new(Default::default()));
        overrides.replace_tenant_overrides(HashMap::from([("a".to_string(), limits)]));
        Ingester::new(IngesterConfig::default(), &prometheus::Registry::new())
            .unwrap()
            .with_limits(overrides, Arc::new(counts))
    }

    #[test]
    fn new_series_over_the_tenant_limit_are_rejected_with_429() {
        let single = FixedRingCounts {
            replication_factor: 1,
            healthy_ingesters: 1,
        };
        let ingester = limited(
            strata_limits::Limits {
                max_global_series_per_user: 2,
                ..Default::default()
            },
            single,
        );
        ingester
            .push("a", series_request(&[("m", "1"), ("m", "2")]))
            .unwrap();
        let err = ingester
            .push("a", series_request(&[("m", "3"), ("m", "1")]))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(
            err.message
                .starts_with("per-tenant series limit of 2 exceeded (max_global_series_per_user"),
            "{}",
            err.message
        );
        assert!(err.message.contains("err-strata-max-series-per-user"));
        assert!(err.message.contains("instance=\"3\""), "{}", err.message);
        // Existing series still take samples; the rejected one was not created.
        let m = [Matcher::equal("__name__", "m")];
        assert_eq!(ingester.query("a", &m, 0, 10).unwrap().len(), 2);
        // Other tenants have the defaults.
        ingester
            .push("b", series_request(&[("m", "1"), ("m", "2"), ("m", "3")]))
            .unwrap();
    }

    #[test]
    fn the_per_metric_limit_counts_series_of_one_name() {
        let single = FixedRingCounts {
            replication_factor: 1,
            healthy_ingesters: 1,
        };
        let ingester = limited(
            strata_limits::Limits {
                max_global_series_per_metric: 1,
                ..Default::default()
            },
            single,
        );
        ingester
            .push("a", series_request(&[("m", "1"), ("n", "1")]))
            .unwrap();
        let err = ingester
            .push("a", series_request(&[("m", "2")]))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(
            err.message.contains(
                "per-metric series limit of 1 exceeded for metric m (max_global_series_per_metric"
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_global_limit_is_shared_among_ingesters() {
        // 6 series over 3 ingesters at RF 1: 2 each.
        let ingester = limited(
            strata_limits::Limits {
                max_global_series_per_user: 6,
                ..Default::default()
            },
            FixedRingCounts {
                replication_factor: 1,
                healthy_ingesters: 3,
            },
        );
        ingester
            .push("a", series_request(&[("m", "1"), ("m", "2")]))
            .unwrap();
        let err = ingester
            .push("a", series_request(&[("m", "3")]))
            .unwrap_err();
        assert!(
            err.message.contains("2 on this ingester"),
            "{}",
            err.message
        );
    }
}
