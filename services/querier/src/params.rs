//! Request parameters as Prometheus reads them: form values from the URL and from a
//! form-encoded POST body, timestamps as unix seconds or RFC 3339, durations as
//! float seconds or Prometheus durations, `match[]` selectors and `limit`.
//!
//! Every function here returns the message Prometheus would put in its `error`
//! field; the caller decides the error type (almost always `bad_data`).

use strata_model::{parse_duration, MatchOp, Matcher};
use strata_promql::QueryShapeLimits;

use crate::engine::parse_guarded;

/// The earliest timestamp the API accepts and the default `start` of metadata
/// queries: Prometheus's `minTime` (the smallest Go time that survives a round
/// trip through unix milliseconds), in milliseconds.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
/// The latest timestamp the API accepts and the default `end` of metadata
/// queries: Prometheus's `maxTime`, in milliseconds.
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;

/// How Prometheus spells [`MIN_TIME_MS`] and [`MAX_TIME_MS`] in RFC 3339; clients
/// (Grafana among them) send these back, so they must parse.
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// The most points a range query may produce per series.
pub(crate) const MAX_POINTS_PER_SERIES: i128 = 11_000;

/// The form values of one request, in Go's `r.Form` order: values from a
/// form-encoded body first, then those from the URL query string.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Reads the URL query string and, when present, a form-encoded body.
    pub(crate) fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Self {
        let mut pairs = Vec::new();
        if let Some(body) = form_body {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        Self { pairs }
    }

    #[cfg(test)]
    pub(crate) fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The first value of `name`, or `""` when absent (Go's `FormValue`).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`, in order.
    pub(crate) fn get_all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// `invalid parameter "name": reason`, Prometheus's wording for a bad parameter.
pub(crate) fn invalid_param(name: &str, reason: impl std::fmt::Display) -> String {
    format!("invalid parameter {name:?}: {reason}")
}

/// Parses a timestamp: unix seconds as a float (rounded to milliseconds) or
/// RFC 3339 with optional fractional seconds. Returns milliseconds.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(secs) = s.parse::<f64>() {
        return float_seconds_to_ms(secs).ok_or_else(err);
    }
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Ok(ms);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME_MS),
        MAX_TIME_FORMATTED => Ok(MAX_TIME_MS),
        _ => Err(err()),
    }
}

/// Like [`parse_time`], with `default` for an absent or empty parameter.
pub(crate) fn parse_time_param(params: &Params, name: &str, default: i64) -> Result<i64, String> {
    match params.get(name) {
        "" => Ok(default),
        s => parse_time(s).map_err(|e| invalid_param(name, e)),
    }
}

