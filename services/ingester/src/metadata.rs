//! The metric metadata an ingester holds: per tenant, per metric family, the
//! distinct (type, help, unit) entries remote-write sent, each with the time
//! it was last received. Metadata is not written to the WAL (as in Mimir):
//! Prometheus re-sends all of it every `metadata_config.send_interval`
//! (1m), so a restarted ingester has it back within a minute, and the other
//! replicas answer meanwhile. Entries not received again within the retain
//! period are forgotten, which is also what bounds a tenant that stopped
//! sending.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use strata_proto::prometheus::MetricMetadata;

/// One distinct metadata entry of a metric family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    kind: i32,
    help: String,
    unit: String,
}

/// This ingester's share of a tenant's metadata limits (0: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MetadataLimits {
    pub(crate) families: usize,
    pub(crate) per_family: usize,
}

/// Why an entry was not stored: the `reason` of
/// `strata_discarded_metadata_total`, as Mimir names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataRefused {
    PerUserLimit,
    PerMetricLimit,
}

impl MetadataRefused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            MetadataRefused::PerUserLimit => "per_user_metadata_limit",
            MetadataRefused::PerMetricLimit => "per_metric_metadata_limit",
        }
    }
}

/// One tenant's metadata: per family, each entry with when it was last received.
type Families = BTreeMap<String, BTreeMap<Entry, i64>>;

/// Every tenant's metadata; entries sorted, so answers are deterministic and
/// limits pick the same entries on every replica.
#[derive(Debug, Default)]
pub(crate) struct MetadataStore {
    tenants: Mutex<HashMap<String, Families>>,
    /// When every tenant was last purged of expired entries (Unix ms).
    last_purge_ms: Mutex<i64>,
}

impl MetadataStore {
    /// Records `entries` for `tenant` as received at `now_ms`. Entries the
    /// limits leave no room for are skipped and returned with their reason.
    pub(crate) fn add(
        &self,
        tenant: &str,
        entries: Vec<MetricMetadata>,
        limits: MetadataLimits,
        now_ms: i64,
    ) -> Vec<MetadataRefused> {
        let mut refused = Vec::new();
        if entries.is_empty() {
            return refused;
        }
        let mut tenants = self.tenants.lock();
        let families = tenants.entry(tenant.to_string()).or_default();
        for m in entries {
            let entry = Entry {
                kind: m.r#type,
                help: m.help,
                unit: m.unit,
            };
            let known_families = families.len();
            let Some(family) = families.get_mut(&m.metric_family_name) else {
                if limits.families > 0 && known_families >= limits.families {
                    refused.push(MetadataRefused::PerUserLimit);
                    continue;
                }
                families.insert(m.metric_family_name, BTreeMap::from([(entry, now_ms)]));
                continue;
            };
            if let Some(seen) = family.get_mut(&entry) {
                *seen = now_ms;
            } else if limits.per_family > 0 && family.len() >= limits.per_family {
                refused.push(MetadataRefused::PerMetricLimit);
            } else {
                family.insert(entry, now_ms);
            }
        }
        refused
    }

    /// Forgets entries last received before `oldest_ms`, at most once per
    /// `every_ms` (the push path calls it; the work is one pass over every
    /// entry). Returns whether it purged.
    pub(crate) fn purge_if_due(&self, now_ms: i64, oldest_ms: i64, every_ms: i64) -> bool {
        {
            let mut last = self.last_purge_ms.lock();
            if now_ms.saturating_sub(*last) < every_ms {
                return false;
            }
            *last = now_ms;
        }
        let mut tenants = self.tenants.lock();
        tenants.retain(|_, families| {
            families.retain(|_, family| {
                family.retain(|_, seen| *seen >= oldest_ms);
                !family.is_empty()
            });
            !families.is_empty()
        });
        true
    }

