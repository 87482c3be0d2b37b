//! Hostile PromQL: random strings and mutated valid queries must never panic the
//! engine (parser, planner or evaluator); a string that does not parse must be a
//! `QueryError::Parse` (HTTP 400 `bad_data` in the querier).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use strata_model::{Labels, Sample};
use strata_promql::{Engine, EngineOptions, MemoryStorage, QueryError};

const SEEDS: &[&str] = &[
    "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m])))",
    "max_over_time(deriv(g[5m])[10m:1m] offset 1m)",
    "a / on(job) group_left(x) b",
    "topk(3, g) or bottomk(2, g) unless c",
    "label_replace(g, \"dst\", \"$1\", \"job\", \"(.*)\")",
    "count_values(\"v\", g) > bool 1",
    "quantile(0.5, g @ end()) * scalar(vector(time()))",
    "{__name__=~\"g|c\", job!=\"\"}[1m]",
    "absent_over_time(nope[1h]) + -1e3 ^ 2 % 7",
    "sort_by_label(g, \"job\")",
    "limitk(2, g)",
    "clamp(g, -Inf, NaN)",
    "g[5m:1s] @ start()",
];

const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "`",
    "=~",
    "!~",
    "!=",
    "=",
    "@",
    ":",
    "[1s:1ms]",
    "offset",
    "-",
    "+",
    "*",
    "/",
    "^",
    "%",
    " by ",
    " without ",
    " on",
    " ignoring",
    " bool ",
    " group_left",
    " group_right",
    " and ",
    " or ",
    " unless ",
    "sum",
    "rate",
    "topk",
    "histogram_quantile",
    "label_replace",
    "time()",
    "0",
    "-1",
    "1e308",
    "1e-308",
    "NaN",
    "Inf",
    "0x1f",
    "5m",
    "1y",
    "999999999999999999999d",
    "1ms",
    "\\",
    "\u{0}",
    "ä",
    "\n",
    "#",
    "start()",
    "end()",
    "g",
    "c",
    "__name__",
    "le",
];

fn storage() -> MemoryStorage {
    let mut s = MemoryStorage::new();
    for (i, name) in ["g", "c", "lat_bucket", "http_requests_total"]
        .iter()
        .enumerate()
    {
        for j in 0..3 {
            let labels = Labels::from_pairs([
                ("__name__", name.to_string()),
                ("job", format!("j{j}")),
                ("code", format!("{}00", j + 2)),
                ("le", ["0.1", "1", "+Inf"][j].to_string()),
            ]);
            for k in 0..40i64 {
                s.add_sample(
                    &labels,
                    Sample::new(k * 15_000 + i as i64, (k * (j as i64 + 1)) as f64),
                );
            }
        }
    }
    s
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        max_samples: 200_000,
        timeout: Duration::from_secs(2),
        ..EngineOptions::default()
    })
}

/// Runs `q` as an instant and as a range query and checks the outcome.
fn check(rt: &tokio::runtime::Runtime, s: &MemoryStorage, e: &Engine, q: &str) {
    // The engine's parser: within the shape limits (a deeper text would
    // overflow the third-party parser's checks on this test's stack too).
    let parses = strata_promql::parse_query(q, &e.options().shape).is_ok();
    let results = rt.block_on(async {
        [
            e.instant_query(s, q, 300_000).await,
            e.range_query(s, q, 0, 600_000, 60_000).await,
            e.range_query(s, q, -1_000, i64::MAX / 2, i64::MAX / 4)
                .await,
            e.range_query(s, q, i64::MIN, i64::MAX, i64::MAX).await,
        ]
    });
    for r in results {
        match r {
            Err(QueryError::Parse(_) | QueryError::ShapeLimit { .. }) => {}
            Err(err) if !parses => panic!("{q:?} does not parse, yet the error is {err:?}"),
            Err(QueryError::Execution(m)) => {
                assert!(!m.contains("panicked"), "{q:?}: {m}");
            }
            Err(QueryError::Internal(m)) => panic!("{q:?}: {m}"),
            _ => {}
        }
    }
}

fn mutate(seed: &str, ops: &[(u8, usize, usize)]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for &(op, pos, tok) in ops {
        let at = if chars.is_empty() {
            0
        } else {
            pos % (chars.len() + 1)
        };
        match op % 4 {
            0 => {
                let t: Vec<char> = TOKENS[tok % TOKENS.len()].chars().collect();
                chars.splice(at..at, t);
            }
            1 => {
                let end = (at + tok % 5).min(chars.len());
                chars.drain(at..end);
            }
            2 => {
                let end = (at + tok % 8).min(chars.len());
                let copy: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, copy);
            }
            _ => {
                if at + 1 < chars.len() {
                    chars.swap(at, at + 1);
                }
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_strings_never_panic(q in "[a-z_{}()\\[\\]=~!\"0-9.,:+*/^%@ <>-]{0,48}") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        check(&rt, &storage(), &engine(), &q);
    }

    #[test]
    fn mutated_queries_never_panic(
        seed in 0..SEEDS.len(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..5),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let q = mutate(SEEDS[seed], &ops);
        check(&rt, &storage(), &engine(), &q);
    }
}

#[test]
fn seeds_and_token_soup_never_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (s, e) = (storage(), engine());
    for q in SEEDS {
        check(&rt, &s, &e, q);
    }
    for t in TOKENS {
        check(&rt, &s, &e, t);
        check(&rt, &s, &e, &t.repeat(3));
    }
    check(&rt, &s, &e, &"(".repeat(10_000));
    check(&rt, &s, &e, &format!("{}1{}", "-".repeat(5_000), ""));
    check(&rt, &s, &e, &"sum(".repeat(2_000));
}