/// Whole seconds plus the fraction rounded to milliseconds, as Prometheus does;
/// `None` for NaN, infinities and values outside the API's time range.
fn float_seconds_to_ms(secs: f64) -> Option<i64> {
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.trunc();
    let frac_ms = ((secs - whole) * 1000.0).round();
    let ms = whole * 1000.0 + frac_ms;
    if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
        return None;
    }
    // Both parts are integral and in range, so the casts are exact.
    (whole as i64)
        .checked_mul(1000)?
        .checked_add(frac_ms as i64)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, truncated to milliseconds.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter().try_fold(0i64, |acc, d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut pos = 19;
    let mut millis = 0i64;
    if sep(pos, b'.') {
        pos += 1;
        let digits_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let digits = &b[digits_start..pos];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        for i in 0..3 {
            millis = millis * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
    }
    let offset_secs = match b.get(pos)? {
        b'Z' if pos + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if pos + 6 == b.len() && sep(pos + 3, b':') => {
            let (oh, om) = (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = oh * 3600 + om * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a duration: float seconds (`15`, `0.5`) or a Prometheus duration
/// (`1m30s`). Returns nanoseconds, as Go's `time.Duration` holds them.
pub(crate) fn parse_duration_ns(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        let ns = secs * 1e9;
        if ns.is_nan() {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        if ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i64);
    }
    parse_duration(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// The `limit` parameter: absent or `0` means no limit.
pub(crate) fn parse_limit(params: &Params) -> Result<usize, String> {
    let s = params.get("limit");
    if s.is_empty() {
        return Ok(0);
    }
    let limit: i64 = s
        .parse()
        .map_err(|_| invalid_param("limit", format!("cannot parse {s:?} to a valid limit")))?;
    usize::try_from(limit).map_err(|_| invalid_param("limit", "limit must be non-negative"))
}

/// The validated parameters of a range query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeParams {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

/// `start`, `end` and `step` of `query_range`, checked as Prometheus checks them.
pub(crate) fn parse_range_params(params: &Params) -> Result<RangeParams, String> {
    let start_ms = parse_time(params.get("start")).map_err(|e| invalid_param("start", e))?;
    let end_ms = parse_time(params.get("end")).map_err(|e| invalid_param("end", e))?;
    if end_ms < start_ms {
        return Err(invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_ns = parse_duration_ns(params.get("step")).map_err(|e| invalid_param("step", e))?;
    if step_ns <= 0 {
        return Err(invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // For safety, limit the number of points per series: enough for a week at 60s
    // resolution or a year at 1h. Exact arithmetic, so no range can overflow it.
    let range_ns = (i128::from(end_ms) - i128::from(start_ms)) * 1_000_000;
    if range_ns / i128::from(step_ns) > MAX_POINTS_PER_SERIES {
        return Err(
            "exceeded maximum resolution of 11,000 points per timeseries. \
                    Try decreasing the query resolution (?step=XX)"
                .to_string(),
        );
    }
    let step_ms = step_ns / 1_000_000;
    if step_ms == 0 {
        // Evaluation works in milliseconds; a finer step would be a zero step.
        return Err(invalid_param(
            "step",
            "query resolution steps below one millisecond are not supported",
        ));
    }
    Ok(RangeParams {
        start_ms,
        end_ms,
        step_ms,
    })
}

/// The `timeout` parameter, if given: caps the engine's own timeout.
pub(crate) fn parse_timeout(params: &Params) -> Result<Option<std::time::Duration>, String> {
    match params.get("timeout") {
        "" => Ok(None),
        s => {
            let ns = parse_duration_ns(s).map_err(|e| invalid_param("timeout", e))?;
            // A zero or negative timeout expires at once, as a past deadline does in Go.
            Ok(Some(std::time::Duration::from_nanos(
                u64::try_from(ns).unwrap_or(0),
            )))
        }
    }
}

/// Parses one `match[]` value, a series selector such as `up{job=~"a.*"}`, into
/// matcher sets: one set, or several when the selector uses `or` inside braces.
pub(crate) fn parse_selector(
    s: &str,
    shape: &QueryShapeLimits,
) -> Result<Vec<Vec<Matcher>>, String> {
    use promql_parser::label::MatchOp as PMatchOp;
    use promql_parser::parser::Expr;

    let expr = parse_guarded(s, shape)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("{s:?} is not a series selector"));
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(format!(
            "{s:?} is not a series selector: offset and @ are not allowed"
        ));
    }
    let groups: Vec<Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty() {
        vec![vs.matchers.matchers]
    } else {
        let mut groups = vs.matchers.or_matchers;
        if !vs.matchers.matchers.is_empty() {
            groups.push(vs.matchers.matchers);
        }
        groups
    };
    groups
        .into_iter()
        .map(|group| {
            let mut set = Vec::with_capacity(group.len() + 1);
            if let Some(name) = &vs.name {
                set.push(Matcher::equal(strata_model::METRIC_NAME, name.clone()));
            }
            for m in group {
                let op = match m.op {
                    PMatchOp::Equal => MatchOp::Equal,
                    PMatchOp::NotEqual => MatchOp::NotEqual,
                    PMatchOp::Re(_) => MatchOp::RegexMatch,
                    PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
                };
                set.push(Matcher::new(op, m.name, m.value).map_err(|e| e.to_string())?);
            }
            Ok(set)
        })
        .collect()
}

/// All `match[]` values of a request as matcher sets. A set whose matchers all
/// match the empty string would select every series and is refused.
pub(crate) fn parse_match_param(
    values: &[&str],
    shape: &QueryShapeLimits,
) -> Result<Vec<Vec<Matcher>>, String> {
    let mut sets = Vec::new();
    for value in values {
        for set in parse_selector(value, shape)? {
            if set.iter().all(Matcher::matches_empty) {
                return Err("match[] must contain at least one non-empty matcher".to_string());
            }
            sets.push(set);
        }
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str, step: &str) -> Result<RangeParams, String> {
        parse_range_params(&Params::from_pairs([
            ("start", start),
            ("end", end),
            ("step", step),
        ]))
    }

    #[test]
    fn times_as_unix_seconds() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(parse_time("0.0005"), Ok(1));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("1e3"), Ok(1_000_000));
    }

    #[test]
    fn times_as_rfc3339() {
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("2015-07-01T20:10:51Z"), Ok(1_435_781_451_000));
        assert_eq!(
            parse_time("2015-07-01T22:10:51.7819+02:00"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("1969-12-31T23:59:59.5Z"), Ok(-500));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(parse_time(MIN_TIME_FORMATTED), Ok(MIN_TIME_MS));
        assert_eq!(parse_time(MAX_TIME_FORMATTED), Ok(MAX_TIME_MS));
    }

    #[test]
    fn bad_times_are_refused_without_panicking() {
        for s in [
            "",
            "abc",
            "NaN",
            "Inf",
            "-inf",
            "1e300",
            "-1e300",
            "2015-07-01",
            "2015-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2015-07-01T24:00:00Z",
            "2015-07-01T20:10:51.Z",
            "2015-07-01T20:10:51.1234567890Z",
            "2015-07-01T20:10:51+0200",
            "2015-07-01T20:10:51",
            "2015-07-01 20:10:51Z",
            "２015-07-01T20:10:51Z",
        ] {
            let err = parse_time(s).unwrap_err();
            assert_eq!(err, format!("cannot parse {s:?} to a valid timestamp"));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("15"), Ok(15_000_000_000));
        assert_eq!(parse_duration_ns("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("15s"), Ok(15_000_000_000));
        assert_eq!(parse_duration_ns("1m30s"), Ok(90_000_000_000));
        assert!(parse_duration_ns("1e300")
            .unwrap_err()
            .contains("overflows int64"));
        assert!(parse_duration_ns("NaN").is_err());
        assert!(parse_duration_ns("15x").is_err());
        assert!(parse_duration_ns("").is_err());
        // Larger than Go's time.Duration.
        assert!(parse_duration_ns("1000y").is_err());
    }

    #[test]
    fn range_validation() {
        assert_eq!(
            range("0", "3600", "15s"),
            Ok(RangeParams {
                start_ms: 0,
                end_ms: 3_600_000,
                step_ms: 15_000
            })
        );
        assert_eq!(
            range("2015-07-01T20:10:30.781Z", "2015-07-01T20:11:00.781Z", "15").map(|r| r.step_ms),
            Ok(15_000)
        );
        let zero = range("0", "10", "0").unwrap_err();
        assert_eq!(
            zero,
            "invalid parameter \"step\": zero or negative query resolution step widths \
             are not accepted. Try a positive integer"
        );
        // Like Prometheus, a negative duration only parses as float seconds.
        assert_eq!(
            range("0", "10", "-15s").unwrap_err(),
            "invalid parameter \"step\": cannot parse \"-15s\" to a valid duration"
        );
        assert_eq!(range("0", "10", "-1").unwrap_err(), zero);
        assert_eq!(
            range("0", "1e9", "1").unwrap_err(),
            "exceeded maximum resolution of 11,000 points per timeseries. \
             Try decreasing the query resolution (?step=XX)"
        );
        // Exactly 11,000 points' worth of range is allowed.
        assert!(range("0", "11000", "1").is_ok());
        assert_eq!(
            range("10", "5", "1").unwrap_err(),
            "invalid parameter \"end\": end timestamp must not be before start time"
        );
        assert!(range("x", "5", "1")
            .unwrap_err()
            .starts_with("invalid parameter \"start\""));
        assert!(range("0", "", "1")
            .unwrap_err()
            .starts_with("invalid parameter \"end\""));
        assert!(range("0", "10", "")
            .unwrap_err()
            .starts_with("invalid parameter \"step\""));
        assert!(range("0", "0", "0.0001").is_err());
        // The extremes do not overflow.
        assert!(range(MIN_TIME_FORMATTED, MAX_TIME_FORMATTED, "1").is_err());
        assert!(range("-9e15", "9e15", "1e-9").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(&Params::default()), Ok(0));
        assert_eq!(parse_limit(&Params::from_pairs([("limit", "5")])), Ok(5));
        assert!(parse_limit(&Params::from_pairs([("limit", "-1")]))
            .unwrap_err()
            .contains("non-negative"));
        assert!(parse_limit(&Params::from_pairs([("limit", "x")])).is_err());
        assert!(parse_limit(&Params::from_pairs([("limit", "99999999999999999999")])).is_err());
    }

    #[test]
    fn form_values_body_first() {
        let p = Params::parse(Some("a=url&m=1"), Some(b"a=body&m=2&m=3"));
        assert_eq!(p.get("a"), "body");
        assert_eq!(p.get_all("m"), ["2", "3", "1"]);
        assert_eq!(p.get("missing"), "");
        let p = Params::parse(Some("match%5B%5D=up%7Bjob%3D%22a%22%7D&x=%ZZ"), None);
        assert_eq!(p.get("match[]"), "up{job=\"a\"}");
    }

    #[test]
    fn selectors() {
        let sets =
            parse_selector(r#"up{job=~"a.*",env!="dev"}"#, &QueryShapeLimits::default()).unwrap();
        assert_eq!(sets.len(), 1);
        let rendered: Vec<String> = sets[0].iter().map(|m| m.to_string()).collect();
        assert_eq!(
            rendered,
            [r#"__name__="up""#, r#"job=~"a.*""#, r#"env!="dev""#]
        );

        let sets = parse_selector(r#"{__name__="up"}"#, &QueryShapeLimits::default()).unwrap();
        assert_eq!(sets[0], vec![Matcher::equal("__name__", "up")]);

        assert!(parse_selector("rate(up[5m])", &QueryShapeLimits::default()).is_err());
        assert!(parse_selector("up[5m]", &QueryShapeLimits::default()).is_err());
        assert!(parse_selector("up offset 5m", &QueryShapeLimits::default()).is_err());
        assert!(parse_selector("1", &QueryShapeLimits::default()).is_err());
        assert!(parse_selector("{", &QueryShapeLimits::default()).is_err());
        assert!(parse_selector("", &QueryShapeLimits::default()).is_err());
    }

    #[test]
    fn match_param_needs_a_non_empty_matcher() {
        assert_eq!(
            parse_match_param(&["up", r#"{job="a"}"#], &QueryShapeLimits::default())
                .unwrap()
                .len(),
            2
        );
        // The parser itself refuses a selector with only empty-matching matchers.
        assert!(parse_match_param(&[r#"{job=~".*"}"#], &QueryShapeLimits::default()).is_err());
        assert!(parse_match_param(&[r#"{job=""}"#], &QueryShapeLimits::default()).is_err());
        assert!(parse_match_param(&["up", "{}"], &QueryShapeLimits::default()).is_err());
        assert!(parse_match_param(&[], &QueryShapeLimits::default())
            .unwrap()
            .is_empty());
    }
}
