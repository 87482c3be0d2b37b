//! An in-memory [`Queryable`], for tests and the conformance runner.

use std::collections::BTreeMap;

use strata_model::{Labels, Matcher, Sample, Series};
use strata_status::ServiceError;

use crate::engine::Queryable;

/// Series held in memory, sorted by labels; samples sorted by time.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; a sample at an existing timestamp replaces it.
    pub fn add_sample(&mut self, labels: &Labels, sample: Sample) {
        let samples = self.series.entry(labels.clone()).or_default();
        match samples.binary_search_by_key(&sample.timestamp_ms, |s| s.timestamp_ms) {
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
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
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
            if !matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            {
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
}
