//! Replay memory, measured by hand (two runs, so the peak of the second is the
//! replay's alone; figures in docs/benchmarks.md, "WAL on vs off"):
//!
//! ```text
//! STRATA_REPLAY_DIR=/tmp/replay cargo run --release -p strata-ingester --example replay_memory  # writes
//! STRATA_REPLAY_DIR=/tmp/replay cargo run --release -p strata-ingester --example replay_memory  # replays
//! ```

// A measurement tool: a failed unwrap ends the run with its message.
#![allow(clippy::unwrap_used)]

use strata_ingester::{Ingester, IngesterConfig};
use strata_proto::prometheus::{Label, Sample as WireSample, TimeSeries, WriteRequest};
use strata_storage::BlocksStorageConfig;

const SERIES: usize = 100_000;
const SAMPLES: i64 = 20;

fn memory_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `strata_ingester_memory_series`, summed over tenants.
fn memory_series(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "strata_ingester_memory_series")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_gauge().get_value()))
        .sum()
}

#[tokio::main]
async fn main() {
    let Ok(dir) = std::env::var("STRATA_REPLAY_DIR") else {
        return;
    };
    let mut config = BlocksStorageConfig::default();
    config.tsdb.dir = format!("{dir}/tsdb");
    config.tsdb.wal_fsync = "never".into();
    config.filesystem.dir = format!("{dir}/blocks");
    let fresh = !std::path::Path::new(&config.tsdb.dir).exists();
    let registry = prometheus::Registry::new();
    let ingester = Ingester::open(IngesterConfig::default(), &config, &registry).unwrap();
    if fresh {
        for t in 0..SAMPLES {
            for batch in (0..SERIES).collect::<Vec<_>>().chunks(1000) {
                let timeseries = batch
                    .iter()
                    .map(|i| TimeSeries {
                        labels: vec![
                            Label {
                                name: "__name__".into(),
                                value: format!("metric_{}", i % 100),
                            },
                            Label {
                                name: "instance".into(),
                                value: format!("host-{i}.example.com:9100"),
                            },
                            Label {
                                name: "job".into(),
                                value: "node".into(),
                            },
                        ],
                        samples: vec![WireSample {
                            timestamp: 1_700_000_000_000 + t * 15_000,
                            value: (*i as f64) * 1.5 + t as f64,
                        }],
                        ..Default::default()
                    })
                    .collect();
                ingester
                    .push(
                        "t",
                        WriteRequest {
                            timeseries,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
            }
        }
        println!(
            "steady state after pushing {SERIES} series x {SAMPLES} samples: rss {} KiB, peak {} KiB",
            memory_kib("VmRSS:"),
            memory_kib("VmHWM:")
        );
    } else {
        println!(
            "after replay ({} series): rss {} KiB, peak during replay {} KiB",
            memory_series(&registry),
            memory_kib("VmRSS:"),
            memory_kib("VmHWM:")
        );
    }
}
