//! `strata-bench`: a remote-write 1.0 load generator and PromQL query timer for
//! comparing Strata with Prometheus and VictoriaMetrics on the same machine.
//! It reports numbers; it never decides pass or fail. See docs/benchmarks.md.

mod procstat;
mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use strata_proto::prometheus::WriteRequest;
use tokio::task::JoinSet;

use workload::{make_series, metric_names, Rng};

#[derive(Debug, Parser)]
#[command(
    name = "strata-bench",
    about = "Remote-write load generator and PromQL query timer"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Push `series` series for `rounds` rounds (one sample per series per round, 15 s apart, ending now).
    Push(PushArgs),
    /// Time PromQL range queries.
    Query(QueryArgs),
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    /// Remote-write URL, e.g. http://127.0.0.1:9009/api/v1/push
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    #[arg(long, default_value_t = 60)]
    rounds: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Fraction of series replaced by new ones each round (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Tenants to spread series over (`bench-0`, `bench-1`, ...), sent as X-Scope-OrgID.
    #[arg(long, default_value_t = 1)]
    tenants: usize,
    /// PID of the target process: report its CPU seconds and RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// Label for the report line (e.g. "strata W1 run 2").
    #[arg(long, default_value = "")]
    name: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// Prometheus API base, e.g. http://127.0.0.1:9009/prometheus
    #[arg(long)]
    url: String,
    /// Tenant header to send (omit for single-tenant targets).
    #[arg(long)]
    tenant: Option<String>,
    /// Window start and end (unix seconds); default: the last `window` seconds.
    #[arg(long)]
    start: Option<f64>,
    #[arg(long)]
    end: Option<f64>,
    #[arg(long, default_value_t = 900.0)]
    window: f64,
    #[arg(long, default_value_t = 15.0)]
    step: f64,
    /// Times each query is run; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    #[arg(long, default_value = "")]
    name: String,
}

/// The standard query set Q (docs/benchmarks.md).
const STANDARD_QUERIES: [&str; 8] = [
    r#"rate(http_requests_total{instance="10.0.0.0:9100"}[5m])"#,
    "sum by (namespace) (rate(http_requests_total[5m]))",
    "topk(10, rate(node_cpu_seconds_total[5m]))",
    "avg by (job) (go_goroutines)",
    r#"sum(rate(http_requests_total{pod=~"api-.*"}[5m]))"#,
    "max_over_time(process_resident_memory_bytes[5m])",
    r#"count by (__name__) ({__name__=~"go_memstats_.*"})"#,
    r#"sum by (__name__) ({__name__=~".+_total"})"#,
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Push(args) => push(args).await,
        Mode::Query(args) => query(args).await,
    };
    if let Err(e) = result {
        eprintln!("strata-bench: {e}");
        std::process::exit(1);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn push(args: PushArgs) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let names = metric_names();
    let mut rng = Rng::new(args.seed);
    let mut series: Vec<_> = (0..args.series)
        .map(|i| make_series(&names, i, 0, &mut rng))
        .collect();
    let mut generation = vec![0u32; args.series];
    let tenants = args.tenants.max(1);
    let interval = 15_000i64;
    let first_ts = now_ms() - (args.rounds.saturating_sub(1) as i64) * interval;

    let cpu_before = args.pid.and_then(procstat::cpu_seconds);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut accepted = 0u64;
    let mut sent = 0u64;
    let mut first_error: Option<String> = None;

    for round in 0..args.rounds {
        if round > 0 && args.churn > 0.0 {
            for i in 0..series.len() {
                if rng.unit() < args.churn {
                    generation[i] += 1;
                    series[i] = make_series(&names, i, generation[i], &mut rng);
                }
            }
        }
        let ts = first_ts + round as i64 * interval;
        let mut in_flight = JoinSet::new();
        for tenant in 0..tenants {
            let mut batch = Vec::with_capacity(args.batch);
            for (i, s) in series.iter_mut().enumerate() {
                if i % tenants != tenant {
                    continue;
                }
                batch.push(s.next_sample(ts, &mut rng));
                if batch.len() == args.batch {
                    send(
                        &mut in_flight,
                        &client,
                        &args,
                        tenant,
                        std::mem::take(&mut batch),
                        &mut latencies,
                        &mut statuses,
                        &mut accepted,
                        &mut first_error,
                    )
                    .await;
                }
            }
            if !batch.is_empty() {
                send(
                    &mut in_flight,
                    &client,
                    &args,
                    tenant,
                    batch,
                    &mut latencies,
                    &mut statuses,
                    &mut accepted,
                    &mut first_error,
                )
                .await;
            }
        }
        // A barrier between rounds keeps each series' samples in time order.
        while let Some(done) = in_flight.join_next().await {
            record(
                done,
                &mut latencies,
                &mut statuses,
                &mut accepted,
                &mut first_error,
            );
        }
        sent += series.len() as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();

    let mut report = serde_json::json!({
        "name": args.name,
        "series": args.series,
        "rounds": args.rounds,
        "samples_sent": sent,
        "samples_accepted": accepted,
        "statuses": statuses,
        "seconds": elapsed,
        "samples_per_second": accepted as f64 / elapsed,
        "latency_p50_ms": percentile(&latencies, 0.5),
        "latency_p99_ms": percentile(&latencies, 0.99),
    });
    if let Some(pid) = args.pid {
        let cpu_after = procstat::cpu_seconds(pid);
        if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
            report["target_cpu_seconds"] = serde_json::json!(b - a);
            report["cpu_us_per_sample"] = serde_json::json!((b - a) * 1e6 / accepted.max(1) as f64);
        }
        if let Some((rss, peak)) = procstat::rss_bytes(pid) {
            report["rss_bytes"] = serde_json::json!(rss);
            report["peak_rss_bytes"] = serde_json::json!(peak);
            report["rss_bytes_per_series"] =
                serde_json::json!(rss as f64 / args.series.max(1) as f64);
        }
    }
    if let Some(e) = first_error {
        report["first_error"] = serde_json::json!(e);
    }
    println!("{report}");
    Ok(())
}

