//! Object storage answering slowly (issue 21 point 5): `-target=all` reads
//! and writes a real S3 server (s3s-fs) through a TCP proxy that, once the
//! blocks are loaded, holds every chunk of bytes for 2 s — every request
//! takes seconds but answers. The store-gateway's caches are off, so every
//! query over blocks goes to the bucket. Then:
//!
//! - pushes of recent samples are unaffected: every one 2xx, the slowest far
//!   below the delay (the write path never waits for the bucket);
//! - queries over the blocks answer within the querier's own limit
//!   (`querier.timeout` 10 s): complete, or an error, never a hang;
//! - blocks cut meanwhile are shipped through the slow bucket (slower, but
//!   they arrive);
//! - once it is fast again every sample is queryable.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_integration::proxy::TcpProxy;
use strata_integration::{eventually, get_json, now_ms, push_series_at_once, S3Server, Strata};

const TENANT: &str = "slow-s3";
const MIN: i64 = 60_000;
const SERIES: usize = 10;
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `sum(count_over_time(slow_s3[30m]))` at `at_ms`: status, value, time taken.
async fn count_samples(strata: &Strata, at_ms: i64) -> (u16, f64, Duration, String) {
    let url = format!(
        "{}?query=sum(count_over_time(slow_s3%5B30m%5D))&time={}",
        strata.url("/prometheus/api/v1/query"),
        at_ms as f64 / 1000.0
    );
    let started = Instant::now();
    let (status, body) = get_json(&url, Some(TENANT)).await;
    let value = body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (status, value, started.elapsed(), body.to_string())
}

/// The blocks (directories with a meta.json) of the tenant in the bucket.
fn blocks_in_bucket(s3: &S3Server) -> usize {
    let Ok(entries) = std::fs::read_dir(s3.bucket_dir().join(TENANT)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.json").is_file())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_object_storage_slows_old_queries_within_their_limit_and_no_push() {
    let s3 = S3Server::start().await;
    let proxy = TcpProxy::start().await;
    proxy.forward_to(s3.port);
    let data = tempfile::tempdir().unwrap();
    let mut flags: Vec<String> = s3
        .strata_flags()
        .into_iter()
        .map(|f| {
            if f.starts_with("-blocks_storage.s3.endpoint=") {
                format!("-blocks_storage.s3.endpoint=127.0.0.1:{}", proxy.port)
            } else {
                f
            }
        })
        .collect();
    flags.extend([
        "-target=all".to_string(),
        format!(
            "-blocks_storage.tsdb.dir={}",
            data.path().join("tsdb").display()
        ),
        format!(
            "-blocks_storage.bucket_store.sync_dir={}",
            data.path().join("sync").display()
        ),
        "-blocks_storage.tsdb.block_ranges_period=2m".to_string(),
        "-blocks_storage.tsdb.head_compaction_interval=1s".to_string(),
        "-blocks_storage.tsdb.ship_interval=1s".to_string(),
        "-blocks_storage.bucket_store.sync_interval=1s".to_string(),
        "-blocks_storage.bucket_store.postings_cache_max_bytes=0".to_string(),
        "-blocks_storage.bucket_store.series_cache_max_bytes=0".to_string(),
        "-blocks_storage.bucket_store.chunks_cache_max_bytes=0".to_string(),
        "-querier.query_ingesters_within=20m".to_string(),
        "-querier.query_store_after=5m".to_string(),
        format!("-querier.timeout={}s", QUERY_TIMEOUT.as_secs()),
    ]);
    let strata = Strata::start_with_flags(&flags).await;

    // Samples every 15 s from T-60m to T-40m (blocks only for the querier)
    // and one now, which moves the head on so that the old ones are cut.
    let t = now_ms() / 1000 * 1000;
    let old: BTreeMap<String, Vec<(i64, f64)>> = (0..SERIES)
        .map(|s| {
            let samples = (0..80)
                .map(|i| (t - 60 * MIN + i * 15_000, i as f64))
                .collect();
            (format!("s{s:02}"), samples)
        })
        .collect();
    push_series_at_once(&strata, TENANT, "slow_s3", &old).await;
    let now = BTreeMap::from([("now".to_string(), vec![(t, 1.0)])]);
    push_series_at_once(&strata, TENANT, "slow_s3_now", &now).await;
    let total = (SERIES * 80) as f64;
    let at = t - 35 * MIN;
    eventually(
        "the old samples in blocks",
        Duration::from_secs(120),
        || async {
            let (status, value, _, _) = count_samples(&strata, at).await;
            (status == 200 && value == total).then_some(())
        },
    )
    .await;

    proxy.slow_down(Duration::from_secs(2));

    // Pushes: recent samples, one round a second.
    let mut slowest_push = Duration::ZERO;
    for round in 0..10i64 {
        let recent: BTreeMap<String, Vec<(i64, f64)>> = (0..SERIES)
            .map(|s| (format!("s{s:02}"), vec![(t + round * 1000, round as f64)]))
            .collect();
        let started = Instant::now();
        push_series_at_once(&strata, TENANT, "slow_s3_recent", &recent).await;
        slowest_push = slowest_push.max(started.elapsed());
    }
    // Queries over the blocks: within the query timeout, complete or failed.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let (status, value, took, body) = count_samples(&strata, at).await;
        assert!(
            took < QUERY_TIMEOUT + Duration::from_secs(5),
            "a query over slow blocks took {took:?}: {status} {body}"
        );
        assert!(
            status == 200 && value == total || status >= 500,
            "neither complete nor an error: {status} {body}"
        );
        outcomes.push((status, took));
    }
    // Samples 6 minutes on make the head cut the recent ones into blocks
    // now: the shipper uploads them through the slow bucket.
    let before = blocks_in_bucket(&s3);
    let later = BTreeMap::from([("later".to_string(), vec![(t + 6 * MIN, 1.0)])]);
    let started = Instant::now();
    push_series_at_once(&strata, TENANT, "slow_s3_recent", &later).await;
    slowest_push = slowest_push.max(started.elapsed());
    let shipped_slowly = Instant::now();
    eventually(
        "a block shipped through the slow bucket",
        Duration::from_secs(180),
        || async { (blocks_in_bucket(&s3) > before).then_some(()) },
    )
    .await;
    let failures = strata
        .metric("strata_ingester_shipper_upload_failures_total")
        .await
        .unwrap_or(0.0);
    eprintln!(
        "slow bucket: slowest push {slowest_push:?}, queries {outcomes:?}, a block shipped after {:?}, upload failures {failures}",
        shipped_slowly.elapsed()
    );
    assert!(
        slowest_push < Duration::from_secs(1),
        "a push waited {slowest_push:?} for the slow bucket"
    );

    // Fast again: queries over the blocks are complete again.
    proxy.slow_down(Duration::ZERO);
    eventually(
        "queries to be complete again",
        Duration::from_secs(60),
        || async {
            let (status, value, _, _) = count_samples(&strata, at).await;
            (status == 200 && value == total).then_some(())
        },
    )
    .await;
}
