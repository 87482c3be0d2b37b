//! Round trips through the writer and reader, corruption and fuzz tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use strata_model::{Labels, MatchOp, Matcher, Sample, STALE_NAN};

use super::error::BlockError;
use super::index::{IndexReader, INDEX_FORMAT_V2, MAGIC_INDEX};
use super::meta::BlockMeta;
use super::reader::BlockReader;
use super::writer::{BlockOptions, BlockWriter};
use crate::chunk::decode_xor;
use crate::head::{Head, SeriesChunks};

/// 2023-11-14T22:13:20Z, a realistic timestamp.
pub(super) const T0: i64 = 1_700_000_000_000;
pub(super) const HOUR: i64 = 3_600_000;

/// A deterministic xorshift generator; tests need no crate for this.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` series with mixed label sets and 15s-ish scrapes from `T0 - 30m` to
/// `T0 + 2h30m`, several chunks each. With `special`, some values are NaN,
/// stale markers, infinities and -0.0.
pub(super) fn gen_series(n: usize, seed: u64, special: bool) -> Vec<(Labels, Vec<Sample>)> {
    let mut rng = Rng::new(seed);
    let names = [
        "http_requests_total",
        "process_cpu_seconds_total",
        "up",
        "node_memory_bytes",
    ];
    let jobs = ["api", "node", "db"];
    let paths = ["/", "/api/v1/query", "/a b", "quote\"and\\slash", "ünïcode"];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut pairs: Vec<(String, String)> = vec![
            ("__name__".into(), names[i % names.len()].into()),
            ("job".into(), jobs[(i / 4) % jobs.len()].into()),
            (
                "instance".into(),
                format!("10.0.{}.{}:9100", i / 50, i % 50),
            ),
        ];
        if i % 3 == 0 {
            pairs.push(("env".into(), if i % 2 == 0 { "prod" } else { "dev" }.into()));
        }
        if i % 5 == 1 {
            pairs.push(("path".into(), paths[(i / 5) % paths.len()].into()));
        }
        if i % 7 == 2 {
            pairs.push(("zone".into(), format!("z{}", i % 3)));
        }
        let labels = Labels::from_pairs(pairs);
        let mut t = T0 - HOUR / 2 + (rng.below(15_000) as i64);
        let end = T0 + 2 * HOUR + HOUR / 2;
        let mut v = rng.below(1000) as f64;
        let mut samples = Vec::new();
        // Some series start late or stop early, some are sparse.
        if i % 11 == 3 {
            t += HOUR;
        }
        let step = if i % 13 == 5 { 120_000 } else { 15_000 };
        let stop = if i % 17 == 4 { T0 + HOUR } else { end };
        while t < stop {
            v += (rng.below(1000) as f64) / 8.0;
            let value = if special && i % 9 == 0 {
                match rng.below(20) {
                    0 => f64::NAN,
                    1 => STALE_NAN,
                    2 => f64::INFINITY,
                    3 => f64::NEG_INFINITY,
                    4 => -0.0,
                    _ => v,
                }
            } else {
                v
            };
            samples.push(Sample::new(t, value));
            t += step + (rng.below(3) as i64 - 1) * (rng.below(500) as i64);
        }
        out.push((labels, samples));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

pub(super) fn head_from(series: &[(Labels, Vec<Sample>)]) -> Head {
    let head = Head::new();
    for (labels, samples) in series {
        head.append(labels, samples).unwrap();
    }
    head
}

/// Samples of `series` in `[mint, maxt)`, series without any left out.
pub(super) fn expected(
    series: &[(Labels, Vec<Sample>)],
    mint: i64,
    maxt: i64,
) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    series
        .iter()
        .filter_map(|(l, s)| {
            let kept: Vec<(i64, u64)> = s
                .iter()
                .filter(|s| s.timestamp_ms >= mint && s.timestamp_ms < maxt)
                .map(|s| (s.timestamp_ms, s.value.to_bits()))
                .collect();
            (!kept.is_empty()).then(|| (l.clone(), kept))
        })
        .collect()
}

