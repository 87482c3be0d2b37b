//! A minimal native-histogram sample: Prometheus's `FloatHistogram` with the
//! operations the engine needs (scaling, addition and subtraction, equality,
//! quantile and fraction estimation).
//!
//! Buckets are kept as `(index, count)` pairs sorted by index (absolute counts,
//! not deltas). That is the information Prometheus's spans and buckets carry; a
//! bucket present with count 0 is kept until [`FloatHistogram::compact`], like a
//! zero inside a Prometheus span. Strata's storage holds no native histograms
//! yet: they reach the engine only through [`crate::MemoryStorage`] (tests and
//! the conformance runner).

use std::fmt;

use crate::mathx::kahan_sum_inc;

/// The schema of native histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Prometheus's counter reset hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    Reset,
    NotReset,
    Gauge,
}

/// A native histogram with float counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8 for exponential buckets, [`CUSTOM_BUCKETS_SCHEMA`] for custom ones.
    pub schema: i32,
    /// Width of the zero bucket: it counts observations in `[-t, t]`.
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    /// Positive buckets as `(index, count)`, sorted by index.
    pub positive: Vec<(i32, f64)>,
    /// Negative buckets as `(index, count)`, sorted by index.
    pub negative: Vec<(i32, f64)>,
    /// Upper bounds of the custom buckets (schema -53), `+Inf` implied.
    pub custom_values: Vec<f64>,
}

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistogramError {
    /// One has exponential buckets, the other custom buckets.
    IncompatibleSchema,
}

/// One bucket with its bounds, for iteration in value order.
#[derive(Debug, Clone, Copy)]
struct BucketSpan {
    lower: f64,
    upper: f64,
    count: f64,
}

/// The upper bound of exponential bucket `idx` in `schema`: `2^(idx * 2^-schema)`.
fn exp_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        // Exact powers of two; `powi` of 2 is exact within the float range.
        let exp = i64::from(idx) << (-schema).min(62);
        if exp >= 1024 {
            return f64::MAX;
        }
        if exp < -1100 {
            return 0.0;
        }
        return 2f64.powi(exp as i32);
    }
    let per_octave = 1i64 << schema.min(30);
    let idx = i64::from(idx);
    // idx = octave * per_octave + frac_idx with 0 <= frac_idx < per_octave.
    let octave = idx.div_euclid(per_octave);
    let frac_idx = idx.rem_euclid(per_octave);
    let frac = 2f64.powf(frac_idx as f64 / per_octave as f64);
    if octave >= 1024 {
        return f64::MAX;
    }
    if octave < -1100 {
        return 0.0;
    }
    frac * 2f64.powi(octave as i32)
}

/// Merges the counts of equal indexes of a sorted list and keeps it sorted.
fn normalize(b: &mut Vec<(i32, f64)>) {
    b.sort_by_key(|x| x.0);
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(b.len());
    for &(i, c) in b.iter() {
        match out.last_mut() {
            Some(last) if last.0 == i => last.1 += c,
            _ => out.push((i, c)),
        }
    }
    *b = out;
}

/// Adds `sign * other` into `into`, both sorted by index.
fn add_buckets(into: &mut Vec<(i32, f64)>, other: &[(i32, f64)], sign: f64) {
    into.extend(other.iter().map(|&(i, c)| (i, c * sign)));
    normalize(into);
}

/// Kahan-adds `other` into `into` with compensation `comp`, all sorted by index.
fn kahan_add_buckets(into: &mut Vec<(i32, f64)>, comp: &mut Vec<(i32, f64)>, other: &[(i32, f64)]) {
    for &(i, c) in other {
        let k = match into.binary_search_by_key(&i, |x| x.0) {
            Ok(k) => k,
            Err(k) => {
                into.insert(k, (i, 0.0));
                k
            }
        };
        let kc = match comp.binary_search_by_key(&i, |x| x.0) {
            Ok(k) => k,
            Err(k) => {
                comp.insert(k, (i, 0.0));
                k
            }
        };
        (into[k].1, comp[kc].1) = kahan_sum_inc(c, into[k].1, comp[kc].1);
    }
}

