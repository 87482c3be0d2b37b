//! The series-major fast path for range queries must give exactly what the general
//! step-by-step evaluation gives: same series, same values bit for bit (NaN =
//! NaN), same errors and annotations.
//!
//! Agreement alone proves little when both paths fail the same way or both
//! return nothing, so every case also says what it is meant to give
//! ([`Expect`]): data (no error, at least one point: the default), nothing, or
//! an error; a case that gives anything else fails even when the two paths
//! agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_model::{Labels, Sample, STALE_NAN};
use strata_promql::{Engine, EngineOptions, FloatHistogram, MemoryStorage, QueryResult, Value};

fn storage() -> MemoryStorage {
    let mut s = MemoryStorage::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut unit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..40usize {
        let name = if i % 3 == 0 { "g" } else { "c_total" };
        let labels = Labels::from_pairs([
            ("__name__", name.to_string()),
            ("ns", format!("ns{}", i % 4)),
            ("pod", format!("p{i}")),
            ("job", format!("j{}", i % 2)),
        ]);
        // Series start and stop at different times; some have gaps, resets,
        // staleness markers, NaN and irregular intervals.
        let first = (i % 7) as i64 * 47_000;
        let last = 3_600_000 - (i % 5) as i64 * 310_000;
        let mut t = first;
        let mut v = unit() * 100.0;
        while t <= last {
            let r = unit();
            if r < 0.03 {
                v = 0.0; // counter reset
            } else {
                v += (unit() * 10.0).round();
            }
            let value = if r > 0.99 {
                STALE_NAN
            } else if r > 0.98 {
                f64::NAN
            } else if i % 3 == 0 {
                unit() * 50.0 - 25.0
            } else {
                v
            };
            if !(r > 0.6 && r < 0.64) {
                s.add_sample(&labels, Sample::new(t, value));
            }
            t += 10_000 + (unit() * 9_000.0) as i64;
        }
    }
    s
}

/// What a case is meant to give, on both paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No error and at least one point (float or histogram).
    Data,
    /// No error and no point.
    Empty,
    /// An error (the same on both paths).
    Error,
}

type Answer = Result<QueryResult, strata_promql::QueryError>;

/// The float and histogram points of a result.
fn points(r: &QueryResult) -> usize {
    let floats = match &r.value {
        Value::Matrix(m) => m.iter().map(|s| s.samples.len()).sum(),
        Value::Vector(v) => v.len(),
        Value::Scalar { .. } | Value::String { .. } => 1,
    };
    floats + r.histograms.iter().map(|h| h.samples.len()).sum::<usize>()
}

/// Whether `answer` is what `expect` says, else what it is instead.
fn check_expect(expect: Expect, answer: &Answer) -> Result<(), String> {
    match (expect, answer) {
        (Expect::Data, Ok(r)) if points(r) > 0 => Ok(()),
        (Expect::Empty, Ok(r)) if points(r) == 0 => Ok(()),
        (Expect::Error, Err(_)) => Ok(()),
        (_, Ok(r)) => Err(format!(
            "meant to give {expect:?}, gave {} point(s)",
            points(r)
        )),
        (_, Err(e)) => Err(format!("meant to give {expect:?}, failed: {e}")),
    }
}

fn same(
    a: &Result<QueryResult, strata_promql::QueryError>,
    b: &Result<QueryResult, strata_promql::QueryError>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            if a.warnings != b.warnings || a.infos != b.infos || a.histograms != b.histograms {
                return false;
            }
            match (&a.value, &b.value) {
                (Value::Matrix(x), Value::Matrix(y)) => {
                    x.len() == y.len()
                        && x.iter().zip(y).all(|(p, q)| {
                            p.labels == q.labels
                                && p.samples.len() == q.samples.len()
                                && p.samples.iter().zip(&q.samples).all(|(u, w)| {
                                    u.timestamp_ms == w.timestamp_ms
                                        && u.value.to_bits() == w.value.to_bits()
                                })
                        })
                }
                _ => a.value == b.value,
            }
        }
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

