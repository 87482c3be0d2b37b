//! [`ExemplarStore`]: one tenant's exemplars, in a circular buffer of a fixed
//! number of entries shared by all its series (Prometheus's exemplar storage
//! is the same shape): the oldest exemplar is overwritten when it is full, and
//! each series' exemplars are kept in time order, found through a per-series
//! index. Series are known by the number of their head series ref (plain
//! `u64`, so this module stays a leaf the head builds on), which a head never
//! reuses, so the exemplars of a series the head dropped are simply never
//! asked for again and age out of the buffer.

use std::collections::{HashMap, VecDeque};

use strata_model::Labels;

/// One exemplar: its own labels (a trace ID, usually), value and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// Why [`ExemplarStore::add`] did not store an exemplar. Neither is an error
/// for the sender: Prometheus's remote-write receiver counts them and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemplarSkipped {
    /// The same as the series' newest exemplar (a resend).
    Duplicate,
    /// Not newer than the series' newest exemplar.
    OutOfOrder,
    /// The store holds no exemplars (capacity 0).
    Disabled,
}

impl ExemplarSkipped {
    /// The `reason` label Strata's discarded-exemplar counter uses.
    pub fn reason(self) -> &'static str {
        match self {
            ExemplarSkipped::Duplicate => "exemplar_duplicate",
            ExemplarSkipped::OutOfOrder => "exemplar_out_of_order",
            ExemplarSkipped::Disabled => "exemplars_disabled",
        }
    }
}

/// A tenant's exemplars, at most `capacity` of them.
#[derive(Debug, Default)]
pub struct ExemplarStore {
    capacity: usize,
    /// Oldest first; entry `i` has sequence number `first_seq + i`.
    ring: VecDeque<(u64, Exemplar)>,
    first_seq: u64,
    /// Each series' entries by sequence number, oldest first.
    by_series: HashMap<u64, VecDeque<u64>>,
}

