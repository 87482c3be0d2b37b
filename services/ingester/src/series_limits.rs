//! The global series limits an ingester enforces: its share of each, from the
//! ring's counts ([`RingCounts`]), and the check made before a new series.

use std::sync::Arc;

use strata_limits::Overrides;
use strata_model::Labels;
use strata_tsdb::head::Head;

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
pub(crate) struct LimitsSource {
    pub(crate) overrides: Arc<Overrides>,
    pub(crate) ring: Arc<dyn RingCounts>,
}

/// One push's series limits: global values and this ingester's share (0: off).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesLimits {
    pub(crate) user_global: usize,
    pub(crate) user_local: usize,
    pub(crate) metric_global: usize,
    pub(crate) metric_local: usize,
}

/// New series a push has planned but not created yet (they count against
/// the limits as if they were in the head).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PendingSeries {
    pub(crate) total: usize,
    /// Those with the metric name of the series being checked.
    pub(crate) same_metric: usize,
}

impl SeriesLimits {
    /// Why the head may not get the new series `labels`, if it may not:
    /// the discard reason (Mimir's) and the message.
    pub(crate) fn check_new_series(
        &self,
        head: &Head,
        labels: &Labels,
        pending: PendingSeries,
    ) -> Result<(), (&'static str, String)> {
        if self.user_local > 0 && head.num_series() + pending.total >= self.user_local {
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
            if head.num_series_with(strata_model::METRIC_NAME, name) + pending.same_metric
                >= self.metric_local
            {
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
