//! Prometheus remote read (`POST /api/v1/read`): it owns decoding a
//! snappy-compressed `ReadRequest`, choosing the response type the client
//! accepts, checking each query's matchers and time range, reading each query's
//! series through the tenant's queryable (the ingesters and store-gateways a
//! PromQL select reads, with the same per-query limits), and encoding both
//! answers: SAMPLES (one snappy-compressed `ReadResponse`) and
//! STREAMED_XOR_CHUNKS (frames of a `ChunkedReadResponse` each, a uvarint
//! length, the big-endian CRC32C of the message and the message, as
//! Prometheus's `storage/remote/chunked.go` writes them).
//!
//! Read hints are ignored: they only allow a server to return less. Errors are
//! one line of plain text, as Prometheus's remote-read handler answers them.
//! The HTTP route and tenant resolution are [`crate::api`]'s.

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use strata_model::{Matcher, Series};
use strata_proto::prometheus::{
    chunk, read_request::ResponseType, Chunk, ChunkedReadResponse, ChunkedSeries, QueryResult,
    ReadRequest, ReadResponse, Sample, TimeSeries,
};
use strata_proto::{labels_to_proto, remote_matcher_from_proto, ConvertError};
use strata_tsdb::chunk::{ChunkError, XorChunk, SAMPLES_PER_CHUNK};

use crate::error::ApiError;
use crate::querier::Querier;

/// Largest decompressed request accepted. A request is a few matchers per
/// query; the compressed body is already within the HTTP layer's 2 MiB.
pub(crate) const MAX_DECOMPRESSED_BYTES: usize = 16 << 20;

/// Target size of one streamed frame, Prometheus's default
/// (`--storage.remote.read-max-bytes-in-frame`). A frame ends after the chunk
/// that reaches it, so a frame can exceed it by one chunk.
pub(crate) const MAX_FRAME_BYTES: usize = 1 << 20;

/// The content type of a streamed answer, as Prometheus's client expects it.
pub(crate) const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Why a remote-read request was refused before any series was read. All are
/// the client's to fix (400).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("the request body is empty")]
    Empty,
    #[error("the request body is not snappy-compressed (block format): {0}")]
    NotSnappy(#[source] snap::Error),
    #[error(
        "the decompressed request would be {declared} bytes, more than the limit of {limit} bytes"
    )]
    TooLarge { declared: usize, limit: usize },
    #[error("the request body is not a remote-read protobuf ReadRequest: {0}")]
    NotProtobuf(#[source] prost::DecodeError),
    #[error(
        "none of the accepted response types {0:?} is supported; Strata answers SAMPLES (0) and STREAMED_XOR_CHUNKS (1)"
    )]
    NoSupportedResponseType(Vec<i32>),
    #[error("query {index}: invalid matcher: {source}")]
    Matcher {
        index: usize,
        #[source]
        source: ConvertError,
    },
    #[error(
        "query {index}: at least one matcher must not match the empty string (as in a PromQL selector)"
    )]
    OnlyEmptyMatchers { index: usize },
    #[error("query {index}: {count} matchers, more than the limit of {limit} (querier.max_query_matchers_per_selector)")]
    TooManyMatchers {
        index: usize,
        count: usize,
        limit: usize,
    },
    #[error("{count} matchers over all queries, more than the limit of {limit} (querier.max_query_matchers)")]
    TooManyMatchersInAll { count: usize, limit: usize },
    #[error("query {index}: {message}")]
    TooLong { index: usize, message: String },
}

/// Which answer the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Samples,
    StreamedXorChunks,
}

/// One query of a request, checked: its matchers and inclusive range.
#[derive(Debug)]
struct Selection {
    matchers: Vec<Matcher>,
    start_ms: i64,
    end_ms: i64,
}

