//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, `count_values`, ...).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::{
    TokenId, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX,
    T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use strata_model::{is_valid_label_name, Labels, METRIC_NAME};

use crate::ast::string_arg;
use crate::error::QueryError;
use crate::eval::Evaluator;
use crate::histogram::{FloatHistogram, HistogramError};
use crate::mathx::{format_value, kahan_sum_inc, nan_first_cmp, quantile};
use crate::model::{drop_labels, keep_labels, set_label, Sample, Val};

/// The running value of one group for the operators that need no member list
/// (`sum avg min max count group stddev stdvar`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Acc {
    pub(crate) count: f64,
    value: f64,
    kahan_c: f64,
    mean: f64,
    incremental_mean: bool,
}

impl Acc {
    /// Whether `op` is one of the operators [`Acc`] computes.
    pub(crate) fn handles(op: TokenId) -> bool {
        matches!(
            op,
            T_SUM | T_AVG | T_MAX | T_MIN | T_COUNT | T_GROUP | T_STDDEV | T_STDVAR
        )
    }

    /// Adds one value (only for operators [`Acc::handles`]).
    pub(crate) fn add(&mut self, op: TokenId, f: f64) {
        let first = self.count == 0.0;
        self.count += 1.0;
        match op {
            T_SUM => {
                (self.value, self.kahan_c) = kahan_sum_inc(f, self.value, self.kahan_c);
            }
            T_AVG => {
                if first {
                    self.value = f;
                    self.mean = f;
                } else {
                    avg_step(self, f);
                }
            }
            T_MAX if first || self.value < f || self.value.is_nan() => self.value = f,
            T_MIN if first || self.value > f || self.value.is_nan() => self.value = f,
            T_STDDEV | T_STDVAR => {
                if first {
                    self.mean = f;
                    self.value = if f.is_nan() || f.is_infinite() {
                        f64::NAN
                    } else {
                        0.0
                    };
                } else {
                    let delta = f - self.mean;
                    self.mean += delta / self.count;
                    self.value += delta * (f - self.mean);
                }
            }
            _ => {}
        }
    }

    /// The group's value (only for operators [`Acc::handles`]).
    pub(crate) fn result(&self, op: TokenId) -> f64 {
        match op {
            T_SUM => self.value + self.kahan_c,
            T_AVG => {
                if self.incremental_mean {
                    self.mean + self.kahan_c
                } else {
                    self.value / self.count + self.kahan_c / self.count
                }
            }
            T_MAX | T_MIN => self.value,
            T_COUNT => self.count,
            T_GROUP => 1.0,
            T_STDVAR => self.value / self.count,
            T_STDDEV => (self.value / self.count).sqrt(),
            _ => f64::NAN,
        }
    }
}

/// Running state of one group.
#[derive(Debug, Default)]
struct Group {
    labels: Labels,
    drop_name: bool,
    acc: Acc,
    values: Vec<f64>,
    members: Vec<Sample>,
    /// `topk`/`bottomk` members.
    best: KBest<Sample>,
    /// `sum`/`avg` of native histograms: the histograms, and the metric name
    /// of the first (for warnings).
    hists: Vec<Arc<FloatHistogram>>,
    hist_name: String,
}

/// Prometheus's warning for histograms that cannot be added together.
pub(crate) fn histogram_error_warning(e: HistogramError, metric_name: &str) -> String {
    match e {
        HistogramError::IncompatibleSchema => format!(
            "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric_name:?}"
        ),
    }
}

/// Prometheus's info when custom bucket bounds were reconciled; `during` is
/// "aggregation", "addition" or "subtraction".
pub(crate) fn reconciled_info(during: &str) -> String {
    format!("PromQL info: mismatched custom buckets were reconciled during {during}")
}

