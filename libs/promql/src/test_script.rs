//! A runner for Prometheus's `promqltest` scripts (the `.test` files of
//! `promql/promqltest/testdata`): parses a script, loads its data into a
//! [`MemoryStorage`], evaluates every `eval` with the [`Engine`] and checks the
//! expectations. Each eval ends as passed, failed (with the reason) or
//! unsupported. An eval is unsupported only when the engine says so, by a
//! typed reason ([`QueryError::unsupported_feature`]); nothing in the text of
//! a test decides it. Everything else the engine answers, including a parse
//! error from promql-parser, is compared with the expectation.
//!
//! Native histograms (`{{...}}` samples, `load_with_nhcb`) are loaded into
//! [`MemoryStorage`] and compared as the reference runner does, except that a
//! bucket missing on one side equals a bucket with count 0 on the other (the
//! span layout itself is not compared). Start timestamps (`@st` lines) are not
//! loaded: the storage has no place for them.
//!
//! Like the reference runner, an instant eval is also run with its selectors
//! pinned by `@ t` and evaluated at other times (step invariance), and each of
//! these runs that succeeds is also run in "range mode" (a range query from
//! t−1m to t+1m, step 1m, compared at t). Every run checks the error or the
//! annotations and the result; a matrix must be sorted by labels and hold
//! each series once.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};
use regex::Regex;
use strata_model::{parse_duration, Labels, Sample, STALE_NAN};

use crate::engine::{Engine, EngineOptions};
use crate::error::QueryError;
use crate::histogram::{CounterResetHint, FloatHistogram, CUSTOM_BUCKETS_SCHEMA};
use crate::mathx::{format_value, parse_go_float};
use crate::storage::MemoryStorage;
use crate::value::{HistogramSeries, InstantSample, QueryResult, Value};

/// How an eval ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Unsupported(String),
}

/// The result of one `eval` command.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// 1-based line of the `eval` command.
    pub line: usize,
    pub query: String,
    pub outcome: Outcome,
}

/// A script error (the script itself is malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

fn serr(line: usize, message: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        message: message.into(),
    }
}

/// A duration with an optional leading minus, in milliseconds.
pub fn parse_signed_duration(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let d = parse_duration(body).ok()?;
    let ms = i64::try_from(d.as_millis()).ok()?;
    Some(if neg { -ms } else { ms })
}

/// Parses a PromQL-style number (`1`, `-2.5e3`, `0x1F`, `Inf`, `NaN`).
fn parse_number(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let (neg, body) = match lower.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    let v = match body {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => {
            if let Some(hex) = body.strip_prefix("0x") {
                u64::from_str_radix(hex, 16).ok()? as f64
            } else if body
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-' | '_'))
                && body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            {
                body.replace('_', "").parse().ok()?
            } else {
                return None;
            }
        }
    };
    Some(if neg { -v } else { v })
}

/// One item of an expanded value sequence.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Missing,
    Value(f64),
    /// A native histogram, and whether its notation gave a counter reset hint
    /// (only then is the hint compared).
    Histogram(Box<FloatHistogram>, bool),
}

/// Parses the inside of `{{...}}`: `key:value` and `key:[v v ...]` pairs.
fn parse_histogram(body: &str, line: usize) -> Result<(FloatHistogram, bool), ScriptError> {
    let mut h = FloatHistogram::default();
    let (mut buckets, mut n_buckets) = (Vec::new(), Vec::new());
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut hint_given = false;
    let mut rest = body.trim();
    let bad = |what: &str| serr(line, format!("bad histogram {what} in {{{{{body}}}}}"));
    while !rest.is_empty() {
        let colon = rest.find(':').ok_or_else(|| bad("item"))?;
        let key = rest[..colon].trim();
        rest = rest[colon + 1..].trim_start();
        let value;
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| bad("list"))?;
            value = &r[..end];
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = &rest[..end];
            rest = rest[end..].trim_start();
        }
        let num = |v: &str| parse_number(v).ok_or_else(|| bad(key));
        let list =
            |v: &str| -> Result<Vec<f64>, ScriptError> { v.split_whitespace().map(num).collect() };
        let int = |v: &str| v.parse::<i32>().map_err(|_| bad(key));
        match key {
            "schema" => h.schema = int(value)?,
            "sum" => h.sum = num(value)?,
            "count" => h.count = num(value)?,
            "z_bucket" => h.zero_count = num(value)?,
            "z_bucket_w" => h.zero_threshold = num(value)?,
            "buckets" => buckets = list(value)?,
            "n_buckets" => n_buckets = list(value)?,
            "offset" => offset = int(value)?,
            "n_offset" => n_offset = int(value)?,
            "custom_values" => h.custom_values = list(value)?,
            "counter_reset_hint" => {
                hint_given = true;
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return Err(bad(key)),
                };
            }
            _ => return Err(bad(key)),
        }
    }
    let index = |start: i32, k: usize| start.saturating_add(i32::try_from(k).unwrap_or(i32::MAX));
    h.positive = buckets
        .into_iter()
        .enumerate()
        .map(|(k, c)| (index(offset, k), c))
        .collect();
    h.negative = n_buckets
        .into_iter()
        .enumerate()
        .map(|(k, c)| (index(n_offset, k), c))
        .collect();
    Ok((h, hint_given))
}

/// Expands `{{A}}`, `{{A}}xN`, `{{A}}+{{B}}xN` and `{{A}}-{{B}}xN` (N+1
/// histograms, computed by repeated addition or subtraction).
fn parse_histogram_item(item: &str, line: usize) -> Result<Vec<Item>, ScriptError> {
    let bad = || serr(line, format!("bad histogram item {item:?}"));
    let close = item.find("}}").ok_or_else(bad)?;
    let (a, hint) = parse_histogram(&item[2..close], line)?;
    let rest = &item[close + 2..];
    if rest.is_empty() {
        return Ok(vec![Item::Histogram(Box::new(a), hint)]);
    }
    let (delta, sign, times) = if let Some(n) = rest.strip_prefix('x') {
        (None, 1.0, n)
    } else {
        let sign = if rest.starts_with('+') { 1.0 } else { -1.0 };
        let r = rest
            .strip_prefix("+{{")
            .or_else(|| rest.strip_prefix("-{{"))
            .ok_or_else(bad)?;
        let close = r.find("}}").ok_or_else(bad)?;
        let (b, _) = parse_histogram(&r[..close], line)?;
        let n = r[close + 2..].strip_prefix('x').ok_or_else(bad)?;
        (Some(b), sign, n)
    };
    let n: usize = times.parse().map_err(|_| bad())?;
    let mut out = Vec::with_capacity(n + 1);
    let mut cur = a;
    out.push(Item::Histogram(Box::new(cur.clone()), hint));
    for _ in 0..n {
        if let Some(b) = &delta {
            let r = if sign > 0.0 { cur.add(b) } else { cur.sub(b) };
            r.map_err(|_| serr(line, format!("incompatible histograms in {item:?}")))?;
        }
        out.push(Item::Histogram(Box::new(cur.clone()), hint));
    }
    Ok(out)
}

