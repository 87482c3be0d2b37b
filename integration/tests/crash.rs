//! An acknowledged sample survives `kill -9`: a pusher records every push
//! answered 200, the ingester is killed with SIGKILL mid-stream and restarted on
//! the same data directory, and every acknowledged sample comes back from a
//! query, with its value. Once for `-target=all`, once for a 3-ingester cluster
//! (RF=3) where every ingester is killed at some point. In the cluster the
//! querier's merge of three replicas would hide one replica's loss, so each
//! restarted ingester is also read alone (its own gRPC `QueryStream`): it holds
//! what it held before its kill, value for value.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_integration::{
    eventually, eventually_grows_by, get_json, ingester_query, local_storage_flags, now_ms,
    one_sample_per_series_body, Etcd, Strata,
};

const SERIES: usize = 20;
const TENANT: &str = "crash-test";

/// What the pusher has seen: the `i` of every push answered 200, and how
/// many were refused or failed.
#[derive(Debug, Clone, Default)]
struct Pushes {
    acked: Arc<Mutex<BTreeSet<i64>>>,
    failed: Arc<AtomicUsize>,
}

/// Pushes request after request (sample `i` of every series at `base + i`,
/// value `i`) until stopped.
fn spawn_pusher(
    url: String,
    base: i64,
    stop: Arc<AtomicBool>,
) -> (Pushes, tokio::task::JoinHandle<()>) {
    let pushes = Pushes::default();
    let (acked2, failed) = (pushes.acked.clone(), pushes.failed.clone());
    let task = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let names: Vec<String> = (0..SERIES).map(|i| format!("s{i:02}")).collect();
        let mut i = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let body = one_sample_per_series_body("crash_test", &names, (base + i, i as f64));
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
                // Refused or failed: not acknowledged, the pusher moves on
                // (after a pause, so a dead server is not spun on).
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            i += 1;
        }
    });
    (pushes, task)
}

/// One series' samples: `i` (timestamp - base) → value.
type Stored = BTreeMap<i64, f64>;

/// Every series' samples in `(base - 1h, base + 1h]`, by series name, from
/// the querier.
async fn stored(querier: &Strata, base: i64) -> Result<BTreeMap<String, Stored>, String> {
    let end = base + 3_600_000;
    let url = querier.url(&format!(
        "/prometheus/api/v1/query?query=crash_test[2h]&time={}",
        end as f64 / 1000.0
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let mut out = BTreeMap::new();
    for s in body["data"]["result"].as_array().unwrap() {
        let name = s["metric"]["series"].as_str().unwrap().to_string();
        let mut samples = Stored::new();
        for v in s["values"].as_array().unwrap() {
            let i = (v[0].as_f64().unwrap() * 1000.0).round() as i64 - base;
            let text = v[1].as_str().unwrap();
            let value: f64 = text
                .parse()
                .map_err(|e| format!("value {text:?} of {name} at {i}: {e}"))?;
            if samples.insert(i, value).is_some() {
                return Err(format!("{name} has two samples at {i}"));
            }
        }
        out.insert(name, samples);
    }
    Ok(out)
}

/// What one ingester alone holds, read over its gRPC `QueryStream`, by series
/// name; a sample it holds twice is an error.
async fn stored_on(ingester: &Strata, base: i64) -> Result<BTreeMap<String, Stored>, String> {
    let raw = ingester_query(
        ingester.grpc_port,
        TENANT,
        "crash_test",
        base - 3_600_000,
        base + 3_600_000,
    )
    .await?;
    let mut out = BTreeMap::new();
    for (labels, samples) in raw {
        let name = labels
            .iter()
            .find(|(n, _)| n == "series")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("a series without the label series: {labels:?}"))?;
        let mut by_i = Stored::new();
        for (t, v) in samples {
            if by_i.insert(t - base, v).is_some() {
                return Err(format!("{name} holds two samples at {}", t - base));
            }
        }
        out.insert(name, by_i);
    }
    Ok(out)
}

/// Checks that there are `SERIES` series, that each holds every sample of
/// `want` with its value (sample `i` has the value `i`), and that nothing
/// stored has another value: nothing lost, nothing invented.
fn check_all_acked(got: &BTreeMap<String, Stored>, want: &BTreeSet<i64>) -> Result<(), String> {
    if got.len() != SERIES {
        return Err(format!("{} series, want {SERIES}", got.len()));
    }
    for (name, series) in got {
        let missing: Vec<_> = want
            .iter()
            .filter(|i| !series.contains_key(i))
            .take(5)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{name} lacks acknowledged samples {missing:?} ({} acked, {} stored)",
                want.len(),
                series.len()
            ));
        }
        if let Some((i, v)) = series.iter().find(|(i, v)| **v != **i as f64) {
            return Err(format!(
                "{name}: sample {i} has the value {v}, pushed as {i}"
            ));
        }
    }
    Ok(())
}

