use std::collections::HashMap;
use std::fs;
use std::sync::Arc;

use proptest::prelude::*;
use strata_model::{Labels, Sample, STALE_NAN};

use super::frame::frame;
use super::record::{decode, Decoded};
use super::*;
use crate::chunk::decode_xor;
use crate::head::{Head, SeriesRef};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn opts(segment_size: u64, fsync: FsyncPolicy) -> WalOptions {
    WalOptions {
        segment_size,
        fsync,
    }
}

/// The tenant of the tests' records.
const T: &str = "t";

fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    Wal::replay(dir, |_, r| out.push(r)).unwrap();
    out
}

/// What a checkpoint keeps of tenant [`T`]: samples from `ts`, every series
/// but `dead`.
fn keep(ts: i64, dead: &[SeriesRef]) -> impl FnOnce() -> Retain {
    let refs: Vec<SeriesRef> = (0..10_000)
        .map(SeriesRef)
        .filter(|r| !dead.contains(r))
        .collect();
    move || {
        let mut retain = Retain::default();
        retain.insert(
            T,
            TenantRetain {
                keep_from_ts: ts,
                keep_late_from_ts: i64::MAX,
                next_ref: SeriesRef(u64::MAX),
                refs,
            },
        );
        retain
    }
}

/// Replays `dir` into `head`, every tenant's records.
fn replay_one(dir: &Path, head: &Arc<Head>) -> Result<ReplayStats, WalError> {
    Wal::replay_into(dir, |_| Some(head.clone()))
}

/// A decoded payload's record (panics on anything else).
fn decoded(payload: &[u8]) -> Record {
    match decode(payload).unwrap() {
        Decoded::Record { record, .. } => record,
        other => panic!("not a record: {other:?}"),
    }
}

/// Every series of the head with its samples as (timestamp, value bits).
fn contents(head: &Head) -> Vec<(Labels, Vec<(i64, u64)>)> {
    head.select_chunks(&[], i64::MIN, i64::MAX)
        .into_iter()
        .map(|s| {
            let points = s
                .chunks
                .iter()
                .flat_map(|c| decode_xor(&c.data).unwrap())
                .map(|s| (s.timestamp_ms, s.value.to_bits()))
                .collect();
            (s.labels, points)
        })
        .collect()
}

/// What an ingester does: append to the head, log new series and the samples.
fn ingest(head: &Head, wal: &Wal, l: &Labels, samples: &[Sample]) {
    let (series, created) = head.get_or_create_series(l);
    let mut batch = WalBatch::new(T);
    if created {
        batch.add_series(series.series_ref(), l).unwrap();
    }
    head.append_to(&series, samples).unwrap();
    batch.add_samples(series.series_ref(), samples);
    let lsn = wal.log(&mut batch).unwrap();
    wal.wait_durable(lsn).unwrap();
}

/// Writes `batches` batches, each defining one series and giving it 5 samples,
/// one batch per `log` call.
fn write_batches(dir: &Path, options: WalOptions, batches: u64) -> Vec<Record> {
    let wal = Wal::open(dir, options).unwrap();
    for i in 0..batches {
        let mut batch = WalBatch::new(T);
        batch
            .add_series(
                SeriesRef(i + 1),
                &labels(&[("__name__", "m"), ("i", &i.to_string())]),
            )
            .unwrap();
        for t in 0..5 {
            batch.add_sample(
                SeriesRef(i + 1),
                1000 * t + i as i64,
                t as f64 * 0.5 + i as f64,
            );
        }
        wal.log(&mut batch).unwrap();
    }
    wal.close().unwrap();
    records(dir)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn records_round_trip_bit_exact() {
    let series = vec![
        RefSeries {
            series_ref: SeriesRef(u64::MAX),
            labels: labels(&[("__name__", "up"), ("job", "ü\u{0}x")]),
        },
        RefSeries {
            series_ref: SeriesRef(0),
            labels: Labels::default(),
        },
    ];
    let samples = vec![
        (SeriesRef(7), i64::MIN, f64::NAN),
        (SeriesRef(u64::MAX), i64::MAX, STALE_NAN),
        (SeriesRef(7), 0, -0.0),
        (SeriesRef(0), -1, f64::INFINITY),
    ];
    let mut batch = WalBatch::new(T);
    for s in &series {
        batch.add_series(s.series_ref, &s.labels).unwrap();
    }
    for &(r, t, v) in &samples {
        batch.add_sample(r, t, v);
    }
    assert_eq!(batch.counts(), (2, 4));
    batch.add_min_valid_time(-42);
    let (bytes, records) = batch.finish();
    assert_eq!(records, 3);
    let bytes = bytes.to_vec();
    let mut got = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        got.push(decoded(&rest[8..8 + len]));
        rest = &rest[8 + len..];
    }
    assert_eq!(got.len(), 3, "series first, then samples");
    assert_eq!(got[0], Record::Series(series));
    assert_eq!(got[2], Record::MinValidTime(-42));
    let Record::Samples(decoded) = &got[1] else {
        panic!("not samples: {:?}", got[1]);
    };
    let decoded: Vec<_> = decoded
        .iter()
        .map(|s| (s.series_ref, s.timestamp_ms, s.value.to_bits()))
        .collect();
    let want: Vec<_> = samples
        .iter()
        .map(|&(r, t, v)| (r, t, v.to_bits()))
        .collect();
    assert_eq!(decoded, want);
}