/// The aggregations that ignore native histograms (with an info annotation),
/// by Prometheus's name for them.
fn ignores_histograms(op: TokenId) -> Option<&'static str> {
    Some(match op {
        T_MIN => "min",
        T_MAX => "max",
        T_STDDEV => "stddev",
        T_STDVAR => "stdvar",
        T_QUANTILE => "quantile",
        T_TOPK => "topk",
        T_BOTTOMK => "bottomk",
        _ => return None,
    })
}

/// Whether `a` should rank above `b` in `topk` (NaN ranks lowest).
fn topk_better(a: f64, b: f64) -> bool {
    if b.is_nan() {
        !a.is_nan()
    } else {
        a > b
    }
}

fn bottomk_better(a: f64, b: f64) -> bool {
    if b.is_nan() {
        !a.is_nan()
    } else {
        a < b
    }
}

/// The `topk`/`bottomk` selection within one group, shared by the general path
/// and the fast path so that both pick the same members on ties: the first `k`
/// elements are kept; once full, an element replaces the worst member only if it
/// is strictly better. The worst member is found by one scan in member order
/// (the first of equally bad ones; NaN is the worst value), and is recomputed
/// only when the members change, since it depends on nothing else.
#[derive(Debug)]
pub(crate) struct KBest<T> {
    k: usize,
    bottom: bool,
    members: Vec<(f64, T)>,
    /// Index of the worst member; meaningful once `members.len() == k`.
    worst: usize,
}

// Not derived: a derived `Default` would require `T: Default`.
impl<T> Default for KBest<T> {
    fn default() -> Self {
        Self::new(0, false)
    }
}

impl<T> KBest<T> {
    /// Keeps the `k` best (`bottom`: lowest) values; `k == 0` keeps none.
    pub(crate) fn new(k: usize, bottom: bool) -> Self {
        Self {
            k,
            bottom,
            members: Vec::new(),
            worst: 0,
        }
    }

    fn better(&self, a: f64, b: f64) -> bool {
        if self.bottom {
            bottomk_better(a, b)
        } else {
            topk_better(a, b)
        }
    }

    fn find_worst(&self) -> usize {
        let mut worst = 0;
        for (i, m) in self.members.iter().enumerate() {
            if self.better(self.members[worst].0, m.0) {
                worst = i;
            }
        }
        worst
    }

    /// Offers the next element of the group, in input order.
    pub(crate) fn offer(&mut self, value: f64, item: T) {
        if self.members.len() < self.k {
            self.members.push((value, item));
            if self.members.len() == self.k {
                self.worst = self.find_worst();
            }
            return;
        }
        // `get` rather than indexing: with `k == 0` there is no member.
        let Some(worst) = self.members.get(self.worst).map(|m| m.0) else {
            return;
        };
        if self.better(value, worst) {
            self.members[self.worst] = (value, item);
            self.worst = self.find_worst();
        }
    }

    /// The members, in member (not rank) order.
    pub(crate) fn members(&self) -> &[(f64, T)] {
        &self.members
    }

    /// Forgets the members, keeping `k` and the allocation.
    pub(crate) fn clear(&mut self) {
        self.members.clear();
        self.worst = 0;
    }

    pub(crate) fn into_members(self) -> Vec<(f64, T)> {
        self.members
    }
}

/// Orders `topk`/`bottomk` members best first, NaN last, for both (a stable
/// sort: equal values keep their member order).
pub(crate) fn sort_k_members<T>(members: &mut [(f64, T)], bottom: bool) {
    if bottom {
        members.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => nan_first_cmp(a.0, b.0),
        });
    } else {
        members.sort_by(|a, b| nan_first_cmp(b.0, a.0));
    }
}

/// The `k` of `topk`/`bottomk`/`limitk`, checked like Prometheus does.
pub(crate) fn k_param(v: f64) -> Result<i64, QueryError> {
    if v.is_nan() {
        return Err(QueryError::exec("Parameter value is NaN"));
    }
    // i64::MAX as f64 rounds up to 2^63, which is already out of range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&v) {
        return Err(QueryError::exec(format!(
            "Scalar value {} overflows int64",
            format_value(v)
        )));
    }
    Ok(v as i64)
}

