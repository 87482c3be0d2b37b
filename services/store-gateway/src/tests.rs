//! The store over a filesystem bucket holding blocks written by
//! `strata-tsdb`: same answers as reading the block directories directly,
//! caches that save requests, restarts that fetch nothing, deletion marks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata_model::{Labels, MatchOp, Matcher, Sample};
use strata_storage::{Bucket, BucketStoreConfig};
use strata_tsdb::block::{BlockMeta, BlockReader, BlockWriter};
use strata_tsdb::head::Head;

use crate::metrics::StoreMetrics;
use crate::store::BucketStore;

const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

/// `n` series over 2 hours at 15 s from `start`: 4 metric names, 3 jobs.
fn head(n: usize, start: i64) -> Head {
    let head = Head::new();
    for i in 0..n {
        let labels = Labels::from_pairs([
            (
                "__name__",
                ["up", "http_requests_total", "mem_bytes", "cpu"][i % 4],
            ),
            ("job", ["api", "db", "web"][(i / 4) % 3]),
            ("instance", &format!("10.0.0.{i}:9100")),
        ]);
        let samples: Vec<Sample> = (0..480)
            .map(|k| Sample::new(start + k * 15_000, (i * 1000 + k as usize) as f64))
            .collect();
        head.append(&labels, &samples).unwrap();
    }
    head
}

/// Writes a block of `head`'s `[mint, maxt)` into `<bucket>/<tenant>/`.
fn write_block(bucket: &Path, tenant: &str, head: &Head, mint: i64, maxt: i64) -> BlockMeta {
    let dir = bucket.join(tenant);
    std::fs::create_dir_all(&dir).unwrap();
    BlockWriter::default()
        .write_head(&dir, head, mint, maxt)
        .unwrap()
        .unwrap()
}

