//! A hung ingester (issue 21): one of three (RF=3, etcd ring) is stopped with
//! SIGSTOP, which looks like a stuck disk, a long pause or a black-holed
//! network. It stays in the ring as healthy until its heartbeat times out, so
//! the querier still counts it; pushes keep reaching their quorum, and every
//! query is answered from the other two within a few seconds (the hedging
//! delay at most, far below the query timeout), with every sample pushed
//! before and during the hang; pushing on for 30 s, the distributor's memory
//! stays flat (it keeps at most its in-flight limit of requests to the hung
//! ingester).
//!
//! A network partition of one ingester (its gRPC port behind a proxy that
//! stops forwarding, both ways, keeping the connections open) behaves the
//! same: writes at quorum, reads from the other two; healed, it takes writes
//! again.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use strata_integration::proxy::TcpProxy;
use strata_integration::{
    eventually, get_json, now_ms, one_sample_per_series_body, push_raw, Etcd, Strata,
};

const TENANT: &str = "team-a";
const SERIES: usize = 300;

async fn start(target: &str, extra: &[String], etcd: &Etcd) -> Strata {
    let mut args = etcd.ring_flags(3, 64);
    args.push(format!("-target={target}"));
    args.extend(extra.iter().cloned());
    Strata::start_with_flags(&args).await
}

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
/// not leave it stopped (its kill on drop works either way).
struct Stopped<'a>(&'a Strata);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// One sample of every series at `ts`; the status.
async fn push(distributor: &Strata, ts: i64, value: f64) -> (u16, String) {
    let names: Vec<String> = (0..SERIES).map(|i| format!("s{i:04}")).collect();
    let body = one_sample_per_series_body("hung_test_total", &names, (ts, value));
    push_raw(&distributor.url("/api/v1/push"), Some(TENANT), body).await
}

/// The answer to an instant query and how long it took.
async fn timed_query(querier: &Strata, query: &str, at_ms: i64) -> (serde_json::Value, Duration) {
    let url = format!(
        "{}?query={}&time={}",
        querier.url("/prometheus/api/v1/query"),
        query,
        at_ms as f64 / 1000.0
    );
    let started = Instant::now();
    let (status, body) = get_json(&url, Some(TENANT)).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{query}: {body}");
    (body, took)
}