type PushResult = (Duration, Result<u16, String>, u64, String);

#[allow(clippy::too_many_arguments)]
async fn send(
    in_flight: &mut JoinSet<PushResult>,
    client: &reqwest::Client,
    args: &PushArgs,
    tenant: usize,
    timeseries: Vec<strata_proto::prometheus::TimeSeries>,
    latencies: &mut Vec<Duration>,
    statuses: &mut BTreeMap<String, u64>,
    accepted: &mut u64,
    first_error: &mut Option<String>,
) {
    while in_flight.len() >= args.concurrency.max(1) {
        if let Some(done) = in_flight.join_next().await {
            record(done, latencies, statuses, accepted, first_error);
        }
    }
    let samples = timeseries.len() as u64;
    let body = prost::Message::encode_to_vec(&WriteRequest {
        timeseries,
        ..Default::default()
    });
    let body = match snap::raw::Encoder::new().compress_vec(&body) {
        Ok(b) => b,
        Err(e) => {
            *first_error = Some(format!("snappy: {e}"));
            return;
        }
    };
    let req = client
        .post(&args.url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("X-Scope-OrgID", format!("bench-{tenant}"))
        .body(body);
    in_flight.spawn(async move {
        let start = Instant::now();
        let result = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = if status >= 300 {
                    resp.text().await.unwrap_or_default()
                } else {
                    String::new()
                };
                (Ok(status), text)
            }
            Err(e) => (Err(e.to_string()), String::new()),
        };
        (start.elapsed(), result.0, samples, result.1)
    });
}

fn record(
    done: Result<PushResult, tokio::task::JoinError>,
    latencies: &mut Vec<Duration>,
    statuses: &mut BTreeMap<String, u64>,
    accepted: &mut u64,
    first_error: &mut Option<String>,
) {
    let Ok((latency, status, samples, text)) = done else {
        return;
    };
    latencies.push(latency);
    let key = match &status {
        Ok(s) => s.to_string(),
        Err(_) => "connection error".to_string(),
    };
    *statuses.entry(key).or_default() += 1;
    match status {
        Ok(s) if (200..300).contains(&s) => *accepted += samples,
        Ok(s) => {
            first_error.get_or_insert_with(|| format!("{s}: {}", text.trim()));
        }
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
}

async fn query(args: QueryArgs) -> Result<(), String> {
    let client = reqwest::Client::new();
    let end = args.end.unwrap_or_else(|| now_ms() as f64 / 1000.0);
    let start = args.start.unwrap_or(end - args.window);
    let mut results = Vec::new();
    for q in STANDARD_QUERIES {
        let mut times = Vec::new();
        let mut series = 0usize;
        let mut error = None;
        for _ in 0..args.repeat.max(1) {
            let mut req = client
                .get(format!("{}/api/v1/query_range", args.url))
                .query(&[
                    ("query", q.to_string()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", args.step.to_string()),
                ]);
            if let Some(t) = &args.tenant {
                req = req.header("X-Scope-OrgID", t);
            }
            let t0 = Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
            times.push(t0.elapsed());
            if !status.is_success() {
                error = Some(body.to_string());
            }
            series = body["data"]["result"].as_array().map(Vec::len).unwrap_or(0);
        }
        times.sort();
        results.push(serde_json::json!({
            "query": q,
            "median_ms": percentile(&times, 0.5),
            "min_ms": percentile(&times, 0.0),
            "max_ms": percentile(&times, 1.0),
            "series": series,
            "error": error,
        }));
    }
    println!(
        "{}",
        serde_json::json!({"name": args.name, "queries": results})
    );
    Ok(())
}
