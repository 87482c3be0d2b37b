//! The compactor against a real S3-compatible server (s3s-fs) and three
//! ingesters replicating every series (RF=3 on an etcd ring): each 2-minute
//! range is uploaded three times; after a compaction pass exactly one block
//! per range is left and `promtool tsdb dump` shows every pushed sample once.
//! The PromQL answers after compaction equal those before, and come from the
//! compacted blocks through the store-gateways only: a querier of its own
//! asks the ingesters for nothing older than a minute, the queries end more
//! than two minutes ago, and the ingesters' gRPC `QueryStream` counts do not
//! move. A compactor killed with SIGKILL at varying points of its pass, again
//! and again, never leaves the bucket missing or doubling a sample, and a
//! restarted one finishes the job.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_integration::{
    encode_write_request, eventually, get_json, matrix_samples, now_ms, promtool_dump, push_raw,
    write_request, Etcd, S3Server, Strata,
};

const TENANT: &str = "compact-test";
const RANGE_MS: i64 = 120_000;

/// Series name → samples (timestamp ms, value).
type Samples = BTreeMap<String, Vec<(i64, f64)>>;

struct Cluster {
    etcd: Etcd,
    s3: S3Server,
    nodes: Vec<Strata>,
    _data: tempfile::TempDir,
}

fn common_flags(etcd: &Etcd, s3: &S3Server) -> Vec<String> {
    let mut flags = etcd.ring_flags(3, 32);
    flags.extend([
        "-blocks_storage.tsdb.block_ranges_period=2m".to_string(),
        // Only overlapping copies are merged at the first level: one block
        // per 2-minute range is the expected end state.
        "-compactor.block_ranges=2m".to_string(),
        "-compactor.deletion_delay=0s".to_string(),
        "-compactor.partial_block_deletion_delay=1s".to_string(),
        // Queries read the store-gateways for the whole range, which sync the
        // bucket every second.
        "-querier.query_store_after=0s".to_string(),
        "-blocks_storage.bucket_store.sync_interval=1s".to_string(),
    ]);
    flags.extend(s3.strata_flags());
    flags
}

/// Three processes running `target` (`all`: ingester + distributor + querier
/// + store-gateway + compactor each) on one etcd ring, RF=3, blocks to S3.
async fn start_cluster(target: &str) -> Cluster {
    let etcd = Etcd::start().await;
    let s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let mut flags = common_flags(&etcd, &s3);
        flags.push(format!("-target={target}"));
        flags.push(format!("-ingester.ring.instance_id=node-{i}"));
        flags.push(format!(
            "-blocks_storage.tsdb.dir={}",
            data.path().join(format!("tsdb-{i}")).display()
        ));
        nodes.push(Strata::start_with_flags(&flags).await);
    }
    // Every node's distributor must see all three ingesters, or a push
    // would be stored on fewer replicas.
    for node in &nodes {
        eventually(
            "three ACTIVE ingesters",
            Duration::from_secs(30),
            || async { (node.active_ingesters().await? == 3).then_some(()) },
        )
        .await;
    }
    Cluster {
        etcd,
        s3,
        nodes,
        _data: data,
    }
}

/// `series` series with a sample every 10 s over 10 minutes ending 2 minutes
/// ago (a flush leaves the last minute in the head), pushed in one request
/// (so no block is cut between series); returns them.
async fn push(node: &Strata, series: usize) -> Samples {
    let start = (now_ms() - 720_000) / 1000 * 1000;
    let mut pushed = Samples::new();
    for s in 0..series {
        let samples: Vec<(i64, f64)> = (0..60)
            .map(|i| (start + i * 10_000, (s * 1000 + i as usize) as f64 / 8.0))
            .collect();
        pushed.insert(format!("s{s:04}"), samples);
    }
    let labels: Vec<[(&str, &str); 2]> = pushed
        .keys()
        .map(|name| [("__name__", "compact_test"), ("series", name.as_str())])
        .collect();
    let series: Vec<_> = labels
        .iter()
        .zip(pushed.values())
        .map(|(l, s)| (&l[..], &s[..]))
        .collect();
    let body = encode_write_request(&write_request(&series));
    let url = node.url("/api/v1/push");
    eventually("a push to be accepted", Duration::from_secs(30), || {
        let body = body.clone();
        let url = url.clone();
        async move {
            let (status, msg) = push_raw(&url, Some(TENANT), body).await;
            if status != 200 {
                eprintln!("push not accepted yet: {status} {msg}");
            }
            (status == 200).then_some(())
        }
    })
    .await;
    pushed
}