#[tokio::test]
async fn fast_path_matches_general_path() {
    let s = storage();
    let funcs = [
        "rate",
        "increase",
        "delta",
        "irate",
        "idelta",
        "deriv",
        "changes",
        "resets",
        "avg_over_time",
        "sum_over_time",
        "count_over_time",
        "present_over_time",
        "max_over_time",
        "min_over_time",
        "last_over_time",
        "first_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "mad_over_time",
        "ts_of_max_over_time",
    ];
    let mut inners: Vec<String> = vec![
        "c_total".into(),
        "g".into(),
        "{__name__=~\"c_total|g\"}".into(),
        "c_total offset 3m".into(),
    ];
    for f in funcs {
        inners.push(format!("{f}(c_total[5m])"));
        inners.push(format!("{f}(g[1m] offset 2m)"));
        inners.push(format!("{f}({{ns=\"ns1\"}}[3m])"));
    }
    let mut queries = Vec::new();
    for inner in &inners {
        queries.push(inner.clone());
        for agg in [
            "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
        ] {
            queries.push(format!("{agg} by (ns) ({inner})"));
        }
        queries.push(format!("sum without (pod) ({inner})"));
        queries.push(format!("sum by (__name__) ({inner})"));
        queries.push(format!("avg({inner})"));
    }
    // Every series has points in every range: each query returns data,
    // except where functions that drop the metric name (all here but
    // `last_over_time` and `first_over_time`) meet `sum by (__name__)` over
    // both names: with delayed name removal both groups end up as `{}`, and
    // Prometheus fails such a query.
    let keeps_name = ["last_over_time(", "first_over_time("];
    let compared = compare(&s, &queries, |q, _| {
        let both_names = q.contains("{ns=\"ns1\"}[");
        if q.starts_with("sum by (__name__) (")
            && both_names
            && !keeps_name.iter().any(|f| q.contains(f))
        {
            Expect::Error
        } else {
            Expect::Data
        }
    })
    .await;
    println!("compared {compared} range queries");
}

/// Both paths on `queries`, each over three ranges: equal answers, each what
/// `expect` says the query is meant to give over a range starting at
/// `start`. With a tight sample limit on one
/// of the ranges, both must give the same answer too (the same error, or equal
/// results), and the limit must make at least one query fail. Returns the
/// comparisons.
async fn compare(
    s: &MemoryStorage,
    queries: &[String],
    expect: impl Fn(&str, i64) -> Expect,
) -> usize {
    let fast = Engine::new(EngineOptions::default());
    let general = Engine::new(EngineOptions::default()).without_fast_path();
    let tight = EngineOptions {
        max_samples: 300,
        ..EngineOptions::default()
    };
    let fast_tight = Engine::new(tight.clone());
    let general_tight = Engine::new(tight).without_fast_path();
    let ranges = [
        (0, 3_600_000, 60_000),
        (123_456, 3_000_000, 17_000),
        (-600_000, 4_000_000, 300_000),
    ];
    let mut compared = 0;
    let mut over_limit = 0;
    for q in queries {
        for &(start, end, step) in &ranges {
            let want = expect(q, start);
            let a = fast.range_query(s, q, start, end, step).await;
            let b = general.range_query(s, q, start, end, step).await;
            assert!(
                same(&a, &b),
                "{q} {start}..{end}/{step}:\nfast {a:?}\ngeneral {b:?}"
            );
            if let Err(e) = check_expect(want, &a) {
                panic!("{q} {start}..{end}/{step}: {e}\nfast {a:?}");
            }
            compared += 1;
            if step != 300_000 {
                continue;
            }
            let a = fast_tight.range_query(s, q, start, end, step).await;
            let b = general_tight.range_query(s, q, start, end, step).await;
            assert!(
                same(&a, &b),
                "{q} {start}..{end}/{step} (max_samples 300):\nfast {a:?}\ngeneral {b:?}"
            );
            over_limit += usize::from(a.is_err() && want != Expect::Error);
        }
    }
    assert!(
        over_limit > 0,
        "max_samples 300 made no query fail: the tight comparisons compared no failure"
    );
    compared
}

