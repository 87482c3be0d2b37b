//! WAL first (issue 21): with the WAL's file system full, a push the
//! ingester cannot log is refused and leaves no trace: no query ever returns
//! one of its samples, before or after a kill -9. The ingester is not ready
//! while it cannot log and counts the failures; once space is freed, pushes
//! succeed again without a restart. Every acknowledged sample survives the
//! kill.
//!
//! The WAL lives on a small tmpfs this test mounts (the test runs as root, as
//! `.ci/run` does), filled to a few hundred KiB with a ballast file.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use strata_integration::{eventually, get_json, now_ms, push_raw, Strata};

const TENANT: &str = "full-disk";
const SAMPLES_PER_PUSH: i64 = 200;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system of `path` but for about `leave` bytes.
fn fill_but(path: &Path, leave: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    // A failed write may have written part of the chunk: cut back to a
    // known size, then free `leave` more.
    f.set_len(written.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}

fn flags(tsdb: &Path, blocks: &Path) -> Vec<String> {
    vec![
        "-target=all".to_string(),
        format!("-blocks_storage.tsdb.dir={}", tsdb.display()),
        format!("-blocks_storage.filesystem.dir={}", blocks.display()),
    ]
}

/// One push: `SAMPLES_PER_PUSH` samples of the series `full_disk{push="i"}`.
fn body(i: usize, base: i64) -> Vec<u8> {
    let label = i.to_string();
    let labels = [("__name__", "full_disk"), ("push", label.as_str())];
    let samples: Vec<(i64, f64)> = (0..SAMPLES_PER_PUSH)
        .map(|k| (base + k * 1000, i as f64))
        .collect();
    strata_integration::encode_write_request(&strata_integration::write_request(&[(
        &labels[..],
        &samples[..],
    )]))
}

/// The pushes whose samples a query returns, each with its sample count.
async fn stored(strata: &Strata, at_ms: i64) -> Vec<(usize, usize)> {
    let url = format!(
        "{}?query=full_disk%5B1h%5D&time={}",
        strata.url("/prometheus/api/v1/query"),
        at_ms as f64 / 1000.0
    );
    let (status, json) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{json}");
    let mut out: Vec<(usize, usize)> = json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let push: usize = s["metric"]["push"].as_str().unwrap().parse().unwrap();
            (push, s["values"].as_array().unwrap().len())
        })
        .collect();
    out.sort_unstable();
    out
}

async fn ready(strata: &Strata) -> (u16, String) {
    let resp = reqwest::get(strata.url("/ready")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn wal_write_failures(strata: &Strata) -> f64 {
    let text = reqwest::get(strata.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("strata_ingester_wal_write_failures_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wal_disk_refuses_pushes_without_a_trace_and_recovers_without_a_restart() {
    let fs = Tmpfs::mount("16m");
    let tsdb: PathBuf = fs.path().join("tsdb");
    let blocks = tempfile::tempdir().unwrap();
    let flags = flags(&tsdb, blocks.path());
    let strata = Strata::start_with_flags(&flags).await;
    let ballast = fs.path().join("ballast");
    fill_but(&ballast, 384 << 10);

    let base = (now_ms() - 10 * 60_000) / 1000 * 1000;
    let push_url = strata.url("/api/v1/push");
    let mut acked = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut i = 0;
    while refused.len() < 20 {
        assert!(i < 5000, "the WAL never ran out of space: {acked:?}");
        let (status, text) = push_raw(&push_url, Some(TENANT), body(i, base)).await;
        match status {
            200..=299 => {
                acked.insert(i);
            }
            500..=599 => {
                assert!(text.contains("WAL"), "{status} {text}");
                refused.insert(i);
            }
            _ => panic!("push {i}: {status} {text}"),
        }
        i += 1;
    }
    assert!(acked.len() >= 10, "{} pushes acknowledged", acked.len());

    // Not ready while it cannot log, and counted.
    let (status, text) = ready(&strata).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("WAL"), "{text}");
    assert!(wal_write_failures(&strata).await >= refused.len() as f64);

    // Only what was acknowledged is visible, each push whole.
    let at = base + SAMPLES_PER_PUSH * 1000;
    let want: Vec<(usize, usize)> = acked
        .iter()
        .map(|&p| (p, SAMPLES_PER_PUSH as usize))
        .collect();
    assert_eq!(stored(&strata, at).await, want, "refused: {refused:?}");

    // Space comes back: pushes succeed again, and the ingester is ready.
    std::fs::remove_file(&ballast).unwrap();
    let (status, text) = push_raw(&push_url, Some(TENANT), body(i, base)).await;
    assert!((200..300).contains(&status), "{status} {text}");
    acked.insert(i);
    eventually("ready again", Duration::from_secs(10), || async {
        (ready(&strata).await.0 == 200).then_some(())
    })
    .await;

    // kill -9: the acknowledged pushes come back, the refused ones never.
    drop(strata);
    let strata = Strata::start_with_flags(&flags).await;
    let want: Vec<(usize, usize)> = acked
        .iter()
        .map(|&p| (p, SAMPLES_PER_PUSH as usize))
        .collect();
    assert_eq!(stored(&strata, at).await, want, "{}", strata.process.logs());
}
