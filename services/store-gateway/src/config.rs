//! The `store_gateway` config section (Mimir's names). The bucket-side
//! settings (sync dir and interval, caches) are `blocks_storage.bucket_store`
//! in `strata-storage`.

use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;
use strata_ring::RingConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreGatewayConfig {
    pub sharding_ring: ShardingRingConfig,
}

/// `store_gateway.sharding_ring`: the ring blocks are sharded over. It lives
/// in the same KV store as the ingester ring (`ingester.ring.kvstore`), under
/// `<prefix>rings/store-gateway`; the instance ID, address and zone are the
/// process's (`ingester.ring.instance_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingRingConfig {
    /// Store-gateways that load each block.
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
}
