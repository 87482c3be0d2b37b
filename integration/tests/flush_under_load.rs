//! An operator's `POST /ingester/flush` while a real Prometheus 2.42 pushes
//! every second must lose nothing. Before the flush left the most recent minute
//! in the head, each flush moved the head's lower bound to its newest sample,
//! and the batches Prometheus still had in flight (samples a second or two
//! older) were refused 400 out-of-bounds and dropped by Prometheus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use strata_integration::{
    eventually, get_json, now_ms, scrape_and_push_to_strata, Prometheus, Strata,
};

/// The timestamps (ms) of `selector`'s samples over the `seconds` before
/// `at` (unix s), as one server answers a range-vector instant query.
async fn sample_times(
    base: &str,
    tenant: Option<&str>,
    selector: &str,
    seconds: u64,
    at: f64,
) -> BTreeSet<(String, i64)> {
    let query = format!("{selector}[{seconds}s]");
    let url = format!(
        "{base}/api/v1/query?query={}&time={at}",
        query
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('=', "%3D")
            .replace('[', "%5B")
            .replace(']', "%5D")
    );
    let (status, body) = get_json(&url, tenant).await;
    assert_eq!(status, 200, "{url}: {body}");
    let mut out = BTreeSet::new();
    for series in body["data"]["result"].as_array().unwrap() {
        let metric = series["metric"].to_string();
        for v in series["values"].as_array().unwrap() {
            let t = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
            out.insert((metric.clone(), t));
        }
    }
    out
}

/// Prometheus's own counter `name`, summed over its series.
async fn prometheus_counter(prometheus: &Prometheus, name: &str) -> f64 {
    let (_, body) = get_json(
        &prometheus.url(&format!("/api/v1/query?query=sum({name})")),
        None,
    )
    .await;
    body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_flushes_under_a_pushing_prometheus_lose_nothing() {
    let strata = Strata::start(&["-target=all"]).await;
    let queue =
        "{batch_send_deadline: 1s, max_backoff: 1s, min_shards: 4, max_samples_per_send: 100}";
    let config = format!(
        r#"
global:
  scrape_interval: 1s
{}"#,
        scrape_and_push_to_strata(strata.http_port, "tenant-a", queue)
    );
    let prometheus = Prometheus::start(&config, &[]).await;
    let up = strata.url("/prometheus/api/v1/query?query=up");
    eventually(
        "Prometheus's samples in Strata",
        Duration::from_secs(60),
        || {
            let up = up.clone();
            async move {
                let (_, body) = get_json(&up, Some("tenant-a")).await;
                (body["data"]["result"].as_array()?.len() == 2).then_some(())
            }
        },
    )
    .await;
    // A flush leaves the last minute in the head: wait until there is more
    // than that, so that every flush below cuts (and ships) something.
    tokio::time::sleep(Duration::from_secs(65)).await;
    let began = now_ms();
    let mut blocks_written = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (status, body) = strata.flush().await;
        assert!(status.is_success(), "flush: {status} {body}");
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        blocks_written += stats["blocks_written"].as_u64().unwrap();
    }
    // Every sample Prometheus scraped of its own `up` and scrape metrics during
    // the flushes (up to 5 s before the check) is in Strata, from its blocks
    // or its head: checked until the last batches have arrived.
    let (prometheus_url, strata_url) = (prometheus.url(""), strata.url(""));
    for selector in [
        "up",
        "scrape_samples_scraped",
        "prometheus_tsdb_head_series",
    ] {
        let (p, s) = (prometheus_url.clone(), strata_url.clone());
        let missing = eventually(
            &format!("every scraped {selector} sample in Strata"),
            Duration::from_secs(60),
            || {
                let (p, s) = (p.clone(), s.clone());
                async move {
                    let at = (now_ms() - 5_000) as f64 / 1000.0;
                    let seconds = ((now_ms() - began) / 1000) as u64;
                    let reference = sample_times(&p, None, selector, seconds, at).await;
                    let stored = sample_times(&s, Some("tenant-a"), selector, seconds, at).await;
                    let missing: Vec<_> = reference.difference(&stored).cloned().collect();
                    (reference.len() > 30 && missing.is_empty()).then_some(missing)
                }
            },
        )
        .await;
        assert!(missing.is_empty());
    }
    let failed = prometheus_counter(
        &prometheus,
        "prometheus_remote_storage_samples_failed_total",
    )
    .await;
    let metrics = strata.metrics_text().await;
    let discarded: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("strata_discarded_samples_total"))
        .collect();
    assert_eq!(
        failed, 0.0,
        "Prometheus dropped samples Strata refused; Strata's discards: {discarded:?}"
    );
    eprintln!("10 flushes wrote {blocks_written} blocks; Prometheus failed 0 samples");
    assert!(blocks_written > 0, "the flushes cut nothing");
}
