//! A damaged WAL tail never stops an ingester: pushes are acknowledged, the
//! process is killed with SIGKILL, the last record of the last WAL segment is
//! damaged (case A: cut short by a few bytes; case B: one byte flipped), and
//! the restarted process becomes ready, returns every sample acknowledged
//! before the damaged record, timestamp and value (that record's push, the
//! last one, is lost),
//! logs what it dropped, and never panics.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_integration::{
    get_json, matrix_samples, now_ms, one_sample_per_series_body, push_raw, Strata,
};

const TENANT: &str = "wal-corruption";
const SERIES: usize = 3;
const PUSHES: i64 = 10;

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The last record loses its last few bytes (a torn write).
    Truncate(u64),
    /// One byte of the last record's payload is flipped (bit rot).
    FlipByte,
}

/// Push `i` gives every series the sample `(base + i s, i)`; the first also
/// creates the series, so each later push is exactly one samples record.
async fn push(strata: &Strata, base: i64, i: i64) {
    let names: Vec<String> = (0..SERIES).map(|s| format!("s{s}")).collect();
    let body =
        one_sample_per_series_body("wal_corruption_test", &names, (base + i * 1000, i as f64));
    let (status, msg) = push_raw(&strata.url("/api/v1/push"), Some(TENANT), body).await;
    assert_eq!(status, 200, "push {i}: {msg}");
}

/// Every series' samples as (push `i`, value), by series; push `i` was
/// `(base + i s, i)`, so a replayed sample with the right timestamp and a
/// wrong value shows.
async fn stored(strata: &Strata, base: i64) -> BTreeMap<String, Vec<(i64, f64)>> {
    let url = strata.url(&format!(
        "/prometheus/api/v1/query?query=wal_corruption_test[1h]&time={}",
        (base + 600_000) as f64 / 1000.0
    ));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    matrix_samples(&body, "series")
        .into_iter()
        .map(|(name, values)| {
            let relative = values.into_iter().map(|(t, v)| ((t - base) / 1000, v));
            (name, relative.collect())
        })
        .collect()
}

/// The newest segment file of the ingester's WAL (shared by every tenant)
/// that holds anything.
fn last_segment(data: &Path) -> PathBuf {
    let wal = data.join("tsdb").join("@wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

/// The offset of the last frame (`[u32 len][u32 crc][payload]`) of `segment`.
fn last_frame_offset(segment: &[u8]) -> u64 {
    let mut offset = 0usize;
    let mut last = None;
    while offset < segment.len() {
        let len = u32::from_le_bytes(segment[offset..offset + 4].try_into().unwrap()) as usize;
        last = Some(offset);
        offset += 8 + len;
    }
    assert_eq!(offset, segment.len(), "the segment ends with a whole frame");
    last.unwrap() as u64
}

async fn damaged_tail_is_dropped(damage: Damage) {
    let data = tempfile::tempdir().unwrap();
    let base = (now_ms() - 600_000) / 1000 * 1000;
    let strata = Strata::start_all_in(data.path()).await;
    for i in 0..PUSHES {
        push(&strata, base, i).await;
    }
    let all: BTreeMap<String, Vec<(i64, f64)>> = (0..SERIES)
        .map(|s| {
            (
                format!("s{s}"),
                (0..PUSHES).map(|i| (i, i as f64)).collect(),
            )
        })
        .collect();
    assert_eq!(stored(&strata, base).await, all);
    // SIGKILL: no shutdown path runs.
    drop(strata);

    let segment = last_segment(data.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let last_record = last_frame_offset(&bytes);
    match damage {
        Damage::Truncate(n) => bytes.truncate(bytes.len() - n as usize),
        Damage::FlipByte => {
            // Inside the payload: the last sample's value bits.
            let at = bytes.len() - 3;
            bytes[at] ^= 0x10;
        }
    }
    std::fs::write(&segment, &bytes).unwrap();
    let dropped = bytes.len() as u64 - last_record;

    let strata = Strata::start_all_in(data.path()).await;
    let logs = strata.process.logs();
    // The last push was the damaged record: it alone is gone.
    let got = stored(&strata, base).await;
    let want: BTreeMap<String, Vec<(i64, f64)>> = (0..SERIES)
        .map(|s| {
            (
                format!("s{s}"),
                (0..PUSHES - 1).map(|i| (i, i as f64)).collect(),
            )
        })
        .collect();
    assert_eq!(got, want, "{logs}");
    let line = logs
        .lines()
        .find(|l| l.contains("WAL replay dropped a torn or corrupt tail"))
        .unwrap_or_else(|| panic!("no line about the dropped tail:\n{logs}"));
    eprintln!("{damage:?}: {line}");
    let segment_name = segment.display().to_string();
    for part in [
        format!("{dropped} bytes of segment {segment_name} from offset {last_record}"),
        match damage {
            Damage::Truncate(_) => "runs past the end of the segment".to_string(),
            Damage::FlipByte => "checksum mismatch".to_string(),
        },
    ] {
        assert!(line.contains(&part), "{part:?} not in {line}");
    }
    assert!(!logs.contains("panicked"), "{logs}");

    // The repaired WAL takes new pushes and replays cleanly after another kill.
    push(&strata, base, PUSHES).await;
    drop(strata);
    let strata = Strata::start_all_in(data.path()).await;
    let logs = strata.process.logs();
    assert!(!logs.contains("torn or corrupt"), "{logs}");
    let got = stored(&strata, base).await;
    let want: BTreeMap<String, Vec<(i64, f64)>> = (0..SERIES)
        .map(|s| {
            let mut v: Vec<(i64, f64)> = (0..PUSHES - 1).map(|i| (i, i as f64)).collect();
            v.push((PUSHES, PUSHES as f64));
            (format!("s{s}"), v)
        })
        .collect();
    assert_eq!(got, want, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_last_record_is_dropped_and_the_rest_kept() {
    damaged_tail_is_dropped(Damage::Truncate(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_last_record_is_dropped_and_the_rest_kept() {
    damaged_tail_is_dropped(Damage::FlipByte).await;
}
