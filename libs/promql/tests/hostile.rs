//! Queries as a hostile user writes them: deep nesting of every kind, long flat
//! chains, huge texts, many matchers, subqueries of absurd resolution. Each must
//! be answered with an error naming the limit, never overflow a stack, and
//! queries just within the limits must still evaluate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strata_model::{Labels, Sample, Series};
use strata_promql::{
    expr_depth, format_query, parse_query, Engine, EngineOptions, MemoryStorage, QueryError,
    QueryShapeLimits, ShapeLimit, Value, MAX_SUPPORTED_DEPTH,
};

fn storage() -> MemoryStorage {
    let mut s = MemoryStorage::new();
    s.add_series(Series {
        labels: Labels::from_pairs([("__name__", "up"), ("job", "a")]),
        samples: (0..=20).map(|i| Sample::new(i * 60_000, 1.0)).collect(),
    });
    s
}

fn engine(shape: QueryShapeLimits) -> Engine {
    Engine::new(EngineOptions {
        max_samples: 1_000_000,
        timeout: Duration::from_secs(60),
        shape,
        ..EngineOptions::default()
    })
}

/// One kind of nesting: the query nested `n` levels of it around a core.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Paren,
    Unary,
    UnaryParen,
    Function,
    Aggregation,
    Subquery,
    SelectorChain,
    NumberChain,
}

const KINDS: [Kind; 8] = [
    Kind::Paren,
    Kind::Unary,
    Kind::UnaryParen,
    Kind::Function,
    Kind::Aggregation,
    Kind::Subquery,
    Kind::SelectorChain,
    Kind::NumberChain,
];

/// The query of `kind` with `n` repetitions.
fn nested(kind: Kind, n: usize) -> String {
    let wrap = |open: &str, core: &str, close: &str| {
        let mut q = String::with_capacity(n * (open.len() + close.len()) + core.len());
        for _ in 0..n {
            q.push_str(open);
        }
        q.push_str(core);
        for _ in 0..n {
            q.push_str(close);
        }
        q
    };
    match kind {
        Kind::Paren => wrap("(", "up", ")"),
        Kind::Unary => wrap("-", "1", ""),
        Kind::UnaryParen => wrap("-(", "up", ")"),
        Kind::Function => wrap("abs(", "up", ")"),
        Kind::Aggregation => wrap("sum(", "up", ")"),
        // `[30s:1m]` evaluates its expression at most once per outer step, so
        // deep nesting is refused by depth, not by the sample estimate.
        Kind::Subquery => wrap("max_over_time(", "up", "[30s:1m])"),
        Kind::SelectorChain => format!("up{}", "+up".repeat(n)),
        Kind::NumberChain => format!("1{}", "+1".repeat(n)),
    }
}

fn shape_limit(r: &Result<strata_promql::QueryResult, QueryError>) -> Option<ShapeLimit> {
    match r {
        Err(QueryError::ShapeLimit { limit, .. }) => Some(*limit),
        _ => None,
    }
}

/// The most repetitions of `kind` that `shape` accepts, and the depth of the
/// tree they make. The text scan's bound is loose by at most a factor of two,
/// so that depth is at least half the limit (or the tree folds, as `-` does
/// around a number).
fn deepest_within(kind: Kind, shape: &QueryShapeLimits) -> usize {
    let mut n = shape.max_depth + 1;
    while parse_query(&nested(kind, n), shape).is_err() {
        n -= 1;
    }
    let depth = expr_depth(&parse_query(&nested(kind, n), shape).unwrap());
    assert!(
        matches!(kind, Kind::Unary) || depth * 2 >= shape.max_depth,
        "{kind:?}: only {n} levels, depth {depth}, within a limit of {}",
        shape.max_depth
    );
    n
}

#[tokio::test]
async fn every_kind_of_nesting_is_refused_beyond_the_depth_limit() {
    let shape = QueryShapeLimits::default();
    let e = engine(shape);
    let s = storage();
    for kind in KINDS {
        for n in [1_000, 10_000, 100_000] {
            let q = nested(kind, n);
            let r = e.instant_query(&s, &q, 600_000).await;
            let want = if q.len() > shape.max_length_bytes {
                ShapeLimit::LengthBytes
            } else {
                ShapeLimit::Depth
            };
            assert_eq!(shape_limit(&r), Some(want), "{kind:?} x{n}: {r:?}");
            let message = r.unwrap_err().to_string();
            assert!(message.contains("limit of"), "{kind:?} x{n}: {message}");
            // format_query goes through the same limits.
            let f = format_query(&q, &shape, usize::MAX).await;
            assert!(
                matches!(f, Err(QueryError::ShapeLimit { limit, .. }) if limit == want),
                "format_query {kind:?} x{n}: {f:?}"
            );
        }
    }
}

