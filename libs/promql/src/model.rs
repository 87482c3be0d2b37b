//! The evaluator's values: what an expression evaluates to at one time
//! ([`Val`]: scalars, strings, instant vectors of [`Sample`]s, range vectors of
//! [`RangeSeries`]), what the selectors fetched up front ([`SelectorData`]), and
//! the label operations the operators and functions share. A leaf: it knows
//! nothing of the evaluator that produces these values.

use std::collections::HashMap;
use std::sync::Arc;

use strata_model::{Label, Labels, Sample as ModelSample, METRIC_NAME};

use crate::histogram::FloatHistogram;

/// A native-histogram point: timestamp and histogram (shared, copied on write).
pub(crate) type HPoint = (i64, Arc<FloatHistogram>);

/// One series a selector fetched: float samples and, kept apart so that the
/// float path stays as it was, native-histogram samples (empty for everything
/// Strata's storage returns).
#[derive(Debug, Clone)]
pub(crate) struct SelectedSeries {
    pub(crate) labels: Labels,
    pub(crate) samples: Vec<ModelSample>,
    pub(crate) histograms: Vec<HPoint>,
}

/// The series each selector node selected, keyed by the node's address in the
/// (immutable, borrowed) AST.
pub(crate) type SelectorData = HashMap<usize, Vec<SelectedSeries>>;

/// One element of an instant vector during evaluation. `drop_name` is Prometheus's
/// delayed `__name__` removal: the name stays (so `label_replace` and `by (__name__)`
/// can still see it) and is removed when the result is returned.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) labels: Labels,
    /// The float value; unused (0) when `hist` is set.
    pub(crate) value: f64,
    /// The native histogram, when this element is one instead of a float.
    pub(crate) hist: Option<Arc<FloatHistogram>>,
    pub(crate) drop_name: bool,
}

impl Sample {
    /// A float element.
    pub(crate) fn float(labels: Labels, value: f64, drop_name: bool) -> Self {
        Sample {
            labels,
            value,
            hist: None,
            drop_name,
        }
    }
}

/// What an instant selector found for one series: its labels, the sample's
/// timestamp and its float value or histogram.
pub(crate) type Selected = (Labels, i64, f64, Option<Arc<FloatHistogram>>);

/// One series of a range vector.
#[derive(Debug, Clone)]
pub(crate) struct RangeSeries {
    pub(crate) labels: Labels,
    pub(crate) points: Vec<(i64, f64)>,
    /// Native-histogram points, sorted by time (usually empty).
    pub(crate) hists: Vec<HPoint>,
    pub(crate) drop_name: bool,
}

/// A value during evaluation at one time.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Sample>),
    Matrix(Vec<RangeSeries>),
}

impl Val {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }
}

/// A range vector argument with the window it covers.
#[derive(Debug)]
pub(crate) struct RangeArg {
    pub(crate) series: Vec<RangeSeries>,
    pub(crate) range_ms: i64,
    /// The (inclusive) end of the window.
    pub(crate) end_ms: i64,
}

/// Labels restricted to `names` (`by`, `on`).
pub(crate) fn keep_labels(l: &Labels, names: &[String]) -> Labels {
    Labels::from_sorted(
        l.iter()
            .filter(|x| names.contains(&x.name))
            .cloned()
            .collect(),
    )
}

/// Whether a label goes away with the metric name: `__name__` and the
/// type-and-unit labels `__type__`/`__unit__`.
pub(crate) fn is_name_label(name: &str) -> bool {
    matches!(name, METRIC_NAME | "__type__" | "__unit__")
}

/// Labels without the metric name (and type and unit).
pub(crate) fn without_name(l: &Labels) -> Labels {
    Labels::from_sorted(
        l.iter()
            .filter(|x| !is_name_label(&x.name))
            .cloned()
            .collect(),
    )
}

/// Labels without `names` and, if `drop_name`, without `__name__` (`without`, `ignoring`).
pub(crate) fn drop_labels(l: &Labels, names: &[String], drop_name: bool) -> Labels {
    Labels::from_sorted(
        l.iter()
            .filter(|x| !(names.contains(&x.name) || (drop_name && is_name_label(&x.name))))
            .cloned()
            .collect(),
    )
}

/// A copy with `name` set to `value` (removed when `value` is empty).
pub(crate) fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = l.iter().filter(|x| x.name != name).cloned().collect();
    if !value.is_empty() {
        v.push(Label::new(name, value));
    }
    Labels::new(v)
}
