//! vmagent (Debian `victoria-metrics` package) scrapes itself and Strata and
//! remote-writes with an `X-Scope-OrgID` header to Strata and, at the same time,
//! to a Prometheus 2.42 remote-write receiver: both hold the same samples, so
//! Strata's answers must equal Prometheus's.

mod common;

use std::time::Duration;

use strata_integration::{eventually, get_json, now_ms, Prometheus, Strata, Vmagent};

const QUERIES: &[&str] = &[
    "up",
    "scrape_samples_scraped",
    "sum by (job) (scrape_samples_scraped)",
    "avg_over_time(scrape_samples_scraped[10s])",
    "max_over_time(go_goroutines[10s]) - 1",
    "count({__name__=~\"scrape_.+\"})",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmagent_pushes_with_tenant_header() {
    let strata = Strata::start(&["-target=all"]).await;
    let prometheus = Prometheus::start(
        "global:\n  scrape_interval: 1h\n",
        &["--web.enable-remote-write-receiver"],
    )
    .await;
    let scrape = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: vmagent
    static_configs: [{{targets: ['127.0.0.1:{{{{PORT}}}}']}}]
  - job_name: strata
    static_configs: [{{targets: ['127.0.0.1:{}']}}]
"#,
        strata.http_port
    );
    let urls = [strata.url("/api/v1/push"), prometheus.url("/api/v1/write")];
    let vmagent = Vmagent::start(&scrape, &urls, "X-Scope-OrgID: tenant-v").await;

    let up_url = strata.url("/prometheus/api/v1/query?query=up");
    eventually("both up series in Strata", Duration::from_secs(60), || {
        let up_url = up_url.clone();
        async move {
            let (_, body) = get_json(&up_url, Some("tenant-v")).await;
            (body["data"]["result"].as_array().map(Vec::len) == Some(2)).then_some(())
        }
    })
    .await;

    tokio::time::sleep(Duration::from_secs(12)).await;
    let t = ((now_ms() - 4_000) as f64 / 1000.0).floor() + 0.377;
    let (s, p) = (strata.url(""), prometheus.url(""));
    for query in QUERIES {
        let n = eventually(
            &format!("{query} to agree"),
            Duration::from_secs(15),
            || {
                let (s, p) = (s.clone(), p.clone());
                async move {
                    common::compare_instant_and_last_8s(&s, "tenant-v", &p, query, t)
                        .await
                        .map_err(|e| eprintln!("not yet equal: {e}"))
                        .ok()
                }
            },
        )
        .await;
        assert!(n > 0, "{query} returned no series from either server");
    }
    drop(vmagent);
}
