//! The HA tracker: de-duplicates pushes from Prometheus HA pairs. Each pair
//! (a *cluster*, named by the `ha_cluster_label` of its series) has one
//! *elected replica* (its `ha_replica_label`); pushes from the other replicas
//! are dropped. The election lives in the KV store, one key per tenant and
//! cluster, written by compare-and-swap, so every distributor agrees on it.
//!
//! Mimir's algorithm, and its reasoning for why the local cache is safe: a
//! distributor that last saw the elected replica's `received_at` less than
//! `ha_tracker_failover_timeout` ago knows no one can have failed over since
//! (a failover needs the stored `received_at` to be that old, and the stored
//! one is never older than the cached one), so it decides from its cache
//! without a KV round trip. The elected replica's `received_at` is refreshed
//! in the KV store once it is older than `ha_tracker_update_timeout` plus a
//! per-process jitter, by one push at a time. Only a push that finds its
//! cache entry older than the failover timeout (or no entry) waits for the
//! KV store, where the decision is taken again on the stored value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use strata_model::ConfigDuration;
use strata_ring::{KvError, KvStore, KvStoreExt, KvValue};

/// `distributor.ha_tracker`, Mimir's keys. The KV store is the rings' (under
/// `<prefix>ha-tracker/`), so a cluster with an etcd ring needs nothing more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaTrackerConfig {
    pub enable_ha_tracker: bool,
    pub ha_tracker_update_timeout: ConfigDuration,
    pub ha_tracker_update_timeout_jitter_max: ConfigDuration,
    pub ha_tracker_failover_timeout: ConfigDuration,
}

impl Default for HaTrackerConfig {
    fn default() -> Self {
        Self {
            enable_ha_tracker: false,
            ha_tracker_update_timeout: ConfigDuration::from_secs(15),
            ha_tracker_update_timeout_jitter_max: ConfigDuration::from_secs(5),
            ha_tracker_failover_timeout: ConfigDuration::from_secs(30),
        }
    }
}

impl HaTrackerConfig {
    /// The failover timeout must exceed the longest refresh interval, or the
    /// elected replica could be failed over between two of its refreshes.
    pub fn validate(&self) -> Result<(), String> {
        let refresh =
            self.ha_tracker_update_timeout.0 + self.ha_tracker_update_timeout_jitter_max.0;
        if self.ha_tracker_failover_timeout.0 <= refresh {
            return Err(format!(
                "{} must be greater than ha_tracker_update_timeout + \
                 ha_tracker_update_timeout_jitter_max ({})",
                self.ha_tracker_failover_timeout,
                ConfigDuration(refresh)
            ));
        }
        Ok(())
    }
}

/// How long an entry may go without updates before [`HaTracker::clean_up`]
/// deletes it (Mimir's 30 minutes), so clusters that went away stop counting
/// against `ha_max_clusters`.
pub(crate) const CLEANUP_AFTER: Duration = Duration::from_secs(30 * 60);

/// The stored election of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDesc {
    /// The elected replica.
    pub replica: String,
    /// When a push from it was last recorded, Unix ms.
    pub received_at: i64,
    /// When it was elected, Unix ms.
    pub elected_at: i64,
    /// How many times the cluster's elected replica changed.
    pub elected_changes: u64,
}

impl KvValue for ReplicaDesc {
    fn decode_value(key: &str, bytes: &[u8]) -> Result<Self, KvError> {
        serde_json::from_slice(bytes).map_err(|source| KvError::Decode {
            key: key.to_string(),
            source,
        })
    }
    fn encode_value(&self) -> Result<Vec<u8>, KvError> {
        serde_json::to_vec(self).map_err(|source| KvError::Encode { source })
    }
}

/// What to do with a push from an HA replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaDecision {
    /// The replica is the elected one: store the push.
    Accept,
    /// Another replica is elected: drop the push.
    Deduplicated { elected: String },
}

/// Why the tracker could not decide.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error(
        "too many HA clusters for this tenant: the limit is {limit} (ha_max_clusters), \
         cluster {cluster:?} would be one more"
    )]
    TooManyClusters { cluster: String, limit: usize },
    #[error("the HA tracker could not read or write its KV store: {0}")]
    Kv(#[from] KvError),
}

