//! One tenant's view of its data as series with samples: the ingesters for the
//! recent part of a query's range and the store-gateways for the older part
//! ([`SourceSplit`], Mimir's `query_ingesters_within` / `query_store_after`),
//! asked concurrently. Turns matchers into requests, chunks into samples within
//! each source's range, and merges what all sources return: replicas and the
//! two sources overlap, and each sample is kept once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use strata_model::{Labels, Matcher, Sample, Series};
use strata_proto::ingester::{
    LabelNamesRequest, LabelValuesRequest, MatcherSet, QueryRequest, SeriesRequest,
};
use strata_proto::storegateway;
use strata_proto::types::{Chunk, ChunkEncoding, StreamSeries};
use strata_proto::{labels_from_proto, matcher_to_proto};
use strata_status::{ErrorCode, ServiceError};

use crate::ingester::IngesterQuery;
use crate::store_gateway::StoreGatewayQuery;

/// Which part of a query's range each source is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceSplit {
    /// Ingesters are asked only for the last this many milliseconds (0: all).
    pub ingesters_within_ms: i64,
    /// Store-gateways are asked only for data older than this (0: all).
    pub store_after_ms: i64,
}

impl SourceSplit {
    /// `[max(start, now - within), end]`, or nothing when the range ends
    /// before it.
    pub fn ingester_range(&self, start_ms: i64, end_ms: i64, now_ms: i64) -> Option<(i64, i64)> {
        if self.ingesters_within_ms <= 0 {
            return Some((start_ms, end_ms));
        }
        let min = now_ms.saturating_sub(self.ingesters_within_ms);
        (end_ms >= min).then_some((start_ms.max(min), end_ms))
    }

    /// `[start, min(end, now - after)]`, or nothing when the range starts
    /// after it.
    pub fn store_range(&self, start_ms: i64, end_ms: i64, now_ms: i64) -> Option<(i64, i64)> {
        if self.store_after_ms <= 0 {
            return Some((start_ms, end_ms));
        }
        let max = now_ms.saturating_sub(self.store_after_ms);
        (start_ms <= max).then_some((start_ms, end_ms.min(max)))
    }
}

/// The `[start, end]` one source is asked for, if any.
type SourceRange = Option<(i64, i64)>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The series of one tenant, in the ingesters and (when configured) the
/// store-gateways. Implements the PromQL engine's `Queryable` and answers the
/// series and label endpoints.
///
/// One is made per query, so a series limit counts over all its selectors.
#[derive(Debug, Clone)]
pub struct TenantQueryable {
    tenant: String,
    ingesters: Arc<dyn IngesterQuery>,
    store: Option<Arc<dyn StoreGatewayQuery>>,
    split: SourceSplit,
    series_limit: Option<Arc<SeriesLimit>>,
}

/// The tenant's `max_fetched_series_per_query`, counted over one query.
#[derive(Debug)]
struct SeriesLimit {
    max: usize,
    /// Hashes of the distinct series fetched so far.
    seen: Mutex<HashSet<u64>>,
    exceeded: OnceLock<String>,
}

impl SeriesLimit {
    fn message(&self) -> String {
        format!(
            "the query exceeded the maximum number of series (limit: {} series, max_fetched_series_per_query); \
             select fewer series with more label matchers or a shorter time range (err-strata-max-series-per-query)",
            self.max
        )
    }
}

impl TenantQueryable {
    pub fn new(tenant: impl Into<String>, ingesters: Arc<dyn IngesterQuery>) -> Self {
        Self {
            tenant: tenant.into(),
            ingesters,
            store: None,
            split: SourceSplit::default(),
            series_limit: None,
        }
    }

    /// Reads blocks through `store` too, splitting each range between the
    /// sources by `split`. Without a store the ingesters get every range.
    pub fn with_store(mut self, store: Arc<dyn StoreGatewayQuery>, split: SourceSplit) -> Self {
        self.store = Some(store);
        self.split = split;
        self
    }

    /// The ranges to ask the ingesters and the store-gateways for, now.
    fn ranges(&self, start_ms: i64, end_ms: i64) -> (SourceRange, SourceRange) {
        if self.store.is_none() {
            return (Some((start_ms, end_ms)), None);
        }
        let now = now_ms();
        (
            self.split.ingester_range(start_ms, end_ms, now),
            self.split.store_range(start_ms, end_ms, now),
        )
    }