fn split_items(s: &str) -> Vec<String> {
    // Split on white space, keeping `{{ ... }}` groups (with suffixes) together.
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' && chars.get(i + 1) == Some(&'{') {
            depth += 1;
            cur.push_str("{{");
            i += 2;
            continue;
        }
        if c == '}' && chars.get(i + 1) == Some(&'}') {
            depth -= 1;
            cur.push_str("}}");
            i += 2;
            continue;
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

/// Expands a value sequence (`1 2 _ stale 0+10x3 _x2 {{...}}`).
fn parse_values(s: &str, line: usize) -> Result<Vec<Item>, ScriptError> {
    let mut out = Vec::new();
    for item in split_items(s) {
        if item.starts_with("{{") {
            out.extend(parse_histogram_item(&item, line)?);
            continue;
        }
        if item == "_" {
            out.push(Item::Missing);
            continue;
        }
        if item == "stale" {
            out.push(Item::Value(STALE_NAN));
            continue;
        }
        if let Some(n) = item.strip_prefix("_x") {
            let n: usize = n
                .parse()
                .map_err(|_| serr(line, format!("bad item {item:?}")))?;
            out.extend(std::iter::repeat_n(Item::Missing, n));
            continue;
        }
        // a(+|-)bxN or axN take precedence over numbers (`0x59` is 60 zeros, as
        // in Prometheus's series lexer).
        let expansion = item.rfind('x').and_then(|xpos| {
            let n: usize = item[xpos + 1..].parse().ok()?;
            (xpos > 0).then_some((xpos, n))
        });
        let Some((xpos, n)) = expansion else {
            match parse_number(&item) {
                Some(v) => {
                    out.push(Item::Value(v));
                    continue;
                }
                None => return Err(serr(line, format!("bad value {item:?}"))),
            }
        };
        let head = &item[..xpos];
        let bytes = head.as_bytes();
        let mut split = None;
        for i in 1..bytes.len() {
            if (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
                split = Some(i);
                break;
            }
        }
        let (a, b) = match split {
            Some(i) => {
                let a = parse_number(&head[..i]);
                let b = parse_number(&head[i + 1..]).map(|b| if bytes[i] == b'-' { -b } else { b });
                (a, b)
            }
            None => (parse_number(head), Some(0.0)),
        };
        let (Some(a), Some(b)) = (a, b) else {
            return Err(serr(line, format!("bad value {item:?}")));
        };
        let mut v = a;
        out.push(Item::Value(v));
        for _ in 0..n {
            v += b;
            out.push(Item::Value(v));
        }
    }
    Ok(out)
}

fn unquote(s: &str, line: usize) -> Result<(String, usize), ScriptError> {
    // s starts with a quote; returns the unescaped string and the bytes consumed.
    let mut chars = s.char_indices();
    let Some((_, q)) = chars.next() else {
        return Err(serr(line, "expected a quoted string"));
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Ok((out, i + c.len_utf8()));
        }
        if c == '\\' && q != '`' {
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'u' | 'x' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut hex = String::new();
                    for _ in 0..len {
                        if let Some((_, h)) = chars.next() {
                            hex.push(h);
                        }
                    }
                    let cp = u32::from_str_radix(&hex, 16).map_err(|_| serr(line, "bad escape"))?;
                    out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
        }
    }
    Err(serr(line, "unterminated string"))
}

/// Parses a series description (`name{a="b"}`); returns the labels and the rest.
fn parse_series_desc(s: &str, line: usize) -> Result<(Labels, &str), ScriptError> {
    let s = s.trim_start();
    let name_end = s
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(s.len());
    let mut pairs: Vec<(String, String)> = Vec::new();
    if name_end > 0 {
        pairs.push(("__name__".to_string(), s[..name_end].to_string()));
    }
    let mut rest = &s[name_end..];
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (name, r) = if rest.starts_with('"') {
                let (n, used) = unquote(rest, line)?;
                (n, &rest[used..])
            } else {
                let end = rest
                    .find(|c: char| c == '=' || c.is_whitespace())
                    .ok_or_else(|| serr(line, "bad label"))?;
                (rest[..end].to_string(), &rest[end..])
            };
            let r = r.trim_start();
            let r = r
                .strip_prefix('=')
                .ok_or_else(|| serr(line, format!("expected '=' in {s:?}")))?
                .trim_start();
            let (value, used) = unquote(r, line)?;
            pairs.push((name, value));
            rest = r[used..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            }
        }
    }
    Ok((Labels::from_pairs(pairs), rest))
}

/// What an `expect fail` (or `eval_fail`, `expected_fail_message`,
/// `expected_fail_regexp`) line asks of the error.
#[derive(Debug, Clone, Default)]
enum FailExpect {
    #[default]
    None,
    Any,
    Msg(String),
    Regex(Regex),
}

/// One `expect warn|info [msg:|regex:]` line: the annotation it must match. A
/// bare `expect warn` matches any annotation, as promqltest's `^.*$` does.
#[derive(Debug, Clone)]
enum AnnotationMatch {
    Any,
    Msg(String),
    Regex(Regex),
}

impl AnnotationMatch {
    fn matches(&self, got: &str) -> bool {
        match self {
            AnnotationMatch::Any => true,
            AnnotationMatch::Msg(m) => m == got,
            AnnotationMatch::Regex(r) => r.is_match(got),
        }
    }
}

impl std::fmt::Display for AnnotationMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnnotationMatch::Any => f.write_str("any annotation"),
            AnnotationMatch::Msg(m) => write!(f, "message {m:?}"),
            AnnotationMatch::Regex(r) => write!(f, "pattern {:?}", r.as_str()),
        }
    }
}

/// The expectations on one kind of annotation (warnings or infos).
#[derive(Debug, Clone, Default)]
struct AnnotationExpect {
    /// `eval_warn`/`eval_info`: at least one annotation of the kind.
    some: bool,
    /// `expect no_warn`/`expect no_info`: none.
    none: bool,
    /// `expect warn|info ...` lines: each must match an annotation, and each
    /// annotation must match one of them.
    matchers: Vec<AnnotationMatch>,
}