/// Decoded samples of selected series, values as bits.
pub(super) fn decoded(found: &[SeriesChunks]) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    found
        .iter()
        .map(|s| {
            let mut samples = Vec::new();
            for c in &s.chunks {
                let d = decode_xor(&c.data).unwrap();
                assert_eq!(d.first().unwrap().timestamp_ms, c.min_time);
                assert_eq!(d.last().unwrap().timestamp_ms, c.max_time);
                samples.extend(d.iter().map(|x| (x.timestamp_ms, x.value.to_bits())));
            }
            (s.labels.clone(), samples)
        })
        .collect()
}

fn write_block(dir: &Path, head: &Head, mint: i64, maxt: i64) -> (BlockMeta, PathBuf) {
    let meta = BlockWriter::default()
        .write_head(dir, head, mint, maxt)
        .unwrap()
        .expect("block has samples");
    let path = dir.join(meta.ulid.to_string());
    (meta, path)
}

#[test]
fn head_round_trip_trims_to_range() {
    let series = gen_series(300, 1, true);
    let head = head_from(&series);
    let tmp = tempfile::tempdir().unwrap();
    let (mint, maxt) = (T0, T0 + 2 * HOUR);
    let (meta, dir) = write_block(tmp.path(), &head, mint, maxt);

    let want = expected(&series, mint, maxt);
    assert_eq!(meta.min_time, mint);
    assert_eq!(meta.max_time, maxt);
    assert_eq!(meta.stats.num_series, want.len() as u64);
    assert_eq!(
        meta.stats.num_samples,
        want.values().map(|v| v.len() as u64).sum::<u64>()
    );
    assert_eq!(meta.compaction.sources, vec![meta.ulid]);

    let block = BlockReader::open(&dir).unwrap();
    assert_eq!(block.meta(), &meta);
    let found = block.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(
        found.iter().map(|s| s.chunks.len() as u64).sum::<u64>(),
        meta.stats.num_chunks
    );
    let got = decoded(&found);
    assert_eq!(got.len(), want.len());
    for (labels, samples) in &want {
        assert_eq!(got.get(labels), Some(samples), "series {labels}");
    }
    // Sorted by labels, like the head.
    assert!(found.windows(2).all(|w| w[0].labels < w[1].labels));
    // Every chunk starts and ends inside the block.
    for s in &found {
        for c in &s.chunks {
            assert!(c.min_time >= mint && c.max_time < maxt, "{c:?}");
        }
    }
    // No temporary directory is left behind.
    let entries: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn adjacent_blocks_neither_lose_nor_duplicate() {
    let series = gen_series(60, 2, false);
    let head = head_from(&series);
    let tmp = tempfile::tempdir().unwrap();
    let cut = T0 + HOUR + 7_777;
    let (_, a) = write_block(tmp.path(), &head, T0 - HOUR, cut);
    let (_, b) = write_block(tmp.path(), &head, cut, T0 + 3 * HOUR);
    let mut got = decoded(
        &BlockReader::open(&a)
            .unwrap()
            .select(&[], i64::MIN, i64::MAX)
            .unwrap(),
    );
    for (labels, samples) in decoded(
        &BlockReader::open(&b)
            .unwrap()
            .select(&[], i64::MIN, i64::MAX)
            .unwrap(),
    ) {
        got.entry(labels).or_default().extend(samples);
    }
    assert_eq!(got, expected(&series, i64::MIN, i64::MAX));
}

#[test]
fn select_matches_the_head() {
    let series = gen_series(300, 3, false);
    let head = head_from(&series);
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = write_block(tmp.path(), &head, T0 - HOUR, T0 + 3 * HOUR);
    let block = BlockReader::open(&dir).unwrap();
    let m = |n: &str, op, v: &str| Matcher::new(op, n, v).unwrap();
    let cases: Vec<Vec<Matcher>> = vec![
        vec![],
        vec![m("__name__", MatchOp::Equal, "up")],
        vec![
            m("job", MatchOp::Equal, "api"),
            m("env", MatchOp::NotEqual, "prod"),
        ],
        vec![m("env", MatchOp::Equal, "")],
        vec![m("env", MatchOp::NotEqual, "")],
        vec![m("path", MatchOp::RegexMatch, "/.*")],
        vec![m("path", MatchOp::RegexNoMatch, "/.*")],
        vec![
            m("job", MatchOp::RegexMatch, "api|db"),
            m("zone", MatchOp::RegexMatch, "z1|"),
        ],
        vec![
            m("__name__", MatchOp::RegexMatch, ".*"),
            m("nosuch", MatchOp::Equal, ""),
        ],
        vec![m("nosuch", MatchOp::Equal, "x")],
        vec![m("job", MatchOp::Equal, "nosuch")],
        vec![
            m("instance", MatchOp::RegexMatch, "10\\.0\\.1\\..*"),
            m("__name__", MatchOp::NotEqual, "up"),
        ],
    ];
    for matchers in cases {
        for (mint, maxt) in [
            (i64::MIN, i64::MAX),
            (T0, T0 + HOUR),
            (T0 + 2 * HOUR, T0 + 2 * HOUR),
        ] {
            let want: Vec<Labels> = head
                .select_chunks(&matchers, mint, maxt)
                .into_iter()
                .map(|s| s.labels)
                .collect();
            let got = block.select(&matchers, mint, maxt).unwrap();
            let got_labels: Vec<Labels> = got.iter().map(|s| s.labels.clone()).collect();
            assert_eq!(got_labels, want, "{matchers:?} [{mint}, {maxt}]");
            for s in &got {
                for c in &s.chunks {
                    assert!(c.min_time <= maxt && c.max_time >= mint);
                }
            }
        }
    }
    let index = block.index();
    assert!(index.label_names().contains(&"path"));
    assert_eq!(index.label_values("job"), vec!["api", "db", "node"]);
    assert_eq!(index.all_postings().unwrap().len(), head.num_series());
    assert!(index.postings("job", "nosuch").unwrap().is_empty());
}

#[test]
fn small_segments_are_cut_and_read() {
    let series = gen_series(40, 4, false);
    let tmp = tempfile::tempdir().unwrap();
    let head = head_from(&series);
    let writer = BlockWriter::new(BlockOptions {
        segment_size: 4096,
        tenant: Some("team-a".into()),
        ..BlockOptions::default()
    });
    let meta = writer
        .write_head(tmp.path(), &head, T0 - HOUR, T0 + 3 * HOUR)
        .unwrap()
        .unwrap();
    let thanos = meta.thanos.as_ref().unwrap();
    assert!(thanos.segment_files.len() > 3, "{:?}", thanos.segment_files);
    assert_eq!(thanos.segment_files[0], "000001");
    assert_eq!(meta.tenant(), Some("team-a"));
    let dir = tmp.path().join(meta.ulid.to_string());
    for f in &thanos.files {
        let size = std::fs::metadata(dir.join(&f.rel_path)).unwrap().len();
        if let Some(expected) = f.size_bytes {
            assert_eq!(size, expected, "{}", f.rel_path);
            if f.rel_path.starts_with("chunks/") {
                assert!(size <= 4096);
            }
        }
    }
    let block = BlockReader::open(&dir).unwrap();
    assert_eq!(block.chunks().num_segments(), thanos.segment_files.len());
    let got = decoded(&block.select(&[], i64::MIN, i64::MAX).unwrap());
    assert_eq!(got, expected(&series, T0 - HOUR, T0 + 3 * HOUR));

    // The meta round-trips through JSON with the Thanos field names.
    let json = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    for key in [
        "\"ulid\"",
        "\"minTime\"",
        "\"numSamples\"",
        "\"segment_files\"",
        "\"rel_path\"",
        "\"__org_id__\": \"team-a\"",
        "\"source\": \"ingester\"",
        "\"resolution\": 0",
    ] {
        assert!(json.contains(key), "{key} missing in {json}");
    }
}

#[test]
fn empty_range_and_bad_input() {
    let series = gen_series(10, 5, false);
    let head = head_from(&series);
    let tmp = tempfile::tempdir().unwrap();
    let w = BlockWriter::default();
    assert!(w.write_head(tmp.path(), &head, 0, 1000).unwrap().is_none());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(matches!(
        w.write_head(tmp.path(), &head, 10, 10),
        Err(BlockError::InvalidInput(_))
    ));
    // Unsorted series are refused, and nothing is left behind.
    let mut chunks = head.select_chunks(&[], i64::MIN, i64::MAX);
    chunks.swap(0, 1);
    let err = w
        .write(
            tmp.path(),
            i64::MIN,
            i64::MAX,
            chunks.into_iter().map(|s| (s.labels, s.chunks)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("sorted"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    let bad = BlockWriter::new(BlockOptions {
        segment_size: 1 << 40,
        ..BlockOptions::default()
    });
    assert!(bad.write_head(tmp.path(), &head, 0, i64::MAX).is_err());
}

/// A small valid block in memory: (meta, index bytes, segment bytes).
fn small_block(seed: u64) -> (BlockMeta, Vec<u8>, Vec<u8>) {
    let series = gen_series(20, seed, false);
    let head = head_from(&series);
    let tmp = tempfile::tempdir().unwrap();
    let (meta, dir) = write_block(tmp.path(), &head, T0 - HOUR, T0 + 3 * HOUR);
    let index = std::fs::read(dir.join("index")).unwrap();
    let chunks = std::fs::read(dir.join("chunks/000001")).unwrap();
    (meta, index, chunks)
}

fn open_mem(meta: &BlockMeta, index: &[u8], chunks: &[u8]) -> Result<BlockReader, BlockError> {
    BlockReader::from_parts(
        meta.clone(),
        ("index".into(), Arc::new(Bytes::copy_from_slice(index))),
        vec![(
            "chunks/000001".into(),
            Arc::new(Bytes::copy_from_slice(chunks)),
        )],
    )
}

fn select_all(
    meta: &BlockMeta,
    index: &[u8],
    chunks: &[u8],
) -> Result<Vec<SeriesChunks>, BlockError> {
    open_mem(meta, index, chunks)?.select(&[], i64::MIN, i64::MAX)
}

#[test]
fn checksum_errors_name_file_and_offset() {
    let (meta, index, chunks) = small_block(6);
    let good = select_all(&meta, &index, &chunks).unwrap();

    // A byte inside the symbol table (which starts right after the 5-byte header).
    let mut bad = index.clone();
    bad[12] ^= 0x20;
    let err = open_mem(&meta, &bad, &chunks).unwrap_err();
    assert!(
        matches!(&err, BlockError::Checksum { file, offset: 5, .. } if file == "index"),
        "{err}"
    );

    // A byte of the first chunk's data.
    let mut bad = chunks.clone();
    bad[12] ^= 0x01;
    let err = select_all(&meta, &index, &bad).unwrap_err();
    assert!(
        matches!(&err, BlockError::Checksum { file, offset: 8, .. } if file == "chunks/000001"),
        "{err}"
    );
    assert!(err.to_string().contains("chunks/000001"), "{err}");

    // The TOC.
    let mut bad = index.clone();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    assert!(matches!(
        open_mem(&meta, &bad, &chunks),
        Err(BlockError::Checksum { .. })
    ));

    // Wrong magic numbers.
    let mut bad = index.clone();
    bad[0] = 0;
    assert!(matches!(
        open_mem(&meta, &bad, &chunks),
        Err(BlockError::Corrupt { .. })
    ));
    let mut bad = chunks.clone();
    bad[1] = 0;
    assert!(matches!(
        open_mem(&meta, &index, &bad),
        Err(BlockError::Corrupt { .. })
    ));

    // Every single-byte flip is an error or (in padding) harmless; never a panic.
    for i in 0..index.len() {
        let mut bad = index.clone();
        bad[i] ^= 0x55;
        if let Ok(found) = select_all(&meta, &bad, &chunks) {
            assert_eq!(found, good, "flip at index offset {i} went unnoticed");
        }
    }
    for i in 0..chunks.len() {
        let mut bad = chunks.clone();
        bad[i] ^= 0x55;
        if let Ok(found) = select_all(&meta, &index, &bad) {
            assert_eq!(found, good, "flip at chunks offset {i} went unnoticed");
        }
    }
}

#[test]
fn truncated_files_are_errors() {
    let (meta, index, chunks) = small_block(7);
    for len in (0..index.len()).step_by(7).chain([index.len() - 1]) {
        assert!(
            select_all(&meta, &index[..len], &chunks).is_err(),
            "index truncated to {len} bytes"
        );
    }
    for len in (0..chunks.len()).step_by(13).chain([chunks.len() - 1]) {
        assert!(
            select_all(&meta, &index, &chunks[..len]).is_err(),
            "chunks truncated to {len} bytes"
        );
    }
    // On disk too: a missing segment and a truncated index file.
    let series = gen_series(5, 8, false);
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = write_block(tmp.path(), &head_from(&series), T0, T0 + HOUR);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("index"))
        .unwrap();
    f.set_len(40).unwrap();
    let err = BlockReader::open(&dir).unwrap_err();
    assert!(err.to_string().contains("index"), "{err}");
    std::fs::remove_file(dir.join("meta.json")).unwrap();
    assert!(matches!(
        BlockReader::open(&dir),
        Err(BlockError::Io { .. })
    ));
}

#[test]
fn meta_reads_prometheus_json() {
    let json = r#"{
        "ulid": "01EM6Q6A1YPX4G9TEB20J22B2R",
        "minTime": 1602237600000,
        "maxTime": 1602244800000,
        "stats": {"numSamples": 553673232, "numSeries": 1346066, "numChunks": 4440437, "numFloatSamples": 1},
        "compaction": {"level": 2, "sources": ["01EM65SHSX4VARXBBHBF0M0FDS", "01EM6GAJSYWSQQRDY782EA5ZPN"],
                       "parents": [{"ulid": "01EM65SHSX4VARXBBHBF0M0FDS", "minTime": 1, "maxTime": 2}]},
        "version": 1
    }"#;
    let meta: BlockMeta = serde_json::from_str(json).unwrap();
    assert_eq!(meta.ulid.to_string(), "01EM6Q6A1YPX4G9TEB20J22B2R");
    assert_eq!(meta.stats.num_chunks, 4440437);
    assert_eq!(meta.compaction.level, 2);
    assert_eq!(meta.compaction.parents.len(), 1);
    assert!(meta.thanos.is_none());
    assert_eq!(meta.tenant(), None);
    let again: BlockMeta = serde_json::from_str(&serde_json::to_string(&meta).unwrap()).unwrap();
    assert_eq!(again, meta);
    assert!(serde_json::from_str::<BlockMeta>(&json.replace("01EM6Q", "U1EM6Q")).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn index_parser_never_panics_on_random_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        with_header in any::<bool>(),
    ) {
        let mut data = data;
        if with_header && data.len() >= 5 {
            data[..4].copy_from_slice(&MAGIC_INDEX.to_be_bytes());
            data[4] = INDEX_FORMAT_V2;
        }
        if let Ok(r) = IndexReader::open("index", Arc::new(Bytes::from(data))) {
            let _ = r.postings_for_matchers(&[]);
            for id in 0..64 {
                let _ = r.series(id);
            }
        }
    }

    #[test]
    fn mutated_blocks_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        in_index in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (meta, mut index, mut chunks) = SMALL.with(|b| b.clone());
        let target = if in_index { &mut index } else { &mut chunks };
        for (at, byte) in edits {
            let i = at.index(target.len());
            target[i] = byte;
        }
        if truncate {
            let len = cut.index(target.len());
            target.truncate(len);
        }
        if let Ok(r) = open_mem(&meta, &index, &chunks) {
            let _ = r.select(&[], i64::MIN, i64::MAX);
            let _ = r.select(&[Matcher::new(MatchOp::RegexMatch, "job", "a.*|db").unwrap()], T0, T0 + HOUR);
        }
    }
}

thread_local! {
    static SMALL: (BlockMeta, Vec<u8>, Vec<u8>) = small_block(9);
}
