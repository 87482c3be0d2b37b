//! Store-gateway query latency for the standard query set Q (docs/benchmarks.md)
//! over data that lives only in blocks, with the object-storage requests and
//! bytes each query costs.
//!
//! W1-shaped series (the load generator's labels: 100 metric names, 8
//! Kubernetes-style labels; counters and gauges) are written as one block into
//! a filesystem bucket under tenant `bench-0`. A store-gateway (`BucketStore`)
//! serves it to the querier in-process (`query_store_after = 0`, no
//! ingesters), and each query of Q runs as a range query over the last 15
//! minutes of the block (step 15 s, 61 steps, as Q over W1):
//!
//! - **cold**: a fresh store-gateway (index-header from the local sync dir,
//!   caches empty) answers the query once;
//! - **warm**: the same store-gateway answers it `SG_BENCH_REPEAT` more times.
//!
//! Requests and bytes are the ranged reads the store-gateway's reader counted
//! (`strata_storegateway_bucket_requests_total{operation="get_range"}`).
//! Knobs: `SG_BENCH_SERIES` (10000), `SG_BENCH_ROUNDS` (240: one hour at 15 s),
//! `SG_BENCH_REPEAT` (5). Run: `cargo bench -p strata-bench --bench store_gateway`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::sync::Arc;
use std::time::Instant;

use strata_model::{Labels, Sample};
use strata_proto::ingester::StreamSeries;
use strata_proto::storegateway::{LabelNamesRequest, LabelValuesRequest, SeriesRequest};
use strata_querier::{Querier, QuerierConfig, RangeParams, StoreGatewayQuery};
use strata_status::ServiceError;
use strata_storage::{Bucket, BucketStoreConfig};
use strata_store_gateway::{BucketStore, StoreMetrics};
use strata_tsdb::block::{BlockOptions, BlockWriter};
use strata_tsdb::head::Head;
use workload::{metric_names, series_labels, Rng};

const TENANT: &str = "bench-0";
const STEP_MS: i64 = 15_000;