#[test]
fn big_batches_split_into_records_with_series_first() {
    let mut batch = WalBatch::new(T);
    for i in 0..200_000u64 {
        if i % 1000 == 0 {
            batch
                .add_series(SeriesRef(i), &labels(&[("i", &i.to_string())]))
                .unwrap();
        }
        batch.add_sample(SeriesRef(i - i % 1000), i as i64, 1.0);
    }
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(DEFAULT_SEGMENT_SIZE, FsyncPolicy::Never)).unwrap();
    wal.log(&mut batch).unwrap();
    assert!(batch.is_empty());
    drop(wal);
    let got = records(dir.path());
    assert!(got.len() > 2, "{} records", got.len());
    let mut defined = std::collections::HashSet::new();
    let mut samples = 0;
    for r in got {
        match r {
            Record::Series(list) => defined.extend(list.iter().map(|s| s.series_ref)),
            Record::Samples(list) => {
                samples += list.len();
                assert!(list.iter().all(|s| defined.contains(&s.series_ref)));
            }
            Record::MinValidTime(_) | Record::Exemplars(_) | Record::LateSamples(_) => {
                panic!("not written by a batch of samples")
            }
        }
    }
    assert_eq!(samples, 200_000);
}

#[test]
fn oversized_series_is_refused() {
    let mut batch = WalBatch::new(T);
    let huge = "x".repeat(40 << 20);
    let err = batch
        .add_series(SeriesRef(1), &labels(&[("a", &huge)]))
        .unwrap_err();
    assert!(err.len > 40 << 20);
    assert!(batch.is_empty());
}

#[test]
fn replay_restores_head_and_series_refs() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new();
    let wal = Wal::open(dir.path(), opts(4096, FsyncPolicy::Always)).unwrap();
    let all: Vec<Labels> = (0..30)
        .map(|i| labels(&[("__name__", "m"), ("i", &i.to_string()), ("job", "j")]))
        .collect();
    // Interleaved pushes; 300 samples a series cut several chunks.
    for step in 0..10i64 {
        for (i, l) in all.iter().enumerate() {
            let samples: Vec<Sample> = (0..30)
                .map(|k| {
                    let t = step * 30_000 + k * 1000;
                    Sample::new(t, (t as f64).sin() * i as f64)
                })
                .collect();
            ingest(&head, &wal, l, &samples);
        }
    }
    ingest(&head, &wal, &all[3], &[Sample::new(10_000_000, STALE_NAN)]);
    assert!(wal.current_segment() > 0, "expected rotation");
    wal.close().unwrap();

    let restored = Arc::new(Head::new());
    let stats = replay_one(dir.path(), &restored).unwrap();
    assert_eq!(stats.series, 30);
    assert_eq!(stats.samples, 30 * 300 + 1);
    assert_eq!(stats.rejected_samples, 0);
    assert_eq!(stats.unknown_series_samples, 0);
    assert_eq!(stats.truncated, None);
    assert_eq!(contents(&restored), contents(&head));
    assert_eq!(restored.time_range(), head.time_range());
    for l in &all {
        let (a, _) = head.get_or_create_series(l);
        let (b, created) = restored.get_or_create_series(l);
        assert!(!created);
        assert_eq!(a.series_ref(), b.series_ref());
    }
    // New series never reuse a restored ref.
    let (new, created) = restored.get_or_create_series(&labels(&[("new", "1")]));
    assert!(created);
    assert!(new.series_ref().0 > 30);
}

#[test]
fn restart_continues_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(&[("a", "1")]);
    let head = Head::new();
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        ingest(&head, &wal, &l, &[Sample::new(1, 1.0), Sample::new(2, 2.0)]);
    }
    let second = Arc::new(Head::new());
    replay_one(dir.path(), &second).unwrap();
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(wal.current_segment(), 1);
        ingest(&second, &wal, &l, &[Sample::new(3, 3.0)]);
        ingest(
            &second,
            &wal,
            &labels(&[("b", "2")]),
            &[Sample::new(3, 3.0)],
        );
    }
    let third = Arc::new(Head::new());
    let stats = replay_one(dir.path(), &third).unwrap();
    assert_eq!((stats.segments, stats.series, stats.samples), (2, 2, 4));
    assert_eq!(contents(&third), contents(&second));
}

