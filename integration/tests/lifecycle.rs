//! The process's lifecycle as an operator and Kubernetes see it (issue 13):
//! a port in use stops the process naming the address; `/ready` is 503 while
//! the ingester replays its WAL and from the moment SIGTERM arrives; a
//! component failing at start after the ingester joined the ring takes the
//! ingester out of the ring before the process exits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use strata_integration::lifecycle::probe;
use strata_integration::{
    free_port, local_storage_flags, now_ms, one_sample_per_series_body, push_raw, strata_bin, Etcd,
    Process, Strata,
};

fn loopback_flags(http_port: u16, grpc_port: u16) -> Vec<String> {
    vec![
        format!("-server.http_listen_port={http_port}"),
        format!("-server.grpc_listen_port={grpc_port}"),
        "-server.http_listen_address=127.0.0.1".to_string(),
        "-server.grpc_listen_address=127.0.0.1".to_string(),
    ]
}

/// Lifts the per-tenant ingestion limits: the tests push a large WAL fast.
fn unlimited() -> [String; 2] {
    [
        "-limits.ingestion_rate=1e9".to_string(),
        "-limits.ingestion_burst_size=1000000000".to_string(),
    ]
}

fn spawn(args: Vec<String>) -> Process {
    Process::spawn("strata", &strata_bin(), &args, tempfile::tempdir().unwrap())
}

/// Pushes `series` series × `rounds` samples, 2,000 series a request.
async fn push_load(strata: &Strata, series: usize, rounds: usize) {
    let base = now_ms() - 600_000;
    let names: Vec<String> = (0..series).map(|i| i.to_string()).collect();
    for round in 0..rounds {
        for chunk in names.chunks(2000) {
            let sample = (base + round as i64 * 15_000, round as f64);
            let body = one_sample_per_series_body("lifecycle_load", chunk, sample);
            let (status, text) =
                push_raw(&strata.url("/api/v1/push"), Some("lifecycle"), body).await;
            assert_eq!(status, 200, "{text}");
        }
    }
}

