//! A rolling restart (issue 21 point 4): three ingesters (RF=3, etcd ring,
//! each its own data directory) are restarted one after the other — SIGTERM,
//! wait for the process to exit, start it again with the same instance ID and
//! directory, wait until the ring shows it ACTIVE — while a pusher and a
//! querier keep going. No acknowledged sample is lost, and no query fails.
//!
//! While one ingester is down, writes reach the other two (the quorum) and
//! reads take both of them; once it is back, a read of it and one other still
//! holds every acknowledged sample (each is on two of the three).

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_integration::{
    eventually, eventually_grows_by, get_json, local_storage_flags, now_ms,
    one_sample_per_series_body, push_raw, Etcd, Strata,
};

const TENANT: &str = "team-a";
const SERIES: usize = 20;

async fn start(target: &str, extra: &[String], etcd: &Etcd) -> Strata {
    let mut args = etcd.ring_flags(3, 64);
    args.push(format!("-target={target}"));
    args.extend(extra.iter().cloned());
    Strata::start_with_flags(&args).await
}

async fn start_ingester(id: &str, dir: &Path, etcd: &Etcd) -> Strata {
    let mut extra = vec![format!("-ingester.ring.instance_id={id}")];
    extra.extend(local_storage_flags(dir));
    start("ingester", &extra, etcd).await
}

/// SIGTERM, then waits for the process to exit (it leaves the ring first).
async fn stop_gracefully(mut ingester: Strata) {
    let pid = ingester.process.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    eventually("the ingester to exit", Duration::from_secs(60), || {
        let running = ingester.process.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
}

/// The instances the ring page of `process` lists, with their states.
async fn ring(process: &Strata) -> BTreeMap<String, String> {
    let body = process.ring_json().await;
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_ingesters_loses_nothing_and_fails_no_query() {
    let etcd = Etcd::start().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ids = ["ingester-0", "ingester-1", "ingester-2"];
    let mut ingesters = Vec::new();
    for (id, dir) in ids.iter().zip(&dirs) {
        ingesters.push(Some(start_ingester(id, dir.path(), &etcd).await));
    }
    let distributor = Arc::new(start("distributor", &[], &etcd).await);
    let querier = Arc::new(start("querier", &[], &etcd).await);

    let names: Vec<String> = (0..SERIES).map(|i| format!("s{i:02}")).collect();
    let base = (now_ms() - 300_000) / 1000 * 1000;
    let push = {
        let distributor = distributor.clone();
        let names = names.clone();
        move |round: i64| {
            let distributor = distributor.clone();
            let body = one_sample_per_series_body(
                "rolling_test_total",
                &names,
                (base + round * 100, round as f64),
            );
            async move { push_raw(&distributor.url("/api/v1/push"), Some(TENANT), body).await }
        }
    };
    eventually("pushes to be accepted", Duration::from_secs(30), || {
        let push = push.clone();
        async move { (push(0).await.0 == 200).then_some(()) }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::new(Mutex::new(BTreeSet::from([0])));
    let push_failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let pusher = {
        let (stop, acked, failures, push) = (
            stop.clone(),
            acked.clone(),
            push_failures.clone(),
            push.clone(),
        );
        tokio::spawn(async move {
            let mut round = 1;
            while !stop.load(Ordering::Relaxed) {
                let (status, text) = push(round).await;
                if status == 200 {
                    acked.lock().insert(round);
                } else {
                    failures
                        .lock()
                        .push(format!("round {round}: {status} {text}"));
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let queries = Arc::new(Mutex::new((0usize, Vec::<String>::new())));
    let reader = {
        let (stop, queries, querier) = (stop.clone(), queries.clone(), querier.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Every series has a sample in the 10 minutes before.
                let url = format!(
                    "{}?query=count(last_over_time(rolling_test_total%5B10m%5D))&time={}",
                    querier.url("/prometheus/api/v1/query"),
                    (base + 60_000) as f64 / 1000.0
                );
                let (status, body) = get_json(&url, Some(TENANT)).await;
                let count = body["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string);
                {
                    let mut q = queries.lock();
                    q.0 += 1;
                    if status != 200 || count.as_deref() != Some("20") {
                        q.1.push(format!("{status} {body}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let rounds = |n: usize| {
        let acked = acked.clone();
        eventually_grows_by(
            "acknowledged rounds",
            Duration::from_secs(30),
            n,
            move || acked.lock().len(),
        )
    };

    rounds(10).await;
    for (i, id) in ids.iter().enumerate() {
        stop_gracefully(ingesters[i].take().unwrap()).await;
        rounds(5).await;
        ingesters[i] = Some(start_ingester(id, dirs[i].path(), &etcd).await);
        eventually("all three ACTIVE again", Duration::from_secs(60), || {
            let querier = querier.clone();
            async move {
                let ring = ring(&querier).await;
                (ring.len() == 3 && ring.values().all(|s| s == "ACTIVE")).then_some(())
            }
        })
        .await;
        rounds(5).await;
    }
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
    reader.await.unwrap();

    let (asked, failed) = queries.lock().clone();
    assert!(asked >= 10, "only {asked} queries ran");
    assert!(
        failed.is_empty(),
        "{} of {asked} queries failed: {failed:?}",
        failed.len()
    );
    eprintln!(
        "rolling restart: {} rounds acknowledged, {} pushes refused, {asked} queries, none failed",
        acked.lock().len(),
        push_failures.lock().len()
    );

    // Every acknowledged round is in every series, in three reads (each
    // starts at another ingester of the ring).
    let acked = acked.lock().clone();
    let last = *acked.iter().next_back().unwrap();
    for _ in 0..3 {
        all_acknowledged_are_stored(&querier, base, last, &acked).await;
    }
}

async fn all_acknowledged_are_stored(
    querier: &Strata,
    base: i64,
    last: i64,
    acked: &BTreeSet<i64>,
) {
    let url = format!(
        "{}?query=rolling_test_total%5B10m%5D&time={}",
        querier.url("/prometheus/api/v1/query"),
        (base + last * 100) as f64 / 1000.0
    );
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    let result = body["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), SERIES, "{body}");
    for series in result {
        let stored: BTreeSet<i64> = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| ((v[0].as_f64().unwrap() * 1000.0).round() as i64 - base) / 100)
            .collect();
        let lost: Vec<&i64> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "{}: acknowledged rounds lost: {lost:?}",
            series["metric"]
        );
    }
}
