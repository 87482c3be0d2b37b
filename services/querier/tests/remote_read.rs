//! Remote read (`POST /api/v1/read`) through axum's router, over fake
//! ingesters that hold each tenant's series as XOR chunks: both response
//! types decoded as a Prometheus client decodes them, and every refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use strata_model::{Labels, Matcher, Sample, Series};
use strata_proto::ingester::{LabelNamesRequest, LabelValuesRequest, QueryRequest, SeriesRequest};
use strata_proto::prometheus::{
    ChunkedReadResponse, LabelMatcher, Query, ReadRequest, ReadResponse,
};
use strata_proto::types::{Chunk, ChunkEncoding, StreamSeries};
use strata_querier::{router, IngesterQuery, Querier, QuerierConfig, TenantResolver};
use strata_status::ServiceError;
use tower::ServiceExt;

#[derive(Debug, Default)]
struct FakeIngesters {
    series: HashMap<String, Vec<Series>>,
}

#[async_trait::async_trait]
impl IngesterQuery for FakeIngesters {
    async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let matchers: Vec<Matcher> = strata_proto::matchers_from_proto(&request.matchers).unwrap();
        let all = self.series.get(tenant).cloned().unwrap_or_default();
        Ok(all
            .iter()
            .filter(|s| {
                matchers
                    .iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .map(|s| StreamSeries {
                labels: strata_proto::labels_to_proto(&s.labels),
                chunks: s
                    .samples
                    .chunks(100)
                    .map(|piece| {
                        let mut c = strata_tsdb::chunk::XorChunk::new();
                        for p in piece {
                            c.append(p.timestamp_ms, p.value).unwrap();
                        }
                        Chunk {
                            min_time_ms: piece[0].timestamp_ms,
                            max_time_ms: piece[piece.len() - 1].timestamp_ms,
                            encoding: ChunkEncoding::Xor as i32,
                            data: c.into_bytes().into(),
                        }
                    })
                    .collect(),
            })
            .collect())
    }

    async fn label_names(
        &self,
        _: &str,
        _: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(vec![])
    }

    async fn label_values(
        &self,
        _: &str,
        _: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(vec![])
    }

    async fn series(&self, _: &str, _: SeriesRequest) -> Result<Vec<Labels>, ServiceError> {
        Ok(vec![])
    }
}

/// `up` of two jobs and one `other` series, each 300 samples 10 s apart from
/// t = 0, for team-a; one secret series for team-b.
fn fake() -> FakeIngesters {
    let series = |pairs: &[(&str, &str)], scale: f64| Series {
        labels: Labels::from_pairs(pairs.iter().copied()),
        samples: (0..300)
            .map(|i| Sample::new(i * 10_000, i as f64 * scale))
            .collect(),
    };
    let mut fake = FakeIngesters::default();
    fake.series.insert(
        "team-a".into(),
        vec![
            series(&[("__name__", "up"), ("job", "node")], 1.0),
            series(&[("__name__", "up"), ("job", "api")], 2.0),
            series(&[("__name__", "other"), ("job", "api")], 3.0),
        ],
    );
    fake.series.insert(
        "team-b".into(),
        vec![series(&[("__name__", "up"), ("job", "secret")], 1.0)],
    );
    fake
}

fn tenant_from_header() -> TenantResolver {
    Arc::new(|headers: &HeaderMap| {
        headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                ServiceError::new(strata_status::ErrorCode::Unauthenticated, "no org id")
            })
    })
}

fn app_with(limits: Option<strata_limits::Limits>) -> axum::Router {
    let mut querier = Querier::new(QuerierConfig::default(), Arc::new(fake())).unwrap();
    if let Some(limits) = limits {
        let overrides = Arc::new(strata_limits::Overrides::new(Default::default()));
        overrides.replace_tenant_overrides(HashMap::from([("team-a".to_string(), limits)]));
        querier = querier.with_overrides(overrides);
    }
    router(Arc::new(querier), tenant_from_header(), Arc::default())
}