    /// Fails the query once it has fetched more than `max` distinct series
    /// (the tenant's `max_fetched_series_per_query`); 0 is no limit.
    pub fn with_max_fetched_series(mut self, max: usize) -> Self {
        self.series_limit = (max > 0).then(|| {
            Arc::new(SeriesLimit {
                max,
                seen: Mutex::new(HashSet::new()),
                exceeded: OnceLock::new(),
            })
        });
        self
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The message of the series limit this query exceeded, if it did. A
    /// select that exceeds it fails with a storage error; the caller reports
    /// this message as an execution error (422) instead, as Prometheus
    /// reports a query over its limits.
    pub fn exceeded_limit(&self) -> Option<String> {
        self.series_limit.as_ref()?.exceeded.get().cloned()
    }

    /// Counts `labels` against the series limit; an error once over it.
    pub fn count_fetched_series<'a>(
        &self,
        labels: impl IntoIterator<Item = &'a Labels>,
    ) -> Result<(), ServiceError> {
        let Some(limit) = &self.series_limit else {
            return Ok(());
        };
        let over = {
            let mut seen = limit.seen.lock();
            for l in labels {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                l.hash(&mut hasher);
                seen.insert(hasher.finish());
            }
            seen.len() > limit.max
        };
        if over {
            let message = limit.exceeded.get_or_init(|| limit.message()).clone();
            return Err(ServiceError::new(ErrorCode::BadRequest, message));
        }
        Ok(())
    }

