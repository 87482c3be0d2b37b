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
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use strata_integration::{
    eventually, eventually_grows_by, get_json, get_with_headers, now_ms, push_series_at_once, Etcd,
    S3Server, Strata,
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

/// The processes of a test, and what was pushed.
struct Cluster {
    _etcd: Etcd,
    _s3: S3Server,
    data: tempfile::TempDir,
    /// The flags every process shares.
    common: Vec<String>,
    _ingester: Strata,
    store_gateways: Vec<Strata>,
    querier: Strata,
    /// When the test started (ms): the samples are 60 to 40 minutes older.
    t: i64,
}

const TOTAL: f64 = (SERIES * 80) as f64;

impl Cluster {
    /// The flags of the process `name` running `target`.
    fn flags(&self, target: &str, name: &str) -> Vec<String> {
        process_flags(&self.common, self.data.path(), target, name)
    }

    /// When queries read the pushed samples from blocks only.
    fn at(&self) -> i64 {
        self.t - 35 * MIN
    }
}

/// The flags of the process `name` running `target`, its directories under
/// `data`.
fn process_flags(common: &[String], data: &Path, target: &str, name: &str) -> Vec<String> {
    let mut args = common.to_vec();
    args.push(format!("-target={target}"));
    args.push(format!("-ingester.ring.instance_id={name}"));
    args.push(format!(
        "-blocks_storage.tsdb.dir={}",
        data.join(name).join("tsdb").display()
    ));
    args.push(format!(
        "-blocks_storage.bucket_store.sync_dir={}",
        data.join(name).join("sync").display()
    ));
    if target.contains("querier") {
        args.extend([
            "-querier.query_ingesters_within=20m".to_string(),
            "-querier.query_store_after=5m".to_string(),
            "-limits.ingestion_rate=10000000".to_string(),
            "-limits.ingestion_burst_size=100000000".to_string(),
        ]);
    }
    args
}

/// etcd, S3, an ingester, three store-gateways at RF 2 and a
/// distributor+querier; 20 minutes of samples pushed long enough ago that
/// only blocks hold them for the querier, and every one readable.
async fn cluster() -> Cluster {
    let etcd = Etcd::start().await;
    let s3 = S3Server::start().await;
    let mut common = etcd.ring_flags(1, 64);
    common.extend(s3.strata_flags());
    common.extend([
        "-store_gateway.sharding_ring.replication_factor=2".to_string(),
        "-blocks_storage.tsdb.block_ranges_period=2m".to_string(),
        "-blocks_storage.tsdb.head_compaction_interval=1s".to_string(),
        "-blocks_storage.tsdb.ship_interval=1s".to_string(),
        "-blocks_storage.bucket_store.sync_interval=1s".to_string(),
    ]);
    let data = tempfile::tempdir().unwrap();
    let flags = |target: &str, name: &str| process_flags(&common, data.path(), target, name);
    let ingester = Strata::start_with_flags(&flags("ingester", "ingester-0")).await;
    let mut store_gateways = Vec::new();
    for i in 0..3 {
        let args = flags("store-gateway", &format!("store-gateway-{i}"));
        store_gateways.push(Strata::start_with_flags(&args).await);
    }
    let querier = Strata::start_with_flags(&flags("distributor,querier", "front")).await;
    let cluster = Cluster {
        _etcd: etcd,
        _s3: s3,
        data,
        common,
        _ingester: ingester,
        store_gateways,
        querier,
        t: now_ms() / 1000 * 1000,
    };
    let querier = &cluster.querier;
    let t = cluster.t;

    // Samples every 15 s from T-60m to T-40m: older than the ingesters are
    // asked for at T, so a query at T reads them from blocks only.
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
    push_series_at_once(querier, TENANT, "sg_hang", &pushed).await;
    // A sample now moves the head on, so that all of the old ones are cut
    // into blocks and shipped.
    let now = BTreeMap::from([("now".to_string(), vec![(t, 1.0)])]);
    push_series_at_once(querier, TENANT, "sg_hang_now", &now).await;
    let at = cluster.at();
    eventually(
        "every sample to be read from the store-gateways",
        Duration::from_secs(120),
        || async {
            let (status, value, _, body) = count_samples(querier, at).await;
            assert!(value <= TOTAL, "{body}");
            (status == 200 && value == TOTAL).then_some(())
        },
    )
    .await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_gateway_s_blocks_are_read_from_their_other_owner() {
    let c = cluster().await;
    let (store_gateways, querier, t, at, total) =
        (&c.store_gateways, &c.querier, c.t, c.at(), TOTAL);
    // Every block is loaded by two store-gateways (and all of them are
    // loaded: the querier just required each one).
    let mut loaded = Vec::new();
    for sg in store_gateways {
        loaded.push(metric(sg, "strata_storegateway_blocks_loaded").await);
    }
    let blocks: f64 = loaded.iter().sum::<f64>() / 2.0;
    assert!(blocks >= 8.0, "blocks loaded per store-gateway: {loaded:?}");

    // Stop the store-gateway that holds the most blocks.
    let busiest = (0..3)
        .max_by(|&a, &b| loaded[a].total_cmp(&loaded[b]))
        .unwrap();
    let refetches_before = metric(querier, "strata_querier_storegateway_refetches_total").await;
    let stopped = Stopped(&store_gateways[busiest]);
    signal(stopped.0, "-STOP");
    let mut slowest = Duration::ZERO;
    for _ in 0..4 {
        let (status, value, took, body) = count_samples(querier, at).await;
        assert_eq!((status, value), (200, total), "{body}");
        slowest = slowest.max(took);
    }
    eprintln!("slowest query over the blocks with a store-gateway stopped: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(15),
        "a query waited {slowest:?} for the stopped store-gateway"
    );
    let refetches = metric(querier, "strata_querier_storegateway_refetches_total").await;
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
            let before = metric(querier, "strata_querier_storegateway_refetches_total").await;
            let (status, value, took, body) = count_samples(querier, at).await;
            assert_eq!((status, value), (200, total), "{body}");
            let after = metric(querier, "strata_querier_storegateway_refetches_total").await;
            (after == before && took < Duration::from_secs(5)).then_some(())
        },
    )
    .await;
}