/// The raw samples a querier answers for `compact_test[15m]` now.
async fn query_raw(node: &Strata) -> Samples {
    let url = node.url(&format!(
        "/prometheus/api/v1/query?query=compact_test%5B15m%5D&time={}",
        now_ms() as f64 / 1000.0
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    matrix_samples(&body, "series").into_iter().collect()
}

/// The answers (`data` of the JSON) to a set of PromQL queries evaluated at
/// fixed times over the pushed window, to compare before and after compaction.
async fn answers(node: &Strata, pushed: &Samples) -> Vec<serde_json::Value> {
    let first = pushed.values().next().unwrap();
    let (start, end) = (first[0].0, first[first.len() - 1].0);
    let t = (end + 1_000) as f64 / 1000.0;
    let instant = [
        "compact_test",
        "sum(count_over_time(compact_test[15m]))",
        "sum by (series) (rate(compact_test[2m]))",
        "max_over_time(compact_test[10m])",
        "topk(3, compact_test)",
    ];
    let mut urls: Vec<String> = instant
        .iter()
        .map(|q| format!("/prometheus/api/v1/query?query={}&time={t}", encode(q)))
        .collect();
    urls.push(format!(
        "/prometheus/api/v1/query_range?query={}&start={}&end={t}&step=30",
        encode("sum(rate(compact_test[1m]))"),
        start as f64 / 1000.0
    ));
    let mut out = Vec::new();
    for url in urls {
        let (status, body) = get_json(&node.url(&url), Some(TENANT)).await;
        out.push(serde_json::json!({ "url": url, "status": status, "data": body["data"] }));
    }
    out
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The tenant's complete blocks in the bucket (`meta.json` present): ULID,
/// (min_time, max_time), compaction level, and whether a deletion mark exists.
fn bucket_blocks(s3: &S3Server) -> Vec<(String, (i64, i64), u64, bool)> {
    let dir = s3.bucket_dir().join(TENANT);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e.unwrap().path();
        let meta = path.join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            (
                json["minTime"].as_i64().unwrap(),
                json["maxTime"].as_i64().unwrap(),
            ),
            json["compaction"]["level"].as_u64().unwrap(),
            path.join("deletion-mark.json").exists(),
        ));
    }
    out.sort_by_key(|b| (b.1, b.0.clone()));
    out
}

/// Block directories holding files but no `meta.json` (partial uploads).
fn partial_blocks(s3: &S3Server) -> Vec<PathBuf> {
    fn has_files(dir: &Path) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().any(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                has_files(&p)
            } else {
                // s3s-fs keeps upload temporaries beside objects; only
                // objects count.
                !p.file_name().unwrap().to_string_lossy().starts_with('.')
            }
        })
    }
    let dir = s3.bucket_dir().join(TENANT);
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name().unwrap().len() == 26
                && !p.join("meta.json").exists()
                && has_files(p)
        })
        .collect()
}

/// `promtool tsdb dump` of the given blocks: series → samples in dump order
/// (a sample in two non-overlapping blocks would show twice).
fn dump(s3: &S3Server, blocks: &[String]) -> Samples {
    let dirs: Vec<PathBuf> = blocks
        .iter()
        .map(|id| s3.bucket_dir().join(TENANT).join(id))
        .collect();
    let mut dumped = Samples::new();
    for (series, ts, value) in promtool_dump(&dirs, "series") {
        dumped.entry(series).or_default().push((ts, value));
    }
    dumped
}

