//! Binary operators: arithmetic, comparisons and set operators, with vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`, `bool`, `fill*`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};
use strata_model::{Labels, METRIC_NAME};

use crate::aggregate::{histogram_error_warning, reconciled_info};
use crate::error::QueryError;
use crate::eval::Evaluator;
use crate::histogram::FloatHistogram;
use crate::model::{drop_labels, keep_labels, set_label, Sample, Val};

/// Whether the operator is arithmetic (and so drops the metric name).
fn is_arithmetic(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Applies `op` to two floats: the result and whether a comparison holds
/// (arithmetic always "holds").
pub(crate) fn scalar_binop(op: u16, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => {
            return Err(QueryError::exec(format!(
                "operator {} not allowed for scalar operations",
                promql_parser::parser::token::TokenType::new(op)
            )))
        }
    })
}

/// Prometheus's spelling of a binary operator, for annotations.
fn op_str(op: u16) -> &'static str {
    match op {
        T_ADD => "+",
        T_SUB => "-",
        T_MUL => "*",
        T_DIV => "/",
        T_MOD => "%",
        T_POW => "^",
        T_ATAN2 => "atan2",
        T_EQLC => "==",
        T_NEQ => "!=",
        T_GTR => ">",
        T_LSS => "<",
        T_GTE => ">=",
        T_LTE => "<=",
        _ => "?",
    }
}

/// Why an operator on two elements gave no result: an info or a warning
/// annotation, as in Prometheus.
enum Skip {
    Info(String),
    Warn(String),
}

/// One element's result: float value, histogram, whether a comparison holds,
/// and an info to record (reconciled custom buckets).
type Elem = (f64, Option<Arc<FloatHistogram>>, bool, Option<String>);

/// Prometheus's `vectorElemBinop` for operands that may be native histograms
/// (`lh`/`rh`; the floats are then unused). Histograms support `h * f`, `f * h`,
/// `h / f`, `h + h`, `h - h`, `h == h` and `h != h`; everything else is skipped
/// with an info annotation.
fn elem_binop(
    op: u16,
    lf: f64,
    rf: f64,
    lh: Option<&Arc<FloatHistogram>>,
    rh: Option<&Arc<FloatHistogram>>,
) -> Result<Result<Elem, Skip>, QueryError> {
    let incompatible = |l: &str, r: &str| {
        let o = op_str(op);
        Ok(Err(Skip::Info(format!(
            "PromQL info: incompatible sample types encountered for binary operator {o:?}: {l} {o} {r}"
        ))))
    };
    let scaled = |h: &Arc<FloatHistogram>, f: f64, divide: bool| {
        let mut h = FloatHistogram::clone(h);
        if divide {
            h.div(f);
        } else {
            h.mul(f);
        }
        h.compact();
        Ok(Ok((0.0, Some(Arc::new(h)), true, None)))
    };
    match (lh, rh) {
        (None, None) => {
            let (v, keep) = scalar_binop(op, lf, rf)?;
            Ok(Ok((v, None, keep, None)))
        }
        (None, Some(h)) => match op {
            T_MUL => scaled(h, lf, false),
            _ => incompatible("float", "histogram"),
        },
        (Some(h), None) => match op {
            T_MUL => scaled(h, rf, false),
            T_DIV => scaled(h, rf, true),
            _ => incompatible("histogram", "float"),
        },
        (Some(l), Some(r)) => match op {
            T_ADD | T_SUB => {
                let mut h = FloatHistogram::clone(l);
                let res = if op == T_ADD { h.add(r) } else { h.sub(r) };
                match res {
                    Ok(reconciled) => {
                        h.compact();
                        let info = reconciled.0.then(|| {
                            reconciled_info(if op == T_ADD {
                                "addition"
                            } else {
                                "subtraction"
                            })
                        });
                        Ok(Ok((0.0, Some(Arc::new(h)), true, info)))
                    }
                    Err(e) => Ok(Err(Skip::Warn(histogram_error_warning(e, "")))),
                }
            }
            T_EQLC => Ok(Ok((0.0, Some(Arc::clone(l)), l.equals(r), None))),
            T_NEQ => Ok(Ok((0.0, Some(Arc::clone(l)), !l.equals(r), None))),
            _ => incompatible("histogram", "histogram"),
        },
    }
}

struct Matching<'a> {
    on: bool,
    names: &'a [String],
    card: &'a VectorMatchCardinality,
}

