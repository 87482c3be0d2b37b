//! Unit tests of the engine core through the public API: selectors with lookback
//! and staleness, rate extrapolation, aggregation, vector matching, limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strata_model::{Labels, Sample, Series, STALE_NAN};
use strata_promql::{Engine, EngineOptions, FloatHistogram, MemoryStorage, QueryError, Value};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

type SeriesSpec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn storage(series: &[SeriesSpec<'_>]) -> MemoryStorage {
    let mut s = MemoryStorage::new();
    for (l, samples) in series {
        s.add_series(Series {
            labels: labels(l),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        });
    }
    s
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        lookback_delta_ms: 300_000,
        max_samples: 1_000_000,
        timeout: Duration::from_secs(10),
        ..EngineOptions::default()
    })
}

/// The vector result as (labels as text, value), sorted.
async fn vector(e: &Engine, s: &MemoryStorage, q: &str, t: i64) -> Vec<(String, f64)> {
    match e.instant_query(s, q, t).await.unwrap().value {
        Value::Vector(v) => {
            let mut out: Vec<(String, f64)> = v
                .into_iter()
                .map(|x| (x.labels.to_string(), x.value))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("expected a vector, got {other:?}"),
    }
}

#[tokio::test]
async fn selector_lookback_and_staleness() {
    let s = storage(&[(
        &[("__name__", "m"), ("job", "a")],
        &[
            (0, 1.0),
            (60_000, 2.0),
            (120_000, STALE_NAN),
            (180_000, 4.0),
        ],
    )]);
    let e = engine();
    assert_eq!(
        vector(&e, &s, "m", 100_000).await,
        vec![(r#"m{job="a"}"#.into(), 2.0)]
    );
    // A staleness marker ends the series at once.
    assert!(vector(&e, &s, "m", 130_000).await.is_empty());
    assert_eq!(vector(&e, &s, "m", 200_000).await[0].1, 4.0);
    // The lookback window is left-open: (t - 5m, t].
    assert_eq!(vector(&e, &s, "m", 479_999).await.len(), 1);
    assert!(vector(&e, &s, "m", 480_000).await.is_empty());
    // offset and @.
    assert_eq!(vector(&e, &s, "m offset 40s", 100_000).await[0].1, 2.0);
    assert_eq!(vector(&e, &s, "m @ 30", 1_000_000).await[0].1, 1.0);
    // The output timestamp is the evaluation time.
    match e.instant_query(&s, "m", 100_000).await.unwrap().value {
        Value::Vector(v) => assert_eq!(v[0].timestamp_ms, 100_000),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rate_extrapolates() {
    // A counter growing by 10 every 15s from 0 at t=0.
    let samples: Vec<(i64, f64)> = (0..=8).map(|i| (i * 15_000, i as f64 * 10.0)).collect();
    let s = storage(&[(&[("__name__", "c_total")], &samples)]);
    let e = engine();
    // Window (0, 60s]: samples 10..40; extrapolated to the window start.
    let r = vector(&e, &s, "rate(c_total[1m])", 60_000).await;
    assert!((r[0].1 - 2.0 / 3.0).abs() < 1e-12, "{r:?}");
    let r = vector(&e, &s, "increase(c_total[1m])", 60_000).await;
    assert!((r[0].1 - 40.0).abs() < 1e-9, "{r:?}");
    assert_eq!(r[0].0, "{}");
    // A counter reset is corrected for.
    let s = storage(&[(
        &[("__name__", "r_total")],
        &[(15_000, 5.0), (30_000, 10.0), (45_000, 2.0), (60_000, 7.0)],
    )]);
    let r = vector(&e, &s, "increase(r_total[1m])", 60_000).await;
    // Raw increase 5 + 10 (reset) - 3 = 12 over 45s, extrapolated by 15s at the start.
    assert!((r[0].1 - 12.0 * 60.0 / 45.0).abs() < 1e-9, "{r:?}");
    // Fewer than two samples: no result.
    assert!(vector(&e, &s, "rate(r_total[10s])", 60_000)
        .await
        .is_empty());
}

#[tokio::test]
async fn sum_by_and_arithmetic_matching() {
    let s = storage(&[
        (
            &[("__name__", "req"), ("job", "a"), ("i", "0")],
            &[(0, 1.0)],
        ),
        (
            &[("__name__", "req"), ("job", "a"), ("i", "1")],
            &[(0, 2.0)],
        ),
        (
            &[("__name__", "req"), ("job", "b"), ("i", "0")],
            &[(0, 4.0)],
        ),
        (&[("__name__", "lim"), ("job", "a")], &[(0, 10.0)]),
        (&[("__name__", "lim"), ("job", "b")], &[(0, 20.0)]),
    ]);
    let e = engine();
    assert_eq!(
        vector(&e, &s, "sum by (job) (req)", 0).await,
        vec![(r#"{job="a"}"#.into(), 3.0), (r#"{job="b"}"#.into(), 4.0)]
    );
    assert_eq!(
        vector(&e, &s, "sum without (i) (req)", 0).await,
        vec![(r#"{job="a"}"#.into(), 3.0), (r#"{job="b"}"#.into(), 4.0)]
    );
    assert_eq!(
        vector(&e, &s, "req / on(job) group_left lim", 0).await,
        vec![
            (r#"{i="0", job="a"}"#.into(), 0.1),
            (r#"{i="0", job="b"}"#.into(), 0.2),
            (r#"{i="1", job="a"}"#.into(), 0.2)
        ]
    );
    // Without group_left the match is many-to-one and fails.
    let err = e
        .instant_query(&s, "req / on(job) lim", 0)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Execution(_)), "{err:?}");
    // Comparisons filter and keep the name; `bool` returns 0/1 without it.
    assert_eq!(
        vector(&e, &s, "lim > 15", 0).await,
        vec![(r#"lim{job="b"}"#.into(), 20.0)]
    );
    assert_eq!(vector(&e, &s, "lim > bool 15", 0).await.len(), 2);
    assert_eq!(
        vector(&e, &s, "lim and on(job) req{i=\"1\"}", 0).await,
        vec![(r#"lim{job="a"}"#.into(), 10.0)]
    );
    match e.instant_query(&s, "1 / 0", 0).await.unwrap().value {
        Value::Scalar { value, .. } => assert_eq!(value, f64::INFINITY),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn range_query_matrix_sorted() {
    let s = storage(&[
        (&[("__name__", "m"), ("x", "b")], &[(0, 1.0), (60_000, 2.0)]),
        (&[("__name__", "m"), ("x", "a")], &[(0, 3.0)]),
    ]);
    let e = engine();
    let r = e
        .range_query(&s, "m * 2", 0, 120_000, 60_000)
        .await
        .unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].labels.to_string(), r#"{x="a"}"#);
    assert_eq!(m[0].samples.len(), 3);
    assert_eq!(m[1].samples[1], Sample::new(60_000, 4.0));
    // Scalars become one series without labels.
    let r = e
        .range_query(&s, "time()", 0, 120_000, 60_000)
        .await
        .unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m[0].samples[2].value, 120.0);
    // Range vectors are not allowed.
    assert!(e.range_query(&s, "m[1m]", 0, 60_000, 60_000).await.is_err());
    assert!(e.range_query(&s, "m", 0, 60_000, 0).await.is_err());
}

#[tokio::test]
async fn errors_not_panics() {
    let s = storage(&[(&[("__name__", "m")], &[(0, 1.0)])]);
    let e = engine();
    assert!(matches!(
        e.instant_query(&s, "sum(", 0).await,
        Err(QueryError::Parse(_))
    ));
    assert!(matches!(
        e.instant_query(&s, r#"label_replace(m, "a", "b", "c", "(")"#, 0)
            .await,
        Err(QueryError::Execution(_))
    ));
    assert!(e.instant_query(&s, "m[1000y]", 0).await.is_ok());
    assert!(e
        .instant_query(&s, "max_over_time(m[100y:1h])", 0)
        .await
        .is_ok());
    // A subquery with billions of steps is refused at once by the sample
    // estimate (tests/hostile.rs); one with 876,000 steps runs into the
    // timeout instead of hanging.
    // The estimate refuses before any evaluation: with a timeout long enough
    // that only the estimate can be the reason (a 1 ms timeout could expire
    // first on a loaded machine, even during the parse).
    let estimating = Engine::new(EngineOptions {
        lookback_delta_ms: 300_000,
        max_samples: 1_000_000,
        timeout: Duration::from_secs(10),
        ..EngineOptions::default()
    });
    assert!(matches!(
        estimating
            .instant_query(&s, "max_over_time(m[100y:1ms])", 0)
            .await,
        Err(QueryError::TooManySamples(_))
    ));
    let quick = Engine::new(EngineOptions {
        lookback_delta_ms: 300_000,
        max_samples: 1_000_000,
        timeout: Duration::from_millis(1),
        ..EngineOptions::default()
    });
    assert!(matches!(
        quick
            .instant_query(&s, "max_over_time(m[100y:1h])", 0)
            .await,
        Err(QueryError::Timeout(_))
    ));
    let small = Engine::new(EngineOptions {
        lookback_delta_ms: 300_000,
        max_samples: 2,
        timeout: Duration::from_secs(10),
        ..EngineOptions::default()
    });
    let s3 = storage(&[(&[("__name__", "m")], &[(0, 1.0), (1, 2.0), (2, 3.0)])]);
    assert!(matches!(
        small.instant_query(&s3, "m[1m]", 10).await,
        Err(QueryError::TooManySamples(2))
    ));
    let zero = Engine::new(EngineOptions {
        lookback_delta_ms: 300_000,
        max_samples: 100,
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    assert!(matches!(
        zero.instant_query(&s, "m", 0).await,
        Err(QueryError::Timeout(_))
    ));
}

/// Native histograms: selectors return them, `sum` adds them, float-only
/// operations drop them with Prometheus's annotations, and nothing panics.
#[tokio::test]
async fn native_histograms() {
    let mut s = storage(&[(&[("__name__", "m"), ("k", "f")], &[(0, 3.0)])]);
    let h = FloatHistogram {
        count: 4.0,
        sum: 10.0,
        positive: vec![(0, 1.0), (1, 3.0)],
        ..FloatHistogram::default()
    };
    for k in ["a", "b"] {
        s.add_histogram(&labels(&[("__name__", "m"), ("k", k)]), 0, h.clone());
    }
    let e = engine();
    let r = e.instant_query(&s, "m{k=\"a\"}", 60_000).await.unwrap();
    let Value::Vector(v) = r.value else {
        panic!("not a vector")
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].histogram.as_deref(), Some(&h));

    let r = e
        .instant_query(&s, "sum(m{k=~\"a|b\"})", 60_000)
        .await
        .unwrap();
    let Value::Vector(v) = r.value else {
        panic!("not a vector")
    };
    let sum = v[0].histogram.as_deref().unwrap();
    assert_eq!((sum.count, sum.sum), (8.0, 20.0));
    assert_eq!(sum.positive, vec![(0, 2.0), (1, 6.0)]);

    // max ignores histograms (info), sum of a mix warns and has no result.
    let r = e.instant_query(&s, "max(m)", 60_000).await.unwrap();
    assert_eq!(
        r.infos,
        vec!["PromQL info: ignored histogram in max aggregation"]
    );
    assert_eq!(
        vector(&e, &s, "max(m)", 60_000).await,
        vec![("{}".into(), 3.0)]
    );
    let r = e.instant_query(&s, "sum(m)", 60_000).await.unwrap();
    assert_eq!(r.value, Value::Vector(Vec::new()));
    assert_eq!(r.warnings.len(), 1);
    // Comparisons with a histogram: info, the histogram dropped.
    let r = e.instant_query(&s, "m > 1", 60_000).await.unwrap();
    assert_eq!(r.infos.len(), 1);
    assert_eq!(vector(&e, &s, "m > 1", 60_000).await.len(), 1);
    // `h * 2` and quantiles work; a rate of histograms warns instead of lying.
    let q = vector(&e, &s, "histogram_quantile(0.5, m{k=\"a\"} * 2)", 60_000).await;
    assert_eq!(q.len(), 1);
    assert!(q[0].1 > 1.0 && q[0].1 <= 2.0, "{q:?}");
    let r = e.instant_query(&s, "rate(m[5m])", 60_000).await.unwrap();
    assert_eq!(r.value, Value::Vector(Vec::new()));
    assert_eq!(r.warnings.len(), 2, "{r:?}");
    assert!(r.warnings.iter().all(|w| w.contains("not supported")));
    // A range query keeps histogram points apart from the float points.
    let r = e.range_query(&s, "m", 0, 120_000, 60_000).await.unwrap();
    let Value::Matrix(m) = &r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(r.histograms.len(), 2);
    assert_eq!(r.histograms[0].samples.len(), 3);
}
