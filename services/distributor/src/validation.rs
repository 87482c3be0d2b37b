//! Per-series checks before anything reaches an ingester, with messages worded
//! like Mimir's so operators recognise them, and the reason labels Mimir uses in
//! its discarded-samples metric.

use std::fmt::Write as _;

use strata_limits::Limits;
use strata_model::{is_valid_label_name, is_valid_metric_name, METRIC_NAME};
use strata_proto::prometheus::{Exemplar, Label, MetricMetadata, TimeSeries};

/// Why a series (or some of its samples) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The `reason` label of `strata_discarded_samples_total`.
    pub reason: &'static str,
    pub message: String,
}

/// Checks a series' labels. `Err` rejects the whole series.
pub fn validate_labels(limits: &Limits, labels: &[Label]) -> Result<(), Rejection> {
    let reject = |reason, message: String| Err(Rejection { reason, message });
    let Some(name) = labels.iter().find(|l| l.name == METRIC_NAME) else {
        return reject(
            "missing_metric_name",
            format!(
                "received a series without metric name, series: {}",
                format_series(labels)
            ),
        );
    };
    if !is_valid_metric_name(&name.value) {
        return reject(
            "metric_name_invalid",
            format!(
                "received a series with invalid metric name: '{}', series: {}",
                shorten(&name.value),
                format_series(labels)
            ),
        );
    }
    if labels.len() > limits.max_label_names_per_series {
        return reject(
            "max_label_names_per_series",
            format!(
                "received a series whose number of labels exceeds the limit (actual: {}, limit: {}) series: {}",
                labels.len(),
                limits.max_label_names_per_series,
                format_series(labels)
            ),
        );
    }
    let mut previous: Option<&str> = None;
    for label in labels {
        if !is_valid_label_name(&label.name) {
            return reject(
                "label_invalid",
                format!(
                    "received a series with an invalid label: '{}' series: {}",
                    shorten(&label.name),
                    format_series(labels)
                ),
            );
        }
        if label.name.len() > limits.max_label_name_length {
            return reject(
                "label_name_too_long",
                format!(
                    "received a series whose label name length exceeds the limit of {} bytes, label: '{}' series: {}",
                    limits.max_label_name_length,
                    shorten(&label.name),
                    format_series(labels)
                ),
            );
        }
        if label.value.len() > limits.max_label_value_length {
            return reject(
                "label_value_too_long",
                format!(
                    "received a series whose label value length of {} bytes exceeds the limit of {} bytes, label: '{}' value: '{}' series: {}",
                    label.value.len(),
                    limits.max_label_value_length,
                    label.name,
                    shorten(&label.value),
                    format_series(labels)
                ),
            );
        }
        if let Some(prev) = previous {
            if prev == label.name {
                return reject(
                    "duplicate_label_names",
                    format!(
                        "received a series with duplicate label name, label: '{}' series: {}",
                        label.name,
                        format_series(labels)
                    ),
                );
            }
            if prev > label.name.as_str() {
                return reject(
                    "labels_not_sorted",
                    format!(
                        "received a series where the label names are not sorted, label: '{}' comes after '{}', series: {}",
                        label.name,
                        prev,
                        format_series(labels)
                    ),
                );
            }
        }
        previous = Some(&label.name);
    }
    Ok(())
}

/// Drops the samples of `series` that are too far in the future
/// (`creation_grace_period`) or, when `past_grace_period` is set, too far in
/// the past; returns the rejection for the first one dropped and how many were.
pub(crate) fn drop_samples_outside_grace(
    limits: &Limits,
    now_ms: i64,
    series: &mut TimeSeries,
) -> Option<(Rejection, usize)> {
    let latest_allowed = now_ms.saturating_add(limits.creation_grace_period.as_millis_i64());
    let past_ms = limits.past_grace_period.as_millis_i64();
    let earliest_allowed = if past_ms > 0 {
        now_ms.saturating_sub(past_ms)
    } else {
        i64::MIN
    };
    let first = series
        .samples
        .iter()
        .find(|s| s.timestamp > latest_allowed || s.timestamp < earliest_allowed)?
        .timestamp;
    let before = series.samples.len();
    series
        .samples
        .retain(|s| (earliest_allowed..=latest_allowed).contains(&s.timestamp));
    let dropped = before - series.samples.len();
    let rejection = if first > latest_allowed {
        Rejection {
            reason: "too_far_in_future",
            message: format!(
                "received a sample whose timestamp is too far in the future, timestamp: {first} (more than {} after the distributor's clock) series: {} (err-strata-too-far-in-future)",
                limits.creation_grace_period,
                format_series(&series.labels)
            ),
        }
    } else {
        Rejection {
            reason: "too_far_in_past",
            message: format!(
                "sample timestamp too old: timestamp {first} is more than {} (past_grace_period) before the distributor's clock, series: {} (err-strata-too-far-in-past)",
                limits.past_grace_period,
                format_series(&series.labels)
            ),
        }
    };
    Some((rejection, dropped))
}

