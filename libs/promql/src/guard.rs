//! Limits on the shape of a query, checked before the text reaches the parser
//! and again on the parsed expression.
//!
//! Why before: `promql-parser` builds the AST bottom-up (an LR parser, no
//! recursion there), but its type checks, `Display`, `prettify` and the drop of
//! the tree recurse once per level, and so do the engine's own walks. A Rust
//! thread's stack does not grow: a few kilobytes of `((((…` or `a+a+…` would
//! overflow it and abort the whole process. So the raw text is scanned first,
//! iteratively, for an upper bound of the tree's depth and for its matcher
//! counts; only text within the limits is parsed. The parsed tree is then
//! measured exactly (again without recursion), which guards against the scan
//! ever being wrong.

use promql_parser::parser::Expr;

use crate::error::{QueryError, ShapeLimit};

/// The deepest tree the query threads' stacks are sized for: a
/// [`QueryShapeLimits::max_depth`] above it is a configuration error (the
/// engine tests evaluate every kind of nesting this deep).
pub const MAX_SUPPORTED_DEPTH: usize = 1000;

/// The limits on one query's text and tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryShapeLimits {
    /// The longest query text, in bytes.
    pub max_length_bytes: usize,
    /// The deepest expression tree, counted in nodes from the root to the
    /// deepest leaf: every operator, function call, aggregation, parenthesis,
    /// subquery and selector is one node, so the chain `a + b + c` is three
    /// levels deep and `sum(rate(x[5m]))` three.
    pub max_depth: usize,
    /// The most label matchers in one selector (all its `or` groups together).
    pub max_matchers_per_selector: usize,
    /// The most label matchers in the whole query.
    pub max_matchers: usize,
}

impl Default for QueryShapeLimits {
    fn default() -> Self {
        Self {
            max_length_bytes: 64 * 1024,
            max_depth: 500,
            max_matchers_per_selector: 100,
            max_matchers: 1000,
        }
    }
}

fn exceeded(limit: ShapeLimit, message: String) -> QueryError {
    QueryError::ShapeLimit { limit, message }
}

/// Parses `text` if it is within `limits`; the error names the limit it exceeds.
pub fn parse_query(text: &str, limits: &QueryShapeLimits) -> Result<Expr, QueryError> {
    check_text(text, limits)?;
    let expr = promql_parser::parser::parse(text).map_err(QueryError::Parse)?;
    check_expr(&expr, limits)?;
    Ok(expr)
}

/// One bracketed group of the text being scanned (the whole text is the
/// outermost group).
#[derive(Debug, Default)]
struct Group {
    /// Operators met at this level: each adds at most one level to the tree.
    operators: usize,
    /// The deepest group nested directly in this one.
    deepest_child: usize,
    /// A `{…}` group: its `=`, `!=`, `=~`, `!~` are label matchers.
    braces: bool,
    matchers: usize,
}

impl Group {
    /// An upper bound of the depth of the tree this group's text parses into.
    fn depth(&self) -> usize {
        self.operators
            .saturating_add(self.deepest_child)
            .saturating_add(1)
    }
}

