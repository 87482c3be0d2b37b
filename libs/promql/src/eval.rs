//! The evaluator: walks the parsed expression at one evaluation time over data
//! that was fetched up front. Range queries and subqueries evaluate the same code
//! once per step, which is what Prometheus's range evaluation is equivalent to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};
use strata_model::{is_stale_nan, Labels};

use crate::ast::{at_ms, duration_ms, node_key, offset_ms, DEFAULT_SUBQUERY_STEP_MS};
use crate::error::QueryError;
use crate::fast::matrix::FastMatrix;
use crate::model::{
    HPoint, RangeArg, RangeSeries, Sample, Selected, SelectedSeries, SelectorData, Val,
};

/// Evaluation state for one query.
#[derive(Debug)]
pub(crate) struct Evaluator<'a> {
    pub(crate) data: &'a SelectorData,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) step_ms: i64,
    pub(crate) lookback_ms: i64,
    pub(crate) deadline: Option<Instant>,
    /// Set when the caller stopped waiting for the result.
    pub(crate) canceled: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    pub(crate) max_samples: usize,
    pub(crate) cur_samples: usize,
    pub(crate) warnings: Vec<String>,
    pub(crate) infos: Vec<String>,
    /// Range queries: the sub-expressions the fast path computes as whole
    /// matrices (`fast.rs`), by node address, and those matrices once computed
    /// (`None`: it declined, evaluate step by step). Empty otherwise.
    pub(crate) fast_nodes: HashSet<usize>,
    pub(crate) fast_cache: HashMap<usize, Option<FastMatrix>>,
}

