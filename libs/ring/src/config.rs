//! The `ring` config section, with Mimir's key names.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;

use crate::error::ConfigError;
use crate::replication::ReplicationOptions;

/// Which KV store backs the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvStoreKind {
    /// etcd v3 (a cluster of processes).
    Etcd,
    /// In the process's memory: only for a single process (the default) and tests.
    #[default]
    Inmemory,
}

/// `kvstore`: where the ring is stored.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    pub store: KvStoreKind,
    pub prefix: String,
    pub etcd: EtcdConfig,
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            store: KvStoreKind::default(),
            prefix: "strata/".to_string(),
            etcd: EtcdConfig::default(),
        }
    }
}

impl KvConfig {
    /// The key holding the ring named `ring_name` (`ingester`,
    /// `store-gateway`, `ruler`…): `<prefix>rings/<ring_name>`.
    pub fn ring_key(&self, ring_name: &str) -> String {
        format!("{}rings/{}", self.prefix, ring_name)
    }
}

/// `kvstore.etcd`.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub dial_timeout: ConfigDuration,
    pub max_retries: usize,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            dial_timeout: ConfigDuration::from_secs(10),
            max_retries: 10,
        }
    }
}

/// A ring: where it is stored, how keys are replicated over it, and how this
/// process's instance (if it joins the ring) registers and heartbeats.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingConfig {
    pub kvstore: KvConfig,
    pub heartbeat_period: ConfigDuration,
    pub heartbeat_timeout: ConfigDuration,
    pub replication_factor: usize,
    pub zone_awareness_enabled: bool,
    pub num_tokens: usize,
    pub instance_id: String,
    pub instance_addr: String,
    pub instance_availability_zone: String,
    pub tokens_file_path: Option<PathBuf>,
    pub unregister_on_shutdown: bool,
    pub auto_forget_unhealthy_periods: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            kvstore: KvConfig::default(),
            heartbeat_period: ConfigDuration::from_secs(5),
            heartbeat_timeout: ConfigDuration::from_secs(60),
            replication_factor: 3,
            zone_awareness_enabled: false,
            num_tokens: 128,
            instance_id: String::new(),
            instance_addr: String::new(),
            instance_availability_zone: String::new(),
            tokens_file_path: None,
            unregister_on_shutdown: true,
            auto_forget_unhealthy_periods: 10,
        }
    }
}

/// Most tokens one instance may claim.
pub const MAX_NUM_TOKENS: usize = 65_536;

impl RingConfig {
    /// Checks the settings every ring user needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, message: String| Err(ConfigError { key, message });
        if self.replication_factor == 0 {
            return err("replication_factor", "must be at least 1".into());
        }
        if self.kvstore.store == KvStoreKind::Etcd {
            if self.kvstore.etcd.endpoints.is_empty() {
                return err(
                    "kvstore.etcd.endpoints",
                    "at least one endpoint is required with store: etcd".into(),
                );
            }
            if self.kvstore.etcd.dial_timeout.0.is_zero() {
                return err("kvstore.etcd.dial_timeout", "must be more than 0".into());
            }
        }
        Ok(())
    }

    /// Checks the settings an instance joining the ring also needs.
    pub fn validate_lifecycler(&self) -> Result<(), ConfigError> {
        self.validate()?;
        let err = |key, message: String| Err(ConfigError { key, message });
        if self.instance_id.is_empty() {
            return err("instance_id", "must be set to join the ring".into());
        }
        if self.instance_addr.is_empty() {
            return err("instance_addr", "must be set to join the ring".into());
        }
        if self.num_tokens == 0 || self.num_tokens > MAX_NUM_TOKENS {
            return err(
                "num_tokens",
                format!(
                    "must be between 1 and {MAX_NUM_TOKENS}, got {}",
                    self.num_tokens
                ),
            );
        }
        if self.heartbeat_period.0.is_zero() {
            return err("heartbeat_period", "must be more than 0".into());
        }
        if self.zone_awareness_enabled && self.instance_availability_zone.is_empty() {
            return err(
                "instance_availability_zone",
                "must be set when zone_awareness_enabled is true".into(),
            );
        }
        Ok(())
    }

    /// The parameters of the replication strategy.
    pub fn replication_options(&self) -> ReplicationOptions {
        ReplicationOptions {
            replication_factor: self.replication_factor,
            zone_awareness_enabled: self.zone_awareness_enabled,
            heartbeat_timeout: self.heartbeat_timeout.0,
        }
    }

    /// Heartbeat age past which another instance is forgotten, if enabled.
    pub fn auto_forget_after(&self) -> Option<Duration> {
        (self.auto_forget_unhealthy_periods > 0 && !self.heartbeat_timeout.0.is_zero())
            .then(|| self.heartbeat_timeout.0 * self.auto_forget_unhealthy_periods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip() {
        let config = RingConfig::default();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["heartbeat_period"], "5s");
        assert_eq!(json["heartbeat_timeout"], "1m");
        assert_eq!(json["kvstore"]["store"], "inmemory");
        let back: RingConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        assert_eq!(config.kvstore.ring_key("ingester"), "strata/rings/ingester");
        assert_eq!(config.auto_forget_after(), Some(Duration::from_secs(600)));
    }

    #[test]
    fn partial_config_and_unknown_keys() {
        let config: RingConfig = serde_json::from_str(
            r#"{"kvstore":{"store":"etcd","etcd":{"endpoints":["127.0.0.1:2379"],"dial_timeout":"2s"}},
                "replication_factor":1,"auto_forget_unhealthy_periods":0}"#,
        )
        .unwrap();
        assert_eq!(config.kvstore.store, KvStoreKind::Etcd);
        assert_eq!(config.kvstore.etcd.dial_timeout.0, Duration::from_secs(2));
        assert_eq!(config.num_tokens, 128);
        assert_eq!(config.auto_forget_after(), None);
        config.validate().unwrap();

        assert!(serde_json::from_str::<RingConfig>(r#"{"replicas":3}"#).is_err());
        assert!(serde_json::from_str::<RingConfig>(r#"{"kvstore":{"store":"consul"}}"#).is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = RingConfig {
            replication_factor: 0,
            ..RingConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "replication_factor");
        config.replication_factor = 3;
        config.kvstore.store = KvStoreKind::Etcd;
        assert_eq!(config.validate().unwrap_err().key, "kvstore.etcd.endpoints");
        config.kvstore.store = KvStoreKind::Inmemory;
        assert_eq!(config.validate_lifecycler().unwrap_err().key, "instance_id");
        config.instance_id = "ing-1".into();
        config.instance_addr = "127.0.0.1:9095".into();
        config.validate_lifecycler().unwrap();
        config.zone_awareness_enabled = true;
        assert_eq!(
            config.validate_lifecycler().unwrap_err().key,
            "instance_availability_zone"
        );
    }
}