/// Decodes a remote-read body. The declared decompressed length is checked
/// before anything is allocated for it, so a tiny body claiming gigabytes
/// costs nothing.
pub(crate) fn decode_request(body: &[u8]) -> Result<ReadRequest, ReadError> {
    if body.is_empty() {
        return Err(ReadError::Empty);
    }
    let declared = snap::raw::decompress_len(body).map_err(ReadError::NotSnappy)?;
    if declared > MAX_DECOMPRESSED_BYTES {
        return Err(ReadError::TooLarge {
            declared,
            limit: MAX_DECOMPRESSED_BYTES,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(ReadError::NotSnappy)?;
    ReadRequest::decode(raw.as_slice()).map_err(ReadError::NotProtobuf)
}

/// The first accepted response type Strata supports, in the client's order;
/// none listed means SAMPLES (clients older than the streamed type).
pub(crate) fn negotiate(accepted: &[i32]) -> Result<Answer, ReadError> {
    if accepted.is_empty() {
        return Ok(Answer::Samples);
    }
    accepted
        .iter()
        .find_map(|&t| match ResponseType::try_from(t) {
            Ok(ResponseType::Samples) => Some(Answer::Samples),
            Ok(ResponseType::StreamedXorChunks) => Some(Answer::StreamedXorChunks),
            Err(_) => None,
        })
        .ok_or_else(|| ReadError::NoSupportedResponseType(accepted.to_vec()))
}

/// Checks every query before any is run: matchers convert and select
/// something, within the querier's matcher limits (they also bound how many
/// queries one request can hold), and the range is within the tenant's
/// `max_total_query_length`.
fn selections(
    querier: &Querier,
    tenant: &str,
    request: &ReadRequest,
) -> Result<Vec<Selection>, ReadError> {
    let shape = querier.shape_limits();
    let total: usize = request.queries.iter().map(|q| q.matchers.len()).sum();
    if shape.max_matchers > 0 && total > shape.max_matchers {
        return Err(ReadError::TooManyMatchersInAll {
            count: total,
            limit: shape.max_matchers,
        });
    }
    let mut out = Vec::with_capacity(request.queries.len());
    for (index, query) in request.queries.iter().enumerate() {
        let count = query.matchers.len();
        if shape.max_matchers_per_selector > 0 && count > shape.max_matchers_per_selector {
            return Err(ReadError::TooManyMatchers {
                index,
                count,
                limit: shape.max_matchers_per_selector,
            });
        }
        let matchers = query
            .matchers
            .iter()
            .map(remote_matcher_from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ReadError::Matcher { index, source })?;
        // PromQL's rule for a selector: without it a query with no matchers
        // (or only `x=""`) would read every series of the tenant.
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(ReadError::OnlyEmptyMatchers { index });
        }
        let (start_ms, end_ms) = (query.start_timestamp_ms, query.end_timestamp_ms);
        if let Some(message) = querier.query_length_refusal(tenant, start_ms, end_ms) {
            return Err(ReadError::TooLong { index, message });
        }
        out.push(Selection {
            matchers,
            start_ms,
            end_ms,
        });
    }
    Ok(out)
}

/// Answers one remote-read request of `tenant` whose body is `body`.
pub(crate) async fn serve(querier: &Querier, tenant: &str, body: &[u8]) -> Response {
    match read(querier, tenant, body).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

/// A refusal as one line of plain text with the error's status.
pub(crate) fn error_response(e: &ApiError) -> Response {
    (
        e.status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", e.message),
    )
        .into_response()
}

async fn read(querier: &Querier, tenant: &str, body: &[u8]) -> Result<Response, ApiError> {
    let bad = |e: ReadError| ApiError::bad_data(e.to_string());
    let request = decode_request(body).map_err(bad)?;
    let answer = negotiate(&request.accepted_response_types).map_err(bad)?;
    tracing::debug!(
        queries = request.queries.len(),
        accepted = ?request.accepted_response_types,
        ?answer,
        "remote read"
    );
    let selections = selections(querier, tenant, &request).map_err(bad)?;
    let (max_samples, timeout) = querier.read_limits(tenant);
    let results = querier
        .guarded(
            timeout,
            select_all(querier, tenant, selections, max_samples),
        )
        .await?;
    Ok(match answer {
        Answer::Samples => samples_response(results),
        Answer::StreamedXorChunks => streamed_response(results),
    })
}

/// Each query's series with their samples, sorted by labels, series without
/// samples in the range left out. One queryable for the request, so the
/// series limit counts over all its queries, as over a PromQL query's
/// selectors; the sample limit likewise (the querier holds every sample of
/// the answer at once in both response types).
async fn select_all(
    querier: &Querier,
    tenant: &str,
    selections: Vec<Selection>,
    max_samples: usize,
) -> Result<Vec<Vec<Series>>, ApiError> {
    let storage = querier.queryable(tenant);
    let mut results = Vec::with_capacity(selections.len());
    let mut samples = 0usize;
    for selection in selections {
        if selection.end_ms < selection.start_ms {
            results.push(Vec::new());
            continue;
        }
        let mut series = storage
            .select_series(&selection.matchers, selection.start_ms, selection.end_ms)
            .await
            .map_err(|e| match storage.exceeded_limit() {
                Some(message) => ApiError::execution(message),
                None => ApiError::from_service(e),
            })?;
        series.retain(|s| !s.samples.is_empty());
        samples = series
            .iter()
            .fold(samples, |n, s| n.saturating_add(s.samples.len()));
        if max_samples > 0 && samples > max_samples {
            return Err(ApiError::execution(format!(
                "query processing would load too many samples into memory in query execution \
                 (limit: {max_samples} samples, limits.max_samples_per_query or querier.max_samples)"
            )));
        }
        results.push(series);
    }
    Ok(results)
}

/// SAMPLES: one `ReadResponse`, snappy block-compressed.
fn samples_response(results: Vec<Vec<Series>>) -> Response {
    let response = ReadResponse {
        results: results
            .into_iter()
            .map(|series| QueryResult {
                timeseries: series.into_iter().map(time_series).collect(),
            })
            .collect(),
    };
    let raw = response.encode_to_vec();
    match snap::raw::Encoder::new().compress_vec(&raw) {
        Ok(compressed) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::CONTENT_ENCODING, "snappy"),
            ],
            compressed,
        )
            .into_response(),
        // Only a message over snappy's 4 GiB block limit fails; the sample
        // limit keeps an answer far below it.
        Err(e) => error_response(&ApiError::from_service(
            strata_status::ServiceError::internal(format!("compressing the read response: {e}")),
        )),
    }
}