/// One row of `GET /distributor/ha_tracker`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub tenant: String,
    pub cluster: String,
    #[serde(flatten)]
    pub desc: ReplicaDesc,
}

#[derive(Debug)]
struct Cached {
    desc: ReplicaDesc,
    /// A push is refreshing this entry in the KV store; others need not.
    refreshing: bool,
}

#[derive(Debug)]
struct HaMetrics {
    elected_replica_changes: IntCounterVec,
    elected_replica_timestamp: GaugeVec,
    kv_store_cas: IntCounterVec,
    cleaned_up: IntCounterVec,
}

impl HaMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let elected_replica_changes = IntCounterVec::new(
            Opts::new(
                "strata_ha_tracker_elected_replica_changes_total",
                "Elections this distributor wrote: a cluster's first elected replica, and every failover to another.",
            ),
            &["tenant", "cluster"],
        )?;
        let elected_replica_timestamp = GaugeVec::new(
            Opts::new(
                "strata_ha_tracker_elected_replica_timestamp_seconds",
                "When the elected replica of a cluster was last recorded as sending, as this distributor last saw it (Unix seconds).",
            ),
            &["tenant", "cluster"],
        )?;
        let kv_store_cas = IntCounterVec::new(
            Opts::new(
                "strata_ha_tracker_kv_store_cas_total",
                "Compare-and-swap operations on the HA tracker's KV store, by outcome (written, unchanged, failed).",
            ),
            &["outcome"],
        )?;
        let cleaned_up = IntCounterVec::new(
            Opts::new(
                "strata_ha_tracker_replicas_cleaned_up_total",
                "Cluster entries deleted from the KV store after 30 minutes without updates.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(elected_replica_changes.clone()))?;
        registry.register(Box::new(elected_replica_timestamp.clone()))?;
        registry.register(Box::new(kv_store_cas.clone()))?;
        registry.register(Box::new(cleaned_up.clone()))?;
        Ok(Self {
            elected_replica_changes,
            elected_replica_timestamp,
            kv_store_cas,
            cleaned_up,
        })
    }

    fn cas(&self, outcome: &str) {
        self.kv_store_cas.with_label_values(&[outcome]).inc();
    }
}

/// See the module's documentation. One per distributor.
#[derive(Debug)]
pub struct HaTracker {
    kv: Arc<dyn KvStore>,
    /// `<kv prefix>ha-tracker/`.
    prefix: String,
    /// The update timeout plus this process's jitter, in ms.
    update_after_ms: i64,
    failover_ms: i64,
    /// Tenant → cluster → the election as last seen.
    cache: Mutex<HashMap<String, HashMap<String, Cached>>>,
    metrics: HaMetrics,
}

impl HaTracker {
    /// A tracker keeping its elections in `kv` under `<kv_prefix>ha-tracker/`.
    pub fn new(
        config: &HaTrackerConfig,
        kv: Arc<dyn KvStore>,
        kv_prefix: &str,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let jitter_max = config.ha_tracker_update_timeout_jitter_max.0.as_millis() as i64;
        let jitter = if jitter_max > 0 {
            rand::rng().random_range(0..jitter_max)
        } else {
            0
        };
        Ok(Self {
            kv,
            prefix: format!("{kv_prefix}ha-tracker/"),
            update_after_ms: config.ha_tracker_update_timeout.0.as_millis() as i64 + jitter,
            failover_ms: config.ha_tracker_failover_timeout.0.as_millis() as i64,
            cache: Mutex::new(HashMap::new()),
            metrics: HaMetrics::new(registry)?,
        })
    }

    fn key(&self, tenant: &str, cluster: &str) -> String {
        format!("{}{tenant}/{}", self.prefix, escape_cluster(cluster))
    }

