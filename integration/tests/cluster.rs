//! Strata as separate processes on one etcd ring: ingesters (RF=3), a
//! distributor and a querier, each its own `strata` process.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_integration::{
    eventually, eventually_grows_by, get_json, now_ms, one_sample_per_series_body, push_raw, Etcd,
    Strata,
};

async fn start(target: &str, extra: &[String], etcd: &Etcd) -> Strata {
    let mut args = etcd.ring_flags(3, 64);
    args.push(format!("-target={target}"));
    args.extend(extra.iter().cloned());
    Strata::start_with_flags(&args).await
}

async fn start_ingester(id: &str, zone: Option<&str>, etcd: &Etcd) -> Strata {
    let mut extra = vec![format!("-ingester.ring.instance_id={id}")];
    if let Some(zone) = zone {
        extra.push(format!("-ingester.ring.instance_availability_zone={zone}"));
        extra.push("-ingester.ring.zone_awareness_enabled=true".to_string());
    }
    start("ingester", &extra, etcd).await
}

/// Pushes one sample at `ts` for series `first..first+count`, in requests of
/// at most 2000 series; the first non-200 answer, or 200.
async fn push_round(
    distributor: &Strata,
    first: usize,
    count: usize,
    ts: i64,
    value: f64,
) -> (u16, String) {
    let names: Vec<String> = (first..first + count).map(|i| format!("s{i:05}")).collect();
    for chunk in names.chunks(2000) {
        let body = one_sample_per_series_body("cluster_test_total", chunk, (ts, value));
        let (status, msg) = push_raw(&distributor.url("/api/v1/push"), Some("team-a"), body).await;
        if status != 200 {
            return (status, msg);
        }
    }
    (200, String::new())
}

