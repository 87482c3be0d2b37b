//! The engine: parses a query, fetches every selector's data up front from a
//! [`Queryable`], then evaluates synchronously over that data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, VectorSelector};
use strata_model::{Labels, Matcher, Sample as ModelSample, Series};
use strata_status::ServiceError;

use crate::error::QueryError;
use crate::eval::{
    at_ms, duration_ms, node_key, offset_ms, selector_matchers, without_name, Evaluator, HPoint,
    Sample, SelectedSeries, SelectorData, Val,
};
use crate::histogram::FloatHistogram;
use crate::value::{HistogramSample, HistogramSeries, InstantSample, QueryResult, Value};

/// Where the engine reads series from.
#[async_trait::async_trait]
pub trait Queryable: Send + Sync {
    /// Series matching all matchers, with their float samples in
    /// `[start_ms, end_ms]`, sorted by labels.
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, ServiceError>;

    /// Series matching all matchers, with their native-histogram samples in
    /// `[start_ms, end_ms]`, sorted by labels. A series with both kinds of
    /// samples appears in both answers. By default there are none: Strata's
    /// storage holds no native histograms yet.
    async fn select_histograms(
        &self,
        _matchers: &[Matcher],
        _start_ms: i64,
        _end_ms: i64,
    ) -> Result<Vec<HistogramSeries>, ServiceError> {
        Ok(Vec::new())
    }
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the newest sample (Prometheus's
    /// `--query.lookback-delta`, default 5m).
    pub lookback_delta_ms: i64,
    /// The most samples a query may hold at once.
    pub max_samples: usize,
    /// The longest a query may run, fetching included.
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// The most points a range query may return per series (Prometheus's API limit).
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// The PromQL engine. Cheap to share; holds only its options.
#[derive(Debug, Clone)]
pub struct Engine {
    opts: EngineOptions,
    fast_path: bool,
}

/// One selector to fetch: its key, matcher sets and time range (inclusive).
struct Fetch {
    key: usize,
    matcher_sets: Vec<Vec<Matcher>>,
    min_ms: i64,
    max_ms: i64,
}

struct Planner {
    start_ms: i64,
    end_ms: i64,
    lookback_ms: i64,
    fetches: Vec<Fetch>,
}

impl Planner {
    fn selector(
        &mut self,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
        window: i64,
    ) -> Result<(), QueryError> {
        let (l, h) = match at_ms(&vs.at, self.start_ms, self.end_ms) {
            Some(a) => (a, a),
            None => (lo, hi),
        };
        let off = offset_ms(&vs.offset);
        self.fetches.push(Fetch {
            key: node_key(vs),
            matcher_sets: selector_matchers(vs)?,
            min_ms: l.saturating_sub(off).saturating_sub(window),
            max_ms: h.saturating_sub(off),
        });
        Ok(())
    }

    /// Collects the selectors below `e`, which is evaluated at times in `[lo, hi]`.
    fn walk(&mut self, e: &Expr, lo: i64, hi: i64) -> Result<(), QueryError> {
        match e {
            Expr::VectorSelector(vs) => self.selector(vs, lo, hi, self.lookback_ms),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs, lo, hi, duration_ms(&ms.range)),
            Expr::Subquery(sq) => {
                let (l, h) = match at_ms(&sq.at, self.start_ms, self.end_ms) {
                    Some(a) => (a, a),
                    None => (lo, hi),
                };
                let off = offset_ms(&sq.offset);
                let h = h.saturating_sub(off);
                let l = l.saturating_sub(off).saturating_sub(duration_ms(&sq.range));
                self.walk(&sq.expr, l, h)
            }
            Expr::Paren(p) => self.walk(&p.expr, lo, hi),
            Expr::Unary(u) => self.walk(&u.expr, lo, hi),
            Expr::Binary(b) => {
                self.walk(&b.lhs, lo, hi)?;
                self.walk(&b.rhs, lo, hi)
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, lo, hi)?;
                }
                self.walk(&a.expr, lo, hi)
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, lo, hi)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
        }
    }
}

