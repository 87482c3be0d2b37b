//! Compares the answers of one system's range queries with a reference
//! system's (Prometheus's): the same series (label sets), each with the same
//! points (timestamps relative to the query window's start, so two pushes
//! made at different times can be set side by side) and values equal within a
//! tolerance. A query that errors on one side only, an unparseable value, and
//! a query both sides answer with nothing all count as differences: an empty
//! answer proves nothing about the values.

use std::collections::BTreeMap;

use serde_json::Value;

/// Relative tolerance of [`close`]: the engines may sum in different orders.
pub(crate) const DEFAULT_TOLERANCE: f64 = 1e-9;

/// Differences below this are equal whatever the magnitude (values near 0).
const ABSOLUTE_TOLERANCE: f64 = 1e-12;

/// Examples of differences kept per query.
const EXAMPLES: usize = 5;

/// Whether `a` and `b` are equal within `tolerance` (relative; absolute
/// 1e-12 near zero). NaN equals NaN; infinities must match exactly.
pub(crate) fn close(a: f64, b: f64, tolerance: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    diff <= ABSOLUTE_TOLERANCE || diff <= tolerance * a.abs().max(b.abs())
}

/// A sample value as the Prometheus HTTP API writes it: a string holding a
/// float, `NaN`, `+Inf` or `-Inf`. Anything else is `None`, never NaN.
pub(crate) fn parse_value(v: &Value) -> Option<f64> {
    match v.as_str()? {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        s => s.parse().ok().filter(|x: &f64| x.is_finite()),
    }
}

/// The outcome of comparing one query's answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    pub(crate) query: String,
    /// Series in the reference answer.
    pub(crate) series: usize,
    /// Points compared value by value.
    pub(crate) points: usize,
    /// Differences found: missing or extra series or points, values out of
    /// tolerance, unparseable values, errors, empty answers.
    pub(crate) differences: usize,
    /// Largest relative difference among the values compared.
    pub(crate) max_rel_diff: f64,
    /// The first few differences, described.
    pub(crate) examples: Vec<String>,
}

impl Check {
    fn new(query: &str) -> Check {
        Check {
            query: query.to_string(),
            series: 0,
            points: 0,
            differences: 0,
            max_rel_diff: 0.0,
            examples: Vec::new(),
        }
    }

    fn differ(&mut self, what: String) {
        self.differences += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }

    pub(crate) fn passed(&self) -> bool {
        self.differences == 0
    }

    /// One line for a log: the query and what differs.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{}: {} difference(s) over {} series / {} points: {}",
            self.query,
            self.differences,
            self.series,
            self.points,
            self.examples.join("; ")
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "query": self.query,
            "series": self.series,
            "points": self.points,
            "differences": self.differences,
            "max_rel_diff": self.max_rel_diff,
            "examples": self.examples,
        })
    }
}

/// A series' labels as one string, sorted by name: `{a="1", b="2"}`.
fn series_key(series: &Value) -> Option<String> {
    let metric = series["metric"].as_object()?;
    let sorted: BTreeMap<&String, &Value> = metric.iter().collect();
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map_or_else(|| v.to_string(), |s| format!("{s:?}"))
            )
        })
        .collect();
    Some(format!("{{{}}}", parts.join(", ")))
}

/// A series' points: milliseconds after `start` → raw value.
fn points(series: &Value, start: f64) -> Result<BTreeMap<i64, Value>, String> {
    let mut out = BTreeMap::new();
    for p in series["values"].as_array().ok_or("no \"values\" array")? {
        let t = p[0]
            .as_f64()
            .ok_or_else(|| format!("bad timestamp in {p}"))?;
        let rel = ((t - start) * 1000.0).round() as i64;
        if out.insert(rel, p[1].clone()).is_some() {
            return Err(format!("two points at +{rel} ms"));
        }
    }
    Ok(out)
}