const QUERIES: [&str; 8] = [
    "rate(http_requests_total{instance=\"10.0.0.0:9100\"}[5m])",
    "sum by (namespace) (rate(http_requests_total[5m]))",
    "topk(10, rate(node_cpu_seconds_total[5m]))",
    "avg by (job) (go_goroutines)",
    "sum(rate(http_requests_total{pod=~\"api-.*\"}[5m]))",
    "max_over_time(process_resident_memory_bytes[5m])",
    "count by (__name__) ({__name__=~\"go_memstats_.*\"})",
    "sum by (__name__) ({__name__=~\".+_total\"})",
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The store-gateway called directly, as `-target=all` does in-process.
#[derive(Debug)]
struct Direct(Arc<BucketStore>);

#[async_trait::async_trait]
impl StoreGatewayQuery for Direct {
    async fn series(
        &self,
        tenant: &str,
        r: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let matchers = strata_proto::matchers_from_proto(&r.matchers)
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        let mut rx = self.0.series(
            tenant,
            matchers,
            (r.min_time_ms, r.max_time_ms),
            &r.block_ids,
            r.skip_chunks,
        );
        let mut out = Vec::new();
        while let Some(msg) = rx.recv().await {
            out.extend(msg.map_err(|e| ServiceError::from_coded(&e))?.series);
        }
        Ok(out)
    }
    async fn label_names(
        &self,
        _: &str,
        _: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(Vec::new())
    }
    async fn label_values(
        &self,
        _: &str,
        _: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(Vec::new())
    }
}

/// No ingesters: the data lives only in blocks.
#[derive(Debug)]
struct NoIngesters;

#[async_trait::async_trait]
impl strata_querier::IngesterQuery for NoIngesters {
    async fn query_stream(
        &self,
        _: &str,
        _: strata_proto::ingester::QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        Ok(Vec::new())
    }
    async fn label_names(
        &self,
        _: &str,
        _: strata_proto::ingester::LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(Vec::new())
    }
    async fn label_values(
        &self,
        _: &str,
        _: strata_proto::ingester::LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(Vec::new())
    }
    async fn series(
        &self,
        _: &str,
        _: strata_proto::ingester::SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        Ok(Vec::new())
    }
}

fn store(bucket_dir: &std::path::Path, sync_dir: &std::path::Path) -> Arc<BucketStore> {
    let fs = object_store::local::LocalFileSystem::new_with_prefix(bucket_dir).unwrap();
    let config = BucketStoreConfig {
        sync_dir: sync_dir.display().to_string(),
        ..BucketStoreConfig::default()
    };
    let metrics = StoreMetrics::new(&prometheus::Registry::new()).unwrap();
    Arc::new(BucketStore::new(
        Bucket::new(Arc::new(fs)),
        config,
        metrics,
        None,
    ))
}

fn querier(store: &Arc<BucketStore>) -> Querier {
    let config = QuerierConfig {
        query_store_after: strata_model::ConfigDuration::from_secs(0),
        ..QuerierConfig::default()
    };
    Querier::new(config, Arc::new(NoIngesters))
        .unwrap()
        .with_store_gateways(Arc::new(Direct(store.clone())))
}

fn series_count(data: &strata_querier::ResultData) -> usize {
    match data {
        strata_querier::ResultData::Matrix(m) => m.len(),
        strata_querier::ResultData::Vector(v) => v.len(),
        _ => 1,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn run() {
    let n = env("SG_BENCH_SERIES", 10_000);
    let rounds = env("SG_BENCH_ROUNDS", 240) as i64;
    let repeat = env("SG_BENCH_REPEAT", 5).max(1);

    // A day ago, aligned to 15 s: far outside what ingesters would hold.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let end = (now - 86_400_000) / STEP_MS * STEP_MS;
    let start = end - (rounds - 1) * STEP_MS;

    let started = Instant::now();
    let names = metric_names();
    let head = Head::new();
    let mut rng = Rng::new(42);
    for id in 0..n {
        let pairs = series_labels(&names, id, 0);
        let labels = Labels::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        let counter = names[id % names.len()].1;
        let level = 1000.0 * (1.0 + 1000.0 * rng.unit());
        let rate = 0.01 * 10f64.powf(5.0 * rng.unit());
        let mut value = if counter { 0.0 } else { level };
        let samples: Vec<Sample> = (0..rounds)
            .map(|k| {
                value = if counter {
                    value + (rate * 15.0 * (0.8 + 0.4 * rng.unit())).round()
                } else {
                    (value + level * 0.02 * (rng.unit() - 0.5)).round()
                };
                Sample::new(start + k * STEP_MS, value)
            })
            .collect();
        head.append(&labels, &samples).unwrap();
    }
    let bucket = tempfile::tempdir().unwrap();
    let tenant_dir = bucket.path().join(TENANT);
    std::fs::create_dir_all(&tenant_dir).unwrap();
    let meta = BlockWriter::new(BlockOptions {
        tenant: Some(TENANT.to_string()),
        ..BlockOptions::default()
    })
    .write_head(&tenant_dir, &head, start, end + 1)
    .unwrap()
    .unwrap();
    drop(head);
    let block_dir = tenant_dir.join(meta.ulid.to_string());
    let index_size = std::fs::metadata(block_dir.join("index")).unwrap().len();
    let chunks_size = std::fs::metadata(block_dir.join("chunks/000001"))
        .unwrap()
        .len();
    println!(
        "block: {} series, {} samples, index {:.1} MiB, chunks {:.1} MiB (written in {:.1} s)",
        meta.stats.num_series,
        meta.stats.num_samples,
        index_size as f64 / (1 << 20) as f64,
        chunks_size as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );

    // The first sync builds the index-header with ranged reads.
    let sync_dir = tempfile::tempdir().unwrap();
    let first = store(bucket.path(), sync_dir.path());
    let t = Instant::now();
    first.sync().await.unwrap();
    let (req, bytes) = first.metrics().ranged_reads();
    println!(
        "index-header build: {:.1} ms, {req} ranged reads, {:.1} KiB",
        t.elapsed().as_secs_f64() * 1000.0,
        bytes as f64 / 1024.0
    );

    let range = RangeParams {
        start_ms: end - 15 * 60_000,
        end_ms: end,
        step_ms: STEP_MS,
    };
    println!();
    println!("| # | query | series | cold ms | cold requests | cold KiB | warm ms (median of {repeat}) | warm requests | warm KiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, q) in QUERIES.iter().enumerate() {
        // A fresh store-gateway: local index-header, empty caches.
        let sg = store(bucket.path(), sync_dir.path());
        sg.sync().await.unwrap();
        assert_eq!(sg.metrics().ranged_reads().0, 0, "a restart fetched data");
        let querier = querier(&sg);
        let t = Instant::now();
        let out = querier.range_query(TENANT, q, range, None).await.unwrap();
        let cold_ms = t.elapsed().as_secs_f64() * 1000.0;
        let (cold_req, cold_bytes) = sg.metrics().ranged_reads();
        let mut warm = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t = Instant::now();
            let again = querier.range_query(TENANT, q, range, None).await.unwrap();
            warm.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(series_count(&again.data), series_count(&out.data));
        }
        let (all_req, all_bytes) = sg.metrics().ranged_reads();
        println!(
            "| Q{} | `{}` | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            i + 1,
            q,
            series_count(&out.data),
            cold_ms,
            cold_req,
            cold_bytes as f64 / 1024.0,
            median(&mut warm),
            (all_req - cold_req) as f64 / repeat as f64,
            (all_bytes - cold_bytes) as f64 / 1024.0 / repeat as f64,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
