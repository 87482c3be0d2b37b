//! [`Limits`], the values of one tenant, with their YAML form and their
//! checks, and the arithmetic on them the components share
//! ([`local_series_limit`]). The leaf the rest of the crate builds on: the
//! overrides hold these, the runtime config file is parsed into them.

use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;

/// The limits of one tenant. Field names match Mimir's `limits` block, so a
/// Mimir user's settings carry over. For the count limits, 0 means no limit
/// where Mimir has that meaning too.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub ingestion_rate: f64,
    pub ingestion_burst_size: usize,
    pub max_global_series_per_user: usize,
    pub max_global_series_per_metric: usize,
    pub max_fetched_series_per_query: usize,
    pub max_samples_per_query: usize,
    pub query_timeout: ConfigDuration,
    /// Longest time range (end - start) one range query or one remote-read
    /// query may cover; 0 is no limit (Mimir's default).
    pub max_total_query_length: ConfigDuration,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_label_names_per_series: usize,
    pub creation_grace_period: ConfigDuration,
    pub past_grace_period: ConfigDuration,
    /// How far behind the head's newest sample an ingester still takes a
    /// sample older than its series' newest (Mimir's
    /// `out_of_order_time_window`); 0 is off: such samples are refused.
    pub out_of_order_time_window: ConfigDuration,
    pub compactor_blocks_retention_period: ConfigDuration,
    pub accept_ha_samples: bool,
    pub ha_cluster_label: String,
    pub ha_replica_label: String,
    pub ha_max_clusters: usize,
    /// Longest metric family name, help or unit of one metadata entry, in
    /// bytes: a longer name or unit drops the entry, a longer help is
    /// truncated (Mimir's rule).
    pub max_metadata_length: usize,
    /// Most metric families with metadata per tenant across the cluster,
    /// divided among the ingesters like the series limits. 0: no limit.
    pub max_global_metadata_per_user: usize,
    /// Most distinct metadata entries of one metric family. 0: no limit.
    pub max_global_metadata_per_metric: usize,
    /// Exemplars held per tenant across the cluster, divided among the
    /// ingesters like the series limits. 0 (Mimir's default): exemplars off.
    pub max_global_exemplars_per_user: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingestion_rate: 10_000.0,
            ingestion_burst_size: 200_000,
            max_global_series_per_user: 150_000,
            max_global_series_per_metric: 0,
            max_fetched_series_per_query: 0,
            max_samples_per_query: 0,
            query_timeout: ConfigDuration::from_secs(0),
            max_total_query_length: ConfigDuration::from_secs(0),
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_label_names_per_series: 30,
            creation_grace_period: ConfigDuration::from_secs(10 * 60),
            past_grace_period: ConfigDuration::from_secs(0),
            out_of_order_time_window: ConfigDuration::from_secs(0),
            compactor_blocks_retention_period: ConfigDuration::from_secs(0),
            accept_ha_samples: false,
            ha_cluster_label: "cluster".to_string(),
            ha_replica_label: "__replica__".to_string(),
            ha_max_clusters: 100,
            max_metadata_length: 1024,
            // Mimir's defaults are 0 (no limit); Strata bounds what a tenant
            // can make its ingesters hold (docs/limits.md).
            max_global_metadata_per_user: 10_000,
            max_global_metadata_per_metric: 10,
            max_global_exemplars_per_user: 0,
        }
    }
}

/// A limit value that parses but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct LimitsError {
    pub key: &'static str,
    pub reason: &'static str,
}

impl Limits {
    /// Checks the values that parse but make no sense.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if !self.ingestion_rate.is_finite() || self.ingestion_rate < 0.0 {
            return Err(LimitsError {
                key: "ingestion_rate",
                reason: "must be a finite number of samples per second, 0 or more",
            });
        }
        if self.accept_ha_samples {
            if !strata_model::is_valid_label_name(&self.ha_cluster_label) {
                return Err(LimitsError {
                    key: "ha_cluster_label",
                    reason: "must be a valid label name",
                });
            }
            if !strata_model::is_valid_label_name(&self.ha_replica_label) {
                return Err(LimitsError {
                    key: "ha_replica_label",
                    reason: "must be a valid label name",
                });
            }
            if self.ha_cluster_label == self.ha_replica_label {
                return Err(LimitsError {
                    key: "ha_replica_label",
                    reason: "must differ from ha_cluster_label",
                });
            }
        }
        Ok(())
    }
}

/// An ingester's share of a global series limit, as Mimir computes it: the
/// global limit divided among the healthy ingesters, times the replication
/// factor since every series is held by that many ingesters. With fewer
/// ingesters than the replication factor every ingester holds every series, so
/// the share is the global limit itself (Mimir would allow more there).
/// 0 (no limit) stays 0; with no healthy ingester known the share is the
/// global limit.
pub fn local_series_limit(
    global: usize,
    replication_factor: usize,
    healthy_ingesters: usize,
) -> usize {
    if global == 0 {
        return 0;
    }
    if healthy_ingesters == 0 {
        return global;
    }
    let holders = replication_factor.clamp(1, healthy_ingesters);
    let share = (global as f64 / healthy_ingesters as f64 * holders as f64) as usize;
    // A positive global limit never becomes "no limit".
    share.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_uses_mimir_names_and_rejects_unknown_keys() {
        let limits: Limits =
            serde_yaml::from_str("max_label_names_per_series: 40\ncreation_grace_period: 1h\n")
                .unwrap();
        assert_eq!(limits.max_label_names_per_series, 40);
        assert_eq!(limits.creation_grace_period.0.as_secs(), 3600);
        let err = serde_yaml::from_str::<Limits>("max_label_names: 1\n").unwrap_err();
        assert!(err.to_string().contains("max_label_names"), "{err}");
    }

    #[test]
    fn mimir_defaults() {
        let l = Limits::default();
        assert_eq!(l.ingestion_rate, 10_000.0);
        assert_eq!(l.ingestion_burst_size, 200_000);
        assert_eq!(l.max_global_series_per_user, 150_000);
        assert_eq!(l.max_global_series_per_metric, 0);
        assert_eq!(l.max_fetched_series_per_query, 0);
        assert!(l.max_total_query_length.0.is_zero());
        assert!(l.validate().is_ok());
        let negative = Limits {
            ingestion_rate: -1.0,
            ..Default::default()
        };
        assert_eq!(negative.validate().unwrap_err().key, "ingestion_rate");
        let same_labels = Limits {
            accept_ha_samples: true,
            ha_replica_label: "cluster".into(),
            ..Default::default()
        };
        assert_eq!(same_labels.validate().unwrap_err().key, "ha_replica_label");
        assert_eq!(l.ha_max_clusters, 100);
    }

    #[test]
    fn global_limits_are_divided_among_ingesters() {
        // Mimir's formula: global / ingesters * replication factor.
        assert_eq!(local_series_limit(150_000, 3, 6), 75_000);
        assert_eq!(local_series_limit(150_000, 3, 3), 150_000);
        assert_eq!(local_series_limit(100, 1, 4), 25);
        assert_eq!(local_series_limit(1000, 3, 7), 428);
        // Fewer ingesters than replicas: each holds every series.
        assert_eq!(local_series_limit(100, 3, 1), 100);
        assert_eq!(local_series_limit(100, 3, 2), 100);
        // Off stays off; unknown ring means the global value; never rounds to off.
        assert_eq!(local_series_limit(0, 3, 6), 0);
        assert_eq!(local_series_limit(100, 3, 0), 100);
        assert_eq!(local_series_limit(1, 1, 10), 1);
    }
}
