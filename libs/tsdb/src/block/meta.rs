//! `meta.json`: what Prometheus writes (ULID, time range, stats, compaction,
//! version 1) plus the `thanos` section Thanos and Mimir tools expect in object
//! storage. Unknown fields are ignored on read, so blocks of newer Prometheus,
//! Thanos and Mimir versions open.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ulid::Ulid;

/// The external label that names a block's tenant (Cortex's and Mimir's
/// `__org_id__`).
pub const TENANT_LABEL: &str = "__org_id__";

/// The only `meta.json` version Prometheus has defined.
pub const META_VERSION: u32 = 1;

/// A block's `meta.json`. The time range is `[min_time, max_time)`: `max_time`
/// is exclusive, as in Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: BlockCompaction,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
}

impl BlockMeta {
    /// The tenant recorded in the Thanos external labels, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.thanos
            .as_ref()
            .and_then(|t| t.labels.get(TENANT_LABEL))
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    #[serde(default)]
    pub num_samples: u64,
    #[serde(default)]
    pub num_series: u64,
    #[serde(default)]
    pub num_chunks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockCompaction {
    #[serde(default)]
    pub level: u32,
    #[serde(default)]
    pub sources: Vec<Ulid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
}

impl Default for BlockCompaction {
    fn default() -> Self {
        Self {
            level: 1,
            sources: Vec::new(),
            parents: Vec::new(),
        }
    }
}

/// A parent block of a compacted block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
}

/// Thanos's additions (its `metadata.Thanos`), field names as Thanos spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// External labels; the tenant is [`TENANT_LABEL`].
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: ThanosDownsample,
    /// What produced the block, e.g. `ingester`, `compactor`.
    #[serde(default)]
    pub source: String,
    /// Names of the files under `chunks/`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ThanosFile>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosDownsample {
    /// Resolution in milliseconds; 0 for raw data.
    #[serde(default)]
    pub resolution: i64,
}

/// One file of the block, path relative to the block directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosFile {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}
