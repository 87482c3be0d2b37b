//! Exemplars end to end. A real exporter (Python `prometheus_client`, serving
//! OpenMetrics with exemplars on a counter and a histogram) is scraped by a
//! real Prometheus 2.42 with exemplar storage, which remote-writes them
//! (`send_exemplars`) to one of three Strata processes sharing an RF=3 ring in
//! etcd. `query_exemplars` through another of them — every ingester holding
//! a copy — must answer exactly what that Prometheus's own API answers.
//! Then the exemplars must survive kill -9 (the WAL), and an exemplar with
//! too many labels must be refused naming it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use strata_integration::{
    encode_write_request, get_json, local_storage_flags, now_ms, push_raw, require_program, Etcd,
    Process, Prometheus, Strata,
};
use strata_proto::prometheus::{Exemplar, Label, Sample, TimeSeries, WriteRequest};

/// The exporter: a counter and a histogram, each step with an exemplar whose
/// trace ID is new, served as OpenMetrics (what carries exemplars).
const EXPORTER: &str = r#"
import sys, time, itertools
from prometheus_client import Counter, Histogram, start_http_server
requests = Counter("demo_requests", "Requests served.", ["path"])
latency = Histogram("demo_latency_seconds", "Request latency.", buckets=[0.1, 0.5, 1.0])
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
for i in itertools.count():
    requests.labels(path="/a" if i % 2 else "/b").inc(exemplar={"trace_id": "t%05d" % i})
    latency.observe((i % 10) / 10.0, exemplar={"trace_id": "h%05d" % i, "span": "s"})
    time.sleep(0.3)
"#;

const EXEMPLAR_FLAG: &str = "-limits.max_global_exemplars_per_user=100000";

fn exporter() -> (Process, u16) {
    let python = require_program("python3");
    let port = strata_integration::free_port();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("exporter.py");
    std::fs::write(&script, EXPORTER).unwrap();
    let args = vec![script.display().to_string(), port.to_string()];
    (Process::spawn("exporter", &python, &args, dir), port)
}

/// `(series labels, [(trace labels, value, timestamp)])` sorted: the answer
/// without the order of its arrays, and timestamps as the JSON numbers.
type Answer = Vec<(String, Vec<(String, String, String)>)>;

fn normalise(body: &serde_json::Value) -> Answer {
    let mut out: Vec<_> = body["data"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| {
            let mut list: Vec<_> = s["exemplars"]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(|e| {
                    (
                        e["labels"].to_string(),
                        e["value"].to_string(),
                        e["timestamp"].to_string(),
                    )
                })
                .collect();
            list.sort();
            (s["seriesLabels"].to_string(), list)
        })
        .collect();
    out.sort();
    out
}