/// SIGTERM, then waits for the process to exit.
async fn stop_gracefully(mut process: Strata) {
    signal(&process, "-TERM");
    eventually("the process to exit", Duration::from_secs(60), || {
        let running = process.process.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
}

/// The store-gateway ring as `process` sees it: instance → state.
async fn store_gateway_ring(process: &Strata) -> BTreeMap<String, String> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(process.url("/store-gateway/ring"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let id = i["id"].as_str().unwrap().to_string();
            (id, i["state"].as_str().unwrap().to_string())
        })
        .collect()
}

/// A rolling restart (issue 21 point 4) of the three store-gateways (RF 2),
/// one after the other — SIGTERM, exit, start again with the same ID and
/// sync dir, wait until the ring shows it ACTIVE — and then of the querier
/// while a second one answers (a load balancer stops sending to a querier
/// that is shutting down): queries never stop, none fails, none misses a
/// sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_store_gateways_and_queriers_fails_no_query() {
    let mut c = cluster().await;
    let second = Strata::start_with_flags(&c.flags("querier", "querier-2")).await;
    let at = c.at();
    let queriers = Arc::new(Mutex::new([c.querier.url(""), second.url("")]));
    // Which querier the reader asks: 0, 1, or both (2).
    let route = Arc::new(AtomicUsize::new(2));
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new((0usize, Vec::<String>::new())));
    let reader = {
        let (route, stop, outcomes) = (route.clone(), stop.clone(), outcomes.clone());
        let queriers = queriers.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let base = match route.load(Ordering::Relaxed) {
                    2 => queriers.lock()[n % 2].clone(),
                    i => queriers.lock()[i].clone(),
                };
                n += 1;
                let url = format!(
                    "{base}/prometheus/api/v1/query?query=sum(count_over_time(sg_hang%5B30m%5D))&time={}",
                    at as f64 / 1000.0
                );
                let (status, body) = get_json(&url, Some(TENANT)).await;
                let value = body["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string);
                {
                    let mut o = outcomes.lock();
                    o.0 += 1;
                    if status != 200 || value.as_deref() != Some("1600") {
                        o.1.push(format!("{base}: {status} {body}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let queries_grow = |n: usize| {
        let outcomes = outcomes.clone();
        eventually_grows_by("queries", Duration::from_secs(60), n, move || {
            outcomes.lock().0
        })
    };

    queries_grow(5).await;
    for i in 0..3 {
        let name = format!("store-gateway-{i}");
        let process = c.store_gateways.remove(i);
        stop_gracefully(process).await;
        queries_grow(5).await;
        let restarted = Strata::start_with_flags(&c.flags("store-gateway", &name)).await;
        c.store_gateways.insert(i, restarted);
        eventually(
            "all three store-gateways ACTIVE",
            Duration::from_secs(60),
            || async {
                let ring = store_gateway_ring(&c.querier).await;
                (ring.len() == 3 && ring.values().all(|s| s == "ACTIVE")).then_some(())
            },
        )
        .await;
        queries_grow(5).await;
    }

    // The querier: traffic to the second one only while it restarts (what a
    // load balancer does once its readiness fails); queries in flight when
    // SIGTERM arrives are finished first.
    route.store(1, Ordering::Relaxed);
    queries_grow(2).await;
    let front_flags = c.flags("distributor,querier", "front");
    let front = std::mem::replace(&mut c.querier, second);
    stop_gracefully(front).await;
    queries_grow(5).await;
    let restarted = Strata::start_with_flags(&front_flags).await;
    queriers.lock()[0] = restarted.url("");
    let second = std::mem::replace(&mut c.querier, restarted);
    route.store(2, Ordering::Relaxed);
    queries_grow(10).await;

    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    let (asked, failed) = outcomes.lock().clone();
    eprintln!("rolling restart of store-gateways and a querier: {asked} queries");
    assert!(
        failed.is_empty(),
        "{} of {asked} queries failed: {failed:?}",
        failed.len()
    );
    drop(second);
}
