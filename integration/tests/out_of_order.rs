//! The out-of-order window (issue 14) against a real Prometheus 2.42 (Debian)
//! configured with the same `out_of_order_time_window`: both receive the same
//! remote-write pushes — samples in order, then late ones inside the window,
//! then ones too old, a late duplicate, the window's edges — and accept and
//! refuse the same pushes, and answer the same raw-sample and range queries.
//! Then Strata is killed with SIGKILL and restarted: the late samples come
//! back from its WAL. Then its head is flushed and shipped: `promtool tsdb
//! dump` of the uploaded blocks shows every sample. A second Strata (a
//! replica, same pushes, same bucket) uploads its own copy; queries over
//! both copies show each sample once, and after a compaction pass the one
//! block left holds each sample once.
//!
//! Prometheus 2.42 answers a push with a too-old sample with 500 "too old
//! sample" (its remote-write handler maps only out-of-order, out-of-bounds
//! and duplicate errors to 400) and stores nothing of that push; Strata
//! answers 400 "sample timestamp too old" naming the series. The pushes here
//! that are refused hold only refused samples, so both store the same.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_integration::{
    encode_write_request, eventually, get_json, local_storage_flags, matrix_samples, now_ms,
    promtool_dump, push_raw, write_request, Prometheus, Strata,
};

const TENANT: &str = "ooo-test";
const WINDOW: &str = "30m";
const MIN: i64 = 60_000;

/// Series (label `s`) → samples.
type Samples = BTreeMap<String, Vec<(i64, f64)>>;

fn strata_flags(data: &Path, blocks: &Path) -> Vec<String> {
    strata_flags_with_window(data, blocks, WINDOW)
}

fn strata_flags_with_window(data: &Path, blocks: &Path, window: &str) -> Vec<String> {
    let tsdb = local_storage_flags(data);
    vec![
        "-target=all".to_string(),
        tsdb[0].clone(),
        format!("-blocks_storage.filesystem.dir={}", blocks.display()),
        format!("-limits.out_of_order_time_window={window}"),
        // Queries read the bucket too (both replicas' copies), synced often.
        "-querier.query_store_after=0s".to_string(),
        "-blocks_storage.bucket_store.sync_interval=1s".to_string(),
        // Only the pass this test asks for runs, and it merges only
        // overlapping blocks of one range.
        "-compactor.compaction_interval=1h".to_string(),
        "-compactor.block_ranges=2h".to_string(),
        // Compacted blocks are marked, not deleted at once: a store-gateway
        // that has not synced since must still find the files it serves.
        "-compactor.deletion_delay=1h".to_string(),
    ]
}

/// One push of `series` (label `s` → samples) of metric `ooo_test`.
fn body(series: &[(&str, Vec<(i64, f64)>)]) -> Vec<u8> {
    let labels: Vec<[(&str, &str); 2]> = series
        .iter()
        .map(|(s, _)| [("__name__", "ooo_test"), ("s", *s)])
        .collect();
    let all: Vec<_> = labels
        .iter()
        .zip(series)
        .map(|(l, (_, samples))| (&l[..], &samples[..]))
        .collect();
    encode_write_request(&write_request(&all))
}

/// Pushes `series` to every Strata and to Prometheus; asserts that all agree
/// on accepting it (2xx) or not, which is `accepted`; returns Strata's answer.
async fn push_all(
    stratas: &[&Strata],
    prometheus: &Prometheus,
    what: &str,
    series: &[(&str, Vec<(i64, f64)>)],
    accepted: bool,
) -> String {
    let (p_status, p_text) = push_raw(&prometheus.url("/api/v1/write"), None, body(series)).await;
    let mut answer = String::new();
    for strata in stratas {
        let (s_status, s_text) =
            push_raw(&strata.url("/api/v1/push"), Some(TENANT), body(series)).await;
        assert_eq!(
            (
                (200..300).contains(&s_status),
                (200..300).contains(&p_status)
            ),
            (accepted, accepted),
            "{what}: strata {s_status} {s_text}; prometheus {p_status} {p_text}"
        );
        answer = s_text;
    }
    answer
}

/// Every raw sample of `ooo_test` within the two hours before `at_ms`, by
/// series, from `/api/v1/query` of a range selector (`url` ends before `/api`).
async fn raw(url: &str, tenant: Option<&str>, at_ms: i64) -> Result<Samples, String> {
    raw_over(url, tenant, at_ms, "2h").await
}