    /// Series matching all `matchers` with their samples in [start, end], sorted
    /// by labels; each source's samples within the part of the range it was
    /// asked for, merged.
    pub async fn select_series(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, ServiceError> {
        let (ingester_range, store_range) = self.ranges(start_ms, end_ms);
        let proto_matchers: Vec<_> = matchers.iter().map(matcher_to_proto).collect();
        let from_ingesters = async {
            let Some((start, end)) = ingester_range else {
                return Ok(Vec::new());
            };
            let request = QueryRequest {
                start_timestamp_ms: start,
                end_timestamp_ms: end,
                matchers: proto_matchers.clone(),
            };
            let streamed = self.ingesters.query_stream(&self.tenant, request).await?;
            streamed
                .into_iter()
                .map(|s| decode_stream_series(s, start, end))
                .collect::<Result<Vec<_>, _>>()
        };
        let from_store = async {
            let (Some(store), Some((start, end))) = (&self.store, store_range) else {
                return Ok(Vec::new());
            };
            let request = storegateway::SeriesRequest {
                min_time_ms: start,
                max_time_ms: end,
                matchers: proto_matchers.clone(),
                skip_chunks: false,
                block_ids: Vec::new(),
            };
            let streamed = store.series(&self.tenant, request).await?;
            streamed
                .into_iter()
                .map(|s| decode_stream_series(s, start, end))
                .collect::<Result<Vec<_>, _>>()
        };
        let (recent, old) = futures::future::try_join(from_ingesters, from_store).await?;
        // Ingesters first: on equal timestamps their sample is kept.
        let merged = merge_series(vec![recent, old]);
        self.count_fetched_series(merged.iter().map(|s| &s.labels))?;
        Ok(merged)
    }

    /// Label sets of the series matching any of `matcher_sets`, sorted, each once.
    pub async fn series(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Labels>, ServiceError> {
        let (ingester_range, store_range) = self.ranges(start_ms, end_ms);
        let mut all = BTreeSet::new();
        if let Some((start, end)) = ingester_range {
            let request = SeriesRequest {
                start_timestamp_ms: start,
                end_timestamp_ms: end,
                matcher_sets: matcher_sets
                    .iter()
                    .map(|set| MatcherSet {
                        matchers: set.iter().map(matcher_to_proto).collect(),
                    })
                    .collect(),
            };
            all.extend(self.ingesters.series(&self.tenant, request).await?);
        }
        if let (Some(store), Some((start, end))) = (&self.store, store_range) {
            for set in matcher_sets {
                let request = storegateway::SeriesRequest {
                    min_time_ms: start,
                    max_time_ms: end,
                    matchers: set.iter().map(matcher_to_proto).collect(),
                    skip_chunks: true,
                    block_ids: Vec::new(),
                };
                let found = store.series(&self.tenant, request).await?;
                all.extend(found.into_iter().map(|s| labels_from_proto(s.labels)));
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Label names of the series matching any of `matcher_sets` (all series when
    /// there are none), sorted, each once.
    pub async fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, ServiceError> {
        let (ingester_range, store_range) = self.ranges(start_ms, end_ms);
        let mut names = BTreeSet::new();
        for set in sets_or_all(matcher_sets) {
            let matchers: Vec<_> = set.iter().map(matcher_to_proto).collect();
            if let Some((start, end)) = ingester_range {
                let request = LabelNamesRequest {
                    start_timestamp_ms: start,
                    end_timestamp_ms: end,
                    matchers: matchers.clone(),
                };
                names.extend(self.ingesters.label_names(&self.tenant, request).await?);
            }
            if let (Some(store), Some((start, end))) = (&self.store, store_range) {
                let request = storegateway::LabelNamesRequest {
                    min_time_ms: start,
                    max_time_ms: end,
                    matchers,
                    block_ids: Vec::new(),
                };
                names.extend(store.label_names(&self.tenant, request).await?);
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Values of label `name` among the series matching any of `matcher_sets`
    /// (all series when there are none), sorted, each once, never empty strings.
    pub async fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, ServiceError> {
        let (ingester_range, store_range) = self.ranges(start_ms, end_ms);
        let mut values = BTreeSet::new();
        for set in sets_or_all(matcher_sets) {
            let matchers: Vec<_> = set.iter().map(matcher_to_proto).collect();
            if let Some((start, end)) = ingester_range {
                let request = LabelValuesRequest {
                    label_name: name.to_string(),
                    start_timestamp_ms: start,
                    end_timestamp_ms: end,
                    matchers: matchers.clone(),
                };
                values.extend(self.ingesters.label_values(&self.tenant, request).await?);
            }
            if let (Some(store), Some((start, end))) = (&self.store, store_range) {
                let request = storegateway::LabelValuesRequest {
                    label_name: name.to_string(),
                    min_time_ms: start,
                    max_time_ms: end,
                    matchers,
                    block_ids: Vec::new(),
                };
                values.extend(store.label_values(&self.tenant, request).await?);
            }
        }
        values.remove("");
        Ok(values.into_iter().collect())
    }
}

/// No matcher set means one request without matchers: every series.
fn sets_or_all(matcher_sets: &[Vec<Matcher>]) -> Vec<&[Matcher]> {
    if matcher_sets.is_empty() {
        vec![&[]]
    } else {
        matcher_sets.iter().map(Vec::as_slice).collect()
    }
}

/// A streamed series as labels and the samples of its chunks within [start, end].
pub fn decode_stream_series(
    series: StreamSeries,
    start_ms: i64,
    end_ms: i64,
) -> Result<Series, ServiceError> {
    let labels = labels_from_proto(series.labels);
    let mut pieces = Vec::with_capacity(series.chunks.len());
    for chunk in &series.chunks {
        if chunk.max_time_ms < start_ms || chunk.min_time_ms > end_ms {
            continue;
        }
        let mut samples = Vec::new();
        decode_chunk(chunk, start_ms, end_ms, &mut samples).map_err(|reason| {
            ServiceError::internal(format!("series {labels}: bad chunk: {reason}"))
        })?;
        pieces.push(samples);
    }
    Ok(Series {
        labels,
        samples: merge_samples(pieces),
    })
}

/// Appends the samples of one chunk that fall within [start, end] to `out`.
fn decode_chunk(
    chunk: &Chunk,
    start_ms: i64,
    end_ms: i64,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    match ChunkEncoding::try_from(chunk.encoding) {
        Ok(ChunkEncoding::Xor) => decode_xor_chunk(&chunk.data, start_ms, end_ms, out),
        _ => Err(format!("unsupported chunk encoding {}", chunk.encoding)),
    }
}

/// The one call into the XOR chunk decoder of `strata_tsdb::chunk`.
fn decode_xor_chunk(
    data: &[u8],
    start_ms: i64,
    end_ms: i64,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    let samples = strata_tsdb::chunk::XorIterator::new(data).map_err(|e| e.to_string())?;
    for sample in samples {
        let sample = sample.map_err(|e| e.to_string())?;
        if sample.timestamp_ms > end_ms {
            break;
        }
        if sample.timestamp_ms >= start_ms {
            out.push(sample);
        }
    }
    Ok(())
}

/// Merges what several sources (ingester replicas, store-gateways) return:
/// series with the same labels become one, their samples merged by timestamp with
/// duplicates dropped (the first source's sample wins). Sorted by labels.
pub fn merge_series(sources: Vec<Vec<Series>>) -> Vec<Series> {
    let mut by_labels: BTreeMap<Labels, Vec<Vec<Sample>>> = BTreeMap::new();
    for source in sources {
        for series in source {
            by_labels
                .entry(series.labels)
                .or_default()
                .push(series.samples);
        }
    }
    by_labels
        .into_iter()
        .map(|(labels, pieces)| Series {
            labels,
            samples: merge_samples(pieces),
        })
        .collect()
}

/// Sorted sample runs merged into one, one sample per timestamp (the earliest
/// run's wins). Runs that follow each other are concatenated without sorting.
pub fn merge_samples(mut pieces: Vec<Vec<Sample>>) -> Vec<Sample> {
    match pieces.len() {
        0 => return Vec::new(),
        1 => {
            let only = pieces.pop().unwrap_or_default();
            if is_strictly_increasing(&only) {
                return only;
            }
            pieces.push(only);
        }
        _ => {}
    }
    let total = pieces.iter().map(Vec::len).sum();
    let mut merged: Vec<Sample> = Vec::with_capacity(total);
    let mut in_order = true;
    for piece in &pieces {
        if let (Some(last), Some(first)) = (merged.last(), piece.first()) {
            in_order &= last.timestamp_ms < first.timestamp_ms;
        }
        in_order &= is_strictly_increasing(piece);
        merged.extend_from_slice(piece);
    }
    if !in_order {
        // Stable: among equal timestamps the earliest piece's sample comes first
        // and is the one `dedup` keeps.
        merged.sort_by_key(|s| s.timestamp_ms);
        merged.dedup_by_key(|s| s.timestamp_ms);
    }
    merged
}

fn is_strictly_increasing(samples: &[Sample]) -> bool {
    samples
        .windows(2)
        .all(|w| w[0].timestamp_ms < w[1].timestamp_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    fn series(name: &str, points: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name)]),
            samples: s(points),
        }
    }

    #[test]
    fn merge_samples_dedupes_and_orders() {
        assert_eq!(merge_samples(vec![]), vec![]);
        assert_eq!(
            merge_samples(vec![s(&[(1, 1.0), (2, 2.0)]), s(&[(3, 3.0)])]),
            s(&[(1, 1.0), (2, 2.0), (3, 3.0)])
        );
        assert_eq!(
            merge_samples(vec![
                s(&[(1, 1.0), (3, 3.0)]),
                s(&[(1, 9.0), (2, 2.0), (3, 9.0)])
            ]),
            s(&[(1, 1.0), (2, 2.0), (3, 3.0)])
        );
        assert_eq!(
            merge_samples(vec![s(&[(2, 2.0), (1, 1.0), (2, 9.0)])]),
            s(&[(1, 1.0), (2, 2.0)])
        );
    }

    #[test]
    fn merge_series_by_labels_across_sources() {
        let replica_a = vec![series("b", &[(1, 1.0), (2, 2.0)]), series("a", &[(5, 5.0)])];
        let replica_b = vec![series("b", &[(2, 2.0), (3, 3.0)]), series("c", &[])];
        let merged = merge_series(vec![replica_a, replica_b]);
        assert_eq!(
            merged,
            vec![
                series("a", &[(5, 5.0)]),
                series("b", &[(1, 1.0), (2, 2.0), (3, 3.0)]),
                series("c", &[]),
            ]
        );
    }

    const H: i64 = 3_600_000;

    #[test]
    fn split_asks_each_source_for_its_part_as_mimir_does() {
        let split = SourceSplit {
            ingesters_within_ms: 13 * H,
            store_after_ms: 12 * H,
        };
        let now = 100 * H;
        // Recent only: ingesters alone.
        assert_eq!(split.ingester_range(99 * H, now, now), Some((99 * H, now)));
        assert_eq!(split.store_range(99 * H, now, now), None);
        // Old only: store-gateways alone.
        assert_eq!(split.ingester_range(10 * H, 20 * H, now), None);
        assert_eq!(
            split.store_range(10 * H, 20 * H, now),
            Some((10 * H, 20 * H))
        );
        // Both, overlapping by an hour.
        assert_eq!(split.ingester_range(10 * H, now, now), Some((87 * H, now)));
        assert_eq!(split.store_range(10 * H, now, now), Some((10 * H, 88 * H)));
        // 0 means the whole range.
        let all = SourceSplit::default();
        assert_eq!(all.ingester_range(1, 2, now), Some((1, 2)));
        assert_eq!(all.store_range(1, 2, now), Some((1, 2)));
    }

    fn xor_series(name: &str, points: std::ops::Range<i64>) -> StreamSeries {
        let mut chunk = strata_tsdb::chunk::XorChunk::new();
        for t in points.clone() {
            chunk.append(t, t as f64).unwrap();
        }
        StreamSeries {
            labels: strata_proto::labels_to_proto(&Labels::from_pairs([("__name__", name)])),
            chunks: vec![Chunk {
                min_time_ms: points.start,
                max_time_ms: points.end - 1,
                encoding: ChunkEncoding::Xor as i32,
                data: chunk.into_bytes().into(),
            }],
        }
    }

    #[derive(Debug)]
    struct Fake(Vec<StreamSeries>);

    #[async_trait::async_trait]
    impl IngesterQuery for Fake {
        async fn query_stream(
            &self,
            _: &str,
            _: QueryRequest,
        ) -> Result<Vec<StreamSeries>, ServiceError> {
            Ok(self.0.clone())
        }
        async fn label_names(
            &self,
            _: &str,
            _: LabelNamesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            Ok(vec!["from_ingesters".into()])
        }
        async fn label_values(
            &self,
            _: &str,
            _: LabelValuesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            Ok(vec!["a".into(), "".into()])
        }
        async fn series(&self, _: &str, _: SeriesRequest) -> Result<Vec<Labels>, ServiceError> {
            Ok(self
                .0
                .iter()
                .map(|s| labels_from_proto(s.labels.clone()))
                .collect())
        }
    }

    #[async_trait::async_trait]
    impl StoreGatewayQuery for Fake {
        async fn series(
            &self,
            _: &str,
            request: storegateway::SeriesRequest,
        ) -> Result<Vec<StreamSeries>, ServiceError> {
            let mut out = self.0.clone();
            if request.skip_chunks {
                out.iter_mut().for_each(|s| s.chunks.clear());
            }
            Ok(out)
        }
        async fn label_names(
            &self,
            _: &str,
            _: storegateway::LabelNamesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            Ok(vec!["from_store".into()])
        }
        async fn label_values(
            &self,
            _: &str,
            _: storegateway::LabelValuesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            Ok(vec!["b".into(), "a".into()])
        }
    }

    #[tokio::test]
    async fn both_sources_merge_into_each_sample_once() {
        // The store has 0..60 of "x" (twice: two blocks' copies), the
        // ingesters 50..100 and a series of their own.
        let ingesters = Fake(vec![xor_series("x", 50..100), xor_series("y", 90..95)]);
        let store = Fake(vec![
            xor_series("x", 0..60),
            xor_series("x", 0..30),
            xor_series("z", 0..5),
        ]);
        let q = TenantQueryable::new("t", Arc::new(ingesters))
            .with_store(Arc::new(store), SourceSplit::default());
        let got = q.select_series(&[], 0, 99).await.unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|s| s.labels.get("__name__").unwrap().to_string())
            .collect();
        assert_eq!(names, ["x", "y", "z"]);
        let x: Vec<i64> = got[0].samples.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(x, (0..100).collect::<Vec<_>>());
        // Clipped to the query's range.
        let got = q.select_series(&[], 10, 20).await.unwrap();
        assert_eq!(got[0].samples.len(), 11);

        assert_eq!(q.series(&[vec![]], 0, 99).await.unwrap().len(), 3);
        assert_eq!(
            q.label_names(&[], 0, 99).await.unwrap(),
            ["from_ingesters", "from_store"]
        );
        assert_eq!(q.label_values("l", &[], 0, 99).await.unwrap(), ["a", "b"]);

        // Without a store, the ingesters alone (and for every range).
        let alone = TenantQueryable::new("t", Arc::new(Fake(vec![xor_series("x", 50..100)])));
        let got = alone.select_series(&[], 0, 99).await.unwrap();
        assert_eq!(got[0].samples.len(), 50);
    }

    #[test]
    fn unknown_chunk_encoding_is_an_internal_error() {
        let streamed = StreamSeries {
            labels: vec![],
            chunks: vec![Chunk {
                min_time_ms: 0,
                max_time_ms: 10,
                encoding: 7,
                data: vec![1, 2, 3].into(),
            }],
        };
        let err = decode_stream_series(streamed, 0, 10).unwrap_err();
        assert_eq!(err.code, strata_status::ErrorCode::Internal);
    }
}
