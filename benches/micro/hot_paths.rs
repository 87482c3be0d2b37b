//! Criterion micro-benchmarks of the hot paths of DESIGN.md §7: remote-write
//! decode (snappy + protobuf), series lookup/creation and append in the head,
//! XOR chunk append and decode, postings intersection, and one PromQL
//! aggregation. Run with `cargo bench -p strata-bench --bench hot_paths`
//! (add `-- --quick` for a short run); docs/benchmarks.md records the numbers.
//! The inputs come from the load generator's series (benches/src/workload.rs), so
//! label sizes and value patterns match the end-to-end workloads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use strata_model::{Label, Labels, Sample};
use strata_promql::{Engine, EngineOptions, MemoryStorage};
use strata_tsdb::chunk::{decode_xor, XorChunk};
use strata_tsdb::head::{AppendPlan, Head, PlanSeries};
use strata_tsdb::postings::intersect;

use workload::{make_series, metric_names, series_labels, Rng};

/// Samples in one remote-write request (the generator's default batch).
const BATCH: usize = 2000;
const INTERVAL_MS: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

/// The labels of the first `n` generated series, as the head sees them.
fn labels(n: usize, generation: u32) -> Vec<Labels> {
    let names = metric_names();
    (0..n)
        .map(|i| {
            Labels::from_sorted(
                series_labels(&names, i, generation)
                    .into_iter()
                    .map(|(n, v)| Label::new(n, v))
                    .collect(),
            )
        })
        .collect()
}

