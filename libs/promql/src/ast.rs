//! Reading the parsed expression: node keys, parentheses, string literals, the
//! times of `offset` and `@`, and a selector's matchers in the shared matcher
//! type. A leaf: pure functions of the AST.

use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use strata_model::{MatchOp, Matcher, METRIC_NAME};

use crate::error::QueryError;

/// Subqueries without an explicit step use this resolution (Prometheus's default
/// global evaluation interval).
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The key of a selector node in [`SelectorData`].
pub(crate) fn node_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
        Some(Offset::Neg(d)) => -i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
    }
}

pub(crate) fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX / 4),
    }
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The `@` time of a selector or subquery, if it has one.
pub(crate) fn at_ms(at: &Option<AtModifier>, start_ms: i64, end_ms: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start_ms),
        Some(AtModifier::End) => Some(end_ms),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

/// The matcher sets of a selector (more than one for `{a="b" or c="d"}`), converted
/// to the shared matcher type; the metric name becomes a `__name__` matcher.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let convert = |m: &promql_parser::label::Matcher| -> Result<Matcher, QueryError> {
        let op = match m.op {
            ParserMatchOp::Equal => MatchOp::Equal,
            ParserMatchOp::NotEqual => MatchOp::NotEqual,
            ParserMatchOp::Re(_) => MatchOp::RegexMatch,
            ParserMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        Matcher::new(op, m.name.clone(), m.value.clone())
            .map_err(|e| QueryError::Parse(e.to_string()))
    };
    let groups: Vec<&Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty() {
        vec![&vs.matchers.matchers]
    } else {
        let mut g: Vec<&Vec<_>> = vs.matchers.or_matchers.iter().collect();
        if !vs.matchers.matchers.is_empty() {
            g.push(&vs.matchers.matchers);
        }
        g
    };
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut set = Vec::with_capacity(g.len() + 1);
        if let Some(name) = &vs.name {
            set.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for m in g {
            set.push(convert(m)?);
        }
        out.push(set);
    }
    Ok(out)
}

/// A string literal argument (possibly in parentheses).
pub(crate) fn string_arg(e: &Expr) -> Result<String, QueryError> {
    match e {
        Expr::Paren(p) => string_arg(&p.expr),
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        other => Err(QueryError::exec(format!(
            "expected a string literal, got {}",
            other.value_type()
        ))),
    }
}

/// Removes parentheses.
pub(crate) fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}