/// The bounds both custom-bucket layouts have (+Inf implied in both).
fn common_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().copied().filter(|x| b.contains(x)).collect()
}

/// What Prometheus says about NaN observations when estimating from a
/// histogram (whose sum is then NaN and whose buckets miss some of the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NanObservations {
    /// `histogram_quantile` had to return NaN.
    QuantileNaN,
    /// `histogram_quantile`'s estimate is skewed higher.
    QuantileSkewed,
    /// `histogram_fraction` excluded them.
    FractionExcluded,
}

impl NanObservations {
    /// Prometheus's info annotation, for a metric name.
    pub(crate) fn info(self, metric_name: &str) -> String {
        let what = match self {
            NanObservations::QuantileNaN => {
                "input to histogram_quantile has NaN observations, result is NaN"
            }
            NanObservations::QuantileSkewed => {
                "input to histogram_quantile has NaN observations, result is skewed higher"
            }
            NanObservations::FractionExcluded => {
                "input to histogram_fraction has NaN observations, which are excluded from all fractions"
            }
        };
        if metric_name.is_empty() {
            format!("PromQL info: {what}")
        } else {
            format!("PromQL info: {what} for metric name {metric_name:?}")
        }
    }
}

/// How a sum of histograms went: whether custom bucket bounds had to be
/// reconciled (Prometheus then adds an info annotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Reconciled(pub(crate) bool);