/// One snappy-compressed remote-write body of `BATCH` series, one sample each.
fn write_body() -> Vec<u8> {
    let names = metric_names();
    let mut rng = Rng::new(1);
    let mut raw = Vec::new();
    for i in 0..BATCH {
        make_series(&names, i, 0, &mut rng).encode_next(T0, 15.0, &mut rng, &mut raw);
    }
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn remote_write_decode(c: &mut Criterion) {
    let body = write_body();
    let mut g = c.benchmark_group("remote_write_decode");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("snappy_protobuf_2000_series", |b| {
        b.iter(|| {
            let req =
                strata_distributor::decode_write_request(black_box(&body), 100 << 20).unwrap();
            black_box(req.timeseries.len())
        })
    });
    g.finish();
}

fn head_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("head");
    g.throughput(Throughput::Elements(BATCH as u64));

    // Lookup of an existing series by its labels, then append: the steady state.
    let existing = 100_000;
    let all = labels(existing, 0);
    let head = Head::new();
    for l in &all {
        head.append(l, &[Sample::new(T0, 1.0)]).unwrap();
    }
    let mut ts = T0;
    let mut start = 0usize;
    g.bench_function("append_existing_series_100k_head", |b| {
        b.iter(|| {
            ts += INTERVAL_MS;
            start = (start + BATCH) % existing;
            for l in &all[start..start + BATCH] {
                head.append(l, &[Sample::new(ts, 42.0)]).unwrap();
            }
        })
    });

    // The ingester's path before the WAL was written first: find or create
    // the series, append.
    let ingester_head = Head::new();
    for l in &all {
        ingester_head.append(l, &[Sample::new(T0, 1.0)]).unwrap();
    }
    let mut ts_old = T0;
    g.bench_function("lookup_then_append_100k_head", |b| {
        b.iter(|| {
            ts_old += INTERVAL_MS;
            start = (start + BATCH) % existing;
            for l in &all[start..start + BATCH] {
                let (series, _) = ingester_head.get_or_create_series(l);
                ingester_head
                    .append_to_from(&series, &[Sample::new(ts_old, 42.0)], i64::MIN)
                    .unwrap();
            }
        })
    });

    // The ingester's path now (WAL first): find the series, plan the push's
    // appends, then (after the WAL write, not measured here) append.
    let planned_head = Head::new();
    for l in &all {
        planned_head.append(l, &[Sample::new(T0, 1.0)]).unwrap();
    }
    let mut ts_new = T0;
    g.bench_function("lookup_plan_then_append_100k_head", |b| {
        b.iter(|| {
            ts_new += INTERVAL_MS;
            start = (start + BATCH) % existing;
            let sample = [Sample::new(ts_new, 42.0)];
            let mut plan = AppendPlan::with_capacity(BATCH);
            let mut found = Vec::with_capacity(BATCH);
            for l in &all[start..start + BATCH] {
                let series = planned_head.get_series(l).unwrap();
                planned_head
                    .plan_append(
                        &mut plan,
                        PlanSeries::Held(&series),
                        &sample,
                        i64::MIN,
                        || l.clone(),
                    )
                    .unwrap();
                found.push(series);
            }
            for series in &found {
                planned_head
                    .append_to_from(series, &sample, i64::MIN)
                    .unwrap();
            }
        })
    });

    // Creation: every series is new (the first round, or churn).
    let fresh = labels(BATCH, 1);
    g.bench_function("create_series", |b| {
        b.iter_batched(
            Head::new,
            |head| {
                for l in &fresh {
                    head.append(l, &[Sample::new(T0, 1.0)]).unwrap();
                }
                head
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// 120 samples (30 minutes at 15 s) of a counter with a plausible rate, jittered timestamps.
fn counter_samples() -> Vec<(i64, f64)> {
    let mut rng = Rng::new(3);
    let mut v = 123_456.0;
    (0..120)
        .map(|i| {
            v += (200.0 * (0.8 + 0.4 * rng.unit())).round();
            let jitter = (rng.next_u64() % 5) as i64;
            (T0 + i * INTERVAL_MS + jitter, v)
        })
        .collect()
}

fn xor_chunk(c: &mut Criterion) {
    let samples = counter_samples();
    let mut g = c.benchmark_group("xor_chunk");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("append_120", |b| {
        b.iter(|| {
            let mut chunk = XorChunk::new();
            for &(t, v) in &samples {
                chunk.append(t, v).unwrap();
            }
            black_box(chunk.bytes().len())
        })
    });
    let mut chunk = XorChunk::new();
    for &(t, v) in &samples {
        chunk.append(t, v).unwrap();
    }
    let bytes = chunk.into_bytes();
    g.bench_function("decode_120", |b| {
        b.iter(|| black_box(decode_xor(black_box(&bytes)).unwrap().len()))
    });
    g.finish();
}

fn postings_intersect(c: &mut Criterion) {
    // Series IDs of a 1M-series head: a label value held by 1 in 12 series (a
    // namespace) against one held by 1 in 8 (a job), and against a rare one.
    let namespace: Vec<u32> = (0..1_000_000u32).filter(|i| i % 12 == 3).collect();
    let job: Vec<u32> = (0..1_000_000u32).filter(|i| i % 8 == 2).collect();
    let rare: Vec<u32> = (0..1_000_000u32).step_by(997).collect();
    let mut g = c.benchmark_group("postings_intersect");
    for (name, a, b) in [
        ("83k_x_125k", &namespace, &job),
        ("83k_x_1k", &namespace, &rare),
    ] {
        g.throughput(Throughput::Elements((a.len() + b.len()) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(name),
            &(a, b),
            |bench, (a, b)| bench.iter(|| black_box(intersect(black_box(a), black_box(b)).len())),
        );
    }
    g.finish();
}

fn promql_aggregation(c: &mut Criterion) {
    // 1000 counter series over one hour at 15 s, spread over 12 namespaces.
    let names = metric_names();
    let mut storage = MemoryStorage::new();
    let mut rng = Rng::new(5);
    for i in 0..1000usize {
        let mut l: Vec<Label> = series_labels(&names, i * names.len(), 0)
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .collect();
        l[0] = Label::new("__name__", "x");
        let labels = Labels::from_sorted(l);
        let mut v = (rng.unit() * 1e6).round();
        for k in 0..240 {
            v += (rng.unit() * 100.0).round();
            storage.add_sample(&labels, Sample::new(T0 + k * INTERVAL_MS, v));
        }
    }
    let engine = Engine::new(EngineOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let query = "sum by (namespace) (rate(x[5m]))";
    let (start, end) = (T0 + 5 * 60_000, T0 + 239 * INTERVAL_MS);
    let mut g = c.benchmark_group("promql");
    g.sample_size(20);
    g.bench_function("sum_by_namespace_rate_5m_1000_series_1h_step_15s", |b| {
        b.iter(|| {
            let r = rt
                .block_on(engine.range_query(&storage, query, start, end, INTERVAL_MS))
                .unwrap();
            black_box(r)
        })
    });
    // The second benchmark query: a plain selector aggregated by name.
    let by_name = "sum by (__name__) ({__name__=~\".+\"})";
    g.bench_function("sum_by_name_selector_1000_series_1h_step_15s", |b| {
        b.iter(|| {
            let r = rt
                .block_on(engine.range_query(&storage, by_name, start, end, INTERVAL_MS))
                .unwrap();
            black_box(r)
        })
    });
    g.finish();
}

criterion_group!(
    hot_paths,
    remote_write_decode,
    head_append,
    xor_chunk,
    postings_intersect,
    promql_aggregation
);
criterion_main!(hot_paths);