fn time_series(series: Series) -> TimeSeries {
    TimeSeries {
        labels: labels_to_proto(&series.labels),
        samples: series
            .samples
            .iter()
            .map(|s| Sample {
                value: s.value,
                timestamp: s.timestamp_ms,
            })
            .collect(),
        exemplars: Vec::new(),
        histograms: Vec::new(),
    }
}

/// STREAMED_XOR_CHUNKS: the frames of each series in turn, encoded as the
/// body is sent, so each series' samples are dropped once its frames are out.
fn streamed_response(results: Vec<Vec<Series>>) -> Response {
    let frames = results.into_iter().enumerate().flat_map(|(index, series)| {
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        series.into_iter().map(move |s| {
            let mut out = Vec::new();
            series_frames(&s, index, MAX_FRAME_BYTES, &mut out).map(|()| Bytes::from(out))
        })
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, STREAMED_CONTENT_TYPE)],
        Body::from_stream(futures::stream::iter(frames)),
    )
        .into_response()
}

/// Appends the frames of one series to `out`: its samples as XOR chunks of at
/// most [`SAMPLES_PER_CHUNK`] samples, as many chunks to a frame as fit in
/// `max_frame_bytes` with the labels (Prometheus's rule: the chunk that
/// reaches the budget is the frame's last).
pub(crate) fn series_frames(
    series: &Series,
    query_index: i64,
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), ChunkError> {
    let labels = labels_to_proto(&series.labels);
    let label_bytes: usize = labels.iter().map(Message::encoded_len).sum();
    let budget = max_frame_bytes.saturating_sub(label_bytes);
    let mut chunks = Vec::new();
    let mut used = 0usize;
    let pieces = series.samples.chunks(usize::from(SAMPLES_PER_CHUNK));
    let last = pieces.len();
    for (i, piece) in pieces.enumerate() {
        let chunk = xor_chunk(piece)?;
        used = used.saturating_add(chunk.encoded_len());
        chunks.push(chunk);
        if used >= budget || i + 1 == last {
            let frame = ChunkedReadResponse {
                chunked_series: vec![ChunkedSeries {
                    labels: labels.clone(),
                    chunks: std::mem::take(&mut chunks),
                }],
                query_index,
            };
            write_frame(&frame.encode_to_vec(), out);
            used = 0;
        }
    }
    Ok(())
}

