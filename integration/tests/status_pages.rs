//! The Prometheus API's status pages (`status/config`, `flags`,
//! `runtimeinfo`, `tsdb`) answer in the shape a real Prometheus 2.42 gives
//! them: the same fields, of the same JSON types, so that Grafana and
//! Prometheus's own tooling read them. The data differ (another program);
//! the numbers of `status/tsdb` are checked against what was pushed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use strata_integration::{eventually, get_json, scrape_and_push_to_strata, Prometheus, Strata};

/// Each field of `value` (objects recursively; an array by its first item)
/// as `path → JSON type`, so two answers can be compared by shape.
fn shape(value: &Value, path: &str, out: &mut BTreeMap<String, &'static str>) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    out.insert(path.to_string(), kind);
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                shape(child, &format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                shape(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn shape_of(value: &Value) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    shape(value, "", &mut out);
    out
}

#[tokio::test]
async fn status_pages_have_prometheus_s_shape() {
    let strata = Strata::start(&["-target=all"]).await;
    let config = format!(
        "global: {{scrape_interval: 1s}}\n{}",
        scrape_and_push_to_strata(strata.http_port, "team-a", "{batch_send_deadline: 1s}")
    );
    let prometheus = Prometheus::start(&config, &[]).await;
    // Both have the same series once Strata holds Prometheus's and its own `up`.
    eventually(
        "both up series in Strata",
        Duration::from_secs(60),
        || async {
            let (_, body) = get_json(&strata.url("/api/v1/query?query=up"), Some("team-a")).await;
            (body["data"]["result"].as_array().map_or(0, Vec::len) == 2).then_some(())
        },
    )
    .await;

    for page in ["config", "flags", "runtimeinfo", "tsdb"] {
        let path = format!("/api/v1/status/{page}");
        let (p_status, p_body) = get_json(&prometheus.url(&path), None).await;
        let (s_status, s_body) = get_json(&strata.url(&path), Some("team-a")).await;
        assert_eq!(p_status, 200, "prometheus {path}: {p_body}");
        assert_eq!(s_status, 200, "strata {path}: {s_body}");
        let (mut want, mut got) = (shape_of(&p_body), shape_of(&s_body));
        if page == "flags" {
            // A map of flag names: compare its value type, not its keys.
            want.retain(|k, _| k.is_empty() || k == ".status" || k == ".data");
            got.retain(|k, _| k.is_empty() || k == ".status" || k == ".data");
            let all_strings = |v: &Value| v.as_object().unwrap().values().all(Value::is_string);
            assert!(all_strings(&p_body["data"]) && all_strings(&s_body["data"]));
        }
        if page == "tsdb" {
            // Strata reads label sets, not chunks: no chunk count.
            assert_eq!(got.remove(".data.headStats.chunkCount"), Some("null"));
            want.remove(".data.headStats.chunkCount");
        }
        assert_eq!(got, want, "{path}\nstrata: {s_body}\nprometheus: {p_body}");
    }

    let (_, tsdb) = get_json(&strata.url("/api/v1/status/tsdb?limit=3"), Some("team-a")).await;
    let data = &tsdb["data"];
    let (_, series) = get_json(
        &strata.url("/api/v1/series?match[]={__name__=~\".%2B\"}"),
        Some("team-a"),
    )
    .await;
    let pushed = series["data"].as_array().unwrap().len() as u64;
    let counted = data["headStats"]["numSeries"].as_u64().unwrap();
    // Scrapes go on meanwhile: new series may appear, none vanish.
    assert!(counted > 100 && counted <= pushed, "{counted} of {pushed}");
    assert_eq!(data["seriesCountByMetricName"].as_array().unwrap().len(), 3);
    let (_, up) = get_json(
        &strata.url("/api/v1/status/tsdb?limit=10000"),
        Some("team-a"),
    )
    .await;
    let up_series = up["data"]["seriesCountByMetricName"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "up")
        .map(|s| s["value"].clone());
    assert_eq!(up_series, Some(Value::from(2)), "{up}");
    // The configuration's secrets stay masked on the API as on /config.
    let (_, config) = get_json(&strata.url("/api/v1/status/config"), Some("team-a")).await;
    assert!(config["data"]["yaml"]
        .as_str()
        .unwrap()
        .contains("http_listen_port"));
    drop(prometheus);
}