impl Evaluator<'_> {
    pub(crate) fn check_deadline(&self) -> Result<(), QueryError> {
        if let Some(c) = &self.canceled {
            if c.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(QueryError::Canceled("query was canceled".to_string()));
            }
        }
        if let Some(d) = self.deadline {
            if Instant::now() > d {
                return Err(QueryError::Timeout(
                    "query timed out in expression evaluation".to_string(),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn add_samples(&mut self, n: usize) -> Result<(), QueryError> {
        self.cur_samples = self.cur_samples.saturating_add(n);
        if self.cur_samples > self.max_samples {
            return Err(QueryError::TooManySamples(self.max_samples));
        }
        Ok(())
    }

    pub(crate) fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    pub(crate) fn info(&mut self, msg: String) {
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }

    /// Evaluates `e` at time `t` (milliseconds).
    pub(crate) fn eval(&mut self, e: &Expr, t: i64) -> Result<Val, QueryError> {
        if !self.fast_nodes.is_empty() {
            if let Some(v) = self.precomputed(e, t) {
                return v;
            }
        }
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut vec) => {
                    for s in &mut vec {
                        s.value = -s.value;
                        if let Some(h) = &mut s.hist {
                            Arc::make_mut(h).mul(-1.0);
                        }
                        s.drop_name = true;
                    }
                    Ok(Val::Vector(vec))
                }
                other => Err(QueryError::exec(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => {
                let v = self
                    .select_instant(vs, t)?
                    .into_iter()
                    .map(|(labels, _, value, hist)| Sample {
                        labels,
                        value,
                        hist,
                        drop_name: false,
                    })
                    .collect();
                Ok(Val::Vector(v))
            }
            Expr::MatrixSelector(ms) => Ok(Val::Matrix(self.select_range(ms, t)?.series)),
            Expr::Subquery(sq) => Ok(Val::Matrix(self.subquery(sq, t)?.series)),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Call(c) => self.call(c, t),
            Expr::Extension(_) => Err(QueryError::exec("extension expressions are not supported")),
        }
    }

    pub(crate) fn series_of(&self, vs: &VectorSelector) -> &[SelectedSeries] {
        self.data
            .get(&node_key(vs))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The instant vector a selector yields at `t`: per series the newest sample in
    /// the left-open lookback window, unless it is a staleness marker; the newest
    /// of a float and a histogram sample when the series has both kinds.
    pub(crate) fn select_instant(
        &mut self,
        vs: &VectorSelector,
        t: i64,
    ) -> Result<Vec<Selected>, QueryError> {
        let ref_t = at_ms(&vs.at, self.start_ms, self.end_ms)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&vs.offset));
        let min_t = ref_t.saturating_sub(self.lookback_ms);
        let mut out = Vec::new();
        for s in self.series_of(vs) {
            let idx = s.samples.partition_point(|p| p.timestamp_ms <= ref_t);
            let float = idx.checked_sub(1).map(|i| s.samples[i]);
            if !s.histograms.is_empty() {
                let hi = s.histograms.partition_point(|p| p.0 <= ref_t);
                if let Some((ht, h)) = hi.checked_sub(1).map(|i| &s.histograms[i]) {
                    if float.is_none_or(|f| f.timestamp_ms < *ht) {
                        if *ht > min_t {
                            out.push((s.labels.clone(), *ht, 0.0, Some(Arc::clone(h))));
                        }
                        continue;
                    }
                }
            }
            let Some(p) = float else { continue };
            if p.timestamp_ms <= min_t || is_stale_nan(p.value) {
                continue;
            }
            out.push((s.labels.clone(), p.timestamp_ms, p.value, None));
        }
        self.add_samples(out.len())?;
        Ok(out)
    }

    /// The range vector a matrix selector yields at `t`: the samples in
    /// `(t - offset - range, t - offset]`, staleness markers removed.
    pub(crate) fn select_range(
        &mut self,
        ms: &MatrixSelector,
        t: i64,
    ) -> Result<RangeArg, QueryError> {
        let vs = &ms.vs;
        let end = at_ms(&vs.at, self.start_ms, self.end_ms)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&vs.offset));
        let range = duration_ms(&ms.range);
        let start = end.saturating_sub(range);
        let mut out = Vec::new();
        let mut n = 0;
        for s in self.series_of(vs) {
            let lo = s.samples.partition_point(|p| p.timestamp_ms <= start);
            let hi = s.samples.partition_point(|p| p.timestamp_ms <= end);
            let hists: Vec<HPoint> = if s.histograms.is_empty() {
                Vec::new()
            } else {
                let hlo = s.histograms.partition_point(|p| p.0 <= start);
                let hhi = s.histograms.partition_point(|p| p.0 <= end);
                s.histograms[hlo..hhi.max(hlo)].to_vec()
            };
            if lo >= hi && hists.is_empty() {
                continue;
            }
            let points: Vec<(i64, f64)> = s.samples[lo..hi.max(lo)]
                .iter()
                .filter(|p| !is_stale_nan(p.value))
                .map(|p| (p.timestamp_ms, p.value))
                .collect();
            if points.is_empty() && hists.is_empty() {
                continue;
            }
            n += points.len() + hists.len();
            out.push(RangeSeries {
                labels: s.labels.clone(),
                points,
                hists,
                drop_name: false,
            });
        }
        self.add_samples(n)?;
        Ok(RangeArg {
            series: out,
            range_ms: range,
            end_ms: end,
        })
    }

    /// A subquery at `t`: the inner expression evaluated at every multiple of the
    /// step inside `(t - offset - range, t - offset]`.
    pub(crate) fn subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<RangeArg, QueryError> {
        let end = at_ms(&sq.at, self.start_ms, self.end_ms)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&sq.offset));
        let range = duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(duration_ms)
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        let start = end.saturating_sub(range);
        let mut ts = start.div_euclid(step).saturating_mul(step);
        if ts <= start {
            ts = ts.saturating_add(step);
        }
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut out: Vec<RangeSeries> = Vec::new();
        while ts <= end {
            self.check_deadline()?;
            match self.eval(&sq.expr, ts)? {
                Val::Vector(v) => {
                    self.add_samples(v.len())?;
                    for s in v {
                        let i = match index.get(&s.labels) {
                            Some(&i) => i,
                            None => {
                                index.insert(s.labels.clone(), out.len());
                                out.push(RangeSeries {
                                    labels: s.labels,
                                    points: Vec::new(),
                                    hists: Vec::new(),
                                    drop_name: false,
                                });
                                out.len() - 1
                            }
                        };
                        match s.hist {
                            Some(h) => out[i].hists.push((ts, h)),
                            None => out[i].points.push((ts, s.value)),
                        }
                        out[i].drop_name |= s.drop_name;
                    }
                }
                Val::Scalar(v) => {
                    self.add_samples(1)?;
                    match out.first_mut() {
                        Some(s) => s.points.push((ts, v)),
                        None => out.push(RangeSeries {
                            labels: Labels::default(),
                            points: vec![(ts, v)],
                            hists: Vec::new(),
                            drop_name: false,
                        }),
                    }
                }
                other => {
                    return Err(QueryError::exec(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    )))
                }
            }
            ts = match ts.checked_add(step) {
                Some(x) => x,
                None => break,
            };
        }
        Ok(RangeArg {
            series: out,
            range_ms: range,
            end_ms: end,
        })
    }

    /// Evaluates a range-vector argument (matrix selector or subquery, possibly in
    /// parentheses).
    pub(crate) fn range_arg(&mut self, e: &Expr, t: i64) -> Result<RangeArg, QueryError> {
        match e {
            Expr::Paren(p) => self.range_arg(&p.expr, t),
            Expr::MatrixSelector(ms) => self.select_range(ms, t),
            Expr::Subquery(sq) => self.subquery(sq, t),
            other => Err(QueryError::exec(format!(
                "expected a range vector, got {}",
                other.value_type()
            ))),
        }
    }

    pub(crate) fn scalar_arg(&mut self, e: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(e, t)? {
            Val::Scalar(v) => Ok(v),
            other => Err(QueryError::exec(format!(
                "expected a scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn vector_arg(&mut self, e: &Expr, t: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(e, t)? {
            Val::Vector(v) => Ok(v),
            other => Err(QueryError::exec(format!(
                "expected an instant vector, got {}",
                other.type_name()
            ))),
        }
    }
}
