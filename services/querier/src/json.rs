//! The Prometheus API's JSON, written by hand where the shape is unusual: sample
//! timestamps are JSON numbers in seconds with millisecond precision (`1435781451.781`)
//! and values are strings (`"1"`, `"NaN"`, `"+Inf"`), which no derive produces.

use strata_model::{Labels, Sample};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A query result in the four shapes the API knows.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultData {
    Scalar { timestamp_ms: i64, value: f64 },
    String { timestamp_ms: i64, value: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<strata_model::Series>),
}

impl ResultData {
    pub fn result_type(&self) -> &'static str {
        match self {
            ResultData::Scalar { .. } => "scalar",
            ResultData::String { .. } => "string",
            ResultData::Vector(_) => "vector",
            ResultData::Matrix(_) => "matrix",
        }
    }
}

/// `{"status":"success","data":<data>}` plus `warnings`/`infos` when there are any.
/// `data` must already be JSON.
pub(crate) fn success_body(data: &[u8], warnings: &[String], infos: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    out.extend_from_slice(br#"{"status":"success","data":"#);
    out.extend_from_slice(data);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.extend_from_slice(format!(r#","{key}":"#).as_bytes());
            write_string_array(&mut out, list);
        }
    }
    out.push(b'}');
    out
}

/// `{"status":"error","errorType":<type>,"error":<message>}`.
pub(crate) fn error_body(error_type: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    out.extend_from_slice(br#"{"status":"error","errorType":"#);
    write_str(&mut out, error_type);
    out.extend_from_slice(br#","error":"#);
    write_str(&mut out, message);
    out.push(b'}');
    out
}

/// An answer that would be longer than the byte budget it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the answer would be larger than the limit of {limit} bytes")]
pub(crate) struct TooLarge {
    pub(crate) limit: usize,
}

/// Fails once `out` is longer than `max_bytes`; checked after each element,
/// so an answer is never built far beyond its budget.
fn within(out: &[u8], max_bytes: usize) -> Result<(), TooLarge> {
    if out.len() > max_bytes {
        Err(TooLarge { limit: max_bytes })
    } else {
        Ok(())
    }
}

/// `{"resultType":"vector","result":[...]}`; `format_value` renders a float the
/// way PromQL does. Stops with [`TooLarge`] once `out` exceeds `max_bytes`.
pub(crate) fn write_query_data(
    out: &mut Vec<u8>,
    data: &ResultData,
    format_value: fn(f64) -> String,
    max_bytes: usize,
) -> Result<(), TooLarge> {
    out.extend_from_slice(br#"{"resultType":""#);
    out.extend_from_slice(data.result_type().as_bytes());
    out.extend_from_slice(br#"","result":"#);
    match data {
        ResultData::Scalar {
            timestamp_ms,
            value,
        } => write_point(out, *timestamp_ms, &format_value(*value)),
        ResultData::String {
            timestamp_ms,
            value,
        } => write_point(out, *timestamp_ms, value),
        ResultData::Vector(samples) => {
            out.push(b'[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"metric":"#);
                write_labels(out, &s.labels);
                out.extend_from_slice(br#","value":"#);
                write_point(out, s.timestamp_ms, &format_value(s.value));
                out.push(b'}');
                within(out, max_bytes)?;
            }
            out.push(b']');
        }
        ResultData::Matrix(series) => {
            out.push(b'[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"metric":"#);
                write_labels(out, &s.labels);
                out.extend_from_slice(br#","values":["#);
                for (
                    j,
                    Sample {
                        timestamp_ms,
                        value,
                    },
                ) in s.samples.iter().enumerate()
                {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_point(out, *timestamp_ms, &format_value(*value));
                    if j % 1024 == 1023 {
                        within(out, max_bytes)?;
                    }
                }
                out.extend_from_slice(b"]}");
                within(out, max_bytes)?;
            }
            out.push(b']');
        }
    }
    out.push(b'}');
    within(out, max_bytes)
}

/// A JSON array of `items`, each written by `write`, within `max_bytes`.
pub(crate) fn write_array<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut write: impl FnMut(&mut Vec<u8>, &T),
    max_bytes: usize,
) -> Result<(), TooLarge> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
        within(out, max_bytes)?;
    }
    out.push(b']');
    within(out, max_bytes)
}

/// `[<seconds>,"<value>"]`.
fn write_point(out: &mut Vec<u8>, timestamp_ms: i64, value: &str) {
    out.push(b'[');
    write_timestamp(out, timestamp_ms);
    out.push(b',');
    write_str(out, value);
    out.push(b']');
}

/// Milliseconds as seconds with up to three decimals, exactly as Prometheus
/// writes them: `1435781451.781`, `1435781451.78` is never shortened, `-0.5`.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, timestamp_ms: i64) {
    let abs = timestamp_ms.unsigned_abs();
    if timestamp_ms < 0 {
        out.push(b'-');
    }
    out.extend_from_slice((abs / 1000).to_string().as_bytes());
    let fraction = abs % 1000;
    if fraction != 0 {
        out.extend_from_slice(format!(".{fraction:03}").as_bytes());
    }
}

/// A label set as a JSON object, in label-name order.
pub(crate) fn write_labels(out: &mut Vec<u8>, labels: &Labels) {
    out.push(b'{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &l.name);
        out.push(b':');
        write_str(out, &l.value);
    }
    out.push(b'}');
}

fn write_string_array(out: &mut Vec<u8>, list: &[String]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

/// A JSON string literal with standard escaping.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(br#"\""#),
            b'\\' => Some(br"\\"),
            b'\n' => Some(br"\n"),
            b'\r' => Some(br"\r"),
            b'\t' => Some(br"\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use strata_model::Series;

    fn fmt(v: f64) -> String {
        strata_promql::format_value(v)
    }

    fn render(data: &ResultData) -> String {
        let mut out = Vec::new();
        write_query_data(&mut out, data, fmt, usize::MAX).unwrap();
        String::from_utf8(success_body(&out, &[], &[])).unwrap()
    }

    #[test]
    fn answers_stop_at_their_byte_budget() {
        let series: Vec<Series> = (0..100)
            .map(|i| Series {
                labels: up("j", &format!("i{i}")),
                samples: (0..50).map(|t| Sample::new(t * 1000, 1.0)).collect(),
            })
            .collect();
        let data = ResultData::Matrix(series);
        let mut whole = Vec::new();
        write_query_data(&mut whole, &data, fmt, usize::MAX).unwrap();
        let mut exact = Vec::new();
        assert_eq!(
            write_query_data(&mut exact, &data, fmt, whole.len()),
            Ok(())
        );
        let limit = whole.len() / 10;
        let mut cut = Vec::new();
        assert_eq!(
            write_query_data(&mut cut, &data, fmt, limit),
            Err(TooLarge { limit })
        );
        // Stopped near the budget, not after writing everything.
        assert!(cut.len() < limit + whole.len() / 50, "{} bytes", cut.len());
        let names: Vec<String> = (0..1000).map(|i| format!("label_{i}")).collect();
        let mut list = Vec::new();
        assert!(write_array(&mut list, &names, |o, n| write_str(o, n), 100).is_err());
        assert!(list.len() < 200);
    }

    fn up(job: &str, instance: &str) -> Labels {
        Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", instance)])
    }

    #[test]
    fn timestamps_are_seconds_with_millisecond_precision() {
        for (ms, want) in [
            (1_435_781_451_781, "1435781451.781"),
            (1_435_781_451_780, "1435781451.780"),
            (1_435_781_451_001, "1435781451.001"),
            (1_435_781_451_000, "1435781451"),
            (0, "0"),
            (-500, "-0.500"),
            (-1_500, "-1.500"),
            (i64::MIN, "-9223372036854775.808"),
        ] {
            let mut out = Vec::new();
            write_timestamp(&mut out, ms);
            assert_eq!(String::from_utf8(out).unwrap(), want);
            let parsed: f64 = serde_json::from_str(want).unwrap();
            assert!((parsed * 1000.0 - ms as f64).abs() < 1e3);
        }
    }

    // The example response of an instant query in the Prometheus API docs.
    #[test]
    fn vector_matches_the_prometheus_docs() {
        let data = ResultData::Vector(vec![
            InstantSample {
                labels: up("prometheus", "localhost:9090"),
                timestamp_ms: 1_435_781_451_781,
                value: 1.0,
            },
            InstantSample {
                labels: up("node", "localhost:9100"),
                timestamp_ms: 1_435_781_451_781,
                value: 0.0,
            },
        ]);
        let docs = r#"{
           "status" : "success",
           "data" : {
              "resultType" : "vector",
              "result" : [
                 {
                    "metric" : {
                       "__name__" : "up",
                       "job" : "prometheus",
                       "instance" : "localhost:9090"
                    },
                    "value": [ 1435781451.781, "1" ]
                 },
                 {
                    "metric" : {
                       "__name__" : "up",
                       "job" : "node",
                       "instance" : "localhost:9100"
                    },
                    "value" : [ 1435781451.781, "0" ]
                 }
              ]
           }
        }"#;
        let got = render(&data);
        assert_eq!(
            serde_json::from_str::<Value>(&got).unwrap(),
            serde_json::from_str::<Value>(docs).unwrap()
        );
        assert!(got.contains(r#""value":[1435781451.781,"1"]"#), "{got}");
    }

    // The example response of a range query in the Prometheus API docs.
    #[test]
    fn matrix_matches_the_prometheus_docs() {
        let series = |labels: Labels, values: [f64; 3]| Series {
            labels,
            samples: [1_435_781_430_781, 1_435_781_445_781, 1_435_781_460_781]
                .into_iter()
                .zip(values)
                .map(|(t, v)| Sample::new(t, v))
                .collect(),
        };
        let data = ResultData::Matrix(vec![
            series(up("prometheus", "localhost:9090"), [1.0, 1.0, 1.0]),
            series(up("node", "localhost:9091"), [0.0, 0.0, 1.0]),
        ]);
        let docs = r#"{
           "status" : "success",
           "data" : {
              "resultType" : "matrix",
              "result" : [
                 {
                    "metric" : {
                       "__name__" : "up",
                       "job" : "prometheus",
                       "instance" : "localhost:9090"
                    },
                    "values" : [
                       [ 1435781430.781, "1" ],
                       [ 1435781445.781, "1" ],
                       [ 1435781460.781, "1" ]
                    ]
                 },
                 {
                    "metric" : {
                       "__name__" : "up",
                       "job" : "node",
                       "instance" : "localhost:9091"
                    },
                    "values" : [
                       [ 1435781430.781, "0" ],
                       [ 1435781445.781, "0" ],
                       [ 1435781460.781, "1" ]
                    ]
                 }
              ]
           }
        }"#;
        assert_eq!(
            serde_json::from_str::<Value>(&render(&data)).unwrap(),
            serde_json::from_str::<Value>(docs).unwrap()
        );
    }

    // The docs' forms: scalar and string results are `[ <unix_time>, "<value>" ]`.
    #[test]
    fn scalar_and_string() {
        let scalar = render(&ResultData::Scalar {
            timestamp_ms: 1_435_781_451_781,
            value: f64::INFINITY,
        });
        assert_eq!(
            scalar,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"+Inf"]}}"#
        );
        let string = render(&ResultData::String {
            timestamp_ms: 1_000,
            value: "a \"quoted\"\n\u{1}é".into(),
        });
        assert_eq!(
            serde_json::from_str::<Value>(&string).unwrap(),
            json!({"status":"success","data":{"resultType":"string","result":[1,"a \"quoted\"\n\u{1}é"]}})
        );
    }

    #[test]
    fn empty_results_and_special_values() {
        assert_eq!(
            render(&ResultData::Vector(vec![])),
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
        );
        let data = ResultData::Vector(vec![InstantSample {
            labels: Labels::default(),
            timestamp_ms: 1,
            value: f64::NAN,
        }]);
        assert_eq!(
            render(&data),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[0.001,"NaN"]}]}}"#
        );
    }

    #[test]
    fn warnings_and_infos_only_when_present() {
        let body = success_body(b"[]", &["w1".into()], &[]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"status":"success","data":[],"warnings":["w1"]}"#
        );
        let body = success_body(b"[]", &[], &["i".into()]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"status":"success","data":[],"infos":["i"]}"#
        );
    }

    // The docs' error format.
    #[test]
    fn error_shape() {
        let body = error_body("bad_data", "invalid parameter \"query\": 1:1: parse error");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\": 1:1: parse error"})
        );
    }
}
