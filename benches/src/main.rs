//! `strata-bench`: a remote-write 1.0 load generator and PromQL query timer for
//! comparing Strata with Prometheus and VictoriaMetrics on the same machine.
//! It reports numbers; it never decides pass or fail. See docs/benchmarks.md.

mod compare;
mod procstat;
mod report;
mod workload;
#[cfg(test)]
mod workload_tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use tokio::task::JoinSet;

use workload::{make_series, make_series_with, metric_names, Rng};

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
    /// Print the Markdown tables (medians with min–max over runs) of the JSON
    /// lines that `push`, `query` and `compare` printed, read from files
    /// (gzip-compressed when the name ends in `.gz`).
    Report(ReportArgs),
    /// Compare the answers `query --answers-out` saved from one system with a
    /// reference system's (Prometheus): same series, same timestamps relative
    /// to the window's start, values equal within a tolerance. Prints one JSON
    /// line; with `--strict` a difference also fails the command.
    Compare(CompareArgs),
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The reference answers (`query --answers-out` of Prometheus).
    #[arg(long)]
    reference: String,
    /// The answers to check.
    #[arg(long)]
    answers: String,
    /// Relative tolerance: values a and b are equal when
    /// |a − b| ≤ tolerance × max(|a|, |b|) (or |a − b| ≤ 1e-12).
    #[arg(long, default_value_t = compare::DEFAULT_TOLERANCE)]
    tolerance: f64,
    /// Exit with an error when any answer differs.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    tags: Tags,
    #[arg(long, default_value = "")]
    name: String,
}

/// Tags copied into the JSON report, for `report` to group runs by.
#[derive(Debug, Clone, clap::Args)]
struct Tags {
    /// System under test, e.g. strata, prometheus, victoria-metrics.
    #[arg(long, default_value = "")]
    system: String,
    /// Workload, e.g. W1 or W2.
    #[arg(long, default_value = "")]
    workload: String,
    /// Run number.
    #[arg(long, default_value_t = 1)]
    run: u32,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Files of JSON lines.
    #[arg(required = true)]
    files: Vec<String>,
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
    #[command(flatten)]
    tags: Tags,
    /// Seconds between rounds' timestamps (the scrape interval).
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// Seconds to wait after the last push before reading the target's CPU and
    /// memory (lets background work such as merges show up in the figures).
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
    /// The push's start time is rounded down to a multiple of this many
    /// seconds (0: not rounded), the grid; the last round's timestamp is
    /// `phase` seconds before it. Pushes made at different times then hold
    /// the same samples shifted by a whole number of minutes, so queries
    /// aligned to absolute time (subqueries) give the same answers relative
    /// to the window, and `compare` can set the answers of two systems side
    /// by side.
    #[arg(long, default_value_t = 60)]
    align: u64,
    /// Seconds between the last sample and the whole-minute anchor (see
    /// `align`): 7.5 keeps every sample off whole minutes, where subqueries
    /// with minute steps evaluate.
    #[arg(long, default_value_t = 7.5)]
    phase: f64,
    /// Where the queries' grid lies: this many seconds after each sample (the
    /// report's `window_start_ms`/`window_end_ms`, which `query
    /// --window-from` takes; step 15 s). With 5 (and `phase` 7.5) no sample
    /// lies on the edge of a range or lookback window, and no subquery step
    /// of whole minutes on the edge of a subquery's range: on those edges
    /// Prometheus 2.x (closed on the left) and Prometheus 3 or Strata (open on
    /// the left) differ by convention.
    #[arg(long, default_value_t = 5.0)]
    grid_after: f64,
    /// Replicas of a Prometheus HA pair sending every series (1: no HA
    /// labels). With 2 or more each replica's copy of a series carries
    /// `cluster="bench"` and `__replica__="r<k>"`, and each round is sent by
    /// every replica, replica after replica (a deduplicating target stores
    /// one copy: see `samples_stored`).
    #[arg(long, default_value_t = 1)]
    ha_replicas: usize,
    /// Fraction of samples sent out of order (0.0–1.0): each round, this
    /// share of the series (picked at random, the last round excepted) hold
    /// their sample back and send it in the next round's request right after
    /// their next sample, one interval late. The samples sent are the same;
    /// the target needs an out-of-order window of more than one interval.
    #[arg(long, default_value_t = 0.0)]
    out_of_order_fraction: f64,
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
    /// Take start and end from a `push` report (its `window_start_ms` and
    /// `window_end_ms`, else `start_ms` and `end_ms`): the queries then cover
    /// exactly the pushed window, on the grid.
    #[arg(long)]
    window_from: Option<String>,
    #[command(flatten)]
    tags: Tags,
    #[arg(long, default_value_t = 15.0)]
    step: f64,
    /// Times each query is run; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    #[arg(long, default_value = "")]
    name: String,
    /// A query to time instead of the standard set Q; repeat for several.
    #[arg(long = "query")]
    queries: Vec<String>,
    /// Write the answers (each query's `data.result` of the last run, or its
    /// error) to this file, for `compare`.
    #[arg(long)]
    answers_out: Option<String>,
}