/// Fetches every planned selector; matcher sets of one selector are unioned.
async fn fetch_all(q: &dyn Queryable, fetches: Vec<Fetch>) -> Result<SelectorData, QueryError> {
    let mut data = SelectorData::new();
    for f in fetches {
        let mut merged: BTreeMap<Labels, Vec<ModelSample>> = BTreeMap::new();
        let mut hists: BTreeMap<Labels, Vec<HPoint>> = BTreeMap::new();
        let single = f.matcher_sets.len() == 1;
        let mut series_out = Vec::new();
        for set in &f.matcher_sets {
            let got = q
                .select(set, f.min_ms, f.max_ms)
                .await
                .map_err(QueryError::Storage)?;
            for h in q
                .select_histograms(set, f.min_ms, f.max_ms)
                .await
                .map_err(QueryError::Storage)?
            {
                hists.entry(h.labels).or_insert_with(|| {
                    h.samples
                        .into_iter()
                        .map(|s| (s.timestamp_ms, Arc::new(s.histogram)))
                        .collect()
                });
            }
            if single {
                series_out = got;
            } else {
                for s in got {
                    merged.entry(s.labels).or_insert(s.samples);
                }
            }
        }
        if !single {
            series_out = merged
                .into_iter()
                .map(|(labels, samples)| Series { labels, samples })
                .collect();
        }
        let mut selected: Vec<SelectedSeries> = series_out
            .into_iter()
            .map(|s| SelectedSeries {
                histograms: if hists.is_empty() {
                    Vec::new()
                } else {
                    hists.remove(&s.labels).unwrap_or_default()
                },
                labels: s.labels,
                samples: s.samples,
            })
            .collect();
        if !hists.is_empty() {
            // Series with histogram samples only; keep the order by labels.
            selected.extend(
                hists
                    .into_iter()
                    .map(|(labels, histograms)| SelectedSeries {
                        labels,
                        samples: Vec::new(),
                        histograms,
                    }),
            );
            selected.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        data.insert(f.key, selected);
    }
    Ok(data)
}

/// One element of a returned vector: labels, float value, histogram.
type Finalized = (Labels, f64, Option<Arc<FloatHistogram>>);

/// Removes names marked for removal and rejects duplicate label sets.
fn finalize(v: Vec<Sample>) -> Result<Vec<Finalized>, QueryError> {
    let mut seen = HashSet::with_capacity(v.len());
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let labels = if s.drop_name {
            without_name(&s.labels)
        } else {
            s.labels
        };
        if !seen.insert(labels.clone()) {
            return Err(QueryError::exec(
                "vector cannot contain metrics with the same labelset",
            ));
        }
        out.push((labels, s.value, s.hist));
    }
    Ok(out)
}

/// Splits range-vector series into float series and histogram series, both
/// sorted by labels.
fn split_matrix(
    m: Vec<(Labels, Vec<ModelSample>, Vec<HPoint>)>,
) -> (Vec<Series>, Vec<HistogramSeries>) {
    let mut floats = Vec::with_capacity(m.len());
    let mut hists = Vec::new();
    for (labels, samples, hpoints) in m {
        if !hpoints.is_empty() {
            hists.push(HistogramSeries {
                labels: labels.clone(),
                samples: hpoints
                    .into_iter()
                    .map(|(t, h)| HistogramSample {
                        timestamp_ms: t,
                        histogram: Arc::unwrap_or_clone(h),
                    })
                    .collect(),
            });
        }
        if !samples.is_empty() {
            floats.push(Series { labels, samples });
        }
    }
    floats.sort_by(|a, b| a.labels.cmp(&b.labels));
    hists.sort_by(|a, b| a.labels.cmp(&b.labels));
    (floats, hists)
}

/// Whether `e` calls a sorting function anywhere.
fn calls_sort(e: &Expr) -> bool {
    match e {
        Expr::Call(c) => {
            matches!(
                c.func.name,
                "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
            ) || c.args.args.iter().any(|a| calls_sort(a))
        }
        Expr::Aggregate(a) => calls_sort(&a.expr),
        Expr::Binary(b) => calls_sort(&b.lhs) || calls_sort(&b.rhs),
        Expr::Paren(p) => calls_sort(&p.expr),
        Expr::Unary(u) => calls_sort(&u.expr),
        _ => false,
    }
}