#[test]
fn torn_tail_replays_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let full = write_batches(dir.path(), opts(2048, FsyncPolicy::Never), 100);
    let files = segment_files(dir.path());
    assert!(files.len() > 2, "{files:?}");
    let last = files.last().unwrap().clone();
    let last_len = fs::metadata(&last).unwrap().len();
    let before = {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), scratch.path());
        fs::write(scratch.path().join(last.file_name().unwrap()), b"").unwrap();
        records(scratch.path()).len()
    };
    for cut in 0..=last_len {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), scratch.path());
        let path = scratch.path().join(last.file_name().unwrap());
        let data = fs::read(&path).unwrap();
        fs::write(&path, &data[..cut as usize]).unwrap();
        let mut got = Vec::new();
        let stats = Wal::replay(scratch.path(), |_, r| got.push(r)).unwrap();
        assert!(got.len() >= before, "cut at {cut}");
        assert_eq!(got[..], full[..got.len()], "cut at {cut}");
        if let Some((_, at)) = stats.truncated {
            assert!(at < cut);
            // The file was cut back to its valid part: a second replay is clean.
            assert_eq!(fs::metadata(&path).unwrap().len(), at);
            let again = Wal::replay(scratch.path(), |_, _| {}).unwrap();
            assert_eq!(again.truncated, None);
        }
        if cut == last_len {
            assert_eq!(got, full);
            assert_eq!(stats.truncated, None);
        }
    }
}

#[test]
fn garbage_or_zeros_after_the_last_record_are_cut() {
    for tail in [
        vec![0u8; 4096],
        vec![0xa5; 3],
        b"\x10\x00\x00\x00garbage!".to_vec(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let full = write_batches(dir.path(), opts(1 << 20, FsyncPolicy::Never), 5);
        let last = segment_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        let mut data = fs::read(&last).unwrap();
        data.extend_from_slice(&tail);
        fs::write(&last, data).unwrap();
        let mut got = Vec::new();
        let stats = Wal::replay(dir.path(), |_, r| got.push(r)).unwrap();
        assert_eq!(got, full);
        assert_eq!(stats.truncated, Some((last.clone(), len)));
    }
}

#[test]
fn a_damaged_record_in_an_earlier_segment_costs_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_batches(dir.path(), opts(2048, FsyncPolicy::Never), 100);
    let files = segment_files(dir.path());
    let first = &files[0];
    let mut data = fs::read(first).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x40;
    fs::write(first, data).unwrap();
    let mut got = Vec::new();
    let stats = Wal::replay(dir.path(), |_, r| got.push(r)).unwrap();
    assert_eq!(stats.skipped.len(), 1, "{stats:?}");
    let (path, from, to, _) = &stats.skipped[0];
    assert_eq!(path, first);
    assert!(
        *from <= at as u64 && (at as u64) < *to,
        "{from}..{to} holds {at}"
    );
    assert_eq!(
        got.len(),
        all.len() - 1,
        "exactly the damaged record is lost"
    );
    assert!(got.iter().all(|r| all.contains(r)));
    assert_eq!(stats.truncated, None, "a closed segment is never cut");
}

/// Two tenants' pushes interleaved in one WAL, as an ingester writes them.
fn two_tenants(dir: &Path, rounds: i64) -> (Arc<Head>, Arc<Head>) {
    let a = Arc::new(Head::new());
    let b = Arc::new(Head::new());
    let wal = Wal::open(dir, opts(4096, FsyncPolicy::Always)).unwrap();
    for t in 0..rounds {
        for (tenant, head) in [("a", &a), ("b", &b)] {
            let l = labels(&[("__name__", "m"), ("tenant", tenant)]);
            let (series, created) = head.get_or_create_series(&l);
            let mut batch = WalBatch::new(tenant);
            if created {
                batch.add_series(series.series_ref(), &l).unwrap();
            }
            let samples = [Sample::new(t * 1000, t as f64)];
            head.append_to(&series, &samples).unwrap();
            batch.add_samples(series.series_ref(), &samples);
            let lsn = wal.log(&mut batch).unwrap();
            wal.wait_durable(lsn).unwrap();
        }
    }
    wal.close().unwrap();
    (a, b)
}

fn replay_tenants(dir: &Path) -> (HashMap<String, Arc<Head>>, ReplayStats) {
    let mut heads: HashMap<String, Arc<Head>> = HashMap::new();
    let stats = Wal::replay_into(dir, |tenant| {
        Some(heads.entry(tenant.to_string()).or_default().clone())
    })
    .unwrap();
    (heads, stats)
}

#[test]
fn one_wal_replays_every_tenant_into_its_own_head() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_tenants(dir.path(), 50);
    let (heads, stats) = replay_tenants(dir.path());
    assert_eq!(heads.len(), 2);
    assert_eq!(contents(&heads["a"]), contents(&a));
    assert_eq!(contents(&heads["b"]), contents(&b));
    assert_eq!(stats.samples, 100);
    assert!(!stats.damaged());
}

#[test]
fn one_tenants_damaged_record_leaves_the_other_tenants_records_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_tenants(dir.path(), 60);
    // Damage one samples record of tenant "b" in the middle of the log: a
    // tenant's name is in its records' payloads, so find one of b's frames.
    let files = segment_files(dir.path());
    let target = &files[files.len() / 2];
    let mut data = fs::read(target).unwrap();
    let mut offset = 0;
    let mut damaged = None;
    while offset + 8 < data.len() {
        let len = u32::from_le_bytes(data[offset..offset + 4].try_into().unwrap()) as usize;
        let payload = &data[offset + 8..offset + 8 + len];
        if payload[0] == 17 && payload[2] == b'b' {
            damaged = Some(offset + 8 + len - 1);
            break;
        }
        offset += 8 + len;
    }
    let at = damaged.expect("a samples record of tenant b");
    data[at] ^= 0xff;
    fs::write(target, data).unwrap();

    let (heads, stats) = replay_tenants(dir.path());
    assert_eq!(stats.skipped.len(), 1, "{stats:?}");
    assert_eq!(
        contents(&heads["a"]),
        contents(&a),
        "tenant a loses nothing"
    );
    let b_points: usize = contents(&heads["b"]).iter().map(|(_, p)| p.len()).sum();
    assert_eq!(
        b_points, 59,
        "tenant b loses the damaged record's one sample"
    );
    assert_eq!(contents(&b).iter().map(|(_, p)| p.len()).sum::<usize>(), 60);
}

