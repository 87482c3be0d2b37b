//! Blocks made by Prometheus's own tools are served like Strata's (issue 5,
//! "Prometheus's own blocks", the way users migrate history in): an
//! OpenMetrics file becomes blocks with `promtool tsdb create-blocks-from
//! openmetrics`, the blocks are copied into the bucket under a tenant prefix,
//! and Strata (`-querier.query_store_after=0s`, so the store-gateway serves
//! them) answers a set of instant and range queries and the label endpoints
//! exactly as a real Prometheus started on the same blocks does.
//!
//! The data avoids the Prometheus 2 → 3 differences listed in
//! `promql_compare.rs`: samples sit 1.234 s past a 15 s grid and every
//! evaluation time is a whole second, so no sample is ever on a window's edge,
//! and rates are evaluated well after the counters start.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use strata_integration::{free_port, get_json, require_program, Process, Strata};

const TENANT: &str = "migrated";
/// Six hours of data (three 2-hour blocks), ending two days ago: far older
/// than anything the ingesters are asked for.
const SPAN_S: i64 = 6 * 3600;
const STEP_S: i64 = 15;

fn openmetrics(start_s: i64) -> String {
    let mut out = String::new();
    let jobs = ["api", "db", "web"];
    out.push_str("# HELP pt_requests Requests served.\n# TYPE pt_requests counter\n");
    for (j, job) in jobs.iter().enumerate() {
        for inst in 0..4 {
            let rate = 1.0 + (j * 4 + inst) as f64 * 0.75;
            let mut value = 100.0 * (inst + 1) as f64;
            for k in 0..SPAN_S / STEP_S {
                // A counter reset in the middle for one series.
                if j == 1 && inst == 2 && k == 700 {
                    value = 3.0;
                }
                value += rate * STEP_S as f64;
                let ts = (start_s + k * STEP_S) as f64 + 1.234;
                let _ = writeln!(
                    out,
                    "pt_requests_total{{job=\"{job}\",instance=\"10.0.0.{inst}:9100\"}} {value} {ts:.3}"
                );
            }
        }
    }
    out.push_str("# HELP pt_temperature A gauge.\n# TYPE pt_temperature gauge\n");
    for zone in ["north", "south"] {
        for k in 0..SPAN_S / STEP_S {
            let v =
                20.0 + ((k as f64) / 37.0).sin() * 5.0 + if zone == "south" { 3.5 } else { 0.0 };
            let ts = (start_s + k * STEP_S) as f64 + 3.456;
            let _ = writeln!(out, "pt_temperature{{zone=\"{zone}\"}} {v} {ts:.3}");
        }
    }
    out.push_str("# EOF\n");
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), dst).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_blocks_answer_as_in_prometheus() {
    let promtool = require_program("promtool");
    let work = tempfile::tempdir().unwrap();
    let now_s = strata_integration::now_ms() / 1000;
    let start_s = (now_s - 2 * 86_400 - SPAN_S) / 3600 * 3600;
    let om = work.path().join("data.om");
    std::fs::write(&om, openmetrics(start_s)).unwrap();
    let made = work.path().join("made");
    let out = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&made)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks: Vec<_> = std::fs::read_dir(&made)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    assert!(blocks.len() >= 3, "{blocks:?}");

    // The same blocks in Strata's bucket and in Prometheus's data dir.
    let bucket = work.path().join("bucket");
    let prom_data = work.path().join("prometheus");
    for block in &blocks {
        let name = block.file_name().unwrap();
        copy_dir(block, &bucket.join(TENANT).join(name));
        copy_dir(block, &prom_data.join(name));
    }

    let prom_port = free_port();
    let prom_dir = tempfile::tempdir().unwrap();
    let config = prom_dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let prometheus_bin = require_program("prometheus");
    let mut prometheus = Process::spawn(
        "prometheus",
        &prometheus_bin,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", prom_data.display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            // Keep every block: retention is counted from the newest block.
            "--storage.tsdb.retention.time=100y".to_string(),
        ],
        prom_dir,
    );
    prometheus
        .wait_ready(
            &format!("http://127.0.0.1:{prom_port}/-/ready"),
            Duration::from_secs(30),
        )
        .await;
    let prom_url = format!("http://127.0.0.1:{prom_port}");

    let strata = Strata::start(&[
        "-target=all",
        "-blocks_storage.backend=filesystem",
        &format!("-blocks_storage.filesystem.dir={}", bucket.display()),
        &format!(
            "-blocks_storage.bucket_store.sync_dir={}",
            work.path().join("sync").display()
        ),
        &format!(
            "-blocks_storage.tsdb.dir={}",
            work.path().join("tsdb").display()
        ),
        "-querier.query_store_after=0s",
    ])
    .await;
    let strata_url = strata.url("");

    let instant = [
        "pt_requests_total",
        "pt_requests_total{job=\"db\"}",
        "rate(pt_requests_total[5m])",
        "increase(pt_requests_total{instance=~\"10.0.0.[12]:9100\"}[10m])",
        "sum by (job) (rate(pt_requests_total[5m]))",
        "topk(3, rate(pt_requests_total[5m]))",
        "pt_temperature",
        "max_over_time(pt_temperature[30m])",
        "avg(pt_temperature)",
        "count by (__name__) ({__name__=~\"pt_.+\"})",
        "pt_requests_total[2m]",
        "resets(pt_requests_total[3h])",
    ];
    // Evaluation times: whole seconds, 20 minutes in, at each block boundary
    // (+7 s), in the middle and near the end.
    let times: Vec<i64> = [
        start_s + 1200,
        start_s + 2 * 3600 + 7,
        start_s + 3 * 3600 + 1,
        start_s + 4 * 3600 + 7,
        start_s + SPAN_S - 60,
    ]
    .to_vec();
    let mut compared = 0;
    for q in instant {
        for &time in &times {
            let n = common::compare_instant(&strata_url, TENANT, &prom_url, q, time as f64)
                .await
                .unwrap_or_else(|e| panic!("{e}\nstrata log:\n{}", strata.process.logs()));
            compared += n;
        }
    }
    let ranges = [
        "rate(pt_requests_total[5m])",
        "sum by (job) (increase(pt_requests_total[15m]))",
        "pt_temperature",
        "avg_over_time(pt_temperature[10m])",
    ];
    // Across all three blocks.
    for q in ranges {
        compared += common::compare_range(
            &strata_url,
            TENANT,
            &prom_url,
            q,
            (start_s + 1200) as f64,
            (start_s + SPAN_S - 60) as f64,
            60.0,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(compared > 200, "only {compared} series compared");

    // The label and series endpoints agree too.
    let window = format!("start={}&end={}", start_s, start_s + SPAN_S);
    for path in [
        format!("/api/v1/labels?{window}"),
        format!("/api/v1/label/job/values?{window}"),
        format!("/api/v1/label/__name__/values?{window}"),
        format!("/api/v1/series?match[]=pt_temperature&{window}"),
    ] {
        let (s_status, s) = get_json(&format!("{strata_url}/prometheus{path}"), Some(TENANT)).await;
        let (p_status, p) = get_json(&format!("{prom_url}{path}"), None).await;
        assert_eq!((s_status, p_status), (200, 200), "{path}: {s} {p}");
        let sort = |v: &serde_json::Value| {
            let mut items: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.to_string())
                .collect();
            items.sort();
            items
        };
        assert_eq!(sort(&s), sort(&p), "{path}");
    }
}