/// [`raw`] within `range` before `at_ms`.
async fn raw_over(
    url: &str,
    tenant: Option<&str>,
    at_ms: i64,
    range: &str,
) -> Result<Samples, String> {
    let q = format!(
        "{url}/api/v1/query?query=ooo_test%5B{range}%5D&time={}",
        at_ms as f64 / 1000.0
    );
    let (status, json) = get_json(&q, tenant).await;
    if status != 200 {
        return Err(format!("{q}: {status} {json}"));
    }
    Ok(matrix_samples(&json, "s").into_iter().collect())
}

async fn strata_raw(strata: &Strata, at_ms: i64) -> Samples {
    strata_raw_over(strata, at_ms, "2h").await
}

async fn strata_raw_over(strata: &Strata, at_ms: i64, range: &str) -> Samples {
    raw_over(&strata.url("/prometheus"), Some(TENANT), at_ms, range)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", strata.process.logs()))
}

/// The tenant's block directories in the bucket; with `live`, those not
/// marked for deletion.
fn bucket_blocks(blocks: &Path, live: bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(blocks.join(TENANT))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .filter(|p| !live || !p.join("deletion-mark.json").exists())
        .collect();
    out.sort();
    out
}

/// The samples the blocks' `meta.json` count, summed.
fn num_samples(blocks: &[PathBuf]) -> u64 {
    blocks
        .iter()
        .map(|b| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(b.join("meta.json")).unwrap()).unwrap();
            meta["stats"]["numSamples"].as_u64().unwrap()
        })
        .sum()
}

