//! PromQL functions. Float functions skip native histograms as Prometheus does;
//! `histogram_quantile`, `histogram_fraction` and the `*_over_time` functions
//! Prometheus defines for histograms handle them; the rate-like functions
//! (`rate`, `increase`, `delta`, `irate`, `idelta`, `deriv`, `predict_linear`,
//! `changes`, `resets`, `double_exponential_smoothing`) do not and skip
//! histogram series with a warning.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use promql_parser::parser::{Call, Expr};
use regex::Regex;
use strata_model::{is_valid_label_name, Labels, MatchOp, METRIC_NAME};

use crate::aggregate::{histogram_error_warning, reconciled_info};
use crate::ast::{selector_matchers, string_arg, unwrap_parens};
use crate::error::{QueryError, UnsupportedFeature};
use crate::eval::Evaluator;
use crate::histogram::FloatHistogram;
use crate::mathx::{
    bucket_fraction, bucket_quantile, civil_from_unix, days_in_month, format_value, go_max, go_min,
    kahan_sum_inc, linear_regression, parse_go_float, quantile, Bucket, Civil,
};
use crate::model::{set_label, RangeArg, RangeSeries, Sample, Val};

type Points = [(i64, f64)];

/// A native histogram given to `histogram_quantile`/`histogram_fraction`.
type NativeInput = (Labels, Arc<FloatHistogram>);

/// A classic histogram: the labels without `le`, and its buckets.
type ClassicGroup = (Labels, Vec<Bucket>);

/// Applies a float function to every float element; native histograms are
/// dropped, as Prometheus's `simpleFloatFunc` does.
fn map_vector(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .filter(|s| s.hist.is_none())
        .map(|mut s| {
            s.value = f(s.value);
            s.drop_name = true;
            s
        })
        .collect()
}

/// Go's `math.Round` rounds half away from zero, which is Rust's `round`; the
/// `round()` function instead rounds half up (`floor(x + 0.5)`).
fn round_to(v: f64, to_nearest: f64) -> f64 {
    let inv = 1.0 / to_nearest;
    (v * inv + 0.5).floor() / inv
}

fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// Prometheus's `extrapolatedRate` for `rate`, `increase` and `delta`.
fn extrapolated_rate(p: &Points, range: &RangeArg, is_counter: bool, is_rate: bool) -> Option<f64> {
    extrapolate(p, range, is_counter, is_counter, is_rate)
}

/// `rate` and `increase` of a window known to hold no counter reset (the same
/// result as theirs, without the scan for resets).
pub(crate) fn reset_free_counter_fn(name: &str) -> Option<RangeFn> {
    match name {
        "rate" => Some(|p, r| extrapolate(p, r, true, false, true)),
        "increase" => Some(|p, r| extrapolate(p, r, true, false, false)),
        _ => None,
    }
}