/// Compares one query's `data.result` (a matrix) with the reference's.
/// `ref_start` and `start` are the windows' starts (unix seconds).
pub(crate) fn compare_matrix(
    query: &str,
    reference: &Value,
    ref_start: f64,
    answer: &Value,
    start: f64,
    tolerance: f64,
) -> Check {
    let mut check = Check::new(query);
    let index = |result: &Value, start: f64, side: &str, check: &mut Check| {
        let mut map: BTreeMap<String, BTreeMap<i64, Value>> = BTreeMap::new();
        let Some(list) = result.as_array() else {
            check.differ(format!("{side}: the answer is not a list of series"));
            return map;
        };
        for s in list {
            let Some(key) = series_key(s) else {
                check.differ(format!("{side}: a series without \"metric\""));
                continue;
            };
            match points(s, start) {
                Ok(p) => {
                    if map.insert(key.clone(), p).is_some() {
                        check.differ(format!("{side}: series {key} appears twice"));
                    }
                }
                Err(e) => check.differ(format!("{side}: series {key}: {e}")),
            }
        }
        map
    };
    let want = index(reference, ref_start, "reference", &mut check);
    let got = index(answer, start, "answer", &mut check);
    check.series = want.len();
    if want.is_empty() && got.is_empty() {
        check.differ("both answers are empty: nothing was compared".to_string());
        return check;
    }
    for (key, want_points) in &want {
        let Some(got_points) = got.get(key) else {
            check.differ(format!("series {key} missing"));
            continue;
        };
        for (t, want_v) in want_points {
            let Some(got_v) = got_points.get(t) else {
                check.differ(format!("{key} at +{}s: point missing", *t as f64 / 1000.0));
                continue;
            };
            let (Some(a), Some(b)) = (parse_value(want_v), parse_value(got_v)) else {
                check.differ(format!(
                    "{key} at +{}s: unparseable value (reference {want_v}, answer {got_v})",
                    *t as f64 / 1000.0
                ));
                continue;
            };
            check.points += 1;
            if a.is_finite() && b.is_finite() && a != b {
                let rel = (a - b).abs() / a.abs().max(b.abs());
                check.max_rel_diff = check.max_rel_diff.max(rel);
            }
            if !close(a, b, tolerance) {
                check.differ(format!(
                    "{key} at +{}s: {b} where the reference has {a}",
                    *t as f64 / 1000.0
                ));
            }
        }
        for t in got_points.keys().filter(|t| !want_points.contains_key(t)) {
            check.differ(format!("{key} at +{}s: extra point", *t as f64 / 1000.0));
        }
    }
    for key in got.keys().filter(|k| !want.contains_key(*k)) {
        check.differ(format!("series {key} extra"));
    }
    check
}