fn matching(m: &Option<BinModifier>) -> Matching<'_> {
    static EMPTY: Vec<String> = Vec::new();
    static ONE_TO_ONE: VectorMatchCardinality = VectorMatchCardinality::OneToOne;
    match m {
        None => Matching {
            on: false,
            names: &EMPTY,
            card: &ONE_TO_ONE,
        },
        Some(bm) => {
            let (on, names) = match &bm.matching {
                Some(LabelModifier::Include(ls)) => (true, &ls.labels),
                Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
                None => (false, &EMPTY),
            };
            Matching {
                on,
                names,
                card: &bm.card,
            }
        }
    }
}

impl Matching<'_> {
    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            keep_labels(l, self.names)
        } else {
            drop_labels(l, self.names, true)
        }
    }
}

impl Evaluator<'_> {
    pub(crate) fn binary(&mut self, b: &BinaryExpr, t: i64) -> Result<Val, QueryError> {
        let op = b.op.id();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => {
                let (v, keep) = scalar_binop(op, l, r)?;
                if is_comparison(op) {
                    Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
                } else {
                    Ok(Val::Scalar(v))
                }
            }
            (Val::Vector(l), Val::Scalar(r)) => {
                self.vector_scalar(op, l, r, false, return_bool).map(Val::Vector)
            }
            (Val::Scalar(l), Val::Vector(r)) => {
                self.vector_scalar(op, r, l, true, return_bool).map(Val::Vector)
            }
            (Val::Vector(l), Val::Vector(r)) => {
                let m = matching(&b.modifier);
                match op {
                    T_LAND => Ok(Val::Vector(set_and(l, r, &m))),
                    T_LOR => Ok(Val::Vector(set_or(l, r, &m))),
                    T_LUNLESS => Ok(Val::Vector(set_unless(l, r, &m))),
                    _ => self
                        .vector_vector(op, l, r, &m, b.modifier.as_ref(), return_bool)
                        .map(Val::Vector),
                }
            }
            (l, r) => Err(QueryError::exec(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    fn vector_scalar(
        &mut self,
        op: u16,
        vec: Vec<Sample>,
        scalar: f64,
        swap: bool,
        return_bool: bool,
    ) -> Result<Vec<Sample>, QueryError> {
        let mut out = Vec::with_capacity(vec.len());
        for mut s in vec {
            let (l, r) = if swap {
                (scalar, s.value)
            } else {
                (s.value, scalar)
            };
            let (mut v, keep) = if s.hist.is_none() {
                scalar_binop(op, l, r)?
            } else {
                let (lh, rh) = if swap {
                    (None, s.hist.as_ref())
                } else {
                    (s.hist.as_ref(), None)
                };
                match elem_binop(op, l, r, lh, rh)? {
                    Err(skip) => {
                        self.skip(skip);
                        continue;
                    }
                    Ok((v, h, keep, info)) => {
                        if let Some(i) = info {
                            self.info(i);
                        }
                        // A comparison keeps the vector's element; `bool`
                        // turns it into a float.
                        if !is_comparison(op) {
                            s.hist = h;
                        }
                        if return_bool {
                            s.hist = None;
                        }
                        (v, keep)
                    }
                }
            };
            if is_comparison(op) && swap {
                v = r;
            }
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            s.value = v;
            if is_arithmetic(op) || return_bool {
                s.drop_name = true;
            }
            out.push(s);
        }
        Ok(out)
    }

    fn vector_vector(
        &mut self,
        op: u16,
        lhs: Vec<Sample>,
        rhs: Vec<Sample>,
        m: &Matching<'_>,
        modifier: Option<&BinModifier>,
        return_bool: bool,
    ) -> Result<Vec<Sample>, QueryError> {
        let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
        let include: &[String] = match m.card {
            VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls) => {
                &ls.labels
            }
            _ => &[],
        };
        let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
        let (fill_lhs, fill_rhs) = modifier
            .map(|bm| (bm.fill_values.lhs, bm.fill_values.rhs))
            .unwrap_or((None, None));
        // After the swap the right side is always the "one" side.
        // Like Prometheus, `fill_left` fills the (swapped) many side and
        // `fill_right` the one side.
        let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
        let (fill_many, fill_one) = (fill_lhs, fill_rhs);
        let mut one_sigs: HashMap<Labels, usize> = HashMap::with_capacity(one.len());
        for (i, s) in one.iter().enumerate() {
            let sig = m.signature(&s.labels);
            if let Some(&j) = one_sigs.get(&sig) {
                let side = if one_to_many { "left" } else { "right" };
                let group = if m.on {
                    keep_labels(&s.labels, m.names)
                } else {
                    drop_labels(&s.labels, m.names, true)
                };
                return Err(QueryError::exec(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    group, side, s.labels, one[j].labels
                )));
            }
            one_sigs.insert(sig, i);
        }
        let mut matched_one: HashSet<usize> = HashSet::new();
        let mut matched_sigs: HashMap<Labels, HashSet<Labels>> = HashMap::new();
        let mut out = Vec::new();
        for ls in &many {
            let sig = m.signature(&ls.labels);
            let (rs_value, rs_hist, rs_labels) = match one_sigs.get(&sig) {
                Some(&i) => {
                    matched_one.insert(i);
                    (one[i].value, one[i].hist.as_ref(), Some(&one[i].labels))
                }
                None => match fill_one {
                    Some(f) => (f, None, None),
                    None => continue,
                },
            };
            let (fl, fr) = if one_to_many {
                (rs_value, ls.value)
            } else {
                (ls.value, rs_value)
            };
            let (hl, hr) = if one_to_many {
                (rs_hist, ls.hist.as_ref())
            } else {
                (ls.hist.as_ref(), rs_hist)
            };
            // Like Prometheus, a pair of incompatible types is skipped before
            // the matching checks.
            let (mut v, hist, keep) = match elem_binop(op, fl, fr, hl, hr)? {
                Ok((v, h, keep, info)) => {
                    if let Some(i) = info {
                        self.info(i);
                    }
                    (v, h, keep)
                }
                Err(skip) => {
                    self.skip(skip);
                    continue;
                }
            };
            let empty = Labels::default();
            let metric = result_metric(&ls.labels, rs_labels.unwrap_or(&empty), m, include);
            // Matching errors are raised even for pairs a comparison filters out.
            let entry = matched_sigs.entry(sig).or_default();
            if one_to_one {
                if !entry.is_empty() {
                    return Err(QueryError::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                entry.insert(Labels::default());
            } else if !entry.insert(metric.clone()) {
                return Err(QueryError::exec(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            out.push(Sample {
                labels: metric,
                value: v,
                hist: if return_bool { None } else { hist },
                drop_name: ls.drop_name || is_arithmetic(op) || return_bool,
            });
        }
        if let Some(f) = fill_many {
            for (i, rs) in one.iter().enumerate() {
                if matched_one.contains(&i) {
                    continue;
                }
                let (fl, fr) = if one_to_many {
                    (rs.value, f)
                } else {
                    (f, rs.value)
                };
                let (hl, hr) = if one_to_many {
                    (rs.hist.as_ref(), None)
                } else {
                    (None, rs.hist.as_ref())
                };
                let (mut v, mut hist, keep) = match elem_binop(op, fl, fr, hl, hr)? {
                    Ok((v, h, keep, info)) => {
                        if let Some(i) = info {
                            self.info(i);
                        }
                        (v, h, keep)
                    }
                    Err(skip) => {
                        self.skip(skip);
                        continue;
                    }
                };
                if return_bool {
                    v = if keep { 1.0 } else { 0.0 };
                    hist = None;
                } else if !keep {
                    continue;
                }
                if is_comparison(op) && !return_bool {
                    v = fl;
                    hist = hl.cloned();
                }
                let metric = m.signature(&rs.labels);
                out.push(Sample {
                    labels: metric,
                    value: v,
                    hist,
                    drop_name: rs.drop_name || is_arithmetic(op) || return_bool,
                });
            }
        }
        Ok(out)
    }
}

impl Evaluator<'_> {
    /// Records why a pair was skipped.
    fn skip(&mut self, s: Skip) {
        match s {
            Skip::Info(m) => self.info(m),
            Skip::Warn(m) => self.warn(m),
        }
    }
}

fn result_metric(l: &Labels, r: &Labels, m: &Matching<'_>, include: &[String]) -> Labels {
    let mut out = if matches!(m.card, VectorMatchCardinality::OneToOne) {
        if m.on {
            keep_labels(l, m.names)
        } else {
            drop_labels(l, m.names, false)
        }
    } else {
        l.clone()
    };
    for name in include {
        if name == METRIC_NAME {
            continue;
        }
        out = set_label(&out, name, r.get(name).unwrap_or(""));
    }
    out
}

fn set_and(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching<'_>) -> Vec<Sample> {
    let sigs: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| sigs.contains(&m.signature(&s.labels)))
        .collect()
}

fn set_or(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching<'_>) -> Vec<Sample> {
    let sigs: HashSet<Labels> = lhs.iter().map(|s| m.signature(&s.labels)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|s| !sigs.contains(&m.signature(&s.labels))),
    );
    out
}

fn set_unless(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching<'_>) -> Vec<Sample> {
    let sigs: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| !sigs.contains(&m.signature(&s.labels)))
        .collect()
}
