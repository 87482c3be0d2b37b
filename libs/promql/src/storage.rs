//! An in-memory [`Queryable`], for tests and the conformance runner. Besides
//! float samples it holds native-histogram samples, which Strata's real storage
//! does not have yet.

use std::collections::BTreeMap;

use strata_model::{Labels, Matcher, Sample, Series};
use strata_status::ServiceError;

use crate::engine::Queryable;
use crate::histogram::FloatHistogram;
use crate::value::{HistogramSample, HistogramSeries};

/// Series held in memory, sorted by labels; samples sorted by time. A series
/// may have float samples, histogram samples or both (never both at one time).
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    series: BTreeMap<Labels, Vec<Sample>>,
    histograms: BTreeMap<Labels, Vec<HistogramSample>>,
}

fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; a sample (float or histogram) at an existing timestamp
    /// is replaced.
    pub fn add_sample(&mut self, labels: &Labels, sample: Sample) {
        if let Some(h) = self.histograms.get_mut(labels) {
            h.retain(|s| s.timestamp_ms != sample.timestamp_ms);
        }
        let samples = self.series.entry(labels.clone()).or_default();
        match samples.binary_search_by_key(&sample.timestamp_ms, |s| s.timestamp_ms) {
            Ok(i) => samples[i] = sample,
            Err(i) => samples.insert(i, sample),
        }
    }

    /// Adds one native-histogram sample; a sample (float or histogram) at an
    /// existing timestamp is replaced.
    pub fn add_histogram(&mut self, labels: &Labels, timestamp_ms: i64, histogram: FloatHistogram) {
        if let Some(f) = self.series.get_mut(labels) {
            f.retain(|s| s.timestamp_ms != timestamp_ms);
        }
        let sample = HistogramSample {
            timestamp_ms,
            histogram,
        };
        let samples = self.histograms.entry(labels.clone()).or_default();
        match samples.binary_search_by_key(&timestamp_ms, |s| s.timestamp_ms) {
            Ok(i) => samples[i] = sample,
            Err(i) => samples.insert(i, sample),
        }
    }

    pub fn add_series(&mut self, series: Series) {
        for s in series.samples {
            self.add_sample(&series.labels, s);
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.series.clear();
        self.histograms.clear();
    }

    /// Number of series (with float or histogram samples).
    pub fn len(&self) -> usize {
        self.series.len()
            + self
                .histograms
                .keys()
                .filter(|l| !self.series.contains_key(*l))
                .count()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.histograms.is_empty()
    }
}

#[async_trait::async_trait]
impl Queryable for MemoryStorage {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, ServiceError> {
        let mut out = Vec::new();
        for (labels, samples) in &self.series {
            if !matches_all(matchers, labels) {
                continue;
            }
            let lo = samples.partition_point(|s| s.timestamp_ms < start_ms);
            let hi = samples.partition_point(|s| s.timestamp_ms <= end_ms);
            if lo >= hi {
                continue;
            }
            out.push(Series {
                labels: labels.clone(),
                samples: samples[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }

    async fn select_histograms(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<HistogramSeries>, ServiceError> {
        let mut out = Vec::new();
        for (labels, samples) in &self.histograms {
            if !matches_all(matchers, labels) {
                continue;
            }
            let lo = samples.partition_point(|s| s.timestamp_ms < start_ms);
            let hi = samples.partition_point(|s| s.timestamp_ms <= end_ms);
            if lo >= hi {
                continue;
            }
            out.push(HistogramSeries {
                labels: labels.clone(),
                samples: samples[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}