impl ExemplarStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Changes the capacity (a tenant's limit changed, or the ingester's
    /// share of it); shrinking drops the oldest exemplars.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.ring.len() > capacity {
            self.evict_oldest();
        }
    }

    /// Stores `exemplar` for `series`, unless it repeats or precedes the
    /// series' newest one (Prometheus's rules); a full store overwrites its
    /// oldest exemplar.
    pub fn add(&mut self, series: u64, exemplar: Exemplar) -> Result<(), ExemplarSkipped> {
        self.check(series, &exemplar, None)?;
        if self.ring.len() >= self.capacity {
            self.evict_oldest();
        }
        let seq = self.first_seq + self.ring.len() as u64;
        self.ring.push_back((series, exemplar));
        self.by_series.entry(series).or_default().push_back(seq);
        Ok(())
    }

    /// Whether [`ExemplarStore::add`] would store `exemplar` for `series`,
    /// had it stored `planned` (the series' newest of those a caller plans
    /// to add) first; changes nothing.
    pub fn check(
        &self,
        series: u64,
        exemplar: &Exemplar,
        planned: Option<&Exemplar>,
    ) -> Result<(), ExemplarSkipped> {
        if self.capacity == 0 {
            return Err(ExemplarSkipped::Disabled);
        }
        if let Some(newest) = planned.or_else(|| self.newest_of(series)) {
            if newest == exemplar {
                return Err(ExemplarSkipped::Duplicate);
            }
            if exemplar.timestamp_ms <= newest.timestamp_ms {
                return Err(ExemplarSkipped::OutOfOrder);
            }
        }
        Ok(())
    }

    /// The series' exemplars within `[mint, maxt]`, oldest first.
    pub fn query(&self, series: u64, mint: i64, maxt: i64) -> Vec<Exemplar> {
        let Some(seqs) = self.by_series.get(&series) else {
            return Vec::new();
        };
        seqs.iter()
            .filter_map(|&seq| self.entry(seq))
            .filter(|e| e.timestamp_ms >= mint && e.timestamp_ms <= maxt)
            .cloned()
            .collect()
    }

    /// Every exemplar with its series, oldest first (for a checkpoint).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Exemplar)> {
        self.ring.iter().map(|(s, e)| (*s, e))
    }

    fn entry(&self, seq: u64) -> Option<&Exemplar> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.ring.get(index).map(|(_, e)| e)
    }

    fn newest_of(&self, series: u64) -> Option<&Exemplar> {
        let seq = *self.by_series.get(&series)?.back()?;
        self.entry(seq)
    }

    fn evict_oldest(&mut self) {
        let Some((series, _)) = self.ring.pop_front() else {
            return;
        };
        if let Some(seqs) = self.by_series.get_mut(&series) {
            seqs.pop_front();
            if seqs.is_empty() {
                self.by_series.remove(&series);
            }
        }
        self.first_seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, value: f64, ts: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value,
            timestamp_ms: ts,
        }
    }

    #[test]
    fn keeps_each_series_in_order_and_skips_repeats_and_older_ones() {
        let mut store = ExemplarStore::new(10);
        let (a, b) = (1u64, 2u64);
        assert_eq!(store.add(a, ex("x", 1.0, 10)), Ok(()));
        assert_eq!(store.add(b, ex("y", 2.0, 5)), Ok(()));
        assert_eq!(
            store.add(a, ex("x", 1.0, 10)),
            Err(ExemplarSkipped::Duplicate)
        );
        assert_eq!(
            store.add(a, ex("z", 3.0, 10)),
            Err(ExemplarSkipped::OutOfOrder)
        );
        assert_eq!(
            store.add(a, ex("z", 3.0, 9)),
            Err(ExemplarSkipped::OutOfOrder)
        );
        assert_eq!(store.add(a, ex("z", 3.0, 20)), Ok(()));
        assert_eq!(store.query(a, 0, 100), [ex("x", 1.0, 10), ex("z", 3.0, 20)]);
        assert_eq!(store.query(a, 11, 20), [ex("z", 3.0, 20)]);
        assert_eq!(store.query(b, 0, 100), [ex("y", 2.0, 5)]);
        assert!(store.query(3, 0, 100).is_empty());
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn a_full_store_overwrites_its_oldest_exemplars_of_any_series() {
        let mut store = ExemplarStore::new(3);
        let (a, b) = (1u64, 2u64);
        store.add(a, ex("1", 1.0, 1)).unwrap();
        store.add(b, ex("2", 2.0, 2)).unwrap();
        store.add(a, ex("3", 3.0, 3)).unwrap();
        store.add(b, ex("4", 4.0, 4)).unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.query(a, 0, 10), [ex("3", 3.0, 3)]);
        assert_eq!(store.query(b, 0, 10), [ex("2", 2.0, 2), ex("4", 4.0, 4)]);
        // After eviction the series' newest is still the one compared with.
        assert_eq!(
            store.add(a, ex("3", 3.0, 3)),
            Err(ExemplarSkipped::Duplicate)
        );

        store.set_capacity(1);
        assert_eq!(store.len(), 1);
        assert!(store.query(a, 0, 10).is_empty());
        assert_eq!(store.query(b, 0, 10), [ex("4", 4.0, 4)]);
        store.set_capacity(0);
        assert!(store.is_empty());
        assert_eq!(
            store.add(a, ex("5", 5.0, 5)),
            Err(ExemplarSkipped::Disabled)
        );
        // Many evictions keep the sequence arithmetic right.
        store.set_capacity(2);
        for i in 0..1000 {
            store.add(i % 3, ex("t", i as f64, i as i64)).unwrap();
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.query(0, 0, 2000), [ex("t", 999.0, 999)]);
        assert_eq!(store.query(2, 0, 2000), [ex("t", 998.0, 998)]);
    }
}