impl FloatHistogram {
    /// Whether the buckets are custom (NHCB).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Multiplies every count and the sum by `f`; a negative factor makes the
    /// result a gauge histogram, as in Prometheus.
    pub(crate) fn mul(&mut self, f: f64) {
        if f < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 *= f;
        }
    }

    /// Divides every count and the sum by `f`; like Prometheus, dividing by zero
    /// removes all buckets (the count, sum and zero count become ±Inf or NaN).
    pub(crate) fn div(&mut self, f: f64) {
        if f < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self.count /= f;
        self.sum /= f;
        self.zero_count /= f;
        if f == 0.0 {
            self.positive.clear();
            self.negative.clear();
            return;
        }
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 /= f;
        }
    }

    /// Whether a count, the sum or a bucket overflowed to infinity.
    fn has_overflow(&self) -> bool {
        self.count.is_infinite()
            || self.sum.is_infinite()
            || self.zero_count.is_infinite()
            || self
                .positive
                .iter()
                .chain(&self.negative)
                .any(|b| b.1.is_infinite())
    }

    /// Re-buckets custom buckets onto `bounds`, a subset of the current bounds:
    /// each bucket goes to the first new bucket whose bound is not below its own.
    fn rebucket_custom(&mut self, bounds: &[f64]) {
        if self.custom_values == bounds {
            return;
        }
        let old = std::mem::take(&mut self.custom_values);
        for b in self.positive.iter_mut() {
            let upper = usize::try_from(b.0)
                .ok()
                .and_then(|i| old.get(i).copied())
                .unwrap_or(f64::INFINITY);
            let j = bounds.partition_point(|x| *x < upper);
            b.0 = i32::try_from(j).unwrap_or(i32::MAX);
        }
        normalize(&mut self.positive);
        self.custom_values = bounds.to_vec();
    }

    /// Brings `self` and `other` to one bucket layout: the lower resolution,
    /// the wider zero bucket, or the common custom bounds.
    fn align(&mut self, other: &mut FloatHistogram) -> Result<Reconciled, HistogramError> {
        match (self.uses_custom_buckets(), other.uses_custom_buckets()) {
            (true, true) => {
                if self.custom_values == other.custom_values {
                    return Ok(Reconciled(false));
                }
                let bounds = common_bounds(&self.custom_values, &other.custom_values);
                self.rebucket_custom(&bounds);
                other.rebucket_custom(&bounds);
                Ok(Reconciled(true))
            }
            (false, false) => {
                let schema = self.schema.min(other.schema);
                self.reduce_resolution(schema);
                other.reduce_resolution(schema);
                let threshold = self.zero_threshold.max(other.zero_threshold);
                self.widen_zero_bucket(threshold);
                other.widen_zero_bucket(threshold);
                Ok(Reconciled(false))
            }
            _ => Err(HistogramError::IncompatibleSchema),
        }
    }

    /// Prometheus's `DetectReset`: whether `self` following `prev` is a counter
    /// reset (an explicit hint decides; otherwise a count, the zero bucket or a
    /// bucket went down, the resolution went up or the layout changed).
    pub(crate) fn detects_reset(&self, prev: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count
            || self.uses_custom_buckets() != prev.uses_custom_buckets()
            || (self.uses_custom_buckets() && self.custom_values != prev.custom_values)
            || (!self.uses_custom_buckets() && self.schema > prev.schema)
            || self.zero_threshold < prev.zero_threshold
        {
            return true;
        }
        let mut p = prev.clone();
        p.reduce_resolution(self.schema);
        p.widen_zero_bucket(self.zero_threshold);
        if self.zero_count < p.zero_count {
            return true;
        }
        let went_down = |cur: &[(i32, f64)], old: &[(i32, f64)]| {
            old.iter().any(|&(i, c)| {
                let now = cur
                    .binary_search_by_key(&i, |x| x.0)
                    .map_or(0.0, |k| cur[k].1);
                now < c
            })
        };
        went_down(&self.positive, &p.positive) || went_down(&self.negative, &p.negative)
    }

    /// Removes buckets with a count of zero (Prometheus's `Compact(0)`).
    pub(crate) fn compact(&mut self) {
        self.positive.retain(|b| b.1 != 0.0);
        self.negative.retain(|b| b.1 != 0.0);
    }

    /// Lowers the resolution to `target` (< the current schema): bucket `i`
    /// becomes bucket `((i - 1) >> delta) + 1`.
    fn reduce_resolution(&mut self, target: i32) {
        if self.uses_custom_buckets() || target >= self.schema {
            return;
        }
        let delta = (self.schema - target).min(31);
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.0 = (b.0.saturating_sub(1) >> delta) + 1;
        }
        normalize(&mut self.positive);
        normalize(&mut self.negative);
        self.schema = target;
    }

    /// Moves buckets that lie entirely inside a wider zero bucket into it.
    fn widen_zero_bucket(&mut self, threshold: f64) {
        if threshold <= self.zero_threshold {
            return;
        }
        let schema = self.schema;
        let mut moved = 0.0;
        for side in [&mut self.positive, &mut self.negative] {
            side.retain(|&(i, c)| {
                if exp_bound(i, schema) <= threshold {
                    moved += c;
                    false
                } else {
                    true
                }
            });
        }
        self.zero_count += moved;
        self.zero_threshold = threshold;
    }

    /// Prometheus's rule for the hint of a sum: equal hints stay, a gauge wins,
    /// then "unknown"; reset plus not-reset is a collision and gives "unknown".
    fn combine_hint(&mut self, other: CounterResetHint) {
        use CounterResetHint::*;
        self.counter_reset_hint = match (self.counter_reset_hint, other) {
            (a, b) if a == b => a,
            (Gauge, _) | (_, Gauge) => Gauge,
            _ => Unknown,
        };
    }

    /// `self += sign * other`, reconciling schemas (the lower resolution wins),
    /// zero buckets (the wider one wins) and custom bounds (the common ones).
    fn add_signed(
        &mut self,
        other: &FloatHistogram,
        sign: f64,
    ) -> Result<Reconciled, HistogramError> {
        let mut other = other.clone();
        let reconciled = self.align(&mut other)?;
        self.combine_hint(other.counter_reset_hint);
        if sign < 0.0 {
            // A difference is no counter any more.
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        self.zero_count += sign * other.zero_count;
        add_buckets(&mut self.positive, &other.positive, sign);
        add_buckets(&mut self.negative, &other.negative, sign);
        Ok(reconciled)
    }

    /// `self += other`.
    pub(crate) fn add(&mut self, other: &FloatHistogram) -> Result<Reconciled, HistogramError> {
        self.add_signed(other, 1.0)
    }

    /// `self -= other`.
    pub(crate) fn sub(&mut self, other: &FloatHistogram) -> Result<Reconciled, HistogramError> {
        self.add_signed(other, -1.0)
    }

    /// `self += other` with Kahan compensation kept in `comp` (same layout as
    /// `self`, which this keeps so).
    fn kahan_add(
        &mut self,
        comp: &mut FloatHistogram,
        other: &FloatHistogram,
    ) -> Result<Reconciled, HistogramError> {
        let mut other = other.clone();
        let reconciled = self.align(&mut other)?;
        // The compensation follows the sum's layout.
        comp.reduce_resolution(self.schema);
        comp.widen_zero_bucket(self.zero_threshold);
        if self.uses_custom_buckets() {
            comp.schema = CUSTOM_BUCKETS_SCHEMA;
            comp.rebucket_custom(&self.custom_values);
        }
        self.combine_hint(other.counter_reset_hint);
        (self.count, comp.count) = kahan_sum_inc(other.count, self.count, comp.count);
        (self.sum, comp.sum) = kahan_sum_inc(other.sum, self.sum, comp.sum);
        (self.zero_count, comp.zero_count) =
            kahan_sum_inc(other.zero_count, self.zero_count, comp.zero_count);
        kahan_add_buckets(&mut self.positive, &mut comp.positive, &other.positive);
        kahan_add_buckets(&mut self.negative, &mut comp.negative, &other.negative);
        Ok(reconciled)
    }

    /// A compensation histogram (all zero) in the layout of `self`.
    fn zero_like(&self) -> FloatHistogram {
        FloatHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            custom_values: self.custom_values.clone(),
            counter_reset_hint: self.counter_reset_hint,
            ..FloatHistogram::default()
        }
    }

    /// Adds the compensation into the sum (same layout).
    fn add_compensation(&mut self, comp: &FloatHistogram) {
        self.count += comp.count;
        self.sum += comp.sum;
        self.zero_count += comp.zero_count;
        add_buckets(&mut self.positive, &comp.positive, 1.0);
        add_buckets(&mut self.negative, &comp.negative, 1.0);
    }

    /// The Kahan-compensated sum of `hs` (at least one), as Prometheus's `sum`
    /// and `sum_over_time` compute it.
    pub(crate) fn sum_of<'a>(
        mut hs: impl Iterator<Item = &'a FloatHistogram>,
    ) -> Result<(FloatHistogram, Reconciled), HistogramError> {
        let mut sum = hs.next().cloned().unwrap_or_default();
        let mut comp = sum.zero_like();
        let mut reconciled = Reconciled(false);
        for h in hs {
            reconciled.0 |= sum.kahan_add(&mut comp, h)?.0;
        }
        sum.add_compensation(&comp);
        Ok((sum, reconciled))
    }

    /// The mean of `hs` (at least one) as Prometheus's `avg` and
    /// `avg_over_time` compute it: the Kahan sum divided by the count, and an
    /// incremental mean once that sum would overflow.
    pub(crate) fn mean_of<'a>(
        mut hs: impl Iterator<Item = &'a FloatHistogram>,
    ) -> Result<(FloatHistogram, Reconciled), HistogramError> {
        let mut sum = hs.next().cloned().unwrap_or_default();
        let mut comp = sum.zero_like();
        let mut reconciled = Reconciled(false);
        let mut count = 1.0;
        let mut mean: Option<FloatHistogram> = None;
        for h in hs {
            count += 1.0;
            if mean.is_none() {
                let (mut s2, mut c2) = (sum.clone(), comp.clone());
                reconciled.0 |= s2.kahan_add(&mut c2, h)?.0;
                if !s2.has_overflow() {
                    (sum, comp) = (s2, c2);
                    continue;
                }
                let mut m = sum.clone();
                m.div(count - 1.0);
                comp.div(count - 1.0);
                mean = Some(m);
            }
            if let Some(m) = &mut mean {
                let q = (count - 1.0) / count;
                comp.mul(q);
                m.mul(q);
                let mut to_add = h.clone();
                to_add.div(count);
                reconciled.0 |= m.kahan_add(&mut comp, &to_add)?.0;
            }
        }
        let mut out = match mean {
            Some(m) => m,
            None => {
                sum.div(count);
                comp.div(count);
                sum
            }
        };
        out.add_compensation(&comp);
        Ok((out, reconciled))
    }

    /// Prometheus's `Equals` of two compacted histograms: same schema, zero
    /// bucket, count, sum (NaN equal to NaN), custom bounds and buckets; the
    /// counter reset hint is not compared.
    pub(crate) fn equals(&self, other: &FloatHistogram) -> bool {
        let nonzero = |b: &[(i32, f64)]| -> Vec<(i32, u64)> {
            b.iter()
                .filter(|x| x.1 != 0.0)
                .map(|x| (x.0, x.1.to_bits()))
                .collect()
        };
        self.schema == other.schema
            && self.zero_threshold == other.zero_threshold
            && self.zero_count == other.zero_count
            && self.count == other.count
            && self.sum.to_bits() == other.sum.to_bits()
            && (!self.uses_custom_buckets() || self.custom_values == other.custom_values)
            && nonzero(&self.positive) == nonzero(&other.positive)
            && nonzero(&self.negative) == nonzero(&other.negative)
    }

    /// All buckets in ascending value order: negative buckets (largest
    /// magnitude first), the zero bucket if it has observations, positive ones.
    fn buckets_ascending(&self) -> Vec<BucketSpan> {
        let mut out = Vec::with_capacity(self.positive.len() + self.negative.len() + 1);
        if self.uses_custom_buckets() {
            for &(i, count) in &self.positive {
                let at = |k: i64| -> f64 {
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| self.custom_values.get(k).copied())
                        .unwrap_or(f64::INFINITY)
                };
                let lower = if i <= 0 {
                    f64::NEG_INFINITY
                } else {
                    at(i64::from(i) - 1)
                };
                out.push(BucketSpan {
                    lower,
                    upper: at(i64::from(i)),
                    count,
                });
            }
            return out;
        }
        for &(i, count) in self.negative.iter().rev() {
            out.push(BucketSpan {
                lower: -exp_bound(i, self.schema),
                upper: -exp_bound(i.saturating_sub(1), self.schema),
                count,
            });
        }
        if self.zero_count > 0.0 {
            out.push(BucketSpan {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                count: self.zero_count,
            });
        }
        for &(i, count) in &self.positive {
            out.push(BucketSpan {
                lower: exp_bound(i.saturating_sub(1), self.schema),
                upper: exp_bound(i, self.schema),
                count,
            });
        }
        out
    }

    /// The observations in buckets (the zero bucket included).
    fn bucketed_count(&self) -> f64 {
        self.zero_count
            + self
                .positive
                .iter()
                .chain(&self.negative)
                .map(|b| b.1)
                .sum::<f64>()
    }

    /// Whether some observations were NaN: the sum is NaN and the buckets hold
    /// fewer observations than the count.
    fn has_nan_observations(&self) -> bool {
        self.sum.is_nan() && self.bucketed_count() < self.count
    }

    /// Prometheus's `HistogramQuantile`: linear interpolation for custom
    /// buckets and the zero bucket, exponential interpolation otherwise; with
    /// NaN observations the estimate is NaN if the rank lies among them, else
    /// skewed higher (both reported).
    pub(crate) fn quantile(&self, q: f64) -> (f64, Option<NanObservations>) {
        let nan_obs = self.has_nan_observations();
        let v = self.quantile_value(q);
        let note = match (nan_obs, v.is_nan()) {
            (false, _) => None,
            (true, true) => Some(NanObservations::QuantileNaN),
            (true, false) => Some(NanObservations::QuantileSkewed),
        };
        (v, note)
    }

    fn quantile_value(&self, q: f64) -> f64 {
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        if self.count == 0.0 || q.is_nan() {
            return f64::NAN;
        }
        let mut buckets = self.buckets_ascending();
        // With NaN observations (sum NaN) only the forward direction is right;
        // otherwise q >= 0.5 walks from the top, which is more accurate.
        let forward = self.sum.is_nan() || q < 0.5;
        let mut rank = if forward {
            q * self.count
        } else {
            (1.0 - q) * self.count
        };
        if !forward {
            buckets.reverse();
        }
        let mut count = 0.0;
        let mut bucket = BucketSpan {
            lower: 0.0,
            upper: 0.0,
            count: 0.0,
        };
        for b in buckets {
            if b.count == 0.0 {
                continue;
            }
            bucket = b;
            count += b.count;
            if count >= rank {
                break;
            }
        }
        if !self.uses_custom_buckets() && bucket.lower < 0.0 && bucket.upper > 0.0 {
            if self.negative.is_empty() && !self.positive.is_empty() {
                bucket.lower = 0.0;
            } else if self.positive.is_empty() && !self.negative.is_empty() {
                bucket.upper = 0.0;
            }
        } else if self.uses_custom_buckets() {
            if bucket.lower == f64::NEG_INFINITY {
                if bucket.upper <= 0.0 {
                    return bucket.upper;
                }
                bucket.lower = 0.0;
            } else if bucket.upper == f64::INFINITY {
                return bucket.lower;
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            // The rank lies among the NaN observations (or rounding left it
            // just above the last bucket).
            if self.has_nan_observations() {
                return f64::NAN;
            }
            return bucket.upper;
        }
        if forward {
            rank -= count - bucket.count;
        } else {
            rank = count - rank;
        }
        let fraction = rank / bucket.count;
        if self.uses_custom_buckets() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
            return bucket.lower + (bucket.upper - bucket.lower) * fraction;
        }
        let log_lower = bucket.lower.abs().log2();
        let log_upper = bucket.upper.abs().log2();
        if bucket.lower > 0.0 {
            (log_lower + (log_upper - log_lower) * fraction).exp2()
        } else {
            -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
        }
    }

    /// Prometheus's `HistogramFraction`: the estimated fraction of observations
    /// in `[lower, upper]`. NaN observations count in the denominator only
    /// (reported). The first custom bucket starts at 0 if its upper bound is
    /// positive; otherwise it cannot be interpolated and counts whole.
    pub(crate) fn fraction(&self, lower: f64, upper: f64) -> (f64, Option<NanObservations>) {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return (f64::NAN, None);
        }
        let (total, note) = if self.has_nan_observations() {
            (
                self.bucketed_count(),
                Some(NanObservations::FractionExcluded),
            )
        } else {
            (self.count, None)
        };
        if lower >= upper {
            return (0.0, note);
        }
        let custom = self.uses_custom_buckets();
        let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        for mut b in self.buckets_ascending() {
            let mut zero_bucket = false;
            if custom && b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
                b.lower = 0.0;
            }
            if !custom && b.lower <= 0.0 && b.upper >= 0.0 {
                zero_bucket = true;
                if self.negative.is_empty() && !self.positive.is_empty() {
                    b.lower = 0.0;
                } else if self.positive.is_empty() && !self.negative.is_empty() {
                    b.upper = 0.0;
                }
            }
            let linear = |v: f64| {
                if b.lower == f64::NEG_INFINITY {
                    return rank + b.count;
                }
                rank + b.count * (v - b.lower) / (b.upper - b.lower)
            };
            let exponential = |v: f64| {
                let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
                let fraction = if v > 0.0 {
                    (lv - ll) / (lu - ll)
                } else {
                    1.0 - (lv - lu) / (ll - lu)
                };
                rank + b.count * fraction
            };
            let interpolate = |v: f64| {
                if custom || zero_bucket {
                    linear(v)
                } else {
                    exponential(v)
                }
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interpolate(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interpolate(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        if !lower_set || lower_rank > total {
            lower_rank = total;
        }
        if !upper_set || upper_rank > total {
            upper_rank = total;
        }
        ((upper_rank - lower_rank) / self.count, note)
    }
}

/// Go's `%g` of a float64 (`strconv.FormatFloat(v, 'g', -1, 64)`): the
/// shortest digits, in exponent form (`1e+06`, `1.5e-05`) when the decimal
/// exponent is below -4 or at least 6 (Go's rule for the shortest form).
fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` is the shortest round-trip digits: "-1.2345e-7".
    let e = format!("{v:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        // Positional, which Rust's `Display` gives with the same digits.
        v.to_string()
    }
}

impl FloatHistogram {
    /// Prometheus's `FloatHistogram.String()`, which `count_values` uses as
    /// the label value of a histogram: `{count:20, sum:10, [-2,-1):2,
    /// [-0.001,0.001]:2, (0.5,1]:1}` (non-empty buckets only).
    pub(crate) fn go_string(&self) -> String {
        let mut out = format!("{{count:{}, sum:{}", go_g(self.count), go_g(self.sum));
        for b in self.buckets_ascending() {
            if b.count == 0.0 {
                continue;
            }
            let is_zero = !self.uses_custom_buckets() && b.lower < 0.0 && b.upper > 0.0;
            let (open, close) = if is_zero {
                ('[', ']')
            } else if b.upper <= 0.0 && !self.uses_custom_buckets() {
                ('[', ')')
            } else {
                ('(', ']')
            };
            out.push_str(&format!(
                ", {open}{},{}{close}:{}",
                go_g(b.lower),
                go_g(b.upper),
                go_g(b.count)
            ));
        }
        out.push('}');
        out
    }
}

/// The test-script notation (`{{schema:0 count:4 sum:5 buckets:[1 2 1]}}`), for
/// messages.
impl fmt::Display for FloatHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::mathx::format_value as v;
        let list = |b: &[(i32, f64)]| -> (i32, String) {
            let start = b.first().map_or(0, |x| x.0);
            let mut parts = Vec::new();
            let mut next = start;
            for &(i, c) in b {
                while next < i {
                    parts.push("0".to_string());
                    next += 1;
                }
                parts.push(v(c));
                next = i + 1;
            }
            (start, parts.join(" "))
        };
        write!(
            f,
            "{{{{schema:{} count:{} sum:{}",
            self.schema,
            v(self.count),
            v(self.sum)
        )?;
        if self.zero_count != 0.0 || self.zero_threshold != 0.0 {
            write!(
                f,
                " z_bucket:{} z_bucket_w:{}",
                v(self.zero_count),
                v(self.zero_threshold)
            )?;
        }
        if !self.positive.is_empty() {
            let (o, s) = list(&self.positive);
            write!(f, " offset:{o} buckets:[{s}]")?;
        }
        if !self.negative.is_empty() {
            let (o, s) = list(&self.negative);
            write!(f, " n_offset:{o} n_buckets:[{s}]")?;
        }
        if self.uses_custom_buckets() {
            let s: Vec<String> = self.custom_values.iter().map(|x| v(*x)).collect();
            write!(f, " custom_values:[{}]", s.join(" "))?;
        }
        match self.counter_reset_hint {
            CounterResetHint::Unknown => {}
            CounterResetHint::Reset => write!(f, " counter_reset_hint:reset")?,
            CounterResetHint::NotReset => write!(f, " counter_reset_hint:not_reset")?,
            CounterResetHint::Gauge => write!(f, " counter_reset_hint:gauge")?,
        }
        write!(f, "}}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, pos: &[(i32, f64)]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count: pos.iter().map(|x| x.1).sum(),
            positive: pos.to_vec(),
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn go_strings() {
        assert_eq!(go_g(1e6), "1e+06");
        assert_eq!(go_g(123456.0), "123456");
        assert_eq!(go_g(0.001), "0.001");
        assert_eq!(go_g(0.00001), "1e-05");
        assert_eq!(go_g(-0.5), "-0.5");
        let h = FloatHistogram {
            count: 20.0,
            sum: 10.0,
            zero_threshold: 0.001,
            zero_count: 2.0,
            positive: vec![(0, 1.0), (1, 2.0)],
            negative: vec![(0, 1.0), (1, 2.0)],
            ..FloatHistogram::default()
        };
        assert_eq!(
            h.go_string(),
            "{count:20, sum:10, [-2,-1):2, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}"
        );
    }

    #[test]
    fn bounds() {
        assert_eq!(exp_bound(0, 0), 1.0);
        assert_eq!(exp_bound(1, 0), 2.0);
        assert_eq!(exp_bound(-1, 0), 0.5);
        assert_eq!(exp_bound(1, -1), 4.0);
        assert!((exp_bound(1, 1) - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert!((exp_bound(-1, 1) - std::f64::consts::SQRT_2 / 2.0).abs() < 1e-15);
    }

    #[test]
    fn add_reduces_resolution() {
        // Schema 1 buckets 1 and 2 (sqrt2, 2] → schema 0 bucket 1 (1, 2].
        let mut a = h(0, &[(1, 1.0)]);
        let b = h(1, &[(1, 2.0), (2, 3.0)]);
        assert!(a.add(&b).is_ok());
        assert_eq!(a.schema, 0);
        assert_eq!(a.positive, vec![(1, 6.0)]);
        assert_eq!(a.count, 6.0);
    }

    #[test]
    fn custom_and_exponential_do_not_mix() {
        let mut a = h(0, &[(1, 1.0)]);
        let mut c = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0)]);
        c.custom_values = vec![1.0];
        assert_eq!(a.add(&c), Err(HistogramError::IncompatibleSchema));
    }

    #[test]
    fn custom_bounds_are_reconciled() {
        // Bounds [2 10] and [10]: (-Inf,2] merges into (-Inf,10].
        let mut a = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0), (1, 2.0)]);
        a.custom_values = vec![2.0, 10.0];
        let mut b = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0)]);
        b.custom_values = vec![10.0];
        assert_eq!(a.add(&b), Ok(Reconciled(true)));
        assert_eq!(a.custom_values, vec![10.0]);
        assert_eq!(a.positive, vec![(0, 4.0)]);
    }

    #[test]
    fn kahan_sum_and_mean() {
        let mk = |sum: f64| FloatHistogram {
            sum,
            count: 1.0,
            ..FloatHistogram::default()
        };
        let hs = [mk(3.1), mk(1e100), mk(-1e100), mk(1.3)];
        let (s, _) = FloatHistogram::sum_of(hs.iter()).unwrap_or_default();
        assert!((s.sum - 4.4).abs() < 1e-12, "{}", s.sum);
        let big = [mk(f64::MAX), mk(f64::MAX)];
        let (m, _) = FloatHistogram::mean_of(big.iter()).unwrap_or_default();
        assert_eq!(m.sum, f64::MAX);
    }

    #[test]
    fn quantile_of_custom_buckets() {
        // Bounds 1, 2, +Inf with 1, 2, 1 observations.
        let mut c = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0), (1, 2.0), (2, 1.0)]);
        c.custom_values = vec![1.0, 2.0];
        c.sum = 5.0;
        assert_eq!(c.quantile(0.5), (1.5, None));
        assert_eq!(c.quantile(0.99), (2.0, None));
        assert_eq!(c.fraction(f64::NEG_INFINITY, 1.0), (0.25, None));
    }

    #[test]
    fn equality_ignores_empty_buckets_and_hint() {
        let a = h(0, &[(1, 1.0), (2, 0.0)]);
        let mut b = h(0, &[(1, 1.0)]);
        b.counter_reset_hint = CounterResetHint::Gauge;
        assert!(a.equals(&b));
        assert!(!a.equals(&h(0, &[(1, 2.0)])));
    }
}
