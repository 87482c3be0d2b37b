//! The `store_gateway` config section (Mimir's names). The bucket-side
//! settings (sync dir and interval, caches) are `blocks_storage.bucket_store`
//! in `strata-storage`.

use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;
use strata_ring::{ConfigError, RingConfig};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreGatewayConfig {
    pub sharding_ring: ShardingRingConfig,
}

/// `store_gateway.sharding_ring`: the ring blocks are sharded over. It lives
/// in the same KV store as the ingester ring (`ingester.ring.kvstore`), under
/// `<prefix>rings/store-gateway`; the instance ID, address and zone are the
/// process's (`ingester.ring.instance_*`).
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingRingConfig {
    pub replication_factor: usize,
    pub num_tokens: usize,
    pub heartbeat_period: ConfigDuration,
    pub heartbeat_timeout: ConfigDuration,
}

impl Default for ShardingRingConfig {
    fn default() -> Self {
        Self {
            replication_factor: 1,
            num_tokens: 128,
            heartbeat_period: ConfigDuration::from_secs(5),
            heartbeat_timeout: ConfigDuration::from_secs(60),
        }
    }
}

impl StoreGatewayConfig {
    /// The ring config of the store-gateway ring, from the process's ring
    /// settings (`base`: KV store, instance ID, address, zone).
    pub fn ring_config(&self, base: &RingConfig) -> RingConfig {
        let r = &self.sharding_ring;
        RingConfig {
            replication_factor: r.replication_factor,
            num_tokens: r.num_tokens,
            heartbeat_period: r.heartbeat_period,
            heartbeat_timeout: r.heartbeat_timeout,
            // The ingester's tokens file is the ingester's: a store-gateway
            // takes new tokens on each start (its blocks reload from the
            // local index-headers either way).
            tokens_file_path: None,
            unregister_on_shutdown: true,
            ..base.clone()
        }
    }

    /// Checks the store-gateway ring built on `base` as the start does: as an
    /// instance that joins it when `joins` (this process is a store-gateway),
    /// else as a reader's local copy (a querier's). The error's key is
    /// `sharding_ring.<key>` for a setting of this section, else `base`'s key.
    pub fn validate(&self, base: &RingConfig, joins: bool) -> Result<(), ConfigError> {
        let ring = self.ring_config(base);
        let result = if joins {
            ring.validate_lifecycler()
        } else {
            ring.validate()
        };
        result.map_err(|e| ConfigError {
            key: match e.key {
                "replication_factor" => "sharding_ring.replication_factor",
                "num_tokens" => "sharding_ring.num_tokens",
                "heartbeat_period" => "sharding_ring.heartbeat_period",
                "heartbeat_timeout" => "sharding_ring.heartbeat_timeout",
                other => other,
            },
            message: e.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_errors_name_this_section_or_the_base() {
        let base = RingConfig {
            instance_id: "a".into(),
            instance_addr: "a:1".into(),
            ..RingConfig::default()
        };
        let mut config = StoreGatewayConfig::default();
        config.validate(&base, true).unwrap();
        config.sharding_ring.num_tokens = 0;
        // A reader does not need tokens; a member does.
        config.validate(&base, false).unwrap();
        assert_eq!(
            config.validate(&base, true).unwrap_err().key,
            "sharding_ring.num_tokens"
        );
        config.sharding_ring.num_tokens = 128;
        config.sharding_ring.replication_factor = 0;
        assert_eq!(
            config.validate(&base, false).unwrap_err().key,
            "sharding_ring.replication_factor"
        );
        config.sharding_ring.replication_factor = 1;
        let zoned = RingConfig {
            zone_awareness_enabled: true,
            ..base
        };
        assert_eq!(
            config.validate(&zoned, true).unwrap_err().key,
            "instance_availability_zone"
        );
    }
}
