//! What the ring key holds: one [`InstanceDesc`] per registered instance.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::KvError;

/// Where an instance is in its life. Transitions are PENDING → JOINING →
/// ACTIVE → LEAVING; an instance that restarts may go back to JOINING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    /// Registered, owns no tokens yet.
    Pending,
    /// Owns tokens but is not ready (for example, an ingester replaying its WAL):
    /// writes extend past it, reads skip it.
    Joining,
    /// Takes writes and serves reads.
    Active,
    /// Shutting down: still serves reads, writes extend past it.
    Leaving,
}

impl InstanceState {
    /// All states, in lifecycle order (for per-state metrics).
    pub const ALL: [InstanceState; 4] = [
        InstanceState::Pending,
        InstanceState::Joining,
        InstanceState::Active,
        InstanceState::Leaving,
    ];

    /// The upper-case name used in the KV and on the `/ring` page.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "PENDING",
            InstanceState::Joining => "JOINING",
            InstanceState::Active => "ACTIVE",
            InstanceState::Leaving => "LEAVING",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance (ingester, store-gateway, ruler…) registered in a ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceDesc {
    /// Unique instance ID (the key of [`RingDesc::instances`]).
    #[serde(default)]
    pub id: String,
    /// `host:port` its gRPC server listens on.
    #[serde(default)]
    pub addr: String,
    /// Availability zone; empty when zones are not used.
    #[serde(default)]
    pub zone: String,
    /// Lifecycle state.
    pub state: InstanceState,
    /// The tokens it owns, sorted ascending, no duplicates.
    #[serde(default)]
    pub tokens: Vec<u32>,
    /// When it first registered, in seconds since the Unix epoch.
    #[serde(default)]
    pub registered_timestamp: i64,
    /// Its last heartbeat, in seconds since the Unix epoch.
    #[serde(default)]
    pub heartbeat_timestamp: i64,
}

impl InstanceDesc {
    /// Whether the last heartbeat is at most `timeout` old at `now` (seconds).
    /// A zero timeout means heartbeats are not checked.
    pub fn heartbeat_fresh(&self, now: i64, timeout_secs: u64) -> bool {
        timeout_secs == 0
            || now.saturating_sub(self.heartbeat_timestamp)
                <= i64::try_from(timeout_secs).unwrap_or(i64::MAX)
    }
}

/// The whole ring, as stored (JSON) under the ring key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingDesc {
    /// Instances by ID.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceDesc>,
}

impl RingDesc {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes as JSON for the KV store.
    pub fn encode(&self) -> Result<Vec<u8>, KvError> {
        serde_json::to_vec(self).map_err(|source| KvError::Encode { source })
    }

    /// Decodes what [`RingDesc::encode`] wrote and normalises it: each
    /// instance's `id` is its map key and its tokens are sorted and
    /// de-duplicated. `key` only names the value in the error.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, KvError> {
        let mut desc: RingDesc =
            serde_json::from_slice(bytes).map_err(|source| KvError::Decode {
                key: key.to_string(),
                source,
            })?;
        desc.normalize();
        Ok(desc)
    }

    fn normalize(&mut self) {
        for (id, instance) in &mut self.instances {
            if instance.id != *id {
                instance.id.clone_from(id);
            }
            if !instance.tokens.is_sorted_by(|a, b| a < b) {
                instance.tokens.sort_unstable();
                instance.tokens.dedup();
            }
        }
    }

    /// Every token owned by an instance other than `except`.
    pub fn tokens_taken_by_others(&self, except: &str) -> std::collections::HashSet<u32> {
        self.instances
            .values()
            .filter(|i| i.id != except)
            .flat_map(|i| i.tokens.iter().copied())
            .collect()
    }

    /// Removes the instances whose heartbeat is older than `max_age_secs` at
    /// `now`, except `keep`; returns their IDs.
    pub fn remove_stale(&mut self, now: i64, max_age_secs: u64, keep: &str) -> Vec<String> {
        let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
        let stale: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.id != keep && now.saturating_sub(i.heartbeat_timestamp) > max_age)
            .map(|i| i.id.clone())
            .collect();
        for id in &stale {
            self.instances.remove(id);
        }
        stale
    }
}

/// Seconds since the Unix epoch by the local clock (0 if the clock is before 1970).
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_normalisation() {
        let mut desc = RingDesc::new();
        desc.instances.insert(
            "ing-1".into(),
            InstanceDesc {
                id: "ing-1".into(),
                addr: "10.0.0.1:9095".into(),
                zone: "a".into(),
                state: InstanceState::Active,
                tokens: vec![1, 5, 9],
                registered_timestamp: 10,
                heartbeat_timestamp: 20,
            },
        );
        let bytes = desc.encode().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"ACTIVE\""), "{text}");
        assert_eq!(RingDesc::decode("k", &bytes).unwrap(), desc);

        let messy = br#"{"instances":{"x":{"state":"JOINING","tokens":[9,1,9,4],"extra":1}}}"#;
        let decoded = RingDesc::decode("k", messy).unwrap();
        let x = &decoded.instances["x"];
        assert_eq!(x.id, "x");
        assert_eq!(x.tokens, vec![1, 4, 9]);
        assert_eq!(x.state, InstanceState::Joining);
    }

    #[test]
    fn corrupt_json_is_an_error() {
        for bad in [
            &b"{"[..],
            b"\"text\"",
            b"{\"instances\":[1]}",
            b"{\"instances\":{\"x\":{\"state\":\"WEIRD\"}}}",
            b"\xff",
        ] {
            let err = RingDesc::decode("ring", bad).unwrap_err();
            assert!(err.to_string().contains("ring"), "{err}");
        }
    }

    #[test]
    fn stale_instances_are_removed() {
        let mut desc = RingDesc::new();
        for (id, hb) in [("old", 100), ("fresh", 990), ("me", 0)] {
            desc.instances.insert(
                id.into(),
                InstanceDesc {
                    id: id.into(),
                    addr: String::new(),
                    zone: String::new(),
                    state: InstanceState::Active,
                    tokens: vec![],
                    registered_timestamp: 0,
                    heartbeat_timestamp: hb,
                },
            );
        }
        assert_eq!(desc.remove_stale(1000, 60, "me"), vec!["old".to_string()]);
        assert_eq!(desc.instances.len(), 2);
    }
}
