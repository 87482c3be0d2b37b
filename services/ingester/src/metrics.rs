use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use strata_tsdb::wal::{ReplayStats, WalObserver};

/// The ingester's own metrics (names follow Mimir's where one exists).
#[derive(Debug, Clone)]
pub(crate) struct IngesterMetrics {
    ingested_samples: IntCounterVec,
    discarded_samples: IntCounterVec,
    memory_series: IntGaugeVec,
    memory_metadata: IntGaugeVec,
    memory_exemplars: IntGaugeVec,
    ingested_exemplars: IntCounterVec,
    out_of_order_samples: IntCounterVec,
    memory_samples: IntGaugeVec,
    wal: WalMetrics,
    wal_replay_duration: Gauge,
    wal_replayed_records: IntCounter,
    wal_corruptions: IntCounter,
    wal_checkpoints: IntCounter,
    wal_write_failures: IntCounter,
    tenants: IntGauge,
    open_block_readers: IntGauge,
    blocks_cut: IntCounter,
    block_cut_failures: IntCounter,
    uploads: IntCounter,
    upload_failures: IntCounter,
    upload_retries: IntCounter,
    last_upload: Gauge,
    flush_duration: Histogram,
}

/// What the ingester's WAL reports (one WAL for every tenant).
#[derive(Debug, Clone)]
pub(crate) struct WalMetrics {
    records: IntCounter,
    bytes: IntCounter,
    fsyncs: IntCounter,
    fsync_duration: Histogram,
}

impl WalObserver for WalMetrics {
    fn written(&self, records: usize, bytes: u64) {
        self.records.inc_by(records as u64);
        self.bytes.inc_by(bytes);
    }

