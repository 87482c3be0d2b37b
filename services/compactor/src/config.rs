//! The `compactor` config section (Mimir's key names where Mimir has the
//! setting).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_model::{parse_duration, ConfigDuration};

/// Mimir's `compactor` block.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactorConfig {
    pub block_ranges: BlockRanges,
    pub data_dir: String,
    pub compaction_interval: ConfigDuration,
    pub deletion_delay: ConfigDuration,
    pub partial_block_deletion_delay: ConfigDuration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            block_ranges: BlockRanges(vec![
                ConfigDuration::from_secs(2 * 3600),
                ConfigDuration::from_secs(12 * 3600),
                ConfigDuration::from_secs(24 * 3600),
            ]),
            data_dir: "./data/compactor".to_string(),
            compaction_interval: ConfigDuration::from_secs(3600),
            deletion_delay: ConfigDuration::from_secs(12 * 3600),
            partial_block_deletion_delay: ConfigDuration::from_secs(24 * 3600),
        }
    }
}

/// A config value that cannot be used, with its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for compactor.{key}: {reason}")]
pub struct CompactorConfigError {
    pub key: &'static str,
    pub value: String,
    pub reason: String,
}

impl CompactorConfig {
    pub fn validate(&self) -> Result<(), CompactorConfigError> {
        let ranges = &self.block_ranges.0;
        let bad = |key, reason: &str| CompactorConfigError {
            key,
            value: match key {
                "block_ranges" => self.block_ranges.to_string(),
                "data_dir" => self.data_dir.clone(),
                _ => self.compaction_interval.to_string(),
            },
            reason: reason.to_string(),
        };
        if ranges.is_empty() {
            return Err(bad("block_ranges", "needs at least one range"));
        }
        if ranges.iter().any(|r| r.as_millis_i64() <= 0) {
            return Err(bad("block_ranges", "every range must be positive"));
        }
        // Each level's windows must be made of whole windows of the level
        // below, or blocks of one level would straddle the next level's windows.
        for pair in ranges.windows(2) {
            let (small, large) = (pair[0].as_millis_i64(), pair[1].as_millis_i64());
            if large <= small || large % small != 0 {
                return Err(bad(
                    "block_ranges",
                    "each range must be a multiple of the one before it, and larger",
                ));
            }
        }
        if self.data_dir.is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if self.compaction_interval.0.is_zero() {
            return Err(bad("compaction_interval", "must be positive"));
        }
        Ok(())
    }

    /// The ranges in milliseconds.
    pub fn ranges_ms(&self) -> Vec<i64> {
        self.block_ranges
            .0
            .iter()
            .map(ConfigDuration::as_millis_i64)
            .collect()
    }
}

/// Durations written as one comma-separated string (`2h,12h,1d`), so the
/// setting is a single flag; a YAML list of durations is accepted too.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct BlockRanges(pub Vec<ConfigDuration>);

impl fmt::Display for BlockRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl fmt::Debug for BlockRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for BlockRanges {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlockRanges {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let items: Vec<String> = match Raw::deserialize(d)? {
            Raw::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            Raw::Many(v) => v,
        };
        items
            .iter()
            .map(|s| parse_duration(s).map(ConfigDuration))
            .collect::<Result<Vec<_>, _>>()
            .map(BlockRanges)
            .map_err(serde::de::Error::custom)
    }
}

impl BlockRanges {
    pub fn from_durations(ranges: &[Duration]) -> Self {
        Self(ranges.iter().copied().map(ConfigDuration).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_mimirs_and_validate() {
        let c = CompactorConfig::default();
        c.validate().unwrap();
        assert_eq!(c.ranges_ms(), vec![7_200_000, 43_200_000, 86_400_000]);
        assert_eq!(c.deletion_delay.0.as_secs(), 12 * 3600);
    }

    #[test]
    fn ranges_read_as_a_string_or_a_list() {
        let c: CompactorConfig = serde_yaml_like("block_ranges: 2m,6m, 12m");
        assert_eq!(c.ranges_ms(), vec![120_000, 360_000, 720_000]);
        let c: CompactorConfig =
            serde_json::from_str(r#"{"block_ranges": ["2h", "12h"]}"#).unwrap();
        assert_eq!(c.ranges_ms(), vec![7_200_000, 43_200_000]);
        assert_eq!(
            serde_json::to_value(&c).unwrap()["block_ranges"],
            serde_json::json!("2h,12h")
        );
        assert!(serde_json::from_str::<CompactorConfig>(r#"{"block_ranges": "2x"}"#).is_err());
    }

    /// `key: value` as the JSON object the YAML would give.
    fn serde_yaml_like(line: &str) -> CompactorConfig {
        let (k, v) = line.split_once(": ").unwrap();
        serde_json::from_value(serde_json::json!({ k: v })).unwrap()
    }

    #[test]
    fn ranges_must_nest() {
        let mut c = CompactorConfig {
            block_ranges: BlockRanges::from_durations(&[
                Duration::from_secs(7200),
                Duration::from_secs(5 * 3600),
            ]),
            ..Default::default()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(err.key, "block_ranges");
        assert!(err.to_string().contains("2h,5h"), "{err}");
        c.block_ranges = BlockRanges(Vec::new());
        assert!(c.validate().is_err());
        c.block_ranges = BlockRanges::from_durations(&[Duration::from_secs(120)]);
        c.validate().unwrap();
    }
}