/// Compiles a regex of the script; one that does not compile is an error of
/// the script, as in promqltest (ignoring it would pass any annotation).
fn script_regex(pattern: &str, line: usize) -> Result<Regex, ScriptError> {
    Regex::new(pattern).map_err(|e| serr(line, format!("invalid regex {pattern:?}: {e}")))
}

#[derive(Debug, Clone)]
enum Expected {
    Scalar(f64),
    Str(String),
    Series(Vec<(Labels, Vec<Item>)>),
}

#[derive(Debug, Clone)]
struct EvalCmd {
    line: usize,
    query: String,
    /// Instant at `start`, or range start..end by step.
    instant: bool,
    start: i64,
    end: i64,
    step: i64,
    fail: FailExpect,
    ordered: bool,
    warn: AnnotationExpect,
    info: AnnotationExpect,
    range_vector: Option<(i64, i64, i64)>,
    expected: Expected,
}

fn parse_eval(lines: &[(usize, &str)]) -> Result<EvalCmd, ScriptError> {
    let (line, first) = lines[0];
    let (cmd, rest) = first.split_once(char::is_whitespace).unwrap_or((first, ""));
    let cmd = cmd.to_ascii_lowercase();
    let rest = rest.trim();
    let mut ev = EvalCmd {
        line,
        query: String::new(),
        instant: true,
        start: 0,
        end: 0,
        step: 0,
        fail: FailExpect::None,
        ordered: cmd == "eval_ordered",
        warn: AnnotationExpect::default(),
        info: AnnotationExpect::default(),
        range_vector: None,
        expected: Expected::Series(Vec::new()),
    };
    match cmd.as_str() {
        "eval_fail" => ev.fail = FailExpect::Any,
        "eval_warn" => ev.warn.some = true,
        "eval_info" => ev.info.some = true,
        _ => {}
    }
    let mut fail_lines = 0usize;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let dur =
        |s: &str| parse_signed_duration(s).ok_or_else(|| serr(line, format!("bad duration {s:?}")));
    let skip_words = |n: usize| -> String {
        let mut r = rest;
        for _ in 0..n {
            r = r.trim_start();
            let end = r.find(char::is_whitespace).unwrap_or(r.len());
            r = &r[end..];
        }
        r.trim().to_string()
    };
    match words.first().copied() {
        Some("instant") if words.get(1) == Some(&"at") && words.len() > 2 => {
            ev.start = dur(words[2])?;
            ev.end = ev.start;
            ev.query = skip_words(3);
        }
        Some("range")
            if words.len() > 7 && words[1] == "from" && words[3] == "to" && words[5] == "step" =>
        {
            ev.instant = false;
            ev.start = dur(words[2])?;
            ev.end = dur(words[4])?;
            ev.step = dur(words[6])?;
            ev.query = skip_words(7);
        }
        _ => return Err(serr(line, format!("bad eval command {first:?}"))),
    }
    let mut series = Vec::new();
    let mut scalar = None;
    let mut string = None;
    for &(l, text) in &lines[1..] {
        if let Some(e) = text.strip_prefix("expect ") {
            let e = e.trim();
            let (kind, arg) = match e.split_once(':') {
                Some((k, a)) => (k.trim(), Some(a.trim().to_string())),
                None => (e, None),
            };
            let mut kw = kind.split_whitespace();
            let head = kw.next().unwrap_or("");
            let sub = kw.next();
            let target = match head {
                "warn" => Some(&mut ev.warn),
                "info" => Some(&mut ev.info),
                _ => None,
            };
            if let Some(target) = target {
                let m = match (sub, arg) {
                    (Some("msg"), Some(a)) => AnnotationMatch::Msg(a),
                    (Some("regex"), Some(a)) => AnnotationMatch::Regex(script_regex(&a, l)?),
                    (None, None) => AnnotationMatch::Any,
                    _ => return Err(serr(l, format!("bad expectation {e:?}"))),
                };
                target.matchers.push(m);
                continue;
            }
            match head {
                "fail" => {
                    fail_lines += 1;
                    ev.fail = match (sub, arg) {
                        (Some("msg"), Some(a)) => FailExpect::Msg(a),
                        (Some("regex"), Some(a)) => FailExpect::Regex(script_regex(&a, l)?),
                        (None, None) => FailExpect::Any,
                        _ => return Err(serr(l, format!("bad expectation {e:?}"))),
                    }
                }
                "no_warn" => ev.warn.none = true,
                "no_info" => ev.info.none = true,
                "ordered" => ev.ordered = true,
                "string" => {
                    let s = e["string".len()..].trim();
                    string = Some(unquote(s, l)?.0);
                }
                "range" => {
                    // expect range vector from <s> to <e> step <st>
                    let w: Vec<&str> = e.split_whitespace().collect();
                    if w.len() != 8 {
                        return Err(serr(l, format!("bad expectation {e:?}")));
                    }
                    ev.range_vector = Some((dur(w[3])?, dur(w[5])?, dur(w[7])?));
                }
                _ => return Err(serr(l, format!("unknown expectation {e:?}"))),
            }
            continue;
        }
        if let Some(m) = text.strip_prefix("expected_fail_message") {
            ev.fail = FailExpect::Msg(m.trim().to_string());
            continue;
        }
        if let Some(m) = text.strip_prefix("expected_fail_regexp") {
            ev.fail = FailExpect::Regex(script_regex(m.trim(), l)?);
            continue;
        }
        if let Some(v) = parse_number(text) {
            scalar = Some(v);
            continue;
        }
        let (labels, vals) = parse_series_desc(text, l)?;
        let vals = parse_values(vals, l)?;
        series.push((labels, vals));
    }
    // The contradictions promqltest refuses as errors of the script.
    if fail_lines > 1 {
        return Err(serr(line, "more than one `expect fail` line"));
    }
    for (kind, a) in [("warn", &ev.warn), ("info", &ev.info)] {
        if a.none && !a.matchers.is_empty() {
            return Err(serr(
                line,
                format!("`expect {kind}` and `expect no_{kind}` together"),
            ));
        }
    }
    // An instant query answers one point per series: further expected values
    // could never be compared, so (as in promqltest) they are an error.
    if ev.instant && ev.range_vector.is_none() {
        if let Some((labels, vals)) = series.iter().find(|(_, v)| v.len() > 1) {
            return Err(serr(
                line,
                format!(
                    "{} values expected for {labels} by an instant eval; only `expect range vector` allows more than one",
                    vals.len()
                ),
            ));
        }
    }
    if let Some(v) = scalar {
        ev.expected = Expected::Scalar(v);
    } else if let Some(s) = string {
        ev.expected = Expected::Str(s);
    } else {
        ev.expected = Expected::Series(series);
    }
    if let Some((_, end, _)) = ev.range_vector {
        ev.start = end;
        ev.end = end;
    }
    Ok(ev)
}

