//! Per-tenant limits against the real binary: the ingestion rate and the series
//! limit answer 429 naming the limit, and a change to the runtime overrides file
//! takes effect without a restart; the per-tenant query limits apply to queries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use strata_integration::{
    encode_write_request, eventually, free_port, now_ms, push_raw, strata_bin, write_request,
    Process, Strata,
};

/// A push of `n` new series `name{i="<first..first+n>"}` with one sample each.
fn series_push(name: &str, first: usize, n: usize) -> Vec<u8> {
    let now = now_ms();
    let values: Vec<String> = (first..first + n).map(|i| i.to_string()).collect();
    let labels: Vec<[(&str, &str); 2]> = values
        .iter()
        .map(|v| [("__name__", name), ("i", v.as_str())])
        .collect();
    let samples = [(now, 1.0)];
    let series: Vec<strata_integration::TestSeries<'_>> =
        labels.iter().map(|l| (&l[..], &samples[..])).collect();
    encode_write_request(&write_request(&series))
}

/// One series with `n` samples, a millisecond apart, ending now.
fn samples_push(n: usize) -> Vec<u8> {
    let now = now_ms();
    let samples: Vec<(i64, f64)> = (0..n).map(|i| (now - (n - i) as i64, i as f64)).collect();
    encode_write_request(&write_request(&[(
        &[("__name__", "rate_test"), ("job", "a")],
        &samples,
    )]))
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
    let (status, msg) = push_raw(&url, Some("t"), samples_push(15)).await;
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = push_raw(&url, Some("t"), samples_push(15)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains("1 samples/s (ingestion_rate)")
            && msg.contains("burst of 20 samples (ingestion_burst_size)"),
        "{msg}"
    );
    // Another tenant has its own bucket.
    let (status, msg) = push_raw(&url, Some("other"), samples_push(15)).await;
    assert_eq!(status, 200, "{msg}");
    let metrics = reqwest::get(strata.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"strata_discarded_samples_total{reason="rate_limited",tenant="t"} 15"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_series_limit_is_429_naming_the_limit() {
    let strata = Strata::start(&["-target=all", "-limits.max_global_series_per_user=3"]).await;
    let url = strata.url("/api/v1/push");
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 0, 3)).await;
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 3, 1)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains("per-tenant series limit of 3 exceeded (max_global_series_per_user"),
        "{msg}"
    );
    assert!(msg.contains("err-strata-max-series-per-user"), "{msg}");
    // Series that exist still take samples.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 0, 3)).await;
    assert_eq!(status, 200, "{msg}");
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
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 0, 2)).await;
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = push_raw(&url, Some("t"), series_push("m", 2, 1)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(msg.contains("series limit of 2 exceeded"), "{msg}");
    let (status, msg) = push_raw(&url, Some("u"), samples_push(30)).await;
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
    let mut next = 2;
    eventually("the raised series limit", Duration::from_secs(10), || {
        let body = series_push("m", next, 1);
        next += 1;
        let url = url.clone();
        async move { (push_raw(&url, Some("t"), body).await.0 == 200).then_some(()) }
    })
    .await;
    let (status, msg) = push_raw(&url, Some("u"), samples_push(30)).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains("burst of 10 samples (ingestion_burst_size)"),
        "{msg}"
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
    let (status, msg) = push_raw(&url, Some("u"), samples_push(30)).await;
    assert_eq!(status, 429, "the previous overrides stay in force: {msg}");
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
            series_push("q", 0, 3),
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