/// Checks that `after` holds every sample of `before`, with the same value.
fn holds_all_of(
    after: &BTreeMap<String, Stored>,
    before: &BTreeMap<String, Stored>,
) -> Result<(), String> {
    for (name, samples) in before {
        let Some(now) = after.get(name) else {
            return Err(format!("{name} is gone ({} samples before)", samples.len()));
        };
        let lost: Vec<_> = samples
            .iter()
            .filter(|(i, v)| now.get(i) != Some(v))
            .take(5)
            .map(|(i, v)| format!("{i}={v} now {:?}", now.get(i)))
            .collect();
        if !lost.is_empty() {
            return Err(format!(
                "{name} lost or changed samples: {lost:?} ({} before, {} now)",
                samples.len(),
                now.len()
            ));
        }
    }
    Ok(())
}

/// A counter of a process's /metrics (without labels).
async fn counter(process: &Strata, name: &str) -> f64 {
    let value = process.metric(name).await;
    value.unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_samples_survive_kill_9_of_target_all() {
    let data = tempfile::tempdir().unwrap();
    let strata = Strata::start_all_in(data.path()).await;
    let base = now_ms() - 600_000;
    let stop = Arc::new(AtomicBool::new(false));
    let (pushes, pusher) = spawn_pusher(strata.url("/api/v1/push"), base, stop.clone());
    eventually("300 acknowledged pushes", Duration::from_secs(60), || {
        let n = pushes.acked.lock().len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    // SIGKILL while the pusher is mid-stream; it goes on until it has seen
    // the dead server refuse a few pushes.
    drop(strata);
    let failed = pushes.failed.load(Ordering::Relaxed);
    eventually(
        "pushes to the killed process to fail",
        Duration::from_secs(10),
        || {
            let n = pushes.failed.load(Ordering::Relaxed);
            async move { (n >= failed + 3).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
    let acked = pushes.acked.lock().clone();
    assert!(acked.len() >= 300);

    let strata = Strata::start_all_in(data.path()).await;
    let got = stored(&strata, base).await.unwrap();
    if let Err(e) = check_all_acked(&got, &acked) {
        panic!("{e}\n{}", strata.process.logs());
    }
    let logs = strata.process.logs();
    assert!(logs.contains("replayed the WAL"), "{logs}");
}

async fn start_node(target: &str, etcd: &Etcd, extra: &[String]) -> Strata {
    let mut args = etcd.ring_flags(3, 32);
    args.push(format!("-target={target}"));
    args.extend(extra.iter().cloned());
    Strata::start_with_flags(&args).await
}

async fn start_ingester(etcd: &Etcd, id: &str, dir: &Path) -> Strata {
    let mut extra = vec![format!("-ingester.ring.instance_id={id}")];
    extra.extend(local_storage_flags(dir));
    start_node("ingester", etcd, &extra).await
}

/// What `ingester` holds once it has made durable everything visible in it
/// now: a direct query, then two more WAL fsyncs (with `wal_fsync: always` a
/// push is acknowledged only after an fsync that started once it was
/// logged; the first fsync to end may have started before the query).
async fn durable_snapshot(ingester: &Strata, base: i64) -> BTreeMap<String, Stored> {
    let fsyncs = counter(ingester, "strata_ingester_wal_fsyncs_total").await;
    let snapshot = stored_on(ingester, base).await.unwrap();
    eventually(
        "two WAL fsyncs after the snapshot",
        Duration::from_secs(10),
        || async move {
            (counter(ingester, "strata_ingester_wal_fsyncs_total").await >= fsyncs + 2.0)
                .then_some(())
        },
    )
    .await;
    snapshot
}

/// What `ingester` holds once nothing more arrives: direct queries until two
/// in a row agree (a push is answered at quorum, the third replica's copy may
/// land just after).
async fn settled_snapshot(ingester: &Strata, base: i64) -> BTreeMap<String, Stored> {
    let last = Mutex::new(stored_on(ingester, base).await.unwrap());
    eventually(
        "the ingester's data to settle",
        Duration::from_secs(10),
        || {
            let last = &last;
            async move {
                let now = stored_on(ingester, base).await.unwrap();
                let mut last = last.lock();
                if *last == now {
                    Some(now)
                } else {
                    *last = now;
                    None
                }
            }
        },
    )
    .await
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
    let (pushes, pusher) = spawn_pusher(distributor.url("/api/v1/push"), base, stop.clone());
    let acked = pushes.acked.clone();
    let wait_for = |n: usize| {
        let acked = acked.clone();
        let count = move || acked.lock().len();
        eventually_grows_by("acknowledged pushes", Duration::from_secs(60), n, count)
    };
    let newest_acked = || acked.lock().last().copied().unwrap_or(-1);
    wait_for(200).await;
    // What ingester-1 holds and has made durable, mid-stream.
    let before_1 = durable_snapshot(ingesters[0].as_ref().unwrap(), base).await;
    assert!(
        before_1.values().all(|s| s.len() >= 200),
        "ingester-1 holds too little: {:?}",
        before_1.values().map(|s| s.len()).collect::<Vec<_>>()
    );
    // kill -9 ingester-1 mid-stream; pushes go on with a quorum of two.
    ingesters[0] = None;
    // Pushes begun after this one went to ingesters 2 and 3 only: both had
    // to store them for a quorum.
    let down_from = newest_acked() + 2;
    wait_for(100).await;
    let down_to = newest_acked();
    ingesters[0] = Some(start_ingester(&etcd, ids[0], dirs[0].path()).await);
    let after_1 = stored_on(ingesters[0].as_ref().unwrap(), base)
        .await
        .unwrap();
    holds_all_of(&after_1, &before_1)
        .unwrap_or_else(|e| panic!("ingester-1 after its restart: {e}"));
    // It was down: it holds none of the pushes made meanwhile (so this is
    // its own data, not a merge of replicas).
    for (name, samples) in &after_1 {
        let during: Vec<_> = samples.range(down_from..=down_to).take(5).collect();
        assert!(
            during.is_empty(),
            "ingester-1 holds {name} {during:?} pushed while it was down"
        );
    }
    wait_for(100).await;
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
    let acked = pushes.acked.lock().clone();
    let while_1_down: BTreeSet<i64> = acked.range(down_from..=down_to).copied().collect();
    assert!(
        while_1_down.len() >= 90,
        "{} pushes while ingester-1 was down",
        while_1_down.len()
    );

    // Now kill -9 the other two and bring them back on their directories:
    // each holds what it held before, and every push acknowledged while
    // ingester-1 was down.
    let before: Vec<_> = [1, 2]
        .iter()
        .map(|&i| ingesters[i].as_ref().unwrap())
        .collect();
    let mut before_2_3 = Vec::new();
    for ingester in before {
        before_2_3.push(settled_snapshot(ingester, base).await);
    }
    ingesters[1] = None;
    ingesters[2] = None;
    for i in 1..3 {
        ingesters[i] = Some(start_ingester(&etcd, ids[i], dirs[i].path()).await);
    }
    for (i, before) in [1, 2].into_iter().zip(&before_2_3) {
        let id = ids[i];
        let after = stored_on(ingesters[i].as_ref().unwrap(), base)
            .await
            .unwrap();
        assert_eq!(&after, before, "{id}: its data after the restart");
        check_all_acked(&after, &while_1_down).unwrap_or_else(|e| {
            panic!("{id} lacks pushes acknowledged while ingester-1 was down: {e}")
        });
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
