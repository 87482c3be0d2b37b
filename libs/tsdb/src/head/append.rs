//! How a call's samples are taken into a series: in order, out of order, or
//! refused ([`decide_appends`]). The same loop runs over the series' chunks
//! (an append) and over a dry run of them ([`DryRun`]), so that an ingester
//! can learn what a push will append, log exactly that to its WAL, and only
//! then let the head show it: the plan and the append cannot disagree.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use strata_model::{Labels, Sample};

use super::series::{AppendError, ChunkList, HeadSeries, Outcome, Rejection, SeriesRef};

/// The bounds one call appends by, read from the head once.
pub(super) struct AppendRules {
    /// The end of the blocks already cut: late samples behind it are kept
    /// apart ([`super::ooo::OutOfOrder`]).
    pub(super) blocks_bound: i64,
    /// In-order samples must be at or after this.
    pub(super) min_valid: i64,
    /// The head's newest sample when the call began.
    pub(super) head_max: i64,
    /// The out-of-order window; `i64::MAX` for a replay (any age).
    pub(super) window_ms: i64,
    /// Whether late samples may go behind `blocks_bound`.
    pub(super) may_go_behind: bool,
}

/// What the loop reads and changes of a series.
pub(super) trait AppendTarget {
    /// The newest in-order sample: timestamp and value bits.
    fn last(&self) -> Option<(i64, u64)>;
    /// The value bits of an out-of-order sample at `t`.
    fn ooo_value_at(&self, t: i64) -> Option<u64>;
    /// The value bits of any sample at `t`.
    fn value_at(&self, t: i64) -> Option<u64>;
    /// Appends a sample newer than [`AppendTarget::last`]; false if the
    /// encoder refused it.
    fn push(&mut self, t: i64, v: f64) -> bool;
    fn insert_out_of_order(&mut self, t: i64, v: f64, behind: bool);
}

impl AppendTarget for ChunkList {
    fn last(&self) -> Option<(i64, u64)> {
        self.open
            .last()
            .map(|s| (s.timestamp_ms, s.value.to_bits()))
    }

    fn ooo_value_at(&self, t: i64) -> Option<u64> {
        ChunkList::ooo_value_at(self, t)
    }

    fn value_at(&self, t: i64) -> Option<u64> {
        ChunkList::value_at(self, t)
    }

    fn push(&mut self, t: i64, v: f64) -> bool {
        ChunkList::push(self, t, v)
    }

    fn insert_out_of_order(&mut self, t: i64, v: f64, behind: bool) {
        ChunkList::insert_out_of_order(self, t, v, behind);
    }
}

/// The appends one push plans, by series ref, before any is made.
#[derive(Debug)]
pub struct AppendPlan {
    /// The newest sample planned so far (the window of later series counts
    /// from it, as it will once the earlier ones are appended).
    pub(super) max_t: i64,
    pub(super) series: HashMap<u64, PlannedSeries, BuildHasherDefault<RefHasher>>,
    /// Every planned sample, in plan order: series ref, timestamp, value
    /// bits. Read only to find a duplicate of a late sample among the
    /// planned ones of its series.
    pub(super) samples: Vec<(u64, i64, u64)>,
}

impl AppendPlan {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A plan for a push of about `series` series entries.
    pub fn with_capacity(series: usize) -> Self {
        Self {
            max_t: i64::MIN,
            series: HashMap::with_capacity_and_hasher(series, BuildHasherDefault::default()),
            samples: Vec::with_capacity(series),
        }
    }
}

impl Default for AppendPlan {
    fn default() -> Self {
        Self::new()
    }
}

/// Hashes series refs (consecutive integers) by one multiplication, which
/// spreads them over the table's control bits.
#[derive(Debug, Default)]
pub(super) struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A series a push plans to append to.
#[derive(Debug, Clone, Copy)]
pub enum PlanSeries<'a> {
    /// One the head holds.
    Held(&'a HeadSeries),
    /// One the push will create, by the ref reserved for it.
    New(SeriesRef),
}

