//! A real Prometheus 2.42 (Debian) scrapes itself and Strata and remote-writes to
//! Strata with `basic_auth` (user = tenant), exactly as the README tells users to.
//! Strata must return the pushed series, and its answers to a set of queries
//! must equal what that Prometheus answers from its own copy of the same data.

mod common;

use std::time::Duration;

use common::{mid_scrape_offset, prometheus_start_time};
use strata_integration::{
    eventually, get_json, now_ms, scrape_and_push_to_strata, Prometheus, Strata,
};

const QUERIES: &[&str] = &[
    "up",
    "sum by (job) (up)",
    "scrape_samples_scraped * 2 + 1",
    // Strata follows Prometheus 3 semantics; the reference here is 2.42. Their
    // `rate` differs only for counters whose value is small next to their
    // increase (3.x clamps the extrapolation to the zero point after, 2.x
    // before, the half-interval rule), so the windows compared start well
    // after Prometheus did (see the wait before choosing T below).
    "rate(prometheus_tsdb_head_samples_appended_total[10s])",
    "sum by (job) (rate(process_cpu_seconds_total[10s]))",
    "max_over_time(process_resident_memory_bytes[10s])",
    "count by (job) ({__name__=~\"scrape_.*\"})",
    "prometheus_tsdb_head_series / 2",
];

/// Strata's discarded-sample counters and push answers by status.
async fn strata_write_diagnostics(strata_url: &str) -> String {
    let text = match reqwest::get(format!("{strata_url}/metrics")).await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(e) => return format!("cannot read Strata's /metrics: {e}"),
    };
    text.lines()
        .filter(|l| {
            l.starts_with("strata_discarded_samples_total")
                || (l.starts_with("strata_request_duration_seconds_count")
                    && l.contains("/api/v1/push"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_pushes_and_strata_answers_like_prometheus() {
    let strata = Strata::start(&["-target=all"]).await;
    let queue = "{batch_send_deadline: 1s, max_backoff: 1s}";
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
{}"#,
        scrape_and_push_to_strata(strata.http_port, "tenant-a", queue)
    );
    let prometheus = Prometheus::start(&config, &[]).await;

    // The README's query: basic-auth user as tenant, and the header form.
    let client = reqwest::Client::new();
    let up_url = strata.url("/prometheus/api/v1/query?query=up");
    let jobs = eventually("both up series in Strata", Duration::from_secs(60), || {
        let client = client.clone();
        let up_url = up_url.clone();
        async move {
            let resp = client
                .get(&up_url)
                .basic_auth("tenant-a", Some(""))
                .send()
                .await
                .ok()?;
            let body: serde_json::Value = resp.json().await.ok()?;
            let result = body["data"]["result"].as_array()?.clone();
            let mut jobs: Vec<String> = result
                .iter()
                .filter_map(|r| r["metric"]["job"].as_str().map(String::from))
                .collect();
            jobs.sort();
            (jobs.len() == 2).then_some(jobs)
        }
    })
    .await;
    assert_eq!(jobs, ["prometheus", "strata"]);
    let (status, body) = get_json(&up_url, Some("tenant-a")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["result"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let (_, other) = get_json(&up_url, Some("tenant-b")).await;
    assert_eq!(
        other["data"]["result"],
        serde_json::json!([]),
        "tenant-b must not see tenant-a's data"
    );

    // Compare at a time whose samples have certainly been pushed: T is in the
    // past by more than the remote-write batch deadline when we compare. T sits
    // half a scrape interval away from every scrape timestamp of both targets,
    // so no window edge falls on a sample (Prometheus 2 uses closed range
    // windows, 3 left-open ones; they differ only on an exact hit).
    //
    // Every window compared (the range query's earliest starts 18 s before T)
    // must also begin well after Prometheus started: 2.42 and 3.x extrapolate a
    // counter's rate differently while its first sample is within about one
    // scrape interval of its zero point, which is the case only at start-up.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let started = prometheus_start_time(&prometheus).await;
    let oldest_window_start_ms = now_ms() - 4_000 - 18_000;
    let settle_ms = (started * 1000.0) as i64 + 10_000 - oldest_window_start_ms;
    if settle_ms > 0 {
        tokio::time::sleep(Duration::from_millis(settle_ms as u64)).await;
    }
    let t = ((now_ms() - 4_000) as f64 / 1000.0).floor() + mid_scrape_offset(&prometheus).await;
    let strata_url = strata.url("");
    let prometheus_url = prometheus.url("");
    let mut compared = 0;
    for query in QUERIES {
        let n = eventually(
            &format!("{query} to agree"),
            Duration::from_secs(15),
            || {
                let (s, p) = (strata_url.clone(), prometheus_url.clone());
                async move {
                    match common::compare_instant_and_last_8s(&s, "tenant-a", &p, query, t).await {
                        Ok(n) => Some(n),
                        Err(e) => {
                            eprintln!("not yet equal: {e}");
                            // What Strata rejected or answered to pushes, to
                            // tell lost data from a semantic difference.
                            eprintln!("{}", strata_write_diagnostics(&s).await);
                            None
                        }
                    }
                }
            },
        )
        .await;
        assert!(n > 0, "{query} returned no series from either server");
        compared += n;
    }
    eprintln!(
        "compared {compared} series results over {} queries",
        QUERIES.len()
    );
    drop(prometheus);
    drop(strata);
}
