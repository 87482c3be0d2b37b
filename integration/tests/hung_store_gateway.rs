//! A hung store-gateway (issue 21): three store-gateways with
//! `store_gateway.sharding_ring.replication_factor=2` (an etcd ring, a real
//! S3 server), one ingester shipping 2-minute blocks, and a
//! distributor+querier that reads everything older than 5 minutes from the
//! store-gateways only. One store-gateway is stopped with SIGSTOP (it stays
//! healthy in the ring for its heartbeat timeout): every query over the
//! blocks still completes, with every sample, within the store-gateway
//! hedging delay (5 s) plus the query's own time — the blocks it was asked
//! first for are asked of their other owner — and the querier counts the
//! re-fetches. Resumed, it serves again and nothing is re-fetched.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_integration::{
    eventually, get_json, get_with_headers, now_ms, push_each_series, Etcd, S3Server, Strata,
};

const TENANT: &str = "team-sg";
const MIN: i64 = 60_000;
const SERIES: usize = 20;

fn signal(process: &Strata, sig: &str) {
    let pid = process.process.pid().to_string();
    let ok = Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Resumes a stopped process when dropped, so that a failed assertion does
/// not leave it stopped.
struct Stopped<'a>(&'a Strata);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// `sum(count_over_time(sg_hang[30m]))` at `at_ms`: the samples of the
/// store-only window; its status, value and how long it took.
async fn count_samples(querier: &Strata, at_ms: i64) -> (u16, f64, Duration, String) {
    let url = format!(
        "{}?query=sum(count_over_time(sg_hang%5B30m%5D))&time={}",
        querier.url("/prometheus/api/v1/query"),
        at_ms as f64 / 1000.0
    );
    let started = Instant::now();
    let (status, body) = get_json(&url, Some(TENANT)).await;
    let took = started.elapsed();
    let value = body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (status, value, took, body.to_string())
}

async fn metric(process: &Strata, name: &str) -> f64 {
    process.metric(name).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_gateway_s_blocks_are_read_from_their_other_owner() {
    let etcd = Etcd::start().await;
    let s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut common = etcd.ring_flags(1, 64);
    common.extend(s3.strata_flags());
    common.extend([
        "-store_gateway.sharding_ring.replication_factor=2".to_string(),
        "-blocks_storage.tsdb.block_ranges_period=2m".to_string(),
        "-blocks_storage.tsdb.head_compaction_interval=1s".to_string(),
        "-blocks_storage.tsdb.ship_interval=1s".to_string(),
        "-blocks_storage.bucket_store.sync_interval=1s".to_string(),
    ]);
    let start = |target: &str, name: String| {
        let mut args = common.clone();
        args.push(format!("-target={target}"));
        args.push(format!("-ingester.ring.instance_id={name}"));
        args.push(format!(
            "-blocks_storage.tsdb.dir={}",
            data.path().join(&name).join("tsdb").display()
        ));
        args.push(format!(
            "-blocks_storage.bucket_store.sync_dir={}",
            data.path().join(&name).join("sync").display()
        ));
        args
    };
    let ingester = Strata::start_with_flags(&start("ingester", "ingester-0".into())).await;
    let mut store_gateways = Vec::new();
    for i in 0..3 {
        let args = start("store-gateway", format!("store-gateway-{i}"));
        store_gateways.push(Strata::start_with_flags(&args).await);
    }
    let mut front = start("distributor,querier", "front".into());
    front.extend([
        "-querier.query_ingesters_within=20m".to_string(),
        "-querier.query_store_after=5m".to_string(),
        "-limits.ingestion_rate=10000000".to_string(),
        "-limits.ingestion_burst_size=100000000".to_string(),
    ]);
    let querier = Strata::start_with_flags(&front).await;

    // Samples every 15 s from T-60m to T-40m: older than the ingesters are
    // asked for at T, so a query at T reads them from blocks only.
    let t = now_ms() / 1000 * 1000;
    let mut pushed = BTreeMap::new();
    for s in 0..SERIES {
        let samples: Vec<(i64, f64)> = (0..80)
            .map(|i| (t - 60 * MIN + i * 15_000, (s * 100 + i as usize) as f64))
            .collect();
        pushed.insert(format!("s{s:02}"), samples);
    }
    eventually("the front to be ready", Duration::from_secs(30), || async {
        let (status, _) = get_with_headers(&querier.url("/ready"), &[]).await;
        (status == 200).then_some(())
    })
    .await;
    push_each_series(&querier, TENANT, "sg_hang", &pushed).await;
    // A sample now moves the head on, so that all of the old ones are cut
    // into blocks and shipped.
    let now = BTreeMap::from([("now".to_string(), vec![(t, 1.0)])]);
    push_each_series(&querier, TENANT, "sg_hang_now", &now).await;
    let total = (SERIES * 80) as f64;
    let at = t - 35 * MIN;
    eventually(
        "every sample to be read from the store-gateways",
        Duration::from_secs(120),
        || async {
            let (status, value, _, body) = count_samples(&querier, at).await;
            assert!(value <= total, "{body}");
            (status == 200 && value == total).then_some(())
        },
    )
    .await;
    // Every block is loaded by two store-gateways (and all of them are
    // loaded: the querier just required each one).
    let mut loaded = Vec::new();
    for sg in &store_gateways {
        loaded.push(metric(sg, "strata_storegateway_blocks_loaded").await);
    }
    let blocks: f64 = loaded.iter().sum::<f64>() / 2.0;
    assert!(blocks >= 8.0, "blocks loaded per store-gateway: {loaded:?}");

    // Stop the store-gateway that holds the most blocks.
    let busiest = (0..3)
        .max_by(|&a, &b| loaded[a].total_cmp(&loaded[b]))
        .unwrap();
    let refetches_before = metric(&querier, "strata_querier_storegateway_refetches_total").await;
    let stopped = Stopped(&store_gateways[busiest]);
    signal(stopped.0, "-STOP");
    let mut slowest = Duration::ZERO;
    for _ in 0..4 {
        let (status, value, took, body) = count_samples(&querier, at).await;
        assert_eq!((status, value), (200, total), "{body}");
        slowest = slowest.max(took);
    }
    eprintln!("slowest query over the blocks with a store-gateway stopped: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(15),
        "a query waited {slowest:?} for the stopped store-gateway"
    );
    let refetches = metric(&querier, "strata_querier_storegateway_refetches_total").await;
    assert!(refetches > refetches_before, "nothing was re-fetched");
    // The label endpoints over the blocks too.
    let url = querier.url(&format!(
        "/prometheus/api/v1/label/series/values?start={}&end={}",
        (t - 60 * MIN) / 1000,
        (t - 40 * MIN) / 1000
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), SERIES, "{body}");

    // Resumed: it answers again, and queries need nothing re-fetched.
    drop(stopped);
    eventually(
        "queries to need no re-fetch",
        Duration::from_secs(60),
        || async {
            let before = metric(&querier, "strata_querier_storegateway_refetches_total").await;
            let (status, value, took, body) = count_samples(&querier, at).await;
            assert_eq!((status, value), (200, total), "{body}");
            let after = metric(&querier, "strata_querier_storegateway_refetches_total").await;
            (after == before && took < Duration::from_secs(5)).then_some(())
        },
    )
    .await;
    drop(ingester);
}
