//! One query window covering store-only, both, and ingester-only time returns
//! every pushed sample exactly once (issue 5, "querier merge").
//!
//! `strata -target=all` on a real S3-compatible server with 2-minute blocks,
//! cut every second, shipped every second, synced by the store-gateway every
//! second; the querier asks the ingesters for the last 20 minutes and the
//! store-gateways for everything older than 5 minutes. 40 minutes of samples
//! are pushed at once: the head cuts them into blocks until it spans no more
//! than 3 minutes, keeping the chunk that straddles the last cut whole (so
//! the last ~10 minutes are in the head *and* in blocks). A query `x[45m]`
//! then reads:
//!
//! - `[T-40m, T-20m)`: store-gateways only (ingesters are not asked);
//! - `[T-20m, T-5m]`: both (the samples of `[T-10m, T-5m]` from both);
//! - `(T-5m, T]`: ingesters only (store-gateways are not asked).
//!
//! A copy of one block under a new ULID (what RF=3 uploads before the
//! compactor merges them) must not double anything either.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use strata_integration::{
    encode_write_request, eventually, get_json, now_ms, push_raw, push_series_at_once,
    write_request, S3Server, Strata,
};

const TENANT: &str = "sg-test";
const MIN: i64 = 60_000;

type Samples = BTreeMap<String, Vec<(i64, f64)>>;

/// `sg_test[45m]` at `time_s`, as series name → samples.
async fn raw_samples(strata: &Strata, time_s: f64) -> Option<Samples> {
    let url = strata.url(&format!(
        "/prometheus/api/v1/query?query=sg_test%5B45m%5D&time={time_s}"
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    if status != 200 {
        eprintln!("query failed: {status} {body}");
        return None;
    }
    let mut out = Samples::new();
    for series in body["data"]["result"].as_array()? {
        let name = series["metric"]["series"].as_str()?.to_string();
        let values: Vec<(i64, f64)> = series["values"]
            .as_array()?
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse().unwrap())
            })
            .collect();
        out.insert(name, values);
    }
    Some(out)
}

/// A gauge from `/metrics` (0 when absent).
async fn metric(strata: &Strata, name: &str) -> f64 {
    strata.metric(name).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_over_store_both_and_ingesters_returns_each_sample_once() {
    let s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut flags = vec![
        "-target=all".to_string(),
        format!(
            "-blocks_storage.tsdb.dir={}",
            data.path().join("tsdb").display()
        ),
        format!(
            "-blocks_storage.bucket_store.sync_dir={}",
            data.path().join("sync").display()
        ),
        "-blocks_storage.tsdb.block_ranges_period=2m".to_string(),
        "-blocks_storage.tsdb.head_compaction_interval=1s".to_string(),
        "-blocks_storage.tsdb.ship_interval=1s".to_string(),
        "-blocks_storage.bucket_store.sync_interval=1s".to_string(),
        "-querier.query_ingesters_within=20m".to_string(),
        "-querier.query_store_after=5m".to_string(),
    ];
    flags.extend(s3.strata_flags());
    let strata = Strata::start_with_flags(&flags).await;

    // 4 series, a sample every 15 s from T-40m to T (161 each).
    let t = now_ms() / 1000 * 1000;
    let mut pushed = Samples::new();
    for s in 0..4 {
        let samples: Vec<(i64, f64)> = (0..=160)
            .map(|i| (t - 40 * MIN + i * 15_000, (s * 1000 + i) as f64))
            .collect();
        pushed.insert(format!("s{s}"), samples);
    }
    push_series_at_once(&strata, TENANT, "sg_test", &pushed).await;

    let time_s = (t + 1000) as f64 / 1000.0;
    // Blocks are cut, shipped and loaded in the background; until then the
    // old part is missing, never doubled.
    let got = eventually(
        "every pushed sample to be queryable",
        Duration::from_secs(120),
        || async {
            let got = raw_samples(&strata, time_s).await?;
            for (name, samples) in &got {
                let want = &pushed[name];
                assert!(
                    samples.iter().all(|s| want.contains(s)),
                    "{name}: a sample that was never pushed"
                );
                let mut dedup = samples.clone();
                dedup.dedup_by_key(|s| s.0);
                assert_eq!(&dedup, samples, "{name}: a sample returned twice");
            }
            (got == pushed).then_some(got)
        },
    )
    .await;
    assert_eq!(got, pushed);

    // The store-gateway did serve the old part: blocks are loaded, and the
    // head no longer holds what was cut (a push there is out of bounds).
    let loaded = metric(&strata, "strata_storegateway_blocks_loaded").await;
    assert!(
        loaded >= 10.0,
        "{loaded} blocks loaded\n{}",
        strata.process.logs()
    );
    assert!(metric(&strata, "strata_storegateway_series_returned_total").await > 0.0);
    let old = [("__name__", "sg_test"), ("series", "s0")];
    let body = encode_write_request(&write_request(&[(&old[..], &[(t - 39 * MIN, 1.0)][..])]));
    let (status, _) = push_raw(&strata.url("/api/v1/push"), Some(TENANT), body).await;
    assert_eq!(status, 400, "the head still accepts samples of cut blocks");

    // A second copy of the newest block (as a replica would upload it).
    let tenant_dir = s3.bucket_dir().join(TENANT);
    let mut blocks: Vec<(i64, std::path::PathBuf)> = std::fs::read_dir(&tenant_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .map(|p| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p.join("meta.json")).unwrap()).unwrap();
            (meta["maxTime"].as_i64().unwrap(), p)
        })
        .collect();
    blocks.sort();
    let (_, newest) = blocks.last().unwrap();
    let ulid = newest.file_name().unwrap().to_str().unwrap().to_string();
    // Another valid ULID: same time part, different random part.
    let copy_id = format!("{}{}", &ulid[..10], "0000000000000000");
    assert_ne!(copy_id, ulid);
    let copy = tenant_dir.join(&copy_id);
    std::fs::create_dir_all(copy.join("chunks")).unwrap();
    for f in ["index", "chunks/000001"] {
        std::fs::copy(newest.join(f), copy.join(f)).unwrap();
    }
    let meta = std::fs::read_to_string(newest.join("meta.json"))
        .unwrap()
        .replace(&ulid, &copy_id);
    std::fs::write(copy.join("meta.json"), meta).unwrap();
    eventually("the copy to be loaded", Duration::from_secs(30), || async {
        (metric(&strata, "strata_storegateway_blocks_loaded").await > loaded).then_some(())
    })
    .await;
    assert_eq!(raw_samples(&strata, time_s).await.unwrap(), pushed);

    // The label endpoints see both sources too.
    let url = strata.url(&format!(
        "/prometheus/api/v1/label/series/values?start={}&end={time_s}",
        (t - 40 * MIN) / 1000
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], serde_json::json!(["s0", "s1", "s2", "s3"]));
}