fn app() -> axum::Router {
    app_with(None)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn post(app: &axum::Router, path: &str, tenant: Option<&str>, body: Vec<u8>) -> Answer {
    let mut request = Request::post(path)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy");
    if let Some(t) = tenant {
        request = request.header("X-Scope-OrgID", t);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: body.to_vec(),
    }
}

fn matcher(r#type: i32, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type,
        name: name.into(),
        value: value.into(),
    }
}

fn query(start: i64, end: i64, matchers: Vec<LabelMatcher>) -> Query {
    Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers,
        hints: None,
    }
}

fn encode(request: &ReadRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

/// CRC-32C bit by bit, independent of the server's `crc32c` crate.
fn castagnoli(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The frames of a streamed answer, each checked against its CRC.
fn frames(mut data: &[u8]) -> Vec<ChunkedReadResponse> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (mut len, mut shift, mut used) = (0usize, 0u32, 0usize);
        loop {
            let byte = data[used];
            used += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let crc = u32::from_be_bytes(data[used..used + 4].try_into().unwrap());
        let message = &data[used + 4..used + 4 + len];
        assert_eq!(crc, castagnoli(message), "frame {}: CRC", out.len());
        out.push(ChunkedReadResponse::decode(message).unwrap());
        data = &data[used + 4 + len..];
    }
    out
}

type Points = Vec<(i64, f64)>;

/// A SAMPLES answer as (labels, samples) per query.
fn decode_samples(answer: &Answer) -> Vec<Vec<(String, Points)>> {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers["content-type"], "application/x-protobuf");
    assert_eq!(answer.headers["content-encoding"], "snappy");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&answer.body)
        .unwrap();
    ReadResponse::decode(raw.as_slice())
        .unwrap()
        .results
        .into_iter()
        .map(|r| {
            r.timeseries
                .into_iter()
                .map(|ts| {
                    let labels = strata_proto::labels_from_proto(ts.labels).to_string();
                    let points = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
                    (labels, points)
                })
                .collect()
        })
        .collect()
}

