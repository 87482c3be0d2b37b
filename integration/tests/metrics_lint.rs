//! Every component's `/metrics` passes `promtool check metrics` (names, units,
//! `_total` on counters, help text), after a push and a query so that each
//! family has samples. Checked for `-target=all` and for separate distributor,
//! ingester, querier, store-gateway and compactor processes.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use strata_integration::{
    encode_write_request, eventually, get_json, now_ms, push_raw, require_program, write_request,
    Etcd, Strata,
};

/// Pipes `/metrics` of `process` into `promtool check metrics`; panics with
/// promtool's complaints when it exits non-zero.
async fn lint(promtool: &std::path::Path, what: &str, process: &Strata) {
    let text = process.metrics_text().await;
    assert!(!text.is_empty(), "{what}: /metrics is empty");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: promtool check metrics failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn samples_now() -> [(i64, f64); 1] {
    [(now_ms(), 1.0)]
}

/// Pushes one series through `distributor` until it is accepted, then queries
/// it back through `querier` until it is seen.
async fn push_and_query(distributor: &Strata, querier: &Strata) {
    let labels = [("__name__", "metrics_lint_total"), ("job", "lint")];
    eventually("a push to be accepted", Duration::from_secs(30), || async {
        let samples = [(now_ms(), 1.0)];
        let body = encode_write_request(&write_request(&[(&labels[..], &samples[..])]));
        let (status, _) = push_raw(&distributor.url("/api/v1/push"), Some("lint"), body).await;
        (status == 200).then_some(())
    })
    .await;
    eventually(
        "the pushed series to be queryable",
        Duration::from_secs(30),
        || async {
            let (status, body) = get_json(
                &querier.url("/prometheus/api/v1/query?query=metrics_lint_total"),
                Some("lint"),
            )
            .await;
            (status == 200
                && body["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_monolith_pass_promtool() {
    let promtool = require_program("promtool");
    let strata = Strata::start(&["-target=all"]).await;
    push_and_query(&strata, &strata).await;
    lint(&promtool, "-target=all", &strata).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_each_component_pass_promtool() {
    let promtool = require_program("promtool");
    let etcd = Etcd::start().await;
    let ring = etcd.ring_flags(1, 16);
    let start = |target: &'static str| {
        let mut args = ring.clone();
        args.push(format!("-target={target}"));
        async move { Strata::start_with_flags(&args).await }
    };
    let ingester = start("ingester").await;
    let distributor = start("distributor").await;
    let querier = start("querier").await;
    let store_gateway = start("store-gateway").await;
    let compactor = start("compactor").await;
    push_and_query(&distributor, &querier).await;
    let pass = reqwest::Client::new()
        .post(compactor.url("/compactor/run"))
        .send()
        .await
        .unwrap();
    assert!(pass.status().is_success());
    lint(&promtool, "distributor", &distributor).await;
    lint(&promtool, "ingester", &ingester).await;
    lint(&promtool, "querier", &querier).await;
    lint(&promtool, "store-gateway", &store_gateway).await;
    lint(&promtool, "compactor", &compactor).await;
}

/// The metric families named in `docs/alerts.yaml` (`strata_*` and `process_*`),
/// with histogram suffixes folded into the family name.
fn metrics_used_by_alerts(rules: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for expr_start in rules.match_indices("expr:").map(|(i, _)| i) {
        // An expression runs until the next key of the rule.
        let rest = &rules[expr_start..];
        let end = ["\n        for:", "\n        labels:"]
            .iter()
            .filter_map(|k| rest.find(k))
            .min()
            .unwrap_or(rest.len());
        let expr = &rest[..end];
        for (i, _) in expr.match_indices(['s', 'p']) {
            let word: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let boundary =
                i == 0 || !expr[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if boundary && (word.starts_with("strata_") || word.starts_with("process_")) {
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(&word);
                names.insert(family.to_string());
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_in_the_docs_pass_promtool_and_use_exported_metrics() {
    let promtool = require_program("promtool");
    let rules_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("docs/alerts.yaml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules {}: {}{}",
        rules_path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let used = metrics_used_by_alerts(&rules);
    assert!(
        used.len() >= 5,
        "too few metrics found in the alerts: {used:?}"
    );

    // A monolith that has pushed, rejected a sample, queried, flushed and
    // loaded a runtime config has a sample in every family the alerts use.
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime.yaml");
    std::fs::write(&runtime, "overrides: {}\n").unwrap();
    let runtime_flag = format!("-runtime_config.file={}", runtime.display());
    let strata = Strata::start(&[
        "-target=all",
        &runtime_flag,
        "-distributor.ha_tracker.enable_ha_tracker=true",
        "-limits.accept_ha_samples=true",
    ])
    .await;
    push_and_query(&strata, &strata).await;
    // A push of an HA pair's replica: the tracker's families get samples.
    let ha = [
        ("__name__", "lint_ha"),
        ("__replica__", "r1"),
        ("cluster", "c1"),
    ];
    let body = encode_write_request(&write_request(&[(&ha[..], &samples_now()[..])]));
    let (status, message) = push_raw(&strata.url("/api/v1/push"), Some("lint"), body).await;
    assert_eq!(status, 200, "{message}");
    lint(&promtool, "-target=all with the HA tracker", &strata).await;
    let bad = [("__name__", "bad metric name"), ("job", "lint")];
    let samples = [(now_ms(), 1.0)];
    let body = encode_write_request(&write_request(&[(&bad[..], &samples[..])]));
    let (status, _) = push_raw(&strata.url("/api/v1/push"), Some("lint"), body).await;
    assert_eq!(status, 400);
    let flushed = reqwest::Client::new()
        .post(strata.url("/ingester/flush"))
        .send()
        .await
        .unwrap();
    assert!(flushed.status().is_success());
    let text = strata.metrics_text().await;
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !exported.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/alerts.yaml uses metrics that -target=all does not export: {missing:?}\nexported: {exported:?}"
    );
}
