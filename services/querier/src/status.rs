//! What the Prometheus API's status pages report: the process's running
//! configuration, its settings as flags and its runtime facts
//! ([`ProcessStatus`], handed in by the binary, which alone knows them), and a
//! tenant's cardinality statistics in the shape of Prometheus's
//! `/api/v1/status/tsdb` ([`tsdb_stats`]), computed from the series the
//! ingesters hold.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use strata_model::{Labels, Rfc3339};

/// The facts about the process the status pages report.
#[derive(Debug, Clone, Default)]
pub struct ProcessStatus {
    /// The running configuration as YAML, secrets masked (`status/config`).
    pub config_yaml: String,
    /// Every setting as `dotted.key → value`, secrets masked (`status/flags`).
    pub flags: BTreeMap<String, String>,
    /// When the process started, Unix ms.
    pub start_time_ms: i64,
    /// The working directory.
    pub cwd: String,
    /// How long blocks are kept (`storageRetention`), as written in the config.
    pub storage_retention: String,
}

impl ProcessStatus {
    /// `status/runtimeinfo` in Prometheus's fields. Those of Go's runtime
    /// carry Strata's nearest equivalents: `goroutineCount` the process's
    /// threads, `GOMAXPROCS` the cores it may use; `GOGC` and `GODEBUG` are
    /// empty (no garbage collector to tune). The fields are Prometheus
    /// 2.42's (later versions add `GOMEMLIMIT`).
    pub fn runtime_info(&self, threads: u64, cores: u64) -> Value {
        let started = Rfc3339(self.start_time_ms).to_string();
        json!({
            "startTime": started,
            "CWD": self.cwd,
            // The configuration is read once at start; the runtime config
            // (limits) reloads separately and reports in its own metrics.
            "reloadConfigSuccess": true,
            "lastConfigTime": started,
            "corruptionCount": 0,
            "goroutineCount": threads,
            "GOMAXPROCS": cores,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": self.storage_retention,
        })
    }
}

/// A tenant's cardinality statistics over `series` (label sets, each once),
/// in Prometheus's `status/tsdb` shape, each top list cut to `limit`
/// entries. `headStats.minTime`/`maxTime` are the bounds of the window the
/// series were read over; `chunkCount` is `null`: the querier reads label
/// sets, not chunks. `memoryInBytesByLabelName` is, as Prometheus 2.42
/// counts it, each value's length times the series that carry it, summed
/// over the label's values.
pub(crate) fn tsdb_stats(series: &[Labels], limit: usize, min_time: i64, max_time: i64) -> Value {
    // name → value → series count.
    let mut postings: HashMap<&str, HashMap<&str, u64>> = HashMap::new();
    for labels in series {
        for label in labels.iter() {
            *postings
                .entry(label.name.as_str())
                .or_default()
                .entry(label.value.as_str())
                .or_default() += 1;
        }
    }
    let mut by_metric = Vec::new();
    let mut values_by_name = Vec::new();
    let mut bytes_by_name = Vec::new();
    let mut by_pair = Vec::new();
    let mut label_pairs = 0;
    for (name, values) in &postings {
        label_pairs += values.len();
        values_by_name.push((name.to_string(), values.len() as u64));
        let bytes = values.iter().map(|(v, count)| v.len() as u64 * count).sum();
        bytes_by_name.push((name.to_string(), bytes));
        for (value, count) in values {
            if *name == "__name__" {
                by_metric.push((value.to_string(), *count));
            }
            by_pair.push((format!("{name}={value}"), *count));
        }
    }
    json!({
        "headStats": {
            "numSeries": series.len(),
            "numLabelPairs": label_pairs,
            "chunkCount": Value::Null,
            "minTime": min_time,
            "maxTime": max_time,
        },
        "seriesCountByMetricName": top(by_metric, limit),
        "labelValueCountByLabelName": top(values_by_name, limit),
        "memoryInBytesByLabelName": top(bytes_by_name, limit),
        "seriesCountByLabelValuePair": top(by_pair, limit),
    })
}

/// The `limit` largest counts, largest first (ties by name), as
/// `[{"name", "value"}]`.
fn top(mut stats: Vec<(String, u64)>, limit: usize) -> Value {
    stats.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    stats.truncate(limit);
    Value::Array(
        stats
            .into_iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn statistics_count_series_values_and_pairs() {
        let all = vec![
            series(&[("__name__", "up"), ("job", "api"), ("pod", "a")]),
            series(&[("__name__", "up"), ("job", "api"), ("pod", "bb")]),
            series(&[("__name__", "up"), ("job", "db"), ("pod", "c")]),
            series(&[("__name__", "errors_total"), ("job", "api")]),
        ];
        let stats = tsdb_stats(&all, 2, 1000, 2000);
        assert_eq!(
            stats["headStats"],
            json!({"numSeries": 4, "numLabelPairs": 7, "chunkCount": null, "minTime": 1000, "maxTime": 2000})
        );
        assert_eq!(
            stats["seriesCountByMetricName"],
            json!([{"name": "up", "value": 3}, {"name": "errors_total", "value": 1}])
        );
        // pod has three values, __name__ and job two each (ties by name).
        assert_eq!(
            stats["labelValueCountByLabelName"],
            json!([{"name": "pod", "value": 3}, {"name": "__name__", "value": 2}])
        );
        // "up" × 3 + "errors_total" × 1 = 18 bytes; "api" × 3 + "db" = 11;
        // "a" + "bb" + "c" = 4.
        assert_eq!(
            stats["memoryInBytesByLabelName"],
            json!([{"name": "__name__", "value": 18}, {"name": "job", "value": 11}])
        );
        assert_eq!(
            stats["seriesCountByLabelValuePair"],
            json!([{"name": "__name__=up", "value": 3}, {"name": "job=api", "value": 3}])
        );
    }

    #[test]
    fn runtime_info_has_prometheus_s_fields() {
        let status = ProcessStatus {
            start_time_ms: 1_796_233_314_123,
            cwd: "/data".into(),
            storage_retention: "0s".into(),
            ..Default::default()
        };
        let info = status.runtime_info(7, 2);
        assert_eq!(info["startTime"], "2026-12-02T17:41:54.123Z");
        assert_eq!(info["goroutineCount"], 7);
        assert_eq!(info["GOMAXPROCS"], 2);
        for key in [
            "CWD",
            "reloadConfigSuccess",
            "lastConfigTime",
            "corruptionCount",
            "GOGC",
            "GODEBUG",
            "storageRetention",
        ] {
            assert!(info.get(key).is_some(), "{key}");
        }
    }
}
