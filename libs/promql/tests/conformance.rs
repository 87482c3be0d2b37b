//! Runs Prometheus's PromQL conformance corpus (promqltest scripts) against the
//! engine and reports passed/failed/unsupported per file and per feature group.
//!
//! The corpus is found through `STRATA_CONFORMANCE_DIR`, else
//! `<crate>/../../../shared/conformance/promql`. Without it the test fails,
//! naming where it looked. Failing evals do not fail the test; a drop of the stable
//! group's pass count below [`STABLE_PASS_FLOOR`] does. The full per-eval report is
//! written to `<target>/tmp/promql-conformance-report.txt`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use strata_promql::test_script::{run_script, Outcome};
use strata_promql::EngineOptions;

/// The stable group's measured pass count; raise it when the engine improves.
const STABLE_PASS_FLOOR: usize = 799;

/// Feature groups in reporting order; an eval belongs to the first group whose tag
/// it has, or to "stable" when it has none of them.
const GROUPS: &[(&str, &str)] = &[
    ("native_histograms", "native histograms"),
    ("start_timestamps", "start timestamps"),
    ("type_and_unit_labels", "type-and-unit labels"),
    ("extended_range_selectors", "extended range selectors"),
    ("fill_modifiers", "fill modifiers"),
    ("duration_expressions", "duration expressions"),
    ("experimental_functions", "experimental functions"),
    ("delayed_name_removal", "delayed name removal"),
];

fn corpus_dir() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> =
        match std::env::var_os("STRATA_CONFORMANCE_DIR") {
            Some(d) => vec![PathBuf::from(d)],
            None => vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/conformance/promql")],
        };
    for c in &candidates {
        if c.join("evals-manifest.tsv").is_file() {
            return Some(c.clone());
        }
    }
    eprintln!("==========================================================================");
    eprintln!("PromQL conformance corpus NOT FOUND; looked in: {candidates:?}");
    eprintln!("Set STRATA_CONFORMANCE_DIR to the directory with the .test files.");
    eprintln!("==========================================================================");
    None
}

#[derive(Default, Clone, Copy)]
struct Tally {
    passed: usize,
    failed: usize,
    unsupported: usize,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed(_) => self.failed += 1,
            Outcome::Unsupported(_) => self.unsupported += 1,
        }
    }
    fn total(&self) -> usize {
        self.passed + self.failed + self.unsupported
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_conformance() {
    // A missing corpus fails the test: passing without running it would hide
    // exactly what this test is for.
    let dir = corpus_dir().expect("the PromQL conformance corpus is required (see above)");
    let manifest = std::fs::read_to_string(dir.join("evals-manifest.tsv")).unwrap();
    let mut tags: HashMap<(String, usize), Vec<String>> = HashMap::new();
    for l in manifest.lines().skip(1) {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() >= 4 {
            let t = f[3]
                .split(',')
                .filter(|t| *t != "-")
                .map(str::to_string)
                .collect();
            tags.insert((f[0].to_string(), f[1].parse().unwrap()), t);
        }
    }
    let group_of = |file: &str, line: usize| -> &'static str {
        let t = tags.get(&(file.to_string(), line));
        for (tag, name) in GROUPS {
            if t.is_some_and(|t| t.iter().any(|x| x == tag)) {
                return name;
            }
        }
        "stable"
    };

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();

    let opts = EngineOptions {
        lookback_delta_ms: 5 * 60 * 1000,
        max_samples: 50_000_000,
        timeout: std::time::Duration::from_secs(60),
        // The production defaults: real queries must pass them unchanged.
        shape: strata_promql::QueryShapeLimits::default(),
    };
    let mut report = String::new();
    let mut summary = String::new();
    let mut groups: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let results = match run_script(&text, &opts).await {
            Ok(r) => r,
            Err(e) => {
                writeln!(summary, "{name}: SCRIPT ERROR {e}").unwrap();
                continue;
            }
        };
        let mut file_tally = Tally::default();
        writeln!(report, "## {name}").unwrap();
        for r in &results {
            file_tally.add(&r.outcome);
            total.add(&r.outcome);
            let g = group_of(&name, r.line);
            groups.entry(g).or_default().add(&r.outcome);
            let status = match &r.outcome {
                Outcome::Passed => "PASS".to_string(),
                Outcome::Failed(why) => format!("FAIL {why}"),
                Outcome::Unsupported(why) => format!("UNSUPPORTED {why}"),
            };
            writeln!(report, "{name}:{} [{g}] {} => {status}", r.line, r.query).unwrap();
        }
        writeln!(
            summary,
            "{name}: {}/{} (failed {}, unsupported {})",
            file_tally.passed,
            file_tally.total(),
            file_tally.failed,
            file_tally.unsupported
        )
        .unwrap();
    }
    writeln!(summary, "\nper group: passed / failed / unsupported").unwrap();
    let mut order = vec!["stable"];
    order.extend(GROUPS.iter().map(|(_, n)| *n));
    for g in order {
        let t = groups.get(g).copied().unwrap_or_default();
        writeln!(
            summary,
            "  {g}: {} / {} / {} (of {})",
            t.passed,
            t.failed,
            t.unsupported,
            t.total()
        )
        .unwrap();
    }
    writeln!(
        summary,
        "total: {} / {} / {} (of {})",
        total.passed,
        total.failed,
        total.unsupported,
        total.total()
    )
    .unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("promql-conformance-report.txt");
    std::fs::write(&out, format!("{summary}\n{report}")).unwrap();
    println!("{summary}");
    println!("full report: {}", out.display());
    if std::env::var_os("STRATA_CONFORMANCE_VERBOSE").is_some() {
        println!("{report}");
    }
    let stable = groups.get("stable").copied().unwrap_or_default();
    assert!(
        stable.passed >= STABLE_PASS_FLOOR,
        "stable group regressed: {} passed, floor is {STABLE_PASS_FLOOR}",
        stable.passed
    );
}