/// A streamed answer as (query index, labels, samples) per series, frames of
/// one series joined.
fn decode_streamed(answer: &Answer) -> Vec<(i64, String, Points)> {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(
        answer.headers["content-type"],
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    assert!(answer.headers.get("content-encoding").is_none());
    let mut out: Vec<(i64, String, Points)> = Vec::new();
    for frame in frames(&answer.body) {
        for s in frame.chunked_series {
            let labels = strata_proto::labels_from_proto(s.labels).to_string();
            let mut points = Vec::new();
            for c in &s.chunks {
                assert_eq!(c.r#type, 1, "XOR");
                let samples = strata_tsdb::chunk::decode_xor(&c.data).unwrap();
                assert!(samples.len() <= 120, "{} samples in a chunk", samples.len());
                assert_eq!(c.min_time_ms, samples[0].timestamp_ms);
                assert_eq!(c.max_time_ms, samples[samples.len() - 1].timestamp_ms);
                points.extend(samples.iter().map(|p| (p.timestamp_ms, p.value)));
            }
            match out.last_mut() {
                Some(last) if last.0 == frame.query_index && last.1 == labels => {
                    last.2.extend(points)
                }
                _ => out.push((frame.query_index, labels, points)),
            }
        }
    }
    out
}

fn up_and_other(accepted: Vec<i32>) -> ReadRequest {
    ReadRequest {
        queries: vec![
            query(100_000, 1_000_000, vec![matcher(0, "__name__", "up")]),
            query(0, 30_000, vec![matcher(2, "__name__", "oth.*")]),
        ],
        accepted_response_types: accepted,
    }
}

fn points(from_s: i64, to_s: i64, scale: f64) -> Points {
    (from_s / 10..=to_s / 10)
        .map(|i| (i * 10_000, i as f64 * scale))
        .collect()
}

#[tokio::test]
async fn samples_answer_each_query_in_order_within_its_range() {
    let app = app();
    for path in ["/api/v1/read", "/prometheus/api/v1/read"] {
        let answer = post(&app, path, Some("team-a"), encode(&up_and_other(vec![]))).await;
        let results = decode_samples(&answer);
        assert_eq!(
            results,
            vec![
                vec![
                    ("up{job=\"api\"}".to_string(), points(100, 1000, 2.0)),
                    ("up{job=\"node\"}".to_string(), points(100, 1000, 1.0)),
                ],
                vec![("other{job=\"api\"}".to_string(), points(0, 30, 3.0))],
            ]
        );
    }
    // SAMPLES asked for first, and another tenant's series stay its own.
    let answer = post(
        &app,
        "/api/v1/read",
        Some("team-b"),
        encode(&up_and_other(vec![0, 1])),
    )
    .await;
    let results = decode_samples(&answer);
    assert_eq!(results[0].len(), 1);
    assert_eq!(results[0][0].0, "up{job=\"secret\"}");
    assert!(results[1].is_empty());
}

#[tokio::test]
async fn streamed_chunks_carry_the_same_series_sorted_by_labels() {
    let app = app();
    let streamed = post(
        &app,
        "/api/v1/read",
        Some("team-a"),
        encode(&up_and_other(vec![1, 0])),
    )
    .await;
    let got = decode_streamed(&streamed);
    let sampled = decode_samples(
        &post(
            &app,
            "/api/v1/read",
            Some("team-a"),
            encode(&up_and_other(vec![])),
        )
        .await,
    );
    let want: Vec<(i64, String, Points)> = sampled
        .into_iter()
        .enumerate()
        .flat_map(|(i, series)| {
            series
                .into_iter()
                .map(move |(labels, points)| (i as i64, labels, points))
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 3);
    // All 300 samples of a series: three chunks, 120 + 120 + 60.
    let all = ReadRequest {
        queries: vec![query(0, 3_000_000, vec![matcher(0, "job", "node")])],
        accepted_response_types: vec![1],
    };
    let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&all)).await;
    let sizes: Vec<u16> = frames(&answer.body)
        .iter()
        .flat_map(|f| f.chunked_series[0].chunks.iter())
        .map(|c| u16::from_be_bytes([c.data[0], c.data[1]]))
        .collect();
    assert_eq!(sizes, [120, 120, 60]);
    assert_eq!(decode_streamed(&answer)[0].2, points(0, 2990, 1.0));
}

#[tokio::test]
async fn undecodable_bodies_are_400_naming_what_is_wrong() {
    let app = app();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "the request body is empty"),
        (b"not snappy at all".to_vec(), "not snappy-compressed"),
        (vec![0x80, 0x80, 0x80, 0x40], "more than the limit of"),
        (
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff\xff\xff\x0f")
                .unwrap(),
            "not a remote-read protobuf ReadRequest",
        ),
        (
            encode(&ReadRequest {
                queries: vec![],
                accepted_response_types: vec![5],
            }),
            "none of the accepted response types [5] is supported",
        ),
    ];
    for (body, message) in cases {
        let answer = post(&app, "/api/v1/read", Some("team-a"), body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
        assert!(
            answer.text().contains(message),
            "{:?}: {}",
            message,
            answer.text()
        );
        assert!(answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
    // No tenant: 401, before the body is looked at.
    let answer = post(&app, "/api/v1/read", None, encode(&up_and_other(vec![]))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invalid_matchers_are_400() {
    let app = app();
    let cases = [
        (
            vec![matcher(2, "job", "(unclosed")],
            "query 0: invalid matcher",
        ),
        (vec![matcher(9, "job", "x")], "unknown matcher type 9"),
        (
            vec![],
            "at least one matcher must not match the empty string",
        ),
        (
            vec![matcher(0, "job", ""), matcher(2, "x", ".*")],
            "at least one matcher must not match the empty string",
        ),
    ];
    for (matchers, message) in cases {
        let request = ReadRequest {
            queries: vec![query(0, 10, matchers)],
            accepted_response_types: vec![],
        };
        let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&request)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
        assert!(
            answer.text().contains(message),
            "{message:?}: {}",
            answer.text()
        );
    }
    let too_many = ReadRequest {
        queries: vec![query(0, 10, vec![matcher(0, "a", "b"); 101])],
        accepted_response_types: vec![],
    };
    let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&too_many)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer
            .text()
            .contains("querier.max_query_matchers_per_selector"),
        "{}",
        answer.text()
    );
}

/// The query API's error message for a PromQL query.
async fn query_api_error(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(
            Request::get(uri)
                .header("X-Scope-OrgID", "team-a")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (
        status,
        json["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn the_series_limit_refuses_as_the_query_api_does() {
    let app = app_with(Some(strata_limits::Limits {
        max_fetched_series_per_query: 2,
        ..Default::default()
    }));
    // Two series: within the limit, in both types.
    let two = ReadRequest {
        queries: vec![query(0, 10_000, vec![matcher(0, "__name__", "up")])],
        accepted_response_types: vec![1],
    };
    let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&two)).await;
    assert_eq!(decode_streamed(&answer).len(), 2);
    // Three over the request's queries: over it, in both types.
    let (status, query_message) = query_api_error(
        &app,
        "/api/v1/query?query=count(%7Bjob%3D%22api%22%7D)%2Bcount(up)&time=100",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query_message}");
    for accepted in [vec![], vec![1]] {
        let answer = post(
            &app,
            "/api/v1/read",
            Some("team-a"),
            encode(&up_and_other(accepted)),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.text()
        );
        assert_eq!(answer.text().trim_end(), query_message);
        assert!(query_message.contains("limit: 2 series, max_fetched_series_per_query"));
    }
}

#[tokio::test]
async fn the_sample_limit_applies_to_the_whole_request() {
    let app = app_with(Some(strata_limits::Limits {
        max_samples_per_query: 100,
        ..Default::default()
    }));
    // 91 samples: fine; 91 + 4 = 95: fine; both `up` series, 182: over it.
    let within = ReadRequest {
        queries: vec![
            query(100_000, 1_000_000, vec![matcher(0, "job", "node")]),
            query(0, 30_000, vec![matcher(0, "__name__", "other")]),
        ],
        accepted_response_types: vec![],
    };
    let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&within)).await;
    assert_eq!(decode_samples(&answer).concat().len(), 2);
    for accepted in [vec![], vec![1]] {
        let answer = post(
            &app,
            "/api/v1/read",
            Some("team-a"),
            encode(&up_and_other(accepted)),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.text()
        );
        assert!(
            answer.text().contains("too many samples")
                && answer.text().contains("limits.max_samples_per_query"),
            "{}",
            answer.text()
        );
    }
}