fn scalar(body: &serde_json::Value) -> f64 {
    body["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("no value in {body}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_ingester_stalls_neither_pushes_nor_queries() {
    let etcd = Etcd::start().await;
    let mut ingesters = Vec::new();
    for i in 0..3 {
        let id = vec![format!("-ingester.ring.instance_id=ingester-{i}")];
        ingesters.push(start("ingester", &id, &etcd).await);
    }
    // Pushes as fast as they are answered, beyond the default rate limit.
    let unlimited = [
        "-limits.ingestion_rate=10000000".to_string(),
        "-limits.ingestion_burst_size=100000000".to_string(),
    ];
    let distributor = start("distributor", &unlimited, &etcd).await;
    let querier = start("querier", &[], &etcd).await;

    // Rounds every second, ending before the hang.
    let base = (now_ms() - 120_000) / 1000 * 1000;
    eventually("pushes to be accepted", Duration::from_secs(30), || async {
        (push(&distributor, base, 0.0).await.0 == 200).then_some(())
    })
    .await;
    let mut rounds = 1;
    for r in 1..30 {
        let (status, text) = push(&distributor, base + r * 1000, r as f64).await;
        assert_eq!(status, 200, "{text}");
        rounds += 1;
    }

    let stopped = Stopped(&ingesters[2]);
    signal(stopped.0, "-STOP");
    // Pushes reach the two others' quorum.
    let mut slowest_push = Duration::ZERO;
    for r in 30..60 {
        let started = Instant::now();
        let (status, text) = push(&distributor, base + r * 1000, r as f64).await;
        slowest_push = slowest_push.max(started.elapsed());
        assert_eq!(status, 200, "round {r}: {text}");
        rounds += 1;
    }
    // Queries, while the stopped ingester is still healthy in the ring
    // (heartbeat timeout 1 m): answered by the others, complete.
    let at = base + 60_000;
    let mut slowest_query = Duration::ZERO;
    for _ in 0..5 {
        let (body, took) = timed_query(&querier, "count(hung_test_total)", at).await;
        assert_eq!(scalar(&body), SERIES as f64, "{body}");
        slowest_query = slowest_query.max(took);
        let (body, took) = timed_query(
            &querier,
            "sum(count_over_time(hung_test_total%5B5m%5D))",
            at,
        )
        .await;
        assert_eq!(scalar(&body), (SERIES * rounds as usize) as f64, "{body}");
        slowest_query = slowest_query.max(took);
        let (body, took) = timed_query(&querier, "count(%7B__name__%3D~%22.%2B%22%7D)", at).await;
        assert_eq!(scalar(&body), SERIES as f64, "{body}");
        slowest_query = slowest_query.max(took);
    }
    eprintln!("with one ingester of three stopped: slowest push {slowest_push:?}, slowest query {slowest_query:?}");
    assert!(
        slowest_query < Duration::from_secs(10),
        "a query took {slowest_query:?} with one ingester hung"
    );

    // Pushes as fast as they are answered for 30 s more of the hang: the
    // distributor holds at most its in-flight limit (and the client
    // timeout) of requests to the hung ingester, so its memory stays flat.
    let mut r = 0;
    let rss = push_flat_out(&distributor, base + 60_000, &mut r, Duration::from_secs(30)).await;
    eprintln!(
        "distributor RSS (KiB) every 5 s during 30 s of pushes with one ingester hung: {rss:?}"
    );
    let (first, peak) = (rss[0], rss.iter().copied().max().unwrap());
    assert!(
        peak < first + 64 * 1024,
        "distributor RSS grew from {first} KiB to {peak} KiB"
    );
    drop(stopped);
}

/// Pushes one sample of every series, 10 ms apart from `from_ms` on (`r`
/// counts the pushes), as fast as they are answered, for `how_long`; the
/// distributor's RSS every 5 s.
async fn push_flat_out(
    distributor: &Strata,
    from_ms: i64,
    r: &mut i64,
    how_long: Duration,
) -> Vec<u64> {
    let started = Instant::now();
    let mut next_sample = started;
    let mut rss = Vec::new();
    while started.elapsed() < how_long {
        if Instant::now() >= next_sample {
            rss.push(rss_kib(distributor));
            next_sample += Duration::from_secs(5);
        }
        let (status, text) = push(distributor, from_ms + *r * 10, *r as f64).await;
        assert_eq!(status, 200, "push {r}: {text}");
        *r += 1;
    }
    rss.push(rss_kib(distributor));
    rss
}

/// The resident memory of a process, in KiB.
fn rss_kib(process: &Strata) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", process.process.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_ingester_behaves_like_a_hung_one() {
    let etcd = Etcd::start().await;
    let mut ingesters = Vec::new();
    for i in 0..2 {
        let id = vec![format!("-ingester.ring.instance_id=ingester-{i}")];
        ingesters.push(start("ingester", &id, &etcd).await);
    }
    // The third is reached through the proxy only: the ring has its address.
    let proxy = TcpProxy::start().await;
    let behind = vec![
        "-ingester.ring.instance_id=ingester-2".to_string(),
        format!("-ingester.ring.instance_addr=127.0.0.1:{}", proxy.port),
    ];
    ingesters.push(start("ingester", &behind, &etcd).await);
    proxy.forward_to(ingesters[2].grpc_port);
    let distributor = start("distributor", &[], &etcd).await;
    let querier = start("querier", &[], &etcd).await;

    let base = (now_ms() - 120_000) / 1000 * 1000;
    eventually("pushes to be accepted", Duration::from_secs(30), || async {
        (push(&distributor, base, 0.0).await.0 == 200).then_some(())
    })
    .await;
    for r in 1..10 {
        let (status, text) = push(&distributor, base + r * 1000, r as f64).await;
        assert_eq!(status, 200, "{text}");
    }
    proxy.partition();
    let mut slowest_push = Duration::ZERO;
    for r in 10..30 {
        let started = Instant::now();
        let (status, text) = push(&distributor, base + r * 1000, r as f64).await;
        slowest_push = slowest_push.max(started.elapsed());
        assert_eq!(status, 200, "round {r} with ingester-2 partitioned: {text}");
    }
    let at = base + 30_000;
    let mut slowest_query = Duration::ZERO;
    for _ in 0..4 {
        let (body, took) = timed_query(
            &querier,
            "sum(count_over_time(hung_test_total%5B5m%5D))",
            at,
        )
        .await;
        assert_eq!(scalar(&body), (SERIES * 30) as f64, "{body}");
        slowest_query = slowest_query.max(took);
    }
    eprintln!("with one ingester of three partitioned: slowest push {slowest_push:?}, slowest query {slowest_query:?}");
    assert!(
        slowest_query < Duration::from_secs(10),
        "a query took {slowest_query:?} with one ingester partitioned"
    );

    // Healed: it takes writes again, and reads see everything.
    proxy.heal();
    for r in 30..40 {
        let (status, text) = push(&distributor, base + r * 1000, r as f64).await;
        assert_eq!(status, 200, "round {r} after healing: {text}");
    }
    let (body, _) = timed_query(
        &querier,
        "sum(count_over_time(hung_test_total%5B5m%5D))",
        base + 40_000,
    )
    .await;
    assert_eq!(scalar(&body), (SERIES * 40) as f64, "{body}");
}
