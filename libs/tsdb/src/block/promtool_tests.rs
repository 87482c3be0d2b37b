//! Byte-exact compatibility with Prometheus: `promtool` (2.42+) reads the blocks
//! we write, and we read the blocks it writes. CI installs Prometheus's Debian
//! package; a missing `promtool` fails these tests (set `PROMTOOL` to use
//! another binary).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use strata_model::{Label, Labels};

use super::tests::{expected, gen_series, head_from, Rng, HOUR, T0};
use super::*;

fn promtool(args: &[&str]) -> Output {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    let out = Command::new(&bin).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{bin}` ({e}): these tests need Prometheus's promtool \
             (Debian: `apt-get install prometheus`) or PROMTOOL=/path/to/promtool"
        )
    });
    assert!(
        out.status.success(),
        "promtool {args:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Parses a Go `strconv.Quote`d string at the start of `s` (which starts with
/// `"`); returns it and the rest.
fn unquote(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "not quoted: {s}");
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => {
                let (_, e) = chars.next().unwrap();
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).map(|_| chars.next().unwrap().1).collect();
                        let code = u32::from_str_radix(&hex, 16).unwrap();
                        out.push(char::from_u32(code).unwrap());
                    }
                    other => panic!("unexpected escape \\{other} in {s}"),
                }
            }
            c => out.push(c),
        }
    }
    panic!("unterminated string: {s}")
}

/// Parses `promtool tsdb dump` lines: `{a="b", c="d"} value timestamp`.
fn parse_dump(out: &str) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let mut series: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let mut rest = line
            .strip_prefix('{')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let mut labels = Vec::new();
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').unwrap_or_else(|| panic!("bad line {line}"));
            let name = rest[..eq].to_string();
            let (value, r) = unquote(&rest[eq + 1..]);
            labels.push(Label::new(name, value));
            rest = r;
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or_else(|| panic!("no value: {line}"));
        let ts: i64 = fields.next().unwrap().parse().unwrap();
        assert!(fields.next().is_none(), "trailing fields: {line}");
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("value {v:?}: {e}")),
        };
        series
            .entry(Labels::new(labels))
            .or_default()
            .push((ts, value.to_bits()));
    }
    series
}

/// Writes a block of 300 generated series restricted to `[mint, maxt)`; returns
/// its meta and the samples it must hold.
fn write(
    dir: &Path,
    mint: i64,
    maxt: i64,
    seed: u64,
    options: BlockOptions,
) -> (BlockMeta, BTreeMap<Labels, Vec<(i64, u64)>>) {
    let series = gen_series(300, seed, false);
    let head = head_from(&series);
    let meta = BlockWriter::new(options)
        .write_head(dir, &head, mint, maxt)
        .unwrap()
        .unwrap();
    (meta, expected(&series, mint, maxt))
}

#[test]
fn promtool_analyzes_our_block() {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, want) = write(tmp.path(), T0, T0 + 2 * HOUR, 11, BlockOptions::default());
    let db = tmp.path().to_str().unwrap();
    let id = meta.ulid.to_string();
    let out = promtool(&["tsdb", "analyze", db, &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("Block ID: {id}")), "{text}");
    assert!(
        text.contains(&format!("\nSeries: {}\n", want.len())),
        "{text}"
    );
    assert!(text.contains("Label names: "), "{text}");
    let out = promtool(&["tsdb", "analyze", "--extended", db, &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Compaction analysis"), "{text}");
    assert!(text.contains("Fullness"), "{text}");
    // promtool may add files of its own (lock, wal); our block must still open.
    BlockReader::open(&tmp.path().join(&id)).unwrap();
}

#[test]
fn promtool_dumps_exactly_our_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let (mint, maxt) = (T0 + 1234, T0 + 2 * HOUR - 999);
    // Small segments, so chunk references into later segments are checked too.
    let options = BlockOptions {
        segment_size: 32 << 10,
        tenant: Some("tenant-1".to_string()),
        ..BlockOptions::default()
    };
    let (meta, want) = write(tmp.path(), mint, maxt, 12, options);
    let segments = meta.thanos.as_ref().map_or(0, |t| t.segment_files.len());
    assert!(segments > 3, "{segments} segments");
    let out = promtool(&[
        "tsdb",
        "dump",
        &format!("--min-time={mint}"),
        &format!("--max-time={}", maxt - 1),
        tmp.path().to_str().unwrap(),
    ]);
    let got = parse_dump(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(got.len(), want.len());
    for (labels, samples) in &want {
        assert_eq!(got.get(labels), Some(samples), "series {labels}");
    }
    assert_eq!(got, want);
}

#[test]
fn we_read_blocks_promtool_creates() {
    let mut rng = Rng::new(13);
    let mut text = String::new();
    let mut want: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    for family in ["room_temperature_celsius", "queue_depth"] {
        writeln!(text, "# HELP {family} A gauge.").unwrap();
        writeln!(text, "# TYPE {family} gauge").unwrap();
        for s in 0..25 {
            let site = ["ams", "fra", "nyc"][s % 3];
            let labels = Labels::from_pairs([
                ("__name__", family.to_string()),
                ("site", site.to_string()),
                ("id", format!("{s}")),
            ]);
            // Three and a half hours: promtool cuts several 2h-aligned blocks.
            let mut t = T0 + rng.below(60_000) as i64;
            let mut v = (rng.below(10_000) as f64) / 16.0;
            while t < T0 + 3 * HOUR + HOUR / 2 {
                writeln!(
                    text,
                    "{family}{{site=\"{site}\",id=\"{s}\"}} {v} {}.{:03}",
                    t / 1000,
                    t % 1000
                )
                .unwrap();
                want.entry(labels.clone())
                    .or_default()
                    .push((t, v.to_bits()));
                t += 30_000 + rng.below(100) as i64;
                v += (rng.below(2000) as f64 - 1000.0) / 7.0;
            }
        }
    }
    text.push_str("# EOF\n");
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.om");
    std::fs::write(&input, text).unwrap();
    let out_dir = tmp.path().join("blocks");
    std::fs::create_dir(&out_dir).unwrap();
    promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        input.to_str().unwrap(),
        out_dir.to_str().unwrap(),
    ]);

    let mut got: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    let mut blocks = 0;
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.join("meta.json").exists() {
            continue;
        }
        blocks += 1;
        let block = BlockReader::open(&path).unwrap();
        let meta = block.meta();
        for s in block.select(&[], i64::MIN, i64::MAX).unwrap() {
            for c in &s.chunks {
                assert!(c.min_time >= meta.min_time && c.max_time < meta.max_time);
            }
            got.entry(s.labels.clone())
                .or_default()
                .extend(super::tests::decoded(&[s]).into_values().flatten());
        }
        // Matchers work on Prometheus's postings too.
        let m = strata_model::Matcher::equal("site", "fra");
        for s in block.select(&[m], i64::MIN, i64::MAX).unwrap() {
            assert_eq!(s.labels.get("site"), Some("fra"));
        }
    }
    assert!(blocks >= 2, "expected several blocks, found {blocks}");
    for samples in got.values_mut() {
        samples.sort_unstable();
    }
    assert_eq!(got, want);
}
