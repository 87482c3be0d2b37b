//! What a query returns, in the four shapes of the Prometheus API, and the float
//! formatting the API uses.
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

/// A float as the Prometheus API renders it: Go's `strconv.FormatFloat(v, 'f', -1, 64)`
/// (shortest decimal that round-trips, never an exponent) with `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's `Display` for floats is the shortest round-trip representation
        // written out in positional notation, which is exactly Go's 'f', -1.
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn formats_like_go() {
        let cases: &[(f64, &str)] = &[
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (123456789.125, "123456789.125"),
            (1.0 / 3.0, "0.3333333333333333"),
        ];
        for (v, want) in cases {
            assert_eq!(format_value(*v), *want, "{v:e}");
        }
        // The smallest subnormal: 323 zeros after the point, then 5.
        assert_eq!(format_value(5e-324), format!("0.{}5", "0".repeat(323)));
    }
}