fn store(bucket: &Path, sync_dir: &Path, cache_bytes: u64) -> Arc<BucketStore> {
    let fs = object_store::local::LocalFileSystem::new_with_prefix(bucket).unwrap();
    let config = BucketStoreConfig {
        sync_dir: sync_dir.display().to_string(),
        postings_cache_max_bytes: cache_bytes,
        series_cache_max_bytes: cache_bytes,
        chunks_cache_max_bytes: cache_bytes,
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

/// Samples by series, as (timestamp, value bits), clipped to [mint, maxt].
type Decoded = BTreeMap<Labels, Vec<(i64, u64)>>;

fn add(
    out: &mut Decoded,
    labels: Labels,
    chunks: impl Iterator<Item = Vec<u8>>,
    mint: i64,
    maxt: i64,
) {
    let samples = out.entry(labels).or_default();
    for data in chunks {
        for s in strata_tsdb::chunk::decode_xor(&data).unwrap() {
            if s.timestamp_ms >= mint && s.timestamp_ms <= maxt {
                samples.push((s.timestamp_ms, s.value.to_bits()));
            }
        }
    }
    samples.sort();
    samples.dedup();
}

async fn query(
    store: &BucketStore,
    tenant: &str,
    m: &[Matcher],
    mint: i64,
    maxt: i64,
) -> (Decoded, Vec<String>) {
    query_blocks(store, tenant, m, (mint, maxt), &[]).await
}

/// A query of only the blocks `only` names (all with it empty).
async fn query_blocks(
    store: &BucketStore,
    tenant: &str,
    m: &[Matcher],
    (mint, maxt): (i64, i64),
    only: &[String],
) -> (Decoded, Vec<String>) {
    let mut rx = store.series(tenant, m.to_vec(), (mint, maxt), only, false);
    let mut out = Decoded::new();
    let mut blocks = Vec::new();
    while let Some(msg) = rx.recv().await {
        let msg = msg.unwrap();
        assert!(msg.series.len() <= crate::block::SERIES_BATCH);
        for s in msg.series {
            let labels = strata_proto::labels_from_proto(s.labels);
            add(
                &mut out,
                labels,
                s.chunks.into_iter().map(|c| c.data.to_vec()),
                mint,
                maxt,
            );
        }
        blocks.extend(msg.queried_blocks);
    }
    (out, blocks)
}

fn direct(dirs: &[std::path::PathBuf], m: &[Matcher], mint: i64, maxt: i64) -> Decoded {
    let mut out = Decoded::new();
    for dir in dirs {
        let reader = BlockReader::open(dir).unwrap();
        for s in reader.select(m, mint, maxt).unwrap() {
            add(
                &mut out,
                s.labels,
                s.chunks.into_iter().map(|c| c.data),
                mint,
                maxt,
            );
        }
    }
    out.retain(|_, v| !v.is_empty());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_blocks_like_the_block_reader_with_caches_and_restarts() {
    let bucket = tempfile::tempdir().unwrap();
    let sync_dir = tempfile::tempdir().unwrap();
    let h = head(600, T0);
    let a = write_block(bucket.path(), "team-a", &h, T0, T0 + 60 * MIN);
    let b = write_block(bucket.path(), "team-a", &h, T0 + 60 * MIN, T0 + 120 * MIN);
    write_block(bucket.path(), "team-b", &head(5, T0), T0, T0 + 60 * MIN);
    let dirs: Vec<_> = [&a, &b]
        .iter()
        .map(|m| bucket.path().join("team-a").join(m.ulid.to_string()))
        .collect();

    let store = store(bucket.path(), sync_dir.path(), 64 << 20);
    let stats = store.sync().await.unwrap();
    assert_eq!((stats.tenants, stats.blocks_loaded), (2, 3));
    assert_eq!(store.blocks("team-a").len(), 2);

    let cases: Vec<(Vec<Matcher>, i64, i64)> = vec![
        (
            vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()],
            T0,
            T0 + 120 * MIN,
        ),
        (
            vec![
                Matcher::new(MatchOp::RegexMatch, "job", "api|web").unwrap(),
                Matcher::new(MatchOp::NotEqual, "__name__", "cpu").unwrap(),
            ],
            T0 + 50 * MIN,
            T0 + 70 * MIN,
        ),
        (
            vec![Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()],
            T0 + 61 * MIN,
            T0 + 62 * MIN,
        ),
        (
            vec![Matcher::new(MatchOp::Equal, "job", "nope").unwrap()],
            T0,
            T0 + 120 * MIN,
        ),
    ];
    for (m, mint, maxt) in &cases {
        let want = direct(&dirs, m, *mint, *maxt);
        let (got, _) = query(&store, "team-a", m, *mint, *maxt).await;
        assert_eq!(got, want, "{m:?} [{mint}, {maxt}]");
    }
    // Only blocks overlapping the range are read.
    let up = [Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()];
    let (_, blocks) = query(&store, "team-a", &up, T0 + 70 * MIN, T0 + 80 * MIN).await;
    assert_eq!(blocks, vec![b.ulid.to_string()]);
    // Named blocks only: what the querier asks each replica for.
    let only_a = [a.ulid.to_string(), "01HNOTLOADED00000000000000".to_string()];
    let whole = (T0, T0 + 120 * MIN);
    let (got, blocks) = query_blocks(&store, "team-a", &up, whole, &only_a).await;
    assert_eq!(blocks, vec![a.ulid.to_string()]);
    assert_eq!(got, direct(&dirs[..1], &up, whole.0, whole.1));
    let names = store.label_names("team-a", vec![], whole, &only_a).await;
    assert_eq!(names.unwrap().queried_blocks, vec![a.ulid.to_string()]);
    let jobs = store.label_values("team-a", "job", vec![], whole, &only_a[1..]);
    let jobs = jobs.await.unwrap();
    assert_eq!((jobs.value.len(), jobs.queried_blocks.len()), (0, 0));
    // Another tenant's blocks are not visible.
    let (other, _) = query(&store, "team-b", &up, T0, T0 + 120 * MIN).await;
    assert!(
        other.len() <= 2
            && other
                .keys()
                .all(|l| l.get("instance") != Some("10.0.0.8:9100"))
    );

    // The same query again: everything from the caches.
    let all = [Matcher::new(MatchOp::RegexMatch, "job", ".+").unwrap()];
    let (first, _) = query(&store, "team-a", &all, T0, T0 + 120 * MIN).await;
    let before = store.metrics().ranged_reads();
    let (second, _) = query(&store, "team-a", &all, T0, T0 + 120 * MIN).await;
    assert_eq!(first, second);
    assert_eq!(first.len(), 600);
    assert_eq!(
        store.metrics().ranged_reads().0,
        before.0,
        "a warm query made requests"
    );
    let (lookups, hits) = store.metrics().cache_stats("chunks");
    assert!(hits > 0 && hits <= lookups);

    // Label endpoints: from the header without matchers, via series with.
    let names = store
        .label_names("team-a", vec![], whole, &[])
        .await
        .unwrap();
    assert_eq!(names.value, ["__name__", "instance", "job"]);
    assert_eq!(names.queried_blocks.len(), 2);
    let jobs = store
        .label_values("team-a", "job", up.to_vec(), whole, &[])
        .await
        .unwrap();
    assert_eq!(jobs.value, ["api", "db", "web"]);

    // A restart with the same sync dir fetches nothing to open the blocks.
    let restarted = self::store(bucket.path(), sync_dir.path(), 64 << 20);
    restarted.sync().await.unwrap();
    assert_eq!(restarted.metrics().ranged_reads().0, 0);
    let (again, _) = query(&restarted, "team-a", &all, T0, T0 + 120 * MIN).await;
    assert_eq!(again, first);

    // No caches at all: the same answers, one request per read.
    let uncached = self::store(bucket.path(), tempfile::tempdir().unwrap().path(), 0);
    uncached.sync().await.unwrap();
    let (plain, _) = query(&uncached, "team-a", &all, T0, T0 + 120 * MIN).await;
    assert_eq!(plain, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_and_deleted_blocks_are_dropped_and_bad_blocks_skipped() {
    let bucket = tempfile::tempdir().unwrap();
    let sync_dir = tempfile::tempdir().unwrap();
    let h = head(20, T0);
    let a = write_block(bucket.path(), "t", &h, T0, T0 + 60 * MIN);
    let b = write_block(bucket.path(), "t", &h, T0 + 60 * MIN, T0 + 120 * MIN);
    // A block without meta.json is incomplete: never loaded.
    let partial = bucket.path().join("t/01HZZZZZZZZZZZZZZZZZZZZZZZ");
    std::fs::create_dir_all(partial.join("chunks")).unwrap();
    std::fs::write(partial.join("index"), b"junk").unwrap();
    // A block whose index is garbage: skipped, the others still served.
    let later = head(20, T0 + 120 * MIN);
    let c = write_block(bucket.path(), "t", &later, T0 + 120 * MIN, T0 + 150 * MIN);
    let c_index = bucket.path().join(format!("t/{}/index", c.ulid));
    let len = std::fs::metadata(&c_index).unwrap().len() as usize;
    std::fs::write(&c_index, vec![0xAB; len]).unwrap();

    let store = store(bucket.path(), sync_dir.path(), 1 << 20);
    let stats = store.sync().await.unwrap();
    assert_eq!((stats.blocks_loaded, stats.load_failures), (2, 1));
    assert!(sync_dir
        .path()
        .join(format!("t/{}/index-header", a.ulid))
        .is_file());

    // Marked for deletion long ago: dropped at the next sync.
    let mark = format!(r#"{{"id":"{}","deletion_time":1000,"version":1}}"#, a.ulid);
    std::fs::write(
        bucket
            .path()
            .join(format!("t/{}/deletion-mark.json", a.ulid)),
        mark,
    )
    .unwrap();
    // Deleted from the bucket.
    std::fs::remove_dir_all(bucket.path().join(format!("t/{}", b.ulid))).unwrap();
    let stats = store.sync().await.unwrap();
    assert_eq!(stats.blocks_dropped, 2);
    assert!(store.blocks("t").is_empty());
    // Their local files are gone too.
    assert!(!sync_dir.path().join(format!("t/{}", a.ulid)).exists());
}