fn float_eq(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let eps = 1e-6;
    if a == 0.0 || b == 0.0 {
        return (a - b).abs() < eps * f64::MIN_POSITIVE;
    }
    (a - b).abs() / (a.abs() + b.abs()) < eps
}

/// Checks the annotations of one kind against the expectations, as
/// promqltest does: `some` wants at least one; every `expect` line must match
/// an annotation and every annotation must match an `expect` line; `none`
/// wants none.
fn check_annotations(kind: &str, exp: &AnnotationExpect, got: &[String]) -> Result<(), String> {
    if exp.some && got.is_empty() {
        return Err(format!("expected {kind} annotations, got none"));
    }
    if exp.none && !got.is_empty() {
        return Err(format!("unexpected {kind} annotations: {got:?}"));
    }
    if exp.matchers.is_empty() {
        return Ok(());
    }
    if got.is_empty() {
        return Err(format!("expected {kind} annotations, got none"));
    }
    for m in &exp.matchers {
        if !got.iter().any(|g| m.matches(g)) {
            return Err(format!(
                "expected a {kind} annotation matching {m}, got {got:?}"
            ));
        }
    }
    for g in got {
        if !exp.matchers.iter().any(|m| m.matches(g)) {
            return Err(format!("unexpected {kind} annotation {g:?}"));
        }
    }
    Ok(())
}

/// Whether a histogram result matches the expected one: schema and zero
/// threshold equal; count, sum, zero count, custom bounds and every bucket
/// equal within [`float_eq`] (a missing bucket counts 0); the counter reset
/// hint only if the expectation gives one.
fn hist_eq(want: &FloatHistogram, hint_given: bool, got: &FloatHistogram) -> bool {
    let buckets_eq = |a: &[(i32, f64)], b: &[(i32, f64)]| {
        let mut m: BTreeMap<i32, (f64, f64)> = BTreeMap::new();
        for &(i, c) in a {
            m.entry(i).or_default().0 += c;
        }
        for &(i, c) in b {
            m.entry(i).or_default().1 += c;
        }
        m.values().all(|(x, y)| float_eq(*x, *y))
    };
    want.schema == got.schema
        && want.zero_threshold == got.zero_threshold
        && float_eq(want.count, got.count)
        && float_eq(want.sum, got.sum)
        && float_eq(want.zero_count, got.zero_count)
        && (want.schema != CUSTOM_BUCKETS_SCHEMA
            || (want.custom_values.len() == got.custom_values.len()
                && want
                    .custom_values
                    .iter()
                    .zip(&got.custom_values)
                    .all(|(a, b)| float_eq(*a, *b))))
        && buckets_eq(&want.positive, &got.positive)
        && buckets_eq(&want.negative, &got.negative)
        && (!hint_given || want.counter_reset_hint == got.counter_reset_hint)
}

/// One result point: a float or a histogram.
#[derive(Clone, Copy)]
enum Got<'a> {
    F(f64),
    H(&'a FloatHistogram),
}

impl Got<'_> {
    fn matches(&self, want: &Item) -> bool {
        match (want, self) {
            (Item::Value(w), Got::F(g)) => float_eq(*w, *g),
            (Item::Histogram(w, hint), Got::H(g)) => hist_eq(w, *hint, g),
            _ => false,
        }
    }
}

impl std::fmt::Display for Got<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Got::F(v) => write!(f, "{}", format_value(*v)),
            Got::H(h) => write!(f, "{h}"),
        }
    }
}

fn describe_item(i: &Item) -> String {
    match i {
        Item::Missing => "_".to_string(),
        Item::Value(v) => format_value(*v),
        Item::Histogram(h, _) => h.to_string(),
    }
}

fn got_of(s: &InstantSample) -> Got<'_> {
    match &s.histogram {
        Some(h) => Got::H(h),
        None => Got::F(s.value),
    }
}

/// Compares an instant query result (at time `t`) with the expectations.
fn check_instant(ev: &EvalCmd, res: &QueryResult, check_order: bool) -> Result<(), String> {
    match (&ev.expected, &res.value) {
        (Expected::Scalar(want), Value::Scalar { value, .. }) => {
            if float_eq(*want, *value) {
                Ok(())
            } else {
                Err(format!(
                    "expected scalar {}, got {}",
                    format_value(*want),
                    format_value(*value)
                ))
            }
        }
        (Expected::Str(want), Value::String { value, .. }) => {
            if want == value {
                Ok(())
            } else {
                Err(format!("expected string {want:?}, got {value:?}"))
            }
        }
        (Expected::Series(want), Value::Vector(got)) if ev.range_vector.is_none() => {
            // Two samples with one label set are two answers, not one: the
            // lookup by labels below would compare only the first.
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = got.iter().find(|s| !seen.insert(&s.labels)) {
                return Err(format!(
                    "series {} twice in the result: {}",
                    dup.labels,
                    describe_vector(got)
                ));
            }
            if want.len() != got.len() {
                return Err(format!(
                    "expected {} series, got {}: {}",
                    want.len(),
                    got.len(),
                    describe_vector(got)
                ));
            }
            for (i, (labels, vals)) in want.iter().enumerate() {
                let Some(wv) = vals.first().filter(|v| **v != Item::Missing) else {
                    return Err(format!("bad expectation for {labels}"));
                };
                let found = if check_order {
                    got.get(i).filter(|s| s.labels == *labels)
                } else {
                    got.iter().find(|s| s.labels == *labels)
                };
                match found {
                    None => {
                        return Err(format!(
                            "expected series {labels} {}{}, got {}",
                            describe_item(wv),
                            if check_order { " at this position" } else { "" },
                            describe_vector(got)
                        ))
                    }
                    Some(s) if !got_of(s).matches(wv) => {
                        return Err(format!(
                            "series {labels}: expected {}, got {}",
                            describe_item(wv),
                            got_of(s)
                        ))
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        }
        (Expected::Series(want), Value::Matrix(got)) => {
            if check_order {
                return Err("expected an ordered result, the query returned a matrix".into());
            }
            let (start, _, step) = ev.range_vector.unwrap_or((ev.start, ev.end, 1));
            compare_matrix(want, got, &res.histograms, start, step)
        }
        (want, got) => Err(format!(
            "expected {}, got a {} result",
            match want {
                Expected::Scalar(_) => "a scalar",
                Expected::Str(_) => "a string",
                Expected::Series(_) if ev.range_vector.is_some() => "a range vector",
                Expected::Series(_) => "an instant vector",
            },
            got.type_name()
        )),
    }
}

fn describe_vector(v: &[InstantSample]) -> String {
    let parts: Vec<String> = v
        .iter()
        .take(6)
        .map(|s| format!("{} {}", s.labels, got_of(s)))
        .collect();
    format!(
        "[{}{}]",
        parts.join(", "),
        if v.len() > 6 { ", ..." } else { "" }
    )
}

/// Checks that series come sorted by labels, each label set once, as
/// promqltest asserts of every matrix. (A series with float and histogram
/// points appears once in each list.)
fn check_matrix_order<'a>(
    kind: &str,
    labels: impl Iterator<Item = &'a Labels>,
) -> Result<(), String> {
    let mut prev: Option<&Labels> = None;
    for l in labels {
        if let Some(p) = prev {
            match p.cmp(l) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(format!("{kind} series {l} twice in the matrix"))
                }
                std::cmp::Ordering::Greater => {
                    return Err(format!(
                        "the matrix is not sorted by labels: {kind} series {l} after {p}"
                    ))
                }
            }
        }
        prev = Some(l);
    }
    Ok(())
}