fn extrapolate(
    p: &Points,
    range: &RangeArg,
    is_counter: bool,
    scan_resets: bool,
    is_rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first_t, first_v) = p[0];
    let (last_t, last_v) = p[p.len() - 1];
    let mut result = last_v - first_v;
    if scan_resets {
        let mut prev = first_v;
        for &(_, v) in &p[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let range_start = range.end_ms.saturating_sub(range.range_ms);
    let range_end = range.end_ms;
    let mut to_start = first_t.saturating_sub(range_start) as f64 / 1000.0;
    let mut to_end = range_end.saturating_sub(last_t) as f64 / 1000.0;
    let sampled = last_t.saturating_sub(first_t) as f64 / 1000.0;
    let avg = sampled / (p.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(p: &Points, is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (lt, lv) = p[p.len() - 1];
    let (pt, pv) = p[p.len() - 2];
    let mut result = if is_rate && lv < pv { lv } else { lv - pv };
    let dt = lt - pt;
    if dt == 0 {
        return None;
    }
    if is_rate {
        result /= dt as f64 / 1000.0;
    }
    Some(result)
}

fn avg_points(p: &Points) -> f64 {
    let (mut sum, mut mean, mut count, mut c) = (0.0, 0.0, 0.0, 0.0);
    let mut incremental = false;
    for &(_, f) in p {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_sum_inc(f, sum, c);
            if count == 1.0 || !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_sum_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance_points(p: &Points) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in p {
        count += 1.0;
        let delta = f - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn double_exponential_smoothing(p: &Points, sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = p[0].1;
    let mut b = p[1].1 - p[0].1;
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

/// Label set of `absent()`'s result: the equality matchers of the selector.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap_parens(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let sets = match selector_matchers(vs) {
        Ok(s) if s.len() == 1 => s,
        _ => return Labels::default(),
    };
    // Prometheus's historic rule: the first `=` matcher of a label sets it, any
    // other matcher of the same label removes it.
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut has: Vec<String> = Vec::new();
    for m in sets.iter().flatten() {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && !has.contains(&m.name) {
            pairs.retain(|(n, _)| *n != m.name);
            pairs.push((m.name.clone(), m.value.clone()));
            has.push(m.name.clone());
        } else {
            pairs.retain(|(n, _)| *n != m.name);
        }
    }
    Labels::from_pairs(pairs)
}

/// Compares strings the way Prometheus's `sort_by_label` does: natural order, so
/// runs of digits compare by numeric value.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].cmp(&bb[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// A range-vector function that maps one series' points in the window to at most
/// one value.
pub(crate) type RangeFn = fn(&Points, &RangeArg) -> Option<f64>;

/// The type of a function's argument, as promql-parser checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    Vector,
    /// A range vector: a matrix selector or a subquery.
    Range,
    /// A string literal.
    Str,
}

/// How many arguments a function takes, given the kinds of its table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// One per kind.
    Fixed,
    /// One per kind; the last may be left out.
    LastOptional,
    /// One per kind, the last repeated any number of times (or left out).
    LastRepeats,
}

/// How the evaluator computes a function.
#[derive(Clone, Copy)]
enum Imp {
    /// From its arguments, each evaluated (in order) as its kind says.
    Eager(fn(&mut Evaluator<'_>, Args) -> Result<Val, QueryError>),
    /// From its argument expressions, which it evaluates itself (it looks at
    /// them, or annotates between two of them).
    Lazy(fn(&mut Evaluator<'_>, Exprs<'_>) -> Result<Val, QueryError>),
    /// A per-series range function of its one range-vector argument; the fast
    /// path runs these too. `keep_name`: the result keeps the metric name.
    Range { f: RangeFn, keep_name: bool },
}

/// One PromQL function the engine evaluates.
struct Function {
    name: &'static str,
    kinds: &'static [Kind],
    arity: Arity,
    imp: Imp,
}

impl Function {
    /// The kind of argument `i`, `None` past the last one the function takes.
    fn kind(&self, i: usize) -> Option<Kind> {
        match self.kinds.get(i) {
            Some(&k) => Some(k),
            None if self.arity == Arity::LastRepeats => self.kinds.last().copied(),
            None => None,
        }
    }

    /// How many arguments a call must have.
    fn required(&self) -> usize {
        match self.arity {
            Arity::Fixed => self.kinds.len(),
            Arity::LastOptional | Arity::LastRepeats => self.kinds.len().saturating_sub(1),
        }
    }
}

use Arity::{Fixed, LastOptional, LastRepeats};
use Kind::{Range as R, Scalar as S, Str as T, Vector as V};

const fn eager(
    name: &'static str,
    kinds: &'static [Kind],
    arity: Arity,
    imp: fn(&mut Evaluator<'_>, Args) -> Result<Val, QueryError>,
) -> Function {
    Function {
        name,
        kinds,
        arity,
        imp: Imp::Eager(imp),
    }
}

const fn lazy(
    name: &'static str,
    kinds: &'static [Kind],
    imp: fn(&mut Evaluator<'_>, Exprs<'_>) -> Result<Val, QueryError>,
) -> Function {
    Function {
        name,
        kinds,
        arity: Fixed,
        imp: Imp::Lazy(imp),
    }
}

const fn range(name: &'static str, f: RangeFn) -> Function {
    Function {
        name,
        kinds: &[R],
        arity: Fixed,
        imp: Imp::Range {
            f,
            keep_name: false,
        },
    }
}

/// Every function the engine evaluates: adding one is adding its entry. A
/// function promql-parser accepts that is not here is an unsupported feature
/// ([`UnsupportedFeature::Function`]).
static FUNCTIONS: &[Function] = &[
    eager("time", &[], Fixed, |_, a| {
        Ok(Val::Scalar(a.t as f64 / 1000.0))
    }),
    eager("pi", &[], Fixed, |_, _| {
        Ok(Val::Scalar(std::f64::consts::PI))
    }),
    eager("start", &[], Fixed, |ev, _| {
        Ok(Val::Scalar(ev.start_ms as f64 / 1000.0))
    }),
    eager("end", &[], Fixed, |ev, _| {
        Ok(Val::Scalar(ev.end_ms as f64 / 1000.0))
    }),
    eager("range", &[], Fixed, |ev, _| {
        Ok(Val::Scalar((ev.end_ms - ev.start_ms) as f64 / 1000.0))
    }),
    eager("step", &[], Fixed, |ev, _| {
        Ok(Val::Scalar(ev.step_ms as f64 / 1000.0))
    }),
    eager("vector", &[S], Fixed, |_, a| {
        let v = a.scalar(0)?;
        Ok(Val::Vector(vec![Sample::float(
            Labels::default(),
            v,
            false,
        )]))
    }),
    eager("scalar", &[V], Fixed, |_, mut a| {
        // Histograms do not count: the one float element, else NaN.
        let v = a.vector(0)?;
        let mut floats = v.iter().filter(|s| s.hist.is_none());
        Ok(Val::Scalar(match (floats.next(), floats.next()) {
            (Some(s), None) => s.value,
            _ => f64::NAN,
        }))
    }),
    eager("min_of", &[S, S], Fixed, |_, a| {
        Ok(Val::Scalar(go_min(a.scalar(0)?, a.scalar(1)?)))
    }),
    eager("max_of", &[S, S], Fixed, |_, a| {
        Ok(Val::Scalar(go_max(a.scalar(0)?, a.scalar(1)?)))
    }),
    eager("abs", &[V], Fixed, |_, a| float_fn(a, f64::abs)),
    eager("ceil", &[V], Fixed, |_, a| float_fn(a, f64::ceil)),
    eager("floor", &[V], Fixed, |_, a| float_fn(a, f64::floor)),
    eager("exp", &[V], Fixed, |_, a| float_fn(a, f64::exp)),
    eager("ln", &[V], Fixed, |_, a| float_fn(a, f64::ln)),
    eager("log2", &[V], Fixed, |_, a| float_fn(a, f64::log2)),
    eager("log10", &[V], Fixed, |_, a| float_fn(a, f64::log10)),
    eager("sqrt", &[V], Fixed, |_, a| float_fn(a, f64::sqrt)),
    eager("sgn", &[V], Fixed, |_, a| float_fn(a, sgn)),
    eager("sin", &[V], Fixed, |_, a| float_fn(a, f64::sin)),
    eager("cos", &[V], Fixed, |_, a| float_fn(a, f64::cos)),
    eager("tan", &[V], Fixed, |_, a| float_fn(a, f64::tan)),
    eager("asin", &[V], Fixed, |_, a| float_fn(a, f64::asin)),
    eager("acos", &[V], Fixed, |_, a| float_fn(a, f64::acos)),
    eager("atan", &[V], Fixed, |_, a| float_fn(a, f64::atan)),
    eager("sinh", &[V], Fixed, |_, a| float_fn(a, f64::sinh)),
    eager("cosh", &[V], Fixed, |_, a| float_fn(a, f64::cosh)),
    eager("tanh", &[V], Fixed, |_, a| float_fn(a, f64::tanh)),
    eager("asinh", &[V], Fixed, |_, a| float_fn(a, f64::asinh)),
    eager("acosh", &[V], Fixed, |_, a| float_fn(a, f64::acosh)),
    eager("atanh", &[V], Fixed, |_, a| float_fn(a, f64::atanh)),
    eager("deg", &[V], Fixed, |_, a| {
        float_fn(a, |v| v * 180.0 / std::f64::consts::PI)
    }),
    eager("rad", &[V], Fixed, |_, a| {
        float_fn(a, |v| v * std::f64::consts::PI / 180.0)
    }),
    eager("round", &[V, S], LastOptional, |_, mut a| {
        let v = a.vector(0)?;
        let to = if a.len() > 1 { a.scalar(1)? } else { 1.0 };
        Ok(Val::Vector(map_vector(v, |x| round_to(x, to))))
    }),
    eager("clamp", &[V, S, S], Fixed, |_, mut a| {
        let v = a.vector(0)?;
        let (lo, hi) = (a.scalar(1)?, a.scalar(2)?);
        if hi < lo {
            return Ok(Val::Vector(Vec::new()));
        }
        Ok(Val::Vector(map_vector(v, |x| go_max(lo, go_min(hi, x)))))
    }),
    eager("clamp_min", &[V, S], Fixed, |_, mut a| {
        let (v, lo) = (a.vector(0)?, a.scalar(1)?);
        Ok(Val::Vector(map_vector(v, |x| go_max(lo, x))))
    }),
    eager("clamp_max", &[V, S], Fixed, |_, mut a| {
        let (v, hi) = (a.vector(0)?, a.scalar(1)?);
        Ok(Val::Vector(map_vector(v, |x| go_min(hi, x))))
    }),
    lazy("timestamp", &[V], |ev, e| {
        let (a, t) = (e.arg(0)?, e.t);
        if let Expr::VectorSelector(vs) = unwrap_parens(a) {
            let v = ev
                .select_instant(vs, t)?
                .into_iter()
                .map(|(labels, ts, _, _)| Sample::float(labels, ts as f64 / 1000.0, true))
                .collect();
            return Ok(Val::Vector(v));
        }
        // Histograms have a timestamp too, so they are kept here.
        let v = ev.vector_arg(a, t)?;
        Ok(Val::Vector(
            v.into_iter()
                .map(|s| Sample::float(s.labels, t as f64 / 1000.0, true))
                .collect(),
        ))
    }),
    eager("day_of_month", &[V], LastOptional, |_, a| {
        date_fn(a, |c| f64::from(c.day))
    }),
    eager("day_of_week", &[V], LastOptional, |_, a| {
        date_fn(a, |c| f64::from(c.weekday))
    }),
    eager("day_of_year", &[V], LastOptional, |_, a| {
        date_fn(a, |c| f64::from(c.day_of_year))
    }),
    eager("days_in_month", &[V], LastOptional, |_, a| {
        date_fn(a, |c| f64::from(days_in_month(c.year, c.month)))
    }),
    eager("hour", &[V], LastOptional, |_, a| {
        date_fn(a, |c| f64::from(c.hour))
    }),
    eager("minute", &[V], LastOptional, |_, a| {
        date_fn(a, |c| f64::from(c.minute))
    }),
    eager("month", &[V], LastOptional, |_, a| {
        date_fn(a, |c| f64::from(c.month))
    }),
    eager("year", &[V], LastOptional, |_, a| {
        date_fn(a, |c| c.year as f64)
    }),
    eager("label_replace", &[V, T, T, T, T], Fixed, |_, a| {
        label_replace(a)
    }),
    eager("label_join", &[V, T, T, T], LastRepeats, |_, a| {
        label_join(a)
    }),
    eager("sort", &[V], Fixed, |_, a| sort_by_value(a, false)),
    eager("sort_desc", &[V], Fixed, |_, a| sort_by_value(a, true)),
    eager("sort_by_label", &[V, T], LastRepeats, |_, a| {
        sort_by_labels(a, false)
    }),
    eager("sort_by_label_desc", &[V, T], LastRepeats, |_, a| {
        sort_by_labels(a, true)
    }),
    lazy("absent", &[V], |ev, e| {
        let v = ev.vector_arg(e.arg(0)?, e.t)?;
        if !v.is_empty() {
            return Ok(Val::Vector(Vec::new()));
        }
        Ok(Val::Vector(vec![Sample::float(
            absent_labels(e.arg(0)?),
            1.0,
            false,
        )]))
    }),
    lazy("absent_over_time", &[R], |ev, e| {
        let r = ev.range_arg(e.arg(0)?, e.t)?;
        if !r.series.is_empty() {
            return Ok(Val::Vector(Vec::new()));
        }
        Ok(Val::Vector(vec![Sample::float(
            absent_labels(e.arg(0)?),
            1.0,
            false,
        )]))
    }),
    eager("histogram_quantile", &[S, V], Fixed, |ev, a| {
        ev.histogram_quantile(a)
    }),
    eager("histogram_fraction", &[S, S, V], Fixed, |ev, a| {
        ev.histogram_fraction(a)
    }),
    eager("histogram_count", &[V], Fixed, |_, a| {
        histogram_stat(a, |h| h.count)
    }),
    eager("histogram_sum", &[V], Fixed, |_, a| {
        histogram_stat(a, |h| h.sum)
    }),
    eager("histogram_avg", &[V], Fixed, |_, a| {
        histogram_stat(a, |h| h.sum / h.count)
    }),
    lazy("quantile_over_time", &[S, R], |ev, e| {
        let q = ev.scalar_arg(e.arg(0)?, e.t)?;
        if !(0.0..=1.0).contains(&q) {
            ev.warn(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                format_value(q)
            ));
        }
        let r = ev.range_arg(e.arg(1)?, e.t)?;
        ev.over_range(e.name, r, true, |p, _| {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            Some(quantile(q, &mut vals))
        })
    }),
    eager("predict_linear", &[R, S], Fixed, |ev, mut a| {
        let (r, d, t) = (a.range(0)?, a.scalar(1)?, a.t);
        ev.over_range(a.name, r, true, |p, _| {
            if p.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(p, t);
            Some(slope * d + intercept)
        })
    }),
    eager(
        "double_exponential_smoothing",
        &[R, S, S],
        Fixed,
        |ev, a| ev.smoothing(a),
    ),
    eager("holt_winters", &[R, S, S], Fixed, |ev, a| ev.smoothing(a)),
    range("rate", |p, r| extrapolated_rate(p, r, true, true)),
    range("increase", |p, r| extrapolated_rate(p, r, true, false)),
    range("delta", |p, r| extrapolated_rate(p, r, false, false)),
    range("irate", |p, _| instant_value(p, true)),
    range("idelta", |p, _| instant_value(p, false)),
    range("deriv", |p, _| {
        if p.len() < 2 {
            return None;
        }
        Some(linear_regression(p, p[0].0).0)
    }),
    range("changes", |p, _| {
        let mut n = 0.0;
        for w in p.windows(2) {
            if w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()) {
                n += 1.0;
            }
        }
        Some(n)
    }),
    range("resets", |p, _| {
        let mut n = 0.0;
        for w in p.windows(2) {
            if w[1].1 < w[0].1 {
                n += 1.0;
            }
        }
        Some(n)
    }),
    range("avg_over_time", |p, _| Some(avg_points(p))),
    range("sum_over_time", |p, _| {
        let (mut s, mut c) = (0.0, 0.0);
        for &(_, v) in p {
            (s, c) = kahan_sum_inc(v, s, c);
        }
        Some(if s.is_infinite() { s } else { s + c })
    }),
    range("count_over_time", |p, _| Some(p.len() as f64)),
    range("present_over_time", |_, _| Some(1.0)),
    range("max_over_time", |p, _| {
        let mut m = p[0].1;
        for &(_, v) in p {
            if v > m || m.is_nan() {
                m = v;
            }
        }
        Some(m)
    }),
    range("min_over_time", |p, _| {
        let mut m = p[0].1;
        for &(_, v) in p {
            if v < m || m.is_nan() {
                m = v;
            }
        }
        Some(m)
    }),
    Function {
        name: "last_over_time",
        kinds: &[R],
        arity: Fixed,
        imp: Imp::Range {
            f: |p, _| Some(p[p.len() - 1].1),
            keep_name: true,
        },
    },
    Function {
        name: "first_over_time",
        kinds: &[R],
        arity: Fixed,
        imp: Imp::Range {
            f: |p, _| Some(p[0].1),
            keep_name: true,
        },
    },
    range("ts_of_last_over_time", |p, _| {
        Some(p[p.len() - 1].0 as f64 / 1000.0)
    }),
    range("ts_of_first_over_time", |p, _| Some(p[0].0 as f64 / 1000.0)),
    range("ts_of_max_over_time", |p, _| {
        let mut m = p[0];
        for &x in p {
            if x.1 >= m.1 || m.1.is_nan() {
                m = x;
            }
        }
        Some(m.0 as f64 / 1000.0)
    }),
    range("ts_of_min_over_time", |p, _| {
        let mut m = p[0];
        for &x in p {
            if x.1 <= m.1 || m.1.is_nan() {
                m = x;
            }
        }
        Some(m.0 as f64 / 1000.0)
    }),
    range("stddev_over_time", |p, _| Some(variance_points(p).sqrt())),
    range("stdvar_over_time", |p, _| Some(variance_points(p))),
    range("mad_over_time", |p, _| {
        if p.iter().any(|x| x.1.is_nan()) {
            return Some(f64::NAN);
        }
        let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
        let median = quantile(0.5, &mut vals);
        let mut dev: Vec<f64> = p.iter().map(|x| (x.1 - median).abs()).collect();
        Some(quantile(0.5, &mut dev))
    }),
];

/// [`FUNCTIONS`] by name.
fn function(name: &str) -> Option<&'static Function> {
    static BY_NAME: LazyLock<HashMap<&'static str, &'static Function>> =
        LazyLock::new(|| FUNCTIONS.iter().map(|f| (f.name, f)).collect());
    BY_NAME.get(name).copied()
}

/// The per-series range functions (`rate`, `*_over_time`, ...) by name, and whether
/// each keeps the metric name.
pub(crate) fn simple_range_fn(name: &str) -> Option<(RangeFn, bool)> {
    match function(name)?.imp {
        Imp::Range { f, keep_name } => Some((f, keep_name)),
        Imp::Eager(_) | Imp::Lazy(_) => None,
    }
}

/// One evaluated argument.
enum Arg {
    Scalar(f64),
    Vector(Vec<Sample>),
    Range(RangeArg),
    Str(String),
}

/// The evaluated arguments of a call, in order, each of the kind its
/// function's entry declares.
struct Args {
    name: &'static str,
    /// The evaluation time (milliseconds).
    t: i64,
    vals: Vec<Arg>,
}

impl Args {
    fn len(&self) -> usize {
        self.vals.len()
    }

    /// Asking for an argument the call lacks (or of another kind than the
    /// table's, which is a mistake in the table).
    fn missing(&self, i: usize) -> QueryError {
        QueryError::exec(format!("missing argument {} of {}()", i + 1, self.name))
    }

    fn scalar(&self, i: usize) -> Result<f64, QueryError> {
        match self.vals.get(i) {
            Some(Arg::Scalar(v)) => Ok(*v),
            _ => Err(self.missing(i)),
        }
    }

    /// Takes the instant vector out (each is read once).
    fn vector(&mut self, i: usize) -> Result<Vec<Sample>, QueryError> {
        match self.vals.get_mut(i) {
            Some(Arg::Vector(v)) => Ok(std::mem::take(v)),
            _ => Err(self.missing(i)),
        }
    }

    /// Takes the range vector out (each is read once).
    fn range(&mut self, i: usize) -> Result<RangeArg, QueryError> {
        match self.vals.get_mut(i) {
            Some(Arg::Range(r)) => Ok(RangeArg {
                series: std::mem::take(&mut r.series),
                range_ms: r.range_ms,
                end_ms: r.end_ms,
            }),
            _ => Err(self.missing(i)),
        }
    }

    fn str(&self, i: usize) -> Result<&str, QueryError> {
        match self.vals.get(i) {
            Some(Arg::Str(s)) => Ok(s),
            _ => Err(self.missing(i)),
        }
    }

    /// The string arguments from `i` on.
    fn strs_from(&self, i: usize) -> Result<Vec<String>, QueryError> {
        (i..self.len())
            .map(|j| self.str(j).map(str::to_string))
            .collect()
    }
}

/// The unevaluated arguments of a call, for [`Imp::Lazy`].
struct Exprs<'e> {
    name: &'static str,
    /// The evaluation time (milliseconds).
    t: i64,
    args: &'e [Box<Expr>],
}

impl<'e> Exprs<'e> {
    fn arg(&self, i: usize) -> Result<&'e Expr, QueryError> {
        self.args.get(i).map(|b| b.as_ref()).ok_or_else(|| {
            QueryError::exec(format!("missing argument {} of {}()", i + 1, self.name))
        })
    }
}

/// A float function of every float element of the first argument.
fn float_fn(mut a: Args, f: impl Fn(f64) -> f64) -> Result<Val, QueryError> {
    Ok(Val::Vector(map_vector(a.vector(0)?, f)))
}

/// A date function of every float element of the (optional) first argument,
/// read as Unix seconds; the evaluation time without one.
fn date_fn(mut a: Args, f: impl Fn(&Civil) -> f64) -> Result<Val, QueryError> {
    let v = if a.len() > 0 {
        a.vector(0)?
    } else {
        vec![Sample::float(Labels::default(), a.t as f64 / 1000.0, false)]
    };
    Ok(Val::Vector(map_vector(v, |x| {
        if x.is_nan() || x.is_infinite() {
            return x;
        }
        f(&civil_from_unix(x as i64))
    })))
}

/// `histogram_count`/`histogram_sum`/`histogram_avg`: of native histograms
/// only; float elements are skipped.
fn histogram_stat(mut a: Args, f: impl Fn(&FloatHistogram) -> f64) -> Result<Val, QueryError> {
    let out = a
        .vector(0)?
        .into_iter()
        .filter_map(|s| {
            let h = s.hist?;
            Some(Sample::float(s.labels, f(&h), true))
        })
        .collect();
    Ok(Val::Vector(out))
}

/// `sort`/`sort_desc`: like Prometheus, sorting by value drops histograms.
fn sort_by_value(mut a: Args, desc: bool) -> Result<Val, QueryError> {
    let mut v = a.vector(0)?;
    v.retain(|s| s.hist.is_none());
    v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => {
            let o = a
                .value
                .partial_cmp(&b.value)
                .unwrap_or(std::cmp::Ordering::Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    });
    Ok(Val::Vector(v))
}

/// `sort_by_label`/`sort_by_label_desc`.
fn sort_by_labels(mut a: Args, desc: bool) -> Result<Val, QueryError> {
    let mut v = a.vector(0)?;
    let names = a.strs_from(1)?;
    v.sort_by(|a, b| {
        for n in &names {
            let o = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
            if o != std::cmp::Ordering::Equal {
                return if desc { o.reverse() } else { o };
            }
        }
        let o = a.labels.cmp(&b.labels);
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    Ok(Val::Vector(v))
}

/// `label_replace(v, dst, replacement, src, regex)`.
fn label_replace(mut a: Args) -> Result<Val, QueryError> {
    let v = a.vector(0)?;
    let (dst, repl, src, re_src) = (a.str(1)?, a.str(2)?, a.str(3)?, a.str(4)?);
    let re = Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {re_src}: {e}"
        ))
    })?;
    if !is_valid_label_name(dst) && dst != METRIC_NAME {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let src_val = s.labels.get(src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&src_val) {
            let mut res = String::new();
            caps.expand(repl, &mut res);
            s.labels = set_label(&s.labels, dst, &res);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
        out.push(s);
    }
    Ok(Val::Vector(out))
}

