//! Timestamps a careless or hostile sender pushes, against the real binary
//! with local storage. Before, `i64::MIN`, `-1`, `0` and a year-old sample were
//! answered 200, stored where no query looked, and made `/ingester/flush` fail
//! with an overflowed block range, so the tenant's data never reached object
//! storage again. Now each is refused with the reason, the flush succeeds, and
//! the tenant's later samples are cut and shipped (read back with promtool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use strata_integration::{
    encode_write_request, now_ms, promtool_dump, push_raw, require_program, write_request, Strata,
};

const TENANT: &str = "careless";

fn blocks(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("meta.json").is_file())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_timestamps_are_refused_and_the_tenant_still_ships() {
    require_program("promtool");
    let data = tempfile::tempdir().unwrap();
    let bucket = data.path().join("bucket");
    let strata = Strata::start(&[
        "-target=all",
        &format!(
            "-blocks_storage.tsdb.dir={}",
            data.path().join("tsdb").display()
        ),
        "-blocks_storage.backend=filesystem",
        &format!("-blocks_storage.filesystem.dir={}", bucket.display()),
    ])
    .await;
    let url = strata.url("/api/v1/push");
    let now = now_ms();
    let year_ago = now - 365 * 86_400_000;
    for (name, ts) in [
        ("i64_min", i64::MIN),
        ("minus_one", -1),
        ("zero", 0),
        ("year_ago", year_ago),
    ] {
        let body = encode_write_request(&write_request(&[(
            &[("__name__", "bad_ts"), ("case", name)],
            &[(ts, 1.0)],
        )]));
        let (status, msg) = push_raw(&url, Some(TENANT), body).await;
        assert_eq!(status, 400, "{name}: {msg}");
        assert!(
            msg.contains("err-strata-sample-out-of-bounds"),
            "{name}: {msg}"
        );
        assert!(msg.contains("bad_ts"), "{name}: the series is named: {msg}");
    }
    let metrics = strata.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strata_discarded_samples_total")
                && l.contains(TENANT)
                && l.contains("sample-out-of-bounds")
                && l.ends_with(" 4")),
        "the four refusals are counted:\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("strata_discarded"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Good samples from five to two minutes ago, then a flush: 200, and they
    // are in the bucket (a flush leaves only the last minute in the head).
    let start = (now - 300_000) / 1000 * 1000;
    let good: Vec<(i64, f64)> = (0..19).map(|i| (start + i * 10_000, i as f64)).collect();
    let body = encode_write_request(&write_request(&[(
        &[("__name__", "good_ts"), ("case", "good")],
        &good,
    )]));
    let (status, msg) = push_raw(&url, Some(TENANT), body).await;
    assert_eq!(status, 200, "{msg}");
    let (status, text) = strata.flush().await;
    assert!(status.is_success(), "flush: {status} {text}");
    let shipped = blocks(&bucket.join(TENANT));
    assert!(!shipped.is_empty(), "nothing shipped for {TENANT}");
    let dumped = promtool_dump(&shipped, "case");
    let got: Vec<(i64, f64)> = dumped
        .iter()
        .filter(|(case, _, _)| case == "good")
        .map(|(_, t, v)| (*t, *v))
        .collect();
    assert_eq!(
        got, good,
        "the good samples, exactly, in the shipped blocks"
    );
    assert!(
        dumped.iter().all(|(case, _, _)| case == "good"),
        "nothing refused was stored: {dumped:?}"
    );
}
