//! Whole compaction passes over a local-folder bucket: replica copies merged
//! with each sample once, levels, deletion marks and delays, retention,
//! partial blocks, the bucket index, and the states an interrupted pass
//! leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use strata_compactor::{BlockRanges, Compactor, CompactorConfig};
use strata_limits::{Limits, Overrides};
use strata_model::{ConfigDuration, Labels, Sample};
use strata_storage::{BlocksStorageConfig, Bucket, FilesystemConfig};
use strata_tsdb::block::{BlockMeta, BlockOptions, BlockReader, BlockWriter};
use strata_tsdb::chunk::decode_xor;
use strata_tsdb::head::Head;

const TENANT: &str = "team-a";
const MIN: i64 = 60_000;
/// 2023-11-14T22:00:00Z, aligned to every range used here.
const T0: i64 = 1_699_999_200_000;

struct Setup {
    _tmp: tempfile::TempDir,
    bucket: Bucket,
    local: std::path::PathBuf,
    scratch: std::path::PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = BlocksStorageConfig {
        filesystem: FilesystemConfig {
            dir: tmp.path().join("bucket").display().to_string(),
        },
        ..Default::default()
    }
    .bucket()
    .unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    Setup {
        bucket,
        local,
        scratch: tmp.path().join("scratch"),
        _tmp: tmp,
    }
}

/// 30 series, a sample every 15 s over `[start, end)`.
fn series(start: i64, end: i64) -> Vec<(Labels, Vec<Sample>)> {
    (0..30)
        .map(|i| {
            let labels =
                Labels::from_pairs([("__name__", format!("m{}", i % 3)), ("i", i.to_string())]);
            let samples = (start..end)
                .step_by(15_000)
                .map(|t| Sample::new(t, (t / 1000 + i) as f64))
                .collect();
            (labels, samples)
        })
        .collect()
}

/// Writes `series` in `[mint, maxt)` as an ingester's block and uploads it.
async fn upload(s: &Setup, series: &[(Labels, Vec<Sample>)], mint: i64, maxt: i64) -> BlockMeta {
    let head = Head::new();
    for (l, samples) in series {
        head.append(l, samples).unwrap();
    }
    let writer = BlockWriter::new(BlockOptions {
        tenant: Some(TENANT.to_string()),
        ..Default::default()
    });
    let meta = writer
        .write_head(&s.local, &head, mint, maxt)
        .unwrap()
        .unwrap();
    s.bucket
        .upload_block(TENANT, &s.local.join(meta.ulid.to_string()))
        .await
        .unwrap();
    meta
}

fn compactor(s: &Setup, ranges: &[u64], deletion_delay: u64, limits: Limits) -> Compactor {
    let config = CompactorConfig {
        block_ranges: BlockRanges::from_durations(
            &ranges
                .iter()
                .map(|m| Duration::from_secs(m * 60))
                .collect::<Vec<_>>(),
        ),
        data_dir: s.scratch.display().to_string(),
        deletion_delay: ConfigDuration::from_secs(deletion_delay),
        partial_block_deletion_delay: ConfigDuration::from_secs(1),
        ..Default::default()
    };
    Compactor::new(
        config,
        s.bucket.clone(),
        Arc::new(Overrides::new(limits)),
        &prometheus::Registry::new(),
    )
    .unwrap()
}

