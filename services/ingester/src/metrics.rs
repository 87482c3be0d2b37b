use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The ingester's own metrics (names follow Mimir's where one exists).
#[derive(Debug)]
pub(crate) struct IngesterMetrics {
    ingested_samples: IntCounterVec,
    discarded_samples: IntCounterVec,
    memory_series: IntGaugeVec,
}

impl IngesterMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let ingested_samples = IntCounterVec::new(
            Opts::new(
                "strata_ingester_ingested_samples_total",
                "Samples appended to a tenant's head.",
            ),
            &["tenant"],
        )?;
        let memory_series = IntGaugeVec::new(
            Opts::new(
                "strata_ingester_memory_series",
                "Series held in memory, by tenant.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(ingested_samples.clone()))?;
        registry.register(Box::new(memory_series.clone()))?;
        strata_telemetry::register_shared(registry)?;
        let discarded_samples = strata_telemetry::discarded_samples().clone();
        Ok(Self {
            ingested_samples,
            discarded_samples,
            memory_series,
        })
    }

    pub(crate) fn ingested(&self, tenant: &str, samples: u64, series_in_memory: usize) {
        self.ingested_samples
            .with_label_values(&[tenant])
            .inc_by(samples);
        self.memory_series
            .with_label_values(&[tenant])
            .set(series_in_memory as i64);
    }

    pub(crate) fn discarded(&self, tenant: &str, reason: &str, samples: u64) {
        self.discarded_samples
            .with_label_values(&[tenant, reason])
            .inc_by(samples);
    }
}
