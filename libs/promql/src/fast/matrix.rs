//! The matrix the fast path computes for a sub-expression of a range query,
//! which the evaluator keeps between steps. A leaf, so that the evaluator can
//! hold these without depending on the fast path; only `fast` reads the fields.

use strata_model::{Labels, Sample as ModelSample};

use crate::error::QueryError;

/// A fast-path shape evaluated at every step of a range query.
#[derive(Debug)]
pub(crate) struct FastMatrix {
    /// The output series' labels. When the matrix was computed for
    /// `Evaluator::precomputed`, a name to be removed is still there and
    /// `drop_name` says so, as in the general path's vectors.
    pub(super) labels: Vec<Labels>,
    pub(super) drop_name: bool,
    /// Per step: (index into `labels`, value), in the order in which the
    /// general path's vector at that step holds them.
    pub(super) by_step: Vec<Vec<(usize, f64)>>,
    /// The points per series instead, when the order within a step does not
    /// matter (a finalized selector or range function: the caller sorts by
    /// labels); `by_step` is then empty.
    pub(super) rows: Vec<Vec<ModelSample>>,
    /// Per step: the samples the general path's selector loads, and the
    /// points of the result.
    pub(super) loaded: Vec<usize>,
    pub(super) produced: Vec<usize>,
    /// The error (an invalid `k`) the general path raises at the first step,
    /// after its selector has loaded.
    pub(super) param_error: Option<QueryError>,
}