/// `label_join(v, dst, separator, src...)`.
fn label_join(mut a: Args) -> Result<Val, QueryError> {
    let v = a.vector(0)?;
    let (dst, sep) = (a.str(1)?, a.str(2)?);
    let srcs = a.strs_from(3)?;
    if !is_valid_label_name(dst) && dst != METRIC_NAME {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let joined = srcs
            .iter()
            .map(|n| s.labels.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(sep);
        s.labels = set_label(&s.labels, dst, &joined);
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
        out.push(s);
    }
    Ok(Val::Vector(out))
}

impl Evaluator<'_> {
    pub(crate) fn call(&mut self, c: &Call, t: i64) -> Result<Val, QueryError> {
        let name = c.func.name;
        // promql-parser accepted the call, so the function exists in PromQL:
        // one without an entry is a feature this engine lacks (typed, so that
        // callers can tell), not a mistake of the query.
        let unsupported =
            || QueryError::unsupported(UnsupportedFeature::Function(name.to_string()));
        let Some(func) = function(name) else {
            return Err(unsupported());
        };
        let exprs = &c.args.args;
        match func.imp {
            Imp::Range { f, keep_name } => {
                let Some(a) = exprs.first() else {
                    return Err(unsupported());
                };
                self.counter_info(name, a);
                let r = self.range_arg(a, t)?;
                self.over_range(name, r, !keep_name, f)
            }
            Imp::Lazy(imp) => imp(
                self,
                Exprs {
                    name,
                    t,
                    args: exprs,
                },
            ),
            Imp::Eager(imp) => {
                let mut vals = Vec::with_capacity(exprs.len());
                for (i, e) in exprs.iter().enumerate() {
                    let Some(kind) = func.kind(i) else { break };
                    vals.push(match kind {
                        Kind::Scalar => Arg::Scalar(self.scalar_arg(e, t)?),
                        Kind::Vector => Arg::Vector(self.vector_arg(e, t)?),
                        Kind::Range => Arg::Range(self.range_arg(e, t)?),
                        Kind::Str => Arg::Str(string_arg(e)?),
                    });
                }
                let args = Args { name, t, vals };
                if args.len() < func.required() {
                    return Err(args.missing(args.len()));
                }
                imp(self, args)
            }
        }
    }

    /// `rate`/`increase`/`irate` of a selector whose name does not look like a
    /// counter's: Prometheus's info annotation.
    pub(crate) fn counter_info(&mut self, name: &str, a: &Expr) {
        if matches!(name, "rate" | "increase" | "irate") {
            if let Expr::MatrixSelector(ms) = unwrap_parens(a) {
                if let Some(n) = &ms.vs.name {
                    if !["_total", "_sum", "_count", "_bucket"]
                        .iter()
                        .any(|s| n.ends_with(s))
                    {
                        self.info(format!(
                            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
                        ));
                    }
                }
            }
        }
    }

    /// Applies `f` (the function `name`) to every series of a range vector;
    /// series with native-histogram points go to [`Self::over_range_hist`].
    fn over_range(
        &mut self,
        name: &str,
        r: RangeArg,
        drop_name: bool,
        f: impl Fn(&Points, &RangeArg) -> Option<f64>,
    ) -> Result<Val, QueryError> {
        let mut out = Vec::with_capacity(r.series.len());
        for s in &r.series {
            if !s.hists.is_empty() {
                if let Some(x) = self.over_range_hist(name, s, &r, drop_name, &f) {
                    out.push(x);
                }
                continue;
            }
            if s.points.is_empty() {
                continue;
            }
            if let Some(v) = f(&s.points, &r) {
                out.push(Sample::float(s.labels.clone(), v, s.drop_name || drop_name));
            }
        }
        Ok(Val::Vector(out))
    }

    /// A range function of a series with native-histogram points (and maybe
    /// float points), following Prometheus: counting and first/last functions
    /// see both kinds; `sum_over_time`/`avg_over_time` add histograms (a mix is
    /// a warning); the float statistics ignore the histograms with an info.
    /// The rate-like functions are not implemented for histograms here and
    /// skip the series with a warning rather than give a wrong number.
    fn over_range_hist(
        &mut self,
        name: &str,
        s: &RangeSeries,
        r: &RangeArg,
        drop_name: bool,
        f: &impl Fn(&Points, &RangeArg) -> Option<f64>,
    ) -> Option<Sample> {
        let drop = s.drop_name || drop_name;
        let metric = s.labels.metric_name().unwrap_or("").to_string();
        let float = |v: f64| Some(Sample::float(s.labels.clone(), v, drop));
        let hist = |h: Arc<FloatHistogram>| {
            Some(Sample {
                labels: s.labels.clone(),
                value: 0.0,
                hist: Some(h),
                drop_name: drop,
            })
        };
        let (first_f, last_f) = (s.points.first(), s.points.last());
        let (first_h, last_h) = (s.hists.first(), s.hists.last());
        match name {
            "count_over_time" => float((s.points.len() + s.hists.len()) as f64),
            "present_over_time" => float(1.0),
            "first_over_time" => match (first_f, first_h) {
                // At equal times the histogram wins, as in Prometheus.
                (Some(p), Some(h)) if p.0 < h.0 => float(p.1),
                (_, Some(h)) => hist(Arc::clone(&h.1)),
                (Some(p), None) => float(p.1),
                (None, None) => None,
            },
            "last_over_time" => match (last_f, last_h) {
                (Some(p), Some(h)) if h.0 < p.0 => float(p.1),
                (_, Some(h)) => hist(Arc::clone(&h.1)),
                (Some(p), None) => float(p.1),
                (None, None) => None,
            },
            "ts_of_first_over_time" => {
                let tf = first_f.map_or(i64::MAX, |p| p.0);
                let th = first_h.map_or(i64::MAX, |h| h.0);
                float(tf.min(th) as f64 / 1000.0)
            }
            "ts_of_last_over_time" => {
                let tf = last_f.map_or(i64::MIN, |p| p.0);
                let th = last_h.map_or(i64::MIN, |h| h.0);
                float(tf.max(th) as f64 / 1000.0)
            }
            "sum_over_time" | "avg_over_time" => {
                if !s.points.is_empty() {
                    self.warn(format!(
                        "PromQL warning: encountered a mix of histograms and floats for metric name {metric:?}"
                    ));
                    return None;
                }
                let hs = s.hists.iter().map(|h| h.1.as_ref());
                let res = if name == "avg_over_time" {
                    FloatHistogram::mean_of(hs)
                } else {
                    FloatHistogram::sum_of(hs)
                };
                match res {
                    Ok((mut h, reconciled)) => {
                        if reconciled.0 {
                            self.info(reconciled_info("aggregation"));
                        }
                        h.compact();
                        hist(Arc::new(h))
                    }
                    Err(e) => {
                        self.warn(histogram_error_warning(e, &metric));
                        None
                    }
                }
            }
            "max_over_time"
            | "min_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "mad_over_time"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time" => {
                if s.points.is_empty() {
                    return None;
                }
                self.info(format!(
                    "PromQL info: ignored histograms in a range containing both floats and histograms for metric name {metric:?}"
                ));
                f(&s.points, r).and_then(float)
            }
            _ => {
                self.warn(format!(
                    "PromQL warning: {name}() of native histograms is not supported by this engine; series {} skipped",
                    s.labels
                ));
                None
            }
        }
    }

    /// `double_exponential_smoothing(v, sf, tf)` (and its old name
    /// `holt_winters`).
    fn smoothing(&mut self, mut a: Args) -> Result<Val, QueryError> {
        let (r, sf, tf) = (a.range(0)?, a.scalar(1)?, a.scalar(2)?);
        if sf <= 0.0 || sf >= 1.0 {
            return Err(QueryError::exec(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                format_value(sf)
            )));
        }
        if tf <= 0.0 || tf >= 1.0 {
            return Err(QueryError::exec(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                format_value(tf)
            )));
        }
        self.over_range(a.name, r, true, |p, _| {
            double_exponential_smoothing(p, sf, tf)
        })
    }

    /// `histogram_quantile(q, v)`: classic buckets (`le` series) and native
    /// histograms.
    fn histogram_quantile(&mut self, mut a: Args) -> Result<Val, QueryError> {
        let (q, v) = (a.scalar(0)?, a.vector(1)?);
        if !(0.0..=1.0).contains(&q) {
            self.warn(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                format_value(q)
            ));
        }
        let (natives, classic) = self.histogram_inputs(v);
        let mut out = Vec::with_capacity(natives.len() + classic.len());
        for (labels, h) in natives {
            let (v, note) = h.quantile(q);
            if let Some(n) = note {
                self.info(n.info(labels.metric_name().unwrap_or("")));
            }
            out.push(Sample::float(labels, v, true));
        }
        for (key, mut buckets) in classic {
            let (value, forced) = bucket_quantile(q, &mut buckets);
            if forced {
                self.info(format!(
                    "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
                    key.metric_name().unwrap_or("")
                ));
            }
            out.push(Sample::float(key, value, true));
        }
        Ok(Val::Vector(out))
    }

    /// `histogram_fraction(lower, upper, v)`: classic buckets and native
    /// histograms.
    fn histogram_fraction(&mut self, mut a: Args) -> Result<Val, QueryError> {
        let (lower, upper, v) = (a.scalar(0)?, a.scalar(1)?, a.vector(2)?);
        let (natives, classic) = self.histogram_inputs(v);
        let mut out = Vec::with_capacity(natives.len() + classic.len());
        for (labels, h) in natives {
            let (v, note) = h.fraction(lower, upper);
            if let Some(n) = note {
                self.info(n.info(labels.metric_name().unwrap_or("")));
            }
            out.push(Sample::float(labels, v, true));
        }
        for (key, mut buckets) in classic {
            out.push(Sample::float(
                key,
                bucket_fraction(lower, upper, &mut buckets),
                true,
            ));
        }
        Ok(Val::Vector(out))
    }

    /// Splits the input of `histogram_quantile`/`histogram_fraction` into
    /// native histograms and classic bucket groups (keyed by the labels
    /// without `le`, name included, in first-seen order), with Prometheus's
    /// warnings: a malformed `le`, and a native histogram with the labels of a
    /// classic group (both are then dropped).
    fn histogram_inputs(&mut self, v: Vec<Sample>) -> (Vec<NativeInput>, Vec<ClassicGroup>) {
        let mut natives = Vec::new();
        let mut order: Vec<Labels> = Vec::new();
        let mut groups: HashMap<Labels, Vec<Bucket>> = HashMap::new();
        for s in v {
            if let Some(h) = s.hist {
                natives.push((s.labels, h));
                continue;
            }
            let le = s.labels.get("le").unwrap_or("").to_string();
            let Some(upper) = parse_go_float(&le) else {
                self.warn(format!(
                    "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                    le,
                    s.labels.metric_name().unwrap_or("")
                ));
                continue;
            };
            // The name stays in the key (delayed name removal) and is dropped at the end.
            let key = set_label(&s.labels, "le", "");
            groups
                .entry(key.clone())
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(Bucket {
                    upper_bound: upper,
                    count: s.value,
                });
        }
        let mut kept_natives = Vec::with_capacity(natives.len());
        for (labels, h) in natives {
            if groups.get(&labels).is_some_and(|b| !b.is_empty()) {
                self.warn(format!(
                    "PromQL warning: vector contains a mix of classic and native histograms for metric name {:?}",
                    labels.metric_name().unwrap_or("")
                ));
                groups.remove(&labels);
                continue;
            }
            kept_natives.push((labels, h));
        }
        let classic = order
            .into_iter()
            .filter_map(|k| groups.remove(&k).map(|b| (k, b)))
            .collect();
        (kept_natives, classic)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use promql_parser::parser::value::ValueType;

    use super::*;

    /// Every entry's kinds and arity are those promql-parser checks calls
    /// against, so that an eagerly evaluated argument has the kind declared.
    #[test]
    fn the_table_agrees_with_the_parser() {
        let mut seen = HashSet::new();
        for f in FUNCTIONS {
            assert!(seen.insert(f.name), "{} is in the table twice", f.name);
            if f.name == "holt_winters" {
                // The old name, which promql-parser 0.11 no longer accepts.
                continue;
            }
            let args: Vec<&str> = f
                .kinds
                .iter()
                .map(|k| match k {
                    Kind::Scalar => "1",
                    Kind::Vector => "m",
                    Kind::Range => "m[5m]",
                    Kind::Str => "\"a\"",
                })
                .collect();
            let text = format!("{}({})", f.name, args.join(", "));
            let expr =
                promql_parser::parser::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let Expr::Call(c) = expr else {
                panic!("{text} is not a call");
            };
            let kinds: Vec<ValueType> = f
                .kinds
                .iter()
                .map(|k| match k {
                    Kind::Scalar => ValueType::Scalar,
                    Kind::Vector => ValueType::Vector,
                    Kind::Range => ValueType::Matrix,
                    Kind::Str => ValueType::String,
                })
                .collect();
            assert_eq!(c.func.arg_types, kinds, "{}", f.name);
            let variadic = match f.arity {
                Arity::Fixed => 0,
                Arity::LastOptional => 1,
                Arity::LastRepeats => -1,
            };
            assert_eq!(c.func.variadic, variadic, "{}", f.name);
        }
    }
}