#[test]
fn a_per_tenant_wal_of_earlier_versions_replays_as_its_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(&[("__name__", "old")]);
    let mut bytes = Vec::new();
    for record in [
        Record::MinValidTime(5),
        Record::Series(vec![RefSeries {
            series_ref: SeriesRef(3),
            labels: l.clone(),
        }]),
        Record::Samples(vec![
            RefSample {
                series_ref: SeriesRef(3),
                timestamp_ms: 10,
                value: 1.5,
            },
            RefSample {
                series_ref: SeriesRef(3),
                timestamp_ms: 20,
                value: 2.5,
            },
        ]),
    ] {
        frame(&mut bytes, &super::record::encode_legacy(&record));
    }
    fs::write(dir.path().join("00000000"), &bytes).unwrap();
    let mut got = Vec::new();
    let stats = Wal::replay_legacy(dir.path(), "old-tenant", |t, r| {
        got.push((t.to_string(), r))
    })
    .unwrap();
    assert_eq!(stats.records, 3);
    assert!(got.iter().all(|(t, _)| t == "old-tenant"));
    assert_eq!(got[0].1, Record::MinValidTime(5));
    // In the shared WAL the same records name no tenant: unreadable, skipped.
    let stats = Wal::replay(dir.path(), |_, _| panic!("no tenant")).unwrap();
    assert_eq!((stats.records, stats.unreadable_records), (0, 3));
}

#[test]
fn records_of_reserved_types_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
    let mut batch = WalBatch::new(T);
    batch.add_min_valid_time(7);
    wal.log(&mut batch).unwrap();
    wal.close().unwrap();
    // A newer version's record (a native histogram, say) after it.
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    frame(&mut data, &super::record::encode_reserved(21, b"\x01tbody"));
    fs::write(&seg, data).unwrap();
    let mut got = Vec::new();
    let stats = Wal::replay(dir.path(), |t, r| got.push((t.to_string(), r))).unwrap();
    assert_eq!(got, vec![(T.to_string(), Record::MinValidTime(7))]);
    assert_eq!(stats.unreadable_records, 1);
    assert_eq!(
        stats.truncated, None,
        "a known-but-unread record is not damage"
    );
}

#[test]
fn a_checkpoint_keeps_each_tenant_by_its_own_bound_and_drops_tenants_not_named() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = two_tenants(dir.path(), 40);
    let wal = Wal::open(dir.path(), opts(4096, FsyncPolicy::Always)).unwrap();
    let mut retain = Retain::default();
    retain.insert(
        "a",
        TenantRetain {
            keep_from_ts: 30_000,
            keep_late_from_ts: i64::MAX,
            next_ref: a.next_series_ref(),
            refs: a.series_refs(),
        },
    );
    retain.insert("gone", TenantRetain::bound_only(77));
    let stats = wal.checkpoint(|| retain).unwrap();
    assert_eq!((stats.samples_kept, stats.samples_dropped), (10, 70));
    wal.close().unwrap();
    let (heads, replayed) = replay_tenants(dir.path());
    assert!(!heads.contains_key("b"), "tenant b was not retained");
    let points: Vec<i64> = contents(&heads["a"])[0].1.iter().map(|p| p.0).collect();
    assert_eq!(points, (30..40).map(|t| t * 1000).collect::<Vec<_>>());
    assert_eq!(heads["a"].min_valid_time(), 30_000);
    assert_eq!(
        heads["gone"].min_valid_time(),
        77,
        "a closed tenant keeps its bound"
    );
    assert_eq!(heads["gone"].num_series(), 0);
    assert_eq!(replayed.checkpoint, stats.through_segment);
}

#[test]
fn missing_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_batches(dir.path(), opts(2048, FsyncPolicy::Never), 100);
    let files = segment_files(dir.path());
    fs::remove_file(&files[1]).unwrap();
    assert!(matches!(
        Wal::replay(dir.path(), |_, _| {}),
        Err(WalError::Layout { .. })
    ));
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::Layout { .. })
    ));
}