/// `promtool tsdb dump` of `blocks` by series, each series' samples sorted.
fn dump(blocks: &[PathBuf]) -> Samples {
    let mut out = Samples::new();
    for (s, t, v) in promtool_dump(blocks, "s") {
        out.entry(s).or_default().push((t, v));
    }
    for samples in out.values_mut() {
        samples.sort_by_key(|p| p.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_samples_match_prometheus_survive_kill_9_and_land_in_blocks_once() {
    let data_a = tempfile::tempdir().unwrap();
    let data_b = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let blocks = bucket.path().join("blocks");
    let config = format!(
        "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: {WINDOW}\n"
    );
    let prometheus = Prometheus::start(&config, &["--web.enable-remote-write-receiver"]).await;
    let a = Strata::start_with_flags(&strata_flags(data_a.path(), &blocks)).await;
    let b = Strata::start_with_flags(&strata_flags(data_b.path(), &blocks)).await;

    // 45 minutes of data ending 5 minutes ago: all of it in both heads, none
    // of it in the last minute that a flush keeps.
    let t0 = (now_ms() - 50 * MIN) / MIN * MIN;
    let at = |minutes: i64, ms: i64| t0 + minutes * MIN + ms;
    let in_order = |from: i64, to: i64| -> Vec<(i64, f64)> {
        (from..=to).map(|k| (at(k, 0), k as f64)).collect()
    };
    let both = [&a, &b];
    push_all(
        &both,
        &prometheus,
        "in order",
        &[
            ("a", in_order(0, 40)),
            ("b", in_order(0, 40)),
            ("c", in_order(0, 40)),
        ],
        true,
    )
    .await;
    // The head's newest sample is at 40 minutes: the window reaches back to
    // 10 minutes for every series.
    let late_a: Vec<(i64, f64)> = (15..=35)
        .rev()
        .map(|k| (at(k, 30_000), -(k as f64)))
        .collect();
    push_all(
        &both,
        &prometheus,
        "late, inside the window",
        &[("a", late_a), ("b", vec![(at(20, 10_000), 0.5)])],
        true,
    )
    .await;
    let refused = push_all(
        &both,
        &prometheus,
        "too old",
        &[("a", vec![(at(5, 30_000), 9.0)])],
        false,
    )
    .await;
    assert!(
        refused.contains("sample timestamp too old") && refused.contains("s=\"a\""),
        "{refused}"
    );
    // A late sample sent again with its value: stored once, no error.
    push_all(
        &both,
        &prometheus,
        "late duplicate",
        &[("b", vec![(at(20, 10_000), 0.5)])],
        true,
    )
    .await;
    // Another in-order sample moves the window to 11 minutes: a millisecond
    // inside its edge is in.
    push_all(
        &both,
        &prometheus,
        "in order again",
        &[("c", in_order(41, 41))],
        true,
    )
    .await;
    push_all(
        &both,
        &prometheus,
        "the window's edge",
        &[("c", vec![(at(11, 0) + 1, 1.5)])],
        true,
    )
    .await;
    // One millisecond older than the window: out (an own push, since
    // Prometheus drops a whole push for one refused sample).
    push_all(
        &both,
        &prometheus,
        "just beyond the window",
        &[("c", vec![(at(11, 0) - 1, 2.5)])],
        false,
    )
    .await;

    let end = at(45, 0);
    let expected = raw(&prometheus.url(""), None, end).await.unwrap();
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(expected["a"].len(), 41 + 21);
    assert_eq!(expected["b"].len(), 42);
    assert_eq!(expected["c"].len(), 43);
    assert_eq!(strata_raw(&a, end).await, expected);
    // The grid lies 7.5 s off the samples: on the edge of a lookback or
    // range window Prometheus 2.x (closed on the left) and Strata (open, as
    // Prometheus 3) differ by convention.
    for query in ["ooo_test", "sum(ooo_test)", "max_over_time(ooo_test[2m])"] {
        common::compare_range(
            &a.url(""),
            TENANT,
            &prometheus.url(""),
            query,
            (t0 - MIN + 7_500) as f64 / 1000.0,
            (end + 7_500) as f64 / 1000.0,
            15.0,
        )
        .await
        .unwrap();
    }

    // kill -9 (dropping the process sends SIGKILL): the late samples come
    // back from the WAL.
    drop(a);
    let a = Strata::start_with_flags(&strata_flags(data_a.path(), &blocks)).await;
    assert_eq!(strata_raw(&a, end).await, expected, "{}", a.process.logs());

    // Cut and ship: the uploaded block holds the late samples.
    let (status, text) = a.flush().await;
    assert!(status.is_success(), "{status} {text}");
    // One block per 2-hour range the data touches.
    let ranges = (at(41, 0).div_euclid(7_200_000) - t0.div_euclid(7_200_000) + 1) as usize;
    let shipped = bucket_blocks(&blocks, false);
    assert_eq!(shipped.len(), ranges, "{shipped:?}");
    assert_eq!(dump(&shipped), expected);
    let (status, text) = b.flush().await;
    assert!(status.is_success(), "{status} {text}");
    let copies = bucket_blocks(&blocks, false);
    assert_eq!(copies.len(), 2 * ranges, "{copies:?}");
    // promtool merges overlapping blocks as a query does: the counts in the
    // blocks' meta tell that both copies are whole.
    let total: u64 = expected.values().map(|s| s.len() as u64).sum();
    assert_eq!(num_samples(&shipped), total);
    assert_eq!(num_samples(&copies), 2 * total);
    assert_eq!(dump(&copies), expected);

    // Queries over the head-less ingester and both copies in the bucket:
    // each sample once.
    eventually(
        "the store-gateway to serve both copies",
        Duration::from_secs(30),
        || async { (strata_raw(&a, end).await == expected).then_some(()) },
    )
    .await;

    // One compaction pass merges the two overlapping copies.
    let (status, text) = a.post("/compactor/run").await;
    assert!(status.is_success(), "{status} {text}\n{}", a.process.logs());
    let live = bucket_blocks(&blocks, true);
    assert_eq!(live.len(), ranges, "{live:?}\n{text}");
    assert_eq!(dump(&live), expected);
    assert_eq!(num_samples(&live), total, "{text}");
    eventually(
        "queries over the compacted block",
        Duration::from_secs(30),
        || async { (strata_raw(&a, end).await == expected).then_some(()) },
    )
    .await;
}

/// A window longer than the head keeps (3 h, with 2 h blocks), and late
/// samples after a flush: behind the blocks already cut. Prometheus 2.42
/// takes them (its out-of-order head is not bounded by its blocks); so does
/// Strata, into blocks of their own that overlap the in-order ones. The same
/// answers as Prometheus's; the late samples survive kill -9 (WAL), are in
/// the uploaded blocks (promtool), and after compaction each sample is
/// there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_samples_behind_the_blocks_already_cut_match_prometheus_and_are_compacted_once() {
    const LONG: &str = "3h";
    let data = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let blocks = bucket.path().join("blocks");
    let config = format!(
        "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: {LONG}\n"
    );
    let prometheus = Prometheus::start(&config, &["--web.enable-remote-write-receiver"]).await;
    let flags = strata_flags_with_window(data.path(), &blocks, LONG);
    let strata = Strata::start_with_flags(&flags).await;

    // 165 minutes of data ending 5 minutes ago, then a flush: all of it is
    // in blocks, and the head takes nothing older in order.
    let t0 = (now_ms() - 170 * MIN) / MIN * MIN;
    let at = |minutes: i64, ms: i64| t0 + minutes * MIN + ms;
    let in_order: Vec<(i64, f64)> = (0..=165).map(|k| (at(k, 0), k as f64)).collect();
    push_all(
        &[&strata],
        &prometheus,
        "in order",
        &[("a", in_order.clone()), ("b", in_order)],
        true,
    )
    .await;
    let (status, text) = strata.flush().await;
    assert!(status.is_success(), "{status} {text}");
    let in_order_blocks = bucket_blocks(&blocks, false);
    assert!(!in_order_blocks.is_empty());

    // Two hours behind the newest sample, between the in-order ones: behind
    // every block, inside the window.
    let late: Vec<(i64, f64)> = (20..=50)
        .rev()
        .map(|k| (at(k, 30_000), -(k as f64)))
        .collect();
    push_all(
        &[&strata],
        &prometheus,
        "late, behind the blocks",
        &[("a", late.clone())],
        true,
    )
    .await;
    // A late one sent again: stored once, no error.
    push_all(
        &[&strata],
        &prometheus,
        "late duplicate",
        &[("a", vec![late[3]])],
        true,
    )
    .await;
    // Three hours and a millisecond behind the newest sample: too old.
    let refused = push_all(
        &[&strata],
        &prometheus,
        "beyond the window",
        &[("b", vec![(at(165, 0) - 180 * MIN - 1, 9.0)])],
        false,
    )
    .await;
    assert!(refused.contains("sample timestamp too old"), "{refused}");

    let end = at(166, 0);
    let expected = raw_over(&prometheus.url(""), None, end, LONG)
        .await
        .unwrap();
    assert_eq!(expected["a"].len(), 166 + late.len());
    assert_eq!(expected["b"].len(), 166);
    assert_eq!(strata_raw_over(&strata, end, LONG).await, expected);
    for query in ["ooo_test", "sum(ooo_test)", "min_over_time(ooo_test[2m])"] {
        common::compare_range(
            &strata.url(""),
            TENANT,
            &prometheus.url(""),
            query,
            (t0 - MIN + 7_500) as f64 / 1000.0,
            (end + 7_500) as f64 / 1000.0,
            15.0,
        )
        .await
        .unwrap();
    }

    // kill -9: the late samples come back from the WAL.
    drop(strata);
    let strata = Strata::start_with_flags(&flags).await;
    assert_eq!(
        strata_raw_over(&strata, end, LONG).await,
        expected,
        "{}",
        strata.process.logs()
    );

    // The next flush cuts them into blocks of their own (one per 2-hour
    // range they fall in) and ships them: every sample is in the bucket.
    let (status, text) = strata.flush().await;
    assert!(status.is_success(), "{status} {text}");
    let shipped = bucket_blocks(&blocks, false);
    let late_ranges =
        (at(50, 0).div_euclid(7_200_000) - at(20, 0).div_euclid(7_200_000) + 1) as usize;
    assert_eq!(
        shipped.len(),
        in_order_blocks.len() + late_ranges,
        "{shipped:?}"
    );
    let late_only: Vec<PathBuf> = shipped
        .iter()
        .filter(|b| !in_order_blocks.contains(b))
        .cloned()
        .collect();
    let mut late_dump = dump(&late_only);
    assert_eq!(late_dump.len(), 1, "{late_dump:?}");
    let mut late_sorted = late.clone();
    late_sorted.sort_by_key(|p| p.0);
    assert_eq!(late_dump.remove("a").unwrap(), late_sorted);
    assert_eq!(dump(&shipped), expected);
    let total: u64 = expected.values().map(|s| s.len() as u64).sum();
    assert_eq!(num_samples(&shipped), total);

    // One compaction pass merges each late block into the in-order block it
    // overlaps: each sample once.
    let (status, text) = strata.post("/compactor/run").await;
    assert!(
        status.is_success(),
        "{status} {text}\n{}",
        strata.process.logs()
    );
    let live = bucket_blocks(&blocks, true);
    assert_eq!(live.len(), in_order_blocks.len(), "{live:?}\n{text}");
    assert_eq!(dump(&live), expected);
    assert_eq!(num_samples(&live), total, "{text}");
    eventually(
        "queries over the compacted blocks",
        Duration::from_secs(30),
        || async { (strata_raw_over(&strata, end, LONG).await == expected).then_some(()) },
    )
    .await;
}
