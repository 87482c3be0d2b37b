//! What a query returns, in the four shapes of the Prometheus API (the API's
//! float formatting, [`format_value`](crate::format_value), is in `mathx.rs`).
//!
//! Native histograms: an instant-vector element carries its histogram in
//! [`InstantSample::histogram`]; a matrix keeps its float points in
//! [`Value::Matrix`] and its histogram points in [`QueryResult::histograms`].
//! Strata's storage holds no native histograms yet, so outside tests (which use
//! [`crate::MemoryStorage`]) both stay empty.

use strata_model::{Labels, Series};

use crate::histogram::FloatHistogram;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub timestamp_ms: i64,
    /// The float value; meaningless (0) when `histogram` is set.
    pub value: f64,
    /// The native histogram, when the element is one instead of a float.
    pub histogram: Option<Box<FloatHistogram>>,
}

/// One native-histogram sample.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub timestamp_ms: i64,
    pub histogram: FloatHistogram,
}

/// The native-histogram samples of one series, sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSeries {
    pub labels: Labels,
    pub samples: Vec<HistogramSample>,
}

/// A query result. Matrices are sorted by labels; vectors keep the engine's order
/// (which matters for `sort*`, `topk` and `bottomk`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { timestamp_ms: i64, value: f64 },
    String { timestamp_ms: i64, value: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A result plus the annotations (Prometheus's warnings and infos) it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// The histogram points of a matrix result, per series, sorted by labels
    /// ([`Value::Matrix`] holds the float points; a series with both kinds is
    /// in both). Empty for other results.
    pub histograms: Vec<HistogramSeries>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}