/// Compares a matrix (float series plus histogram series) with the expected
/// series, whose k-th item is the point at `start + k * step`.
fn compare_matrix(
    want: &[(Labels, Vec<Item>)],
    got: &[strata_model::Series],
    got_hists: &[HistogramSeries],
    start: i64,
    step: i64,
) -> Result<(), String> {
    check_matrix_order("float", got.iter().map(|s| &s.labels))?;
    check_matrix_order("histogram", got_hists.iter().map(|s| &s.labels))?;
    // Series with no expected points are not expected at all.
    let want: Vec<&(Labels, Vec<Item>)> = want
        .iter()
        .filter(|(_, v)| v.iter().any(|i| *i != Item::Missing))
        .collect();
    let mut got_points: BTreeMap<&Labels, Vec<(i64, Got<'_>)>> = BTreeMap::new();
    for s in got {
        got_points
            .entry(&s.labels)
            .or_default()
            .extend(s.samples.iter().map(|p| (p.timestamp_ms, Got::F(p.value))));
    }
    for s in got_hists {
        got_points.entry(&s.labels).or_default().extend(
            s.samples
                .iter()
                .map(|p| (p.timestamp_ms, Got::H(&p.histogram))),
        );
    }
    for points in got_points.values_mut() {
        points.sort_by_key(|p| p.0);
    }
    if want.len() != got_points.len() {
        let names: Vec<String> = got_points.keys().take(6).map(|l| l.to_string()).collect();
        return Err(format!(
            "expected {} series, got {}: [{}]",
            want.len(),
            got_points.len(),
            names.join(", ")
        ));
    }
    for (labels, vals) in want {
        let Some(points) = got_points.get(labels) else {
            return Err(format!("expected series {labels} not in result"));
        };
        let expected: Vec<(i64, &Item)> = vals
            .iter()
            .enumerate()
            .filter(|(_, it)| **it != Item::Missing)
            .map(|(i, it)| (start + step * i as i64, it))
            .collect();
        let same = expected.len() == points.len()
            && expected
                .iter()
                .zip(points)
                .all(|(a, b)| a.0 == b.0 && b.1.matches(a.1));
        if !same {
            let want_s: Vec<String> = expected
                .iter()
                .take(12)
                .map(|(t, x)| format!("{}@{}", describe_item(x), t))
                .collect();
            let got_s: Vec<String> = points
                .iter()
                .take(12)
                .map(|(t, x)| format!("{x}@{t}"))
                .collect();
            return Err(format!(
                "series {labels}: expected [{}], got [{}]",
                want_s.join(" "),
                got_s.join(" ")
            ));
        }
    }
    Ok(())
}

/// Checks an error against the eval's failure expectation.
fn check_fail(fail: &FailExpect, err: &QueryError) -> Result<(), String> {
    let msg = err.to_string();
    match fail {
        FailExpect::None => Err(format!("unexpected error: {msg}")),
        FailExpect::Any => Ok(()),
        FailExpect::Msg(m) => {
            if msg.trim() == m.trim() {
                Ok(())
            } else {
                Err(format!("expected error {m:?}, got {msg:?}"))
            }
        }
        FailExpect::Regex(re) => {
            if re.is_match(&msg) {
                Ok(())
            } else {
                Err(format!("error {msg:?} does not match {:?}", re.as_str()))
            }
        }
    }
}

/// Functions whose result depends on the evaluation time (no step-invariance check).
const TIME_DEPENDENT: &[&str] = &[
    "time",
    "timestamp",
    "predict_linear",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
    "start",
    "end",
    "range",
    "step",
];

fn calls_any(e: &Expr, names: &[&str]) -> bool {
    match e {
        Expr::Call(c) => {
            names.contains(&c.func.name) || c.args.args.iter().any(|a| calls_any(a, names))
        }
        Expr::Aggregate(a) => {
            calls_any(&a.expr, names) || a.param.as_ref().is_some_and(|p| calls_any(p, names))
        }
        Expr::Binary(b) => calls_any(&b.lhs, names) || calls_any(&b.rhs, names),
        Expr::Paren(p) => calls_any(&p.expr, names),
        Expr::Unary(u) => calls_any(&u.expr, names),
        Expr::Subquery(s) => calls_any(&s.expr, names),
        _ => false,
    }
}

fn at_modifier(t: i64) -> AtModifier {
    let d = Duration::from_millis(t.unsigned_abs());
    let st = if t >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    AtModifier::At(st.unwrap_or(SystemTime::UNIX_EPOCH))
}

/// Adds `@ t` to every selector and subquery without one, not descending into subqueries.
fn pin_at(e: &mut Expr, t: i64) {
    match e {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(at_modifier(t)),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(at_modifier(t)),
        Expr::Subquery(sq) if sq.at.is_none() => sq.at = Some(at_modifier(t)),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| pin_at(a, t)),
        Expr::Aggregate(a) => {
            pin_at(&mut a.expr, t);
            if let Some(p) = &mut a.param {
                pin_at(p, t);
            }
        }
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, t);
            pin_at(&mut b.rhs, t);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, t),
        Expr::Unary(u) => pin_at(&mut u.expr, t),
        _ => {}
    }
}