struct EvalRequest {
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    instant: bool,
    /// Whether range queries may take the series-major fast path (`fast.rs`);
    /// off only in tests that compare it with the general path.
    fast_path: bool,
    deadline: Option<Instant>,
    canceled: Option<Arc<AtomicBool>>,
}

/// Sets the cancel flag when dropped, i.e. when the caller stops waiting.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn evaluate(
    expr: &Expr,
    data: &SelectorData,
    opts: &EngineOptions,
    req: &EvalRequest,
) -> Result<QueryResult, QueryError> {
    let mut ev = Evaluator {
        data,
        start_ms: req.start_ms,
        end_ms: req.end_ms,
        step_ms: req.step_ms,
        lookback_ms: opts.lookback_delta_ms,
        deadline: req.deadline,
        canceled: req.canceled.clone(),
        max_samples: opts.max_samples,
        cur_samples: 0,
        warnings: Vec::new(),
        infos: Vec::new(),
        fast_nodes: HashSet::new(),
        fast_cache: HashMap::new(),
    };
    let mut histograms = Vec::new();
    let value = if req.instant {
        ev.check_deadline()?;
        let t = req.start_ms;
        match ev.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar {
                timestamp_ms: t,
                value: v,
            },
            Val::Str(s) => Value::String {
                timestamp_ms: t,
                value: s,
            },
            Val::Vector(v) => Value::Vector(
                finalize(v)?
                    .into_iter()
                    .map(|(labels, value, hist)| InstantSample {
                        labels,
                        timestamp_ms: t,
                        value,
                        histogram: hist.map(|h| Box::new(Arc::unwrap_or_clone(h))),
                    })
                    .collect(),
            ),
            Val::Matrix(m) => {
                let mut seen = HashSet::new();
                let mut out = Vec::with_capacity(m.len());
                for s in m {
                    let labels = if s.drop_name {
                        without_name(&s.labels)
                    } else {
                        s.labels
                    };
                    if !seen.insert(labels.clone()) {
                        return Err(QueryError::exec(
                            "vector cannot contain metrics with the same labelset",
                        ));
                    }
                    out.push((
                        labels,
                        s.points
                            .into_iter()
                            .map(|(t, v)| ModelSample::new(t, v))
                            .collect(),
                        s.hists,
                    ));
                }
                let (floats, hists) = split_matrix(out);
                histograms = hists;
                Value::Matrix(floats)
            }
        }
    } else {
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                return Err(QueryError::exec(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                match other {
                    ValueType::Matrix => "range vector",
                    _ => "string",
                }
            )))
            }
        }
        if calls_sort(expr) {
            ev.warn(
                "PromQL warning: sort is ineffective for range queries since results are always ordered by labels"
                    .to_string(),
            );
        }
        let mut out: Vec<Series> = match req
            .fast_path
            .then(|| ev.try_fast_range(expr, req.start_ms, req.end_ms, req.step_ms))
            .flatten()
        {
            Some(r) => r?,
            None => {
                if req.fast_path {
                    // Fast-path shapes inside the expression are computed once.
                    ev.mark_fast_subexprs(expr);
                }
                let (floats, hists) = range_step_by_step(&mut ev, expr, opts, req)?;
                histograms = hists;
                floats
            }
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Value::Matrix(out)
    };
    Ok(QueryResult {
        value,
        histograms,
        warnings: ev.warnings,
        infos: ev.infos,
    })
}