/// The standard query set Q (docs/benchmarks.md). Q1–Q8 are shapes the
/// engine's fast path evaluates series by series; Q9–Q12 are not.
const STANDARD_QUERIES: [&str; 12] = [
    r#"rate(http_requests_total{instance="10.0.0.0:9100"}[5m])"#,
    "sum by (namespace) (rate(http_requests_total[5m]))",
    "topk(10, rate(node_cpu_seconds_total[5m]))",
    "avg by (job) (go_goroutines)",
    r#"sum(rate(http_requests_total{pod=~"api-.*"}[5m]))"#,
    "max_over_time(process_resident_memory_bytes[5m])",
    r#"count by (__name__) ({__name__=~"go_memstats_.*"})"#,
    r#"sum by (__name__) ({__name__=~".+_total"})"#,
    r#"max_over_time(rate(http_requests_total{namespace="payments"}[5m])[10m:1m])"#,
    r#"label_replace(rate(http_requests_total{job="api"}[5m]), "host", "$1", "instance", "(.+):9100")"#,
    "sum by (namespace) (rate(http_requests_total[5m])) / on() group_left sum(rate(http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (namespace, le) (rate(http_request_duration_seconds_bucket[5m])))",
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Push(args) => push(args).await,
        Mode::Query(args) => query(args).await,
        Mode::Report(args) => report_files(&args),
        Mode::Compare(args) => compare_files(&args),
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
    let replicas = args.ha_replicas.max(1);
    // Replica-major, so that each request holds one replica's series.
    let mut series: Vec<_> = (0..args.series * replicas)
        .map(|i| {
            let (id, replica) = (i % args.series.max(1), i / args.series.max(1));
            if replicas > 1 {
                let ha = [
                    ("__replica__", format!("r{replica}")),
                    ("cluster", "bench".to_string()),
                ];
                make_series_with(&names, id, 0, &ha, &mut rng)
            } else {
                make_series(&names, id, 0, &mut rng)
            }
        })
        .collect();
    let mut generation = vec![0u32; args.series];
    let ooo_fraction = args.out_of_order_fraction.clamp(0.0, 1.0);
    if ooo_fraction > 0.0 && args.churn > 0.0 {
        return Err("--out-of-order-fraction and --churn cannot be combined".to_string());
    }
    // Its own generator, so that the values sent are those of an in-order run.
    let mut ooo_rng = Rng::new(args.seed ^ 0x00f0_0f00_0ff0);
    // Series index → its held-back sample, encoded as a whole `timeseries`.
    let mut held: Vec<Option<Vec<u8>>> = vec![None; series.len()];
    let mut late_sent = 0u64;
    // Every series ever pushed: churned-away series stay in the target's head
    // (Prometheus, Mimir and Strata keep them until the head is compacted).
    let mut active_series = args.series as u64;
    let tenants = args.tenants.max(1);
    if replicas > 1 && tenants > 1 {
        return Err("--ha-replicas and --tenants cannot be combined".to_string());
    }
    if replicas > 1 && args.churn > 0.0 {
        return Err("--ha-replicas and --churn cannot be combined".to_string());
    }
    let per_tenant = series.len().div_ceil(tenants).max(1);
    let batch_size = args.batch.max(1);
    let interval = args.interval.max(1) as i64 * 1000;
    let align = args.align as i64 * 1000;
    let now = now_ms();
    let grid_end = if align > 0 { now - now % align } else { now };
    let phase = (args.phase.max(0.0) * 1000.0).round() as i64;
    let grid_after = (args.grid_after * 1000.0).round() as i64;
    let first_ts = grid_end - phase - (args.rounds.saturating_sub(1) as i64) * interval;
    let last_ts = first_ts + (args.rounds.saturating_sub(1) as i64) * interval;

    let rss_before = args.pid.and_then(procstat::rss_bytes);
    let cpu_before = args.pid.and_then(procstat::cpu_seconds);
    let own_cpu_before = procstat::cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut sent = 0u64;

    for round in 0..args.rounds {
        if round > 0 && args.churn > 0.0 {
            for i in 0..series.len() {
                if rng.unit() < args.churn {
                    generation[i] += 1;
                    series[i] = make_series(&names, i, generation[i], &mut rng);
                    active_series += 1;
                }
            }
        }
        let ts = first_ts + round as i64 * interval;
        let mut in_flight = JoinSet::new();
        // Tenant `t` owns the `t`-th run of `per_tenant` consecutive series:
        // whole scrape targets, as a small customer's are (series `i` is a
        // metric of target `i / metrics`), so a tenant's labels repeat within
        // it as one large tenant's do. Striding tenants over the series instead
        // gave each tenant one metric of a hundred targets: every instance and
        // pod string in a hundred tenants' indexes.
        let last_round = round + 1 == args.rounds;
        for (tenant, owned) in series.chunks_mut(per_tenant).enumerate() {
            let mut body = Vec::with_capacity(batch_size * 320);
            let mut in_body = 0u64;
            for (j, s) in owned.iter_mut().enumerate() {
                let i = tenant * per_tenant + j;
                let late = held[i].take();
                if ooo_fraction > 0.0 && !last_round && ooo_rng.unit() < ooo_fraction {
                    let mut own = Vec::with_capacity(320);
                    s.encode_next(ts, args.interval as f64, &mut rng, &mut own);
                    held[i] = Some(own);
                } else {
                    s.encode_next(ts, args.interval as f64, &mut rng, &mut body);
                    in_body += 1;
                }
                // A series holds back at most one sample at a time: the one
                // from the round before goes now, after this round's (or, if
                // this round's is held back too, before it: in order).
                if let Some(late) = late {
                    body.extend_from_slice(&late);
                    in_body += 1;
                    if held[i].is_none() {
                        late_sent += 1;
                    }
                }
                if in_body >= batch_size as u64 {
                    let full = std::mem::replace(&mut body, Vec::with_capacity(batch_size * 320));
                    send(
                        &mut in_flight,
                        &client,
                        &args,
                        tenant,
                        full,
                        in_body,
                        &mut stats,
                    )
                    .await;
                    in_body = 0;
                }
            }
            if in_body > 0 {
                send(
                    &mut in_flight,
                    &client,
                    &args,
                    tenant,
                    body,
                    in_body,
                    &mut stats,
                )
                .await;
            }
        }
        // A barrier between rounds keeps each series' samples in time order.
        while let Some(done) = in_flight.join_next().await {
            stats.record(done);
        }
        sent += series.len() as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if args.settle > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    }
    let Stats {
        mut latencies,
        statuses,
        accepted,
        stored,
        first_error,
    } = stats;
    latencies.sort();

    let mut report = serde_json::json!({
        "name": args.name,
        "system": args.tags.system,
        "workload": args.tags.workload,
        "run": args.tags.run,
        "series": args.series,
        "rounds": args.rounds,
        "batch": batch_size,
        "concurrency": args.concurrency,
        "churn": args.churn,
        "tenants": tenants,
        "active_series": active_series,
        "start_ms": first_ts,
        "end_ms": last_ts,
        "window_start_ms": first_ts + grid_after,
        "window_end_ms": last_ts + grid_after,
        "samples_sent": sent,
        "samples_accepted": accepted,
        "ha_replicas": replicas,
        "out_of_order_fraction": ooo_fraction,
        // Sent one interval late, after a newer sample of their series.
        "samples_sent_late": late_sent,
        // Answered 200 (202 is what an HA tracker answers for a dropped replica).
        "samples_stored": stored,
        "requests_by_status": statuses,
        "seconds": elapsed,
        "samples_per_second": accepted as f64 / elapsed,
        "latency_p50_ms": percentile(&latencies, 0.5),
        "latency_p99_ms": percentile(&latencies, 0.99),
    });
    // The generator's own cost: it must stay well below the target's.
    if let (Some(a), Some(b)) = (own_cpu_before, procstat::cpu_seconds(std::process::id())) {
        report["generator_cpu_us_per_sample"] =
            serde_json::json!((b - a) * 1e6 / sent.max(1) as f64);
    }
    if let Some(pid) = args.pid {
        let cpu_after = procstat::cpu_seconds(pid);
        if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
            report["target_cpu_seconds"] = serde_json::json!(b - a);
            report["cpu_us_per_sample"] = serde_json::json!((b - a) * 1e6 / accepted.max(1) as f64);
            report["cpu_us_per_stored_sample"] =
                serde_json::json!((b - a) * 1e6 / stored.max(1) as f64);
        }
        if let Some((rss, _)) = rss_before {
            report["rss_before_bytes"] = serde_json::json!(rss);
        }
        if let Some((rss, peak)) = procstat::rss_bytes(pid) {
            report["rss_bytes"] = serde_json::json!(rss);
            report["peak_rss_bytes"] = serde_json::json!(peak);
            report["rss_bytes_per_series"] =
                serde_json::json!(rss as f64 / active_series.max(1) as f64);
        }
    }
    if let Some(e) = first_error {
        report["first_error"] = serde_json::json!(e);
    }
    println!("{report}");
    Ok(())
}