async fn strata_process(etcd: &Etcd, dir: &std::path::Path) -> Strata {
    let mut flags = etcd.ring_flags(3, 64);
    flags.extend(local_storage_flags(dir));
    flags.extend(["-target=all".to_string(), EXEMPLAR_FLAG.to_string()]);
    Strata::start_with_flags(&flags).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_over_strata_equal_the_senders_own() {
    let etcd = Etcd::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut stratas = Vec::new();
    for dir in &dirs {
        stratas.push(strata_process(&etcd, dir.path()).await);
    }
    for s in &stratas {
        strata_integration::eventually(
            "three ACTIVE ingesters",
            Duration::from_secs(30),
            || async { (s.active_ingesters().await? == 3).then_some(()) },
        )
        .await;
    }
    let (_exporter, exporter_port) = exporter();
    let started_ms = now_ms();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: demo
    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]
remote_write:
  - url: {}
    basic_auth: {{username: tenant-a, password: unused}}
    send_exemplars: true
    queue_config: {{batch_send_deadline: 1s, max_backoff: 1s}}
"#,
        stratas[0].url("/api/v1/push")
    );
    let prometheus = Prometheus::start(&config, &["--enable-feature=exemplar-storage"]).await;

    // A window holding a few exemplars of each counter series in Prometheus
    // (however slowly this machine scrapes); Strata is compared until it has
    // caught up with what Prometheus sent.
    let start = started_ms as f64 / 1000.0;
    let enough = format!(
        "/api/v1/query_exemplars?query=demo_requests_total&start={start}&end={}",
        (now_ms() + 3_600_000) / 1000
    );
    strata_integration::eventually(
        "Prometheus to hold 6 exemplars",
        Duration::from_secs(60),
        || {
            let url = prometheus.url(&enough);
            async move {
                let (_, body) = get_json(&url, None).await;
                let n: usize = normalise(&body).iter().map(|(_, l)| l.len()).sum();
                (n >= 6).then_some(())
            }
        },
    )
    .await;
    let end = now_ms() as f64 / 1000.0;
    let mut compared = 0;
    for query in [
        "demo_requests_total",
        "demo_latency_seconds_bucket{le=\"0.5\"}",
        "sum(rate(demo_requests_total[1m])) + demo_latency_seconds_bucket",
    ] {
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={start}&end={end}",
            urlencode(query)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, ours) = get_json(
                &stratas[2].url(&format!("/prometheus{path}")),
                Some("tenant-a"),
            )
            .await;
            let (their_status, theirs) = get_json(&prometheus.url(&path), None).await;
            assert_eq!(
                (status, their_status),
                (200, 200),
                "{query}: {ours} {theirs}"
            );
            let (ours, theirs) = (normalise(&ours), normalise(&theirs));
            if ours == theirs && !theirs.is_empty() {
                let n: usize = theirs.iter().map(|(_, l)| l.len()).sum();
                eprintln!("{query}: {} series, {n} exemplars equal", theirs.len());
                compared += n;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{query}: Strata {ours:?}\nPrometheus {theirs:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    // Each query's answer holds the counter's or the buckets' exemplars.
    assert!(compared >= 10, "only {compared} exemplars compared");
    drop(prometheus);
}

/// Exemplars pushed to a single process with local storage are there after
/// kill -9 and a restart on the same directory; an exemplar with more than
/// 128 characters of labels is refused with 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_survive_kill_9_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let flags = local_storage_flags(dir.path());
    let args = ["-target=all", &flags[0], &flags[1], EXEMPLAR_FLAG];
    let strata = Strata::start(&args).await;
    let now = now_ms();
    let series = |exemplar_labels: Vec<Label>| TimeSeries {
        labels: vec![Label {
            name: "__name__".into(),
            value: "orders_total".into(),
        }],
        samples: vec![Sample {
            value: 7.0,
            timestamp: now,
        }],
        exemplars: vec![Exemplar {
            labels: exemplar_labels,
            value: 7.0,
            timestamp: now - 10,
        }],
        ..Default::default()
    };
    let good = WriteRequest {
        timeseries: vec![series(vec![Label {
            name: "trace_id".into(),
            value: "abc123".into(),
        }])],
        ..Default::default()
    };
    let (status, body) = push_raw(
        &strata.url("/api/v1/push"),
        Some("t"),
        encode_write_request(&good),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");

    let path = format!(
        "/prometheus/api/v1/query_exemplars?query=orders_total&start={}&end={}",
        (now - 60_000) / 1000,
        (now + 60_000) / 1000
    );
    let expected = serde_json::json!([{
        "seriesLabels": {"__name__": "orders_total"},
        "exemplars": [{"labels": {"trace_id": "abc123"}, "value": "7", "timestamp": (now - 10) as f64 / 1000.0}],
    }]);
    let (_, body) = get_json(&strata.url(&path), Some("t")).await;
    assert_eq!(body["data"], expected, "{body}");

    // kill -9, then the same directory: the WAL gives the exemplar back.
    let port = strata.http_port;
    drop(strata);
    let strata = Strata::start(&args).await;
    assert_ne!(strata.http_port, port);
    let (_, body) = get_json(&strata.url(&path), Some("t")).await;
    assert_eq!(body["data"], expected, "after kill -9: {body}");

    let too_long = WriteRequest {
        timeseries: vec![series(vec![Label {
            name: "trace_id".into(),
            value: "x".repeat(200),
        }])],
        ..Default::default()
    };
    let (status, body) = push_raw(
        &strata.url("/api/v1/push"),
        Some("t"),
        encode_write_request(&too_long),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("limit of 128 characters"), "{body}");
    assert!(body.contains("orders_total"), "{body}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