    /// Decides a push of `replica` of `cluster` for `tenant` at `now_ms`.
    /// `max_clusters` (0: no limit) bounds the tenant's clusters.
    pub async fn check(
        &self,
        tenant: &str,
        cluster: &str,
        replica: &str,
        now_ms: i64,
        max_clusters: usize,
    ) -> Result<HaDecision, HaError> {
        enum Next {
            Decided(HaDecision),
            Refresh,
            Consult,
            Unknown,
        }
        let next = {
            let mut cache = self.cache.lock();
            match cache.get_mut(tenant).and_then(|c| c.get_mut(cluster)) {
                None => Next::Unknown,
                Some(entry) => {
                    let age = now_ms - entry.desc.received_at;
                    if age >= self.failover_ms {
                        Next::Consult
                    } else if entry.desc.replica != replica {
                        Next::Decided(HaDecision::Deduplicated {
                            elected: entry.desc.replica.clone(),
                        })
                    } else if age < self.update_after_ms || entry.refreshing {
                        Next::Decided(HaDecision::Accept)
                    } else {
                        entry.refreshing = true;
                        Next::Refresh
                    }
                }
            }
        };
        match next {
            Next::Decided(decision) => Ok(decision),
            Next::Refresh => {
                // The elected replica is accepted whatever the refresh finds
                // out: within the failover timeout no one can have replaced it.
                match self.consult(tenant, cluster, replica, now_ms).await {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(tenant, cluster, error = %e, "refreshing the elected HA replica failed; it stays elected until the failover timeout");
                        self.clear_refreshing(tenant, cluster);
                    }
                }
                Ok(HaDecision::Accept)
            }
            Next::Consult => self.consult(tenant, cluster, replica, now_ms).await,
            Next::Unknown => {
                self.load_tenant(tenant).await?;
                let known = {
                    let cache = self.cache.lock();
                    cache
                        .get(tenant)
                        .map_or((0, false), |c| (c.len(), c.contains_key(cluster)))
                };
                if max_clusters > 0 && !known.1 && known.0 >= max_clusters {
                    return Err(HaError::TooManyClusters {
                        cluster: cluster.to_string(),
                        limit: max_clusters,
                    });
                }
                self.consult(tenant, cluster, replica, now_ms).await
            }
        }
    }

    /// Takes the decision on the stored value, writing the refresh or the
    /// election it implies, and caches what is stored.
    async fn consult(
        &self,
        tenant: &str,
        cluster: &str,
        replica: &str,
        now_ms: i64,
    ) -> Result<HaDecision, HaError> {
        let key = self.key(tenant, cluster);
        let failover_ms = self.failover_ms;
        let update_after_ms = self.update_after_ms;
        let mut seen: Option<ReplicaDesc> = None;
        let mut elected_here = false;
        let written = self
            .kv
            .cas::<ReplicaDesc, _>(&key, |current| {
                // A conflicting write makes the loop call this again.
                seen = None;
                elected_here = false;
                let next = match current {
                    None => Some(ReplicaDesc {
                        replica: replica.to_string(),
                        received_at: now_ms,
                        elected_at: now_ms,
                        elected_changes: 0,
                    }),
                    Some(desc) if desc.replica == replica => {
                        // Refresh only when due: many distributors may
                        // receive the elected replica.
                        let due = now_ms - desc.received_at >= update_after_ms;
                        seen = Some(desc.clone());
                        due.then_some(ReplicaDesc {
                            received_at: now_ms,
                            ..desc
                        })
                    }
                    Some(desc) if now_ms - desc.received_at >= failover_ms => Some(ReplicaDesc {
                        replica: replica.to_string(),
                        received_at: now_ms,
                        elected_at: now_ms,
                        elected_changes: desc.elected_changes + 1,
                    }),
                    Some(desc) => {
                        seen = Some(desc);
                        None
                    }
                };
                if let Some(next) = &next {
                    elected_here = seen.as_ref().is_none_or(|s| s.replica != next.replica);
                }
                next
            })
            .await;
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                self.metrics.cas("failed");
                return Err(e.into());
            }
        };
        let stored = match written {
            Some(desc) => {
                self.metrics.cas("written");
                if elected_here {
                    self.metrics
                        .elected_replica_changes
                        .with_label_values(&[tenant, cluster])
                        .inc();
                    tracing::info!(tenant, cluster, replica, "elected HA replica");
                }
                desc
            }
            None => {
                self.metrics.cas("unchanged");
                match seen {
                    Some(desc) => desc,
                    // The closure declines only after seeing a value.
                    None => return Ok(HaDecision::Accept),
                }
            }
        };
        let decision = if stored.replica == replica {
            HaDecision::Accept
        } else {
            HaDecision::Deduplicated {
                elected: stored.replica.clone(),
            }
        };
        self.cache_entry(tenant, cluster, stored);
        Ok(decision)
    }

    fn cache_entry(&self, tenant: &str, cluster: &str, desc: ReplicaDesc) {
        self.metrics
            .elected_replica_timestamp
            .with_label_values(&[tenant, cluster])
            .set(desc.received_at as f64 / 1000.0);
        self.cache
            .lock()
            .entry(tenant.to_string())
            .or_default()
            .insert(
                cluster.to_string(),
                Cached {
                    desc,
                    refreshing: false,
                },
            );
    }

    fn clear_refreshing(&self, tenant: &str, cluster: &str) {
        if let Some(entry) = self
            .cache
            .lock()
            .get_mut(tenant)
            .and_then(|c| c.get_mut(cluster))
        {
            entry.refreshing = false;
        }
    }

    /// Reads every cluster of `tenant` into the cache (first push of a
    /// cluster this distributor has not seen: the limit needs them all).
    async fn load_tenant(&self, tenant: &str) -> Result<(), HaError> {
        let prefix = format!("{}{tenant}/", self.prefix);
        for (key, value) in self.kv.list_prefix(&prefix).await? {
            let Some(cluster) = key.strip_prefix(&prefix).map(unescape_cluster) else {
                continue;
            };
            match ReplicaDesc::decode_value(&key, &value.value) {
                Ok(desc) => self.cache_entry(tenant, &cluster, desc),
                // A corrupt entry is skipped here; a push for that cluster
                // reports it (the CAS refuses to overwrite it).
                Err(e) => tracing::warn!(key, error = %e, "skipping an invalid HA tracker entry"),
            }
        }
        Ok(())
    }

    /// Every cluster of every tenant, as stored now, for the status page.
    pub async fn clusters(&self) -> Result<Vec<ClusterStatus>, HaError> {
        let mut rows = Vec::new();
        for (key, value) in self.kv.list_prefix(&self.prefix).await? {
            let Some((tenant, cluster)) = key
                .strip_prefix(&self.prefix)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if let Ok(desc) = ReplicaDesc::decode_value(&key, &value.value) {
                rows.push(ClusterStatus {
                    tenant: tenant.to_string(),
                    cluster: unescape_cluster(cluster),
                    desc,
                });
            }
        }
        Ok(rows)
    }

    /// Deletes the entries not updated for [`CLEANUP_AFTER`] (and forgets
    /// them here). Conditional on the revision read, so an entry refreshed in
    /// the meantime stays. Returns how many were deleted.
    pub async fn clean_up(&self, now_ms: i64) -> Result<usize, HaError> {
        let cutoff = now_ms - CLEANUP_AFTER.as_millis() as i64;
        let mut deleted = 0;
        for (key, value) in self.kv.list_prefix(&self.prefix).await? {
            let Some((tenant, cluster)) = key
                .strip_prefix(&self.prefix)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let Ok(desc) = ReplicaDesc::decode_value(&key, &value.value) else {
                continue;
            };
            if desc.received_at >= cutoff {
                continue;
            }
            if self.kv.compare_and_delete(&key, value.revision).await? {
                deleted += 1;
                let cluster = unescape_cluster(cluster);
                self.metrics.cleaned_up.with_label_values(&[tenant]).inc();
                let _ = self
                    .metrics
                    .elected_replica_timestamp
                    .remove_label_values(&[tenant, &cluster]);
                if let Some(clusters) = self.cache.lock().get_mut(tenant) {
                    clusters.remove(&cluster);
                }
            }
        }
        Ok(deleted)
    }
}