#[test]
fn segments_rotate_at_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(1000, FsyncPolicy::Always)).unwrap();
    let mut batch = WalBatch::new(T);
    for i in 0..100 {
        batch.add_sample(SeriesRef(1), i, 1.0);
        let lsn = wal.log(&mut batch).unwrap();
        wal.wait_durable(lsn).unwrap();
    }
    // A batch bigger than a segment gets a segment of its own.
    for i in 0..500 {
        batch.add_sample(SeriesRef(1), 1000 + i, 1.0);
    }
    wal.log(&mut batch).unwrap();
    batch.add_sample(SeriesRef(1), 5000, 1.0);
    wal.log(&mut batch).unwrap();
    let current = wal.current_segment();
    drop(wal);
    let files = segment_files(dir.path());
    assert_eq!(files.len() as u32, current + 1);
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .collect();
    let big = sizes.iter().filter(|&&s| s > 1000).count();
    assert_eq!(big, 1, "{sizes:?}");
    assert!(sizes.iter().rev().nth(1).unwrap() > &1000, "{sizes:?}");
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f.file_name().unwrap().to_str().unwrap(), format!("{i:08}"));
    }
    let samples: usize = records(dir.path())
        .iter()
        .map(|r| match r {
            Record::Samples(s) => s.len(),
            Record::Series(_)
            | Record::MinValidTime(_)
            | Record::Exemplars(_)
            | Record::LateSamples(_) => 0,
        })
        .sum();
    assert_eq!(samples, 601);
}

#[test]
fn open_cuts_a_torn_tail_before_starting_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_batches(dir.path(), opts(1 << 20, FsyncPolicy::Never), 3);
    let last = segment_files(dir.path()).pop().unwrap();
    let mut data = fs::read(&last).unwrap();
    data.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    fs::write(&last, data).unwrap();
    // No replay in between: open alone must leave a log that replays cleanly.
    let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
    let mut batch = WalBatch::new(T);
    batch.add_sample(SeriesRef(1), 99, 9.0);
    wal.log(&mut batch).unwrap();
    drop(wal);
    let got = records(dir.path());
    assert_eq!(got.len(), first.len() + 1);
    assert_eq!(got[..first.len()], first[..]);
}

#[test]
fn checkpoint_keeps_live_series_and_recent_samples() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new();
    let wal = Wal::open(dir.path(), opts(2048, FsyncPolicy::Always)).unwrap();
    let live = labels(&[("s", "live")]);
    let dead = labels(&[("s", "dead")]);
    for t in 0..200 {
        ingest(&head, &wal, &live, &[Sample::new(t * 10, t as f64)]);
        ingest(&head, &wal, &dead, &[Sample::new(t * 10, -(t as f64))]);
    }
    let dead_ref = head.get_or_create_series(&dead).0.series_ref();
    let before = wal.current_segment();
    assert!(before > 2);

    let stats = wal.checkpoint(keep(1000, &[dead_ref])).unwrap();
    assert_eq!(stats.through_segment, Some(before));
    assert_eq!((stats.series_kept, stats.series_dropped), (1, 1));
    assert_eq!((stats.samples_kept, stats.samples_dropped), (100, 300));
    assert_eq!(stats.segments_deleted, before as usize + 1);
    assert!(dir.path().join(format!("checkpoint.{before:08}")).is_dir());
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the new segment is left"
    );

    for t in 200..250 {
        ingest(&head, &wal, &live, &[Sample::new(t * 10, t as f64)]);
    }
    // A second checkpoint reads the first one and replaces it.
    let stats = wal.checkpoint(keep(1500, &[dead_ref])).unwrap();
    assert_eq!(stats.checkpoints_deleted, 1);
    assert_eq!((stats.series_kept, stats.samples_kept), (1, 100));
    ingest(&head, &wal, &live, &[Sample::new(5000, 1.0)]);
    ingest(
        &head,
        &wal,
        &labels(&[("s", "new")]),
        &[Sample::new(5000, 1.0)],
    );
    drop(wal);

    let restored = Arc::new(Head::new());
    let replay = replay_one(dir.path(), &restored).unwrap();
    assert_eq!(replay.checkpoint, stats.through_segment);
    let want: Vec<_> = contents(&head)
        .into_iter()
        .filter(|(l, _)| l != &dead)
        .map(|(l, points)| {
            let recent = points.into_iter().filter(|&(t, _)| t >= 1500).collect();
            (l, recent)
        })
        .collect();
    assert_eq!(contents(&restored), want);
}

#[test]
fn checkpoint_of_an_empty_wal_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(
        wal.checkpoint(keep(0, &[])).unwrap(),
        CheckpointStats::default()
    );
    assert_eq!(
        wal.checkpoint(keep(0, &[])).unwrap(),
        CheckpointStats::default()
    );
}

