//! The ingester's own configuration section (`ingester.*`).

use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;

/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngesterConfig {
    pub query_stream_batch_size: usize,
    pub ring: strata_ring::RingConfig,
    pub flush_on_shutdown: bool,
    /// Metadata not received again within this long is forgotten.
    pub metadata_retain_period: ConfigDuration,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            query_stream_batch_size: 128,
            ring: strata_ring::RingConfig::default(),
            flush_on_shutdown: false,
            metadata_retain_period: ConfigDuration::from_secs(10 * 60),
        }
    }
}
