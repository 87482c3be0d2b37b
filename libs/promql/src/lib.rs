//! The PromQL engine of Strata: evaluates instant and range queries over series
//! read through the [`Queryable`] trait, with Prometheus 3.x semantics.
//!
//! It owns evaluation: selectors with lookback, staleness markers, `offset` and
//! `@`; subqueries; binary operators with vector matching; aggregations; the
//! float functions; delayed `__name__` removal; the sample limit and the timeout.
//! Parsing is delegated to the `promql-parser` crate. A query is planned once
//! (every selector with the time range it needs), its data fetched up front
//! (async), and then evaluated synchronously, step by step, on a blocking thread.
//! Range queries of the common dashboard shapes (`sum by (...) (rate(x[5m]))`,
//! `topk(10, rate(x[5m]))` and the like) take a series-major fast path with the
//! same results (`fast.rs`); inside other range queries, those shapes are
//! computed once as matrices and read step by step.
//!
//! Native histograms: [`FloatHistogram`] samples flow through selectors, the
//! set operators, `*`/`/` by scalars, `+`/`-`/`==`/`!=` between histograms,
//! `sum`/`avg`/`count`/`group`/`limitk`, `histogram_quantile`/`histogram_fraction`/
//! `histogram_count`/`histogram_sum`/`histogram_avg` and the `*_over_time`
//! functions that Prometheus defines for them; float-only operations drop them
//! with Prometheus's annotations, and the rate-like functions (not implemented
//! for them) skip them with a warning. Strata's storage does not hold native
//! histograms yet, so only [`MemoryStorage`] (tests, the conformance runner)
//! supplies them.
//!
//! Every query is first held to [`QueryShapeLimits`] (length, depth,
//! matchers) by a scan of its text, before the parser sees it, and is parsed,
//! planned and evaluated on a thread of its own with a stack sized for the
//! depth limit; a panic there is an error of that query, not of the process
//! (`guard.rs`, `engine.rs`).
//!
//! It deliberately does not own storage, the HTTP API or result caching.
//!
//! [`test_script`] runs Prometheus's `promqltest` scripts against the engine and
//! [`MemoryStorage`]; the conformance test in `tests/` uses it.

mod aggregate;
mod ast;
mod binary;
mod engine;
mod error;
mod eval;
mod fast;
mod format;
mod functions;
mod guard;
mod histogram;
mod mathx;
mod model;
mod storage;
pub mod test_script;
mod value;

pub use engine::{Engine, EngineOptions, Queryable};
pub use error::{ExecutionError, QueryError, ShapeLimit, UnsupportedFeature};
pub use format::format_query;
pub use guard::{
    expr_depth, parse_query, selector_matcher_sets, QueryShapeLimits, MAX_SUPPORTED_DEPTH,
};
pub use histogram::{CounterResetHint, FloatHistogram, CUSTOM_BUCKETS_SCHEMA};
pub use mathx::format_value;
pub use storage::MemoryStorage;
pub use value::{HistogramSample, HistogramSeries, InstantSample, QueryResult, Value};
