//! Object storage going away never holds up ingestion, and blocks cut while
//! it is away are uploaded once it is back. Strata (-target=all, 2-minute
//! blocks) ships to a real S3-compatible server (s3s-fs, SigV4, path-style);
//! after a first batch of samples spanning more than two block ranges the S3
//! server is stopped, pushes go on for 30 s (each must be answered 2xx), and a
//! `POST /ingester/flush` in the middle of the outage cuts the head into
//! blocks whose upload fails. Once S3 is back, every block cut appears under
//! `<tenant>/<ULID>/` with `meta.json`, `index` and `chunks/000001`. Nothing
//! lost, nothing invented, each source checked alone: `promtool tsdb dump` of
//! what is in the bucket is exactly every acknowledged sample older than the
//! cut (the newest block's end), each once, and a query of the time from the
//! cut on (which no block covers, so only the head can answer it) returns
//! exactly every acknowledged sample from the cut on.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_integration::{
    eventually, get_json, now_ms, one_sample_per_series_body, promtool_dump, push_raw,
    require_program, S3Server, Strata,
};

const TENANT: &str = "s3-outage";
const SERIES: usize = 3;
const OUTAGE: Duration = Duration::from_secs(30);

/// Every acknowledged sample: (series, timestamp ms) → value.
type Pushed = BTreeMap<(String, i64), f64>;

/// Pushes one sample per series at `ts`; panics unless answered 2xx.
async fn push(strata: &Strata, ts: i64, value: f64, pushed: &Mutex<Pushed>) {
    let names: Vec<String> = (0..SERIES).map(|s| format!("s{s}")).collect();
    let body = one_sample_per_series_body("s3_outage_test", &names, (ts, value));
    let (status, msg) = push_raw(&strata.url("/api/v1/push"), Some(TENANT), body).await;
    assert!(
        (200..300).contains(&status),
        "push at {ts}: {status} {msg}\n{}",
        strata.process.logs()
    );
    let mut p = pushed.lock();
    for n in &names {
        p.insert((n.clone(), ts), value);
    }
}

/// The blocks (ULID directories with a meta.json) under `dir`.
fn block_dirs(dir: &Path) -> BTreeMap<String, PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.join("meta.json").is_file())
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_string(), p))
        .collect()
}

/// Every sample `promtool tsdb dump` prints for `blocks`.
fn dump(blocks: &[PathBuf]) -> Vec<((String, i64), f64)> {
    promtool_dump(blocks, "series")
        .into_iter()
        .map(|(series, ts, value)| ((series, ts), value))
        .collect()
}

