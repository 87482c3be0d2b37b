//! Remote read (`POST /api/v1/read`) end to end with real processes.
//!
//! A Prometheus 2.42 scrapes itself and Strata and remote-writes to Strata
//! (basic-auth user = tenant); a second Prometheus with no scrape targets reads
//! everything back from Strata with `remote_read` (`read_recent: true`), and
//! its answers to PromQL queries must equal Strata's own answers at the same
//! times. Prometheus 2.42's remote-read client sends no
//! `accepted_response_types` (it only speaks SAMPLES; the streamed client came
//! in later releases) and its config has no setting for it, so the streamed
//! answer is read by a client in this test: its frames (CRC checked) and XOR
//! chunks (decoded by the harness's own decoder) must hold exactly the raw
//! samples the query API returns for the same selectors, as must the SAMPLES
//! answer. A second test checks the limits and refusals over HTTP, with auth on.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{mid_scrape_offset, prometheus_start_time};
use prost::Message;
use strata_integration::{
    decode_xor_chunk, encode_write_request, eventually, get_json, get_with_headers, now_ms,
    push_with_headers, scrape_and_push_to_strata, write_request, Prometheus, Strata,
};
use strata_proto::prometheus::{
    ChunkedReadResponse, LabelMatcher, Query, ReadRequest, ReadResponse,
};

/// PromQL compared between Strata and the Prometheus reading from it.
const QUERIES: &[&str] = &[
    "up",
    "sum by (job) (up)",
    // Strata follows Prometheus 3's rate, the reader is 2.42: they differ
    // only while a counter's first sample is within about a scrape interval
    // of its zero point (start-up), so every window compared starts well
    // after the writing Prometheus started (see the wait below).
    "rate(prometheus_tsdb_head_samples_appended_total[30s])",
    "count by (job) ({__name__=~\"scrape_.*\"})",
    "up{job=~\"prom.*\"}",
    "max_over_time(process_resident_memory_bytes{job!=\"strata\"}[10s])",
];

const TENANT: &str = "tenant-a";

/// A series as (sorted label pairs) → samples (timestamp ms, value bits).
type RawSeries = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

fn matcher(r#type: i32, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type,
        name: name.into(),
        value: value.into(),
    }
}

/// POSTs a remote-read request as Prometheus does (snappy, protobuf) with
/// `headers`; returns status, content type and body.
async fn remote_read(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.bytes().await.unwrap().to_vec())
}

fn encode(request: &ReadRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

fn sorted_labels(labels: Vec<strata_proto::prometheus::Label>) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = labels.into_iter().map(|l| (l.name, l.value)).collect();
    labels.sort();
    labels
}

/// CRC-32C, bit by bit (reflected polynomial 0x82F63B78).
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

/// A streamed answer's series per query index, as Prometheus's
/// `ChunkedReader` reads it: uvarint length, big-endian CRC32C, message.
/// Checks every CRC, that series come sorted by labels within a query, that
/// chunks are XOR with at most 120 samples and true min/max times.
fn read_streamed(mut data: &[u8]) -> Result<BTreeMap<i64, RawSeries>, String> {
    let mut out: BTreeMap<i64, RawSeries> = BTreeMap::new();
    let mut previous: Option<(i64, Vec<(String, String)>)> = None;
    while !data.is_empty() {
        let (mut len, mut shift, mut used) = (0u64, 0u32, 0usize);
        loop {
            let byte = *data.get(used).ok_or("frame length cut short")?;
            used += 1;
            len |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let len = len as usize;
        let header = data.get(used..used + 4).ok_or("frame CRC cut short")?;
        let crc = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let message = data
            .get(used + 4..used + 4 + len)
            .ok_or("frame message cut short")?;
        if crc != castagnoli(message) {
            return Err(format!("frame CRC {crc:#x} does not match its message"));
        }
        let frame = ChunkedReadResponse::decode(message).map_err(|e| e.to_string())?;
        if frame.chunked_series.len() != 1 {
            return Err(format!(
                "{} series in one frame",
                frame.chunked_series.len()
            ));
        }
        for series in frame.chunked_series {
            let labels = sorted_labels(series.labels);
            let key = (frame.query_index, labels.clone());
            if let Some(prev) = &previous {
                if prev.0 == key.0 && prev.1 > key.1 {
                    return Err(format!("series not sorted: {:?} after {:?}", key.1, prev.1));
                }
            }
            previous = Some(key);
            let samples = out
                .entry(frame.query_index)
                .or_default()
                .entry(labels)
                .or_default();
            for chunk in series.chunks {
                if chunk.r#type != 1 {
                    return Err(format!("chunk encoding {}", chunk.r#type));
                }
                let decoded = decode_xor_chunk(&chunk.data)?;
                if decoded.is_empty() || decoded.len() > 120 {
                    return Err(format!("a chunk of {} samples", decoded.len()));
                }
                if (chunk.min_time_ms, chunk.max_time_ms)
                    != (decoded[0].0, decoded[decoded.len() - 1].0)
                {
                    return Err("chunk min/max time differ from its samples".into());
                }
                samples.extend(decoded.iter().map(|&(t, v)| (t, v.to_bits())));
            }
        }
        data = &data[used + 4 + len..];
    }
    Ok(out)
}

/// A SAMPLES answer's series per query index.
fn read_samples(body: &[u8]) -> Result<BTreeMap<i64, RawSeries>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| e.to_string())?;
    let response = ReadResponse::decode(raw.as_slice()).map_err(|e| e.to_string())?;
    Ok(response
        .results
        .into_iter()
        .enumerate()
        .map(|(i, result)| {
            let series = result
                .timeseries
                .into_iter()
                .map(|ts| {
                    let samples = ts
                        .samples
                        .iter()
                        .map(|s| (s.timestamp, s.value.to_bits()))
                        .collect();
                    (sorted_labels(ts.labels), samples)
                })
                .collect();
            (i as i64, series)
        })
        .collect())
}