/// Labels in Prometheus form, as they arrived (unsorted and duplicate labels
/// stay visible), cut short when long so an error stays readable.
pub fn format_series(labels: &[Label]) -> String {
    const MAX: usize = 512;
    let mut out = String::new();
    if let Some(name) = labels.iter().find(|l| l.name == METRIC_NAME) {
        out.push_str(&name.value);
    }
    out.push('{');
    let mut first = true;
    for label in labels.iter().filter(|l| l.name != METRIC_NAME) {
        if !first {
            out.push_str(", ");
        }
        first = false;
        let _ = write!(out, "{}={:?}", label.name, label.value);
        if out.len() > MAX {
            break;
        }
    }
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out.push('}');
    out
}

/// Most runes in an exemplar's label names and values together (Prometheus's
/// and OpenMetrics' limit).
pub(crate) const EXEMPLAR_MAX_LABEL_SET_RUNES: usize = 128;

/// Checks a series' exemplars as Mimir does: each needs labels, valid label
/// names, a timestamp, and at most 128 runes of labels. `Err` rejects the
/// series; the message names the series and the exemplar.
pub(crate) fn validate_exemplars(
    series: &[Label],
    exemplars: &[Exemplar],
) -> Result<(), Rejection> {
    for e in exemplars {
        let reject = |reason, what: String| {
            Err(Rejection {
                reason,
                message: format!(
                    "received an exemplar {what}, timestamp: {} series: {} labels: {}",
                    e.timestamp,
                    format_series(series),
                    format_series(&e.labels)
                ),
            })
        };
        if e.labels.is_empty() {
            return reject("exemplar_labels_missing", "with no labels".to_string());
        }
        if e.timestamp == 0 {
            return reject(
                "exemplar_timestamp_invalid",
                "with no timestamp".to_string(),
            );
        }
        if let Some(bad) = e.labels.iter().find(|l| !is_valid_label_name(&l.name)) {
            return reject(
                "exemplar_labels_invalid",
                format!("with an invalid label name '{}'", shorten(&bad.name)),
            );
        }
        let runes: usize = e
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if runes > EXEMPLAR_MAX_LABEL_SET_RUNES {
            return reject(
                "exemplar_labels_too_long",
                format!(
                    "whose labels ({runes} characters) exceed the limit of {EXEMPLAR_MAX_LABEL_SET_RUNES} characters"
                ),
            );
        }
    }
    Ok(())
}

/// Checks one remote-write metadata entry as Mimir does: it needs a metric
/// family name; a name or unit longer than `max_metadata_length` drops the
/// entry; a longer help is cut (at a character boundary) and kept. `Err`
/// drops the entry; its `reason` labels `strata_discarded_metadata_total`.
pub(crate) fn validate_metadata(
    limits: &Limits,
    metadata: &mut MetricMetadata,
) -> Result<(), Rejection> {
    let max = limits.max_metadata_length;
    let reject = |reason, message: String| Err(Rejection { reason, message });
    if metadata.metric_family_name.is_empty() {
        return reject(
            "missing_metric_name",
            "received a metric metadata entry without a metric family name".to_string(),
        );
    }
    if metadata.metric_family_name.len() > max {
        return reject(
            "metric_name_too_long",
            format!(
                "received a metric metadata entry whose metric family name is longer than the limit (actual: {}, limit: {max}, max_metadata_length), metric: '{}'",
                metadata.metric_family_name.len(),
                shorten(&metadata.metric_family_name)
            ),
        );
    }
    if metadata.unit.len() > max {
        return reject(
            "unit_too_long",
            format!(
                "received a metric metadata entry whose unit is longer than the limit (actual: {}, limit: {max}, max_metadata_length), metric: '{}', unit: '{}'",
                metadata.unit.len(),
                metadata.metric_family_name,
                shorten(&metadata.unit)
            ),
        );
    }
    if metadata.help.len() > max {
        let mut cut = max;
        while !metadata.help.is_char_boundary(cut) {
            cut -= 1;
        }
        metadata.help.truncate(cut);
    }
    Ok(())
}

