//! Bytes per sample of compacted blocks for the benchmark workload (issue 5):
//! three replica blocks of one 2-hour range, as three ingesters (RF=3) upload
//! them, merged by `strata_tsdb::block::compact` into one, as the compactor's
//! vertical compaction does.
//!
//! The series are W1's (benches/src/workload.rs: 100 metric names, 8
//! Kubernetes-style labels, counters and gauges with the generator's value
//! model), one sample every 15 s for 2 hours (480 per series). One replica
//! lacks 1 % of the samples, as a replica that missed some pushes would.
//!
//! Run: `cargo bench -p strata-bench --bench compaction` (100,000 series, W1's
//! count); `COMPACTION_BENCH_SERIES=10000` for a quicker run. It prints one
//! JSON object; the figures go to docs/benchmarks.md ("Compaction").

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../src/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::path::Path;
use std::time::Instant;

use strata_model::{Label, Labels};
use strata_tsdb::block::{compact, BlockMeta, BlockOptions, BlockReader, BlockWriter};
use strata_tsdb::chunk::{XorChunk, SAMPLES_PER_CHUNK};
use strata_tsdb::head::ChunkData;

use workload::{make_series, metric_names, series_labels, Rng};

const INTERVAL_MS: i64 = 15_000;
/// 2023-11-14T22:00:00Z, aligned to 2 hours.
const T0: i64 = 1_699_999_200_000;
const RANGE_MS: i64 = 2 * 3_600_000;

/// The `id`-th series' samples over the range, from the generator's value
/// model. `GenSeries` only emits encoded remote-write bytes; the value is the
/// fixed64 just before the timestamp's varint at the end of what it appends
/// (`... 0x09 <8 bytes value> 0x10 <varint timestamp>`).
fn samples(names: &[(String, bool)], id: usize) -> Vec<(i64, f64)> {
    let mut rng = Rng::new(id as u64 + 1);
    let mut series = make_series(names, id, 0, &mut rng);
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity((RANGE_MS / INTERVAL_MS) as usize);
    let mut t = T0;
    while t < T0 + RANGE_MS {
        buf.clear();
        series.encode_next(t, INTERVAL_MS as f64 / 1000.0, &mut rng, &mut buf);
        let mut varint = 1;
        let mut v = t as u64;
        while v >= 0x80 {
            v >>= 7;
            varint += 1;
        }
        let end = buf.len() - varint - 1;
        let value = f64::from_le_bytes(buf[end - 8..end].try_into().unwrap());
        out.push((t, value));
        t += INTERVAL_MS;
    }
    out
}

fn chunks(samples: &[(i64, f64)]) -> Vec<ChunkData> {
    samples
        .chunks(usize::from(SAMPLES_PER_CHUNK))
        .map(|part| {
            let mut c = XorChunk::new();
            for &(t, v) in part {
                c.append(t, v).unwrap();
            }
            ChunkData {
                min_time: c.min_time().unwrap(),
                max_time: c.max_time().unwrap(),
                data: c.into_bytes(),
            }
        })
        .collect()
}

/// Writes one replica's block; `lossy` drops every 100th sample.
fn replica(dir: &Path, n: usize, lossy: bool) -> BlockMeta {
    let names = metric_names();
    let mut all: Vec<(Labels, usize)> = (0..n)
        .map(|id| {
            let labels = Labels::from_sorted(
                series_labels(&names, id, 0)
                    .into_iter()
                    .map(|(k, v)| Label::new(k, v))
                    .collect(),
            );
            (labels, id)
        })
        .collect();
    all.sort();
    let series = all.into_iter().map(|(labels, id)| {
        let mut s = samples(&names, id);
        if lossy {
            let mut i = 0;
            s.retain(|_| {
                i += 1;
                i % 100 != 0
            });
        }
        (labels, chunks(&s))
    });
    BlockWriter::new(BlockOptions {
        tenant: Some("bench-0".to_string()),
        ..Default::default()
    })
    .write(dir, T0, T0 + RANGE_MS, series)
    .unwrap()
    .unwrap()
}

/// Writes every series' full samples as OpenMetrics text to `path`, so that
/// `promtool tsdb create-blocks-from openmetrics` can build Prometheus's own
/// block from exactly the same samples (`COMPACTION_BENCH_OPENMETRICS=<path>`).
fn write_openmetrics(path: &Path, n: usize) {
    use std::io::Write as _;
    let names = metric_names();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for id in 0..n {
        let labels = series_labels(&names, id, 0);
        let name = labels
            .iter()
            .find(|(k, _)| *k == "__name__")
            .map(|(_, v)| v.clone())
            .unwrap();
        let rest: Vec<String> = labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        for (t, v) in samples(&names, id) {
            writeln!(
                out,
                "{name}{{{}}} {v:?} {}.{:03}",
                rest.join(","),
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    writeln!(out, "# EOF").unwrap();
}

fn dir_bytes(dir: &Path) -> (u64, u64) {
    let index = std::fs::metadata(dir.join("index")).unwrap().len();
    let chunks: u64 = std::fs::read_dir(dir.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let meta = std::fs::metadata(dir.join("meta.json")).unwrap().len();
    (index + chunks + meta, chunks)
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let n: usize = std::env::var("COMPACTION_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if let Ok(path) = std::env::var("COMPACTION_BENCH_OPENMETRICS") {
        write_openmetrics(Path::new(&path), n);
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let started = Instant::now();
    let metas = [
        replica(&src, n, false),
        replica(&src, n, true),
        replica(&src, n, false),
    ];
    let write_s = started.elapsed().as_secs_f64();
    let readers: Vec<BlockReader> = metas
        .iter()
        .map(|m| BlockReader::open(&src.join(m.ulid.to_string())).unwrap())
        .collect();
    let (replica_bytes, _) = dir_bytes(&src.join(metas[0].ulid.to_string()));

    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let rss_before = peak_rss_bytes();
    let started = Instant::now();
    let result = compact(&out, &readers, &BlockOptions::default())
        .unwrap()
        .unwrap();
    let compact_s = started.elapsed().as_secs_f64();
    let (total, chunk_bytes) = dir_bytes(&out.join(result.meta.ulid.to_string()));
    let samples = result.meta.stats.num_samples as f64;
    let report = serde_json::json!({
        "series": result.meta.stats.num_series,
        "samples": result.meta.stats.num_samples,
        "samples_read": result.samples_read,
        "chunks": result.meta.stats.num_chunks,
        "replica_block_bytes": replica_bytes,
        "replica_bytes_per_sample": replica_bytes as f64 / metas[0].stats.num_samples as f64,
        "compacted_block_bytes": total,
        "compacted_bytes_per_sample": total as f64 / samples,
        "compacted_chunk_bytes_per_sample": chunk_bytes as f64 / samples,
        "compacted_index_bytes_per_series": (total - chunk_bytes) as f64 / result.meta.stats.num_series as f64,
        "write_replicas_seconds": write_s,
        "compaction_seconds": compact_s,
        "compaction_samples_read_per_second": result.samples_read as f64 / compact_s,
        "peak_rss_bytes_before_compaction": rss_before,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