/// Sets the counter reset hints that Prometheus's TSDB gives the histograms of
/// one series when they are appended and read back (the expectations assume
/// them): a gauge stays a gauge; a histogram that starts a chunk (the first
/// one, one after a float sample, or one with a new layout) reads as
/// "unknown", or "reset" if it is one; the others read as "not_reset", or
/// "reset" where a counter reset is detected.
fn stored_hints(items: &mut [Item]) {
    let mut prev: Option<FloatHistogram> = None;
    for item in items.iter_mut() {
        match item {
            Item::Value(_) => prev = None,
            Item::Missing => {}
            Item::Histogram(h, _) => {
                let hint = match (h.counter_reset_hint, &prev) {
                    (CounterResetHint::Gauge, _) => CounterResetHint::Gauge,
                    (CounterResetHint::Reset, _) => CounterResetHint::Reset,
                    (_, None) => CounterResetHint::Unknown,
                    (_, Some(p)) if h.detects_reset(p) => CounterResetHint::Reset,
                    (_, Some(p))
                        if p.schema != h.schema
                            || p.zero_threshold != h.zero_threshold
                            || p.custom_values != h.custom_values =>
                    {
                        CounterResetHint::Unknown
                    }
                    (_, Some(_)) => CounterResetHint::NotReset,
                };
                h.counter_reset_hint = hint;
                prev = Some(FloatHistogram::clone(h));
            }
        }
    }
}

/// What one timestamp of a classic histogram holds: `(le, cumulative count)`
/// per bucket, `_count` and `_sum`.
#[derive(Debug, Default)]
struct ClassicPoint {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: Option<f64>,
}

/// `load_with_nhcb`: collects the float samples of classic histograms
/// (`X_bucket{le=...}`, `X_sum`, `X_count`) per series `X` and timestamp, and
/// turns them into native histograms with custom buckets.
#[derive(Debug, Default)]
struct NhcbCollector {
    series: BTreeMap<Labels, BTreeMap<i64, ClassicPoint>>,
}

impl NhcbCollector {
    fn add(&mut self, labels: &Labels, ts: i64, v: f64) {
        let name = labels.metric_name().unwrap_or("");
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            return;
        };
        let le = labels.get("le").and_then(parse_go_float);
        if kind == 0 && le.is_none_or(f64::is_nan) {
            return;
        }
        let key = Labels::new(
            labels
                .iter()
                .filter(|x| x.name != "le")
                .map(|x| {
                    if x.name == strata_model::METRIC_NAME {
                        strata_model::Label::new(strata_model::METRIC_NAME, base)
                    } else {
                        x.clone()
                    }
                })
                .collect(),
        );
        let p = self.series.entry(key).or_default().entry(ts).or_default();
        match (kind, le) {
            (0, Some(le)) => p.buckets.push((le, v)),
            (1, _) => p.count = Some(v),
            _ => p.sum = Some(v),
        }
    }

    /// One histogram per series and timestamp with buckets; the bounds are all
    /// `le` values seen for the series (`+Inf` implied), the bucket counts the
    /// differences of the cumulative ones, the count `_count` (else the `+Inf`
    /// bucket) and the sum `_sum` (else 0).
    fn histograms(self) -> Vec<(Labels, i64, FloatHistogram)> {
        let mut out = Vec::new();
        for (labels, points) in self.series {
            let mut bounds: Vec<f64> = points
                .values()
                .flat_map(|p| p.buckets.iter().map(|b| b.0))
                .filter(|b| b.is_finite())
                .collect();
            bounds.sort_by(f64::total_cmp);
            bounds.dedup();
            for (ts, p) in points {
                if p.buckets.is_empty() {
                    continue;
                }
                let mut cumulative: Vec<(f64, f64)> = p.buckets.clone();
                cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut h = FloatHistogram {
                    schema: CUSTOM_BUCKETS_SCHEMA,
                    custom_values: bounds.clone(),
                    ..FloatHistogram::default()
                };
                let mut prev = 0.0;
                for (i, bound) in bounds.iter().chain([f64::INFINITY].iter()).enumerate() {
                    // A bound missing at this time counts like the one below it.
                    let cum = cumulative
                        .iter()
                        .rev()
                        .find(|b| b.0 <= *bound)
                        .map_or(0.0, |b| b.1);
                    h.positive
                        .push((i32::try_from(i).unwrap_or(i32::MAX), cum - prev));
                    prev = cum;
                }
                h.count = p.count.unwrap_or(prev);
                h.sum = p.sum.unwrap_or(0.0);
                out.push((labels.clone(), ts, h));
            }
        }
        out
    }
}

/// Runs every command of a script; returns one result per `eval`.
pub async fn run_script(text: &str, opts: &EngineOptions) -> Result<Vec<EvalResult>, ScriptError> {
    let engine = Engine::new(opts.clone());
    let mut storage = MemoryStorage::new();
    let mut results = Vec::new();

    // Split into commands.
    let mut commands: Vec<Vec<(usize, &str)>> = Vec::new();
    let mut cur: Vec<(usize, &str)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            if !cur.is_empty() {
                commands.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let is_clear = l
            .split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("clear"));
        if is_clear {
            // `clear` is a command of one line; what follows starts a new one.
            if !cur.is_empty() {
                commands.push(std::mem::take(&mut cur));
            }
            commands.push(vec![(i + 1, l)]);
            continue;
        }
        cur.push((i + 1, l));
    }
    if !cur.is_empty() {
        commands.push(cur);
    }

    for cmd in commands {
        let (line, first) = cmd[0];
        let word = first
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if word == "clear" {
            storage.clear();
        } else if word == "load" || word == "load_with_nhcb" {
            let interval = first
                .split_whitespace()
                .nth(1)
                .and_then(parse_signed_duration)
                .ok_or_else(|| serr(line, "bad load interval"))?;
            let mut nhcb = NhcbCollector::default();
            for &(l, text) in &cmd[1..] {
                // Start timestamps (`m@st ...`, `@st ...`) have nowhere to go:
                // neither the storage nor the engine knows them. The evals
                // still run, and pass only where the answer does not depend
                // on them.
                let desc_end = text.find(char::is_whitespace).unwrap_or(text.len());
                if text[..desc_end].ends_with("@st") || text.contains("}@st") {
                    continue;
                }
                let (labels, rest) = parse_series_desc(text, l)?;
                let rest = rest.trim_start();
                if rest.starts_with("@st") {
                    continue;
                }
                let mut items = parse_values(rest, l)?;
                if items.iter().any(|i| matches!(i, Item::Histogram(..))) {
                    stored_hints(&mut items);
                }
                for (k, it) in items.iter().enumerate() {
                    let ts = interval * k as i64;
                    match it {
                        Item::Value(v) => {
                            storage.add_sample(&labels, Sample::new(ts, *v));
                            if word == "load_with_nhcb" {
                                nhcb.add(&labels, ts, *v);
                            }
                        }
                        Item::Histogram(h, _) => {
                            storage.add_histogram(&labels, ts, FloatHistogram::clone(h));
                        }
                        Item::Missing => {}
                    }
                }
            }
            for (labels, ts, h) in nhcb.histograms() {
                storage.add_histogram(&labels, ts, h);
            }
        } else if word.starts_with("eval") {
            let ev = parse_eval(&cmd)?;
            let outcome = run_eval(&engine, &storage, &ev).await;
            results.push(EvalResult {
                line: ev.line,
                query: ev.query.clone(),
                outcome,
            });
        } else {
            return Err(serr(line, format!("unknown command {first:?}")));
        }
    }
    Ok(results)
}

