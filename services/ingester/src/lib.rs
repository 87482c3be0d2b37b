//! The ingester: one in-memory head per tenant (from `strata-tsdb`) behind the
//! gRPC `Ingester` service of `proto/ingester.proto`. Distributors push to it;
//! queriers read recent data from it as streamed XOR chunks.
//!
//! The WAL, block cutting and the ring lifecycle are not here yet; the service
//! surface is the one they will sit behind.

mod metrics;
mod service;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
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

/// The tenants' heads and the operations the gRPC service exposes.
#[derive(Debug)]
pub struct Ingester {
    config: IngesterConfig,
    heads: RwLock<HashMap<String, Arc<Head>>>,
    metrics: metrics::IngesterMetrics,
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
        })
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
    /// are rejected, and the first rejection is reported (INVALID_ARGUMENT).
    pub fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
        check_tenant(tenant)?;
        let head = self.head_or_create(tenant);
        let mut appended = 0u64;
        let mut rejected = 0u64;
        let mut first_error: Option<String> = None;
        let mut samples = Vec::new();
        for series in request.timeseries {
            let labels = strata_proto::labels_from_proto(series.labels);
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
        match first_error {
            None => Ok(()),
            Some(msg) => {
                let more = if rejected > MAX_REJECTIONS_NAMED as u64 {
                    format!(" ({rejected} samples rejected in all)")
                } else {
                    String::new()
                };
                Err(ServiceError::bad_request(format!("{msg}{more}")))
            }
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
}
