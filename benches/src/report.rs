//! Turns the JSON lines that `push`, `query` and `compare` print (tagged with
//! system, workload and run) into the Markdown tables of docs/benchmarks.md:
//! per workload and system the median over runs, with the min–max range; the
//! ratios of each Strata variant to each other system; and whether each
//! system's query answers matched Prometheus's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// The text of a results file; when its name ends in `.gz` (the raw results
/// kept in the repository under benches/results/), what `gzip -dc` makes of
/// it (no compression library in the generator for one command).
pub(crate) fn read_lines(path: &str) -> Result<String, String> {
    if !path.ends_with(".gz") {
        return std::fs::read_to_string(path).map_err(|e| e.to_string());
    }
    let out = std::process::Command::new("gzip")
        .args(["-dc", "--", path])
        .output()
        .map_err(|e| format!("gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gzip -dc: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// One figure over several runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

impl Spread {
    pub(crate) fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }

    /// "median (min–max)", or just the value for a single run.
    fn cell(&self, fmt: fn(f64) -> String) -> String {
        if self.n == 1 || self.min == self.max {
            fmt(self.median)
        } else {
            format!("{} ({}–{})", fmt(self.median), fmt(self.min), fmt(self.max))
        }
    }
}

fn fixed2(x: f64) -> String {
    format!("{x:.2}")
}

/// Whole number with thousands separators.
fn whole(x: f64) -> String {
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn mib(x: f64) -> String {
    format!("{:.0} MiB", x / (1024.0 * 1024.0))
}

fn ms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// The order systems appear in: as first seen in the results.
fn ordered<'a>(records: impl Iterator<Item = &'a Value>, key: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for r in records {
        if let Some(s) = r[key].as_str() {
            if !seen.iter().any(|x| x == s) {
                seen.push(s.to_string());
            }
        }
    }
    seen
}

/// The Markdown tables for `lines` (one JSON object a line; others are skipped).
pub(crate) fn render(lines: &str) -> String {
    let records: Vec<Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.is_object())
        .collect();
    let pushes: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("samples_sent").is_some())
        .collect();
    let queries: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("queries").is_some())
        .collect();
    let checks: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("checks").is_some())
        .collect();
    let mut out = String::new();

    let systems = ordered(pushes.iter().copied(), "system");
    let workloads = ordered(pushes.iter().copied(), "workload");
    if !pushes.is_empty() {
        out.push_str(
            "| workload | system | runs | CPU µs/sample | CPU s | samples/s | RSS B/active series | peak RSS | push p50 ms | push p99 ms | samples accepted / sent | non-2xx requests | generator CPU µs/sample |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for w in &workloads {
            for s in &systems {
                let runs: Vec<&Value> = pushes
                    .iter()
                    .copied()
                    .filter(|r| {
                        r["workload"].as_str() == Some(w) && r["system"].as_str() == Some(s)
                    })
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let col = |key: &str, fmt: fn(f64) -> String| {
                    let v: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
                    Spread::of(&v)
                        .map(|s| s.cell(fmt))
                        .unwrap_or_else(|| "–".into())
                };
                let accepted: f64 = runs
                    .iter()
                    .filter_map(|r| r["samples_accepted"].as_f64())
                    .sum();
                let sent: f64 = runs.iter().filter_map(|r| r["samples_sent"].as_f64()).sum();
                let mut failed = 0u64;
                let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
                for r in &runs {
                    if let Some(m) = r["requests_by_status"].as_object() {
                        for (status, n) in m {
                            let n = n.as_u64().unwrap_or(0);
                            if !status.starts_with('2') {
                                failed += n;
                                *by_status.entry(status.clone()).or_default() += n;
                            }
                        }
                    }
                }
                let failed = if failed == 0 {
                    "0".to_string()
                } else {
                    let parts: Vec<String> =
                        by_status.iter().map(|(s, n)| format!("{n}× {s}")).collect();
                    parts.join(", ")
                };
                let _ = writeln!(
                    out,
                    "| {w} | {s} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {failed} | {} |",
                    runs.len(),
                    col("cpu_us_per_sample", fixed2),
                    col("target_cpu_seconds", fixed2),
                    col("samples_per_second", whole),
                    col("rss_bytes_per_series", whole),
                    col("peak_rss_bytes", mib),
                    col("latency_p50_ms", ms),
                    col("latency_p99_ms", ms),
                    whole(accepted),
                    whole(sent),
                    col("generator_cpu_us_per_sample", fixed2),
                );
            }
        }
    }

    out.push_str(&ratios(&pushes, &workloads, &systems));

    if !queries.is_empty() {
        let qsystems = ordered(queries.iter().copied(), "system");
        // query -> system -> per-run medians, and the series counts seen.
        let mut order: Vec<String> = Vec::new();
        let mut times: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        let mut series: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        let mut errors: BTreeMap<(String, String), String> = BTreeMap::new();
        for r in &queries {
            let Some(system) = r["system"].as_str() else {
                continue;
            };
            for q in r["queries"].as_array().into_iter().flatten() {
                let Some(text) = q["query"].as_str() else {
                    continue;
                };
                if !order.iter().any(|x| x == text) {
                    order.push(text.to_string());
                }
                let key = (text.to_string(), system.to_string());
                if let Some(e) = q["error"].as_str() {
                    errors.entry(key.clone()).or_insert_with(|| e.to_string());
                }
                if let Some(m) = q["median_ms"].as_f64() {
                    times.entry(key.clone()).or_default().push(m);
                }
                if let Some(n) = q["series"].as_u64() {
                    series.entry(key).or_default().push(n);
                }
            }
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("| # | query (Q, over the W1 window, step 15 s) |");
        for s in &qsystems {
            let _ = write!(out, " {s} ms [series] |");
        }
        out.push_str("\n|---|---|");
        for _ in &qsystems {
            out.push_str("---|");
        }
        out.push('\n');
        for (i, q) in order.iter().enumerate() {
            let _ = write!(out, "| Q{} | `{}` |", i + 1, q.replace('|', "\\|"));
            for s in &qsystems {
                let key = (q.clone(), s.clone());
                let cell = if let Some(e) = errors.get(&key) {
                    let mut e = e.replace('|', "/").replace('\n', " ");
                    e.truncate(60);
                    format!("error: {e}")
                } else {
                    let t = times
                        .get(&key)
                        .and_then(|v| Spread::of(v))
                        .map(|sp| sp.cell(ms))
                        .unwrap_or_else(|| "–".into());
                    let n = series
                        .get(&key)
                        .and_then(|v| v.last().copied())
                        .map(|n| format!(" [{n}]"))
                        .unwrap_or_default();
                    format!("{t}{n}")
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
    }
    out.push_str(&answer_checks(&checks));
    out
}

/// Median of `key` over the pushes of workload `w` by system `s`.
fn median_of(pushes: &[&Value], w: &str, s: &str, key: &str) -> Option<f64> {
    let v: Vec<f64> = pushes
        .iter()
        .filter(|r| r["workload"].as_str() == Some(w) && r["system"].as_str() == Some(s))
        .filter_map(|r| r[key].as_f64())
        .collect();
    Spread::of(&v).map(|s| s.median)
}

/// Each Strata variant (a system named `strata…`) against each other system:
/// the ratios of the medians (below 1: Strata uses less, or is slower for
/// samples/s).
fn ratios(pushes: &[&Value], workloads: &[String], systems: &[String]) -> String {
    let ours: Vec<&String> = systems.iter().filter(|s| s.starts_with("strata")).collect();
    let theirs: Vec<&String> = systems
        .iter()
        .filter(|s| !s.starts_with("strata"))
        .collect();
    let mut out = String::new();
    let figures = [
        ("cpu_us_per_sample", "CPU/sample"),
        ("rss_bytes_per_series", "RSS/series"),
        ("samples_per_second", "samples/s"),
    ];
    for w in workloads {
        for a in &ours {
            for b in &theirs {
                let cells: Vec<String> = figures
                    .iter()
                    .map(|(key, _)| {
                        match (median_of(pushes, w, a, key), median_of(pushes, w, b, key)) {
                            (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
                            _ => "–".to_string(),
                        }
                    })
                    .collect();
                if cells.iter().all(|c| c == "–") {
                    continue;
                }
                if out.is_empty() {
                    out.push_str("\n| workload | ratio of medians |");
                    for (_, label) in &figures {
                        let _ = write!(out, " {label} |");
                    }
                    out.push_str("\n|---|---|");
                    for _ in &figures {
                        out.push_str("---|");
                    }
                    out.push('\n');
                }
                let _ = writeln!(out, "| {w} | {a} ÷ {b} | {} |", cells.join(" | "));
            }
        }
    }
    out
}

/// The table of `compare` results: per query and system, whether the answers
/// matched the reference's in every run, and what was compared.
fn answer_checks(records: &[&Value]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let systems = ordered(records.iter().copied(), "system");
    let reference = records
        .iter()
        .find_map(|r| r["reference"].as_str())
        .unwrap_or("the reference")
        .to_string();
    let tolerance = records
        .iter()
        .find_map(|r| r["tolerance"].as_f64())
        .unwrap_or(0.0);
    // (query, system) -> (runs, runs that differed, points, differences, max rel diff, first example)
    type Tally = (usize, usize, u64, u64, f64, Option<String>);
    let mut order: Vec<String> = Vec::new();
    let mut tally: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for r in records {
        let system = r["system"].as_str().unwrap_or("").to_string();
        for c in r["checks"].as_array().into_iter().flatten() {
            let q = c["query"].as_str().unwrap_or("").to_string();
            if !order.contains(&q) {
                order.push(q.clone());
            }
            let t = tally.entry((q, system.clone())).or_default();
            let diffs = c["differences"].as_u64().unwrap_or(1);
            t.0 += 1;
            t.1 += usize::from(diffs > 0);
            t.2 += c["points"].as_u64().unwrap_or(0);
            t.3 += diffs;
            t.4 = t.4.max(c["max_rel_diff"].as_f64().unwrap_or(0.0));
            if t.5.is_none() {
                t.5 = c["examples"][0].as_str().map(str::to_string);
            }
        }
    }
    let mut out =
        format!("\n| # | answers against {reference}'s (relative tolerance {tolerance:e}) |");
    for s in &systems {
        let _ = write!(out, " {s} |");
    }
    out.push_str("\n|---|---|");
    for _ in &systems {
        out.push_str("---|");
    }
    out.push('\n');
    for (i, q) in order.iter().enumerate() {
        let _ = write!(out, "| Q{} | `{}` |", i + 1, q.replace('|', "\\|"));
        for s in &systems {
            let cell = match tally.get(&(q.clone(), s.clone())) {
                None => "–".to_string(),
                Some((runs, 0, points, _, max_rel, _)) => {
                    format!("equal, {runs} run(s), {points} points (max rel. diff {max_rel:.1e})")
                }
                Some((runs, bad, points, diffs, _, example)) => {
                    let mut e = example.clone().unwrap_or_default().replace('|', "/");
                    if e.chars().count() > 80 {
                        e = e.chars().take(80).collect::<String>() + "…";
                    }
                    format!("**DIFFERS** in {bad} of {runs} run(s): {diffs} difference(s), {points} points compared; e.g. {e}")
                }
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of(&[]).is_none());
        assert_eq!(whole(1234567.4), "1,234,567");
        assert_eq!(whole(999.0), "999");
    }

    #[test]
    fn renders_pushes_and_queries() {
        let lines = r#"
{"system":"strata","workload":"W1","run":1,"samples_sent":100,"samples_accepted":100,"requests_by_status":{"200":1},"cpu_us_per_sample":2.0,"samples_per_second":1000.0,"rss_bytes_per_series":900.0,"peak_rss_bytes":1048576,"latency_p50_ms":1.0,"latency_p99_ms":2.0}
{"system":"strata","workload":"W1","run":2,"samples_sent":100,"samples_accepted":90,"requests_by_status":{"200":1,"429":1},"cpu_us_per_sample":4.0,"samples_per_second":3000.0,"rss_bytes_per_series":1100.0,"peak_rss_bytes":1048576,"latency_p50_ms":1.0,"latency_p99_ms":2.0}
not json
{"system":"strata","workload":"W1","run":1,"queries":[{"query":"up","median_ms":5.0,"series":3,"error":null}]}
{"system":"prometheus","workload":"W1","run":1,"queries":[{"query":"up","median_ms":7.0,"series":3,"error":null}]}
"#;
        let t = render(lines);
        assert!(
            t.contains("| W1 | strata | 2 | 3.00 (2.00–4.00) | – | 2,000 (1,000–3,000) | 1,000 (900–1,100) | 1 MiB |"),
            "{t}"
        );
        assert!(t.contains("| 190 / 200 | 1× 429 | – |"), "{t}");
        assert!(t.contains("| Q1 | `up` | 5.00 [3] | 7.00 [3] |"), "{t}");
    }

    #[test]
    fn renders_ratios_and_answer_checks() {
        let lines = r#"
{"system":"strata","workload":"W1","run":1,"samples_sent":100,"samples_accepted":100,"cpu_us_per_sample":2.0,"target_cpu_seconds":0.5,"rss_bytes_per_series":1000.0,"samples_per_second":400.0}
{"system":"prometheus","workload":"W1","run":1,"samples_sent":100,"samples_accepted":100,"cpu_us_per_sample":8.0,"target_cpu_seconds":2.0,"rss_bytes_per_series":4000.0,"samples_per_second":100.0}
{"system":"strata","run":1,"reference":"prometheus","tolerance":1e-9,"checks":[{"query":"up","points":61,"differences":0,"max_rel_diff":0.0},{"query":"down","points":61,"differences":2,"examples":["{a=\"1\"} at +15s: 2 where the reference has 1"]}]}
{"system":"strata","run":2,"reference":"prometheus","tolerance":1e-9,"checks":[{"query":"up","points":61,"differences":0,"max_rel_diff":2e-16},{"query":"down","points":61,"differences":0}]}
"#;
        let t = render(lines);
        assert!(t.contains("| W1 | strata | 1 | 2.00 | 0.50 |"), "{t}");
        assert!(
            t.contains("| W1 | strata ÷ prometheus | 0.25 | 0.25 | 4.00 |"),
            "{t}"
        );
        assert!(
            t.contains("answers against prometheus's (relative tolerance 1e-9)"),
            "{t}"
        );
        assert!(
            t.contains("| Q1 | `up` | equal, 2 run(s), 122 points (max rel. diff 2.0e-16) |"),
            "{t}"
        );
        assert!(t.contains("| Q2 | `down` | **DIFFERS** in 1 of 2 run(s): 2 difference(s), 122 points compared; e.g. {a=\"1\"} at +15s"), "{t}");
    }

    #[test]
    fn reads_gzipped_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "{\"a\":1}\n").unwrap();
        let status = std::process::Command::new("gzip")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let gz = dir.path().join("r.jsonl.gz");
        assert_eq!(read_lines(gz.to_str().unwrap()).unwrap(), "{\"a\":1}\n");
        assert!(
            read_lines(path.to_str().unwrap()).is_err(),
            "gzip replaced it"
        );
    }
}
