//! An acknowledged sample survives `kill -9`: a pusher records every push
//! answered 200, the ingester is killed with SIGKILL mid-stream and restarted on
//! the same data directory, and every acknowledged sample comes back from a
//! query. Once for `-target=all`, once for a 3-ingester cluster (RF=3) where
//! every ingester is killed at some point.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_integration::{
    encode_write_request, eventually, get_json, now_ms, write_request, Etcd, Strata,
};

const SERIES: usize = 20;
const TENANT: &str = "crash-test";

/// Pushes request after request (sample `i` of every series at `base + i`)
/// until stopped; returns the `i` of every push answered 200.
fn spawn_pusher(
    url: String,
    base: i64,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<BTreeSet<i64>>>, tokio::task::JoinHandle<()>) {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let acked2 = acked.clone();
    let task = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let names: Vec<String> = (0..SERIES).map(|i| format!("s{i:02}")).collect();
        let mut i = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let samples = [(base + i, i as f64)];
            let labels: Vec<[(&str, &str); 2]> = names
                .iter()
                .map(|n| [("__name__", "crash_test"), ("series", n.as_str())])
                .collect();
            let series: Vec<_> = labels.iter().map(|l| (&l[..], &samples[..])).collect();
            let body = encode_write_request(&write_request(&series));
            let answer = client
                .post(&url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Scope-OrgID", TENANT)
                .body(body)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().as_u16() == 200 => {
                    acked2.lock().insert(i);
                }
                // Refused or failed: not acknowledged, the pusher moves on.
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
            i += 1;
        }
    });
    (acked, task)
}

/// Every series' timestamps in `(base - 1h, base + 1h]`, relative to `base`.
async fn stored(querier: &Strata, base: i64) -> Result<Vec<BTreeSet<i64>>, String> {
    let end = base + 3_600_000;
    let url = querier.url(&format!(
        "/prometheus/api/v1/query?query=crash_test[2h]&time={}",
        end as f64 / 1000.0
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (v[0].as_f64().unwrap() * 1000.0).round() as i64 - base)
                .collect()
        })
        .collect())
}

/// Checks that every series holds every acknowledged sample.
fn check_all_acked(got: &[BTreeSet<i64>], acked: &BTreeSet<i64>) -> Result<(), String> {
    if got.len() != SERIES {
        return Err(format!("{} series, want {SERIES}", got.len()));
    }
    for (n, series) in got.iter().enumerate() {
        let missing: Vec<_> = acked.difference(series).take(5).collect();
        if !missing.is_empty() {
            return Err(format!(
                "series {n} lacks acknowledged samples {missing:?} ({} acked, {} stored)",
                acked.len(),
                series.len()
            ));
        }
    }
    Ok(())
}

fn dir_flag(dir: &Path) -> [String; 2] {
    [
        format!("-blocks_storage.tsdb.dir={}", dir.join("tsdb").display()),
        format!(
            "-blocks_storage.filesystem.dir={}",
            dir.join("blocks").display()
        ),
    ]
}

async fn start_all(dir: &Path) -> Strata {
    let flags = dir_flag(dir);
    Strata::start(&["-target=all", &flags[0], &flags[1]]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_samples_survive_kill_9_of_target_all() {
    let data = tempfile::tempdir().unwrap();
    let strata = start_all(data.path()).await;
    let base = now_ms() - 600_000;
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, pusher) = spawn_pusher(strata.url("/api/v1/push"), base, stop.clone());
    eventually("300 acknowledged pushes", Duration::from_secs(60), || {
        let n = acked.lock().len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    // SIGKILL while the pusher is mid-stream.
    drop(strata);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
    let acked = acked.lock().clone();
    assert!(acked.len() >= 300);

    let strata = start_all(data.path()).await;
    let got = stored(&strata, base).await.unwrap();
    if let Err(e) = check_all_acked(&got, &acked) {
        panic!("{e}\n{}", strata.process.logs());
    }
    let logs = strata.process.logs();
    assert!(logs.contains("replayed the WAL"), "{logs}");
}

fn ring_flags(etcd: &Etcd) -> Vec<String> {
    vec![
        "-ingester.ring.kvstore.store=etcd".to_string(),
        format!("-ingester.ring.kvstore.etcd.endpoints={}", etcd.endpoint()),
        "-ingester.ring.replication_factor=3".to_string(),
        "-ingester.ring.heartbeat_period=1s".to_string(),
        "-ingester.ring.num_tokens=32".to_string(),
    ]
}

async fn start_node(target: &str, etcd: &Etcd, extra: &[String]) -> Strata {
    let mut args = ring_flags(etcd);
    args.push(format!("-target={target}"));
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Strata::start(&args).await
}

async fn start_ingester(etcd: &Etcd, id: &str, dir: &Path) -> Strata {
    let mut extra = vec![format!("-ingester.ring.instance_id={id}")];
    extra.extend(dir_flag(dir));
    start_node("ingester", etcd, &extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_samples_survive_kill_9_of_every_ingester_in_a_cluster() {
    let etcd = Etcd::start().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ids = ["ingester-1", "ingester-2", "ingester-3"];
    let mut ingesters = Vec::new();
    for (id, dir) in ids.iter().zip(&dirs) {
        ingesters.push(Some(start_ingester(&etcd, id, dir.path()).await));
    }
    let distributor = start_node("distributor", &etcd, &[]).await;
    let querier = start_node("querier", &etcd, &[]).await;
    let base = now_ms() - 600_000;
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, pusher) = spawn_pusher(distributor.url("/api/v1/push"), base, stop.clone());
    let wait_for = |n: usize| {
        let acked = acked.clone();
        async move {
            let start = acked.lock().len();
            eventually("acknowledged pushes", Duration::from_secs(60), || {
                let now = acked.lock().len();
                async move { (now >= start + n).then_some(()) }
            })
            .await;
        }
    };
    wait_for(200).await;
    // kill -9 one ingester mid-stream; pushes go on with a quorum of two.
    ingesters[0] = None;
    wait_for(100).await;
    ingesters[0] = Some(start_ingester(&etcd, ids[0], dirs[0].path()).await);
    wait_for(100).await;
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
    let acked = acked.lock().clone();

    // Now kill -9 the other two and bring them back on their directories.
    ingesters[1] = None;
    ingesters[2] = None;
    for i in 1..3 {
        ingesters[i] = Some(start_ingester(&etcd, ids[i], dirs[i].path()).await);
    }
    let result = eventually(
        "every acknowledged sample from the restarted cluster",
        Duration::from_secs(60),
        || {
            let (querier, acked) = (&querier, &acked);
            async move {
                match stored(querier, base).await {
                    Ok(got) => match check_all_acked(&got, acked) {
                        Ok(()) => Some(Ok(())),
                        Err(e) => {
                            eprintln!("not yet: {e}");
                            None
                        }
                    },
                    Err(e) => {
                        eprintln!("query failed: {e}");
                        None
                    }
                }
            }
        },
    )
    .await;
    result.unwrap_or_else(|e: String| panic!("{e}"));
    assert!(acked.len() >= 400, "{} acked", acked.len());
    // Each restarted ingester replayed its own WAL.
    for i in ingesters.iter().flatten() {
        let logs = i.process.logs();
        assert!(logs.contains("replayed the WAL"), "{logs}");
    }
}
