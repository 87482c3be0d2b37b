//! The `querier` config section, [`QuerierConfig`], with the settings of the
//! clients the querier reads through ([`QueryClientConfig`]) and the checks of
//! both. A leaf: the engine, the querier and the binary read it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_grpc_client::ClientOptions;
use strata_model::ConfigDuration;
use strata_promql::MAX_SUPPORTED_DEPTH;

/// The querier's section of the config file.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerierConfig {
    pub lookback_delta: ConfigDuration,
    pub timeout: ConfigDuration,
    pub max_samples: usize,
    pub max_concurrent: usize,
    pub ingester_client: QueryClientConfig,
    pub minimize_ingester_requests: bool,
    pub minimize_ingester_requests_hedging_delay: ConfigDuration,
    pub query_ingesters_within: ConfigDuration,
    pub query_store_after: ConfigDuration,
    pub store_gateway_client: QueryClientConfig,
    pub store_gateway_hedging_delay: ConfigDuration,
    pub max_query_expression_size_bytes: usize,
    pub max_query_expression_depth: usize,
    pub max_query_matchers_per_selector: usize,
    pub max_query_matchers: usize,
    pub max_response_size_bytes: usize,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            lookback_delta: ConfigDuration::from_secs(5 * 60),
            timeout: ConfigDuration::from_secs(2 * 60),
            max_samples: 50_000_000,
            max_concurrent: 20,
            // A call to one ingester ends well before the query would: a
            // replica that does not answer is one of those a read tolerates.
            ingester_client: QueryClientConfig {
                timeout: ConfigDuration::from_secs(30),
                ..QueryClientConfig::default()
            },
            minimize_ingester_requests: true,
            minimize_ingester_requests_hedging_delay: ConfigDuration::from_secs(3),
            query_ingesters_within: ConfigDuration::from_secs(13 * 3600),
            query_store_after: ConfigDuration::from_secs(12 * 3600),
            store_gateway_client: QueryClientConfig::default(),
            store_gateway_hedging_delay: ConfigDuration::from_secs(5),
            max_query_expression_size_bytes: 64 * 1024,
            max_query_expression_depth: 500,
            max_query_matchers_per_selector: 100,
            max_query_matchers: 1000,
            max_response_size_bytes: 512 << 20,
        }
    }
}

/// How the querier's gRPC clients connect and how much they accept: one
/// section for the ingesters (`querier.ingester_client`), one for the
/// store-gateways (`querier.store_gateway_client`).
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryClientConfig {
    pub timeout: ConfigDuration,
    pub connect_timeout: ConfigDuration,
    pub max_recv_message_size: usize,
}

impl Default for QueryClientConfig {
    fn default() -> Self {
        Self {
            timeout: ConfigDuration::from_secs(120),
            connect_timeout: ConfigDuration::from_secs(5),
            max_recv_message_size: 100 << 20,
        }
    }
}

impl QueryClientConfig {
    /// How a client connects with these settings.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            timeout: self.timeout.0,
            connect_timeout: self.connect_timeout.0,
            max_recv_message_size: self.max_recv_message_size,
        }
    }
}

/// A config value the querier cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("querier.{key}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: &'static str,
}

impl QuerierConfig {
    /// Checks the values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key, d: ConfigDuration| {
            if d.0 == Duration::ZERO {
                Err(ConfigError {
                    key,
                    reason: "must be greater than 0s",
                })
            } else {
                Ok(())
            }
        };
        positive("lookback_delta", self.lookback_delta)?;
        positive("timeout", self.timeout)?;
        positive("ingester_client.timeout", self.ingester_client.timeout)?;
        positive(
            "ingester_client.connect_timeout",
            self.ingester_client.connect_timeout,
        )?;
        if self.max_samples == 0 {
            return Err(ConfigError {
                key: "max_samples",
                reason: "must be greater than 0",
            });
        }
        positive(
            "store_gateway_client.timeout",
            self.store_gateway_client.timeout,
        )?;
        positive(
            "store_gateway_client.connect_timeout",
            self.store_gateway_client.connect_timeout,
        )?;
        // A gap between the two would be time neither source is asked for.
        if self.query_ingesters_within.0 > Duration::ZERO
            && self.query_store_after.0 >= self.query_ingesters_within.0
        {
            return Err(ConfigError {
                key: "query_store_after",
                reason: "must be less than querier.query_ingesters_within (or one of them 0), \
                         else the time between them is read from neither source",
            });
        }
        for (key, value) in [
            (
                "max_query_expression_size_bytes",
                self.max_query_expression_size_bytes,
            ),
            (
                "max_query_expression_depth",
                self.max_query_expression_depth,
            ),
            (
                "max_query_matchers_per_selector",
                self.max_query_matchers_per_selector,
            ),
            ("max_query_matchers", self.max_query_matchers),
            ("max_response_size_bytes", self.max_response_size_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError {
                    key,
                    reason: "must be greater than 0",
                });
            }
        }
        // Deeper trees than this could exhaust even the query threads' stacks.
        if self.max_query_expression_depth > MAX_SUPPORTED_DEPTH {
            return Err(ConfigError {
                key: "max_query_expression_depth",
                reason: "must be at most 1000 (the query threads' stacks are sized for it)",
            });
        }
        if self.ingester_client.max_recv_message_size == 0
            || self.store_gateway_client.max_recv_message_size == 0
        {
            return Err(ConfigError {
                key: "ingester_client.max_recv_message_size",
                reason: "must be greater than 0",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = QuerierConfig::default();
        assert_eq!(c.lookback_delta.to_string(), "5m");
        assert_eq!(c.timeout.to_string(), "2m");
        assert_eq!(c.max_samples, 50_000_000);
        assert_eq!(c.max_concurrent, 20);
        assert_eq!(c.query_ingesters_within.to_string(), "13h");
        assert_eq!(c.query_store_after.to_string(), "12h");
        assert_eq!(c.max_query_expression_size_bytes, 65536);
        assert_eq!(c.max_query_expression_depth, 500);
        assert!(c.validate().is_ok());
        let too_deep = QuerierConfig {
            max_query_expression_depth: MAX_SUPPORTED_DEPTH + 1,
            ..QuerierConfig::default()
        };
        assert_eq!(
            too_deep.validate().unwrap_err().key,
            "max_query_expression_depth"
        );
        let gap = QuerierConfig {
            query_store_after: ConfigDuration::from_secs(14 * 3600),
            ..QuerierConfig::default()
        };
        assert_eq!(gap.validate().unwrap_err().key, "query_store_after");
        let all_from_store = QuerierConfig {
            query_store_after: ConfigDuration::from_secs(0),
            ..QuerierConfig::default()
        };
        assert!(all_from_store.validate().is_ok());
    }

    #[test]
    fn reads_partial_json_and_refuses_unknown_keys() {
        let c: QuerierConfig =
            serde_json::from_str(r#"{"timeout":"30s","ingester_client":{"timeout":"10s"}}"#)
                .unwrap();
        assert_eq!(c.timeout, ConfigDuration::from_secs(30));
        assert_eq!(c.ingester_client.timeout, ConfigDuration::from_secs(10));
        assert_eq!(c.lookback_delta, ConfigDuration::from_secs(300));
        assert!(serde_json::from_str::<QuerierConfig>(r#"{"timeuot":"30s"}"#).is_err());
        let zero: QuerierConfig = serde_json::from_str(r#"{"timeout":"0s"}"#).unwrap();
        assert_eq!(zero.validate().unwrap_err().key, "timeout");
    }
}