/// What the responses said so far.
#[derive(Debug, Default)]
struct Stats {
    latencies: Vec<Duration>,
    /// Requests by HTTP status ("connection error" when there was none).
    statuses: BTreeMap<String, u64>,
    accepted: u64,
    /// Samples of requests answered 200.
    stored: u64,
    first_error: Option<String>,
}

type PushResult = (Duration, Result<u16, String>, u64, String);

async fn send(
    in_flight: &mut JoinSet<PushResult>,
    client: &reqwest::Client,
    args: &PushArgs,
    tenant: usize,
    body: Vec<u8>,
    samples: u64,
    stats: &mut Stats,
) {
    while in_flight.len() >= args.concurrency.max(1) {
        if let Some(done) = in_flight.join_next().await {
            stats.record(done);
        }
    }
    let body = match snap::raw::Encoder::new().compress_vec(&body) {
        Ok(b) => b,
        Err(e) => {
            stats.first_error.get_or_insert(format!("snappy: {e}"));
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
                    // Drain the body so the connection goes back to the pool.
                    let _ = resp.bytes().await;
                    String::new()
                };
                (Ok(status), text)
            }
            Err(e) => (Err(e.to_string()), String::new()),
        };
        (start.elapsed(), result.0, samples, result.1)
    });
}