/// What a query returns for `[from_ms, now + 1 s]`: a range selector whose
/// left-open window starts 1 ms before `from_ms`.
async fn queried_from(strata: &Strata, from_ms: i64) -> Vec<((String, i64), f64)> {
    let at = now_ms() + 1000;
    let url = strata.url(&format!(
        "/prometheus/api/v1/query?query=s3_outage_test[{}ms]&time={}",
        at - from_ms + 1,
        at as f64 / 1000.0
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    let mut out = Vec::new();
    for s in body["data"]["result"].as_array().unwrap() {
        let name = s["metric"]["series"].as_str().unwrap().to_string();
        for v in s["values"].as_array().unwrap() {
            let ts = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
            let value: f64 = v[1].as_str().unwrap().parse().unwrap();
            out.push(((name.clone(), ts), value));
        }
    }
    out
}

/// The value of a metric without labels in the process's /metrics.
async fn metric(strata: &Strata, name: &str) -> f64 {
    let value = strata.metric(name).await;
    value.unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_go_on_while_s3_is_down_and_blocks_are_uploaded_when_it_returns() {
    // Needed at the end: fail now rather than after the 30 s outage.
    require_program("promtool");
    let mut s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let tsdb = data.path().join("tsdb");
    let mut flags = vec![
        "-target=all".to_string(),
        format!("-blocks_storage.tsdb.dir={}", tsdb.display()),
        "-blocks_storage.tsdb.block_ranges_period=2m".to_string(),
        // The shipper's first retry comes after 1 s, then it backs off.
        "-blocks_storage.tsdb.ship_interval=1s".to_string(),
    ];
    flags.extend(s3.strata_flags());
    let strata = Arc::new(Strata::start_with_flags(&flags).await);
    let pushed = Arc::new(Mutex::new(Pushed::new()));

    // 5 minutes of history, a sample every 10 s: more than two block ranges.
    let start = (now_ms() - 330_000) / 1000 * 1000;
    for i in 0..30 {
        push(&strata, start + i * 10_000, i as f64, &pushed).await;
    }

    s3.stop();
    // One pusher, one push after another (so each sample is newer than any a
    // flush cut), at the wall clock, for the whole outage.
    let pusher = {
        let (strata, pushed) = (strata.clone(), pushed.clone());
        tokio::spawn(async move {
            let began = Instant::now();
            let mut n = 0u64;
            while began.elapsed() < OUTAGE {
                push(&strata, now_ms(), 1000.0 + n as f64, &pushed).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };
    let history = pushed.lock().len();
    eventually(
        "20 pushes acknowledged while S3 is down",
        Duration::from_secs(30),
        || {
            let n = pushed.lock().len();
            async move { (n >= history + 20 * SERIES).then_some(()) }
        },
    )
    .await;
    // The flush cuts the head into blocks (all but its last minute); their
    // upload fails.
    let (status, body) = strata.flush().await;
    assert_eq!(status.as_u16(), 500, "{body}");
    assert!(
        body.contains("block(s) cut, but uploading failed"),
        "{body}"
    );
    let during_outage = pusher.await.unwrap();
    assert!(during_outage > 0);
    let local = block_dirs(&tsdb.join(TENANT));
    assert!(local.len() >= 3, "blocks cut: {local:?}");
    assert!(
        block_dirs(&s3.bucket_dir().join(TENANT)).is_empty(),
        "nothing can have been uploaded"
    );

    s3.restart().await;
    let bucket = s3.bucket_dir().join(TENANT);
    eventually(
        "every block cut during the outage in the bucket",
        Duration::from_secs(120),
        || {
            let uploaded = block_dirs(&bucket);
            let all = local.keys().all(|u| uploaded.contains_key(u));
            async move { all.then_some(()) }
        },
    )
    .await;
    let uploaded = block_dirs(&bucket);
    for (ulid, dir) in &uploaded {
        for f in ["meta.json", "index", "chunks/000001"] {
            assert!(dir.join(f).is_file(), "{ulid} lacks {f}");
        }
    }
    let blocks: Vec<PathBuf> = uploaded.values().cloned().collect();
    let pushed = pushed.lock().clone();
    let series: BTreeSet<&String> = pushed.keys().map(|(s, _)| s).collect();
    assert_eq!(series.len(), SERIES);

    // The cut: the newest block's end (exclusive). Blocks hold what is older,
    // the head what is newer.
    let cut = uploaded
        .values()
        .map(|dir| {
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap())
                    .unwrap();
            meta["maxTime"].as_i64().unwrap()
        })
        .max()
        .unwrap();
    let before_cut: Pushed = pushed
        .iter()
        .filter(|((_, ts), _)| *ts < cut)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let from_cut: Pushed = pushed
        .iter()
        .filter(|((_, ts), _)| *ts >= cut)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(
        !before_cut.is_empty() && !from_cut.is_empty(),
        "the cut at {cut} must leave samples on both sides: {} before, {} from it",
        before_cut.len(),
        from_cut.len()
    );

    // The bucket alone: every acknowledged sample before the cut, each once,
    // with its value; nothing else.
    let mut in_bucket = Pushed::new();
    for (key, value) in dump(&blocks) {
        if let Some(old) = in_bucket.insert(key.clone(), value) {
            panic!("{key:?} is in the bucket twice ({old} and {value})");
        }
    }
    let missing: Vec<_> = before_cut
        .keys()
        .filter(|k| !in_bucket.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged samples before the cut at {cut} are not in the bucket, e.g. {:?}\n{}",
        missing.len(),
        before_cut.len(),
        &missing[..missing.len().min(5)],
        strata.process.logs()
    );
    assert_eq!(in_bucket, before_cut, "the bucket's blocks (cut at {cut})");

    // The head alone: no block covers the time from the cut on, so what a
    // query of it returns comes from the head.
    let mut in_head = Pushed::new();
    for (key, value) in queried_from(&strata, cut).await {
        if let Some(old) = in_head.insert(key.clone(), value) {
            panic!("{key:?} is answered twice ({old} and {value})");
        }
    }
    assert_eq!(in_head, from_cut, "the head (from the cut at {cut} on)");
    // No block was cut meanwhile (its local copy could have answered).
    let local_now: BTreeSet<String> = block_dirs(&tsdb.join(TENANT)).into_keys().collect();
    let known: BTreeSet<String> = uploaded.keys().cloned().collect();
    assert!(
        local_now.is_subset(&known),
        "a block was cut during the check: {local_now:?} vs {known:?}"
    );

    // The shipper counted the failures, its retries and the uploads.
    assert!(metric(&strata, "strata_ingester_shipper_upload_failures_total").await >= 1.0);
    assert!(metric(&strata, "strata_ingester_shipper_upload_retries_total").await >= 1.0);
    assert!(metric(&strata, "strata_ingester_shipper_uploads_total").await >= local.len() as f64);
    assert!(
        metric(
            &strata,
            "strata_ingester_shipper_last_successful_upload_timestamp_seconds"
        )
        .await
            > 0.0
    );
}
