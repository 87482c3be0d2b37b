//! Many tenants on one ingester (issue 22): 2,000 tenants push to one
//! `-target=all`; the process's threads and open files stay under bounds that
//! do not depend on the tenant count (one WAL, one flusher, block files opened
//! only while queried); after SIGKILL and a restart every tenant's
//! acknowledged samples come back, each tenant's alone; a flush ships a block
//! of every tenant.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use strata_integration::{encode_write_request, get_json, now_ms, push_raw, write_request, Strata};

const TENANTS: usize = 2000;
const SERIES: usize = 5;
const ROUNDS: i64 = 3;

fn tenant(t: usize) -> String {
    format!("tenant-{t:04}")
}

/// The value of series `s` of tenant `t` in round `r`: every tenant's sum
/// differs, so a sample given to the wrong tenant shows.
fn value(t: usize, s: usize, r: i64) -> f64 {
    (t * 1000 + s * 10) as f64 + r as f64
}

/// What the tenant's `sum(sum_over_time(...))` must be.
fn tenant_sum(t: usize) -> f64 {
    (0..SERIES)
        .flat_map(|s| (0..ROUNDS).map(move |r| value(t, s, r)))
        .sum()
}

fn proc_count(pid: u32, what: &str) -> usize {
    match what {
        "threads" => std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
        _ => std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
    }
}

/// Pushes round `r` of tenants `from..to`, 32 pushes in flight.
async fn push_round(strata: &Strata, base: i64, r: i64, from: usize, to: usize) {
    let url = strata.url("/api/v1/push");
    let mut in_flight = tokio::task::JoinSet::new();
    for t in from..to {
        let names: Vec<String> = (0..SERIES).map(|s| format!("s{s}")).collect();
        let labels: Vec<[(&str, &str); 2]> = names
            .iter()
            .map(|n| [("__name__", "many_tenants_test"), ("series", n.as_str())])
            .collect();
        let samples: Vec<[(i64, f64); 1]> = (0..SERIES)
            .map(|s| [(base + r * 15_000, value(t, s, r))])
            .collect();
        let series: Vec<_> = labels
            .iter()
            .zip(&samples)
            .map(|(l, v)| (&l[..], &v[..]))
            .collect();
        let body = encode_write_request(&write_request(&series));
        let url = url.clone();
        in_flight.spawn(async move {
            let name = tenant(t);
            let (status, msg) = push_raw(&url, Some(&name), body).await;
            assert_eq!(status, 200, "{name} round {r}: {msg}");
        });
        while in_flight.len() >= 32 {
            in_flight.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done.unwrap();
    }
}

async fn check_every_tenant(strata: &Strata, base: i64) {
    let at = (base + ROUNDS * 15_000) as f64 / 1000.0;
    for t in 0..TENANTS {
        let name = tenant(t);
        let url = strata.url(&format!(
            "/api/v1/query?query=sum(sum_over_time(many_tenants_test[10m]))&time={at}"
        ));
        let (status, body) = get_json(&url, Some(&name)).await;
        assert_eq!(status, 200, "{name}: {body}");
        let got: f64 = body["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no result: {body}"))
            .parse()
            .unwrap();
        assert_eq!(got, tenant_sum(t), "{name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_tenants_cost_no_thread_or_file_each_and_lose_nothing() {
    let data = tempfile::tempdir().unwrap();
    let base = (now_ms() - 300_000) / 1000 * 1000;
    let strata = Strata::start_all_in(data.path()).await;
    let pid = strata.process.pid();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Bounds that do not grow with the tenants: the runtime's workers and a
    // few threads of its own (WAL flusher, blocking pool), and the process's
    // fixed files plus the connections of this test's pushes.
    let max_threads = 4 * cores + 16;
    let max_files = 128;
    for r in 0..ROUNDS {
        push_round(&strata, base, r, 0, TENANTS).await;
    }
    let (threads, files) = (proc_count(pid, "threads"), proc_count(pid, "files"));
    eprintln!("{TENANTS} tenants pushed: {threads} threads, {files} open files");
    assert!(
        threads <= max_threads,
        "{threads} threads for {TENANTS} tenants (at most {max_threads})"
    );
    assert!(
        files <= max_files,
        "{files} open files for {TENANTS} tenants (at most {max_files})"
    );

    // SIGKILL: nothing but the WAL brings the samples back.
    drop(strata);
    let strata = Strata::start_all_in(data.path()).await;
    check_every_tenant(&strata, base).await;
    let pid = strata.process.pid();
    let (threads, files) = (proc_count(pid, "threads"), proc_count(pid, "files"));
    eprintln!("after the restart and {TENANTS} queries: {threads} threads, {files} open files");
    assert!(
        threads <= max_threads,
        "{threads} threads after the restart"
    );
    assert!(files <= max_files, "{files} open files after the restart");

    // A flush cuts and ships every tenant, and opens no file per tenant.
    let (status, text) = strata.flush().await;
    assert_eq!(status.as_u16(), 200, "{text}");
    let blocks = data.path().join("blocks");
    for t in 0..TENANTS {
        let dir = blocks.join(tenant(t));
        let shipped = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .filter(|e| e.path().join("meta.json").is_file())
            .count();
        assert!(shipped >= 1, "{} has no block", tenant(t));
    }
    let (threads, files) = (proc_count(pid, "threads"), proc_count(pid, "files"));
    eprintln!("after the flush: {threads} threads, {files} open files");
    assert!(
        files <= max_files,
        "{files} open files after flushing {TENANTS} tenants"
    );
    // The flushed data is still answered, from the ingesters' local blocks.
    check_every_tenant(&strata, base).await;
    assert!(!strata.process.logs().contains("panicked"));
}