/// A cluster name is a label value: any string. `/` separates the key's
/// parts, so it (and `%`, the escape) is percent-encoded.
fn escape_cluster(cluster: &str) -> String {
    cluster.replace('%', "%25").replace('/', "%2F")
}

fn unescape_cluster(escaped: &str) -> String {
    escaped.replace("%2F", "/").replace("%25", "%")
}

/// The cluster and replica of a push, from its first series (Mimir's rule:
/// the first series decides for the whole request). `None` unless both
/// labels are there and non-empty.
pub(crate) fn find_ha_labels<'a>(
    labels: &'a [strata_proto::prometheus::Label],
    cluster_label: &str,
    replica_label: &str,
) -> Option<(&'a str, &'a str)> {
    let value = |name: &str| {
        labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
            .filter(|v| !v.is_empty())
    };
    Some((value(cluster_label)?, value(replica_label)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ring::MemoryKv;

    const FAILOVER: i64 = 30_000;

    fn tracker(kv: Arc<dyn KvStore>) -> HaTracker {
        let config = HaTrackerConfig {
            enable_ha_tracker: true,
            ha_tracker_update_timeout_jitter_max: ConfigDuration::from_secs(0),
            ..Default::default()
        };
        HaTracker::new(&config, kv, "strata/", &Registry::new()).unwrap()
    }

    fn dedup(elected: &str) -> HaDecision {
        HaDecision::Deduplicated {
            elected: elected.to_string(),
        }
    }

    #[tokio::test]
    async fn first_replica_is_elected_and_the_other_dropped() {
        let t = tracker(Arc::new(MemoryKv::new()));
        assert_eq!(
            t.check("t", "c1", "r1", 1_000, 0).await.unwrap(),
            HaDecision::Accept
        );
        assert_eq!(
            t.check("t", "c1", "r2", 2_000, 0).await.unwrap(),
            dedup("r1")
        );
        assert_eq!(
            t.check("t", "c1", "r1", 3_000, 0).await.unwrap(),
            HaDecision::Accept
        );
        // Clusters and tenants are independent.
        assert_eq!(
            t.check("t", "c2", "r2", 3_000, 0).await.unwrap(),
            HaDecision::Accept
        );
        assert_eq!(
            t.check("u", "c1", "r2", 3_000, 0).await.unwrap(),
            HaDecision::Accept
        );
    }

    #[tokio::test]
    async fn fails_over_once_the_elected_replica_is_silent_for_the_timeout() {
        let t = tracker(Arc::new(MemoryKv::new()));
        t.check("t", "c", "r1", 0, 0).await.unwrap();
        assert_eq!(
            t.check("t", "c", "r2", FAILOVER - 1, 0).await.unwrap(),
            dedup("r1")
        );
        assert_eq!(
            t.check("t", "c", "r2", FAILOVER, 0).await.unwrap(),
            HaDecision::Accept
        );
        // Now r1 is the one dropped, even though it comes back.
        assert_eq!(
            t.check("t", "c", "r1", FAILOVER + 1, 0).await.unwrap(),
            dedup("r2")
        );
    }

    #[tokio::test]
    async fn two_distributors_agree_through_the_kv_store() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let a = tracker(kv.clone());
        let b = tracker(kv.clone());
        assert_eq!(
            a.check("t", "c", "r1", 0, 0).await.unwrap(),
            HaDecision::Accept
        );
        // b never saw r1 but reads the election.
        assert_eq!(b.check("t", "c", "r2", 10, 0).await.unwrap(), dedup("r1"));
        // r1 keeps sending through a, which refreshes the stored time, so b
        // (whose cache goes stale) does not fail over.
        for now in (0..=60_000).step_by(5_000) {
            assert_eq!(
                a.check("t", "c", "r1", now, 0).await.unwrap(),
                HaDecision::Accept,
                "{now}"
            );
            assert_eq!(
                b.check("t", "c", "r2", now, 0).await.unwrap(),
                dedup("r1"),
                "{now}"
            );
        }
        // r1 stops: b fails over once the stored time is old enough.
        assert_eq!(
            b.check("t", "c", "r2", 60_000 + FAILOVER - 1, 0)
                .await
                .unwrap(),
            dedup("r1")
        );
        assert_eq!(
            b.check("t", "c", "r2", 60_000 + FAILOVER, 0).await.unwrap(),
            HaDecision::Accept
        );
        // a learns it the first time its cache entry is too old to trust.
        assert_eq!(
            a.check("t", "c", "r1", 60_000 + FAILOVER + 1, 0)
                .await
                .unwrap(),
            dedup("r2")
        );
    }

    #[tokio::test]
    async fn the_elected_replica_refreshes_the_kv_store_at_most_once_per_update_timeout() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let t = tracker(kv.clone());
        let key = t.key("t", "c");
        t.check("t", "c", "r1", 0, 0).await.unwrap();
        let first = kv.get(&key).await.unwrap().unwrap().revision;
        for now in (0..15_000).step_by(1_000) {
            t.check("t", "c", "r1", now, 0).await.unwrap();
        }
        assert_eq!(kv.get(&key).await.unwrap().unwrap().revision, first);
        t.check("t", "c", "r1", 15_000, 0).await.unwrap();
        let (desc, _) = kv.get_value::<ReplicaDesc>(&key).await.unwrap().unwrap();
        assert_eq!(desc.received_at, 15_000);
    }

    #[tokio::test]
    async fn a_tenant_over_its_cluster_limit_is_refused_naming_it() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let a = tracker(kv.clone());
        a.check("t", "c1", "r", 0, 2).await.unwrap();
        a.check("t", "c2", "r", 0, 2).await.unwrap();
        // Another distributor counts the clusters stored, not only its own.
        let b = tracker(kv);
        let err = b.check("t", "c3", "r", 0, 2).await.unwrap_err();
        assert!(
            matches!(err, HaError::TooManyClusters { limit: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("ha_max_clusters"), "{err}");
        // Known clusters still work; other tenants have their own count.
        assert_eq!(
            b.check("t", "c1", "r", 1, 2).await.unwrap(),
            HaDecision::Accept
        );
        assert_eq!(
            b.check("u", "c3", "r", 1, 2).await.unwrap(),
            HaDecision::Accept
        );
    }

    #[tokio::test]
    async fn cluster_names_with_slashes_stay_apart_and_show_on_the_status_page() {
        let t = tracker(Arc::new(MemoryKv::new()));
        t.check("t", "a/b", "r1", 0, 0).await.unwrap();
        t.check("t", "a%2Fb", "r2", 0, 0).await.unwrap();
        let mut rows: Vec<(String, String)> = t
            .clusters()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.cluster, r.desc.replica))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            [
                ("a%2Fb".to_string(), "r2".to_string()),
                ("a/b".to_string(), "r1".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn clusters_silent_for_30_minutes_are_cleaned_up() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let t = tracker(kv.clone());
        t.check("t", "old", "r", 0, 1).await.unwrap();
        t.check("u", "new", "r", 20 * 60_000, 0).await.unwrap();
        let now = 31 * 60_000;
        assert_eq!(t.clean_up(now).await.unwrap(), 1);
        let left: Vec<String> = t
            .clusters()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.cluster)
            .collect();
        assert_eq!(left, ["new"]);
        // The freed slot can be used by another cluster.
        assert_eq!(
            t.check("t", "other", "r", now, 1).await.unwrap(),
            HaDecision::Accept
        );
    }

    #[tokio::test]
    async fn a_corrupt_entry_is_an_error_not_overwritten() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let t = tracker(kv.clone());
        kv.put(&t.key("t", "c"), b"{oops".to_vec()).await.unwrap();
        let err = t.check("t", "c", "r", 0, 0).await.unwrap_err();
        assert!(matches!(err, HaError::Kv(KvError::Decode { .. })), "{err}");
        assert_eq!(
            kv.get(&t.key("t", "c")).await.unwrap().unwrap().value,
            b"{oops"
        );
    }

    #[test]
    fn ha_labels_come_from_the_first_series_and_need_both() {
        use strata_proto::prometheus::Label;
        let l = |n: &str, v: &str| Label {
            name: n.into(),
            value: v.into(),
        };
        let both = [
            l("__name__", "up"),
            l("cluster", "c"),
            l("__replica__", "r"),
        ];
        assert_eq!(
            find_ha_labels(&both, "cluster", "__replica__"),
            Some(("c", "r"))
        );
        assert_eq!(find_ha_labels(&both[..2], "cluster", "__replica__"), None);
        let empty = [l("cluster", "c"), l("__replica__", "")];
        assert_eq!(find_ha_labels(&empty, "cluster", "__replica__"), None);
    }

    #[test]
    fn failover_must_exceed_the_refresh_interval() {
        assert!(HaTrackerConfig::default().validate().is_ok());
        let bad = HaTrackerConfig {
            ha_tracker_failover_timeout: ConfigDuration::from_secs(20),
            ..Default::default()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(
            err,
            "20s must be greater than ha_tracker_update_timeout + ha_tracker_update_timeout_jitter_max (20s)"
        );
    }
}
