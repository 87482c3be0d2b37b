//! Object storage going away never holds up ingestion, and blocks cut while
//! it is away are uploaded once it is back. Strata (-target=all, 2-minute
//! blocks) ships to a real S3-compatible server (s3s-fs, SigV4, path-style);
//! after a first batch of samples spanning more than two block ranges the S3
//! server is stopped, pushes go on for 30 s (each must be answered 2xx), and a
//! `POST /ingester/flush` in the middle of the outage cuts the head into
//! blocks whose upload fails. Once S3 is back, every block cut appears under
//! `<tenant>/<ULID>/` with `meta.json`, `index` and `chunks/000001`, and every
//! pushed sample is either in those blocks (read by `promtool tsdb dump`) or
//! returned by a query of the head: nothing lost, nothing invented.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_integration::{
    encode_write_request, eventually, get_json, now_ms, promtool_dump, push_raw, require_program,
    write_request, S3Server, Strata,
};

const TENANT: &str = "s3-outage";
const SERIES: usize = 3;
const OUTAGE: Duration = Duration::from_secs(30);

/// Every acknowledged sample: (series, timestamp ms) → value.
type Pushed = BTreeMap<(String, i64), f64>;

/// Pushes one sample per series at `ts`; panics unless answered 2xx.
async fn push(strata: &Strata, ts: i64, value: f64, pushed: &Mutex<Pushed>) {
    let names: Vec<String> = (0..SERIES).map(|s| format!("s{s}")).collect();
    let labels: Vec<[(&str, &str); 2]> = names
        .iter()
        .map(|n| [("__name__", "s3_outage_test"), ("series", n.as_str())])
        .collect();
    let samples = [(ts, value)];
    let series: Vec<_> = labels.iter().map(|l| (&l[..], &samples[..])).collect();
    let body = encode_write_request(&write_request(&series));
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

/// What a query of the head returns over the last hour.
async fn queried(strata: &Strata) -> Vec<((String, i64), f64)> {
    let url = strata.url(&format!(
        "/prometheus/api/v1/query?query=s3_outage_test[1h]&time={}",
        (now_ms() + 1000) as f64 / 1000.0
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
    let text = reqwest::get(strata.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
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
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let strata = Arc::new(Strata::start(&args).await);
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
    tokio::time::sleep(OUTAGE / 3).await;
    // The flush cuts the head into blocks (all but its last minute); their
    // upload fails.
    let resp = reqwest::Client::new()
        .post(strata.url("/ingester/flush"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
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

    // Every acknowledged sample, from the blocks or from the head; nothing else.
    let pushed = pushed.lock().clone();
    let mut found: Pushed = BTreeMap::new();
    for (key, value) in dump(&blocks).into_iter().chain(queried(&strata).await) {
        if let Some(old) = found.insert(key.clone(), value) {
            assert_eq!(old, value, "{key:?} differs between blocks and head");
        }
    }
    let missing: Vec<_> = pushed
        .keys()
        .filter(|k| !found.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} pushed samples missing, e.g. {missing:?}\n{}",
        pushed.keys().filter(|k| !found.contains_key(*k)).count(),
        pushed.len(),
        strata.process.logs()
    );
    assert_eq!(found, pushed);
    let series: BTreeSet<&String> = pushed.keys().map(|(s, _)| s).collect();
    assert_eq!(series.len(), SERIES);

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