/// Evaluates a range query step by step (the general path): float series and
/// histogram series.
fn range_step_by_step(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    opts: &EngineOptions,
    req: &EvalRequest,
) -> Result<(Vec<Series>, Vec<HistogramSeries>), QueryError> {
    let mut series: HashMap<Labels, Vec<ModelSample>> = HashMap::new();
    let mut hist_series: HashMap<Labels, Vec<HistogramSample>> = HashMap::new();
    let mut points = 0usize;
    let mut t = req.start_ms;
    while t <= req.end_ms {
        ev.check_deadline()?;
        ev.cur_samples = points;
        match ev.eval(expr, t)? {
            Val::Scalar(v) => {
                series
                    .entry(Labels::default())
                    .or_default()
                    .push(ModelSample::new(t, v));
                points += 1;
            }
            Val::Vector(v) => {
                for (labels, value, hist) in finalize(v)? {
                    match hist {
                        Some(h) => hist_series
                            .entry(labels)
                            .or_default()
                            .push(HistogramSample {
                                timestamp_ms: t,
                                histogram: Arc::unwrap_or_clone(h),
                            }),
                        None => series
                            .entry(labels)
                            .or_default()
                            .push(ModelSample::new(t, value)),
                    }
                    points += 1;
                }
            }
            other => {
                return Err(QueryError::exec(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                other.type_name()
            )))
            }
        }
        if points > opts.max_samples {
            return Err(QueryError::TooManySamples(opts.max_samples));
        }
        t = match t.checked_add(req.step_ms) {
            Some(x) => x,
            None => break,
        };
    }
    let mut hists: Vec<HistogramSeries> = hist_series
        .into_iter()
        .map(|(labels, samples)| HistogramSeries { labels, samples })
        .collect();
    hists.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok((
        series
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect(),
        hists,
    ))
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self {
            opts,
            fast_path: true,
        }
    }

    /// The same engine without the series-major fast path, so that tests can
    /// compare it with the general step-by-step evaluation.
    #[doc(hidden)]
    pub fn without_fast_path(mut self) -> Self {
        self.fast_path = false;
        self
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `time_ms`.
    pub async fn instant_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.run(q, query, time_ms, time_ms, 0, true).await
    }

    /// Evaluates `query` at `start_ms, start_ms + step_ms, ...` up to `end_ms`.
    pub async fn range_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::Execution(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::Execution(
                "end timestamp must not be before start time".into(),
            ));
        }
        if end_ms.saturating_sub(start_ms) / step_ms > MAX_POINTS_PER_SERIES {
            return Err(QueryError::Execution(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        self.run(q, query, start_ms, end_ms, step_ms, false).await
    }

    /// Evaluates an already parsed expression at `time_ms` (used by the script
    /// runner for its step-invariance check).
    pub(crate) async fn instant_query_expr(
        &self,
        q: &dyn Queryable,
        expr: Expr,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.run_expr(q, Box::new(expr), time_ms, time_ms, 0, true)
            .await
    }

    async fn run(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        instant: bool,
    ) -> Result<QueryResult, QueryError> {
        // Boxed so that node addresses (the keys of the fetched data) stay put
        // when the expression moves into the evaluation task.
        let expr = Box::new(promql_parser::parser::parse(query).map_err(QueryError::Parse)?);
        self.run_expr(q, expr, start_ms, end_ms, step_ms, instant)
            .await
    }

    async fn run_expr(
        &self,
        q: &dyn Queryable,
        expr: Box<Expr>,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        instant: bool,
    ) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        let mut planner = Planner {
            start_ms,
            end_ms,
            lookback_ms: self.opts.lookback_delta_ms,
            fetches: Vec::new(),
        };
        planner.walk(&expr, start_ms, end_ms)?;
        let timed_out = || QueryError::Timeout("query timed out in query execution".to_string());
        let data = tokio::time::timeout(self.opts.timeout, fetch_all(q, planner.fetches))
            .await
            .map_err(|_| timed_out())??;
        let opts = self.opts.clone();
        let canceled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(Arc::clone(&canceled));
        let req = EvalRequest {
            start_ms,
            end_ms,
            step_ms,
            instant,
            fast_path: self.fast_path,
            deadline: started.checked_add(self.opts.timeout),
            canceled: Some(Arc::clone(&canceled)),
        };
        let task = tokio::task::spawn_blocking(move || evaluate(&expr, &data, &opts, &req));
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => Err(QueryError::Canceled("query was canceled".into())),
            Err(_) => Err(QueryError::Execution(
                "internal error: query evaluation panicked".into(),
            )),
        }
    }
}