/// What a plan adds to one series.
#[derive(Debug, Default)]
pub(super) struct PlannedSeries {
    /// The newest planned in-order sample, once there is one.
    last: Option<(i64, u64)>,
    /// How many samples are planned (in the plan's list of them), and how
    /// many of those are late ones.
    planned: u32,
    planned_late: u32,
    /// Where the series' first planned sample is in the plan's list: a
    /// lookup scans no further back.
    first: usize,
}

/// A series' chunks (none for a series not created yet) with a plan's
/// samples over them.
pub(super) struct DryRun<'a> {
    pub(super) chunks: Option<&'a ChunkList>,
    pub(super) series_ref: u64,
    pub(super) planned: &'a mut PlannedSeries,
    pub(super) samples: &'a mut Vec<(u64, i64, u64)>,
}

impl DryRun<'_> {
    /// A planned sample of the series at `t`. Only late samples ask (and
    /// an in-order one only when the series has late ones planned), so the
    /// scan, back to the series' first planned sample, stays off the
    /// common path.
    fn planned_value_at(&self, t: i64) -> Option<u64> {
        if self.planned.planned == 0 {
            return None;
        }
        self.samples
            .get(self.planned.first..)?
            .iter()
            .rev()
            .find(|&&(r, ts, _)| r == self.series_ref && ts == t)
            .map(|&(_, _, bits)| bits)
    }

    fn plan(&mut self, t: i64, bits: u64) {
        if self.planned.planned == 0 {
            self.planned.first = self.samples.len();
        }
        self.samples.push((self.series_ref, t, bits));
        self.planned.planned += 1;
    }
}

impl AppendTarget for DryRun<'_> {
    fn last(&self) -> Option<(i64, u64)> {
        // A planned in-order sample is newer than every one the chunks hold.
        self.planned
            .last
            .or_else(|| self.chunks.and_then(AppendTarget::last))
    }

    fn ooo_value_at(&self, t: i64) -> Option<u64> {
        // Asked for a timestamp newer than every in-order sample: only a
        // planned late one can hold it.
        self.chunks.and_then(|c| c.ooo_value_at(t)).or_else(|| {
            (self.planned.planned_late > 0)
                .then(|| self.planned_value_at(t))
                .flatten()
        })
    }

    fn value_at(&self, t: i64) -> Option<u64> {
        self.chunks
            .and_then(|c| c.value_at(t))
            .or_else(|| self.planned_value_at(t))
    }

    fn push(&mut self, t: i64, v: f64) -> bool {
        let bits = v.to_bits();
        self.planned.last = Some((t, bits));
        self.plan(t, bits);
        true
    }

    fn insert_out_of_order(&mut self, t: i64, v: f64, _behind: bool) {
        self.planned.planned_late += 1;
        self.plan(t, v.to_bits());
    }
}

/// What [`decide_appends`] did.
pub(super) struct Decided {
    pub(super) appended: usize,
    pub(super) out_of_order: usize,
    pub(super) min_t: i64,
    pub(super) max_t: i64,
    /// The sample that stopped the call: its index, timestamp, the bound it
    /// crossed, and why.
    rejected: Option<(usize, i64, i64, Rejection)>,
}

impl Decided {
    /// The call's outcome, or the error naming the series `labels` gives.
    pub(super) fn into_result(
        self,
        window_ms: i64,
        labels: impl FnOnce() -> Labels,
    ) -> Result<Outcome, AppendError> {
        let appended = self.appended;
        let Some((index, timestamp_ms, bound_ms, kind)) = self.rejected else {
            return Ok(Outcome {
                appended,
                out_of_order: self.out_of_order,
            });
        };
        let series = labels();
        Err(match kind {
            Rejection::Duplicate => AppendError::DuplicateTimestamp {
                series,
                timestamp_ms,
                latest_ms: bound_ms,
                appended,
                index,
            },
            Rejection::OutOfOrder => AppendError::OutOfOrder {
                series,
                timestamp_ms,
                latest_ms: bound_ms,
                appended,
                index,
            },
            Rejection::OutOfBounds => AppendError::OutOfBounds {
                series,
                timestamp_ms,
                min_valid_ms: bound_ms,
                appended,
                index,
            },
            Rejection::TooOld => AppendError::TooOld {
                series,
                timestamp_ms,
                oldest_ms: bound_ms,
                window_ms,
                appended,
                index,
            },
        })
    }
}

