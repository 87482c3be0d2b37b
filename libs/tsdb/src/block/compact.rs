//! Merging blocks into one: the compactor's core.
//!
//! [`compact`] reads N blocks series by series in label order (a k-way merge
//! over each block's sorted postings) and writes one block holding the union
//! of their series. Blocks may overlap in time — the RF copies of one range
//! that replicated ingesters upload ("vertical" compaction) — or be adjacent
//! (2h blocks into a 12h one): each series' samples from every block are
//! merged by timestamp and a timestamp present in several blocks is kept once,
//! the sample of the earliest block in the input order winning (replicas hold
//! the same value; when they do not, the choice is at least deterministic).
//! Merged samples are re-encoded into XOR chunks of at most
//! [`SAMPLES_PER_CHUNK`] samples, so the output is as dense as a block cut from
//! a head, whatever the inputs' chunking.
//!
//! Memory: only one series' samples are decoded at a time (a series of one
//! sample per second over a day is about 1.4 MB per input); what grows with the
//! block is the list of output series with their chunk references, which the
//! index writer needs, as [`BlockWriter`](super::BlockWriter)'s does.
//!
//! The output is written under a temporary name and renamed into place, so a
//! crash leaves either no block or a whole one; the caller decides what happens
//! to the inputs (the compactor marks them for deletion only after the output
//! is uploaded).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::Path;

use strata_model::Labels;

use super::chunks::{SegmentWriter, ENCODING_XOR, SEGMENT_HEADER_LEN};
use super::error::BlockError;
use super::index::{write_index, ChunkMeta, SeriesEntry, SeriesRef};
use super::meta::{
    BlockCompaction, BlockDesc, BlockMeta, BlockStats, ThanosDownsample, ThanosMeta, META_VERSION,
    TENANT_LABEL,
};
use super::reader::BlockReader;
use super::ulid::Ulid;
use super::writer::write_meta;
use super::writer::BlockOptions;
use crate::chunk::{decode_xor, XorChunk, SAMPLES_PER_CHUNK};

/// What [`compact`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactOutcome {
    /// The new block's meta (its directory is `parent/<meta.ulid>`).
    pub meta: BlockMeta,
    /// Samples read from the inputs, duplicates included; `meta.stats.num_samples`
    /// of them were kept.
    pub samples_read: u64,
}