/// Runs one eval: the query as written, and for an instant eval also with
/// its selectors pinned by `@` at other times and in range mode, as promqltest
/// does. The first check that does not hold decides the outcome.
async fn run_eval(engine: &Engine, storage: &MemoryStorage, ev: &EvalCmd) -> Outcome {
    match eval_checks(engine, storage, ev).await {
        Ok(()) => Outcome::Passed,
        Err(o) => o,
    }
}

/// A failure, named after the run of the query that saw it.
fn failed(run: &str, why: impl std::fmt::Display) -> Outcome {
    if run.is_empty() {
        Outcome::Failed(why.to_string())
    } else {
        Outcome::Failed(format!("{run}: {why}"))
    }
}

/// What an error of one run of the query means. A feature the engine reports
/// as missing makes the eval unsupported (whatever it expects: the query was
/// not evaluated); a shape limit is a failure (the production defaults must
/// pass the corpus); any other error must be the expected one.
fn on_error(ev: &EvalCmd, e: &QueryError, run: &str) -> Result<(), Outcome> {
    if let Some(f) = e.unsupported_feature() {
        return Err(Outcome::Unsupported(f.to_string()));
    }
    if let QueryError::ShapeLimit { .. } = e {
        return Err(failed(run, format!("refused by a shape limit: {e}")));
    }
    check_fail(&ev.fail, e).map_err(|r| failed(run, r))
}

/// The checks every successful run makes: a failure was not expected, the
/// annotations are the expected ones.
fn check_success(ev: &EvalCmd, res: &QueryResult, run: &str) -> Result<(), Outcome> {
    if !matches!(ev.fail, FailExpect::None) {
        return Err(failed(run, "expected the query to fail, it succeeded"));
    }
    check_annotations("warn", &ev.warn, &res.warnings).map_err(|r| failed(run, r))?;
    check_annotations("info", &ev.info, &res.infos).map_err(|r| failed(run, r))
}

async fn eval_checks(
    engine: &Engine,
    storage: &MemoryStorage,
    ev: &EvalCmd,
) -> Result<(), Outcome> {
    // The engine's own entry, so the shape limits hold for the corpus too. A
    // parse error is the engine's answer like any other: with a failure
    // expected, its message must be the expected one.
    let expr = match crate::guard::parse_query(&ev.query, &engine.options().shape) {
        Ok(e) => e,
        Err(e) => return on_error(ev, &e, ""),
    };
    if !ev.instant {
        let res = engine
            .range_query(storage, &ev.query, ev.start, ev.end, ev.step)
            .await;
        let res = match res {
            Err(e) => return on_error(ev, &e, ""),
            Ok(r) => r,
        };
        check_success(ev, &res, "")?;
        return check_range(ev, &res).map_err(|r| failed("", r));
    }

    // The query as written, then (unless its result depends on the
    // evaluation time) pinned with `@ t` and evaluated at other times: the
    // answer must not change.
    let t = ev.start;
    let mut runs: Vec<(i64, Option<Expr>)> = vec![(t, None)];
    if !calls_any(&expr, TIME_DEPENDENT) {
        let mut pinned = expr.clone();
        pin_at(&mut pinned, t);
        let times = if t == 0 {
            vec![-1000, 0, 1000]
        } else {
            vec![-10 * t, 0, t / 5, t, 10 * t]
        };
        runs.extend(times.into_iter().map(|at| (at, Some(pinned.clone()))));
    }
    let range_mode = ev.range_vector.is_none()
        && !matches!(ev.expected, Expected::Str(_))
        && !calls_any(&expr, &["start", "end", "range", "step"]);
    for (at, pinned) in runs {
        let run = match pinned {
            None => String::new(),
            Some(_) => format!("step invariance at {at}ms"),
        };
        let res = match &pinned {
            None => engine.instant_query(storage, &ev.query, at).await,
            Some(p) => engine.instant_query_expr(storage, p.clone(), at).await,
        };
        let res = match res {
            // Failed as expected: promqltest goes on with the next run, and
            // has no range mode for a failing query.
            Err(e) => {
                on_error(ev, &e, &run)?;
                continue;
            }
            Ok(r) => r,
        };
        check_success(ev, &res, &run)?;
        check_instant(ev, &res, ev.ordered).map_err(|r| failed(&run, r))?;
        if !range_mode {
            continue;
        }
        // Range mode: the same query from at−1m to at+1m, step 1m, must give
        // the instant answer at `at`. A pinned query goes through its text, as
        // promqltest's does.
        let run = if run.is_empty() {
            "range mode".to_string()
        } else {
            format!("{run}, range mode")
        };
        let text = match &pinned {
            None => ev.query.clone(),
            Some(p) => p.to_string(),
        };
        let r = match engine
            .range_query(storage, &text, at - 60_000, at + 60_000, 60_000)
            .await
        {
            Err(e) => {
                if let Some(f) = e.unsupported_feature() {
                    return Err(Outcome::Unsupported(f.to_string()));
                }
                return Err(failed(&run, format!("unexpected error: {e}")));
            }
            Ok(r) => r,
        };
        check_range_mode(ev, &r, at).map_err(|r| failed(&run, r))?;
    }
    Ok(())
}

/// Compares the result of a range eval with the expectation.
fn check_range(ev: &EvalCmd, res: &QueryResult) -> Result<(), String> {
    match (&ev.expected, &res.value) {
        (_, Value::Matrix(_)) if ev.ordered => {
            Err("expected an ordered result, the query returned a matrix".into())
        }
        (Expected::Series(want), Value::Matrix(got)) => {
            compare_matrix(want, got, &res.histograms, ev.start, ev.step)
        }
        // promqltest: a bare number expects a scalar, and a range query
        // answers a matrix.
        (Expected::Scalar(_), Value::Matrix(_)) => {
            Err("expected a scalar, the range query returned a matrix".into())
        }
        (_, v) => Err(format!(
            "unexpected {} result of a range query",
            v.type_name()
        )),
    }
}

