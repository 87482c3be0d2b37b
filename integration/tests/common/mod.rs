//! Comparing Strata's answers with a reference Prometheus's.

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

/// Queries `query` at `time` (unix seconds) on both servers and checks that the
/// result sets are equal: same label sets, values equal within 1e-9 relative
/// (NaN equals NaN). Returns the number of series compared, or the difference.
pub(crate) async fn compare_instant(
    strata_url: &str,
    tenant: &str,
    prometheus_url: &str,
    query: &str,
    time: f64,
) -> Result<usize, String> {
    let q = urlencode(query);
    let (s_status, s) = strata_integration::get_json(
        &format!("{strata_url}/prometheus/api/v1/query?query={q}&time={time}"),
        Some(tenant),
    )
    .await;
    let (p_status, p) = strata_integration::get_json(
        &format!("{prometheus_url}/api/v1/query?query={q}&time={time}"),
        None,
    )
    .await;
    if (s_status, p_status) != (200, 200) {
        return Err(format!(
            "{query}: strata {s_status} {s}, prometheus {p_status} {p}"
        ));
    }
    same_result(query, &s["data"], &p["data"])
}

/// The same for a range query.
pub(crate) async fn compare_range(
    strata_url: &str,
    tenant: &str,
    prometheus_url: &str,
    query: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<usize, String> {
    let q = urlencode(query);
    let params = format!("query={q}&start={start}&end={end}&step={step}");
    let (s_status, s) = strata_integration::get_json(
        &format!("{strata_url}/prometheus/api/v1/query_range?{params}"),
        Some(tenant),
    )
    .await;
    let (p_status, p) = strata_integration::get_json(
        &format!("{prometheus_url}/api/v1/query_range?{params}"),
        None,
    )
    .await;
    if (s_status, p_status) != (200, 200) {
        return Err(format!(
            "{query}: strata {s_status} {s}, prometheus {p_status} {p}"
        ));
    }
    same_result(query, &s["data"], &p["data"])
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

fn same_result(query: &str, strata: &Value, prometheus: &Value) -> Result<usize, String> {
    if strata["resultType"] != prometheus["resultType"] {
        return Err(format!(
            "{query}: result types differ: {} vs {}",
            strata["resultType"], prometheus["resultType"]
        ));
    }
    if strata["resultType"] == "scalar" || strata["resultType"] == "string" {
        values_equal(query, &strata["result"], &prometheus["result"])?;
        return Ok(1);
    }
    let mut s = strata["result"].as_array().cloned().unwrap_or_default();
    let mut p = prometheus["result"].as_array().cloned().unwrap_or_default();
    let key = |v: &Value| v["metric"].to_string();
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
        if a.get("value").is_some() {
            values_equal(query, &a["value"], &b["value"])?;
        } else {
            let empty = Vec::new();
            let av = a["values"].as_array().unwrap_or(&empty);
            let bv = b["values"].as_array().unwrap_or(&empty);
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

fn values_equal(query: &str, a: &Value, b: &Value) -> Result<(), String> {
    if a[0].as_f64() != b[0].as_f64() {
        return Err(format!("{query}: timestamps differ: {a} vs {b}"));
    }
    let x = parse_value(&a[1]);
    let y = parse_value(&b[1]);
    let equal =
        (x.is_nan() && y.is_nan()) || x == y || ((x - y).abs() <= 1e-9 * x.abs().max(y.abs()));
    if equal {
        Ok(())
    } else {
        Err(format!(
            "{query}: values differ: strata {a}, prometheus {b}"
        ))
    }
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str().unwrap_or_default() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or(f64::NAN),
    }
}