/// The tenant's complete blocks (meta.json present) with their metas and
/// whether they are marked for deletion.
async fn blocks(s: &Setup) -> Vec<(BlockMeta, bool)> {
    let mut out = Vec::new();
    for id in s.bucket.list_blocks(TENANT).await.unwrap() {
        let meta = s
            .bucket
            .store()
            .get(&Bucket::block_object(TENANT, &id, "meta.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let meta: BlockMeta = serde_json::from_slice(&meta).unwrap();
        let marked = s
            .bucket
            .read_deletion_mark(TENANT, &id)
            .await
            .unwrap()
            .is_some();
        out.push((meta, marked));
    }
    out.sort_by_key(|(m, _)| (m.min_time, m.ulid));
    out
}

/// Every sample of the live (unmarked) blocks, per series, duplicates kept.
async fn live_samples(s: &Setup) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let dl = tempfile::tempdir().unwrap();
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for (meta, marked) in blocks(s).await {
        if marked {
            continue;
        }
        let id = meta.ulid.to_string();
        let dir = dl.path().join(&id);
        std::fs::create_dir_all(dir.join("chunks")).unwrap();
        for f in ["meta.json", "index", "chunks/000001"] {
            let bytes = s
                .bucket
                .store()
                .get(&Bucket::block_object(TENANT, &id, f))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            std::fs::write(dir.join(f), bytes).unwrap();
        }
        let block = BlockReader::open(&dir).unwrap();
        for sc in block.select(&[], i64::MIN, i64::MAX).unwrap() {
            let entry = out.entry(sc.labels.clone()).or_default();
            for c in &sc.chunks {
                entry.extend(
                    decode_xor(&c.data)
                        .unwrap()
                        .iter()
                        .map(|x| (x.timestamp_ms, x.value)),
                );
            }
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|x| x.0);
    }
    out
}

fn want(series: &[(Labels, Vec<Sample>)]) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    series
        .iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter().map(|x| (x.timestamp_ms, x.value)).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn replicas_merge_then_levels_and_sources_go_after_the_delay() {
    let s = setup();
    // Three ranges of 2 minutes, three replica copies each; one copy lacks
    // every other sample.
    let all = series(T0, T0 + 6 * MIN);
    let thin: Vec<_> = all
        .iter()
        .map(|(l, v)| (l.clone(), v.iter().step_by(2).copied().collect::<Vec<_>>()))
        .collect();
    for r in 0..3 {
        let (a, b) = (T0 + r * 2 * MIN, T0 + (r + 1) * 2 * MIN);
        upload(&s, &all, a, b).await;
        upload(&s, &thin, a, b).await;
        upload(&s, &all, a, b).await;
    }
    assert_eq!(blocks(&s).await.len(), 9);

    // Only the first level: one block per range, sources marked but kept
    // (deletion delay 1h).
    let c = compactor(&s, &[2], 3600, Limits::default());
    let stats = c.run_once().await.unwrap();
    assert_eq!(
        (stats.compactions, stats.blocks_marked_for_deletion),
        (3, 9),
        "{stats:?}"
    );
    let after = blocks(&s).await;
    let live: Vec<&BlockMeta> = after.iter().filter(|(_, m)| !m).map(|(b, _)| b).collect();
    assert_eq!(live.len(), 3);
    for (r, b) in live.iter().enumerate() {
        assert_eq!(b.min_time, T0 + r as i64 * 2 * MIN);
        assert_eq!(b.max_time, b.min_time + 2 * MIN);
        assert_eq!(b.compaction.level, 2);
        assert_eq!(b.compaction.sources.len(), 3);
    }
    assert_eq!(live_samples(&s).await, want(&all));
    let index = s.bucket.read_bucket_index(TENANT).await.unwrap().unwrap();
    assert_eq!(index.blocks.len(), 12);
    assert_eq!(index.block_deletion_marks.len(), 9);
    assert_eq!(index.live_blocks().count(), 3);
    assert!(index
        .blocks
        .iter()
        .all(|b| b.segments_format == "1b6d" && b.uploaded_at > 0));
    // A second pass changes nothing.
    let stats = c.run_once().await.unwrap();
    assert_eq!(
        (stats.compactions, stats.blocks_deleted),
        (0, 0),
        "{stats:?}"
    );

    // Levels 2m -> 6m, deletion delay 0: one 6-minute block, nothing else.
    let c = compactor(&s, &[2, 6], 0, Limits::default());
    let stats = c.run_once().await.unwrap();
    assert_eq!(stats.compactions, 1, "{stats:?}");
    assert_eq!(stats.blocks_deleted, 12, "{stats:?}");
    let after = blocks(&s).await;
    assert_eq!(after.len(), 1, "{after:?}");
    let (b, marked) = &after[0];
    assert!(!marked);
    assert_eq!((b.min_time, b.max_time), (T0, T0 + 6 * MIN));
    assert_eq!(b.compaction.level, 3);
    assert_eq!(b.compaction.sources.len(), 9);
    assert_eq!(b.thanos.as_ref().unwrap().source, "compactor");
    assert_eq!(live_samples(&s).await, want(&all));
    let index = s.bucket.read_bucket_index(TENANT).await.unwrap().unwrap();
    assert_eq!(index.blocks.len(), 1);
    assert!(index.block_deletion_marks.is_empty());
    // No mark copies are left under markers/.
    assert!(s
        .bucket
        .scan_tenant(TENANT)
        .await
        .unwrap()
        .global_marks
        .is_empty());
}

#[tokio::test]
async fn an_interrupted_compaction_is_finished_without_duplicates() {
    let s = setup();
    let all = series(T0, T0 + 2 * MIN);
    let copies = [
        upload(&s, &all, T0, T0 + 2 * MIN).await,
        upload(&s, &all, T0, T0 + 2 * MIN).await,
    ];
    // What a compactor killed after uploading its result, before marking the
    // sources, leaves: the merged block and its unmarked sources.
    let readers: Vec<BlockReader> = copies
        .iter()
        .map(|m| BlockReader::open(&s.local.join(m.ulid.to_string())).unwrap())
        .collect();
    let merged_dir = s.local.join("merged");
    std::fs::create_dir_all(&merged_dir).unwrap();
    let merged = strata_tsdb::block::compact(&merged_dir, &readers, &BlockOptions::default())
        .unwrap()
        .unwrap();
    s.bucket
        .upload_block(TENANT, &merged_dir.join(merged.meta.ulid.to_string()))
        .await
        .unwrap();
    // And a partial upload of another attempt (no meta.json).
    s.bucket
        .store()
        .put(
            &ObjectPath::from(format!("{TENANT}/01HZZZZZZZZZZZZZZZZZZZZZZZ/index")),
            PutPayload::from_static(b"partial"),
        )
        .await
        .unwrap();

    let c = compactor(&s, &[2], 0, Limits::default());
    // The partial block must be older than partial_block_deletion_delay (1s).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stats = c.run_once().await.unwrap();
    // The sources are recognised as held by the merged block: marked and
    // deleted, not merged again.
    assert_eq!(stats.compactions, 0, "{stats:?}");
    assert_eq!(stats.blocks_deleted, 2, "{stats:?}");
    assert_eq!(stats.partial_blocks_deleted, 1, "{stats:?}");
    let after = blocks(&s).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0.ulid, merged.meta.ulid);
    assert_eq!(live_samples(&s).await, want(&all));
    let scan = s.bucket.scan_tenant(TENANT).await.unwrap();
    assert_eq!(scan.blocks.len(), 1, "{:?}", scan.blocks.keys());
}

