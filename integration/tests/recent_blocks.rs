//! Data the ingester has already cut from its head into a local block is still
//! answered with the querier's defaults: queriers ask ingesters for the last
//! `query_ingesters_within` (13 h) and store-gateways only for data older than
//! `query_store_after` (12 h), so ingesters must serve their local blocks (as
//! Mimir's do), or everything between the last cut and 12 h ago would vanish.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use strata_integration::{eventually, get_json, matrix_samples, now_ms, push_each_series, Strata};

const TENANT: &str = "recent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_cut_into_local_blocks_are_still_queried() {
    let strata = Strata::start(&[
        "-target=all",
        "-blocks_storage.tsdb.block_ranges_period=2m",
        "-blocks_storage.tsdb.head_compaction_interval=1s",
    ])
    .await;

    // 3 series, a sample every second over the last 7 minutes: more than 1.5
    // block ranges, so the head cuts its oldest ranges into blocks; and 420
    // samples a series, so whole chunks (120 samples) of the cut ranges leave
    // the head (it drops only whole chunks).
    let start = (now_ms() - 420_000) / 1000 * 1000;
    let mut pushed: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for s in 0..3 {
        let samples: Vec<(i64, f64)> = (0..420)
            .map(|i| (start + i * 1000, (s * 1000 + i) as f64))
            .collect();
        pushed.insert(format!("s{s}"), samples);
    }
    push_each_series(&strata, TENANT, "recent_test", &pushed).await;

    let metrics_url = strata.url("/metrics");
    // Cut, and truncated: fewer samples left in the head than were pushed.
    eventually(
        "the head to cut blocks and drop their samples",
        Duration::from_secs(30),
        || {
            let url = metrics_url.clone();
            async move {
                let text = reqwest::get(url).await.ok()?.text().await.ok()?;
                let sum = |name: &str| -> f64 {
                    text.lines()
                        .filter(|l| l.starts_with(name))
                        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .sum()
                };
                let cut = sum("strata_ingester_blocks_cut_total");
                let in_head = sum("strata_ingester_memory_samples{");
                (cut > 0.0 && in_head < 3.0 * 420.0).then_some(())
            }
        },
    )
    .await;

    let url = strata.url(&format!(
        "/prometheus/api/v1/query?query=recent_test%5B10m%5D&time={}",
        now_ms() as f64 / 1000.0
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    let got: BTreeMap<String, Vec<(i64, f64)>> =
        matrix_samples(&body, "series").into_iter().collect();
    let counts = |m: &BTreeMap<String, Vec<(i64, f64)>>| -> Vec<(String, usize)> {
        m.iter().map(|(k, v)| (k.clone(), v.len())).collect()
    };
    assert_eq!(counts(&got), counts(&pushed), "samples per series");
    assert_eq!(
        got, pushed,
        "every sample, once, head and cut blocks together"
    );
}