#[tokio::test]
async fn queries_just_within_the_depth_limit_evaluate() {
    let shape = QueryShapeLimits::default();
    let e = engine(shape);
    let s = storage();
    for kind in KINDS {
        let n = deepest_within(kind, &shape);
        let q = nested(kind, n);
        let r = e.instant_query(&s, &q, 600_000).await;
        assert!(r.is_ok(), "{kind:?} x{n}: {r:?}");
        // Prettified within the limits too; and one level more is refused.
        assert!(format_query(&q, &shape, usize::MAX).await.is_ok());
        let deeper = nested(kind, n + 2);
        let r = e.instant_query(&s, &deeper, 600_000).await;
        assert_eq!(
            shape_limit(&r),
            Some(ShapeLimit::Depth),
            "{kind:?} x{}",
            n + 2
        );
    }
    // The range query path too (another walk over the tree).
    let q = nested(
        Kind::SelectorChain,
        deepest_within(Kind::SelectorChain, &shape),
    );
    let r = e.range_query(&s, &q, 0, 1_200_000, 60_000).await.unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].samples.len(), 21);
}

/// The stacks of the query threads hold the deepest tree a configuration may
/// allow: every kind of nesting at `MAX_SUPPORTED_DEPTH` evaluates (in a
/// debug build, where frames are largest).
#[tokio::test]
async fn the_query_threads_hold_the_deepest_supported_tree() {
    let shape = QueryShapeLimits {
        max_depth: MAX_SUPPORTED_DEPTH,
        max_length_bytes: 1 << 20,
        ..QueryShapeLimits::default()
    };
    let e = engine(shape);
    let s = storage();
    for kind in KINDS {
        let n = deepest_within(kind, &shape);
        let q = nested(kind, n);
        let r = e.instant_query(&s, &q, 600_000).await;
        assert!(r.is_ok(), "{kind:?} x{n}: {r:?}");
        let r = e.range_query(&s, &q, 0, 600_000, 60_000).await;
        // A number chain, parentheses and the rest are all valid range queries.
        assert!(r.is_ok(), "range {kind:?} x{n}: {r:?}");
        assert!(format_query(&q, &shape, usize::MAX).await.is_ok());
    }
}

#[tokio::test]
async fn long_texts_and_many_matchers_are_refused_before_parsing() {
    let shape = QueryShapeLimits::default();
    let e = engine(shape);
    let s = storage();
    // 1 MB of `a+a+…`.
    let long = format!("a{}", "+a".repeat(500_000));
    let r = e.instant_query(&s, &long, 0).await;
    assert_eq!(shape_limit(&r), Some(ShapeLimit::LengthBytes), "{r:?}");
    // 50,000 regex matchers in one selector (beyond the length limit too).
    let matchers: Vec<String> = (0..50_000).map(|i| format!("l{i}=~\"v.*\"")).collect();
    let many = format!("up{{{}}}", matchers.join(","));
    let r = e.instant_query(&s, &many, 0).await;
    assert_eq!(shape_limit(&r), Some(ShapeLimit::LengthBytes), "{r:?}");
    // Within the length limit, the matcher limits speak.
    let some = format!("up{{{}}}", matchers[..200].join(","));
    let r = e.instant_query(&s, &some, 0).await;
    assert_eq!(
        shape_limit(&r),
        Some(ShapeLimit::MatchersPerSelector),
        "{r:?}"
    );
    let spread: Vec<String> = (0..20)
        .map(|i| format!("up{{{}}}", matchers[i * 60..i * 60 + 60].join(",")))
        .collect();
    let r = e.instant_query(&s, &spread.join(" or "), 0).await;
    assert_eq!(shape_limit(&r), Some(ShapeLimit::Matchers), "{r:?}");
    // The limit is the configured one, not a constant.
    let tight = QueryShapeLimits {
        max_length_bytes: 10,
        ..shape
    };
    assert!(matches!(
        parse_query("sum(up) by (job)", &tight),
        Err(QueryError::ShapeLimit {
            limit: ShapeLimit::LengthBytes,
            ..
        })
    ));
    assert!(parse_query("sum(up)", &tight).is_ok());
}

#[tokio::test]
async fn subqueries_of_absurd_resolution_are_refused_before_evaluation() {
    let e = engine(QueryShapeLimits::default());
    let s = storage();
    for q in [
        "up[1y:1ms]",
        "max_over_time(up[1y:1ms])",
        "count_over_time(vector(1)[1y:1ms])",
        "max_over_time(nonexistent[1y:1ms])",
        // Nested: 1,000 x 1,000 x 1,000 evaluations of the innermost.
        "max_over_time(max_over_time(max_over_time(up[1000m:1m])[1000m:1m])[1000m:1m])",
    ] {
        let r = e.instant_query(&s, q, 600_000).await;
        assert!(
            matches!(r, Err(QueryError::TooManySamples(1_000_000))),
            "{q}: {r:?}"
        );
    }
    // A reasonable subquery is not affected by the estimate.
    let r = e
        .instant_query(&s, "max_over_time(up[10m:1m])", 600_000)
        .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn format_query_keeps_to_its_byte_budget() {
    let shape = QueryShapeLimits::default();
    let q = format!("sum({})", nested(Kind::SelectorChain, 400));
    let whole = format_query(&q, &shape, usize::MAX).await.unwrap();
    assert_eq!(format_query(&q, &shape, whole.len()).await.unwrap(), whole);
    let r = format_query(&q, &shape, whole.len() - 1).await;
    assert_eq!(r, Err(QueryError::ResponseTooLarge(whole.len() - 1)));
}
