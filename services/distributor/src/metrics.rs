use prometheus::{IntCounterVec, Opts, Registry};

/// What the distributor counts, per tenant.
#[derive(Debug)]
pub(crate) struct DistributorMetrics {
    received_samples: IntCounterVec,
    received_series: IntCounterVec,
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
        registry.register(Box::new(received_samples.clone()))?;
        registry.register(Box::new(received_series.clone()))?;
        strata_telemetry::register_shared(registry)?;
        Ok(Self {
            received_samples,
            received_series,
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
}