#[test]
fn crash_mid_checkpoint_leaves_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let full = write_batches(dir.path(), opts(2048, FsyncPolicy::Never), 100);
    // A crash while writing checkpoint.00000001.tmp: replay ignores it.
    let tmp = dir.path().join("checkpoint.00000001.tmp");
    fs::create_dir(&tmp).unwrap();
    fs::write(tmp.join("00000000"), b"half a checkpoint").unwrap();
    assert_eq!(records(dir.path()), full);
    // A crash after the rename, before the segments were deleted: replay starts
    // after the checkpoint and skips the covered segments.
    let pristine = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), pristine.path());
    let wal = Wal::open(dir.path(), opts(2048, FsyncPolicy::Never)).unwrap();
    assert!(!tmp.exists(), "open removes unfinished checkpoints");
    let cp = wal.checkpoint(keep(i64::MIN, &[])).unwrap();
    drop(wal);
    assert!(cp.segments_deleted > 2);
    for f in segment_files(pristine.path()) {
        fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let got = records(dir.path());
    let count = |rs: &[Record]| {
        rs.iter()
            .map(|r| match r {
                Record::Series(s) => (s.len(), 0),
                Record::Samples(s) => (0, s.len()),
                Record::MinValidTime(_) | Record::Exemplars(_) | Record::LateSamples(_) => (0, 0),
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    assert_eq!(count(&got), count(&full));
    // The next checkpoint deletes the leftovers.
    let wal = Wal::open(dir.path(), opts(2048, FsyncPolicy::Never)).unwrap();
    wal.checkpoint(keep(i64::MIN, &[])).unwrap();
    drop(wal);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(count(&records(dir.path())), count(&full));
}

#[test]
fn concurrent_writers_with_group_commit_all_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(
            dir.path(),
            opts(
                64 << 10,
                FsyncPolicy::Batch {
                    max_delay: Duration::from_millis(2),
                },
            ),
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..8u64)
        .map(|w| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut batch = WalBatch::new(T);
                for i in 0..50 {
                    for k in 0..20 {
                        batch.add_sample(SeriesRef(w), i * 20 + k, w as f64);
                    }
                    let lsn = wal.log(&mut batch).unwrap();
                    wal.wait_durable(lsn).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (100..116u64)
            .map(|w| {
                let wal = Arc::clone(&wal);
                tokio::spawn(async move {
                    for i in 0..20 {
                        let mut batch = WalBatch::new(T);
                        batch.add_sample(SeriesRef(w), i, 1.0);
                        wal.log_durable(&mut batch).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let wal = Arc::into_inner(wal).unwrap();
    wal.close().unwrap();
    let samples: usize = records(dir.path())
        .iter()
        .map(|r| match r {
            Record::Samples(s) => s.len(),
            Record::Series(_)
            | Record::MinValidTime(_)
            | Record::Exemplars(_)
            | Record::LateSamples(_) => 0,
        })
        .sum();
    assert_eq!(samples, 8 * 50 * 20 + 16 * 20);
}

#[test]
fn never_policy_is_durable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
    let mut batch = WalBatch::new(T);
    batch.add_sample(SeriesRef(1), 1, 1.0);
    let lsn = wal.log(&mut batch).unwrap();
    assert_eq!(lsn, wal.written());
    wal.wait_durable(lsn).unwrap();
    // An empty batch writes nothing.
    assert_eq!(wal.log(&mut batch).unwrap(), lsn);
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::open(dir.path(), opts(0, FsyncPolicy::Never)),
        Err(WalError::Options(_))
    ));
}

#[test]
fn missing_directory_replays_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Wal::replay(dir.path().join("nope"), |_, _| panic!("no records")).unwrap();
    assert_eq!(stats, ReplayStats::default());
}

/// A frame around `payload`, as a writer would produce it.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame(&mut out, payload);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn decode_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&payload);
    }

    #[test]
    fn garbage_files_never_panic(
        files in proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..300),
                proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 0..60)), 0..4),
            ),
            1..4,
        ),
        checkpoint in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        for (i, (garbage, frames)) in files.iter().enumerate() {
            // Checksummed frames with arbitrary payloads (exercising the
            // decoder), then raw garbage.
            let mut data = Vec::new();
            for (kind, body) in frames {
                let mut payload = vec![*kind];
                payload.extend_from_slice(body);
                data.extend(framed(&payload));
            }
            data.extend_from_slice(garbage);
            fs::write(dir.path().join(format!("{i:08}")), data).unwrap();
        }
        if let Some(cp) = checkpoint {
            let cp_dir = dir.path().join("checkpoint.00000000");
            fs::create_dir(&cp_dir).unwrap();
            fs::write(cp_dir.join("00000000"), cp).unwrap();
        }
        let _ = Wal::replay(dir.path(), |_, _| {});
        let _ = replay_one(dir.path(), &Arc::new(Head::new()));
        // Whatever replay left, open must cope or refuse cleanly.
        if let Ok(wal) = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)) {
            drop(wal);
        }
    }

    #[test]
    fn truncating_the_last_segment_anywhere_gives_a_prefix(
        batches in proptest::collection::vec(
            proptest::collection::vec((0u64..5, any::<i64>(), any::<i32>()), 1..20),
            1..20,
        ),
        cut_fraction in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), opts(512, FsyncPolicy::Never)).unwrap();
        let mut batch = WalBatch::new(T);
        for samples in &batches {
            for &(r, t, v) in samples {
                batch.add_sample(SeriesRef(r), t, f64::from(v));
            }
            wal.log(&mut batch).unwrap();
        }
        drop(wal);
        let full = records(dir.path());
        let last = segment_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        let cut = (len as f64 * cut_fraction) as u64;
        fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(cut).unwrap();
        let got = records(dir.path());
        prop_assert!(got.len() <= full.len());
        prop_assert_eq!(&got[..], &full[..got.len()]);
    }
}