/// The raw samples of `selector` in (t - range, t] from Strata's query API
/// (`selector[range]` at `t`), as the reference.
async fn query_api_raw(strata: &Strata, selector: &str, range_s: u32, t: f64) -> RawSeries {
    let query = common::urlencode(&format!("{selector}[{range_s}s]"));
    let url = strata.url(&format!("/prometheus/api/v1/query?query={query}&time={t}"));
    let (status, body) = get_json(&url, Some(TENANT)).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            let samples = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    let ts = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let value: f64 = v[1].as_str().unwrap().parse().unwrap();
                    (ts, value.to_bits())
                })
                .collect();
            (labels, samples)
        })
        .collect()
}

/// Staleness markers are raw samples remote read returns and the query API
/// never shows; left out of the comparison.
fn without_stale_markers(mut series: RawSeries) -> RawSeries {
    for samples in series.values_mut() {
        samples.retain(|&(_, bits)| bits != STALE_NAN_BITS);
    }
    series.retain(|_, samples| !samples.is_empty());
    series
}

/// Prometheus's staleness marker (`value.StaleNaN`).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_strata_and_answers_like_strata() {
    let strata = Strata::start(&["-target=all"]).await;
    let queue = "{batch_send_deadline: 1s, max_backoff: 1s}";
    let writer_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{}",
        scrape_and_push_to_strata(strata.http_port, TENANT, queue)
    );
    let writer = Prometheus::start(&writer_config, &[]).await;
    let reader_config = format!(
        r#"global:
  scrape_interval: 1s
remote_read:
  - url: http://127.0.0.1:{}/api/v1/read
    basic_auth: {{username: {TENANT}, password: unused}}
    read_recent: true
"#,
        strata.http_port
    );
    let reader = Prometheus::start(&reader_config, &[]).await;

    // The reader sees both targets' `up` through Strata.
    let reader_up = reader.url("/api/v1/query?query=up");
    eventually(
        "both up series through remote read",
        Duration::from_secs(60),
        || {
            let url = reader_up.clone();
            async move {
                let (_, body) = get_json(&url, None).await;
                (body["data"]["result"].as_array()?.len() == 2).then_some(())
            }
        },
    )
    .await;

    // Compare at a T whose samples were certainly pushed (4 s ago), half a
    // scrape interval from every scrape timestamp (no window edge on a
    // sample: 2.x windows are closed, 3.x left-open), with every window
    // (the oldest starts 8 + 30 s before T) beginning 10 s after the writer
    // started (see QUERIES).
    let started = prometheus_start_time(&writer).await;
    let oldest_window_start_ms = now_ms() - 4_000 - 38_000;
    let settle_ms = (started * 1000.0) as i64 + 10_000 - oldest_window_start_ms;
    if settle_ms > 0 {
        tokio::time::sleep(Duration::from_millis(settle_ms as u64)).await;
    }
    let t = ((now_ms() - 4_000) as f64 / 1000.0).floor() + mid_scrape_offset(&writer).await;
    let (strata_url, reader_url) = (strata.url(""), reader.url(""));
    let mut compared = 0;
    for query in QUERIES {
        let n = eventually(
            &format!("{query} to agree"),
            Duration::from_secs(15),
            || {
                let (s, r) = (strata_url.clone(), reader_url.clone());
                async move {
                    match common::compare_instant_and_last_8s(&s, TENANT, &r, query, t).await {
                        Ok(n) => Some(n),
                        Err(e) => {
                            eprintln!("not yet equal: {e}");
                            None
                        }
                    }
                }
            },
        )
        .await;
        assert!(n > 0, "{query} returned no series from either server");
        compared += n;
    }
    eprintln!(
        "compared {compared} series results over {} queries",
        QUERIES.len()
    );

    // Both response types from a client of our own, for two queries in one
    // request, against the raw samples of the query API.
    let range_s = 20;
    let end_ms = (t * 1000.0).round() as i64;
    let start_ms = end_ms - i64::from(range_s) * 1000;
    let selectors = [
        ("up", vec![matcher(0, "__name__", "up")]),
        (
            "{__name__=~\"prometheus_tsdb_head_.*\",job=\"prometheus\"}",
            vec![
                matcher(2, "__name__", "prometheus_tsdb_head_.*"),
                matcher(0, "job", "prometheus"),
            ],
        ),
    ];
    let mut want = BTreeMap::new();
    for (i, (selector, _)) in selectors.iter().enumerate() {
        let series = query_api_raw(&strata, selector, range_s, t).await;
        assert!(series.len() >= 2, "{selector}: {series:?}");
        want.insert(i as i64, series);
    }
    let queries: Vec<Query> = selectors
        .iter()
        .map(|(_, matchers)| Query {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers: matchers.clone(),
            hints: None,
        })
        .collect();
    let read_url = strata.url("/api/v1/read");
    let tenant_header = [("X-Scope-OrgID", TENANT)];
    for (accepted, expected_type) in [
        (
            vec![1, 0],
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        ),
        (vec![], "application/x-protobuf"),
    ] {
        let request = ReadRequest {
            queries: queries.clone(),
            accepted_response_types: accepted.clone(),
        };
        let (status, content_type, body) =
            remote_read(&read_url, &tenant_header, encode(&request)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(content_type, expected_type);
        let got = if accepted.is_empty() {
            read_samples(&body)
        } else {
            read_streamed(&body)
        }
        .unwrap_or_else(|e| panic!("{expected_type}: {e}"));
        let got: BTreeMap<i64, RawSeries> = got
            .into_iter()
            .map(|(i, series)| (i, without_stale_markers(series)))
            .collect();
        assert_eq!(got, want, "{expected_type} differs from the query API");
    }
    drop(reader);
    drop(writer);
    drop(strata);
}

