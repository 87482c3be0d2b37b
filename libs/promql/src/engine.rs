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

use crate::ast::{
    at_ms, duration_ms, node_key, offset_ms, selector_matchers, DEFAULT_SUBQUERY_STEP_MS,
};
use crate::error::QueryError;
use crate::eval::Evaluator;
use crate::guard::{check_expr, parse_query, QueryShapeLimits};
use crate::histogram::FloatHistogram;
use crate::model::{without_name, HPoint, Sample, SelectedSeries, SelectorData, Val};
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
    /// The longest a query may run, parsing and fetching included.
    pub timeout: Duration,
    /// The limits on the query's text and tree, checked before it is parsed.
    pub shape: QueryShapeLimits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            shape: QueryShapeLimits::default(),
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

/// The stack of a thread that parses, plans or evaluates a query. The walks
/// over the tree recurse once per level, and one level of evaluation takes a
/// few kilobytes in an unoptimised build: 64 MiB holds the deepest tree
/// [`QueryShapeLimits::max_depth`] allows many times over (the engine tests run
/// every kind of nesting at the default limit). Only the pages a query touches
/// become memory.
const QUERY_THREAD_STACK_BYTES: usize = 64 << 20;

/// Runs one step of a query (parse, plan, evaluate) on a thread of its own with
/// a stack of [`QUERY_THREAD_STACK_BYTES`]; a panic there becomes
/// [`QueryError::Internal`] instead of taking the process down.
pub(crate) async fn on_query_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("strata-query".into())
        .stack_size(QUERY_THREAD_STACK_BYTES)
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(QueryError::Internal(format!(
                        "internal error: query evaluation panicked: {what}"
                    )))
                });
            // The caller may have stopped waiting (timeout, cancel).
            let _ = tx.send(result);
        })
        .map_err(|e| QueryError::Internal(format!("could not start a query thread: {e}")))?;
    rx.await.unwrap_or_else(|_| {
        Err(QueryError::Internal(
            "internal error: the query thread ended without an answer".into(),
        ))
    })
}

/// One selector to fetch: its key, matcher sets and time range (inclusive).
struct Fetch {
    key: usize,
    matcher_sets: Vec<Vec<Matcher>>,
    min_ms: i64,
    max_ms: i64,
    /// How many times the selector is evaluated for one step of the query: the
    /// product of the step counts of the subqueries around it (1 outside any).
    evaluations: u64,
}

struct Planner {
    start_ms: i64,
    end_ms: i64,
    lookback_ms: i64,
    fetches: Vec<Fetch>,
    /// The most evaluations of any subquery's inner expression for one step
    /// of the query (nested subqueries multiply).
    max_evaluations: u64,
}

/// What planning a query produced: the selectors to fetch and the work the
/// subqueries imply.
struct Plan {
    fetches: Vec<Fetch>,
    max_evaluations: u64,
}

/// How many steps a subquery evaluates its expression at for one outer step.
fn subquery_steps(sq: &promql_parser::parser::SubqueryExpr) -> u64 {
    let step = sq
        .step
        .as_ref()
        .map(duration_ms)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
    let range = duration_ms(&sq.range).max(0);
    u64::try_from(range / step)
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

impl Planner {
    fn selector(
        &mut self,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
        window: i64,
        evaluations: u64,
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
            evaluations,
        });
        Ok(())
    }

    /// Collects the selectors below `e`, which is evaluated at times in `[lo, hi]`,
    /// `evaluations` times for each step of the query.
    fn walk(&mut self, e: &Expr, lo: i64, hi: i64, evaluations: u64) -> Result<(), QueryError> {
        match e {
            Expr::VectorSelector(vs) => self.selector(vs, lo, hi, self.lookback_ms, evaluations),
            Expr::MatrixSelector(ms) => {
                self.selector(&ms.vs, lo, hi, duration_ms(&ms.range), evaluations)
            }
            Expr::Subquery(sq) => {
                let evaluations = evaluations.saturating_mul(subquery_steps(sq));
                self.max_evaluations = self.max_evaluations.max(evaluations);
                let (l, h) = match at_ms(&sq.at, self.start_ms, self.end_ms) {
                    Some(a) => (a, a),
                    None => (lo, hi),
                };
                let off = offset_ms(&sq.offset);
                let h = h.saturating_sub(off);
                let l = l.saturating_sub(off).saturating_sub(duration_ms(&sq.range));
                self.walk(&sq.expr, l, h, evaluations)
            }
            Expr::Paren(p) => self.walk(&p.expr, lo, hi, evaluations),
            Expr::Unary(u) => self.walk(&u.expr, lo, hi, evaluations),
            Expr::Binary(b) => {
                self.walk(&b.lhs, lo, hi, evaluations)?;
                self.walk(&b.rhs, lo, hi, evaluations)
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, lo, hi, evaluations)?;
                }
                self.walk(&a.expr, lo, hi, evaluations)
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, lo, hi, evaluations)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
        }
    }
}