impl Evaluator<'_> {
    pub(crate) fn aggregate(&mut self, a: &AggregateExpr, t: i64) -> Result<Val, QueryError> {
        let op = a.op.id();
        let mut param = None;
        let mut label_param = None;
        if let Some(p) = &a.param {
            if op == T_COUNT_VALUES {
                label_param = Some(string_arg(p)?);
            } else {
                param = Some(self.scalar_arg(p, t)?);
            }
        }
        let input = self.vector_arg(&a.expr, t)?;
        let (by, names): (bool, &[String]) = match &a.modifier {
            None => (true, &[]),
            Some(LabelModifier::Include(ls)) => (true, &ls.labels),
            Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
        };
        let group_key = |l: &Labels| -> Labels {
            if by {
                keep_labels(l, names)
            } else {
                drop_labels(l, names, true)
            }
        };
        let name_in_key = by && names.iter().any(|n| n == METRIC_NAME);

        if op == T_COUNT_VALUES {
            let label = label_param.unwrap_or_default();
            if !is_valid_label_name(&label) {
                return Err(QueryError::exec(format!("invalid label name {label:?}")));
            }
            let mut order: Vec<Labels> = Vec::new();
            let mut counts: HashMap<Labels, f64> = HashMap::new();
            for s in &input {
                // A histogram's value is Prometheus's string form of it.
                let value = match &s.hist {
                    Some(h) => h.go_string(),
                    None => format_value(s.value),
                };
                let key = set_label(&group_key(&s.labels), &label, &value);
                let c = counts.entry(key.clone()).or_insert_with(|| {
                    order.push(key);
                    0.0
                });
                *c += 1.0;
            }
            let out = order
                .into_iter()
                .map(|l| {
                    let v = counts.get(&l).copied().unwrap_or(0.0);
                    Sample::float(l, v, false)
                })
                .collect();
            return Ok(Val::Vector(out));
        }

        let mut k = 0i64;
        if matches!(op, T_TOPK | T_BOTTOMK | T_LIMITK) {
            k = k_param(param.unwrap_or(f64::NAN))?;
            if k < 1 {
                return Ok(Val::Vector(Vec::new()));
            }
        }
        if op == T_QUANTILE {
            let q = param.unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&q) {
                self.warn(format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    format_value(q)
                ));
            }
        }
        if op == T_LIMIT_RATIO {
            let r = param.unwrap_or(f64::NAN);
            if r.is_nan() {
                return Err(QueryError::exec("Ratio value is NaN"));
            }
            if !(-1.0..=1.0).contains(&r) {
                self.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                    format_value(r),
                    if r < 0.0 { -1 } else { 1 }
                ));
            }
        }

        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for s in input {
            if s.hist.is_some() {
                if let Some(name) = ignores_histograms(op) {
                    // Prometheus skips the histogram (it does not even open
                    // its group) and says so.
                    self.info(format!(
                        "PromQL info: ignored histogram in {name} aggregation"
                    ));
                    continue;
                }
            }
            let key = group_key(&s.labels);
            let gi = match index.get(&key) {
                Some(&i) => i,
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push(Group {
                        labels: key,
                        // `k >= 1` here (smaller `k` returned early above).
                        best: KBest::new(usize::try_from(k).unwrap_or(usize::MAX), op == T_BOTTOMK),
                        ..Group::default()
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[gi];
            if name_in_key {
                g.drop_name |= s.drop_name;
            }
            if let (Some(h), T_SUM | T_AVG) = (&s.hist, op) {
                if g.hists.is_empty() {
                    g.hist_name = s.labels.metric_name().unwrap_or("").to_string();
                }
                g.hists.push(Arc::clone(h));
                continue;
            }
            let f = s.value;
            if Acc::handles(op) {
                g.acc.add(op, f);
                continue;
            }
            g.acc.count += 1.0;
            match op {
                T_QUANTILE => g.values.push(f),
                T_TOPK | T_BOTTOMK => g.best.offer(f, s),
                T_LIMITK => {
                    if (g.members.len() as i64) < k {
                        g.members.push(s);
                    }
                }
                T_LIMIT_RATIO => {
                    let r = param.unwrap_or(f64::NAN).clamp(-1.0, 1.0);
                    let offset = ratio_offset(&s.labels);
                    if (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r) {
                        g.members.push(s);
                    }
                }
                _ => {
                    return Err(QueryError::exec(format!(
                        "unsupported aggregation operator {}",
                        a.op
                    )))
                }
            }
        }

        let mut out = Vec::with_capacity(groups.len());
        for mut g in groups {
            if !g.hists.is_empty() {
                // Only `sum` and `avg` get here with histograms.
                if g.acc.count > 0.0 {
                    self.warn(
                        "PromQL warning: encountered a mix of histograms and floats for aggregation"
                            .to_string(),
                    );
                    continue;
                }
                let hs = g.hists.iter().map(|h| h.as_ref());
                let res = if op == T_AVG {
                    FloatHistogram::mean_of(hs)
                } else {
                    FloatHistogram::sum_of(hs)
                };
                let mut h = match res {
                    Ok((h, reconciled)) => {
                        if reconciled.0 {
                            self.info(reconciled_info("aggregation"));
                        }
                        h
                    }
                    Err(e) => {
                        self.warn(histogram_error_warning(e, &g.hist_name));
                        continue;
                    }
                };
                h.compact();
                out.push(Sample {
                    labels: g.labels,
                    value: 0.0,
                    hist: Some(Arc::new(h)),
                    drop_name: g.drop_name,
                });
                continue;
            }
            let value = match op {
                _ if Acc::handles(op) => g.acc.result(op),
                T_QUANTILE => quantile(param.unwrap_or(f64::NAN), &mut g.values),
                T_TOPK | T_BOTTOMK => {
                    let mut members = std::mem::take(&mut g.best).into_members();
                    sort_k_members(&mut members, op == T_BOTTOMK);
                    out.extend(members.into_iter().map(|(_, s)| s));
                    continue;
                }
                T_LIMITK | T_LIMIT_RATIO => {
                    out.append(&mut g.members);
                    continue;
                }
                _ => f64::NAN,
            };
            out.push(Sample::float(g.labels, value, g.drop_name));
        }
        Ok(Val::Vector(out))
    }
}

fn avg_step(g: &mut Acc, f: f64) {
    if !g.incremental_mean {
        let (nv, nc) = kahan_sum_inc(f, g.value, g.kahan_c);
        if !nv.is_infinite() {
            g.value = nv;
            g.kahan_c = nc;
            return;
        }
        g.incremental_mean = true;
        g.mean = g.value / (g.count - 1.0);
        g.kahan_c /= g.count - 1.0;
    }
    if g.mean.is_infinite() {
        if f.is_infinite() && (g.mean > 0.0) == (f > 0.0) {
            return;
        }
        if !f.is_infinite() && !f.is_nan() {
            return;
        }
    }
    let current = g.mean + g.kahan_c;
    (g.mean, g.kahan_c) = kahan_sum_inc(f / g.count - current / g.count, g.mean, g.kahan_c);
}

/// A stable pseudo-random position in [0, 1) for a label set (for `limit_ratio`).
fn ratio_offset(l: &Labels) -> f64 {
    let mut h = xxhash_like(l);
    h ^= h >> 11;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn xxhash_like(l: &Labels) -> u64 {
    // FNV-1a over name/value pairs: deterministic across processes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for lab in l.iter() {
        for b in lab
            .name
            .bytes()
            .chain([0xff])
            .chain(lab.value.bytes())
            .chain([0xff])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
