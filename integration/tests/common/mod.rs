//! Comparing Strata's answers with a reference Prometheus's.
//!
//! Two answers are the same when they have the same result type, the same
//! label sets and, point by point, the same timestamps and values (within 1e-9
//! relative; NaN equals NaN). On top of that:
//! - an instant query whose outermost operation defines the order of its
//!   result (`sort`, `sort_desc`, `sort_by_label`, `sort_by_label_desc`,
//!   `topk`, `bottomk`) must list its series in the same order (series with
//!   equal values may come in any order among themselves);
//! - an answer with no series on both sides is a failure unless the caller
//!   says nothing is expected ([`Expect::Empty`]): two empty answers compare
//!   nothing;
//! - a value or timestamp that does not parse is a failure, never NaN.

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

/// What the caller expects both servers to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Expect {
    /// At least one series (or a scalar or string): the usual case.
    #[default]
    Data,
    /// No series on either side (e.g. `absent(x)` for an existing `x`).
    Empty,
}

/// Queries `query` at `time` (unix seconds) on both servers and checks that the
/// answers are the same (see the module's doc), expecting data. Returns the
/// number of series compared, or the difference.
pub(crate) async fn compare_instant(
    strata_url: &str,
    tenant: &str,
    prometheus_url: &str,
    query: &str,
    time: f64,
) -> Result<usize, String> {
    compare_instant_expecting(
        strata_url,
        tenant,
        prometheus_url,
        query,
        time,
        Expect::Data,
    )
    .await
}

/// [`compare_instant`] expecting `expect`.
pub(crate) async fn compare_instant_expecting(
    strata_url: &str,
    tenant: &str,
    prometheus_url: &str,
    query: &str,
    time: f64,
    expect: Expect,
) -> Result<usize, String> {
    let params = format!("query={}&time={time}", urlencode(query));
    let servers = (strata_url, tenant, prometheus_url);
    compare_answers(servers, "query", &params, query, expect).await
}