/// `topk`/`bottomk` on the fast path: every `k` (none, one, some, more than
/// there are series, invalid), grouping, and each kind of inner expression.
#[tokio::test]
async fn topk_bottomk_match_general_path() {
    let s = storage();
    let inners = [
        "g",
        "c_total",
        "c_total offset 3m",
        "{__name__=~\"c_total|g\"}",
        "rate(c_total[5m])",
        "irate(c_total[2m])",
        "max_over_time(g[5m])",
        "min_over_time(g[1m] offset 2m)",
        "last_over_time({ns=\"ns1\"}[3m])",
        "count_over_time(g[5m])",
        // Names removed: series that differ only by name collide.
        "rate({__name__=~\"c_total|g\"}[5m])",
        "deriv({ns=\"ns2\"}[5m])",
    ];
    let mut queries = Vec::new();
    for inner in inners {
        for op in ["topk", "bottomk"] {
            for k in [
                "1",
                "3",
                "100",
                "0",
                "-2",
                "2.9",
                "(1 + 1) * 2",
                "NaN",
                "1e300",
            ] {
                queries.push(format!("{op}({k}, {inner})"));
            }
            for m in [
                "by (ns)",
                "without (pod)",
                "by (__name__)",
                "by (job, ns)",
                "without (ns, pod, job)",
            ] {
                queries.push(format!("{op} {m} (2, {inner})"));
                queries.push(format!("{op} {m} (1, {inner})"));
            }
        }
    }
    // k below 1 selects nothing; NaN and a k beyond int64 are errors
    // (Prometheus's "Parameter value is NaN", "Scalar value ... overflows
    // int64"); every other k selects at least one series.
    let compared = compare(&s, &queries, |q, _| {
        if q.contains("(0, ") || q.contains("(-2, ") {
            Expect::Empty
        } else if q.contains("(NaN, ") || q.contains("(1e300, ") {
            Expect::Error
        } else {
            Expect::Data
        }
    })
    .await;
    println!("compared {compared} range queries");
}

/// Fast-path shapes inside larger expressions are computed once as matrices
/// and read step by step (`Evaluator::precomputed`): same results, errors,
/// sample-limit failures and annotations, including where the order of a
/// step's vector matters (`limitk`, summation order, duplicate label sets).
#[tokio::test]
async fn precomputed_subexpressions_match_general_path() {
    let s = storage();
    let queries: Vec<String> = [
        "sum by (ns) (rate(c_total[5m])) / 2",
        "2 * sum by (ns) (rate(c_total[5m]))",
        "rate(c_total[5m]) / 2",
        "-rate(c_total[5m])",
        "rate(c_total[5m]) > 0.4",
        "rate(c_total[5m]) > bool 5",
        "quantile(0.9, rate(c_total[5m]))",
        "quantile by (ns) (0.5, max_over_time(g[5m]))",
        "quantile(2, g)",
        "sum(rate(c_total[5m])) / sum(rate(c_total[5m] offset 5m))",
        "rate(c_total[5m]) * on (ns) group_left max by (ns) (g)",
        "rate(c_total[5m]) + on (ns, job) group_left max by (ns, job) (g)",
        "c_total + ignoring (pod) group_left max by (ns, job) (g)",
        "c_total / ignoring (__name__) c_total",
        "rate(c_total[5m]) / ignoring (__name__) increase(c_total[5m])",
        "limitk(2, topk(3, g))",
        "limitk by (ns) (1, bottomk by (ns) (2, rate(c_total[5m])))",
        "sum(topk(5, g))",
        "sum by (ns) (sum by (ns, job) (rate(c_total[5m])))",
        "sum(sum by (pod) (g))",
        "avg(max by (job) (g))",
        "count_values(\"v\", topk(2, count_over_time(g[5m])))",
        "topk(scalar(count(g)) - 10, g)",
        "topk(3, rate(c_total[5m])) or bottomk(3, rate(c_total[5m]))",
        "topk(3, rate(c_total[5m])) and on (ns) g",
        "g unless topk(3, g)",
        "sort_desc(topk(3, g))",
        "label_replace(rate(c_total[5m]), \"x\", \"$1\", \"pod\", \"p(.*)\")",
        "label_replace(rate(c_total[5m]), \"pod\", \"same\", \"pod\", \".*\")",
        "sum by (__name__) (rate({__name__=~\"c_total|g\"}[5m])) + 1",
        "max by (__name__) (g) * 2",
        "rate({__name__=~\"c_total|g\"}[5m])",
        "{__name__=~\"c_total|g\"} * 1",
        "max_over_time(sum(rate(c_total[5m]))[10m:1m])",
        "rate(c_total[5m]) + on () group_left max_over_time(sum(rate(c_total[5m]))[10m:1m])",
        "absent(nonexistent)",
        "absent(rate(nonexistent[5m]))",
        "absent(sum(g))",
        "timestamp(g)",
        "timestamp(max by (ns) (g))",
        "scalar(sum(g))",
        "vector(1) + on () sum(g)",
        "clamp(rate(c_total[5m]), 0.1, 0.5)",
        "histogram_quantile(0.9, sum by (le) (rate(c_total[5m])))",
        "max by (ns) (g @ 1000) + on (ns) group_right rate(c_total[5m])",
        "topk(2, g @ 1000)",
        "sum(rate(g[5m])) + sum(irate(g[5m]))",
        "stddev by (job) (g) - stdvar by (job) (g)",
        "count(topk(100, g))",
    ]
    .iter()
    .map(|q| q.to_string())
    .collect();
    let compared = compare(&s, &queries, |q, start| match q {
        // `g` exists from 0 on, so `absent` gives a point only before it.
        "absent(sum(g))" if start >= 0 => Expect::Empty,
        // Before 0 there is no `g`: `scalar(count(g))` is NaN, not a k.
        "topk(scalar(count(g)) - 10, g)" if start < 0 => Expect::Error,
        // No series has an `le` label: no bucket to interpolate in.
        "histogram_quantile(0.9, sum by (le) (rate(c_total[5m])))" => Expect::Empty,
        // Both names' groups end up as `{}` once the name is dropped (delayed
        // name removal): duplicate label sets, an error.
        "sum by (__name__) (rate({__name__=~\"c_total|g\"}[5m])) + 1" => Expect::Error,
        // Every pod becomes `same`: duplicate label sets, an error.
        "label_replace(rate(c_total[5m]), \"pod\", \"same\", \"pod\", \".*\")" => Expect::Error,
        _ => Expect::Data,
    })
    .await;
    println!("compared {compared} range queries");
}