fn shorten(value: &str) -> String {
    const MAX: usize = 200;
    if value.len() <= MAX {
        return value.to_string();
    }
    let mut cut = MAX;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... (truncated)", &value[..cut])
}

#[cfg(test)]
mod tests {
    #[test]
    fn exemplars_need_labels_a_timestamp_and_at_most_128_runes() {
        let series = [Label {
            name: "__name__".into(),
            value: "reqs_total".into(),
        }];
        let exemplar = |labels: &[(&str, &str)], ts: i64| Exemplar {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            value: 1.0,
            timestamp: ts,
        };
        let reason = |e: Exemplar| validate_exemplars(&series, &[e]).map_err(|r| r.reason);
        assert_eq!(reason(exemplar(&[("trace_id", "abc")], 5)), Ok(()));
        assert_eq!(reason(exemplar(&[], 5)), Err("exemplar_labels_missing"));
        assert_eq!(
            reason(exemplar(&[("trace_id", "abc")], 0)),
            Err("exemplar_timestamp_invalid")
        );
        assert_eq!(
            reason(exemplar(&[("bad-name", "x")], 5)),
            Err("exemplar_labels_invalid")
        );
        // 128 runes pass, 129 fail; runes, not bytes.
        let at_limit = "é".repeat(128 - "trace_id".len());
        assert_eq!(reason(exemplar(&[("trace_id", &at_limit)], 5)), Ok(()));
        let over = format!("{at_limit}x");
        let err = validate_exemplars(&series, &[exemplar(&[("trace_id", &over)], 5)]).unwrap_err();
        assert_eq!(err.reason, "exemplar_labels_too_long");
        assert!(err.message.contains("reqs_total"), "{}", err.message);
        assert!(err.message.contains("limit of 128"), "{}", err.message);
    }

    #[test]
    fn metadata_needs_a_name_and_short_fields_and_help_is_cut() {
        let limits = Limits {
            max_metadata_length: 8,
            ..Limits::default()
        };
        let entry = |name: &str, help: &str, unit: &str| MetricMetadata {
            r#type: 1,
            metric_family_name: name.to_string(),
            help: help.to_string(),
            unit: unit.to_string(),
        };
        let mut ok = entry("up", "fine", "s");
        assert_eq!(validate_metadata(&limits, &mut ok), Ok(()));
        assert_eq!(ok, entry("up", "fine", "s"));

        let reason = |mut m: MetricMetadata| validate_metadata(&limits, &mut m).unwrap_err().reason;
        assert_eq!(reason(entry("", "h", "")), "missing_metric_name");
        assert_eq!(
            reason(entry("a_very_long_name", "h", "")),
            "metric_name_too_long"
        );
        assert_eq!(reason(entry("up", "h", "kilometres")), "unit_too_long");
        let err = validate_metadata(&limits, &mut entry("a_very_long_name", "", "")).unwrap_err();
        assert!(
            err.message.contains("max_metadata_length"),
            "{}",
            err.message
        );
        assert!(err.message.contains("a_very_long_name"), "{}", err.message);

        // A long help is kept, cut at the limit without splitting a character.
        let mut long_help = entry("up", "ééééé", "");
        assert_eq!(validate_metadata(&limits, &mut long_help), Ok(()));
        assert_eq!(long_help.help, "éééé");
    }

