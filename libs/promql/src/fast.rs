//! A series-major fast path for range queries of the most common dashboard shapes:
//!
//! - `selector`, `f(selector[range])` for the per-series range functions
//!   (`rate`, `increase`, `*_over_time`, ...), and
//! - `agg by|without (...) (either of those)` for `sum avg min max count group
//!   stddev stdvar`,
//!
//! with `offset` but without `@`. The step-by-step evaluator re-selects every
//! series at every step (cloning its labels, binary-searching its samples, hashing
//! group keys); here each series' output labels or group index are computed once
//! per query and its window moves forward with two cursors, so a step costs a few
//! arithmetic operations per series. The results are identical to the general
//! path (same functions, same accumulators, same sample limit and annotations);
//! anything else, including shapes that could produce duplicate label sets and
//! series with native-histogram samples, falls back to it.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::TokenId;
use promql_parser::parser::{Expr, LabelModifier, MatrixSelector, VectorSelector};
use strata_model::{is_stale_nan, Labels, Sample as ModelSample, Series, METRIC_NAME};

use crate::aggregate::Acc;
use crate::error::QueryError;
use crate::eval::{
    drop_labels, duration_ms, keep_labels, node_key, offset_ms, unwrap_parens, without_name,
    Evaluator, RangeArg, SelectedSeries,
};
use crate::functions::{reset_free_counter_fn, simple_range_fn, RangeFn};

/// The innermost expression of a fast-path query.
enum Inner<'e> {
    /// An instant vector selector.
    Instant(&'e VectorSelector),
    /// A per-series range function of a matrix selector.
    Range {
        name: &'e str,
        arg: &'e Expr,
        ms: &'e MatrixSelector,
        f: RangeFn,
        /// `f` for windows without a counter reset, when that is cheaper.
        reset_free: Option<RangeFn>,
        drop_name: bool,
    },
}

/// The optional aggregation around [`Inner`].
struct Agg<'e> {
    op: TokenId,
    by: bool,
    names: &'e [String],
}