/// One run of samples (in time order, not empty) as an XOR chunk message.
fn xor_chunk(samples: &[strata_model::Sample]) -> Result<Chunk, ChunkError> {
    let mut encoder = XorChunk::new();
    for s in samples {
        encoder.append(s.timestamp_ms, s.value)?;
    }
    Ok(Chunk {
        min_time_ms: samples.first().map_or(0, |s| s.timestamp_ms),
        max_time_ms: samples.last().map_or(0, |s| s.timestamp_ms),
        r#type: chunk::Encoding::Xor as i32,
        data: encoder.into_bytes(),
    })
}

/// A frame as Prometheus's `ChunkedWriter` writes it: the message's length as
/// a uvarint, its CRC32 (Castagnoli) as 4 big-endian bytes, the message.
pub(crate) fn write_frame(message: &[u8], out: &mut Vec<u8>) {
    prost::encoding::encode_varint(message.len() as u64, out);
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_model::{Labels, Sample as ModelSample};
    use strata_proto::prometheus::{LabelMatcher, Query};

    /// CRC-32C computed bit by bit (reflected polynomial 0x82F63B78), apart
    /// from the `crc32c` crate the encoder uses.
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

    /// A frame reader written from chunked.go's description, sharing nothing
    /// with the writer: uvarint length, big-endian CRC32C, message.
    fn read_frames(mut data: &[u8]) -> Vec<ChunkedReadResponse> {
        let mut frames = Vec::new();
        while !data.is_empty() {
            let (mut len, mut shift, mut used) = (0u64, 0u32, 0usize);
            loop {
                let byte = data[used];
                used += 1;
                len |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            let len = usize::try_from(len).unwrap();
            let crc = u32::from_be_bytes(data[used..used + 4].try_into().unwrap());
            let message = &data[used + 4..used + 4 + len];
            assert_eq!(crc, castagnoli(message), "frame {} checksum", frames.len());
            frames.push(ChunkedReadResponse::decode(message).unwrap());
            data = &data[used + 4 + len..];
        }
        frames
    }

    fn series(name: &str, n: i64) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name), ("job", "j")]),
            samples: (0..n)
                .map(|i| ModelSample::new(1_000 + i * 15_000, i as f64 * 1.5))
                .collect(),
        }
    }

    fn decoded(chunks: &[Chunk]) -> Vec<ModelSample> {
        chunks
            .iter()
            .flat_map(|c| {
                assert_eq!(c.r#type, chunk::Encoding::Xor as i32);
                strata_tsdb::chunk::decode_xor(&c.data).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_test_crc_is_castagnoli() {
        // The check value of CRC-32C (RFC 3720).
        assert_eq!(castagnoli(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_series_streams_as_xor_chunks_of_at_most_120_samples() {
        let s = series("up", 250);
        let mut out = Vec::new();
        series_frames(&s, 3, MAX_FRAME_BYTES, &mut out).unwrap();
        let frames = read_frames(&out);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].query_index, 3);
        let only = &frames[0].chunked_series;
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].labels, labels_to_proto(&s.labels));
        let sizes: Vec<u16> = only[0]
            .chunks
            .iter()
            .map(|c| u16::from_be_bytes([c.data[0], c.data[1]]))
            .collect();
        assert_eq!(sizes, [120, 120, 10]);
        for c in &only[0].chunks {
            let samples = strata_tsdb::chunk::decode_xor(&c.data).unwrap();
            assert_eq!(c.min_time_ms, samples[0].timestamp_ms);
            assert_eq!(c.max_time_ms, samples[samples.len() - 1].timestamp_ms);
        }
        assert_eq!(decoded(&only[0].chunks), s.samples);
    }

    #[test]
    fn a_series_over_the_frame_budget_is_split_over_frames_in_order() {
        let s = series("big", 1_000);
        let mut out = Vec::new();
        // Room for about two chunks a frame.
        series_frames(&s, 0, 400, &mut out).unwrap();
        let frames = read_frames(&out);
        assert!(frames.len() >= 3, "{} frames", frames.len());
        let mut all = Vec::new();
        for f in &frames {
            assert_eq!(f.chunked_series.len(), 1, "one series a frame");
            assert_eq!(f.chunked_series[0].labels, labels_to_proto(&s.labels));
            all.extend(f.chunked_series[0].chunks.iter().cloned());
        }
        assert_eq!(decoded(&all), s.samples);
        // The budget is reached by the frame's last chunk, not exceeded by more.
        for f in &frames {
            let data: usize = f.chunked_series[0]
                .chunks
                .iter()
                .map(Message::encoded_len)
                .sum();
            let without_last = data - f.chunked_series[0].chunks.last().unwrap().encoded_len();
            assert!(without_last < 400, "{data} bytes");
        }
    }

    #[test]
    fn special_values_survive_the_chunks_bit_exact() {
        let values = [
            f64::NAN,
            strata_model::STALE_NAN,
            f64::INFINITY,
            -0.0,
            f64::MIN_POSITIVE,
        ];
        let s = Series {
            labels: Labels::from_pairs([("__name__", "x")]),
            samples: values
                .iter()
                .enumerate()
                .map(|(i, &v)| ModelSample::new(i as i64, v))
                .collect(),
        };
        let mut out = Vec::new();
        series_frames(&s, 0, MAX_FRAME_BYTES, &mut out).unwrap();
        let got = decoded(&read_frames(&out)[0].chunked_series[0].chunks);
        let bits: Vec<u64> = got.iter().map(|s| s.value.to_bits()).collect();
        let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, want);
    }

    fn body(request: &ReadRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn requests_decode_and_bad_bodies_say_what_is_wrong() {
        let request = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![LabelMatcher {
                    r#type: 0,
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                hints: None,
            }],
            accepted_response_types: vec![1, 0],
        };
        assert_eq!(decode_request(&body(&request)).unwrap(), request);

        assert!(matches!(decode_request(b""), Err(ReadError::Empty)));
        // A header cut short, and a header followed by no valid block.
        for bad in [&b"\x80"[..], b"\x05\xff\xff\xff"] {
            let err = decode_request(bad).unwrap_err();
            assert!(matches!(err, ReadError::NotSnappy(_)), "{err}");
            assert!(err.to_string().contains("not snappy-compressed"), "{err}");
        }
        // 64 MiB declared, nothing behind it: refused before allocating.
        let err = decode_request(&[0x80, 0x80, 0x80, 0x20]).unwrap_err();
        assert!(
            matches!(err, ReadError::TooLarge { declared, .. } if declared == 64 << 20),
            "{err}"
        );
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff\xff\x0fgarbage")
            .unwrap();
        let err = decode_request(&not_proto).unwrap_err();
        assert!(matches!(err, ReadError::NotProtobuf(_)), "{err}");
        assert!(err
            .to_string()
            .contains("not a remote-read protobuf ReadRequest"));
    }

    #[test]
    fn the_first_supported_accepted_type_wins() {
        assert_eq!(negotiate(&[]).unwrap(), Answer::Samples);
        assert_eq!(negotiate(&[1, 0]).unwrap(), Answer::StreamedXorChunks);
        assert_eq!(negotiate(&[0, 1]).unwrap(), Answer::Samples);
        assert_eq!(negotiate(&[7, 1]).unwrap(), Answer::StreamedXorChunks);
        let err = negotiate(&[7, -1]).unwrap_err();
        assert!(err.to_string().contains("[7, -1]"), "{err}");
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(&bytes);
            if let Ok(compressed) = snap::raw::Encoder::new().compress_vec(&bytes) {
                let _ = decode_request(&compressed);
            }
        }

        #[test]
        fn any_samples_round_trip_through_frames(
            points in proptest::collection::vec((any::<i32>(), any::<u64>()), 1..400),
            budget in 1usize..5_000,
        ) {
            let mut timestamps: Vec<i64> = points.iter().map(|p| i64::from(p.0)).collect();
            timestamps.sort_unstable();
            timestamps.dedup();
            let samples: Vec<ModelSample> = timestamps
                .iter()
                .zip(&points)
                .map(|(&t, p)| ModelSample::new(t, f64::from_bits(p.1)))
                .collect();
            let s = Series { labels: Labels::from_pairs([("__name__", "p")]), samples };
            let mut out = Vec::new();
            series_frames(&s, 0, budget, &mut out).unwrap();
            let chunks: Vec<Chunk> = read_frames(&out)
                .into_iter()
                .flat_map(|f| f.chunked_series.into_iter().flat_map(|c| c.chunks))
                .collect();
            let got: Vec<(i64, u64)> = decoded(&chunks).iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect();
            let want: Vec<(i64, u64)> = s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
