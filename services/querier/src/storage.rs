//! One tenant's view of the ingesters as series with samples: turns matchers into
//! requests, chunks into samples within [start, end], and merges what several
//! sources return for the same series.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use strata_model::{Labels, Matcher, Sample, Series};
use strata_proto::ingester::{
    Chunk, ChunkEncoding, LabelNamesRequest, LabelValuesRequest, MatcherSet, QueryRequest,
    SeriesRequest, StreamSeries,
};
use strata_proto::{labels_from_proto, matcher_to_proto};
use strata_status::{ErrorCode, ServiceError};

use crate::ingester::IngesterQuery;

/// The series of one tenant held by the ingesters. Implements the PromQL engine's
/// `Queryable` and answers the series and label endpoints.
///
/// One is made per query, so a series limit counts over all its selectors.
#[derive(Debug, Clone)]
pub struct IngesterQueryable {
    tenant: String,
    ingesters: Arc<dyn IngesterQuery>,
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

impl IngesterQueryable {
    pub fn new(tenant: impl Into<String>, ingesters: Arc<dyn IngesterQuery>) -> Self {
        Self {
            tenant: tenant.into(),
            ingesters,
            series_limit: None,
        }
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
    /// by labels.
    pub async fn select_series(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, ServiceError> {
        let request = QueryRequest {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers: matchers.iter().map(matcher_to_proto).collect(),
        };
        let streamed = self.ingesters.query_stream(&self.tenant, request).await?;
        let decoded = streamed
            .into_iter()
            .map(|s| decode_stream_series(s, start_ms, end_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let merged = merge_series(vec![decoded]);
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
        let request = SeriesRequest {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matcher_sets: matcher_sets
                .iter()
                .map(|set| MatcherSet {
                    matchers: set.iter().map(matcher_to_proto).collect(),
                })
                .collect(),
        };
        let series = self.ingesters.series(&self.tenant, request).await?;
        Ok(series
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect())
    }

    /// Label names of the series matching any of `matcher_sets` (all series when
    /// there are none), sorted, each once.
    pub async fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, ServiceError> {
        let mut names = BTreeSet::new();
        for set in sets_or_all(matcher_sets) {
            let request = LabelNamesRequest {
                start_timestamp_ms: start_ms,
                end_timestamp_ms: end_ms,
                matchers: set.iter().map(matcher_to_proto).collect(),
            };
            names.extend(self.ingesters.label_names(&self.tenant, request).await?);
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
        let mut values = BTreeSet::new();
        for set in sets_or_all(matcher_sets) {
            let request = LabelValuesRequest {
                label_name: name.to_string(),
                start_timestamp_ms: start_ms,
                end_timestamp_ms: end_ms,
                matchers: set.iter().map(matcher_to_proto).collect(),
            };
            values.extend(
                self.ingesters
                    .label_values(&self.tenant, request)
                    .await?
                    .into_iter()
                    .filter(|v| !v.is_empty()),
            );
        }
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
            ServiceError::internal(format!(
                "series {labels}: bad chunk from ingester: {reason}"
            ))
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

/// Merges what several sources (ingester replicas, later store-gateways) return:
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