fn inner_of(e: &Expr) -> Option<Inner<'_>> {
    match unwrap_parens(e) {
        Expr::VectorSelector(vs) if vs.at.is_none() => Some(Inner::Instant(vs)),
        Expr::Call(c) if c.args.args.len() == 1 => {
            let (f, keep_name) = simple_range_fn(c.func.name)?;
            let arg = c.args.args[0].as_ref();
            match unwrap_parens(arg) {
                Expr::MatrixSelector(ms) if ms.vs.at.is_none() => Some(Inner::Range {
                    name: c.func.name,
                    arg,
                    ms,
                    f,
                    reset_free: reset_free_counter_fn(c.func.name),
                    drop_name: !keep_name,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

fn shape_of(e: &Expr) -> Option<(Option<Agg<'_>>, Inner<'_>)> {
    match unwrap_parens(e) {
        Expr::Aggregate(a) => {
            let op = a.op.id();
            if a.param.is_some() || !Acc::handles(op) {
                return None;
            }
            let (by, names): (bool, &[String]) = match &a.modifier {
                None => (true, &[]),
                Some(LabelModifier::Include(ls)) => (true, &ls.labels),
                Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
            };
            Some((Some(Agg { op, by, names }), inner_of(&a.expr)?))
        }
        other => Some((None, inner_of(other)?)),
    }
}

/// The most group × step accumulators an aggregation may use on this path
/// (40 MB); beyond, the general path (which needs one per group) is used.
const MAX_ACCUMULATORS: usize = 1 << 20;

impl Evaluator<'_> {
    /// Evaluates a range query of a supported shape series-major; `None` when the
    /// shape is not supported (the caller then evaluates step by step). The series
    /// are returned unsorted.
    pub(crate) fn try_fast_range(
        &mut self,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Option<Result<Vec<Series>, QueryError>> {
        if step_ms <= 0 {
            return None;
        }
        let (agg, inner) = shape_of(expr)?;
        let (vs, range_ms) = match &inner {
            Inner::Instant(vs) => (*vs, 0),
            Inner::Range { ms, .. } => (&ms.vs, duration_ms(&ms.range)),
        };
        let inner_drops_name = matches!(
            inner,
            Inner::Range {
                drop_name: true,
                ..
            }
        );
        let data = self.data;
        let selected: &[SelectedSeries] = data.get(&node_key(vs)).map(Vec::as_slice).unwrap_or(&[]);
        if selected.iter().any(|s| !s.histograms.is_empty()) {
            // Native histograms take the general path, which handles them.
            return None;
        }

        // Output slots: one per series, or one per group.
        let mut slot_of: Vec<usize> = Vec::with_capacity(selected.len());
        let mut slot_labels: Vec<Labels> = Vec::new();
        match &agg {
            None => {
                let mut seen = HashSet::with_capacity(selected.len());
                for s in selected {
                    let l = if inner_drops_name {
                        without_name(&s.labels)
                    } else {
                        s.labels.clone()
                    };
                    if !seen.insert(l.clone()) {
                        // Possible duplicate label sets: let the general path
                        // decide (and report) at the step where they collide.
                        return None;
                    }
                    slot_of.push(slot_labels.len());
                    slot_labels.push(l);
                }
            }
            Some(a) => {
                if a.by && inner_drops_name && a.names.iter().any(|n| n == METRIC_NAME) {
                    return None;
                }
                let mut index: HashMap<Labels, usize> = HashMap::new();
                for s in selected {
                    let key = if a.by {
                        keep_labels(&s.labels, a.names)
                    } else {
                        drop_labels(&s.labels, a.names, true)
                    };
                    let next = slot_labels.len();
                    let i = *index.entry(key.clone()).or_insert(next);
                    if i == next {
                        slot_labels.push(key);
                    }
                    slot_of.push(i);
                }
            }
        }

        // `start + k * step` stays within `[start, end]`, which must not overflow.
        let span = end_ms.checked_sub(start_ms).filter(|d| *d >= 0)?;
        let steps = usize::try_from(span / step_ms + 1).ok()?;
        if agg.is_some() && slot_labels.len().saturating_mul(steps) > MAX_ACCUMULATORS {
            return None;
        }
        if let Inner::Range { name, arg, .. } = &inner {
            self.counter_info(name, arg);
        }

        // Series-major: each series' samples are walked once, all steps in a
        // row, while they are in cache. Aggregations keep one accumulator per
        // group and step.
        let off = offset_ms(&vs.offset);
        let lookback = self.lookback_ms;
        let mut out: Vec<Vec<ModelSample>> = vec![Vec::new(); slot_labels.len()];
        let mut accs: Vec<Acc> = if agg.is_some() {
            vec![Acc::default(); slot_labels.len() * steps]
        } else {
            Vec::new()
        };
        // Samples the general path would hold at each step: loaded by the
        // selector, and output points produced so far.
        let mut loaded = vec![0usize; steps];
        let mut produced = vec![0usize; steps];
        let mut points: Vec<(i64, f64)> = Vec::new();
        let mut resets: Vec<u32> = Vec::new();
        for (i, s) in selected.iter().enumerate() {
            if i % 1024 == 0 {
                if let Err(e) = self.check_deadline() {
                    return Some(Err(e));
                }
            }
            let slot = slot_of[i];
            let samples = &s.samples;
            if let Inner::Range { reset_free, .. } = &inner {
                points.clear();
                points.extend(
                    samples
                        .iter()
                        .filter(|p| !is_stale_nan(p.value))
                        .map(|p| (p.timestamp_ms, p.value)),
                );
                resets.clear();
                if reset_free.is_some() {
                    let mut n = 0u32;
                    for (k, p) in points.iter().enumerate() {
                        if k > 0 && p.1 < points[k - 1].1 {
                            n += 1;
                        }
                        resets.push(n);
                    }
                }
            }
            let (mut lo, mut hi) = (0usize, 0usize);
            for step in 0..steps {
                let t = start_ms + step as i64 * step_ms;
                let ref_t = t.saturating_sub(off);
                let v = match &inner {
                    Inner::Instant(_) => {
                        while hi < samples.len() && samples[hi].timestamp_ms <= ref_t {
                            hi += 1;
                        }
                        if hi == 0 {
                            continue;
                        }
                        let p = samples[hi - 1];
                        if p.timestamp_ms <= ref_t.saturating_sub(lookback) || is_stale_nan(p.value)
                        {
                            continue;
                        }
                        loaded[step] += 1;
                        p.value
                    }
                    Inner::Range { f, reset_free, .. } => {
                        let window_start = ref_t.saturating_sub(range_ms);
                        while hi < points.len() && points[hi].0 <= ref_t {
                            hi += 1;
                        }
                        while lo < hi && points[lo].0 <= window_start {
                            lo += 1;
                        }
                        if lo >= hi {
                            continue;
                        }
                        let window = &points[lo..hi];
                        loaded[step] += window.len();
                        let r = RangeArg {
                            series: Vec::new(),
                            range_ms,
                            end_ms: ref_t,
                        };
                        let f = match reset_free {
                            Some(g) if resets[hi - 1] == resets[lo] => g,
                            _ => f,
                        };
                        match f(window, &r) {
                            Some(v) => v,
                            None => continue,
                        }
                    }
                };
                match &agg {
                    Some(a) => accs[slot * steps + step].add(a.op, v),
                    None => {
                        out[slot].push(ModelSample::new(t, v));
                        produced[step] += 1;
                    }
                }
            }
        }
        if let Some(a) = &agg {
            for (slot, samples) in out.iter_mut().enumerate() {
                for (step, acc) in accs[slot * steps..(slot + 1) * steps].iter().enumerate() {
                    if acc.count > 0.0 {
                        samples.push(ModelSample::new(
                            start_ms + step as i64 * step_ms,
                            acc.result(a.op),
                        ));
                        produced[step] += 1;
                    }
                }
            }
        }
        // The general path's sample limit: at each step, the points produced by
        // the steps before plus the samples its selector loads, and after the
        // step all points produced.
        let mut total = 0usize;
        for step in 0..steps {
            if total.saturating_add(loaded[step]) > self.max_samples {
                return Some(Err(QueryError::TooManySamples(self.max_samples)));
            }
            total += produced[step];
            if total > self.max_samples {
                return Some(Err(QueryError::TooManySamples(self.max_samples)));
            }
        }
        Some(Ok(slot_labels
            .into_iter()
            .zip(out)
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(labels, samples)| Series { labels, samples })
            .collect()))
    }
}
