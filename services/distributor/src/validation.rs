//! Per-series checks before anything reaches an ingester, with messages worded
//! like Mimir's so operators recognise them, and the reason labels Mimir uses in
//! its discarded-samples metric.

use std::fmt::Write as _;

use strata_limits::Limits;
use strata_model::{is_valid_label_name, is_valid_metric_name, METRIC_NAME};
use strata_proto::prometheus::{Label, TimeSeries};

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
