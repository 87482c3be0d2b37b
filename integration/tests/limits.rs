//! Per-tenant limits against the real binary: the ingestion rate and the series
//! limit answer 429 naming the limit, and a change to the runtime overrides file
//! takes effect without a restart; the per-tenant query limits apply to queries.
//! After every refused push a query shows that nothing of it was stored and
//! that what was accepted before is there, sample for sample.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_integration::{
    encode_write_request, eventually, free_port, get_json, matrix_samples, now_ms, push_raw,
    strata_bin, write_request, Process, Strata,
};

/// A push of `n` new series `name{i="<first..first+n>"}` with one sample each,
/// `(ts, value)`.
fn series_push(name: &str, first: usize, n: usize, ts: i64, value: f64) -> Vec<u8> {
    let values: Vec<String> = (first..first + n).map(|i| i.to_string()).collect();
    let labels: Vec<[(&str, &str); 2]> = values
        .iter()
        .map(|v| [("__name__", name), ("i", v.as_str())])
        .collect();
    let samples = [(ts, value)];
    let series: Vec<strata_integration::TestSeries<'_>> =
        labels.iter().map(|l| (&l[..], &samples[..])).collect();
    encode_write_request(&write_request(&series))
}

/// `n` samples a millisecond apart ending at `end_ms`, valued `first_value`,
/// `first_value + 1`, ...
fn samples(end_ms: i64, n: usize, first_value: f64) -> Vec<(i64, f64)> {
    (0..n)
        .map(|i| (end_ms - (n - 1 - i) as i64, first_value + i as f64))
        .collect()
}

/// A push of `samples` to the one series `rate_test{job="a"}`.
fn samples_push(samples: &[(i64, f64)]) -> Vec<u8> {
    encode_write_request(&write_request(&[(
        &[("__name__", "rate_test"), ("job", "a")],
        samples,
    )]))
}

/// Every sample of `tenant`'s series named `name` over the last hour: the
/// value of `label` → (timestamp ms, value) in time order.
async fn stored(
    strata: &Strata,
    tenant: &str,
    name: &str,
    label: &str,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let url = strata.url(&format!(
        "/prometheus/api/v1/query?query={name}%5B1h%5D&time={}",
        (now_ms() + 1_000) as f64 / 1000.0
    ));
    let (status, body) = get_json(&url, Some(tenant)).await;
    assert_eq!(status, 200, "{body}");
    matrix_samples(&body, label).into_iter().collect()
}