async fn memory_series(process: &Strata) -> f64 {
    let text = process.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with("strata_ingester_memory_series{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The ring as the ring page's JSON shows it: id → (state, tokens, heartbeat).
async fn ring_state(process: &Strata) -> Vec<(String, String, Vec<u64>, i64)> {
    let body = process.ring_json().await;
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
                i["tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap())
                    .collect(),
                i["heartbeat_timestamp"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Waits until a push of series 0..count at `ts` is accepted (the distributor
/// has seen enough ingesters in the ring).
async fn wait_writable(distributor: &Strata, count: usize, ts: i64) {
    eventually(
        "the distributor to accept pushes",
        Duration::from_secs(30),
        || async move {
            let (status, msg) = push_round(distributor, 0, count, ts, 0.0).await;
            if status != 200 {
                eprintln!("push not accepted yet: {status} {msg}");
            }
            (status == 200).then_some(())
        },
    )
    .await;
}

/// Every series' samples from the querier, as (timestamp ms, value) lists.
async fn query_all(
    querier: &Strata,
    selector: &str,
    start_ms: i64,
    end_ms: i64,
) -> Vec<Vec<(i64, f64)>> {
    let query = format!(
        "/prometheus/api/v1/query_range?query={selector}&start={}&end={}&step=1",
        start_ms as f64 / 1000.0,
        end_ms as f64 / 1000.0
    );
    let (status, body) = get_json(&querier.url(&query), Some("team-a")).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            series["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    let t = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, v[1].as_str().unwrap().parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ingesters_replicate_survive_a_kill_and_rejoin() {
    const SERIES: usize = 10_000;
    const STREAMED: usize = 50;
    let etcd = Etcd::start().await;
    let mut ingesters = vec![
        start_ingester("ingester-1", None, &etcd).await,
        start_ingester("ingester-2", None, &etcd).await,
        start_ingester("ingester-3", None, &etcd).await,
    ];
    let distributor = Arc::new(start("distributor", &[], &etcd).await);
    let querier = start("querier", &[], &etcd).await;

    // 10k series: every one on exactly 3 ingesters (3 instances, RF=3).
    let start_ms = now_ms() - 120_000;
    wait_writable(&distributor, SERIES, start_ms).await;
    // A push is answered at quorum (2 of 3); the third replica's copy lands
    // in the background right after, so wait for it rather than race it.
    let per_ingester = eventually(
        "every ingester to hold every series",
        Duration::from_secs(10),
        || async {
            let mut v = Vec::new();
            for i in &ingesters {
                v.push(memory_series(i).await);
            }
            (v == vec![SERIES as f64; 3]).then_some(v)
        },
    )
    .await;
    assert_eq!(per_ingester, vec![SERIES as f64; 3]);
    let tokens_before = ring_state(&querier).await;
    assert_eq!(tokens_before.len(), 3);
    assert!(tokens_before
        .iter()
        .all(|(_, state, t, _)| state == "ACTIVE" && t.len() == 64));

    // A pusher keeps pushing while one ingester is killed with SIGKILL.
    let acknowledged: Arc<Mutex<Vec<(i64, f64)>>> = Arc::new(Mutex::new(Vec::new()));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (distributor, acknowledged, failures, stop) = (
            distributor.clone(),
            acknowledged.clone(),
            failures.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut round = 1;
            while !stop.load(Ordering::Relaxed) {
                let ts = start_ms + round * 1_000;
                let (status, msg) = push_round(&distributor, 0, STREAMED, ts, round as f64).await;
                if status == 200 {
                    acknowledged.lock().push((ts, round as f64));
                } else {
                    failures
                        .lock()
                        .push(format!("round {round}: {status} {msg}"));
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let rounds = |n: usize| {
        let acknowledged = acknowledged.clone();
        let count = move || acknowledged.lock().len();
        eventually_grows_by("acknowledged rounds", Duration::from_secs(30), n, count)
    };
    rounds(5).await;
    drop(ingesters.remove(0));
    rounds(10).await;
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
    assert!(
        failures.lock().is_empty(),
        "pushes failed: {:?}",
        failures.lock()
    );
    let acknowledged = acknowledged.lock().clone();
    assert!(
        acknowledged.len() >= 10,
        "too few rounds pushed: {}",
        acknowledged.len()
    );

    // Every acknowledged sample of the streamed series comes back, once.
    let last = acknowledged.last().unwrap().0;
    // Series s00000..s00049 only (the 10k series' first sample is in the lookback).
    let results = query_all(
        &querier,
        "cluster_test_total{series=~\"s000[0-4][0-9]\"}",
        start_ms + 1_000,
        last,
    )
    .await;
    assert_eq!(results.len(), STREAMED);
    for values in &results {
        assert_eq!(values, &acknowledged);
    }

    // Restarted with the same ID, the ingester rejoins with its tokens, ACTIVE.
    let restarted = start_ingester("ingester-1", None, &etcd).await;
    let rejoined = eventually(
        "ingester-1 ACTIVE again",
        Duration::from_secs(20),
        || async {
            let ring = ring_state(&querier).await;
            ring.into_iter()
                .find(|(id, state, _, _)| id == "ingester-1" && state == "ACTIVE")
        },
    )
    .await;
    let before = tokens_before
        .iter()
        .find(|(id, ..)| id == "ingester-1")
        .unwrap();
    assert_eq!(
        rejoined.2, before.2,
        "ingester-1 must rejoin with the same tokens"
    );
    ingesters.push(restarted);

    // Two of three down: no quorum, so exactly 503 Unavailable (never a 2xx
    // that is not on a quorum, nor another 5xx: 503 is what a quorum not
    // reached maps to).
    drop(ingesters.remove(0));
    drop(ingesters.remove(0));
    let (status, msg) = push_round(&distributor, 0, STREAMED, last + 60_000, 99.0).await;
    assert_eq!(status, 503, "with 2 of 3 ingesters down: {msg}");
    assert!(msg.contains("quorum"), "{msg}");
}

/// etcd frozen (SIGSTOP) for four heartbeat timeouts (10 s each here; the
/// same as five minutes of the default 1 m, shorter to run): every process
/// routes by its cached ring, and since every heartbeat stopped at once the
/// ring is judged as it was when last read, so no instance times out.
/// `STRATA_TEST_ETCD_AWAY_S` (40) and `STRATA_TEST_HEARTBEAT_TIMEOUT` (10s)
/// run it at full length: 300 and 1m are the five minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_queries_continue_while_etcd_is_away_for_four_heartbeat_timeouts() {
    const SERIES: usize = 20;
    let away_s: i64 = std::env::var("STRATA_TEST_ETCD_AWAY_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let heartbeat_timeout =
        std::env::var("STRATA_TEST_HEARTBEAT_TIMEOUT").unwrap_or_else(|_| "10s".to_string());
    let etcd = Etcd::start().await;
    let timeout = vec![format!(
        "-ingester.ring.heartbeat_timeout={heartbeat_timeout}"
    )];
    let mut ingesters = Vec::new();
    for id in ["ingester-1", "ingester-2", "ingester-3"] {
        let mut extra = timeout.clone();
        extra.push(format!("-ingester.ring.instance_id={id}"));
        ingesters.push(start("ingester", &extra, &etcd).await);
    }
    let distributor = start("distributor", &timeout, &etcd).await;
    let querier = start("querier", &timeout, &etcd).await;
    let start_ms = now_ms() - 60_000 - away_s * 1000;
    wait_writable(&distributor, SERIES, start_ms).await;

    let pid = etcd.process.pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let frozen_at = ring_state(&querier).await;
    let mut acknowledged = vec![(start_ms, 0.0)];
    for round in 1..=away_s {
        let ts = start_ms + round * 1_000;
        let (status, msg) = push_round(&distributor, 0, SERIES, ts, round as f64).await;
        if status != 200 {
            signal("-CONT");
        }
        assert_eq!(status, 200, "round {round} with etcd away: {msg}");
        acknowledged.push((ts, round as f64));
        if round % 10 == 0 {
            let results = query_all(&querier, "cluster_test_total", start_ms, ts).await;
            assert_eq!(results.len(), SERIES, "query with etcd away, round {round}");
            for values in &results {
                assert_eq!(values, &acknowledged, "query with etcd away, round {round}");
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    signal("-CONT");

    // Heartbeats resume once etcd is back.
    let newest =
        |ring: &[(String, String, Vec<u64>, i64)]| ring.iter().map(|r| r.3).min().unwrap_or(0);
    let before = newest(&frozen_at);
    eventually("heartbeats to resume", Duration::from_secs(30), || async {
        (newest(&ring_state(&querier).await) > before + 5).then_some(())
    })
    .await;
    let ts = start_ms + (away_s + 1) * 1_000;
    let last = (away_s + 1) as f64;
    let (status, msg) = push_round(&distributor, 0, SERIES, ts, last).await;
    assert_eq!(status, 200, "after etcd is back: {msg}");
    acknowledged.push((ts, last));

    let results = query_all(&querier, "cluster_test_total", start_ms, ts).await;
    assert_eq!(results.len(), SERIES);
    for values in &results {
        assert_eq!(values, &acknowledged);
    }
    drop(ingesters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_aware_replication_puts_one_replica_in_each_zone() {
    const SERIES: usize = 3_000;
    let etcd = Etcd::start().await;
    let mut zones = Vec::new();
    for zone in ["zone-a", "zone-b", "zone-c"] {
        let mut members = Vec::new();
        for n in 1..=2 {
            members.push(start_ingester(&format!("{zone}-{n}"), Some(zone), &etcd).await);
        }
        zones.push(members);
    }
    let distributor = start(
        "distributor",
        &["-ingester.ring.zone_awareness_enabled=true".to_string()],
        &etcd,
    )
    .await;
    wait_writable(&distributor, SERIES, now_ms() - 10_000).await;
    // The third zone's copy may land just after the quorum answer.
    let per_zone = eventually(
        "every zone to hold each series once",
        Duration::from_secs(10),
        || async {
            let mut per_zone = Vec::new();
            for members in &zones {
                let mut in_zone = 0.0;
                for m in members {
                    in_zone += memory_series(m).await;
                }
                per_zone.push(in_zone);
            }
            (per_zone == vec![SERIES as f64; 3]).then_some(per_zone)
        },
    )
    .await;
    assert_eq!(
        per_zone,
        vec![SERIES as f64; 3],
        "each zone must hold each series exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_all_in_one_processes_form_one_cluster() {
    const SERIES: usize = 300;
    let etcd = Etcd::start().await;
    let mut nodes = Vec::new();
    for n in 1..=3 {
        let extra = vec![format!("-ingester.ring.instance_id=all-{n}")];
        nodes.push(start("all", &extra, &etcd).await);
    }
    // Wait until every node sees all three, then push through the first node.
    for node in &nodes {
        eventually("three ACTIVE members", Duration::from_secs(30), || async {
            let ring = ring_state(node).await;
            (ring.iter().filter(|r| r.1 == "ACTIVE").count() == 3).then_some(())
        })
        .await;
    }
    let ts = now_ms() - 5_000;
    let (status, msg) = push_round(&nodes[0], 0, SERIES, ts, 7.0).await;
    assert_eq!(status, 200, "{msg}");
    // RF=3 over three members: each holds every series (the third copy may
    // land just after the quorum answer); any node answers.
    for node in &nodes {
        eventually(
            "every member to hold every series",
            Duration::from_secs(10),
            || async { (memory_series(node).await == SERIES as f64).then_some(()) },
        )
        .await;
        let results = query_all(node, "cluster_test_total", ts, ts).await;
        assert_eq!(results.len(), SERIES);
    }
}
