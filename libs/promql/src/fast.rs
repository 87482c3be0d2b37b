//! A series-major fast path for range queries of the most common dashboard shapes:
//!
//! - `selector`, `f(selector[range])` for the per-series range functions
//!   (`rate`, `increase`, `*_over_time`, ...),
//! - `agg by|without (...) (either of those)` for `sum avg min max count group
//!   stddev stdvar`, and
//! - `topk|bottomk by|without (...) (k, either of those)` with a constant `k`,
//!
//! with `offset` but without `@`. The step-by-step evaluator re-selects every
//! series at every step (cloning its labels, binary-searching its samples, hashing
//! group keys); here each series' output labels or group index are computed once
//! per query and its window moves forward with two cursors, so a step costs a few
//! arithmetic operations per series. The results are identical to the general
//! path (same functions, same accumulators, same `topk` selection, same sample
//! limit and annotations); anything else, including shapes that could produce
//! duplicate label sets and series with native-histogram samples, falls back to it.
//!
//! The same shapes inside a larger expression (`sum(rate(x[5m])) / 2`,
//! `quantile(0.9, rate(x[5m]))`) are computed here once per range query as whole
//! matrices ([`FastMatrix`]), and the step-by-step evaluator reads each step's
//! vector from them instead of re-selecting (`Evaluator::precomputed`).

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{TokenId, T_BOTTOMK, T_TOPK};
use promql_parser::parser::{Expr, LabelModifier, MatrixSelector, VectorSelector};
use strata_model::{is_stale_nan, Labels, Sample as ModelSample, Series, METRIC_NAME};

pub(crate) mod matrix;

use crate::aggregate::{k_param, sort_k_members, Acc, KBest};
use crate::ast::{duration_ms, node_key, offset_ms, unwrap_parens};
use crate::error::QueryError;
use crate::eval::Evaluator;
use crate::functions::{reset_free_counter_fn, simple_range_fn, RangeFn};
use crate::model::{drop_labels, keep_labels, without_name, RangeArg, Sample, SelectedSeries, Val};
use matrix::FastMatrix;

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

/// What an aggregation around [`Inner`] computes.
enum AggKind<'e> {
    /// One of the operators [`Acc`] handles.
    Acc(TokenId),
    /// `topk` (`bottom == false`) or `bottomk` with a constant `k` expression.
    K { bottom: bool, param: &'e Expr },
}

/// The optional aggregation around [`Inner`].
struct Agg<'e> {
    kind: AggKind<'e>,
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

/// Whether `e` is a scalar that is the same at every step and whose evaluation
/// has no side effect (no samples, no annotations): number literals combined
/// with unary minus, parentheses and arithmetic.
fn constant_scalar(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => constant_scalar(&p.expr),
        Expr::Unary(u) => constant_scalar(&u.expr),
        Expr::Binary(b) => constant_scalar(&b.lhs) && constant_scalar(&b.rhs),
        _ => false,
    }
}

fn shape_of(e: &Expr) -> Option<(Option<Agg<'_>>, Inner<'_>)> {
    match unwrap_parens(e) {
        Expr::Aggregate(a) => {
            let op = a.op.id();
            let kind = match (&a.param, op) {
                (None, _) if Acc::handles(op) => AggKind::Acc(op),
                (Some(p), T_TOPK | T_BOTTOMK) if constant_scalar(p) => AggKind::K {
                    bottom: op == T_BOTTOMK,
                    param: p,
                },
                _ => return None,
            };
            let (by, names): (bool, &[String]) = match &a.modifier {
                None => (true, &[]),
                Some(LabelModifier::Include(ls)) => (true, &ls.labels),
                Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
            };
            Some((Some(Agg { kind, by, names }), inner_of(&a.expr)?))
        }
        other => Some((None, inner_of(other)?)),
    }
}

/// Whether [`Evaluator::fast_matrix`] may handle `e` (it may still decline).
pub(crate) fn is_fast_shape(e: &Expr) -> bool {
    shape_of(e).is_some()
}

/// The most group × step accumulators an aggregation may use on this path
/// (40 MB); beyond, the general path (which needs one per group) is used.
const MAX_ACCUMULATORS: usize = 1 << 20;

/// The most series × step values `topk`/`bottomk` may hold on this path (about
/// 36 MB); beyond, the general path (which holds one step at a time) is used.
const MAX_K_CELLS: usize = 1 << 22;

