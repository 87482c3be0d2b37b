use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// `strata_ingester_client_request_duration_seconds{operation,status_code}`:
/// the distributor's calls to ingesters, one observation per replica request.
/// Process-wide, as the replication code has no registry of its own.
pub(crate) fn ingester_client_duration() -> &'static HistogramVec {
    static HISTOGRAM: OnceLock<HistogramVec> = OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        HistogramVec::new(
            HistogramOpts::new(
                "strata_ingester_client_request_duration_seconds",
                "Time the distributor's requests to ingesters took, by operation and status code.",
            )
            .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
            &["operation", "status_code"],
        )
        .unwrap_or_else(|_| unreachable!("constant metric options are valid"))
    })
}

/// `strata_distributor_ingester_inflight_limit_reached_total`: replica
/// pushes not sent because the ingester had
/// `distributor.max_inflight_push_requests_per_ingester` pushes in flight.
/// Process-wide, like [`ingester_client_duration`].
pub(crate) fn inflight_limit_reached() -> &'static IntCounter {
    static COUNTER: OnceLock<IntCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        IntCounter::new(
            "strata_distributor_ingester_inflight_limit_reached_total",
            "Replica pushes not sent because that ingester already had distributor.max_inflight_push_requests_per_ingester pushes in flight (slow or hung); they count as failed for the quorum.",
        )
        .unwrap_or_else(|_| unreachable!("constant metric options are valid"))
    })
}

/// What the distributor counts, per tenant.
#[derive(Debug)]
pub(crate) struct DistributorMetrics {
    received_samples: IntCounterVec,
    received_series: IntCounterVec,
    deduped_samples: IntCounterVec,
    non_ha_samples: IntCounterVec,
}

impl DistributorMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let received_samples = IntCounterVec::new(
            Opts::new(
                "strata_distributor_received_samples_total",
                "Samples received in pushes, before validation.",
            ),
            &["tenant"],
        )?;
        let received_series = IntCounterVec::new(
            Opts::new(
                "strata_distributor_received_series_total",
                "Series received in pushes (one per series per push), before validation.",
            ),
            &["tenant"],
        )?;
        let deduped_samples = IntCounterVec::new(
            Opts::new(
                "strata_distributor_deduped_samples_total",
                "Samples dropped because they came from an HA replica that is not the elected one.",
            ),
            &["tenant", "cluster"],
        )?;
        let non_ha_samples = IntCounterVec::new(
            Opts::new(
                "strata_distributor_non_ha_samples_received_total",
                "Samples of tenants with accept_ha_samples whose pushes carry no cluster and replica labels.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(deduped_samples.clone()))?;
        registry.register(Box::new(non_ha_samples.clone()))?;
        registry.register(Box::new(received_samples.clone()))?;
        registry.register(Box::new(received_series.clone()))?;
        match registry.register(Box::new(ingester_client_duration().clone())) {
            Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
            Err(e) => return Err(e),
        }
        match registry.register(Box::new(inflight_limit_reached().clone())) {
            Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
            Err(e) => return Err(e),
        }
        strata_telemetry::register_shared(registry)?;
        Ok(Self {
            received_samples,
            received_series,
            deduped_samples,
            non_ha_samples,
        })
    }

    pub(crate) fn received(&self, tenant: &str, series: usize, samples: usize) {
        self.received_series
            .with_label_values(&[tenant])
            .inc_by(series as u64);
        self.received_samples
            .with_label_values(&[tenant])
            .inc_by(samples as u64);
    }

    pub(crate) fn deduped_samples(&self, tenant: &str, cluster: &str, samples: usize) {
        self.deduped_samples
            .with_label_values(&[tenant, cluster])
            .inc_by(samples as u64);
    }

    pub(crate) fn non_ha_samples(&self, tenant: &str, samples: usize) {
        self.non_ha_samples
            .with_label_values(&[tenant])
            .inc_by(samples as u64);
    }
}