#[tokio::test]
async fn retention_marks_and_deletes_old_blocks() {
    let s = setup();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let recent_start = (now - 30 * MIN) / (2 * MIN) * (2 * MIN);
    let old = upload(&s, &series(T0, T0 + 2 * MIN), T0, T0 + 2 * MIN).await;
    let recent = upload(
        &s,
        &series(recent_start, recent_start + 2 * MIN),
        recent_start,
        recent_start + 2 * MIN,
    )
    .await;
    let limits = Limits {
        compactor_blocks_retention_period: ConfigDuration::from_secs(24 * 3600),
        ..Default::default()
    };
    let c = compactor(&s, &[2], 3600, limits);
    let stats = c.run_once().await.unwrap();
    assert_eq!(stats.blocks_marked_for_deletion, 1, "{stats:?}");
    let after = blocks(&s).await;
    assert_eq!(
        after
            .iter()
            .map(|(m, marked)| (m.ulid, *marked))
            .collect::<Vec<_>>(),
        vec![(old.ulid, true), (recent.ulid, false)]
    );
    let mark = s
        .bucket
        .read_deletion_mark(TENANT, &old.ulid.to_string())
        .await
        .unwrap()
        .unwrap();
    assert!(mark.details.contains("retention"), "{mark:?}");
    // Default limits keep everything; with no delay the marked block goes.
    let c = compactor(&s, &[2], 0, Limits::default());
    assert_eq!(c.run_once().await.unwrap().blocks_deleted, 1);
    assert_eq!(blocks(&s).await.len(), 1);
}

#[derive(Debug)]
struct OwnsNothing;

impl strata_compactor::TenantOwnership for OwnsNothing {
    fn owns(&self, _tenant: &str) -> bool {
        false
    }
}

#[tokio::test]
async fn a_tenant_owned_by_another_compactor_is_left_alone() {
    let s = setup();
    let all = series(T0, T0 + 2 * MIN);
    for _ in 0..3 {
        upload(&s, &all, T0, T0 + 2 * MIN).await;
    }
    let c = compactor(&s, &[2], 0, Limits::default()).with_ownership(Arc::new(OwnsNothing));
    let stats = c.run_once().await.unwrap();
    assert_eq!(
        (stats.tenants, stats.tenants_owned_elsewhere),
        (0, 1),
        "{stats:?}"
    );
    assert_eq!(stats.compactions, 0);
    assert_eq!(
        blocks(&s).await.len(),
        3,
        "the replica copies stay as they were"
    );
}
