//! Memory per tenant and per series (issue 22: many small tenants must cost
//! about what one large one does), as the growth of the resident set; run it
//! under `heaptrack` to see where the bytes go.
//! Pushes `STRATA_TENANTS` tenants × `STRATA_SERIES` series × `STRATA_ROUNDS`
//! samples into one ingester (WAL fsync off, no HTTP, one thread) and prints
//! the resident set after the pushes, minus the one before the first:
//!
//! ```text
//! STRATA_TENANTS=10000 STRATA_SERIES=100 cargo run --release -p strata-ingester --example tenant_memory
//! STRATA_TENANTS=1 STRATA_SERIES=1000000 cargo run --release -p strata-ingester --example tenant_memory
//! ```
//!
//! `STRATA_SERIES=0`: each tenant gets one push of a series without samples,
//! which opens its database and head but stores nothing.
//!
//! Series `i` of tenant `t` is metric `i % 100` of scrape target
//! `(t × STRATA_SERIES + i) / 100`, labelled like strata-bench's workload, so
//! that both runs hold the same series, spread differently over tenants.

// A measurement tool: a failed unwrap ends the run with its message.
#![allow(clippy::unwrap_used)]

use strata_ingester::{Ingester, IngesterConfig};
use strata_proto::prometheus::{Label, Sample as WireSample, TimeSeries, WriteRequest};
use strata_storage::BlocksStorageConfig;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

const JOBS: [&str; 4] = ["api", "worker", "frontend", "db"];
const NAMESPACES: [&str; 5] = ["default", "payments", "search", "auth", "batch"];

fn labels(series: usize) -> Vec<Label> {
    let target = series / 100;
    let job = JOBS[target % JOBS.len()];
    let label = |name: &str, value: String| Label {
        name: name.into(),
        value,
    };
    vec![
        label("__name__", format!("app_metric_{}_total", series % 100)),
        label("container", format!("{job}-main")),
        label(
            "instance",
            format!(
                "10.{}.{}.{}:9100",
                (target >> 16) & 255,
                (target >> 8) & 255,
                target & 255
            ),
        ),
        label("job", job.into()),
        label("namespace", NAMESPACES[target % NAMESPACES.len()].into()),
        label("node", format!("node-{}", target % 500)),
        label("pod", format!("{job}-{target:x}-0")),
        label("region", "eu-west-1".into()),
        label("service", format!("{job}-svc")),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tenants = env_usize("STRATA_TENANTS", 1_000);
    let series = env_usize("STRATA_SERIES", 100);
    let rounds = env_usize("STRATA_ROUNDS", 2);
    let dir = tempfile::tempdir().unwrap();
    let mut config = BlocksStorageConfig::default();
    config.tsdb.dir = dir.path().join("tsdb").display().to_string();
    config.tsdb.wal_fsync = "never".into();
    config.filesystem.dir = dir.path().join("blocks").display().to_string();
    let registry = prometheus::Registry::new();
    let ingester = Ingester::open(IngesterConfig::default(), &config, &registry).unwrap();
    let before = rss_kib();
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - rounds as i64 * 15_000;
    for round in 0..rounds {
        for tenant in 0..tenants {
            if series == 0 {
                // A tenant with no series: one push whose series has no samples.
                let request = WriteRequest {
                    timeseries: vec![TimeSeries {
                        labels: labels(tenant),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let _ = ingester.push(&format!("tenant-{tenant}"), request).await;
            }
            for first in (0..series).step_by(100) {
                let timeseries = (first..(first + 100).min(series))
                    .map(|i| TimeSeries {
                        labels: labels(tenant * series + i),
                        samples: vec![WireSample {
                            timestamp: start_ms + round as i64 * 15_000,
                            value: (i + round) as f64,
                        }],
                        ..Default::default()
                    })
                    .collect();
                let request = WriteRequest {
                    timeseries,
                    ..Default::default()
                };
                ingester
                    .push(&format!("tenant-{tenant}"), request)
                    .await
                    .unwrap();
            }
        }
    }
    let after = rss_kib();
    let grown = (after.saturating_sub(before) * 1024) as f64;
    let total = (tenants * series).max(1) as f64;
    println!(
        "{tenants} tenants x {series} series x {rounds} rounds: rss grew {:.1} MiB, {:.0} B/series, {:.0} B/tenant (rss {} MiB)",
        grown / 1048576.0,
        grown / total,
        grown / tenants as f64,
        after / 1024
    );
    drop(ingester);
}
