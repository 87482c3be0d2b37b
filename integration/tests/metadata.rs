//! Metric metadata end to end: a real Prometheus 2.42 (Debian) scrapes itself
//! and Strata and remote-writes its metadata (`metadata_config.send`) to
//! Strata; Strata's `/api/v1/metadata` must come to equal that Prometheus's
//! own, for every metric, one metric, and the `limit` it supports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use strata_integration::{get_json, Prometheus, Strata};

/// metric → its entries, order-free (Prometheus lists a metric's entries in
/// map order).
type Metadata = BTreeMap<String, BTreeSet<(String, String, String)>>;

fn parse(body: &serde_json::Value) -> Option<Metadata> {
    if body["status"] != "success" {
        return None;
    }
    let data = body["data"].as_object()?;
    let mut out = Metadata::new();
    for (metric, entries) in data {
        let set = out.entry(metric.clone()).or_default();
        for e in entries.as_array()? {
            set.insert((
                e["type"].as_str()?.to_string(),
                e["help"].as_str()?.to_string(),
                e["unit"].as_str()?.to_string(),
            ));
        }
    }
    Some(out)
}

async fn metadata(url: &str, tenant: Option<&str>) -> Option<Metadata> {
    let (status, body) = get_json(url, tenant).await;
    (status == 200).then_some(())?;
    parse(&body)
}

/// What differs between the two answers, for the log while they converge.
fn difference(strata: &Metadata, prometheus: &Metadata) -> String {
    let only_strata: Vec<_> = strata
        .iter()
        .filter(|(k, v)| prometheus.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    let only_prometheus: Vec<_> = prometheus
        .iter()
        .filter(|(k, v)| strata.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    format!(
        "{} metrics in Strata, {} in Prometheus; differing in Strata: {only_strata:?}; in Prometheus: {only_prometheus:?}",
        strata.len(),
        prometheus.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_over_strata_equals_the_senders_own() {
    let strata = Strata::start(&["-target=all"]).await;
    let config = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{{{{PORT}}}}']}}]
  - job_name: strata
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
remote_write:
  - url: http://127.0.0.1:{port}/api/v1/push
    basic_auth: {{username: tenant-a, password: unused}}
    queue_config: {{batch_send_deadline: 1s, max_backoff: 1s}}
    metadata_config: {{send: true, send_interval: 2s}}
"#,
        port = strata.http_port
    );
    let prometheus = Prometheus::start(&config, &[]).await;

    let strata_all = strata.url("/prometheus/api/v1/metadata");
    let prometheus_all = prometheus.url("/api/v1/metadata");
    // Both targets' metric families appear over the first scrapes (a family
    // of labelled metrics shows up with its first child), so the two answers
    // are compared until they are equal twice in a row, a send interval
    // apart.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last_difference = String::new();
    let mut equal_before = false;
    let all = loop {
        let ours = metadata(&strata_all, Some("tenant-a")).await;
        let theirs = metadata(&prometheus_all, None).await;
        match (ours, theirs) {
            (Some(ours), Some(theirs)) if ours == theirs && !theirs.is_empty() => {
                if equal_before {
                    break theirs;
                }
                equal_before = true;
            }
            (ours, theirs) => {
                equal_before = false;
                let now = difference(&ours.unwrap_or_default(), &theirs.unwrap_or_default());
                if last_difference != now {
                    eprintln!("not yet equal: {now}");
                    last_difference = now;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Strata's metadata never equalled Prometheus's: {last_difference}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // Both scrape targets sent metadata: Prometheus's families and Strata's.
    assert!(all.contains_key("prometheus_tsdb_head_series"), "{all:?}");
    assert!(
        all.contains_key("strata_ingester_memory_metadata"),
        "{all:?}"
    );
    let both_jobs = all
        .get("process_cpu_seconds_total")
        .expect("process_cpu_seconds_total has metadata");
    eprintln!(
        "{} metrics with metadata equal; process_cpu_seconds_total has {} entries",
        all.len(),
        both_jobs.len()
    );

    // One metric, and Prometheus 2.42's `limit` (the number of metrics; its
    // choice among them is map order, so only the count is compared).
    for query in [
        "?metric=process_cpu_seconds_total",
        "?metric=no_such_metric",
    ] {
        let ours = metadata(&format!("{strata_all}{query}"), Some("tenant-a")).await;
        let theirs = metadata(&format!("{prometheus_all}{query}"), None).await;
        assert_eq!(ours, theirs, "{query}");
    }
    for limit in [0, 1, 5] {
        let query = format!("?limit={limit}");
        let ours = metadata(&format!("{strata_all}{query}"), Some("tenant-a"))
            .await
            .unwrap();
        let theirs = metadata(&format!("{prometheus_all}{query}"), None)
            .await
            .unwrap();
        assert_eq!(ours.len(), theirs.len(), "{query}");
        assert_eq!(ours.len(), limit, "{query}");
    }
    let (status, body) = get_json(&format!("{strata_all}?limit=lots"), Some("tenant-a")).await;
    let (theirs, their_body) = get_json(&format!("{prometheus_all}?limit=lots"), None).await;
    assert_eq!(
        (status, &body["errorType"]),
        (theirs, &their_body["errorType"])
    );
    assert_eq!(status, 400, "{body}");

    // Another tenant sees none of it.
    let other = metadata(&strata_all, Some("tenant-b")).await.unwrap();
    assert!(other.is_empty(), "{other:?}");
    drop(prometheus);
    drop(strata);
}