/// Flushes every node once each holds all `series` (a push is answered at
/// the quorum of two; the third replica's copy lands right after, and a node
/// flushed before it would cut its block without it and refuse it later as
/// out of bounds).
async fn flush_all(nodes: &[Strata], series: usize) {
    for node in nodes {
        eventually(
            "every replica to hold every series",
            Duration::from_secs(30),
            || async {
                let text = node.metrics_text().await;
                let held: f64 = text
                    .lines()
                    .filter(|l| l.starts_with("strata_ingester_memory_series{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum();
                (held == series as f64).then_some(())
            },
        )
        .await;
    }
    for node in nodes {
        let (status, text) = node.flush().await;
        assert!(
            status.is_success(),
            "{status} {text}\n{}",
            node.process.logs()
        );
    }
}

/// Waits until every range with data has its three replica copies in the
/// bucket; returns the ranges' start times. (A flushed head's last block ends
/// just after its newest sample, not at the range's end.)
async fn wait_for_three_copies(s3: &S3Server, pushed: &Samples) -> Vec<i64> {
    let mut want: Vec<i64> = pushed
        .values()
        .flatten()
        .map(|(t, _)| t.div_euclid(RANGE_MS) * RANGE_MS)
        .collect();
    want.sort();
    want.dedup();
    eventually(
        "three uploaded copies of every range",
        Duration::from_secs(30),
        || async {
            let mut per_range: BTreeMap<i64, usize> = BTreeMap::new();
            for (_, (min, max), level, _) in bucket_blocks(s3) {
                assert_eq!(level, 1);
                assert!(
                    max <= min + RANGE_MS,
                    "block [{min}, {max}) exceeds its range"
                );
                *per_range.entry(min).or_default() += 1;
            }
            let ranges: Vec<i64> = per_range.keys().copied().collect();
            (ranges == want && per_range.values().all(|&n| n == 3)).then_some(())
        },
    )
    .await;
    want
}

/// How many gRPC `QueryStream` calls each node's ingester has served.
async fn query_streams(nodes: &[Strata]) -> Vec<f64> {
    let mut out = Vec::new();
    for node in nodes {
        let text = node.metrics_text().await;
        out.push(
            text.lines()
                .filter(|l| {
                    l.starts_with("strata_request_duration_seconds_count{")
                        && l.contains("/strata.ingester.Ingester/QueryStream")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        );
    }
    out
}

async fn run_pass(node: &Strata) -> serde_json::Value {
    let (status, text) = node.post("/compactor/run").await;
    assert!(
        status.is_success(),
        "{status} {text}\n{}",
        node.process.logs()
    );
    serde_json::from_str(&text).unwrap()
}

/// The end state: exactly one live block per range, nothing marked or
/// partial left, and the dump holds every pushed sample exactly once.
fn assert_compacted(s3: &S3Server, ranges: &[i64], pushed: &Samples, logs: &str) {
    let blocks = bucket_blocks(s3);
    let got: Vec<i64> = blocks.iter().map(|b| b.1 .0).collect();
    assert_eq!(got, ranges, "{blocks:?}\n{logs}");
    for (id, _, level, marked) in &blocks {
        assert!(!marked, "block {id} is marked for deletion");
        assert_eq!(*level, 2, "block {id}");
    }
    assert!(partial_blocks(s3).is_empty(), "{:?}", partial_blocks(s3));
    let ids: Vec<String> = blocks.iter().map(|b| b.0.clone()).collect();
    assert_eq!(&dump(s3, &ids), pushed);

    // The bucket index lists exactly those blocks.
    let gz = s3.bucket_dir().join(TENANT).join("bucket-index.json.gz");
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {:?}", gz.display(), out);
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(index["version"], 1);
    let mut listed: Vec<String> = index["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["block_id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(listed, ids);
    assert_eq!(index["block_deletion_marks"], serde_json::json!([]));
    assert!(index["updated_at"].as_i64().unwrap() > 1_600_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_copies_become_one_block_per_range() {
    let cluster = start_cluster("all").await;
    let node = &cluster.nodes[0];
    let pushed = push(node, 20).await;

    // Before compaction the ingesters answer: every sample, once.
    let before = query_raw(node).await;
    assert_eq!(before, pushed);
    let promql_before = answers(node, &pushed).await;
    assert!(
        promql_before.iter().all(|a| a["status"] == 200
            && a["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())),
        "every query answers data: {promql_before:?}"
    );
    let sum_before = get_json(
        &node.url(&format!(
            "/prometheus/api/v1/query?query=sum(count_over_time(compact_test%5B15m%5D))&time={}",
            now_ms() as f64 / 1000.0
        )),
        Some(TENANT),
    )
    .await
    .1;
    assert_eq!(sum_before["data"]["result"][0]["value"][1], "1200");

    flush_all(&cluster.nodes, pushed.len()).await;
    let ranges = wait_for_three_copies(&cluster.s3, &pushed).await;
    assert!(ranges.len() >= 5, "{ranges:?}");
    // With three overlapping copies the dump still has each sample once
    // (promtool merges overlapping blocks), the baseline for after.
    let copies: Vec<String> = bucket_blocks(&cluster.s3)
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(copies.len(), 3 * ranges.len());

    // Every node runs a compactor; the compactor ring (in etcd) gives the
    // tenant to exactly one of them, and the others leave it alone.
    let mut owner = None;
    for candidate in &cluster.nodes {
        let stats = run_pass(candidate).await;
        if stats["tenants"] == 1 {
            assert!(owner.is_none(), "two compactors own the tenant: {stats}");
            owner = Some((candidate, stats));
        } else {
            assert_eq!(stats["tenants_owned_elsewhere"], 1, "{stats}");
            assert_eq!(stats["compactions"], 0, "{stats}");
        }
    }
    let (node, stats) = owner.expect("one compactor owns the tenant");
    assert_eq!(stats["compactions"], ranges.len(), "{stats}");
    assert_eq!(
        stats["blocks_marked_for_deletion"],
        3 * ranges.len(),
        "{stats}"
    );
    assert_eq!(stats["blocks_deleted"], 3 * ranges.len(), "{stats}");
    let logs = node.process.logs();
    // The store-gateway is not part of this test: the answer after
    // compaction is read from the blocks themselves, and must equal the
    // ingesters' answer before.
    assert_compacted(&cluster.s3, &ranges, &before, &logs);

    // The same queries give the same answers from the compacted blocks, read
    // through the store-gateways only. The ingesters still hold their copies
    // of the blocks they cut (and answer from them), so a querier of its own
    // asks them only for the last minute: every query here ends more than two
    // minutes ago, so no ingester is asked, which their QueryStream counts
    // confirm.
    let mut flags = common_flags(&cluster.etcd, &cluster.s3);
    flags.push("-target=querier".to_string());
    flags.push("-querier.query_ingesters_within=1m".to_string());
    let store_only = Strata::start_with_flags(&flags).await;
    let newest = pushed.values().flatten().map(|(t, _)| *t).max().unwrap();
    assert!(
        now_ms() - 60_000 > newest + 1_000,
        "the queries must end before the ingesters' last minute"
    );
    let streams_before = query_streams(&cluster.nodes).await;
    // The queries before compaction asked the other nodes' ingesters over
    // gRPC: the count does see such calls.
    assert!(
        streams_before.iter().sum::<f64>() > 0.0,
        "no QueryStream call counted: {streams_before:?}"
    );
    let promql_after = eventually(
        "the store-gateways to serve the compacted blocks with the same answers",
        Duration::from_secs(30),
        || {
            let (promql_before, pushed) = (promql_before.clone(), &pushed);
            let store_only = &store_only;
            async move {
                let after = answers(store_only, pushed).await;
                (after == promql_before).then_some(after)
            }
        },
    )
    .await;
    assert_eq!(promql_after, promql_before);
    assert_eq!(
        query_streams(&cluster.nodes).await,
        streams_before,
        "an ingester was asked for the answers after compaction"
    );
    drop(store_only);

    // Another pass has nothing to do and keeps the bucket as it is.
    let stats = run_pass(node).await;
    assert_eq!(stats["compactions"], 0, "{stats}");
    assert_compacted(&cluster.s3, &ranges, &pushed, &logs);
    drop(cluster.etcd);
}

/// When to kill the compactor during a pass: at a moment seen in the bucket
/// (polled every millisecond; the kill lands a few milliseconds later, still
/// in the same step), or after a fixed delay.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// A new block's files are arriving, its `meta.json` is not there yet.
    UploadStarted,
    /// A new block is complete; its sources are not marked yet.
    UploadDone,
    /// The first source got its deletion mark.
    FirstMark,
    /// A source's `meta.json` is gone (its deletion has begun).
    DeletionStarted,
    /// This many milliseconds after the pass was requested.
    After(u64),
}

/// Names of the tenant's block directories and whether each has
/// `meta.json` / `deletion-mark.json` / any object.
fn dir_states(s3: &S3Server) -> BTreeMap<String, (bool, bool, bool)> {
    let dir = s3.bucket_dir().join(TENANT);
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !p.is_dir() || name.len() != 26 {
            continue;
        }
        let any = p.join("index").exists()
            || std::fs::read_dir(p.join("chunks")).is_ok_and(|mut d| d.next().is_some());
        out.insert(
            name,
            (
                p.join("meta.json").exists(),
                p.join("deletion-mark.json").exists(),
                any,
            ),
        );
    }
    out
}

/// Whether the moment `at` names has come, given the directories before the pass.
fn reached(
    at: KillAt,
    before: &BTreeMap<String, (bool, bool, bool)>,
    now: &BTreeMap<String, (bool, bool, bool)>,
) -> bool {
    let new = || now.iter().filter(|(name, _)| !before.contains_key(*name));
    match at {
        KillAt::UploadStarted => new().any(|(_, &(meta, _, any))| any && !meta),
        KillAt::UploadDone => new().any(|(_, &(meta, _, _))| meta),
        KillAt::FirstMark => now
            .iter()
            .any(|(name, &(_, mark, _))| mark && before.get(name).is_some_and(|b| !b.1)),
        KillAt::DeletionStarted => before
            .iter()
            .any(|(name, &(meta, _, _))| meta && !now.get(name).is_some_and(|n| n.0)),
        KillAt::After(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_killed_mid_pass_leaves_no_sample_missing_or_doubled() {
    // No compactor in the nodes: the one under test owns every tenant.
    let cluster = start_cluster("distributor,ingester,querier,store-gateway").await;
    let pushed = push(&cluster.nodes[0], 300).await;
    flush_all(&cluster.nodes, pushed.len()).await;
    let ranges = wait_for_three_copies(&cluster.s3, &pushed).await;

    // A compactor of its own, so killing it kills nothing else; its scratch
    // directory survives the kills, as a pod's volume would.
    let scratch = tempfile::tempdir().unwrap();
    let mut flags = common_flags(&cluster.etcd, &cluster.s3);
    flags.push("-target=compactor".to_string());
    // A stable instance ID, as a StatefulSet pod has: each restart takes the
    // killed instance's place in the compactor ring.
    flags.push("-ingester.ring.instance_id=compactor-0".to_string());
    flags.push(format!("-compactor.data_dir={}", scratch.path().display()));
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();

    let plan = [
        KillAt::UploadStarted,
        KillAt::UploadDone,
        KillAt::FirstMark,
        KillAt::After(0),
        KillAt::UploadStarted,
        KillAt::UploadDone,
        KillAt::DeletionStarted,
        KillAt::After(300),
    ];
    let mut states = Vec::new();
    for at in plan {
        let before = dir_states(&cluster.s3);
        let compactor = Strata::start(&args).await;
        let url = compactor.url("/compactor/run");
        let pass = tokio::spawn(async move { reqwest::Client::new().post(url).send().await });
        let seen = match at {
            KillAt::After(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                true
            }
            _ => {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    if reached(at, &before, &dir_states(&cluster.s3)) {
                        break true;
                    }
                    if pass.is_finished() || std::time::Instant::now() > deadline {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        // Dropping the process kills it with SIGKILL.
        drop(compactor);
        let _ = pass.await;

        // Whatever the moment, the blocks that are not marked for deletion
        // hold every sample: nothing lost.
        let blocks = bucket_blocks(&cluster.s3);
        let live: Vec<String> = blocks
            .iter()
            .filter(|b| !b.3)
            .map(|b| b.0.clone())
            .collect();
        let mut merged = dump(&cluster.s3, &live);
        for samples in merged.values_mut() {
            samples.dedup();
        }
        assert_eq!(merged, pushed, "data missing after a kill at {at:?}");
        let level2 = blocks.iter().filter(|b| b.2 == 2).count();
        let marked = blocks.iter().filter(|b| b.3).count();
        states.push(format!(
            "kill at {at:?} (moment seen: {seen}): {} complete blocks ({level2} merged, \
             {marked} marked), {} partial",
            blocks.len(),
            partial_blocks(&cluster.s3).len()
        ));
    }
    eprintln!("states after each kill:\n{}", states.join("\n"));

    // Restarted and left alone, it finishes: one block per range, each
    // sample once. Partial uploads are deleted once older than 1 s: passes
    // run until none is left.
    let compactor = Strata::start(&args).await;
    let stats = eventually(
        "passes to finish the job and delete the partial uploads",
        Duration::from_secs(30),
        || async {
            let stats = run_pass(&compactor).await;
            eprintln!("pass after the kills: {stats}");
            partial_blocks(&cluster.s3).is_empty().then_some(stats)
        },
    )
    .await;
    eprintln!("last pass after the kills: {stats}");
    let stats = run_pass(&compactor).await;
    assert_eq!(stats["compactions"], 0, "{stats}");
    assert_compacted(&cluster.s3, &ranges, &pushed, &compactor.process.logs());
}