async fn exits_naming(mut process: Process, what: &[&str]) {
    let status = process
        .wait_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("still running\n{}", process.logs()));
    assert!(
        !status.success(),
        "exited with {status}\n{}",
        process.logs()
    );
    let logs = process.logs();
    let last = logs
        .lines()
        .rev()
        .find(|l| l.contains("strata stopped with an error"))
        .unwrap_or_else(|| panic!("no final error line\n{logs}"));
    for w in what {
        assert!(
            last.contains(w),
            "{w:?} missing from the last line {last:?}\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_stops_the_process_naming_the_address() {
    for server in ["http-server", "grpc-server"] {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let (http, grpc) = if server == "http-server" {
            (port, free_port())
        } else {
            (free_port(), port)
        };
        let mut args = loopback_flags(http, grpc);
        args.extend(local_storage_flags(dir.path()));
        args.push("-target=all".to_string());
        exits_naming(
            spawn(args),
            &[
                &format!("service {server} failed while starting"),
                &format!("cannot listen on 127.0.0.1:{port}"),
            ],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_wal_replays_and_200_once_active() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let mut args = loopback_flags(http, grpc);
    args.extend(local_storage_flags(dir.path()));
    args.push("-target=all".to_string());
    args.extend(unlimited());
    {
        let mut process = spawn(args.clone());
        let ready = format!("http://127.0.0.1:{http}/ready");
        process.wait_ready(&ready, Duration::from_secs(60)).await;
        let strata = Strata {
            process,
            http_port: http,
            grpc_port: grpc,
        };
        // A WAL that takes a noticeable time to replay.
        push_load(&strata, 100_000, 10).await;
        // kill -9 (dropping the process): the WAL is all there is.
    }
    let mut process = spawn(args);
    let url = format!("http://127.0.0.1:{http}/ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut answers: Vec<(u16, String)> = Vec::new();
    loop {
        if let (Some(status), body) = probe(&url).await {
            let done = status == 200;
            answers.push((status, body));
            if done {
                break;
            }
        }
        assert!(process.is_running(), "exited\n{}", process.logs());
        assert!(
            Instant::now() < deadline,
            "never ready: {:?}\n{}",
            answers.last(),
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        waiting
            .iter()
            .any(|(_, body)| body.contains("service ingester is Starting")),
        "no 503 naming the ingester's start before 200: {:?}\n{}",
        answers.first(),
        process.logs()
    );
    assert!(
        answers[..answers.len() - 1].iter().all(|(s, _)| *s == 503),
        "an answer other than 503 before ready: {:?}",
        answers.iter().find(|(s, _)| *s != 503)
    );
    let logs = process.logs();
    assert!(logs.contains("WAL replay done"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_as_soon_as_sigterm_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let mut args = loopback_flags(http, grpc);
    args.extend(local_storage_flags(dir.path()));
    args.push("-target=all".to_string());
    // The flush on shutdown keeps the process stopping for a while, with its
    // HTTP server (which stops last) still answering.
    args.push("-ingester.flush_on_shutdown=true".to_string());
    args.extend(unlimited());
    let mut process = spawn(args);
    let url = format!("http://127.0.0.1:{http}/ready");
    process.wait_ready(&url, Duration::from_secs(60)).await;
    let mut strata = Strata {
        process,
        http_port: http,
        grpc_port: grpc,
    };
    push_load(&strata, 100_000, 3).await;
    assert_eq!(probe(&url).await.0, Some(200));
    strata.process.terminate();
    let mut answers = Vec::new();
    loop {
        let (status, body) = probe(&url).await;
        match status {
            Some(s) => answers.push((s, body)),
            None => break,
        }
        if !strata.process.is_running() {
            break;
        }
    }
    // The signal takes a moment to be handled; from then on the answer is
    // 503 until the server (the last service to stop) closes.
    let first_503 = answers.iter().position(|(s, _)| *s == 503);
    let summary = format!(
        "{} answers after SIGTERM, the first 503 at {first_503:?}, statuses {:?}",
        answers.len(),
        answers
            .iter()
            .map(|(s, _)| *s)
            .collect::<std::collections::BTreeSet<_>>()
    );
    let Some(first_503) = first_503 else {
        panic!(
            "no 503 while stopping: {summary}\n{}",
            strata.process.logs()
        );
    };
    assert!(
        answers[..first_503].iter().all(|(s, _)| *s == 200),
        "{summary}"
    );
    assert!(
        answers[first_503..]
            .iter()
            .all(|(s, b)| *s == 503 && b.contains("the process is shutting down")),
        "ready answered other than 503 once stopping: {summary}"
    );
    let status = strata.process.wait_exit(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        strata.process.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_ring_activation_leaves_the_ring() {
    let etcd = Etcd::start().await;
    let ring_flags = [
        "-ingester.ring.kvstore.store=etcd".to_string(),
        format!("-ingester.ring.kvstore.etcd.endpoints={}", etcd.endpoint()),
        "-ingester.ring.replication_factor=1".to_string(),
    ];
    let dir = tempfile::tempdir().unwrap();
    // The compactor starts after the ingester is ACTIVE, and cannot create
    // its data directory under a regular file.
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let mut args = loopback_flags(free_port(), free_port());
    args.extend(local_storage_flags(dir.path()));
    args.extend(ring_flags.iter().cloned());
    args.push("-ingester.ring.instance_id=doomed".to_string());
    args.push(format!(
        "-compactor.data_dir={}",
        blocker.join("compactor").display()
    ));
    args.push("-target=ingester,compactor".to_string());
    let doomed = spawn(args);
    exits_naming(
        doomed,
        &[
            "service compactor failed while starting",
            "compactor.data_dir",
        ],
    )
    .await;

    // A second process reads the ring: the doomed ingester is not in it.
    let watcher = Strata::start(
        &ring_flags
            .iter()
            .map(String::as_str)
            .chain(["-target=distributor", "-ingester.ring.instance_id=watcher"])
            .collect::<Vec<_>>(),
    )
    .await;
    let ring = watcher.ring_json().await;
    let ids: Vec<&str> = ring["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"doomed"),
        "the failed ingester is still in the ring: {ring}"
    );
}
