//! `/api/v1/query_exemplars`: the ingesters' exemplars of the series the
//! query's selectors match, merged into Prometheus's answer,
//! `[{"seriesLabels": {…}, "exemplars": [{"labels": {…}, "value": "…",
//! "timestamp": <seconds>}]}]`.
//!
//! Each series is on several replicas, each holding a copy of its exemplars:
//! the merge keeps one of each (same time, value and labels), in time order.

use std::collections::BTreeMap;

use strata_model::Labels;
use strata_proto::prometheus::TimeSeries;

use crate::json::{write_labels, write_str, write_timestamp};

/// One exemplar as answered: time, value, labels.
type Entry = (i64, f64, Labels);

/// The merged answer: per series, its exemplars.
pub(crate) type ExemplarsBySeries = BTreeMap<Labels, Vec<Entry>>;

/// Every replica's series merged by labels, each series' exemplars without
/// repeats, oldest first; series sorted by labels.
pub(crate) fn merge(answers: Vec<TimeSeries>) -> ExemplarsBySeries {
    let mut by_series = ExemplarsBySeries::new();
    for series in answers {
        let list = by_series
            .entry(strata_proto::labels_from_proto(series.labels))
            .or_default();
        list.extend(series.exemplars.into_iter().map(|e| {
            (
                e.timestamp,
                e.value,
                strata_proto::labels_from_proto(e.labels),
            )
        }));
    }
    for list in by_series.values_mut() {
        list.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.2.cmp(&b.2))
                .then_with(|| a.1.total_cmp(&b.1))
        });
        list.dedup_by(|a, b| a.0 == b.0 && a.1.to_bits() == b.1.to_bits() && a.2 == b.2);
    }
    by_series.retain(|_, list| !list.is_empty());
    by_series
}

/// The `data` of the answer.
pub(crate) fn to_json(series: &ExemplarsBySeries) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 * series.len() + 2);
    out.push(b'[');
    for (i, (labels, list)) in series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"seriesLabels\":");
        write_labels(&mut out, labels);
        out.extend_from_slice(b",\"exemplars\":[");
        for (j, (timestamp_ms, value, exemplar_labels)) in list.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"labels\":");
            write_labels(&mut out, exemplar_labels);
            out.extend_from_slice(b",\"value\":");
            write_str(&mut out, &strata_promql::format_value(*value));
            out.extend_from_slice(b",\"timestamp\":");
            write_timestamp(&mut out, *timestamp_ms);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::prometheus::{Exemplar, Label};

    fn series(name: &str, exemplars: &[(&str, f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            exemplars: exemplars
                .iter()
                .map(|(trace, value, ts)| Exemplar {
                    labels: vec![Label {
                        name: "trace_id".into(),
                        value: trace.to_string(),
                    }],
                    value: *value,
                    timestamp: *ts,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_copies_are_answered_once_in_time_order_in_prometheus_shape() {
        let answers = vec![
            series("b", &[("y", 2.0, 3_000)]),
            series("a", &[("x", 0.25, 1_500), ("z", 1.0, 4_000)]),
            series("a", &[("x", 0.25, 1_500)]),
            series("b", &[("y", 2.0, 3_000), ("w", 3.0, 2_000)]),
            series("c", &[]),
        ];
        let merged = merge(answers);
        let json: serde_json::Value = serde_json::from_slice(&to_json(&merged)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"seriesLabels": {"__name__": "a"}, "exemplars": [
                    {"labels": {"trace_id": "x"}, "value": "0.25", "timestamp": 1.5},
                    {"labels": {"trace_id": "z"}, "value": "1", "timestamp": 4},
                ]},
                {"seriesLabels": {"__name__": "b"}, "exemplars": [
                    {"labels": {"trace_id": "w"}, "value": "3", "timestamp": 2},
                    {"labels": {"trace_id": "y"}, "value": "2", "timestamp": 3},
                ]},
            ])
        );
        assert_eq!(to_json(&merge(vec![])), b"[]");
    }
}