/// Series with native-histogram samples make the fast path step aside; the
/// results (floats and histograms) are those of the general path.
#[tokio::test]
async fn histogram_series_take_the_general_path() {
    let mut s = storage();
    let labels = Labels::from_pairs([
        ("__name__", "c_total".to_string()),
        ("ns", "ns1".to_string()),
        ("pod", "h".to_string()),
        ("job", "j0".to_string()),
    ]);
    for k in 0..120i64 {
        let n = (k + 1) as f64;
        let h = FloatHistogram {
            count: n,
            sum: 2.0 * n,
            positive: vec![(0, n)],
            ..FloatHistogram::default()
        };
        s.add_histogram(&labels, k * 30_000, h);
    }
    let fast = Engine::new(EngineOptions::default());
    let general = Engine::new(EngineOptions::default()).without_fast_path();
    for q in [
        "c_total",
        "sum by (ns) (c_total)",
        "count(c_total)",
        "max by (ns) (c_total)",
        "count_over_time(c_total[5m])",
        "sum by (ns) (sum_over_time(c_total[5m]))",
        "last_over_time(c_total[1m])",
        "rate(c_total[5m])",
    ] {
        let a = fast.range_query(&s, q, 0, 3_600_000, 60_000).await;
        let b = general.range_query(&s, q, 0, 3_600_000, 60_000).await;
        assert!(same(&a, &b), "{q}:\nfast {a:?}\ngeneral {b:?}");
        if let Err(e) = check_expect(Expect::Data, &a) {
            panic!("{q}: {e}\nfast {a:?}");
        }
    }
    // The histogram series is there: `c_total` alone returns its points.
    let r = fast
        .range_query(&s, "c_total", 0, 3_600_000, 60_000)
        .await
        .unwrap();
    assert_eq!(r.histograms.len(), 1);
    assert_eq!(r.histograms[0].labels, labels);
}

/// The expectation check itself: agreement on an empty answer or on an
/// error is not a pass where data is meant.
#[test]
fn expectations_reject_empty_and_failed_answers() {
    let empty = QueryResult {
        value: Value::Matrix(Vec::new()),
        histograms: Vec::new(),
        warnings: Vec::new(),
        infos: Vec::new(),
    };
    let data = QueryResult {
        value: Value::Matrix(vec![strata_model::Series {
            labels: Labels::from_pairs([("a", "b".to_string())]),
            samples: vec![Sample::new(0, 1.0)],
        }]),
        ..empty.clone()
    };
    let failed: Answer = Err(strata_promql::QueryError::Execution("boom".into()));
    // Both paths giving the same empty answer or the same error agree...
    assert!(same(&Ok(empty.clone()), &Ok(empty.clone())));
    assert!(same(&failed, &failed));
    // ...but neither is data.
    assert!(check_expect(Expect::Data, &Ok(empty.clone())).is_err());
    assert!(check_expect(Expect::Data, &failed).is_err());
    assert!(check_expect(Expect::Data, &Ok(data.clone())).is_ok());
    assert!(check_expect(Expect::Empty, &Ok(data.clone())).is_err());
    assert!(check_expect(Expect::Empty, &failed).is_err());
    assert!(check_expect(Expect::Empty, &Ok(empty.clone())).is_ok());
    assert!(check_expect(Expect::Error, &Ok(data)).is_err());
    assert!(check_expect(Expect::Error, &Ok(empty)).is_err());
    assert!(check_expect(Expect::Error, &failed).is_ok());
}
