//! Blocks reach a real S3-compatible server (s3s-fs, SigV4, path-style): push,
//! `POST /ingester/flush`, then the bucket holds `<tenant>/<ULID>/` with
//! `meta.json`, `index` and `chunks/000001`, and `promtool tsdb dump` of a
//! downloaded copy prints every pushed sample exactly once.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use strata_integration::{
    now_ms, promtool_dump, push_each_series, require_program, S3Server, Strata,
};

const TENANT: &str = "s3-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_blocks_land_in_s3_and_promtool_reads_them() {
    require_program("promtool");
    let s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut flags = vec![
        "-target=all".to_string(),
        format!(
            "-blocks_storage.tsdb.dir={}",
            data.path().join("tsdb").display()
        ),
        "-blocks_storage.tsdb.block_ranges_period=2m".to_string(),
    ];
    flags.extend(s3.strata_flags());
    let strata = Strata::start_with_flags(&flags).await;

    // 3 series, a sample every 10 s over 5 minutes: more than 2 block ranges,
    // ending 2 minutes ago (a flush leaves the last minute in the head).
    let start = (now_ms() - 420_000) / 1000 * 1000;
    let mut pushed: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for s in 0..3 {
        let samples: Vec<(i64, f64)> = (0..30)
            .map(|i| (start + i * 10_000, (s * 100 + i) as f64))
            .collect();
        pushed.insert(format!("s{s}"), samples);
    }
    push_each_series(&strata, TENANT, "s3_test", &pushed).await;
    let (status, body) = strata.flush().await;
    assert!(
        status.is_success(),
        "{status} {body}\n{}",
        strata.process.logs()
    );

    // The bucket as s3s-fs stores it: <root>/<bucket>/<tenant>/<ULID>/...
    let tenant_dir = s3.bucket_dir().join(TENANT);
    let blocks: Vec<_> = std::fs::read_dir(&tenant_dir)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", tenant_dir.display(), strata.process.logs()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(blocks.len() >= 2, "{blocks:?}");
    for block in &blocks {
        for f in ["meta.json", "index", "chunks/000001"] {
            assert!(block.join(f).is_file(), "{} lacks {f}", block.display());
        }
    }
    // Read the way a user would, after downloading the blocks.
    let mut dumped: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (series, ts, value) in promtool_dump(&blocks, "series") {
        dumped.entry(series).or_default().push((ts, value));
    }
    for samples in dumped.values_mut() {
        samples.sort_by_key(|s| s.0);
    }
    assert_eq!(dumped, pushed);
}