/// Compares two answer files (`query --answers-out`) query by query, matched
/// by query text; a query the reference has and the answers lack differs.
pub(crate) fn compare_answer_sets(
    reference: &Value,
    answers: &Value,
    tolerance: f64,
) -> Vec<Check> {
    let ref_start = reference["start"].as_f64().unwrap_or(0.0);
    let start = answers["start"].as_f64().unwrap_or(0.0);
    let mut checks = Vec::new();
    let empty = Vec::new();
    let got_list = answers["answers"].as_array().unwrap_or(&empty);
    for want in reference["answers"].as_array().unwrap_or(&empty) {
        let query = want["query"].as_str().unwrap_or("");
        let got = got_list.iter().find(|a| a["query"].as_str() == Some(query));
        let mut check = match got {
            None => {
                let mut c = Check::new(query);
                c.differ("not answered".to_string());
                c
            }
            Some(got) => match (want["error"].as_str(), got["error"].as_str()) {
                (None, None) => compare_matrix(
                    query,
                    &want["result"],
                    ref_start,
                    &got["result"],
                    start,
                    tolerance,
                ),
                (w, g) => {
                    let mut c = Check::new(query);
                    c.differ(format!(
                        "error: reference {}, answer {}",
                        w.unwrap_or("none"),
                        g.unwrap_or("none")
                    ));
                    c
                }
            },
        };
        check.query = query.to_string();
        checks.push(check);
    }
    if checks.is_empty() {
        let mut c = Check::new("");
        c.differ("the reference holds no answers".to_string());
        checks.push(c);
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A matrix with one series `x{a="1"}` over the window starting at `start`.
    fn matrix(start: f64, values: &[&str]) -> Value {
        let pts: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| json!([start + 15.0 * i as f64, v]))
            .collect();
        json!([{"metric": {"a": "1", "__name__": "x"}, "values": pts}])
    }

    #[test]
    fn equal_answers_pass_shifted_in_time() {
        let want = matrix(1000.0, &["1", "2.5", "NaN", "+Inf"]);
        let got = matrix(4600.0, &["1", "2.5", "NaN", "+Inf"]);
        let c = compare_matrix("q", &want, 1000.0, &got, 4600.0, DEFAULT_TOLERANCE);
        assert!(c.passed(), "{c:?}");
        assert_eq!((c.series, c.points), (1, 4));
    }

    #[test]
    fn a_perturbed_value_is_a_difference() {
        let want = matrix(0.0, &["1", "2", "3"]);
        let got = matrix(0.0, &["1", "2.000001", "3"]);
        let c = compare_matrix("q", &want, 0.0, &got, 0.0, DEFAULT_TOLERANCE);
        assert_eq!(c.differences, 1, "{c:?}");
        assert!(c.examples[0].contains("+15s"), "{c:?}");
        assert!(c.max_rel_diff > 1e-7);
        // Within the tolerance: the summation-order noise of two engines.
        let got = matrix(0.0, &["1", "2.0000000000000004", "3"]);
        assert!(compare_matrix("q", &want, 0.0, &got, 0.0, DEFAULT_TOLERANCE).passed());
    }

    #[test]
    fn nan_inf_and_unparseable_values() {
        let want = matrix(0.0, &["NaN", "+Inf", "1"]);
        let got = matrix(0.0, &["1", "-Inf", "one"]);
        let c = compare_matrix("q", &want, 0.0, &got, 0.0, DEFAULT_TOLERANCE);
        assert_eq!(c.differences, 3, "{c:?}");
        assert!(c.examples[2].contains("unparseable"), "{c:?}");
    }

    #[test]
    fn missing_extra_and_relabelled_series_and_points() {
        let want = matrix(0.0, &["1", "2"]);
        // A point short, a point too many.
        let short = matrix(0.0, &["1"]);
        assert_eq!(
            compare_matrix("q", &want, 0.0, &short, 0.0, 1e-9).differences,
            1
        );
        let long = matrix(0.0, &["1", "2", "3"]);
        let c = compare_matrix("q", &want, 0.0, &long, 0.0, 1e-9);
        assert!(c.examples[0].contains("extra point"), "{c:?}");
        // Same values under other labels: one series missing, one extra.
        let other =
            json!([{"metric": {"a": "2", "__name__": "x"}, "values": [[0, "1"], [15, "2"]]}]);
        let c = compare_matrix("q", &want, 0.0, &other, 0.0, 1e-9);
        assert_eq!(c.differences, 2, "{c:?}");
        // The order of series in the matrix does not matter.
        let two = json!([
            {"metric": {"a": "1"}, "values": [[0, "1"]]},
            {"metric": {"a": "2"}, "values": [[0, "2"]]}
        ]);
        let swapped = json!([
            {"metric": {"a": "2"}, "values": [[0, "2"]]},
            {"metric": {"a": "1"}, "values": [[0, "1"]]}
        ]);
        assert!(compare_matrix("q", &two, 0.0, &swapped, 0.0, 1e-9).passed());
    }

    #[test]
    fn empty_answers_and_errors_are_differences() {
        let c = compare_matrix("q", &json!([]), 0.0, &json!([]), 0.0, 1e-9);
        assert!(!c.passed());
        let reference = json!({"system": "prometheus", "start": 0.0, "answers": [
            {"query": "a", "result": matrix(0.0, &["1"]), "error": null},
            {"query": "b", "result": matrix(0.0, &["1"]), "error": null},
            {"query": "c", "result": matrix(0.0, &["1"]), "error": null}
        ]});
        let answers = json!({"system": "strata", "start": 0.0, "answers": [
            {"query": "a", "result": matrix(0.0, &["1"]), "error": null},
            {"query": "b", "result": null, "error": "422: bad query"}
        ]});
        let checks = compare_answer_sets(&reference, &answers, 1e-9);
        let passed: Vec<bool> = checks.iter().map(Check::passed).collect();
        assert_eq!(passed, [true, false, false]);
        assert!(checks[1].examples[0].contains("422"), "{checks:?}");
        assert!(checks[2].examples[0].contains("not answered"), "{checks:?}");
    }

    #[test]
    fn close_is_relative_with_an_absolute_floor() {
        assert!(close(1e10, 1e10 + 1.0, 1e-9));
        assert!(!close(1e10, 1e10 + 100.0, 1e-9));
        assert!(close(0.0, 1e-13, 1e-9));
        assert!(!close(0.0, 1e-6, 1e-9));
        assert!(close(f64::NAN, f64::NAN, 1e-9));
        assert!(!close(f64::INFINITY, f64::MAX, 1e-9));
        assert_eq!(parse_value(&json!("1e3")), Some(1000.0));
        assert_eq!(parse_value(&json!("inf")), None);
        assert_eq!(parse_value(&json!(3)), None);
    }
}