/// Refuses a query whose subqueries would hold more than `max_samples` samples
/// at once, before any of it is evaluated: each evaluation of a subquery's
/// expression yields at least one sample per series its selectors selected
/// (at least one, for an expression without selectors). Prometheus finds out
/// only while it evaluates; `up[1y:1ms]` would run until the timeout.
fn check_subquery_samples(
    max_samples: usize,
    max_evaluations: u64,
    selected: impl Iterator<Item = (u64, usize)>,
) -> Result<(), QueryError> {
    let estimate = selected
        .map(|(evaluations, series)| {
            evaluations.saturating_mul(u64::try_from(series.max(1)).unwrap_or(u64::MAX))
        })
        .fold(max_evaluations, u64::max);
    if estimate > u64::try_from(max_samples).unwrap_or(u64::MAX) {
        return Err(QueryError::TooManySamples(max_samples));
    }
    Ok(())
}

/// Fetches every planned selector; matcher sets of one selector are unioned.
async fn fetch_all(q: &dyn Queryable, fetches: &[Fetch]) -> Result<SelectorData, QueryError> {
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
        let started = Instant::now();
        let text = query.to_owned();
        let shape = self.opts.shape;
        // Parsed on a query thread, within the timeout: the parser's checks
        // recurse once per level of the tree.
        let expr = self
            .within_timeout(
                started,
                on_query_thread(move || {
                    // Boxed so that node addresses (the keys of the fetched
                    // data) stay put when the expression moves between threads.
                    parse_query(&text, &shape).map(Box::new)
                }),
            )
            .await?;
        self.run_parsed(q, expr, start_ms, end_ms, step_ms, instant, started)
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
        check_expr(&expr, &self.opts.shape)?;
        self.run_parsed(q, expr, start_ms, end_ms, step_ms, instant, Instant::now())
            .await
    }

    /// `work`, failing with a timeout once the query has run for its timeout
    /// since `started`.
    async fn within_timeout<T>(
        &self,
        started: Instant,
        work: impl std::future::Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        let left = self.opts.timeout.saturating_sub(started.elapsed());
        tokio::time::timeout(left, work)
            .await
            .map_err(|_| QueryError::Timeout("query timed out in query execution".to_string()))?
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_parsed(
        &self,
        q: &dyn Queryable,
        expr: Box<Expr>,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        instant: bool,
        started: Instant,
    ) -> Result<QueryResult, QueryError> {
        let lookback_ms = self.opts.lookback_delta_ms;
        let (expr, plan) = self
            .within_timeout(
                started,
                on_query_thread(move || {
                    let mut planner = Planner {
                        start_ms,
                        end_ms,
                        lookback_ms,
                        fetches: Vec::new(),
                        max_evaluations: 0,
                    };
                    planner.walk(&expr, start_ms, end_ms, 1)?;
                    let plan = Plan {
                        fetches: planner.fetches,
                        max_evaluations: planner.max_evaluations,
                    };
                    Ok((expr, plan))
                }),
            )
            .await?;
        check_subquery_samples(
            self.opts.max_samples,
            plan.max_evaluations,
            std::iter::empty(),
        )?;
        let data = self
            .within_timeout(started, fetch_all(q, &plan.fetches))
            .await?;
        check_subquery_samples(
            self.opts.max_samples,
            plan.max_evaluations,
            plan.fetches
                .iter()
                .filter(|f| f.evaluations > 1)
                .map(|f| (f.evaluations, data.get(&f.key).map_or(0, Vec::len))),
        )?;
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
        // The expression and the data are dropped on the query thread too.
        on_query_thread(move || evaluate(&expr, &data, &opts, &req)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_on_a_query_thread_is_an_error_of_that_query() {
        let r: Result<(), QueryError> = on_query_thread(|| panic!("a bug in one walk")).await;
        match r {
            Err(QueryError::Internal(m)) => assert!(m.contains("a bug in one walk"), "{m}"),
            other => panic!("expected an internal error, got {other:?}"),
        }
        // The next query runs as usual.
        assert_eq!(on_query_thread(|| Ok(7)).await, Ok(7));
    }

    #[tokio::test]
    async fn query_threads_have_the_large_stack() {
        // 16 MiB on the stack would overflow a default (2 MiB) thread.
        let r = on_query_thread(|| {
            let big = [1u8; 16 << 20];
            Ok(std::hint::black_box(&big)
                .iter()
                .map(|&b| u64::from(b))
                .sum::<u64>())
        })
        .await;
        assert_eq!(r, Ok(16 << 20));
    }
}