/// Words that are binary operators (PromQL's keywords are case-insensitive).
fn is_operator_word(word: &[u8]) -> bool {
    ["and", "or", "unless", "atan2"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
}

/// Scans the text without parsing it: its length, an upper bound of the tree's
/// depth, and its matcher counts. Linear in the text, no recursion.
pub(crate) fn check_text(text: &str, limits: &QueryShapeLimits) -> Result<(), QueryError> {
    if text.len() > limits.max_length_bytes {
        return Err(exceeded(
            ShapeLimit::LengthBytes,
            format!(
                "the query is {} bytes long, more than the limit of {} bytes",
                text.len(),
                limits.max_length_bytes
            ),
        ));
    }
    let too_deep = || {
        exceeded(
            ShapeLimit::Depth,
            format!(
                "the query is nested deeper than the limit of {} levels",
                limits.max_depth
            ),
        )
    };
    let b = text.as_bytes();
    let mut groups = vec![Group::default()];
    let mut total_matchers = 0usize;
    let close = |groups: &mut Vec<Group>, total: &mut usize| -> Result<(), QueryError> {
        let Some(group) = groups.pop() else {
            return Ok(());
        };
        if group.matchers > limits.max_matchers_per_selector {
            return Err(exceeded(
                ShapeLimit::MatchersPerSelector,
                format!(
                    "a selector of the query has {} label matchers, more than the limit of {}",
                    group.matchers, limits.max_matchers_per_selector
                ),
            ));
        }
        *total = total.saturating_add(group.matchers);
        let depth = group.depth();
        if depth > limits.max_depth {
            return Err(too_deep());
        }
        if let Some(parent) = groups.last_mut() {
            parent.deepest_child = parent.deepest_child.max(depth);
        }
        Ok(())
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let in_braces = groups.last().is_some_and(|g| g.braces);
        match c {
            b'"' | b'\'' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                // `expr[1h:1m]` makes a subquery node above `expr` (and
                // `x[5m]` one level, counted once too many): one level more.
                if c == b'[' {
                    if let Some(g) = groups.last_mut() {
                        g.operators = g.operators.saturating_add(1);
                    }
                }
                groups.push(Group {
                    braces: c == b'{',
                    ..Group::default()
                });
                // The tree is at least as deep as the groups open at once, less
                // one (the brackets of a selector or a range are no node).
                if groups.len() > limits.max_depth.saturating_add(1) {
                    return Err(too_deep());
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                // An unbalanced closer is the parser's error to report.
                if groups.len() > 1 {
                    close(&mut groups, &mut total_matchers)?;
                }
                i += 1;
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = matches!(next, Some(b'=') | Some(b'~'));
                if let Some(g) = groups.last_mut() {
                    if in_braces {
                        g.matchers = g.matchers.saturating_add(1);
                    } else {
                        g.operators = g.operators.saturating_add(1);
                    }
                }
                i += if two { 2 } else { 1 };
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => {
                if let Some(g) = groups.last_mut() {
                    g.operators = g.operators.saturating_add(1);
                }
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.' => {
                let start = i;
                let number = c.is_ascii_digit() || c == b'.';
                let hex = number && matches!(b.get(i..i + 2), Some(b"0x") | Some(b"0X"));
                while i < b.len() {
                    let d = b[i];
                    if d.is_ascii_alphanumeric() || d == b'_' || d == b':' || d == b'.' {
                        i += 1;
                    } else if number
                        && !hex
                        && (d == b'+' || d == b'-')
                        && matches!(b[i - 1], b'e' | b'E')
                    {
                        // The sign of an exponent (`1e-3`) is not an operator.
                        i += 1;
                    } else {
                        break;
                    }
                }
                if !in_braces && !number && is_operator_word(&b[start..i]) {
                    if let Some(g) = groups.last_mut() {
                        g.operators = g.operators.saturating_add(1);
                    }
                }
            }
            _ => i += 1,
        }
    }
    // Unclosed groups (a parse error to come) are measured as if closed.
    while groups.len() > 1 {
        close(&mut groups, &mut total_matchers)?;
    }
    let root_depth = groups.last().map_or(0, Group::depth);
    if root_depth > limits.max_depth {
        return Err(too_deep());
    }
    check_total_matchers(total_matchers, limits)
}

fn check_total_matchers(total: usize, limits: &QueryShapeLimits) -> Result<(), QueryError> {
    if total > limits.max_matchers {
        return Err(exceeded(
            ShapeLimit::Matchers,
            format!(
                "the query has {total} label matchers, more than the limit of {}",
                limits.max_matchers
            ),
        ));
    }
    Ok(())
}

/// The children of one node of the tree.
fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => {
            let mut c = vec![a.expr.as_ref()];
            c.extend(a.param.as_deref());
            c
        }
        Expr::Unary(u) => vec![u.expr.as_ref()],
        Expr::Binary(b) => vec![b.lhs.as_ref(), b.rhs.as_ref()],
        Expr::Paren(p) => vec![p.expr.as_ref()],
        Expr::Subquery(s) => vec![s.expr.as_ref()],
        Expr::Call(c) => c.args.args.iter().map(|a| a.as_ref()).collect(),
        Expr::Extension(x) => x.expr.children().iter().collect(),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_) => Vec::new(),
    }
}