/// The same for a range query, expecting data.
pub(crate) async fn compare_range(
    strata_url: &str,
    tenant: &str,
    prometheus_url: &str,
    query: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<usize, String> {
    compare_range_expecting(
        strata_url,
        tenant,
        prometheus_url,
        query,
        (start, end, step),
        Expect::Data,
    )
    .await
}

/// [`compare_range`] over `(start, end, step)` expecting `expect`.
pub(crate) async fn compare_range_expecting(
    strata_url: &str,
    tenant: &str,
    prometheus_url: &str,
    query: &str,
    (start, end, step): (f64, f64, f64),
    expect: Expect,
) -> Result<usize, String> {
    let q = urlencode(query);
    let params = format!("query={q}&start={start}&end={end}&step={step}");
    let servers = (strata_url, tenant, prometheus_url);
    compare_answers(servers, "query_range", &params, query, expect).await
}

/// GETs `api/v1/<endpoint>?<params>` from Strata (under `/prometheus`, as
/// `tenant`) and from Prometheus, and compares the two answers to `query`
/// (see the module's doc); both must be 200.
async fn compare_answers(
    (strata_url, tenant, prometheus_url): (&str, &str, &str),
    endpoint: &str,
    params: &str,
    query: &str,
    expect: Expect,
) -> Result<usize, String> {
    let (s_status, s) = strata_integration::get_json(
        &format!("{strata_url}/prometheus/api/v1/{endpoint}?{params}"),
        Some(tenant),
    )
    .await;
    let (p_status, p) = strata_integration::get_json(
        &format!("{prometheus_url}/api/v1/{endpoint}?{params}"),
        None,
    )
    .await;
    if (s_status, p_status) != (200, 200) {
        return Err(format!(
            "{query}: strata {s_status} {s}, prometheus {p_status} {p}"
        ));
    }
    same_result(query, &s["data"], &p["data"], expect)
}

/// [`compare_instant`] at `t` and [`compare_range`] over the 8 s up to `t`
/// (1 s steps): the total number of series compared, or the first
/// difference.
pub(crate) async fn compare_instant_and_last_8s(
    strata_url: &str,
    tenant: &str,
    prometheus_url: &str,
    query: &str,
    t: f64,
) -> Result<usize, String> {
    let instant = compare_instant(strata_url, tenant, prometheus_url, query, t).await;
    let range = compare_range(strata_url, tenant, prometheus_url, query, t - 8.0, t, 1.0).await;
    Ok(instant? + range?)
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The functions and aggregations whose result, as the outermost operation of
/// an instant query, comes in an order the query defines.
const ORDERING: &[&str] = &[
    "sort_by_label_desc",
    "sort_by_label",
    "sort_desc",
    "sort",
    "topk",
    "bottomk",
];

/// Whether the order of `query`'s instant result is defined: its outermost
/// operation is one of [`ORDERING`] (`topk by (job) (1, x)`, `sort(x)`,
/// `topk(1, x) by (job)`), not a binary operation or another function around
/// one (`sum(topk(3, x))`, `topk(3, x) or bottomk(3, x)`).
pub(crate) fn order_defined(query: &str) -> bool {
    let q = query.trim();
    let Some(rest) = ORDERING.iter().find_map(|f| q.strip_prefix(f)) else {
        return false;
    };
    // The next thing must be the argument list or a grouping, not more of a
    // longer name (`sorted_things`).
    let rest = rest.trim_start();
    let rest = strip_grouping(rest).map_or(rest, str::trim_start);
    let Some(after_args) = strip_parens(rest) else {
        return false;
    };
    let after_args = after_args.trim_start();
    after_args.is_empty() || strip_grouping(after_args).is_some_and(|r| r.trim().is_empty())
}

/// `by (...)` or `without (...)` off the start of `s`, returning what follows.
fn strip_grouping(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("by").or_else(|| s.strip_prefix("without"))?;
    strip_parens(rest.trim_start())
}

/// A balanced `(...)` off the start of `s` (quotes respected), returning what
/// follows.
fn strip_parens(s: &str) -> Option<&str> {
    if !s.starts_with('(') {
        return None;
    }
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[i + 1..]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether Strata's answer (`strata`, the `data` of its JSON) is the same as
/// Prometheus's; the number of series compared.
pub(crate) fn same_result(
    query: &str,
    strata: &Value,
    prometheus: &Value,
    expect: Expect,
) -> Result<usize, String> {
    if strata["resultType"] != prometheus["resultType"] {
        return Err(format!(
            "{query}: result types differ: {} vs {}",
            strata["resultType"], prometheus["resultType"]
        ));
    }
    let result_type = strata["resultType"].as_str().unwrap_or_default();
    if result_type == "scalar" || result_type == "string" {
        if expect == Expect::Empty {
            return Err(format!(
                "{query}: expected no series, both answer the {result_type} {}",
                strata["result"]
            ));
        }
        values_equal(query, &strata["result"], &prometheus["result"])?;
        return Ok(1);
    }
    if result_type != "vector" && result_type != "matrix" {
        return Err(format!(
            "{query}: unknown result type {:?} in {strata}",
            strata["resultType"]
        ));
    }
    let (Some(s), Some(p)) = (strata["result"].as_array(), prometheus["result"].as_array()) else {
        return Err(format!(
            "{query}: a {result_type} result is not a list: strata {strata}, prometheus {prometheus}"
        ));
    };
    match (expect, s.is_empty() && p.is_empty()) {
        (Expect::Data, true) => {
            return Err(format!(
                "{query}: both answers are empty (nothing compared; list the query as \
                 expected-empty if that is what it should answer)"
            ))
        }
        (Expect::Empty, false) => {
            return Err(format!(
                "{query}: expected no series: strata {} series, prometheus {}",
                s.len(),
                p.len()
            ))
        }
        _ => {}
    }
    let key = |v: &Value| v["metric"].to_string();
    if result_type == "vector" && order_defined(query) {
        same_order(query, s, p)?;
    }
    let mut s = s.clone();
    let mut p = p.clone();
    s.sort_by_key(key);
    p.sort_by_key(key);
    let s_keys: Vec<String> = s.iter().map(key).collect();
    let p_keys: Vec<String> = p.iter().map(key).collect();
    if s_keys != p_keys {
        return Err(format!(
            "{query}: label sets differ:\n strata {s_keys:?}\n prometheus {p_keys:?}"
        ));
    }
    for (a, b) in s.iter().zip(&p) {
        if result_type == "vector" {
            values_equal(query, &a["value"], &b["value"])?;
        } else {
            let (Some(av), Some(bv)) = (a["values"].as_array(), b["values"].as_array()) else {
                return Err(format!(
                    "{query} {}: a series without a list of values: strata {a} prometheus {b}",
                    key(a)
                ));
            };
            if av.len() != bv.len() {
                return Err(format!(
                    "{query} {}: point counts differ: strata {a} prometheus {b}",
                    key(a)
                ));
            }
            for (x, y) in av.iter().zip(bv) {
                values_equal(query, x, y)?;
            }
        }
    }
    Ok(s.len())
}

/// Whether two instant vectors list their series in the same order. Series
/// whose values are equal (a tie of `topk`, equal values under `sort`) may
/// come in any order among themselves: each run of equal values in
/// Prometheus's order must hold the same label sets in Strata's.
fn same_order(query: &str, strata: &[Value], prometheus: &[Value]) -> Result<(), String> {
    let order = |v: &[Value]| -> Result<Vec<(String, f64)>, String> {
        v.iter()
            .map(|s| Ok((s["metric"].to_string(), parse_value(query, &s["value"][1])?)))
            .collect()
    };
    let (s, p) = (order(strata)?, order(prometheus)?);
    let shown = |v: &[(String, f64)]| {
        v.iter()
            .map(|(m, x)| format!("{m} {x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let differ = || {
        Err(format!(
            "{query}: series in a different order (the query defines it):\n strata [{}]\n \
             prometheus [{}]",
            shown(&s),
            shown(&p)
        ))
    };
    if s.len() != p.len() {
        return differ();
    }
    let mut i = 0;
    while i < p.len() {
        let mut j = i + 1;
        while j < p.len() && floats_equal(p[j].1, p[i].1) {
            j += 1;
        }
        let mut a: Vec<&String> = s[i..j].iter().map(|(m, _)| m).collect();
        let mut b: Vec<&String> = p[i..j].iter().map(|(m, _)| m).collect();
        a.sort();
        b.sort();
        if a != b {
            return differ();
        }
        i = j;
    }
    Ok(())
}

fn values_equal(query: &str, a: &Value, b: &Value) -> Result<(), String> {
    let (Some(ta), Some(tb)) = (a[0].as_f64(), b[0].as_f64()) else {
        return Err(format!("{query}: a point without a timestamp: {a} vs {b}"));
    };
    if ta != tb {
        return Err(format!("{query}: timestamps differ: {a} vs {b}"));
    }
    let x = parse_value(query, &a[1])?;
    let y = parse_value(query, &b[1])?;
    if floats_equal(x, y) {
        Ok(())
    } else {
        Err(format!(
            "{query}: values differ: strata {a}, prometheus {b}"
        ))
    }
}

/// Equal within 1e-9 relative; NaN equals NaN.
fn floats_equal(x: f64, y: f64) -> bool {
    (x.is_nan() && y.is_nan()) || x == y || ((x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
}

/// A sample value as the API renders it (a JSON string: a decimal, `NaN`,
/// `+Inf`, `-Inf`); anything else is an error.
fn parse_value(query: &str, v: &Value) -> Result<f64, String> {
    let text = v
        .as_str()
        .ok_or_else(|| format!("{query}: a value that is not a string: {v}"))?;
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        s => s
            .parse::<f64>()
            .ok()
            // Rust's parser takes "inf", "nan", "infinity": not the API's.
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{query}: a value that does not parse: {v}")),
    }
}

/// The comparison itself, fed answers that differ in one way each: every
/// difference must be reported, and only those.
/// A sub-second offset as far as possible from the scrape phases of every
/// target (scrapes happen every 1 s at a fixed phase per target).
pub(crate) async fn mid_scrape_offset(prometheus: &strata_integration::Prometheus) -> f64 {
    let (_, body) =
        strata_integration::get_json(&prometheus.url("/api/v1/query?query=timestamp(up)"), None)
            .await;
    let mut phases: Vec<f64> = body["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                .map(|ts| ts.fract())
                .collect()
        })
        .unwrap_or_default();
    phases.sort_by(f64::total_cmp);
    if phases.is_empty() {
        return 0.377;
    }
    // The middle of the largest gap between consecutive phases (circularly).
    let mut best = (0.0, 0.0);
    for (i, &p) in phases.iter().enumerate() {
        let next = if i + 1 < phases.len() {
            phases[i + 1]
        } else {
            phases[0] + 1.0
        };
        if next - p > best.0 {
            best = (next - p, p + (next - p) / 2.0);
        }
    }
    (best.1 * 1000.0).round().rem_euclid(1000.0) / 1000.0
}

/// When the reference Prometheus process started (unix seconds).
pub(crate) async fn prometheus_start_time(prometheus: &strata_integration::Prometheus) -> f64 {
    let url = prometheus
        .url("/api/v1/query?query=process_start_time_seconds%7Bjob%3D%22prometheus%22%7D");
    let (_, body) = strata_integration::get_json(&url, None).await;
    body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| strata_integration::now_ms() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(series: &[(&str, &str)]) -> Value {
        json!({
            "resultType": "vector",
            "result": series
                .iter()
                .map(|(pod, v)| json!({"metric": {"pod": pod}, "value": [100.5, v]}))
                .collect::<Vec<_>>(),
        })
    }

    fn matrix(series: &[(&str, &[(f64, &str)])]) -> Value {
        json!({
            "resultType": "matrix",
            "result": series
                .iter()
                .map(|(pod, points)| json!({
                    "metric": {"pod": pod},
                    "values": points.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>(),
        })
    }

    #[test]
    fn equal_answers_pass_in_any_order_when_the_query_defines_none() {
        let a = vector(&[("a", "1"), ("b", "2")]);
        let b = vector(&[("b", "2"), ("a", "1.0000000000001")]);
        assert_eq!(same_result("x", &a, &b, Expect::Data), Ok(2));
        let a = matrix(&[("a", &[(1.0, "NaN"), (2.0, "+Inf")])]);
        assert_eq!(same_result("x", &a, &a, Expect::Data), Ok(1));
    }

    #[test]
    fn a_different_value_label_set_timestamp_or_point_count_fails() {
        let base = vector(&[("a", "1"), ("b", "2")]);
        for other in [
            vector(&[("a", "1"), ("b", "2.1")]),
            vector(&[("a", "1"), ("c", "2")]),
            vector(&[("a", "1")]),
            vector(&[("a", "1"), ("b", "NaN")]),
        ] {
            assert!(
                same_result("x", &base, &other, Expect::Data).is_err(),
                "{other}"
            );
        }
        let m = matrix(&[("a", &[(1.0, "1"), (2.0, "2")])]);
        for other in [
            matrix(&[("a", &[(1.0, "1"), (3.0, "2")])]),
            matrix(&[("a", &[(1.0, "1")])]),
        ] {
            assert!(
                same_result("x", &m, &other, Expect::Data).is_err(),
                "{other}"
            );
        }
        let scalar = |v: &str| json!({"resultType": "scalar", "result": [1.0, v]});
        assert!(same_result("x", &scalar("1"), &scalar("2"), Expect::Data).is_err());
        assert!(same_result("x", &scalar("1"), &m, Expect::Data).is_err());
    }

    #[test]
    fn an_unparseable_value_fails_even_against_nan() {
        for bad in ["", "abc", "nan", "inf", "1,5"] {
            let a = vector(&[("a", bad)]);
            let b = vector(&[("a", "NaN")]);
            let err = same_result("x", &a, &b, Expect::Data).unwrap_err();
            assert!(err.contains("does not parse"), "{bad}: {err}");
            assert!(same_result("x", &b, &a, Expect::Data).is_err(), "{bad}");
        }
        let number =
            json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, 1.0]}]});
        assert!(same_result("x", &number, &number, Expect::Data).is_err());
        let no_ts =
            json!({"resultType": "vector", "result": [{"metric": {}, "value": [null, "1"]}]});
        assert!(same_result("x", &no_ts, &no_ts, Expect::Data).is_err());
        let missing = json!({"resultType": "vector"});
        assert!(same_result("x", &missing, &missing, Expect::Empty).is_err());
    }

    #[test]
    fn two_empty_answers_fail_unless_expected_empty() {
        let empty = vector(&[]);
        let err = same_result("absent(up)", &empty, &empty, Expect::Data).unwrap_err();
        assert!(err.contains("both answers are empty"), "{err}");
        assert_eq!(
            same_result("absent(up)", &empty, &empty, Expect::Empty),
            Ok(0)
        );
        let empty_range = matrix(&[]);
        assert!(same_result("x", &empty_range, &empty_range, Expect::Data).is_err());
        // Expected empty, but data on both sides (or one) is a failure too.
        let some = vector(&[("a", "1")]);
        assert!(same_result("x", &some, &some, Expect::Empty).is_err());
        assert!(same_result("x", &some, &empty, Expect::Empty).is_err());
        let scalar = json!({"resultType": "scalar", "result": [1.0, "1"]});
        assert!(same_result("x", &scalar, &scalar, Expect::Empty).is_err());
    }

    #[test]
    fn order_is_compared_where_the_query_defines_it() {
        let asc = vector(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let desc = vector(&[("c", "3"), ("b", "2"), ("a", "1")]);
        for q in [
            "sort(x)",
            "sort_desc(x)",
            "topk(3, x)",
            "bottomk(3, x)",
            "topk by (job) (3, x)",
            "sort_by_label(x, \"pod\")",
            "sort_by_label_desc(x, \"pod\")",
        ] {
            let err = same_result(q, &asc, &desc, Expect::Data).unwrap_err();
            assert!(err.contains("different order"), "{q}: {err}");
            assert_eq!(same_result(q, &desc, &desc, Expect::Data), Ok(3), "{q}");
        }
        for q in [
            "x",
            "sum by (pod) (topk(3, x))",
            "topk(3, x) or bottomk(3, x)",
        ] {
            assert_eq!(same_result(q, &asc, &desc, Expect::Data), Ok(3), "{q}");
        }
        // Ties may come in either order; a tie is not a licence to move
        // another series.
        let tie_a = vector(&[("a", "1"), ("b", "1"), ("c", "3")]);
        let tie_b = vector(&[("b", "1"), ("a", "1"), ("c", "3")]);
        let moved = vector(&[("c", "3"), ("a", "1"), ("b", "1")]);
        assert_eq!(same_result("sort(x)", &tie_a, &tie_b, Expect::Data), Ok(3));
        assert!(same_result("sort(x)", &tie_a, &moved, Expect::Data).is_err());
        // A range result is a matrix: no order to compare.
        let m1 = matrix(&[("a", &[(1.0, "1")]), ("b", &[(1.0, "2")])]);
        let m2 = matrix(&[("b", &[(1.0, "2")]), ("a", &[(1.0, "1")])]);
        assert_eq!(same_result("sort(x)", &m1, &m2, Expect::Data), Ok(2));
    }

    #[test]
    fn which_queries_define_an_order() {
        for q in [
            "sort(x)",
            " sort_desc(rate(x[5m])) ",
            "sort_by_label(x, \"a\", \"b\")",
            "sort_by_label_desc(x, \")\")",
            "topk(3, x)",
            "bottomk(2, rate(x[5m]))",
            "topk by (job) (1, rate(x[5m]))",
            "topk without (instance) (1, x)",
            "topk(1, x) by (job)",
            "topk (1, x)",
        ] {
            assert!(order_defined(q), "{q}");
        }
        for q in [
            "x",
            "sum(topk(3, x))",
            "topk(3, x) or bottomk(3, x)",
            "sort(x) + 1",
            "sorted_total",
            "topk_total",
            "count(sort(x))",
            "topk(1, x) by (job) + 1",
        ] {
            assert!(!order_defined(q), "{q}");
        }
    }
}