/// Takes `samples` into `target` by `rules`, up to the first one refused.
/// Timestamps must increase strictly for in-order samples: one equal in
/// timestamp and value bits to a sample the series holds is skipped
/// silently; one with an equal timestamp and another value, or one older
/// than the window allows, stops the call.
pub(super) fn decide_appends(
    target: &mut impl AppendTarget,
    samples: &[Sample],
    rules: &AppendRules,
) -> Decided {
    let mut d = Decided {
        appended: 0,
        out_of_order: 0,
        min_t: i64::MAX,
        max_t: i64::MIN,
        rejected: None,
    };
    let window_ms = rules.window_ms;
    // Out-of-order samples are measured against the head's newest sample,
    // as Prometheus does (not the series'). Those behind the blocks already
    // cut are kept apart, for blocks of their own (see docs/decisions.md,
    // "Out-of-order window"). An empty head takes none, but for a replay (a
    // window of i64::MAX): what was logged was taken.
    let ooo_oldest = |max_t: i64| {
        let in_window = match rules.head_max.max(max_t) {
            _ if window_ms == i64::MAX => i64::MIN,
            i64::MIN => i64::MAX,
            newest => newest.saturating_sub(window_ms),
        };
        if rules.may_go_behind {
            in_window
        } else {
            in_window.max(rules.blocks_bound)
        }
    };
    for (index, s) in samples.iter().enumerate() {
        let t = s.timestamp_ms;
        let bits = s.value.to_bits();
        let last = target.last();
        if t >= rules.min_valid {
            match last {
                Some((last_t, last_bits)) if t == last_t => {
                    if bits == last_bits {
                        continue;
                    }
                    d.rejected = Some((index, t, t, Rejection::Duplicate));
                    break;
                }
                Some((last_t, _)) if t < last_t => {}
                _ => {
                    // Newer than every in-order sample, but an out-of-order
                    // one may hold the timestamp.
                    match target.ooo_value_at(t) {
                        Some(held) if held == bits => continue,
                        Some(_) => {
                            d.rejected = Some((index, t, t, Rejection::Duplicate));
                            break;
                        }
                        None => {}
                    }
                    if target.push(t, s.value) {
                        d.appended += 1;
                        d.min_t = d.min_t.min(t);
                        d.max_t = d.max_t.max(t);
                    }
                    continue;
                }
            }
        }
        if window_ms > 0 {
            // This call's samples count as the head's already.
            let oldest = ooo_oldest(d.max_t);
            if t < oldest {
                d.rejected = Some((index, t, oldest, Rejection::TooOld));
                break;
            }
            match target.value_at(t) {
                Some(held) if held == bits => continue,
                Some(_) => {
                    d.rejected = Some((index, t, t, Rejection::Duplicate));
                    break;
                }
                None => {}
            }
            target.insert_out_of_order(t, s.value, t < rules.blocks_bound);
            d.appended += 1;
            d.out_of_order += 1;
            d.min_t = d.min_t.min(t);
            d.max_t = d.max_t.max(t);
            continue;
        }
        d.rejected = Some(match last {
            _ if t < rules.min_valid => (index, t, rules.min_valid, Rejection::OutOfBounds),
            Some((last_t, _)) => (index, t, last_t, Rejection::OutOfOrder),
            // Unreachable: without a latest sample, a sample at or after the
            // bound is in order.
            None => (index, t, rules.min_valid, Rejection::OutOfBounds),
        });
        break;
    }
    d
}
