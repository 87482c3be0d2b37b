//! `strata -config.verify` through the real binary: it exits 0 for a config
//! the process can start with, and non-zero naming the key for one a
//! component would refuse at start (issue 13: a querier config that
//! `Querier::new` refuses used to pass).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn verify(yaml: &str, flags: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.yaml");
    std::fs::write(&path, yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("-config.verify")
        .arg(format!("-config.file={}", path.display()))
        .args(flags)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_querier_config_the_querier_refuses_is_refused() {
    let gap = "querier:\n  query_ingesters_within: 1h\n  query_store_after: 2h\n";
    for flags in [&[][..], &["-target=querier"][..]] {
        let out = verify(gap, flags);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.starts_with("strata: querier.query_store_after: must be less than"),
            "{flags:?}: {stderr}"
        );
    }
    // An ingester never builds a querier.
    let out = verify(gap, &["-target=ingester"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "config is valid (target ingester)\n");
}

#[test]
fn flags_are_verified_with_the_file() {
    let out = verify("querier:\n  timeout: 30s\n", &["-querier.timeout=0s"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("querier.timeout: must be greater than 0s"),
        "{stderr}"
    );
    let out = verify("querier:\n  timeout: 30s\n", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