#[test]
fn checkpoint_without_new_writes_still_drops_what_blocks_hold() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new();
    let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Always)).unwrap();
    let m = labels(&[("s", "m")]);
    for t in 0..100 {
        ingest(&head, &wal, &m, &[Sample::new(t * 10, t as f64)]);
    }
    let first = wal.checkpoint(keep(500, &[])).unwrap();
    assert_eq!(first.samples_kept, 50);
    // No sample since: a block up to 900 is cut, the WAL must forget it too.
    let second = wal.checkpoint(keep(900, &[])).unwrap();
    assert_eq!(second.checkpoints_deleted, 1);
    assert_eq!(
        (second.samples_kept, second.samples_dropped),
        (10, 40),
        "{second:?}"
    );
    // And once more with everything cut: only the series and the bound stay.
    let third = wal.checkpoint(keep(i64::MAX, &[])).unwrap();
    assert_eq!(third.samples_kept, 0);
    drop(wal);

    let restored = Arc::new(Head::new());
    let stats = replay_one(dir.path(), &restored).unwrap();
    assert_eq!(stats.samples, 0);
    assert_eq!(stats.min_valid_time, Some(i64::MAX));
    assert_eq!(restored.min_valid_time(), i64::MAX);
    let segments: Vec<_> = segment_files(dir.path());
    assert_eq!(segments.len(), 1, "{segments:?}");
}

#[test]
fn the_bound_survives_a_restart_and_refuses_samples_blocks_hold() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new();
    let m = labels(&[("s", "m")]);
    {
        let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
        for t in 0..10 {
            ingest(&head, &wal, &m, &[Sample::new(t * 10, t as f64)]);
        }
        wal.checkpoint(keep(50, &[])).unwrap();
        ingest(&head, &wal, &m, &[Sample::new(100, 1.0)]);
    }
    let restored = Arc::new(Head::new());
    let stats = replay_one(dir.path(), &restored).unwrap();
    assert_eq!(stats.min_valid_time, Some(50));
    assert_eq!(stats.rejected_samples, 0);
    assert_eq!(
        contents(&restored)[0]
            .1
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        vec![50, 60, 70, 80, 90, 100]
    );
    // The replayed head refuses what the block holds, as the first did.
    assert!(restored.append(&m, &[Sample::new(40, 1.0)]).is_err());
    // A second checkpoint (the restarted WAL) keeps the bound.
    let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
    wal.checkpoint(keep(i64::MIN, &[])).unwrap();
    drop(wal);
    let again = Arc::new(Head::new());
    assert_eq!(
        replay_one(dir.path(), &again).unwrap().min_valid_time,
        Some(50)
    );
}

#[test]
fn a_corrupt_tail_is_reported_with_the_bytes_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let full = write_batches(dir.path(), opts(1 << 20, FsyncPolicy::Never), 5);
    let last = segment_files(dir.path()).pop().unwrap();
    let mut data = fs::read(&last).unwrap();
    let len = data.len();
    // Flip a byte in the last record's payload.
    data[len - 3] ^= 0x40;
    fs::write(&last, &data).unwrap();
    let mut got = Vec::new();
    let stats = Wal::replay(dir.path(), |_, r| got.push(r)).unwrap();
    // Each batch is a series record and a samples record: the last is lost.
    assert_eq!(got[..], full[..full.len() - 1]);
    let (_, at) = stats.truncated.clone().unwrap();
    assert_eq!(stats.dropped_bytes, len as u64 - at);
    assert!(
        stats
            .corruption
            .as_deref()
            .unwrap()
            .contains("checksum mismatch"),
        "{stats:?}"
    );
}

#[test]
fn exemplars_are_logged_after_their_series_replayed_into_the_head_and_checkpointed() {
    use crate::exemplars::Exemplar;
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
    let head = Head::new();
    let labels = Labels::from_pairs([("__name__", "reqs_total")]);
    let (series, _) = head.get_or_create_series(&labels);
    let exemplar = |trace: &str, ts: i64| Exemplar {
        labels: Labels::from_pairs([("trace_id", trace)]),
        value: 1.5,
        timestamp_ms: ts,
    };
    let mut batch = WalBatch::new(T);
    batch.add_series(series.series_ref(), &labels).unwrap();
    batch.add_sample(series.series_ref(), 10, 1.0);
    batch.add_exemplar(series.series_ref(), &exemplar("old", 10));
    batch.add_exemplar(series.series_ref(), &exemplar("new", 40_000));
    // One for a series no record defines: dropped on replay.
    batch.add_exemplar(SeriesRef(999), &exemplar("nobody", 20));
    assert_eq!(batch.exemplar_count(), 3);
    wal.log(&mut batch).unwrap();

    let got = records(dir.path());
    assert!(matches!(got[0], Record::Series(_)), "{got:?}");
    let Some(Record::Exemplars(logged)) = got.iter().find(|r| matches!(r, Record::Exemplars(_)))
    else {
        panic!("no exemplars record: {got:?}");
    };
    assert_eq!(logged.len(), 3);
    assert_eq!(logged[1].exemplar, exemplar("new", 40_000));

    let replayed = Arc::new(Head::new());
    let target = replayed.clone();
    let mut replayer = HeadReplayer::new(move |_: &str| Some(target.clone()));
    let stats = Wal::replay(dir.path(), |t, r| replayer.apply(t, r)).unwrap();
    assert_eq!(stats.exemplars, 3);
    replayer.finish(&mut ReplayStats::default());
    let found = replayed.select_exemplars(&[], 0, i64::MAX);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, labels);
    assert_eq!(found[0].1, [exemplar("old", 10), exemplar("new", 40_000)]);

    // A checkpoint keeps a live series' exemplars no older than its bound.
    let mut retain = Retain::default();
    retain.insert(
        T,
        TenantRetain {
            keep_from_ts: 30_000,
            keep_late_from_ts: i64::MAX,
            next_ref: head.next_series_ref(),
            refs: head.series_refs(),
        },
    );
    wal.checkpoint(|| retain).unwrap();
    wal.close().unwrap();
    let kept: Vec<_> = records(dir.path())
        .into_iter()
        .filter_map(|r| match r {
            Record::Exemplars(list) => Some(list),
            _ => None,
        })
        .flatten()
        .map(|e| e.exemplar)
        .collect();
    assert_eq!(kept, [exemplar("new", 40_000)]);
}