/// Merges `blocks` into one new block under `parent` (see the module docs).
/// Returns `None`, writing nothing, when the inputs hold no sample.
///
/// The new block covers the union of the inputs' time ranges; its compaction
/// level is one more than the highest input level, its sources are the union
/// of the inputs' sources and its parents are the inputs. Its Thanos labels are
/// the first input's, overridden by `options`' external labels and tenant.
pub fn compact(
    parent: &Path,
    blocks: &[BlockReader],
    options: &BlockOptions,
) -> Result<Option<CompactOutcome>, BlockError> {
    if blocks.is_empty() {
        return Err(BlockError::InvalidInput(
            "compaction needs at least one block".to_string(),
        ));
    }
    let size = options.segment_size;
    if !(SEGMENT_HEADER_LEN + 16..=u64::from(u32::MAX)).contains(&size) {
        return Err(BlockError::InvalidInput(format!(
            "segment size {size} is outside [{}, {}]",
            SEGMENT_HEADER_LEN + 16,
            u32::MAX
        )));
    }
    let ulid = Ulid::generate();
    let tmp = parent.join(format!("{ulid}.tmp-for-creation"));
    match write_merged(&tmp, ulid, blocks, options) {
        Ok(Some(outcome)) => {
            let dir = parent.join(ulid.to_string());
            fs::rename(&tmp, &dir).map_err(|e| BlockError::io(&tmp, "rename", e))?;
            sync_dir(parent)?;
            Ok(Some(outcome))
        }
        Ok(None) => {
            fs::remove_dir_all(&tmp).map_err(|e| BlockError::io(&tmp, "remove", e))?;
            Ok(None)
        }
        Err(e) => {
            // Best effort: the error being returned matters more.
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// One input block's position in the merge: its series in index order (which
/// is label order) and the entry under the cursor.
struct Cursor<'a> {
    block: &'a BlockReader,
    postings: Vec<SeriesRef>,
    next: usize,
    current: Option<SeriesEntry>,
}

impl<'a> Cursor<'a> {
    fn new(block: &'a BlockReader) -> Result<Self, BlockError> {
        let postings = block.index().all_postings()?;
        let mut cursor = Self {
            block,
            postings,
            next: 0,
            current: None,
        };
        cursor.advance()?;
        Ok(cursor)
    }

    /// Moves to the next series, checking that the index really is sorted: the
    /// merge relies on it, and a block from elsewhere is input.
    fn advance(&mut self) -> Result<(), BlockError> {
        let Some(&id) = self.postings.get(self.next) else {
            self.current = None;
            return Ok(());
        };
        self.next += 1;
        let entry = self.block.index().series(id)?;
        if let Some(prev) = &self.current {
            if prev.labels >= entry.labels {
                return Err(BlockError::Corrupt {
                    file: format!("{}/index", self.block.meta().ulid),
                    offset: u64::from(id) * 16,
                    reason: format!(
                        "series {} does not sort after {}: the index is not in label order",
                        entry.labels, prev.labels
                    ),
                });
            }
        }
        self.current = Some(entry);
        Ok(())
    }
}

fn write_merged(
    dir: &Path,
    ulid: Ulid,
    blocks: &[BlockReader],
    options: &BlockOptions,
) -> Result<Option<CompactOutcome>, BlockError> {
    let chunks_dir = dir.join("chunks");
    fs::create_dir_all(&chunks_dir).map_err(|e| BlockError::io(&chunks_dir, "mkdir", e))?;
    let mut segments = SegmentWriter::new(&chunks_dir, options.segment_size);
    let mut cursors = blocks
        .iter()
        .map(Cursor::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut entries: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
    let mut stats = BlockStats::default();
    let mut samples_read = 0u64;
    // Reused for every series: (timestamp, value bits).
    let mut samples: Vec<(i64, u64)> = Vec::new();

    // The smallest labels under any cursor is the next output series.
    while let Some(labels) = cursors
        .iter()
        .filter_map(|c| c.current.as_ref().map(|e| &e.labels))
        .min()
        .cloned()
    {
        samples.clear();
        for cursor in cursors.iter_mut() {
            let Some(entry) = cursor.current.take_if(|e| e.labels == labels) else {
                continue;
            };
            read_samples(cursor.block, &entry, &mut samples)?;
            cursor.current = Some(entry);
            cursor.advance()?;
        }
        samples_read += samples.len() as u64;
        // Each block's samples are already in order: the stable sort merges the
        // runs and keeps equal timestamps in input order, so `dedup` keeps the
        // earliest input's sample.
        samples.sort_by_key(|&(t, _)| t);
        samples.dedup_by_key(|&mut (t, _)| t);
        if samples.is_empty() {
            continue;
        }
        let mut metas = Vec::with_capacity(samples.len().div_ceil(SAMPLES_PER_CHUNK.into()));
        for part in samples.chunks(usize::from(SAMPLES_PER_CHUNK)) {
            let mut chunk = XorChunk::new();
            for &(t, v) in part {
                chunk
                    .append(t, f64::from_bits(v))
                    .map_err(|e| BlockError::InvalidInput(format!("series {labels}: {e}")))?;
            }
            let (Some(min_time), Some(max_time)) = (chunk.min_time(), chunk.max_time()) else {
                continue;
            };
            let chunk_ref = segments.write(ENCODING_XOR, chunk.bytes())?;
            metas.push(ChunkMeta {
                min_time,
                max_time,
                chunk_ref,
            });
        }
        stats.num_samples += samples.len() as u64;
        stats.num_chunks += metas.len() as u64;
        stats.num_series += 1;
        entries.push((labels, metas));
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let segment_files = segments.finish()?;
    let index_path = dir.join("index");
    let index_size = write_index(&index_path, &entries)?;
    let meta = merged_meta(ulid, blocks, options, stats, segment_files, index_size);
    write_meta(dir, &meta)?;
    sync_dir(&chunks_dir)?;
    sync_dir(dir)?;
    Ok(Some(CompactOutcome { meta, samples_read }))
}

/// Appends the samples of `entry`'s chunks that lie inside the block's range
/// `[min_time, max_time)` to `out`. A sample outside it does not belong to the
/// block (Prometheus's readers clamp to the range too), and keeping it would
/// let the output's chunks reach outside the output's range.
fn read_samples(
    block: &BlockReader,
    entry: &SeriesEntry,
    out: &mut Vec<(i64, u64)>,
) -> Result<(), BlockError> {
    let meta = block.meta();
    for c in &entry.chunks {
        if c.max_time < meta.min_time || c.min_time >= meta.max_time {
            continue;
        }
        let raw = block.chunks().chunk(c.chunk_ref)?;
        if raw.encoding != ENCODING_XOR {
            return Err(BlockError::Unsupported {
                file: format!("{}/chunks", meta.ulid),
                reason: format!(
                    "series {}: chunk {:#x} has encoding {} (only XOR floats, 1, can be \
                     compacted)",
                    entry.labels, c.chunk_ref, raw.encoding
                ),
            });
        }
        let decoded = decode_xor(&raw.data).map_err(|e| BlockError::Corrupt {
            file: format!("{}/chunks", meta.ulid),
            offset: c.chunk_ref & 0xffff_ffff,
            reason: format!("series {}: {e}", entry.labels),
        })?;
        out.extend(
            decoded
                .iter()
                .filter(|s| s.timestamp_ms >= meta.min_time && s.timestamp_ms < meta.max_time)
                .map(|s| (s.timestamp_ms, s.value.to_bits())),
        );
    }
    Ok(())
}

fn merged_meta(
    ulid: Ulid,
    blocks: &[BlockReader],
    options: &BlockOptions,
    stats: BlockStats,
    segment_files: Vec<(String, u64)>,
    index_size: u64,
) -> BlockMeta {
    let metas: Vec<&BlockMeta> = blocks.iter().map(BlockReader::meta).collect();
    let min_time = metas.iter().map(|m| m.min_time).min().unwrap_or(0);
    let max_time = metas.iter().map(|m| m.max_time).max().unwrap_or(0);
    let level = metas.iter().map(|m| m.compaction.level).max().unwrap_or(0) + 1;
    let mut sources = BTreeSet::new();
    for m in &metas {
        if m.compaction.sources.is_empty() {
            // A block without sources (hand-made) is its own source.
            sources.insert(m.ulid);
        }
        sources.extend(m.compaction.sources.iter().copied());
    }
    let parents = metas
        .iter()
        .map(|m| BlockDesc {
            ulid: m.ulid,
            min_time: m.min_time,
            max_time: m.max_time,
        })
        .collect();

    let mut labels = metas
        .first()
        .and_then(|m| m.thanos.as_ref())
        .map(|t| t.labels.clone())
        .unwrap_or_default();
    labels.extend(
        options
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if let Some(tenant) = &options.tenant {
        labels.insert(TENANT_LABEL.to_string(), tenant.clone());
    }
    let files = super::writer::thanos_files(&segment_files, index_size);
    BlockMeta {
        ulid,
        min_time,
        max_time,
        stats,
        compaction: BlockCompaction {
            level,
            sources: sources.into_iter().collect(),
            parents,
        },
        version: META_VERSION,
        thanos: Some(ThanosMeta {
            labels,
            downsample: ThanosDownsample { resolution: 0 },
            source: options.source.clone(),
            segment_files: segment_files.into_iter().map(|(name, _)| name).collect(),
            files,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| BlockError::io(dir, "fsync", e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::process::Command;

    use strata_model::{Labels, Sample};

    use super::*;
    use crate::block::tests::{decoded, expected, gen_series, head_from, HOUR, T0};
    use crate::block::BlockWriter;

    type Series = Vec<(Labels, Vec<Sample>)>;

    /// Writes `series` restricted to `[mint, maxt)` as a block under `dir`, as
    /// an ingester would, and opens it.
    fn block_of(dir: &Path, series: &Series, mint: i64, maxt: i64) -> BlockReader {
        let head = head_from(series);
        let meta = BlockWriter::default()
            .write_head(dir, &head, mint, maxt)
            .unwrap()
            .unwrap();
        BlockReader::open(&dir.join(meta.ulid.to_string())).unwrap()
    }

    /// A replica that missed some series and some samples (a replica down for a
    /// while, or a series that arrived at quorum without it).
    fn lossy(series: &Series, skip_series: usize, skip_sample: usize) -> Series {
        series
            .iter()
            .enumerate()
            .filter(|(i, _)| i % skip_series != 1)
            .map(|(_, (l, s))| {
                let kept = s
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| j % skip_sample != 0)
                    .map(|(_, s)| *s)
                    .collect();
                (l.clone(), kept)
            })
            .collect()
    }

    fn compacted(dir: &Path, blocks: &[BlockReader]) -> (CompactOutcome, BlockReader) {
        let options = BlockOptions {
            source: "compactor".to_string(),
            ..BlockOptions::default()
        };
        let out = compact(dir, blocks, &options).unwrap().unwrap();
        let reader = BlockReader::open(&dir.join(out.meta.ulid.to_string())).unwrap();
        assert_eq!(reader.meta(), &out.meta);
        (out, reader)
    }

    /// Every chunk of the block: at most 120 samples, inside the block's range,
    /// chunks of a series in time order without overlap.
    fn check_chunks(block: &BlockReader) {
        let meta = block.meta();
        let mut chunks = 0;
        for s in block.select(&[], i64::MIN, i64::MAX).unwrap() {
            let mut last = i64::MIN;
            for c in &s.chunks {
                let n = decode_xor(&c.data).unwrap().len();
                assert!((1..=120).contains(&n), "{} samples in a chunk", n);
                assert!(c.min_time >= meta.min_time && c.max_time < meta.max_time);
                assert!(c.min_time > last, "chunks of {} overlap", s.labels);
                last = c.max_time;
                chunks += 1;
            }
        }
        assert_eq!(chunks, meta.stats.num_chunks);
    }

    #[test]
    fn overlapping_replicas_merge_with_each_sample_once() {
        let tmp = tempfile::tempdir().unwrap();
        let series = gen_series(400, 21, true);
        let (mint, maxt) = (T0, T0 + 2 * HOUR);
        // Three replicas of one range: two complete, one that lost series and
        // samples; every sample is in at least one of them.
        let blocks = vec![
            block_of(tmp.path(), &lossy(&series, 7, 5), mint, maxt),
            block_of(tmp.path(), &series, mint, maxt),
            block_of(tmp.path(), &lossy(&series, 3, 2), mint, maxt),
        ];
        let out_dir = tmp.path().join("out");
        fs::create_dir(&out_dir).unwrap();
        let (out, merged) = compacted(&out_dir, &blocks);

        let want = expected(&series, mint, maxt);
        let got = decoded(&merged.select(&[], i64::MIN, i64::MAX).unwrap());
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
        let meta = &out.meta;
        let total: u64 = want.values().map(|s| s.len() as u64).sum();
        assert_eq!(meta.stats.num_samples, total);
        assert_eq!(meta.stats.num_series, want.len() as u64);
        let read: u64 = blocks.iter().map(|b| b.meta().stats.num_samples).sum();
        assert_eq!(out.samples_read, read);
        assert!(
            read > 2 * total,
            "the replicas overlap: {read} read, {total} kept"
        );
        assert_eq!((meta.min_time, meta.max_time), (mint, maxt));
        assert_eq!(meta.compaction.level, 2);
        let mut sources: Vec<Ulid> = blocks.iter().map(|b| b.meta().ulid).collect();
        sources.sort();
        assert_eq!(meta.compaction.sources, sources);
        let parents: Vec<Ulid> = meta.compaction.parents.iter().map(|p| p.ulid).collect();
        assert_eq!(
            parents,
            blocks.iter().map(|b| b.meta().ulid).collect::<Vec<_>>()
        );
        assert_eq!(meta.thanos.as_ref().unwrap().source, "compactor");
        check_chunks(&merged);
        // Only the new block's directory was added (no temporary left).
        assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 1);
    }

    #[test]
    fn adjacent_blocks_merge_into_one_covering_both() {
        let tmp = tempfile::tempdir().unwrap();
        let series = gen_series(300, 22, false);
        let ranges = [
            (T0 - HOUR / 2, T0),
            (T0, T0 + HOUR),
            (T0 + HOUR, T0 + 2 * HOUR + HOUR / 2),
        ];
        let blocks: Vec<BlockReader> = ranges
            .iter()
            .map(|&(a, b)| block_of(tmp.path(), &series, a, b))
            .collect();
        // A block that is itself a compaction result: the output's level is one
        // more than the highest input level and its sources are the union.
        let out_dir = tmp.path().join("out");
        fs::create_dir(&out_dir).unwrap();
        let (first, first_reader) = compacted(&out_dir, &blocks[..2]);
        assert_eq!(first.meta.compaction.level, 2);
        let (out, merged) = compacted(&out_dir, &[first_reader, blocks[2].clone()]);

        let want = expected(&series, ranges[0].0, ranges[2].1);
        assert_eq!(
            decoded(&merged.select(&[], i64::MIN, i64::MAX).unwrap()),
            want
        );
        assert_eq!(out.meta.min_time, ranges[0].0);
        assert_eq!(out.meta.max_time, ranges[2].1);
        assert_eq!(out.meta.compaction.level, 3);
        let mut sources: Vec<Ulid> = blocks.iter().map(|b| b.meta().ulid).collect();
        sources.sort();
        assert_eq!(out.meta.compaction.sources, sources);
        assert_eq!(out.samples_read, out.meta.stats.num_samples);
        check_chunks(&merged);
        // Series spanning the block boundaries get full chunks again.
        let per_chunk = out.meta.stats.num_samples as f64 / out.meta.stats.num_chunks as f64;
        assert!(per_chunk > 100.0, "{per_chunk} samples per chunk");
    }

    #[test]
    fn equal_timestamps_keep_the_first_inputs_value() {
        let tmp = tempfile::tempdir().unwrap();
        let labels = Labels::from_pairs([("__name__", "conflict")]);
        let only_b = Labels::from_pairs([("__name__", "only_b")]);
        let samples =
            |v: f64| -> Vec<Sample> { (0..200).map(|i| Sample::new(T0 + i * 15_000, v)).collect() };
        let a = block_of(
            tmp.path(),
            &vec![(labels.clone(), samples(1.0))],
            T0,
            T0 + HOUR,
        );
        let b = block_of(
            tmp.path(),
            &vec![
                (labels.clone(), samples(2.0)),
                (only_b.clone(), samples(3.0)),
            ],
            T0,
            T0 + HOUR,
        );
        let out_dir = tmp.path().join("out");
        fs::create_dir(&out_dir).unwrap();
        let (_, merged) = compacted(&out_dir, &[a.clone(), b.clone()]);
        let got = decoded(&merged.select(&[], i64::MIN, i64::MAX).unwrap());
        let want = |v: f64| {
            samples(v)
                .iter()
                .map(|s| (s.timestamp_ms, v.to_bits()))
                .collect()
        };
        let expect: BTreeMap<Labels, Vec<(i64, u64)>> =
            BTreeMap::from([(labels.clone(), want(1.0)), (only_b.clone(), want(3.0))]);
        assert_eq!(got, expect);
        let (_, merged) = compacted(&out_dir, &[b, a]);
        let got = decoded(&merged.select(&[], i64::MIN, i64::MAX).unwrap());
        assert_eq!(got[&labels], want(2.0));
    }

    #[test]
    fn corrupt_input_is_an_error_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let series = gen_series(50, 23, false);
        let good = block_of(tmp.path(), &series, T0, T0 + HOUR);
        let bad = block_of(tmp.path(), &series, T0, T0 + HOUR);
        let segment = tmp
            .path()
            .join(bad.meta().ulid.to_string())
            .join("chunks/000001");
        let mut bytes = fs::read(&segment).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x5a;
        fs::write(&segment, bytes).unwrap();
        let bad = BlockReader::open(&tmp.path().join(bad.meta().ulid.to_string())).unwrap();
        let out_dir = tmp.path().join("out");
        fs::create_dir(&out_dir).unwrap();
        let err = compact(&out_dir, &[good, bad], &BlockOptions::default()).unwrap_err();
        assert!(
            matches!(err, BlockError::Checksum { .. }),
            "unexpected error {err}"
        );
        assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 0);
        assert!(compact(&out_dir, &[], &BlockOptions::default()).is_err());
    }

    #[test]
    fn samples_outside_a_blocks_range_are_not_carried_over() {
        // A block whose chunks reach past its meta's range (older Prometheus
        // versions could write such blocks): only the in-range samples count.
        let tmp = tempfile::tempdir().unwrap();
        let series = gen_series(20, 24, false);
        let block = block_of(tmp.path(), &series, T0, T0 + HOUR);
        let dir = tmp.path().join(block.meta().ulid.to_string());
        let mut meta = block.meta().clone();
        meta.max_time = T0 + HOUR / 2;
        write_meta(&dir, &meta).unwrap();
        let narrowed = BlockReader::open(&dir).unwrap();
        let out_dir = tmp.path().join("out");
        fs::create_dir(&out_dir).unwrap();
        let (_, merged) = compacted(&out_dir, &[narrowed]);
        assert_eq!(
            decoded(&merged.select(&[], i64::MIN, i64::MAX).unwrap()),
            expected(&series, T0, T0 + HOUR / 2)
        );
        check_chunks(&merged);
    }

    fn promtool() -> PathBuf {
        PathBuf::from(std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string()))
    }

    #[test]
    fn promtool_dumps_each_sample_of_merged_replicas_once() {
        // Plain label values, so the dump's quoting is plain too.
        let mut series: Series = Vec::new();
        for i in 0..60 {
            let labels = Labels::from_pairs([
                ("__name__", format!("metric_{}", i % 4)),
                ("instance", format!("host-{i}")),
            ]);
            let samples = (0..700)
                .map(|j| Sample::new(T0 + j * 10_000 + i, (i * 1000 + j) as f64 / 4.0))
                .collect();
            series.push((labels, samples));
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        let (mint, maxt) = (T0, T0 + 2 * HOUR);
        let blocks = vec![
            block_of(&src, &lossy(&series, 5, 3), mint, maxt),
            block_of(&src, &series, mint, maxt),
            block_of(&src, &lossy(&series, 4, 7), mint, maxt),
        ];
        // promtool reads a DB directory: the merged block alone, and a wal/.
        let db = tmp.path().join("db");
        fs::create_dir_all(db.join("wal")).unwrap();
        compacted(&db, &blocks);
        let out = Command::new(promtool())
            .args(["tsdb", "dump", db.to_str().unwrap()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run promtool ({e}): apt-get install prometheus"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let (labels, rest) = line.rsplit_once("} ").unwrap();
            let mut fields = rest.split_whitespace();
            let v: f64 = fields.next().unwrap().parse().unwrap();
            let t: i64 = fields.next().unwrap().parse().unwrap();
            got.entry(format!("{labels}}}")).or_default().push((t, v));
        }
        let want: BTreeMap<String, Vec<(i64, f64)>> = series
            .iter()
            .map(|(labels, samples)| {
                let text = labels
                    .iter()
                    .map(|l| format!("{}=\"{}\"", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(", ");
                let kept = samples
                    .iter()
                    .filter(|s| s.timestamp_ms < maxt)
                    .map(|s| (s.timestamp_ms, s.value))
                    .collect();
                (format!("{{{text}}}"), kept)
            })
            .collect();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
    }
}