impl Stats {
    fn record(&mut self, done: Result<PushResult, tokio::task::JoinError>) {
        let Ok((latency, status, samples, text)) = done else {
            return;
        };
        self.latencies.push(latency);
        let key = match &status {
            Ok(s) => s.to_string(),
            Err(_) => "connection error".to_string(),
        };
        *self.statuses.entry(key).or_default() += 1;
        match status {
            Ok(s) if (200..300).contains(&s) => {
                self.accepted += samples;
                if s == 200 {
                    self.stored += samples;
                }
            }
            Ok(s) => {
                self.first_error
                    .get_or_insert_with(|| format!("{s}: {}", text.trim()));
            }
            Err(e) => {
                self.first_error.get_or_insert(e);
            }
        }
    }
}

async fn query(args: QueryArgs) -> Result<(), String> {
    let client = reqwest::Client::new();
    let (mut start, mut end) = (args.start, args.end);
    if let Some(path) = &args.window_from {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let push: serde_json::Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("{path}: no JSON push report"))?;
        let ms = |k: &str| push[k].as_f64().map(|v| v / 1000.0);
        start = start.or(ms("window_start_ms")).or(ms("start_ms"));
        end = end.or(ms("window_end_ms")).or(ms("end_ms"));
    }
    let end = end.unwrap_or_else(|| now_ms() as f64 / 1000.0);
    let start = start.unwrap_or(end - args.window);
    let queries: Vec<String> = if args.queries.is_empty() {
        STANDARD_QUERIES.iter().map(|q| q.to_string()).collect()
    } else {
        args.queries.clone()
    };
    let mut results = Vec::new();
    let mut answers = Vec::new();
    for q in &queries {
        let mut times = Vec::new();
        let mut series = 0usize;
        let mut points = 0usize;
        let mut error = None;
        let mut answer = serde_json::Value::Null;
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
            let (status, text) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    (Some(status), resp.text().await.unwrap_or_default())
                }
                Err(e) => (None, e.to_string()),
            };
            times.push(t0.elapsed());
            let mut body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            match status {
                Some(s) if s.is_success() => {
                    series = body["data"]["result"].as_array().map(Vec::len).unwrap_or(0);
                    points = body["data"]["result"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .map(|s| s["values"].as_array().map(Vec::len).unwrap_or(0))
                                .sum()
                        })
                        .unwrap_or(0);
                    answer = body["data"]["result"].take();
                }
                Some(s) => {
                    let mut msg = format!("{s}: {}", text.trim());
                    msg.truncate(300);
                    error = Some(msg);
                }
                None => error = Some(text),
            }
        }
        times.sort();
        answers.push(serde_json::json!({"query": q, "result": answer, "error": error}));
        results.push(serde_json::json!({
            "query": q,
            "median_ms": percentile(&times, 0.5),
            "min_ms": percentile(&times, 0.0),
            "max_ms": percentile(&times, 1.0),
            "series": series,
            "points": points,
            "error": error,
        }));
    }
    if let Some(path) = &args.answers_out {
        let doc = serde_json::json!({"system": args.tags.system, "run": args.tags.run, "start": start, "end": end, "step": args.step, "answers": answers});
        std::fs::write(path, doc.to_string()).map_err(|e| format!("{path}: {e}"))?;
    }
    println!(
        "{}",
        serde_json::json!({"name": args.name, "system": args.tags.system, "workload": args.tags.workload, "run": args.tags.run, "start": start, "end": end, "step": args.step, "queries": results})
    );
    Ok(())
}