    fn fsynced(&self, took: Duration) {
        self.fsyncs.inc();
        self.fsync_duration.observe(took.as_secs_f64());
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
    let g = Gauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> Result<Histogram, prometheus::Error> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
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
        let memory_samples = IntGaugeVec::new(
            Opts::new(
                "strata_ingester_memory_samples",
                "Samples in a tenant's head not yet cut into a block (the head may still hold a few \
                 of those in chunks that straddle a block's end).",
            ),
            &["tenant"],
        )?;
        let memory_metadata = IntGaugeVec::new(
            Opts::new(
                "strata_ingester_memory_metadata",
                "Metric families with metadata held in memory, by tenant.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(memory_metadata.clone()))?;
        let memory_exemplars = IntGaugeVec::new(
            Opts::new(
                "strata_ingester_memory_exemplars",
                "Exemplars held in memory, by tenant (at most its share of max_global_exemplars_per_user).",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(memory_exemplars.clone()))?;
        let ingested_exemplars = IntCounterVec::new(
            Opts::new(
                "strata_ingester_ingested_exemplars_total",
                "Exemplars stored in a tenant's exemplar store.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(ingested_exemplars.clone()))?;
        let out_of_order_samples = IntCounterVec::new(
            Opts::new(
                "strata_ingester_out_of_order_samples_appended_total",
                "Samples stored out of order (within the tenant's out_of_order_time_window), by tenant; also counted in strata_ingester_ingested_samples_total.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(out_of_order_samples.clone()))?;
        registry.register(Box::new(ingested_samples.clone()))?;
        registry.register(Box::new(memory_series.clone()))?;
        registry.register(Box::new(memory_samples.clone()))?;
        strata_telemetry::register_shared(registry)?;
        let discarded_samples = strata_telemetry::discarded_samples().clone();
        let wal = WalMetrics {
            records: counter(
                registry,
                "strata_ingester_wal_records_written_total",
                "WAL records (series and samples records) written, all tenants.",
            )?,
            bytes: counter(
                registry,
                "strata_ingester_wal_written_bytes_total",
                "Bytes written to WAL segments, framing included, all tenants.",
            )?,
            fsyncs: counter(
                registry,
                "strata_ingester_wal_fsyncs_total",
                "fsyncs of WAL segments (one covers every push written before it).",
            )?,
            fsync_duration: histogram(
                registry,
                "strata_ingester_wal_fsync_duration_seconds",
                "Time an fsync of a WAL segment took.",
                exponential_buckets(0.0001, 4.0, 9)?,
            )?,
        };
        Ok(Self {
            ingested_samples,
            discarded_samples,
            memory_series,
            memory_metadata,
            memory_exemplars,
            ingested_exemplars,
            out_of_order_samples,
            memory_samples,
            wal,
            wal_replay_duration: gauge(
                registry,
                "strata_ingester_wal_replay_duration_seconds",
                "Time the start-up replay of every tenant's WAL took.",
            )?,
            wal_replayed_records: counter(
                registry,
                "strata_ingester_wal_replayed_records_total",
                "WAL records read back by replays (checkpoints included).",
            )?,
            wal_corruptions: counter(
                registry,
                "strata_ingester_wal_corruptions_total",
                "Replays that found a damaged WAL (a torn tail cut off, damaged records skipped).",
            )?,
            wal_checkpoints: counter(
                registry,
                "strata_ingester_wal_checkpoints_total",
                "WAL checkpoints written (one for every tenant, after blocks are cut).",
            )?,
            wal_write_failures: counter(
                registry,
                "strata_ingester_wal_write_failures_total",
                "Pushes refused because the WAL could not be written (a full or failing disk): nothing of them entered the head.",
            )?,
            tenants: int_gauge(
                registry,
                "strata_ingester_memory_tenants",
                "Tenants with a head open on this ingester (closed idle tenants not counted).",
            )?,
            open_block_readers: int_gauge(
                registry,
                "strata_ingester_local_blocks_open",
                "Local blocks whose files are open for queries (closed when no query read them for a while).",
            )?,
            blocks_cut: counter(
                registry,
                "strata_ingester_blocks_cut_total",
                "Blocks written from a head to the local disk.",
            )?,
            block_cut_failures: counter(
                registry,
                "strata_ingester_block_cut_failures_total",
                "Attempts to cut a tenant's head into a block that failed (the head keeps its samples; the next cut or flush retries).",
            )?,
            uploads: counter(
                registry,
                "strata_ingester_shipper_uploads_total",
                "Blocks uploaded to object storage.",
            )?,
            upload_failures: counter(
                registry,
                "strata_ingester_shipper_upload_failures_total",
                "Block uploads that failed (the shipper tries again with backoff).",
            )?,
            upload_retries: counter(
                registry,
                "strata_ingester_shipper_upload_retries_total",
                "Block uploads attempted again after a failed one.",
            )?,
            last_upload: gauge(
                registry,
                "strata_ingester_shipper_last_successful_upload_timestamp_seconds",
                "Unix time of the last successful block upload (0: none since start).",
            )?,
            flush_duration: histogram(
                registry,
                "strata_ingester_flush_duration_seconds",
                "Time a flush (POST /ingester/flush, flush on shutdown) took to cut and ship every head.",
                exponential_buckets(0.01, 4.0, 9)?,
            )?,
        })
    }

    pub(crate) fn ingested(&self, tenant: &str, samples: u64, series_in_memory: usize) {
        self.ingested_samples
            .with_label_values(&[tenant])
            .inc_by(samples);
        self.memory_samples
            .with_label_values(&[tenant])
            .add(samples as i64);
        self.memory_series
            .with_label_values(&[tenant])
            .set(series_in_memory as i64);
    }

    /// A push's samples stored out of order.
    pub(crate) fn out_of_order(&self, tenant: &str, samples: u64) {
        if samples > 0 {
            self.out_of_order_samples
                .with_label_values(&[tenant])
                .inc_by(samples);
        }
    }

    /// A push's exemplars: stored, now held, skipped by reason.
    pub(crate) fn exemplars(
        &self,
        tenant: &str,
        stored: u64,
        held: usize,
        skipped: &std::collections::HashMap<&'static str, u64>,
    ) {
        if stored > 0 {
            self.ingested_exemplars
                .with_label_values(&[tenant])
                .inc_by(stored);
        }
        if stored > 0 || held > 0 {
            self.memory_exemplars
                .with_label_values(&[tenant])
                .set(held as i64);
        }
        for (reason, n) in skipped {
            strata_telemetry::discarded_exemplars()
                .with_label_values(&[tenant, reason])
                .inc_by(*n);
        }
    }

    /// A push's metadata: families now held, entries refused by reason.
    pub(crate) fn metadata(&self, tenant: &str, families: usize, refused: &[&'static str]) {
        self.memory_metadata
            .with_label_values(&[tenant])
            .set(families as i64);
        for reason in refused {
            strata_telemetry::discarded_metadata()
                .with_label_values(&[tenant, reason])
                .inc();
        }
    }

    pub(crate) fn discarded(&self, tenant: &str, reason: &str, samples: u64) {
        self.discarded_samples
            .with_label_values(&[tenant, reason])
            .inc_by(samples);
    }

    /// The observer every tenant's WAL reports to.
    pub(crate) fn wal_observer(&self) -> Arc<dyn WalObserver> {
        Arc::new(self.wal.clone())
    }

    /// The start-up replay: what it read (every tenant).
    pub(crate) fn replayed(&self, stats: &ReplayStats) {
        self.wal_replayed_records.inc_by(stats.records);
        if stats.damaged() {
            self.wal_corruptions.inc();
        }
    }

    /// A tenant's head after the replay: its series and samples.
    pub(crate) fn tenant_opened(&self, tenant: &str, series: usize, samples: u64) {
        self.memory_samples
            .with_label_values(&[tenant])
            .set(samples as i64);
        self.memory_series
            .with_label_values(&[tenant])
            .set(series as i64);
    }

    /// A tenant was closed: its series go from the ingester's metrics, so
    /// `/metrics` does not grow with every tenant ever seen.
    pub(crate) fn tenant_closed(&self, tenant: &str) {
        let _ = self.memory_samples.remove_label_values(&[tenant]);
        let _ = self.memory_series.remove_label_values(&[tenant]);
        let _ = self.ingested_samples.remove_label_values(&[tenant]);
    }

    pub(crate) fn tenants(&self, open: usize) {
        self.tenants.set(open as i64);
    }

    pub(crate) fn open_block_readers(&self, open: usize) {
        self.open_block_readers.set(open as i64);
    }

    pub(crate) fn checkpointed(&self) {
        self.wal_checkpoints.inc();
    }

    pub(crate) fn replay_took(&self, took: Duration) {
        self.wal_replay_duration.set(took.as_secs_f64());
    }

    /// A block of `samples` samples was cut from the tenant's head, which now
    /// holds `series` series.
    pub(crate) fn block_cut(&self, tenant: &str, samples: u64, series: usize) {
        self.blocks_cut.inc();
        self.memory_samples
            .with_label_values(&[tenant])
            .sub(samples as i64);
        self.memory_series
            .with_label_values(&[tenant])
            .set(series as i64);
    }

    pub(crate) fn upload_succeeded(&self) {
        self.uploads.inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_upload.set(now);
    }

    pub(crate) fn upload_failed(&self) {
        self.upload_failures.inc();
    }

    pub(crate) fn upload_retried(&self) {
        self.upload_retries.inc();
    }

    pub(crate) fn wal_write_failed(&self) {
        self.wal_write_failures.inc();
    }

    pub(crate) fn cut_failed(&self) {
        self.block_cut_failures.inc();
    }

    pub(crate) fn flushed(&self, took: Duration) {
        self.flush_duration.observe(took.as_secs_f64());
    }
}