/// Labels of the series, and the slot (group) of each series in input order
/// when `by`/`without` apply.
fn group_slots(
    selected: &[SelectedSeries],
    by: bool,
    names: &[String],
) -> (Vec<usize>, Vec<Labels>) {
    let mut slot_of = Vec::with_capacity(selected.len());
    let mut slot_labels: Vec<Labels> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in selected {
        let key = if by {
            keep_labels(&s.labels, names)
        } else {
            drop_labels(&s.labels, names, true)
        };
        let next = slot_labels.len();
        let i = *index.entry(key.clone()).or_insert(next);
        if i == next {
            slot_labels.push(key);
        }
        slot_of.push(i);
    }
    (slot_of, slot_labels)
}

impl Evaluator<'_> {
    /// Calls `emit(series, step, value)` for every selected series and step at
    /// which the inner expression has a value, series by series, steps in
    /// order; counts per step the samples the general path's selector loads.
    /// `loaded` has one element per step.
    fn inner_values(
        &self,
        inner: &Inner<'_>,
        selected: &[SelectedSeries],
        start_ms: i64,
        step_ms: i64,
        loaded: &mut [usize],
        mut emit: impl FnMut(usize, usize, f64),
    ) -> Result<(), QueryError> {
        let (vs, range_ms) = match inner {
            Inner::Instant(vs) => (*vs, 0),
            Inner::Range { ms, .. } => (&ms.vs, duration_ms(&ms.range)),
        };
        let off = offset_ms(&vs.offset);
        let lookback = self.lookback_ms;
        let mut points: Vec<(i64, f64)> = Vec::new();
        let mut resets: Vec<u32> = Vec::new();
        for (i, s) in selected.iter().enumerate() {
            if i % 1024 == 0 {
                self.check_deadline()?;
            }
            let samples = &s.samples;
            if let Inner::Range { reset_free, .. } = inner {
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
            for (step, loaded_here) in loaded.iter_mut().enumerate() {
                let t = start_ms + step as i64 * step_ms;
                let ref_t = t.saturating_sub(off);
                let v = match inner {
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
                        *loaded_here += 1;
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
                        *loaded_here += window.len();
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
                emit(i, step, v);
            }
        }
        Ok(())
    }

    /// Evaluates `expr`, if it is of a supported shape, at every step of
    /// `start_ms..=end_ms` series-major; `None` when it is not (the caller then
    /// evaluates it step by step). With `finalize`, names marked for removal
    /// are removed and shapes that could then yield duplicate label sets are
    /// declined; without, the labels are those of the general path's vectors.
    /// Nothing is annotated before the shape is known to be handled.
    pub(crate) fn fast_matrix(
        &mut self,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        finalize: bool,
    ) -> Option<Result<FastMatrix, QueryError>> {
        if step_ms <= 0 {
            return None;
        }
        let (agg, inner) = shape_of(expr)?;
        let vs = match &inner {
            Inner::Instant(vs) => *vs,
            Inner::Range { ms, .. } => &ms.vs,
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
        // `start + k * step` stays within `[start, end]`, which must not overflow.
        let span = end_ms.checked_sub(start_ms).filter(|d| *d >= 0)?;
        let steps = usize::try_from(span / step_ms + 1).ok()?;

        // The series' own labels, as the output of the bare inner expression
        // and of `topk`: finalized, they must stay distinct.
        let series_labels = |drop: bool| -> Option<Vec<Labels>> {
            let mut out = Vec::with_capacity(selected.len());
            let mut seen = HashSet::with_capacity(if drop { selected.len() } else { 0 });
            for s in selected {
                if drop {
                    let l = without_name(&s.labels);
                    if !seen.insert(l.clone()) {
                        // Possible duplicate label sets: let the general path
                        // decide (and report) at the step where they collide.
                        return None;
                    }
                    out.push(l);
                } else {
                    // The selector's series are distinct.
                    out.push(s.labels.clone());
                }
            }
            Some(out)
        };
        let finalize_drop = finalize && inner_drops_name;
        let mut loaded = vec![0usize; steps];
        let mut by_step: Vec<Vec<(usize, f64)>> = vec![Vec::new(); steps];
        let mut rows: Vec<Vec<ModelSample>> = Vec::new();
        let mut produced = vec![0usize; steps];
        let mut param_error = None;
        let (labels, drop_name) = match &agg {
            None => {
                let labels = series_labels(finalize_drop)?;
                if let Inner::Range { name, arg, .. } = &inner {
                    self.counter_info(name, arg);
                }
                let r = if finalize {
                    // Straight into the series' points, as they come.
                    rows = vec![Vec::new(); labels.len()];
                    self.inner_values(
                        &inner,
                        selected,
                        start_ms,
                        step_ms,
                        &mut loaded,
                        |i, step, v| {
                            rows[i].push(ModelSample::new(start_ms + step as i64 * step_ms, v));
                            produced[step] += 1;
                        },
                    )
                } else {
                    self.inner_values(
                        &inner,
                        selected,
                        start_ms,
                        step_ms,
                        &mut loaded,
                        |i, step, v| by_step[step].push((i, v)),
                    )
                };
                if let Err(e) = r {
                    return Some(Err(e));
                }
                (labels, inner_drops_name && !finalize)
            }
            Some(Agg {
                kind: AggKind::Acc(op),
                by,
                names,
            }) => {
                let name_in_key = *by && names.iter().any(|n| n == METRIC_NAME);
                if finalize && name_in_key && inner_drops_name {
                    // The group's name would be removed at the end, which
                    // could make groups collide.
                    return None;
                }
                let (slot_of, slot_labels) = group_slots(selected, *by, names);
                let slots = slot_labels.len();
                if slots.saturating_mul(steps) > MAX_ACCUMULATORS {
                    return None;
                }
                if let Inner::Range { name, arg, .. } = &inner {
                    self.counter_info(name, arg);
                }
                let mut accs = vec![Acc::default(); slots * steps];
                // Per group and step, the first series that contributed: the
                // general path lists groups in that order.
                let mut first = vec![0usize; slots * steps];
                let r = self.inner_values(
                    &inner,
                    selected,
                    start_ms,
                    step_ms,
                    &mut loaded,
                    |i, step, v| {
                        let cell = slot_of[i] * steps + step;
                        if accs[cell].count == 0.0 {
                            first[cell] = i;
                        }
                        accs[cell].add(*op, v);
                    },
                );
                if let Err(e) = r {
                    return Some(Err(e));
                }
                for (step, row) in by_step.iter_mut().enumerate() {
                    let mut order: Vec<(usize, usize)> = (0..slots)
                        .filter(|slot| accs[slot * steps + step].count > 0.0)
                        .map(|slot| (first[slot * steps + step], slot))
                        .collect();
                    order.sort_unstable();
                    row.extend(
                        order
                            .into_iter()
                            .map(|(_, slot)| (slot, accs[slot * steps + step].result(*op))),
                    );
                }
                // A group is marked for name removal when a member is, and
                // only if its key holds the name (as in `aggregate`).
                (slot_labels, name_in_key && inner_drops_name)
            }
            Some(Agg {
                kind: AggKind::K { bottom, param },
                by,
                names,
            }) => {
                let n = selected.len();
                if n.saturating_mul(steps) > MAX_K_CELLS {
                    return None;
                }
                // Constant, so the general path's value at every step; an
                // evaluation error (there should be none) is left to it.
                let k = match self.scalar_arg(param, start_ms) {
                    Ok(v) => k_param(v),
                    Err(_) => return None,
                };
                let labels = series_labels(finalize_drop)?;
                let (slot_of, slot_labels) = group_slots(selected, *by, names);
                let mut members: Vec<Vec<usize>> = vec![Vec::new(); slot_labels.len()];
                for (i, slot) in slot_of.iter().enumerate() {
                    members[*slot].push(i);
                }
                if let Inner::Range { name, arg, .. } = &inner {
                    self.counter_info(name, arg);
                }
                // Step-major, so that a step's values are read together.
                let mut values = vec![f64::NAN; n * steps];
                let mut present = vec![false; n * steps];
                let r = self.inner_values(
                    &inner,
                    selected,
                    start_ms,
                    step_ms,
                    &mut loaded,
                    |i, step, v| {
                        values[step * n + i] = v;
                        present[step * n + i] = true;
                    },
                );
                if let Err(e) = r {
                    return Some(Err(e));
                }
                match k {
                    Err(e) => param_error = Some(e),
                    Ok(k) if k >= 1 => {
                        let k = usize::try_from(k).unwrap_or(usize::MAX);
                        let mut best: KBest<usize> = KBest::new(k, *bottom);
                        let mut picked: Vec<(usize, Vec<(f64, usize)>)> = Vec::new();
                        for (step, row) in by_step.iter_mut().enumerate() {
                            let base = step * n;
                            picked.clear();
                            for group in &members {
                                best.clear();
                                let mut first = None;
                                for &i in group {
                                    if present[base + i] {
                                        first.get_or_insert(i);
                                        best.offer(values[base + i], i);
                                    }
                                }
                                if let Some(first) = first {
                                    let mut m = best.members().to_vec();
                                    sort_k_members(&mut m, *bottom);
                                    picked.push((first, m));
                                }
                            }
                            // Groups in the order of their first member at
                            // this step, members best first (as `aggregate`).
                            picked.sort_unstable_by_key(|p| p.0);
                            for (_, m) in &picked {
                                row.extend(m.iter().map(|&(v, i)| (i, v)));
                            }
                        }
                    }
                    // `k < 1` selects nothing (after loading, as the general path).
                    Ok(_) => {}
                }
                (labels, inner_drops_name && !finalize)
            }
        };
        if rows.is_empty() {
            for (p, row) in produced.iter_mut().zip(&by_step) {
                *p = row.len();
            }
        }
        Some(Ok(FastMatrix {
            labels,
            drop_name,
            by_step,
            rows,
            loaded,
            produced,
            param_error,
        }))
    }

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
        let m = match self.fast_matrix(expr, start_ms, end_ms, step_ms, true)? {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        // The general path's sample limit: at each step, the points produced by
        // the steps before plus the samples its selector loads, and after the
        // step all points produced.
        let mut total = 0usize;
        for (step, (&loaded, &produced)) in m.loaded.iter().zip(&m.produced).enumerate() {
            if total.saturating_add(loaded) > self.max_samples {
                return Some(Err(QueryError::TooManySamples(self.max_samples)));
            }
            if step == 0 {
                if let Some(e) = m.param_error {
                    return Some(Err(e));
                }
            }
            total += produced;
            if total > self.max_samples {
                return Some(Err(QueryError::TooManySamples(self.max_samples)));
            }
        }
        let mut out = m.rows;
        if out.is_empty() {
            out = vec![Vec::new(); m.labels.len()];
        }
        for (step, row) in m.by_step.iter().enumerate() {
            let t = start_ms + step as i64 * step_ms;
            for &(i, v) in row {
                out[i].push(ModelSample::new(t, v));
            }
        }
        Some(Ok(m
            .labels
            .into_iter()
            .zip(out)
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(labels, samples)| Series { labels, samples })
            .collect()))
    }

    /// Records the sub-expressions of `root` (a range query's expression) that
    /// are evaluated at the query's steps and have a fast-path shape, so that
    /// [`Evaluator::precomputed`] serves them. Subqueries evaluate their inner
    /// expression at other times, so nothing below one is recorded.
    pub(crate) fn mark_fast_subexprs(&mut self, root: &Expr) {
        let mut stack = vec![root];
        while let Some(e) = stack.pop() {
            if is_fast_shape(e) {
                self.fast_nodes.insert(expr_key(e));
                continue;
            }
            match e {
                Expr::Paren(p) => stack.push(&p.expr),
                Expr::Unary(u) => stack.push(&u.expr),
                Expr::Binary(b) => {
                    stack.push(&b.lhs);
                    stack.push(&b.rhs);
                }
                Expr::Aggregate(a) => {
                    stack.push(&a.expr);
                    if let Some(p) = &a.param {
                        stack.push(p);
                    }
                }
                Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| a.as_ref())),
                Expr::Subquery(_)
                | Expr::VectorSelector(_)
                | Expr::MatrixSelector(_)
                | Expr::NumberLiteral(_)
                | Expr::StringLiteral(_)
                | Expr::Extension(_) => {}
            }
        }
    }

    /// The value of a recorded sub-expression at step time `t` of the range
    /// query, from its matrix (computed at its first evaluation, which is
    /// when the general path would first annotate it); `None` to evaluate it
    /// step by step. Like the general path, it counts the samples the selector
    /// would load at this step.
    pub(crate) fn precomputed(&mut self, e: &Expr, t: i64) -> Option<Result<Val, QueryError>> {
        let key = expr_key(e);
        if !self.fast_nodes.contains(&key) {
            return None;
        }
        let offset = t.checked_sub(self.start_ms)?;
        if self.step_ms <= 0 || offset < 0 || offset % self.step_ms != 0 {
            return None;
        }
        let step = usize::try_from(offset / self.step_ms).ok()?;
        if !self.fast_cache.contains_key(&key) {
            let m = match self.fast_matrix(e, self.start_ms, self.end_ms, self.step_ms, false) {
                None => None,
                Some(Ok(m)) => Some(m),
                Some(Err(err)) => return Some(Err(err)),
            };
            self.fast_cache.insert(key, m);
        }
        let m = self.fast_cache.get(&key)?.as_ref()?;
        let row = m.by_step.get(step)?;
        let loaded = m.loaded.get(step).copied().unwrap_or(0);
        let param_error = if step == 0 {
            m.param_error.clone()
        } else {
            None
        };
        let v: Vec<Sample> = row
            .iter()
            .map(|&(i, v)| Sample::float(m.labels[i].clone(), v, m.drop_name))
            .collect();
        if let Err(err) = self.add_samples(loaded) {
            return Some(Err(err));
        }
        if let Some(err) = param_error {
            return Some(Err(err));
        }
        Some(Ok(Val::Vector(v)))
    }
}

/// The key of an expression node in [`Evaluator::fast_nodes`]: its address
/// in the (immutable, boxed) AST.
fn expr_key(e: &Expr) -> usize {
    e as *const Expr as usize
}