fn selector_matchers(e: &Expr) -> usize {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return 0,
    };
    vs.matchers.matchers.len() + vs.matchers.or_matchers.iter().map(Vec::len).sum::<usize>()
}

/// The matcher sets of every selector of a parsed tree, in the order they
/// appear (what `/api/v1/query_exemplars` selects series by, as Prometheus
/// does); a selector with `or` matchers gives several sets.
pub fn selector_matcher_sets(
    expr: &Expr,
) -> Result<Vec<Vec<strata_model::Matcher>>, crate::error::QueryError> {
    let mut out = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        let vs = match e {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            _ => None,
        };
        if let Some(vs) = vs {
            out.extend(crate::ast::selector_matchers(vs)?);
        }
        // Children pushed in reverse, so the first selector comes out first.
        stack.extend(children(e).into_iter().rev());
    }
    Ok(out)
}

/// The exact depth of a parsed tree, walked with an explicit stack.
pub fn expr_depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        stack.extend(children(e).into_iter().map(|c| (c, depth + 1)));
    }
    deepest
}

/// Checks a parsed tree against the limits (exactly, where the text scan could
/// only bound them).
pub(crate) fn check_expr(expr: &Expr, limits: &QueryShapeLimits) -> Result<(), QueryError> {
    let mut total = 0usize;
    let mut deepest = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        let matchers = selector_matchers(e);
        if matchers > limits.max_matchers_per_selector {
            return Err(exceeded(
                ShapeLimit::MatchersPerSelector,
                format!(
                    "a selector of the query has {matchers} label matchers, more than the limit of {}",
                    limits.max_matchers_per_selector
                ),
            ));
        }
        total = total.saturating_add(matchers);
        stack.extend(children(e).into_iter().map(|c| (c, depth + 1)));
    }
    if deepest > limits.max_depth {
        return Err(exceeded(
            ShapeLimit::Depth,
            format!(
                "the query is nested {deepest} levels deep, more than the limit of {} levels",
                limits.max_depth
            ),
        ));
    }
    check_total_matchers(total, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(depth: usize) -> QueryShapeLimits {
        QueryShapeLimits {
            max_depth: depth,
            ..QueryShapeLimits::default()
        }
    }

    fn limit_of(r: Result<Expr, QueryError>) -> Option<ShapeLimit> {
        match r {
            Err(QueryError::ShapeLimit { limit, .. }) => Some(limit),
            _ => None,
        }
    }

    /// `n` levels of `open` around `core`, closed by `close`.
    fn nest(open: &str, core: &str, close: &str, n: usize) -> String {
        format!("{}{core}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn the_text_bound_is_never_below_the_real_depth() {
        // The safety property: for each query, the scan refuses a limit one
        // below the real depth of its tree (the bound may be higher, never
        // lower). And it is not much looser: twice the real depth passes.
        let mut queries: Vec<String> = [
            "up",
            "sum(rate(http_requests_total{job=\"a\",code=~\"5..\"}[5m])) by (job)",
            "a + b * c ^ d - e / f % g",
            "-(-(1))",
            "max_over_time(rate(x[5m])[1h:1m] offset -5m)",
            "a and on(x) b or c unless d",
            "1e-3 + 0x1e - 2",
            "histogram_quantile(0.9, sum by (le) (rate(b[5m])))",
            "label_replace(up, \"a(\", \"$1\", \"b\", \"(.*)\") # a comment (((",
            "topk(3, a) > bool 2",
            "max_over_time(rate(x[5m])[1h:1m])",
            "(a + b)[5m:1m]",
            "a @ 100 offset 5m + -b",
            "sum by (a) (x) / on(a) group_left(b) count(y)",
        ]
        .iter()
        .map(|q| q.to_string())
        .collect();
        for n in [1, 2, 7, 40] {
            queries.extend([
                nest("(", "up", ")", n),
                nest("-(", "up", ")", n),
                nest("abs(", "up", ")", n),
                nest("sum(", "up", ")", n),
                nest("max_over_time(", "up", "[30s:1m])", n),
                nest("max_over_time((", "up", ")[1m:1m])", n),
                nest("topk(1, ", "up", ")", n),
                nest("label_replace(", "up", ", \"a\", \"b\", \"c\", \"d\")", n),
                format!("up{}", "+up".repeat(n)),
                format!("1{}", " * 2 ^ 3".repeat(n)),
                format!("up{}", " or up".repeat(n)),
            ]);
        }
        for q in &queries {
            let expr = promql_parser::parser::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            let real = expr_depth(&expr);
            assert!(
                matches!(
                    check_text(q, &limits(real - 1)),
                    Err(QueryError::ShapeLimit {
                        limit: ShapeLimit::Depth,
                        ..
                    })
                ),
                "{q}: the scan passed a limit below the real depth {real}"
            );
            assert!(
                check_text(q, &limits(2 * real + 1)).is_ok(),
                "{q}: the scan refused twice the real depth {real}"
            );
            assert!(
                check_expr(&expr, &limits(real)).is_ok(),
                "{q}: tree check refused it at its real depth {real}"
            );
            assert!(check_expr(&expr, &limits(real - 1)).is_err());
        }
    }

    #[test]
    fn deep_and_long_texts_are_refused_before_parsing() {
        let l = QueryShapeLimits::default();
        let nested = |open: &str, inner: &str, close: &str, n: usize| {
            format!("{}{inner}{}", open.repeat(n), close.repeat(n))
        };
        for text in [
            nested("(", "1", ")", 600),
            nested("sum(", "up", ")", 600),
            nested("-", "1", "", 600),
            nested("-(", "1", ")", 600),
            format!("up{}", "+up".repeat(600)),
            nested("max_over_time(", "up", "[5m:1m])", 300),
        ] {
            let err = check_text(&text, &l).unwrap_err();
            assert!(
                matches!(
                    err,
                    QueryError::ShapeLimit {
                        limit: ShapeLimit::Depth,
                        ..
                    }
                ),
                "{}…: {err:?}",
                &text[..20]
            );
        }
        let long = "a+".repeat(40_000) + "a";
        assert_eq!(
            limit_of(parse_query(&long, &l)),
            Some(ShapeLimit::LengthBytes)
        );
    }

    #[test]
    fn matcher_counts() {
        let l = QueryShapeLimits {
            max_matchers_per_selector: 3,
            max_matchers: 5,
            ..QueryShapeLimits::default()
        };
        assert!(parse_query("a{b=\"1\",c!=\"2\",d=~\"3\"}", &l).is_ok());
        assert_eq!(
            limit_of(parse_query("a{b=\"1\",c!=\"2\",d=~\"3\",e!~\"4\"}", &l)),
            Some(ShapeLimit::MatchersPerSelector)
        );
        assert_eq!(
            limit_of(parse_query(
                "a{b=\"1\",c=\"2\"} + a{b=\"1\",c=\"2\"} + a{b=\"1\",c=\"2\"}",
                &l
            )),
            Some(ShapeLimit::Matchers)
        );
        // `=` inside a string is not a matcher; `or` groups count together.
        assert!(parse_query("a{b=\"x=y=z=w\"}", &l).is_ok());
        assert_eq!(
            limit_of(parse_query(
                "{a=\"1\" or b=\"2\" or c=\"3\" or d=\"4\"}",
                &l
            )),
            Some(ShapeLimit::MatchersPerSelector)
        );
        // The exact check on the tree sees the same counts.
        let expr =
            promql_parser::parser::parse("{a=\"1\" or b=\"2\" or c=\"3\" or d=\"4\"}").unwrap();
        assert!(check_expr(&expr, &l).is_err());
    }

    #[test]
    fn the_tree_check_catches_what_the_scan_would_miss() {
        // If the scan had a bug, the exact check on the tree still refuses.
        let q = format!("{}1{}", "(".repeat(50), ")".repeat(50));
        let expr = promql_parser::parser::parse(&q).unwrap();
        assert_eq!(expr_depth(&expr), 51);
        assert!(check_expr(&expr, &limits(51)).is_ok());
        assert!(matches!(
            check_expr(&expr, &limits(50)),
            Err(QueryError::ShapeLimit {
                limit: ShapeLimit::Depth,
                ..
            })
        ));
    }
}