#[tokio::test]
async fn a_range_over_max_total_query_length_is_refused_naming_it() {
    let app = app_with(Some(strata_limits::Limits {
        max_total_query_length: strata_model::ConfigDuration(Duration::from_secs(3600)),
        ..Default::default()
    }));
    let hour_ms = 3_600_000;
    let within = ReadRequest {
        queries: vec![query(0, hour_ms, vec![matcher(0, "__name__", "up")])],
        accepted_response_types: vec![],
    };
    let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&within)).await;
    assert_eq!(decode_samples(&answer)[0].len(), 2);
    let over = ReadRequest {
        queries: vec![
            query(0, 10, vec![matcher(0, "__name__", "up")]),
            query(i64::MIN, i64::MAX, vec![matcher(0, "__name__", "up")]),
        ],
        accepted_response_types: vec![1],
    };
    let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&over)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    let text = answer.text();
    assert!(
        text.starts_with("query 1: the total query time range exceeds the limit")
            && text.contains("limit: 1h; max_total_query_length")
            && text.contains("err-strata-max-total-query-length"),
        "{text}"
    );
    // The query API's range queries too.
    let (status, message) = query_api_error(
        &app,
        "/api/v1/query_range?query=up&start=0&end=3601&step=60",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("max_total_query_length"), "{message}");
    let (status, _) = query_api_error(
        &app,
        "/api/v1/query_range?query=up&start=0&end=3600&step=60",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Other tenants: no limit.
    let answer = post(&app, "/api/v1/read", Some("team-b"), encode(&over)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn an_inverted_range_reads_nothing() {
    let app = app();
    let request = ReadRequest {
        queries: vec![query(1_000_000, 0, vec![matcher(0, "__name__", "up")])],
        accepted_response_types: vec![],
    };
    let answer = post(&app, "/api/v1/read", Some("team-a"), encode(&request)).await;
    assert_eq!(decode_samples(&answer), vec![vec![]]);
}