fn compare_files(args: &CompareArgs) -> Result<(), String> {
    let read = |path: &str| -> Result<serde_json::Value, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
    };
    let reference = read(&args.reference)?;
    let answers = read(&args.answers)?;
    let checks = compare::compare_answer_sets(&reference, &answers, args.tolerance);
    let differing: Vec<&compare::Check> = checks.iter().filter(|c| !c.passed()).collect();
    let system = if args.tags.system.is_empty() {
        answers["system"].as_str().unwrap_or("").to_string()
    } else {
        args.tags.system.clone()
    };
    let line = serde_json::json!({
        "name": args.name,
        "system": system,
        "workload": args.tags.workload,
        "run": args.tags.run,
        "reference": reference["system"],
        "tolerance": args.tolerance,
        "strict": args.strict,
        "differing_queries": differing.len(),
        "checks": checks.iter().map(compare::Check::to_json).collect::<Vec<_>>(),
    });
    println!("{line}");
    if differing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "strata-bench: ANSWERS DIFFER: {system}'s answers differ from {}'s in {} of {} queries:",
        reference["system"].as_str().unwrap_or("the reference"),
        differing.len(),
        checks.len()
    );
    for c in &differing {
        eprintln!("  {}", c.summary());
    }
    if args.strict {
        Err(format!(
            "{} of {} queries answered differently from the reference",
            differing.len(),
            checks.len()
        ))
    } else {
        Ok(())
    }
}

fn report_files(args: &ReportArgs) -> Result<(), String> {
    let mut all = String::new();
    for f in &args.files {
        all.push_str(&report::read_lines(f).map_err(|e| format!("{f}: {e}"))?);
        all.push('\n');
    }
    print!("{}", report::render(&all));
    Ok(())
}
