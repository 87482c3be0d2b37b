//! The PromQL engine of Strata: evaluates instant and range queries over series
//! read through the [`Queryable`] trait, with Prometheus 3.x semantics.
//!
//! It owns evaluation: selectors with lookback, staleness markers, `offset` and
//! `@`; subqueries; binary operators with vector matching; aggregations; the
//! float functions; delayed `__name__` removal; the sample limit and the timeout.
//! Parsing is delegated to the `promql-parser` crate. A query is planned once
//! (every selector with the time range it needs), its data fetched up front
//! (async), and then evaluated synchronously, step by step, on a blocking thread.
//! Range queries of the common dashboard shapes (`sum by (...) (rate(x[5m]))` and
//! the like) take a series-major fast path with the same results (`fast.rs`).
//!
//! It deliberately does not own storage, the HTTP API or result caching, and it
//! does not support native histograms (only float samples exist in Strata's model).
//!
//! [`test_script`] runs Prometheus's `promqltest` scripts against the engine and
//! [`MemoryStorage`]; the conformance test in `tests/` uses it.

mod aggregate;
mod binary;
mod engine;
mod error;
mod eval;
mod fast;
mod functions;
mod mathx;
mod storage;
pub mod test_script;
mod value;

pub use engine::{Engine, EngineOptions, Queryable};
pub use error::QueryError;
pub use storage::MemoryStorage;
pub use value::{format_value, InstantSample, QueryResult, Value};