#[test]
fn late_samples_replay_into_their_place_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new();
    head.set_out_of_order_window(20_000);
    let wal = Wal::open(dir.path(), opts(4096, FsyncPolicy::Always)).unwrap();
    let l = labels(&[("__name__", "m")]);
    let in_order: Vec<Sample> = (1..=20).map(|i| Sample::new(i * 1000, i as f64)).collect();
    ingest(&head, &wal, &l, &in_order);
    // Late ones, logged as ordinary samples after the newer ones.
    ingest(
        &head,
        &wal,
        &l,
        &[Sample::new(15_500, 15.5), Sample::new(2_500, 2.5)],
    );
    ingest(
        &head,
        &wal,
        &l,
        &[Sample::new(21_000, 21.0), Sample::new(20_500, 20.5)],
    );
    wal.close().unwrap();

    // The restarted head has no window yet (limits come later): what was
    // acknowledged comes back all the same.
    let restored = Arc::new(Head::new());
    let stats = replay_one(dir.path(), &restored).unwrap();
    assert_eq!(stats.rejected_samples, 0);
    assert_eq!(contents(&restored), contents(&head));
    let points: Vec<i64> = contents(&restored)[0].1.iter().map(|p| p.0).collect();
    assert_eq!(points.len(), 24);
    assert!(points.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn late_samples_behind_the_bound_replay_behind_it_and_a_checkpoint_keeps_those_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
    let l = labels(&[("__name__", "m")]);
    let r = SeriesRef(3);
    let mut batch = WalBatch::new(T);
    batch.add_series(r, &l).unwrap();
    // In order up to 20 s; then a block is cut of what is before 10 s, and
    // one sample ahead of the bound and two late ones behind it come.
    for i in 1..=20 {
        batch.add_sample(r, i * 1000, i as f64);
    }
    batch.add_sample(r, 21_000, 21.0);
    batch.add_late_sample(r, 4_500, 4.5);
    batch.add_late_sample(r, 8_500, 8.5);
    assert_eq!(batch.counts(), (1, 23));
    wal.log(&mut batch).unwrap();

    let got = records(dir.path());
    let late: Vec<i64> = got
        .iter()
        .filter_map(|r| match r {
            Record::LateSamples(list) => Some(list.iter().map(|s| s.timestamp_ms)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(late, [4_500, 8_500]);

    // Replay: the bound (an ingester takes it from its blocks) keeps out
    // the samples the block holds; the late ones come back behind it.
    let replayed = Arc::new(Head::new());
    replayed.set_min_valid_time(10_000);
    let stats = replay_one(dir.path(), &replayed).unwrap();
    assert_eq!(stats.rejected_samples, 9, "{stats:?}");
    assert_eq!(replayed.oldest_late_sample(), Some(4_500));
    let points: Vec<i64> = contents(&replayed)[0].1.iter().map(|p| p.0).collect();
    assert!(
        points.contains(&4_500) && points.contains(&8_500),
        "{points:?}"
    );
    assert!(
        !points.contains(&9_000) && points.contains(&21_000),
        "{points:?}"
    );

    // A checkpoint keeps the late samples from the oldest no block holds
    // yet: 4.5 s went into a late block, 8.5 s did not.
    let mut retain = Retain::default();
    retain.insert(
        T,
        TenantRetain {
            keep_from_ts: 10_000,
            keep_late_from_ts: 8_500,
            next_ref: SeriesRef(u64::MAX),
            refs: vec![r],
        },
    );
    wal.checkpoint(|| retain).unwrap();
    wal.close().unwrap();
    let kept = records(dir.path());
    let late: Vec<i64> = kept
        .iter()
        .filter_map(|r| match r {
            Record::LateSamples(list) => Some(list.iter().map(|s| s.timestamp_ms)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(late, [8_500]);
    // The checkpoint records the bound: a head replayed from it alone
    // (the blocks gone from the disk) keeps the rest out all the same.
    let restored = Arc::new(Head::new());
    replay_one(dir.path(), &restored).unwrap();
    let points: Vec<i64> = contents(&restored)[0].1.iter().map(|p| p.0).collect();
    assert_eq!(points.first(), Some(&8_500), "{points:?}");
    assert_eq!(points.get(1), Some(&10_000), "{points:?}");
    assert_eq!(restored.oldest_late_sample(), Some(8_500));
}