/// `series` → `samples`, as [`stored`] returns them.
fn expect(series: &[(&str, &[(i64, f64)])]) -> BTreeMap<String, Vec<(i64, f64)>> {
    series
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_ingestion_rate_is_429_naming_the_limit() {
    let strata = Strata::start(&[
        "-target=all",
        "-limits.ingestion_rate=1",
        "-limits.ingestion_burst_size=20",
    ])
    .await;
    let url = strata.url("/api/v1/push");
    let now = now_ms();
    let accepted = samples(now - 1_000, 15, 0.0);
    let (status, msg) = push_raw(&url, Some("t"), samples_push(&accepted)).await;
    assert_eq!(status, 200, "{msg}");
    let refused = samples(now, 15, 100.0);
    let (status, msg) = push_raw(&url, Some("t"), samples_push(&refused)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains("1 samples/s (ingestion_rate)")
            && msg.contains("burst of 20 samples (ingestion_burst_size)"),
        "{msg}"
    );
    // Another tenant has its own bucket.
    let (status, msg) = push_raw(&url, Some("other"), samples_push(&refused)).await;
    assert_eq!(status, 200, "{msg}");
    // The first push is stored whole, the refused one not at all; the other
    // tenant has the samples t was refused.
    assert_eq!(
        stored(&strata, "t", "rate_test", "job").await,
        expect(&[("a", &accepted)])
    );
    assert_eq!(
        stored(&strata, "other", "rate_test", "job").await,
        expect(&[("a", &refused)])
    );
    let metrics = strata.metrics_text().await;
    assert!(
        metrics.contains(r#"strata_discarded_samples_total{reason="rate_limited",tenant="t"} 15"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_series_limit_is_429_naming_the_limit() {
    let strata = Strata::start(&["-target=all", "-limits.max_global_series_per_user=3"]).await;
    let url = strata.url("/api/v1/push");
    let t1 = now_ms() - 2_000;
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 0, 3, t1, 1.0)).await;
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 3, 1, t1, 2.0)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains("per-tenant series limit of 3 exceeded (max_global_series_per_user"),
        "{msg}"
    );
    assert!(msg.contains("err-strata-max-series-per-user"), "{msg}");
    // The three series are there, the fourth is not.
    let first = [(t1, 1.0)];
    assert_eq!(
        stored(&strata, "t", "m", "i").await,
        expect(&[("0", &first), ("1", &first), ("2", &first)])
    );
    // Series that exist still take samples (a later one each).
    let t2 = t1 + 1_000;
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 0, 3, t2, 3.0)).await;
    assert_eq!(status, 200, "{msg}");
    let both = [(t1, 1.0), (t2, 3.0)];
    assert_eq!(
        stored(&strata, "t", "m", "i").await,
        expect(&[("0", &both), ("1", &both), ("2", &both)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_overrides_take_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(
        &file,
        "overrides:\n  t:\n    max_global_series_per_user: 2\n",
    )
    .unwrap();
    let file_flag = format!("-runtime_config.file={}", file.display());
    let strata = Strata::start(&["-target=all", &file_flag, "-runtime_config.period=1s"]).await;
    let url = strata.url("/api/v1/push");

    // Loaded at start: t may have 2 series; u has the default.
    let ts = now_ms() - 5_000;
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 0, 2, ts, 1.0)).await;
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 2, 1, ts, 1.0)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(msg.contains("series limit of 2 exceeded"), "{msg}");
    let one = [(ts, 1.0)];
    assert_eq!(
        stored(&strata, "t", "m", "i").await,
        expect(&[("0", &one), ("1", &one)])
    );
    let u_accepted = samples(ts, 30, 0.0);
    let (status, msg) = push_raw(&url, Some("u"), samples_push(&u_accepted)).await;
    assert_eq!(status, 200, "{msg}");
    let (status, page) = get_text(&strata.url("/runtime_config")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("  t:\n") && page.contains("max_global_series_per_user: 2"),
        "{page}"
    );

    // Raise t's limit and lower u's burst: both apply at the next reload.
    std::fs::write(
        &file,
        "overrides:\n  t:\n    max_global_series_per_user: 5\n  u:\n    ingestion_burst_size: 10\n",
    )
    .unwrap();
    // A new series each try: those refused before the reload stay absent.
    let mut next = 2;
    let accepted = eventually("the raised series limit", Duration::from_secs(10), || {
        let i = next;
        next += 1;
        let body = series_push("m", i, 1, ts, 1.0);
        let url = url.clone();
        async move { (push_raw(&url, Some("t"), body).await.0 == 200).then_some(i) }
    })
    .await;
    let accepted = accepted.to_string();
    assert_eq!(
        stored(&strata, "t", "m", "i").await,
        expect(&[("0", &one), ("1", &one), (accepted.as_str(), &one)])
    );
    let u_refused = samples(ts + 1_000, 30, 100.0);
    let (status, msg) = push_raw(&url, Some("u"), samples_push(&u_refused)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains("burst of 10 samples (ingestion_burst_size)"),
        "{msg}"
    );
    let u_only_accepted = expect(&[("a", &u_accepted)]);
    assert_eq!(
        stored(&strata, "u", "rate_test", "job").await,
        u_only_accepted
    );

    // An invalid file is logged and the overrides in force stay.
    std::fs::write(&file, "overrides:\n  u:\n    ingestion_burst: 1\n").unwrap();
    eventually("a failed reload", Duration::from_secs(10), || {
        let url = strata.url("/metrics");
        async move {
            let (_, metrics) = get_text(&url).await;
            metrics
                .contains("strata_runtime_config_last_reload_successful 0")
                .then_some(())
        }
    })
    .await;
    let (status, msg) = push_raw(&url, Some("u"), samples_push(&u_refused)).await;
    assert_eq!(status, 429, "the previous overrides stay in force: {msg}");
    assert_eq!(
        stored(&strata, "u", "rate_test", "job").await,
        u_only_accepted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_runtime_file_at_start_stops_the_process_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(&file, "overrides:\n  t:\n    max_series: 2\n").unwrap();
    let args = vec![
        "-target=all".to_string(),
        format!("-server.http_listen_port={}", free_port()),
        format!("-server.grpc_listen_port={}", free_port()),
        format!("-runtime_config.file={}", file.display()),
    ];
    let mut process = Process::spawn("strata", &strata_bin(), &args, tempfile::tempdir().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while process.is_running() {
        assert!(
            Instant::now() < deadline,
            "strata kept running: {}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = process.logs();
    assert!(
        logs.contains("runtime_config.file") && logs.contains("unknown limit `max_series`"),
        "{logs}"
    );
}

async fn get_text(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_query_limits_come_from_the_runtime_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(
        &file,
        "overrides:\n  small:\n    max_samples_per_query: 5\n    max_fetched_series_per_query: 2\n",
    )
    .unwrap();
    let file_flag = format!("-runtime_config.file={}", file.display());
    let strata = Strata::start(&["-target=all", &file_flag]).await;
    for tenant in ["small", "other"] {
        let (status, msg) = push_raw(
            &strata.url("/api/v1/push"),
            Some(tenant),
            series_push("q", 0, 3, now_ms(), 1.0),
        )
        .await;
        assert_eq!(status, 200, "{msg}");
    }
    let query = |q: &str| {
        strata.url(&format!(
            "/prometheus/api/v1/query?query={q}&time={}",
            now_ms() as f64 / 1000.0
        ))
    };
    // 11 samples in a subquery: over small's 5, under the querier's default.
    let samples = query("sum_over_time(vector(1)%5B10m:1m%5D)");
    let (status, body) = strata_integration::get_json(&samples, Some("small")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("too many samples"),
        "{body}"
    );
    let (status, body) = strata_integration::get_json(&samples, Some("other")).await;
    assert_eq!(status, 200, "{body}");
    // Three series fetched: over small's 2.
    let (status, body) = strata_integration::get_json(&query("q"), Some("small")).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = strata_integration::get_json(&query("q"), Some("other")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(3));
}
