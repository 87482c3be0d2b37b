//! Times range queries over generated counters (the shape of the micro-benchmark
//! in `benches/micro/hot_paths.rs`), for profiling and scaling checks:
//!
//! ```text
//! cargo run --release -p strata-promql --example range_perf -- [series] [iterations] [exact query]
//! ```
//!
//! Prints the median wall time and the mean CPU time per query; asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use strata_model::{Label, Labels, Sample};
use strata_promql::{Engine, EngineOptions, MemoryStorage};

const INTERVAL_MS: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;
const NAMESPACES: usize = 12;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let only: Option<String> = args.next();
    let mut storage = MemoryStorage::new();
    let mut x: u64 = 5;
    let mut unit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..n {
        let labels = Labels::from_sorted(vec![
            Label::new("__name__", "x"),
            Label::new("container", format!("c{}", i % 7)),
            Label::new("instance", format!("10.0.{}.{}:9100", i / 256, i % 256)),
            Label::new("job", format!("job{}", i % 5)),
            Label::new("namespace", format!("ns{}", i % NAMESPACES)),
            Label::new("pod", format!("pod-{i:x}")),
        ]);
        let mut v = (unit() * 1e6).round();
        for k in 0..240 {
            v += (unit() * 100.0).round();
            storage.add_sample(&labels, Sample::new(T0 + k * INTERVAL_MS, v));
        }
    }
    let engine = Engine::new(EngineOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (start, end) = (T0 + 5 * 60_000, T0 + 239 * INTERVAL_MS);
    for query in [
        "sum by (namespace) (rate(x[5m]))",
        "sum by (__name__) (x)",
        "rate(x[5m])",
        "sum by (namespace) (rate(x[5m])) / 2",
        "topk(10, rate(x[5m]))",
        "bottomk by (namespace) (3, max_over_time(x[5m]))",
        "topk(5, x)",
    ] {
        if only.as_deref().is_some_and(|o| query != o) {
            continue;
        }
        let cpu_before = process_cpu();
        let mut times: Vec<Duration> = (0..iters)
            .map(|_| {
                let t = Instant::now();
                let r = rt
                    .block_on(engine.range_query(&storage, query, start, end, INTERVAL_MS))
                    .unwrap();
                std::hint::black_box(r);
                t.elapsed()
            })
            .collect();
        let cpu = (process_cpu() - cpu_before) / iters as u32;
        times.sort();
        println!(
            "{n} series, {} steps: {query:<40} median {:?}, CPU {:?} per query",
            (end - start) / INTERVAL_MS + 1,
            times[times.len() / 2],
            cpu
        );
    }
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, in
/// clock ticks of 10 ms; zero elsewhere). Wall time is noisy on a shared machine,
/// CPU time much less.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}