/// Range mode: the matrix must be sorted, and its points at `t` must be the
/// instant answer (order aside: a range query's series are sorted by labels).
fn check_range_mode(ev: &EvalCmd, r: &QueryResult, t: i64) -> Result<(), String> {
    let Value::Matrix(m) = &r.value else {
        return Err(format!(
            "the result is a {}, not a matrix",
            r.value.type_name()
        ));
    };
    check_matrix_order("float", m.iter().map(|s| &s.labels))?;
    check_matrix_order("histogram", r.histograms.iter().map(|s| &s.labels))?;
    let mut at_t: Vec<InstantSample> = m
        .iter()
        .filter_map(|s| {
            s.samples
                .iter()
                .find(|p| p.timestamp_ms == t)
                .map(|p| InstantSample {
                    labels: s.labels.clone(),
                    timestamp_ms: t,
                    value: p.value,
                    histogram: None,
                })
        })
        .collect();
    at_t.extend(r.histograms.iter().filter_map(|s| {
        s.samples
            .iter()
            .find(|p| p.timestamp_ms == t)
            .map(|p| InstantSample {
                labels: s.labels.clone(),
                timestamp_ms: t,
                value: 0.0,
                histogram: Some(Box::new(p.histogram.clone())),
            })
    }));
    let value = match (&ev.expected, at_t.first()) {
        (Expected::Scalar(_), Some(s)) => Value::Scalar {
            timestamp_ms: t,
            value: s.value,
        },
        _ => Value::Vector(at_t),
    };
    let as_instant = QueryResult {
        value,
        histograms: Vec::new(),
        warnings: Vec::new(),
        infos: Vec::new(),
    };
    check_instant(ev, &as_instant, false)
}

// The checks the engine's own answers cannot reach (it sorts its matrices and
// never repeats a series), each shown to fail on a result that breaks it.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::value::HistogramSample;

    fn labels(v: &str) -> Labels {
        Labels::from_pairs([("a", v)])
    }

    fn floats(v: &str, points: &[(i64, f64)]) -> strata_model::Series {
        strata_model::Series {
            labels: labels(v),
            samples: points.iter().map(|&(t, x)| Sample::new(t, x)).collect(),
        }
    }

    fn want(v: &str, items: &[f64]) -> (Labels, Vec<Item>) {
        (labels(v), items.iter().map(|&x| Item::Value(x)).collect())
    }

    #[test]
    fn a_sorted_matrix_compares_equal() {
        let got = [floats("1", &[(0, 1.0)]), floats("2", &[(0, 2.0)])];
        let w = [want("1", &[1.0]), want("2", &[2.0])];
        assert_eq!(compare_matrix(&w, &got, &[], 0, 60_000), Ok(()));
    }

    #[test]
    fn an_unsorted_matrix_fails() {
        let got = [floats("2", &[(0, 2.0)]), floats("1", &[(0, 1.0)])];
        let w = [want("1", &[1.0]), want("2", &[2.0])];
        let r = compare_matrix(&w, &got, &[], 0, 60_000);
        assert!(r.as_ref().is_err_and(|e| e.contains("not sorted")), "{r:?}");
    }

    #[test]
    fn a_duplicate_series_is_not_merged() {
        // Merged, the two halves would look like the expected series.
        let got = [floats("1", &[(0, 1.0)]), floats("1", &[(60_000, 2.0)])];
        let w = [want("1", &[1.0, 2.0])];
        let r = compare_matrix(&w, &got, &[], 0, 60_000);
        assert!(r.as_ref().is_err_and(|e| e.contains("twice")), "{r:?}");
        // A series with float and histogram points is one series, not two.
        let h = FloatHistogram {
            count: 1.0,
            ..FloatHistogram::default()
        };
        let hists = [HistogramSeries {
            labels: labels("1"),
            samples: vec![HistogramSample {
                timestamp_ms: 60_000,
                histogram: h.clone(),
            }],
        }];
        let w = [(
            labels("1"),
            vec![Item::Value(1.0), Item::Histogram(Box::new(h), false)],
        )];
        let got = [floats("1", &[(0, 1.0)])];
        assert_eq!(compare_matrix(&w, &got, &hists, 0, 60_000), Ok(()));
    }

    #[test]
    fn a_duplicate_sample_of_a_vector_fails() {
        let ev = parse_eval(&[(1, "eval instant at 0 m"), (2, "{a=\"1\"} 1")]).unwrap();
        let s = InstantSample {
            labels: labels("1"),
            timestamp_ms: 0,
            value: 1.0,
            histogram: None,
        };
        let res = |v: Vec<InstantSample>| QueryResult {
            value: Value::Vector(v),
            histograms: Vec::new(),
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        assert_eq!(check_instant(&ev, &res(vec![s.clone()]), false), Ok(()));
        let r = check_instant(&ev, &res(vec![s.clone(), s]), false);
        assert!(r.as_ref().is_err_and(|e| e.contains("twice")), "{r:?}");
    }

    #[test]
    fn every_annotation_expectation_must_match_and_every_annotation_be_expected() {
        let exp = |lines: &[&str]| {
            let mut l = vec![(1, "eval instant at 0 m")];
            l.extend(lines.iter().map(|x| (2, *x)));
            parse_eval(&l).unwrap().warn
        };
        let got = vec!["w1".to_string(), "w2".to_string()];
        let both = exp(&["expect warn msg: w1", "expect warn regex: ^w2$"]);
        assert_eq!(check_annotations("warn", &both, &got), Ok(()));
        let any = exp(&["expect warn"]);
        assert_eq!(check_annotations("warn", &any, &got), Ok(()));
        // w2 is not expected.
        let one = exp(&["expect warn msg: w1"]);
        assert!(check_annotations("warn", &one, &got).is_err());
        // The second regex matches nothing.
        let extra = exp(&["expect warn regex: w", "expect warn regex: ^w3$"]);
        assert!(check_annotations("warn", &extra, &got).is_err());
        assert!(check_annotations("warn", &any, &[]).is_err());
        let none = exp(&["expect no_warn"]);
        assert!(check_annotations("warn", &none, &got).is_err());
        assert_eq!(check_annotations("warn", &none, &[]), Ok(()));
    }
}