    /// The tenant's entries received at or after `oldest_ms`, sorted by
    /// family name then entry: only `metric` if not empty, at most `limit`
    /// families (negative: all; 0: none, as Prometheus), at most
    /// `limit_per_metric` entries each (0 or negative: all).
    pub(crate) fn query(
        &self,
        tenant: &str,
        metric: &str,
        limit: i64,
        limit_per_metric: i64,
        oldest_ms: i64,
    ) -> Vec<MetricMetadata> {
        let tenants = self.tenants.lock();
        let Some(families) = tenants.get(tenant) else {
            return Vec::new();
        };
        let max_families = usize::try_from(limit).unwrap_or(usize::MAX);
        let per_family = match usize::try_from(limit_per_metric) {
            Ok(n) if n > 0 => n,
            _ => usize::MAX,
        };
        let selected: Box<dyn Iterator<Item = (&String, &BTreeMap<Entry, i64>)>> =
            if metric.is_empty() {
                Box::new(families.iter())
            } else {
                Box::new(families.get_key_value(metric).into_iter())
            };
        let mut out = Vec::new();
        let mut taken = 0;
        for (name, family) in selected {
            if taken >= max_families {
                break;
            }
            let live: Vec<&Entry> = family
                .iter()
                .filter(|(_, seen)| **seen >= oldest_ms)
                .map(|(entry, _)| entry)
                .take(per_family)
                .collect();
            if live.is_empty() {
                continue;
            }
            taken += 1;
            out.extend(live.into_iter().map(|e| MetricMetadata {
                r#type: e.kind,
                metric_family_name: name.clone(),
                help: e.help.clone(),
                unit: e.unit.clone(),
            }));
        }
        out
    }

    /// Metric families with metadata held for `tenant`.
    pub(crate) fn families(&self, tenant: &str) -> usize {
        self.tenants.lock().get(tenant).map_or(0, BTreeMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: i32, help: &str) -> MetricMetadata {
        MetricMetadata {
            r#type: kind,
            metric_family_name: name.to_string(),
            help: help.to_string(),
            unit: String::new(),
        }
    }

    fn names(found: &[MetricMetadata]) -> Vec<(&str, &str)> {
        found
            .iter()
            .map(|m| (m.metric_family_name.as_str(), m.help.as_str()))
            .collect()
    }

    #[test]
    fn distinct_entries_sorted_and_repeated_ones_kept_once() {
        let store = MetadataStore::default();
        let none = MetadataLimits::default();
        store.add("t", vec![entry("b", 1, "x"), entry("a", 2, "y")], none, 10);
        store.add("t", vec![entry("b", 1, "x"), entry("b", 1, "w")], none, 20);
        store.add("u", vec![entry("c", 1, "z")], none, 20);
        assert_eq!(
            names(&store.query("t", "", -1, 0, 0)),
            [("a", "y"), ("b", "w"), ("b", "x")]
        );
        assert_eq!(names(&store.query("t", "b", -1, 1, 0)), [("b", "w")]);
        assert_eq!(names(&store.query("t", "", 1, 0, 0)), [("a", "y")]);
        // Prometheus answers limit=0 with nothing.
        assert!(store.query("t", "", 0, 0, 0).is_empty());
        assert!(store.query("t", "nope", -1, 0, 0).is_empty());
        assert!(store.query("nobody", "", -1, 0, 0).is_empty());
        // Tenants are apart.
        assert_eq!(names(&store.query("u", "", -1, 0, 0)), [("c", "z")]);
    }

    #[test]
    fn limits_refuse_new_families_and_new_entries_but_refresh_known_ones() {
        let store = MetadataStore::default();
        let limits = MetadataLimits {
            families: 2,
            per_family: 1,
        };
        let refused = store.add(
            "t",
            vec![
                entry("a", 1, "x"),
                entry("b", 1, "x"),
                entry("c", 1, "x"),
                entry("a", 1, "other help"),
                entry("a", 1, "x"),
            ],
            limits,
            10,
        );
        assert_eq!(
            refused,
            [
                MetadataRefused::PerUserLimit,
                MetadataRefused::PerMetricLimit
            ]
        );
        assert_eq!(store.families("t"), 2);
        assert_eq!(
            names(&store.query("t", "", -1, 0, 0)),
            [("a", "x"), ("b", "x")]
        );
    }

    #[test]
    fn entries_not_received_again_expire() {
        let store = MetadataStore::default();
        let none = MetadataLimits::default();
        store.add(
            "t",
            vec![entry("old", 1, "x"), entry("kept", 1, "x")],
            none,
            10,
        );
        store.add("t", vec![entry("kept", 1, "x")], none, 100);
        // Hidden from reads at once, freed by the next purge.
        assert_eq!(names(&store.query("t", "", -1, 0, 50)), [("kept", "x")]);
        assert_eq!(store.families("t"), 2);
        assert!(store.purge_if_due(1_000, 50, 500));
        assert_eq!(store.families("t"), 1);
        // Not again before `every` has passed.
        assert!(!store.purge_if_due(1_400, 500, 500));
        assert_eq!(store.families("t"), 1);
        assert!(store.purge_if_due(1_500, 500, 500));
        assert_eq!(store.families("t"), 0);
    }
}
