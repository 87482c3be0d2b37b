use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry};

/// The compactor's metrics (Mimir's names with `strata_` where Mimir has one).
#[derive(Debug, Clone)]
pub(crate) struct CompactorMetrics {
    pub(crate) runs_started: IntCounter,
    pub(crate) runs_completed: IntCounter,
    pub(crate) runs_failed: IntCounter,
    pub(crate) last_successful_run: Gauge,
    pub(crate) compactions: IntCounterVec,
    pub(crate) marked_for_deletion: IntCounterVec,
    pub(crate) blocks_deleted: IntCounter,
    pub(crate) partial_blocks_deleted: IntCounter,
    pub(crate) bucket_index_updates: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl CompactorMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let last_successful_run = Gauge::new(
            "strata_compactor_last_successful_run_timestamp_seconds",
            "Unix time of the last compaction pass that completed for every tenant.",
        )?;
        registry.register(Box::new(last_successful_run.clone()))?;
        Ok(Self {
            runs_started: counter(
                registry,
                "strata_compactor_runs_started_total",
                "Compaction passes started.",
            )?,
            runs_completed: counter(
                registry,
                "strata_compactor_runs_completed_total",
                "Compaction passes that completed for every tenant.",
            )?,
            runs_failed: counter(
                registry,
                "strata_compactor_runs_failed_total",
                "Compaction passes in which at least one tenant failed.",
            )?,
            last_successful_run,
            compactions: counter_vec(
                registry,
                "strata_compactor_compactions_total",
                "Blocks written by merging others, by kind (vertical: overlapping copies; level: adjacent blocks).",
                "kind",
            )?,
            marked_for_deletion: counter_vec(
                registry,
                "strata_compactor_blocks_marked_for_deletion_total",
                "Blocks marked for deletion, by reason (compaction, retention, duplicate).",
                "reason",
            )?,
            blocks_deleted: counter(
                registry,
                "strata_compactor_blocks_cleaned_total",
                "Marked blocks deleted after the deletion delay.",
            )?,
            partial_blocks_deleted: counter(
                registry,
                "strata_compactor_partial_blocks_deleted_total",
                "Block directories without meta.json deleted as abandoned uploads.",
            )?,
            bucket_index_updates: counter(
                registry,
                "strata_compactor_bucket_index_updates_total",
                "Bucket indexes written.",
            )?,
        })
    }
}