    use super::*;
    use strata_proto::prometheus::Sample;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    fn reason(pairs: &[(&str, &str)]) -> &'static str {
        match validate_labels(&Limits::default(), &labels(pairs)) {
            Ok(()) => "ok",
            Err(r) => r.reason,
        }
    }

    #[test]
    fn accepts_a_normal_series() {
        assert_eq!(
            reason(&[("__name__", "up"), ("a", "1"), ("job", "x")]),
            "ok"
        );
    }

    #[test]
    fn each_rule_has_its_reason() {
        assert_eq!(reason(&[("job", "x")]), "missing_metric_name");
        assert_eq!(reason(&[("__name__", "1up")]), "metric_name_invalid");
        assert_eq!(
            reason(&[("__name__", "up"), ("bad-name", "x")]),
            "label_invalid"
        );
        assert_eq!(
            reason(&[("__name__", "up"), ("b", "1"), ("a", "2")]),
            "labels_not_sorted"
        );
        assert_eq!(
            reason(&[("__name__", "up"), ("a", "1"), ("a", "2")]),
            "duplicate_label_names"
        );
        let long_name = "n".repeat(2000);
        assert_eq!(
            reason(&[("__name__", "up"), (&long_name, "1")]),
            "label_name_too_long"
        );
        let long_value = "v".repeat(3000);
        assert_eq!(
            reason(&[("__name__", "up"), ("a", &long_value)]),
            "label_value_too_long"
        );
        let many: Vec<(String, String)> = (0..40)
            .map(|i| (format!("l{i:02}"), "v".to_string()))
            .collect();
        let mut pairs: Vec<(&str, &str)> = vec![("__name__", "up")];
        pairs.extend(many.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        assert_eq!(reason(&pairs), "max_label_names_per_series");
    }

    #[test]
    fn messages_name_the_label_and_series() {
        let err = validate_labels(
            &Limits::default(),
            &labels(&[("__name__", "up"), ("bad-name", "x")]),
        )
        .unwrap_err();
        assert!(err.message.contains("'bad-name'"), "{}", err.message);
        assert!(
            err.message.contains("up{bad-name=\"x\"}"),
            "{}",
            err.message
        );
    }

    #[test]
    fn future_samples_are_dropped_and_the_rest_kept() {
        let mut series = TimeSeries {
            labels: labels(&[("__name__", "up")]),
            samples: vec![
                Sample {
                    value: 1.0,
                    timestamp: 1_000,
                },
                Sample {
                    value: 2.0,
                    timestamp: 10_000_000,
                },
            ],
            ..Default::default()
        };
        let (rejection, dropped) =
            drop_samples_outside_grace(&Limits::default(), 1_000, &mut series).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(rejection.reason, "too_far_in_future");
        assert_eq!(series.samples.len(), 1);
        assert!(drop_samples_outside_grace(&Limits::default(), 1_000, &mut series).is_none());
    }

    #[test]
    fn past_samples_are_dropped_only_with_a_past_grace_period() {
        let now = 1_000_000_000;
        let samples = || {
            [i64::MIN, -1, 0, now - 3_600_001, now - 1_000, now]
                .iter()
                .map(|&timestamp| Sample {
                    value: 1.0,
                    timestamp,
                })
                .collect::<Vec<_>>()
        };
        let mut series = TimeSeries {
            labels: labels(&[("__name__", "up")]),
            samples: samples(),
            ..Default::default()
        };
        // Off by default (Mimir's default): the ingester's own bound applies.
        assert!(drop_samples_outside_grace(&Limits::default(), now, &mut series).is_none());
        let limits = Limits {
            past_grace_period: strata_model::ConfigDuration::from_secs(3600),
            ..Limits::default()
        };
        let (rejection, dropped) = drop_samples_outside_grace(&limits, now, &mut series).unwrap();
        assert_eq!(dropped, 4);
        assert_eq!(rejection.reason, "too_far_in_past");
        assert!(rejection.message.contains("sample timestamp too old"));
        assert!(rejection.message.contains(&i64::MIN.to_string()));
        let kept: Vec<i64> = series.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(kept, vec![now - 1_000, now]);
    }

    #[test]
    fn long_series_are_shortened_in_messages() {
        let long_value = "é".repeat(2000);
        let text = format_series(&labels(&[("__name__", "up"), ("a", &long_value)]));
        assert!(text.len() < 600);
        assert!(text.ends_with("...}"));
    }
}