// Credentials as in tests/auth.rs (hashes of docs/authentication.md's one-liner).
const TENANTS: &str = r#"
credentials:
  - name: team-a-writer
    tenant: team-a
    scopes: [read, write]
    basic_auth:
      username: team-a
      # pw-a-write
      password_hash: "sha256$salt-int-aaaa$0aedba07fd1bd59e75aef415691f59f8152efa6b2baab5a8e188a9f3da688d2a"
  - name: team-a-reader
    tenant: team-a
    scopes: [read]
    # token-a-read
    bearer_token_hash: "sha256$salt-int-bbbb$54bcbb6e2943422db9f94188d4f53658d7e082a4c7f53f05fcf5285e81aeccb6"
"#;
/// `Basic base64("team-a:pw-a-write")`.
const A_WRITER: &str = "Basic dGVhbS1hOnB3LWEtd3JpdGU=";
/// `Basic base64("team-a:wrong")`.
const A_WRONG_PASSWORD: &str = "Basic dGVhbS1hOndyb25n";
const A_READER: &str = "Bearer token-a-read";

fn read_request(queries: Vec<(i64, i64, Vec<LabelMatcher>)>, accepted: Vec<i32>) -> Vec<u8> {
    encode(&ReadRequest {
        queries: queries
            .into_iter()
            .map(|(start, end, matchers)| Query {
                start_timestamp_ms: start,
                end_timestamp_ms: end,
                matchers,
                hints: None,
            })
            .collect(),
        accepted_response_types: accepted,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_read_limits_and_refusals_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let tenants_file = dir.path().join("tenants.yaml");
    std::fs::write(&tenants_file, TENANTS).unwrap();
    let overrides = dir.path().join("overrides.yaml");
    std::fs::write(
        &overrides,
        "overrides:\n  team-a:\n    max_fetched_series_per_query: 2\n    max_samples_per_query: 5\n    max_total_query_length: 1h\n",
    )
    .unwrap();
    let strata = Strata::start(&[
        "-target=all",
        "-auth.enabled=true",
        &format!("-auth.tenants_file={}", tenants_file.display()),
        &format!("-runtime_config.file={}", overrides.display()),
    ])
    .await;

    // q{i="0"}, q{i="1"}, q{i="2"}: three samples each.
    let now = now_ms();
    let samples = [(now - 3_000, 1.0), (now - 2_000, 2.0), (now - 1_000, 3.0)];
    let labels: Vec<[(&str, &str); 2]> = ["0", "1", "2"]
        .iter()
        .map(|i| [("__name__", "q"), ("i", *i)])
        .collect();
    let series: Vec<_> = labels.iter().map(|l| (&l[..], &samples[..])).collect();
    let (status, msg) = push_with_headers(
        &strata.url("/api/v1/push"),
        &[("Authorization", A_WRITER)],
        encode_write_request(&write_request(&series)),
    )
    .await;
    assert_eq!(status, 200, "{msg}");

    let url = strata.url("/prometheus/api/v1/read");
    let reader = [("Authorization", A_READER)];
    let (from, to) = (now - 60_000, now);
    let one = || vec![matcher(0, "__name__", "q"), matcher(0, "i", "0")];

    // Within every limit, with a read-only credential: 200 with the samples.
    let (status, _, body) =
        remote_read(&url, &reader, read_request(vec![(from, to, one())], vec![])).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let got = read_samples(&body).unwrap();
    assert_eq!(got[&0].values().next().map(Vec::len), Some(3), "{got:?}");

    // Three series: the query API's refusal, status and message, in both types.
    let t = now as f64 / 1000.0;
    let (status, query_body) = get_with_headers(
        &strata.url(&format!("/prometheus/api/v1/query?query=q&time={t}")),
        &reader,
    )
    .await;
    assert_eq!(status, 422, "{query_body}");
    let query_json: serde_json::Value = serde_json::from_str(&query_body).unwrap();
    let query_message = query_json["error"].as_str().unwrap();
    assert!(
        query_message.contains("max_fetched_series_per_query"),
        "{query_message}"
    );
    for accepted in [vec![], vec![1]] {
        let body = read_request(
            vec![(from, to, vec![matcher(0, "__name__", "q")])],
            accepted,
        );
        let (status, content_type, text) = remote_read(&url, &reader, body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, 422, "{text}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(text.trim_end(), query_message);
    }

    // Two series, six samples: over the 5 samples of max_samples_per_query.
    for accepted in [vec![], vec![1]] {
        let two = vec![matcher(0, "__name__", "q"), matcher(2, "i", "0|1")];
        let (status, _, text) =
            remote_read(&url, &reader, read_request(vec![(from, to, two)], accepted)).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, 422, "{text}");
        assert!(
            text.contains("too many samples") && text.contains("max_samples_per_query"),
            "{text}"
        );
    }

    // Two hours: over max_total_query_length, for remote read and query_range.
    let long = read_request(vec![(now - 7_200_000, now, one())], vec![1]);
    let (status, _, text) = remote_read(&url, &reader, long).await;
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("max_total_query_length") && text.contains("limit: 1h"),
        "{text}"
    );
    let (status, text) = get_with_headers(
        &strata.url(&format!(
            "/prometheus/api/v1/query_range?query=q&start={}&end={t}&step=60",
            t - 7200.0
        )),
        &reader,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_total_query_length"), "{text}");

    // Undecodable bodies and bad matchers: 400 naming what is wrong.
    let bad_regex = read_request(vec![(from, to, vec![matcher(2, "__name__", "q(")])], vec![]);
    for (body, message) in [
        (b"GET / HTTP/1.1".to_vec(), "not snappy-compressed"),
        (
            snap::raw::Encoder::new()
                .compress_vec(b"\xff\xff\xff")
                .unwrap(),
            "not a remote-read protobuf ReadRequest",
        ),
        (bad_regex, "invalid matcher"),
    ] {
        let (status, _, text) = remote_read(&url, &reader, body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, 400, "{message}: {text}");
        assert!(text.contains(message), "{message}: {text}");
    }

    // A wrong password, or no credential: 401.
    for headers in [vec![("Authorization", A_WRONG_PASSWORD)], vec![]] {
        let (status, _, _) = remote_read(
            &url,
            &headers,
            read_request(vec![(from, to, one())], vec![]),
        )
        .await;
        assert_eq!(status, 401, "{headers:?}");
    }
    // The process is still up after all of it.
    assert!(status_ok(&strata).await, "{}", strata.process.logs());
}

async fn status_ok(strata: &Strata) -> bool {
    reqwest::get(strata.url("/ready"))
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}
