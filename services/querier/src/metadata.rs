//! `/api/v1/metadata`: the ingesters' metric metadata merged into
//! Prometheus's answer, `{"<metric>": [{"type", "help", "unit"}, …]}`.
//!
//! Every replica of a metric family holds its entries, so the merge removes
//! repeats. The limits are applied after the merge, over families in name
//! order and entries in (type, help, unit) order; each ingester applies the
//! same limits to its own sorted entries first, which cannot drop anything
//! the merged answer would keep (the first N of a union are among the first
//! N of each part).

use std::collections::{BTreeMap, BTreeSet};

use strata_proto::prometheus::metric_metadata::MetricType;
use strata_proto::prometheus::MetricMetadata;

use crate::json::write_str;

/// The `limit` and `limit_per_metric` parameters as Prometheus reads them:
/// absent is no limit; `limit=0` answers nothing (Prometheus 2.42 does the
/// same); `limit_per_metric` of 0 or less is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetadataLimits {
    /// Negative: no limit.
    pub(crate) metrics: i64,
    /// 0 or negative: no limit.
    pub(crate) per_metric: i64,
}

/// The merged answer: per metric, its (type, help, unit) entries.
pub(crate) type MetadataByMetric = BTreeMap<String, Vec<(i32, String, String)>>;

/// Prometheus's lower-case name of a metric type (`model.MetricType`).
fn type_name(kind: i32) -> &'static str {
    match MetricType::try_from(kind).unwrap_or(MetricType::Unknown) {
        MetricType::Unknown => "unknown",
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Gaugehistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::Stateset => "stateset",
    }
}

/// The entries of every replica, without repeats, grouped by family, limited.
pub(crate) fn merge(entries: Vec<MetricMetadata>, limits: MetadataLimits) -> MetadataByMetric {
    let mut families: BTreeMap<String, BTreeSet<(i32, String, String)>> = BTreeMap::new();
    for m in entries {
        families
            .entry(m.metric_family_name)
            .or_default()
            .insert((m.r#type, m.help, m.unit));
    }
    let max_metrics = usize::try_from(limits.metrics).unwrap_or(usize::MAX);
    let per_metric = match usize::try_from(limits.per_metric) {
        Ok(n) if n > 0 => n,
        _ => usize::MAX,
    };
    families
        .into_iter()
        .take(max_metrics)
        .map(|(name, set)| (name, set.into_iter().take(per_metric).collect()))
        .collect()
}

/// The `data` of the answer.
pub(crate) fn to_json(families: &MetadataByMetric) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * families.len() + 2);
    out.push(b'{');
    for (i, (name, entries)) in families.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, name);
        out.extend_from_slice(b":[");
        for (j, (kind, help, unit)) in entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"type\":");
            write_str(&mut out, type_name(*kind));
            out.extend_from_slice(b",\"help\":");
            write_str(&mut out, help);
            out.extend_from_slice(b",\"unit\":");
            write_str(&mut out, unit);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: MetricType, help: &str) -> MetricMetadata {
        MetricMetadata {
            r#type: kind as i32,
            metric_family_name: name.to_string(),
            help: help.to_string(),
            unit: String::new(),
        }
    }

    const NONE: MetadataLimits = MetadataLimits {
        metrics: -1,
        per_metric: 0,
    };

    #[test]
    fn replicas_entries_are_merged_once_and_shaped_like_prometheus() {
        let from_replicas = vec![
            entry("up", MetricType::Gauge, "1 if up"),
            entry("reqs_total", MetricType::Counter, "Requests \"served\"."),
            entry("up", MetricType::Gauge, "1 if up"),
            entry("reqs_total", MetricType::Counter, "Requests \"served\"."),
            entry("weird", MetricType::Unknown, ""),
        ];
        let json = to_json(&merge(from_replicas, NONE));
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "reqs_total": [{"type": "counter", "help": "Requests \"served\".", "unit": ""}],
                "up": [{"type": "gauge", "help": "1 if up", "unit": ""}],
                "weird": [{"type": "unknown", "help": "", "unit": ""}],
            })
        );
        assert_eq!(to_json(&merge(vec![], NONE)), b"{}");
    }

    #[test]
    fn limits_count_metrics_and_entries_after_the_merge() {
        let entries = || {
            vec![
                entry("b", MetricType::Gauge, "two"),
                entry("b", MetricType::Gauge, "one"),
                entry("a", MetricType::Counter, "x"),
                entry("a", MetricType::Counter, "x"),
                entry("c", MetricType::Summary, "y"),
            ]
        };
        let names = |limits| merge(entries(), limits).into_keys().collect::<Vec<_>>();
        assert_eq!(names(NONE), ["a", "b", "c"]);
        let two = MetadataLimits {
            metrics: 2,
            per_metric: 0,
        };
        assert_eq!(names(two), ["a", "b"]);
        let zero = MetadataLimits {
            metrics: 0,
            per_metric: 0,
        };
        assert!(names(zero).is_empty());
        let one_each = MetadataLimits {
            metrics: -1,
            per_metric: 1,
        };
        let merged = merge(entries(), one_each);
        assert_eq!(
            merged["b"],
            [(MetricType::Gauge as i32, "one".into(), String::new())]
        );
        assert_eq!(merged["a"].len(), 1);
    }
}
