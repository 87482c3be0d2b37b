//! One tenant's in-memory series: interned labels, XOR chunks, a postings index.
//!
//! Locking, in the only order locks are ever taken: a series stripe (by label
//! hash), then the symbol table (which, holding it, may take a shard of the
//! process's [`SharedStrings`]), then the index; a series' own chunk mutex is taken
//! with none of them held. Appending to an existing series takes a stripe and the
//! symbol table for reading and the series' mutex; only creating a series takes
//! write locks. Queries compute postings under the index read lock, then visit each
//! series' mutex briefly to copy its chunks.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;
use strata_model::{Label, Labels, Matcher, Sample};

use crate::exemplars::{Exemplar, ExemplarStore};
use crate::postings::{self, PostingsIndex};
use crate::strings::SharedStrings;

mod append;
mod ooo;
mod series;
use append::{decide_appends, AppendRules, DryRun};
pub use append::{AppendPlan, PlanSeries};
use ooo::Part;
pub use series::{AppendError, ChunkData, HeadSeries, Outcome, SeriesRef};
use series::{ChunkList, MemSeries};

/// Number of lock stripes of the labels → series map. Few: a lock is held
/// only to find or insert a series, so more stripes than cores gain nothing,
/// while every stripe's table costs memory in every tenant's head (with
/// 10,000 small tenants, 128 stripes were about 10 KB of each tenant's
/// 60 KB; see docs/benchmarks.md, "Many tenants").
const STRIPES: usize = 16;

/// The IDs of the series with one label value, sorted. Most values of a
/// small head belong to a few series: up to four IDs live inline, without an
/// allocation of their own.
type PostingList = SmallVec<[SeriesId; 4]>;

/// Above this many values, a label name's values are kept in a hash table.
const FEW_VALUES: usize = 8;

/// One label name's values with their postings, in no particular order (the
/// few callers that need the values in order sort them). Most label names of
/// a small tenant's head have one value or a handful: those are a short list
/// searched in place (about 40 bytes a value), not a hash table (a couple of
/// hundred bytes at its smallest) or a B-tree (about 450 bytes for its first
/// node).
enum LabelValues {
    Few(Vec<(Arc<str>, PostingList)>),
    Many(HashMap<Arc<str>, PostingList>),
}

impl Default for LabelValues {
    fn default() -> Self {
        LabelValues::Few(Vec::new())
    }
}

impl LabelValues {
    fn get(&self, value: &str) -> Option<&PostingList> {
        match self {
            LabelValues::Few(list) => list.iter().find(|(v, _)| &**v == value).map(|(_, p)| p),
            LabelValues::Many(table) => table.get(value),
        }
    }

    /// Adds `id` to the postings of `value` (IDs come in increasing order).
    fn add(&mut self, value: Arc<str>, id: SeriesId) {
        match self {
            LabelValues::Few(list) => {
                if let Some((_, postings)) = list.iter_mut().find(|(v, _)| *v == value) {
                    postings.push(id);
                    return;
                }
                if list.len() < FEW_VALUES {
                    // Grown one by one: `Vec`'s first allocation has room for four.
                    list.reserve_exact(1);
                    list.push((value, smallvec::smallvec![id]));
                    return;
                }
                let mut table: HashMap<Arc<str>, PostingList> = list.drain(..).collect();
                table.entry(value).or_default().push(id);
                *self = LabelValues::Many(table);
            }
            LabelValues::Many(table) => table.entry(value).or_default().push(id),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &PostingList)> {
        let (few, many) = match self {
            LabelValues::Few(list) => (Some(list.iter().map(|(v, p)| (v, p))), None),
            LabelValues::Many(table) => (None, Some(table.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.iter().map(|(v, _)| v)
    }
}

/// A series' position in its head's index; assigned in increasing order, so
/// appending IDs keeps postings lists sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(pub u32);

/// A series with the chunks that overlap a query's time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesChunks {
    pub labels: Labels,
    pub chunks: Vec<ChunkData>,
}

/// One tenant's in-memory series. Cheap to share (`Arc<Head>`); every method
/// takes `&self`.
pub struct Head {
    stripes: Box<[RwLock<Stripe>]>,
    symbols: RwLock<SymbolTable>,
    index: RwLock<Index>,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// The [`SeriesRef`] the next new series gets.
    next_ref: AtomicU64,
    /// How far behind the head's newest sample a sample older than its
    /// series' newest is still taken, in ms (0: not at all).
    ooo_window_ms: AtomicI64,
    /// Samples ever stored out of order (also by a replay), for the owner's
    /// counter: an append refused part-way reports no outcome of its own.
    ooo_appended: AtomicU64,
    /// Samples older than this are rejected ([`AppendError::OutOfBounds`]):
    /// the head's data before it was cut into a block.
    min_valid_time: AtomicI64,
    /// Where the symbol table takes its strings from: shared with the other
    /// tenants' heads of the process.
    strings: Arc<SharedStrings>,
    /// The exemplars of the head's series, by series ref. Unbounded until its
    /// owner sets the capacity (a WAL replay fills it first).
    exemplars: Mutex<ExemplarStore>,
}

impl fmt::Debug for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Head")
            .field("num_series", &self.num_series())
            .field("min_time", &self.min_time.load(Ordering::Relaxed))
            .field("max_time", &self.max_time.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Head {
    fn default() -> Self {
        Self::new()
    }
}

impl Head {
    /// A head with strings of its own (tests, tools).
    pub fn new() -> Self {
        Self::with_strings(Arc::default())
    }

    /// A head whose label strings are shared through `strings` with the
    /// other heads holding it.
    pub fn with_strings(strings: Arc<SharedStrings>) -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| RwLock::default()).collect(),
            symbols: RwLock::default(),
            index: RwLock::default(),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            next_ref: AtomicU64::new(1),
            ooo_window_ms: AtomicI64::new(0),
            ooo_appended: AtomicU64::new(0),
            min_valid_time: AtomicI64::new(i64::MIN),
            strings,
            exemplars: Mutex::new(ExemplarStore::new(usize::MAX)),
        }
    }

    /// The head's exemplar store (its capacity, appends, queries by ref).
    pub fn exemplars(&self) -> parking_lot::MutexGuard<'_, ExemplarStore> {
        self.exemplars.lock()
    }

    /// The exemplars within `[mint, maxt]` of the series matching
    /// `matchers`, by series, sorted by labels; series without any are left out.
    pub fn select_exemplars(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        if mint > maxt {
            return Vec::new();
        }
        let series = self.matching_series(matchers);
        let found: Vec<(Arc<MemSeries>, Vec<Exemplar>)> = {
            let store = self.exemplars.lock();
            series
                .into_iter()
                .filter_map(|s| {
                    let list = store.query(s.series_ref, mint, maxt);
                    (!list.is_empty()).then_some((s, list))
                })
                .collect()
        };
        let symbols = self.symbols.read();
        let mut out: Vec<(Labels, Vec<Exemplar>)> = found
            .into_iter()
            .map(|(s, list)| (symbols.labels(&s.labels), list))
            .collect();
        drop(symbols);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Appends samples to the series `labels`, creating it if new (and if there is
    /// at least one sample). Timestamps must increase strictly: a sample equal in
    /// timestamp and value bits to the series' latest is skipped silently; one with
    /// an equal timestamp and another value, or an older timestamp, is rejected.
    pub fn append(&self, labels: &Labels, samples: &[Sample]) -> Result<Outcome, AppendError> {
        if samples.is_empty() {
            return Ok(Outcome::default());
        }
        let (series, _) = self.get_or_create(labels, None);
        let window = self.out_of_order_window();
        self.append_series(&series, samples, i64::MIN, window, true, || labels.clone())
    }

    /// Sets the out-of-order window: from now on, a sample older than its
    /// series' newest is stored (in the series' out-of-order chunks) if it is
    /// at most `window_ms` older than the head's newest sample, also behind
    /// the bound of [`Head::set_min_valid_time`] (kept apart then, for
    /// blocks of their own: [`Head::begin_late_cut`]); older ones are
    /// rejected as [`AppendError::TooOld`]. 0 (the default) or less: such
    /// samples are rejected as out of order, as without the window.
    pub fn set_out_of_order_window(&self, window_ms: i64) {
        self.ooo_window_ms
            .store(window_ms.max(0), Ordering::Relaxed);
    }

    /// Samples this head has stored out of order so far.
    pub fn out_of_order_appended(&self) -> u64 {
        self.ooo_appended.load(Ordering::Relaxed)
    }

    /// The window [`Head::set_out_of_order_window`] set.
    pub fn out_of_order_window(&self) -> i64 {
        self.ooo_window_ms.load(Ordering::Relaxed)
    }

    /// WAL replay: appends samples that this head (or an earlier one) took
    /// and logged, in log order. Every logged sample was accepted, so one
    /// older than its series' newest is taken back out of order whatever the
    /// window is now (a window lowered since must not lose acknowledged
    /// samples); the bound of [`Head::set_min_valid_time`] still applies, so
    /// samples already in blocks stay out.
    pub fn append_replayed(
        &self,
        series: &HeadSeries,
        samples: &[Sample],
    ) -> Result<Outcome, AppendError> {
        self.append_series(&series.0, samples, i64::MIN, i64::MAX, false, || {
            self.symbols.read().labels(&series.0.labels)
        })
    }

    /// WAL replay of late samples that went behind the block bound when
    /// they came (logged apart for that): taken back behind it, since no
    /// block holds them unless a late cut wrote them before the crash (then
    /// they are cut again, and the compactor merges the copies).
    pub fn append_replayed_late(
        &self,
        series: &HeadSeries,
        samples: &[Sample],
    ) -> Result<Outcome, AppendError> {
        self.append_series(&series.0, samples, i64::MIN, i64::MAX, true, || {
            self.symbols.read().labels(&series.0.labels)
        })
    }

    /// The oldest timestamp a push may append at `now_ms` to a head cut into
    /// blocks of `block_range_ms`: a window behind the newest sample (half a
    /// block range, Prometheus's rule, but at least an hour, so that small
    /// block ranges do not make the head stricter than Prometheus's), where
    /// the newest sample counts as no older than two windows before `now_ms`
    /// (so an empty or long-idle head takes up to three hours of backlog, and
    /// `0` or `i64::MIN` never); never below the bound set by
    /// [`Head::set_min_valid_time`].
    pub fn appendable_min_time(&self, now_ms: i64, block_range_ms: i64) -> i64 {
        const HOUR_MS: i64 = 3_600_000;
        let window = (block_range_ms / 2).max(HOUR_MS);
        let newest = self
            .max_time
            .load(Ordering::Acquire)
            .max(now_ms.saturating_sub(window.saturating_mul(2)));
        newest.saturating_sub(window).max(self.min_valid_time())
    }

    /// The series `labels`, created without samples if new; true if this call
    /// created it (an ingester then logs the series to its WAL).
    pub fn get_or_create_series(&self, labels: &Labels) -> (HeadSeries, bool) {
        let (series, created) = self.get_or_create(labels, None);
        (HeadSeries(series), created)
    }

    /// WAL replay: the series `labels` with the reference `series_ref` it had
    /// when it was logged, created without samples if new. Later new series get
    /// larger refs. If the head already holds `labels`, that series is returned
    /// with its own ref.
    pub fn restore_series(&self, series_ref: SeriesRef, labels: &Labels) -> HeadSeries {
        HeadSeries(self.get_or_create(labels, Some(series_ref.0)).0)
    }

    /// [`Head::append`] to a series this head returned.
    pub fn append_to(
        &self,
        series: &HeadSeries,
        samples: &[Sample],
    ) -> Result<Outcome, AppendError> {
        self.append_to_from(series, samples, i64::MIN)
    }

    /// [`Head::append_to`], rejecting samples older than `oldest_ms` as out of
    /// bounds too (a push passes [`Head::appendable_min_time`]).
    pub fn append_to_from(
        &self,
        series: &HeadSeries,
        samples: &[Sample],
        oldest_ms: i64,
    ) -> Result<Outcome, AppendError> {
        let window = self.out_of_order_window();
        self.append_series(&series.0, samples, oldest_ms, window, true, || {
            self.symbols.read().labels(&series.0.labels)
        })
    }

    /// Appends in order what is at or after both `oldest_ms` and the block
    /// bound; the rest goes out of order if the window takes it: behind the
    /// block bound only when `may_go_behind` (a push, the replay of late
    /// samples; not the replay of samples logged ahead of a bound that a
    /// block cut since).
    fn append_series(
        &self,
        series: &MemSeries,
        samples: &[Sample],
        oldest_ms: i64,
        window_ms: i64,
        may_go_behind: bool,
        labels: impl FnOnce() -> Labels,
    ) -> Result<Outcome, AppendError> {
        let rules = self.append_rules(oldest_ms, window_ms, may_go_behind, i64::MIN);
        let decided = {
            let mut chunks = series.chunks.lock();
            decide_appends(&mut *chunks, samples, &rules)
        };
        if decided.appended > 0 {
            self.note_time_range(decided.min_t, decided.max_t);
        }
        if decided.out_of_order > 0 {
            self.ooo_appended
                .fetch_add(decided.out_of_order as u64, Ordering::Relaxed);
        }
        decided.into_result(window_ms, labels)
    }

    /// What [`Head::append_to_from`] would do with `samples` for the series
    /// `series_ref` (one the head holds, or a ref reserved for a new one),
    /// after the appends `plan` already holds, changing nothing but `plan`:
    /// an ingester logs what a push will append before the head shows any
    /// of it. Committing the planned appends in the same order, with no
    /// other change to the head in between (the ingester holds its append
    /// lock), gives the same outcomes.
    pub fn plan_append(
        &self,
        plan: &mut AppendPlan,
        series: PlanSeries<'_>,
        samples: &[Sample],
        oldest_ms: i64,
        labels: impl FnOnce() -> Labels,
    ) -> Result<Outcome, AppendError> {
        let window = self.out_of_order_window();
        let rules = self.append_rules(oldest_ms, window, true, plan.max_t);
        let (series_ref, chunks) = match series {
            PlanSeries::Held(s) => (s.0.series_ref, Some(s.0.chunks.lock())),
            PlanSeries::New(r) => (r.0, None),
        };
        let mut target = DryRun {
            chunks: chunks.as_deref(),
            series_ref,
            planned: plan.series.entry(series_ref).or_default(),
            samples: &mut plan.samples,
        };
        let decided = decide_appends(&mut target, samples, &rules);
        drop(chunks);
        if decided.appended > 0 {
            plan.max_t = plan.max_t.max(decided.max_t);
        }
        decided.into_result(window, labels)
    }

    /// A ref for a series a push will create once its WAL record is written
    /// ([`Head::create_series`]); a ref reserved and never used is a gap.
    pub fn reserve_series_ref(&self) -> SeriesRef {
        SeriesRef(self.next_ref.fetch_add(1, Ordering::AcqRel))
    }

    /// Creates the series `labels` with the ref [`Head::reserve_series_ref`]
    /// gave (or returns the one the head holds).
    pub fn create_series(&self, series_ref: SeriesRef, labels: &Labels) -> HeadSeries {
        HeadSeries(self.get_or_create(labels, Some(series_ref.0)).0)
    }

    /// The rules a call appends by: the head's bounds now, its newest sample
    /// counting as at least `pending_max` (a plan's earlier appends).
    fn append_rules(
        &self,
        oldest_ms: i64,
        window_ms: i64,
        may_go_behind: bool,
        pending_max: i64,
    ) -> AppendRules {
        let blocks_bound = self.min_valid_time.load(Ordering::Acquire);
        AppendRules {
            blocks_bound,
            min_valid: blocks_bound.max(oldest_ms),
            head_max: self.max_time.load(Ordering::Acquire).max(pending_max),
            window_ms,
            may_go_behind,
        }
    }

    pub fn num_series(&self) -> usize {
        self.index.read().series.len()
    }

    /// From now on, samples older than `ts` are rejected as out of bounds
    /// (never lowers the bound). An ingester sets it to the end of a block it is
    /// about to cut, so nothing lands in the head behind the block.
    pub fn set_min_valid_time(&self, ts: i64) {
        self.min_valid_time.fetch_max(ts, Ordering::AcqRel);
    }

    /// The bound [`Head::set_min_valid_time`] set (`i64::MIN` if none).
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::Acquire)
    }

    /// The ref the next new series will get: every series created later has
    /// a ref at least this (a WAL checkpoint keeps those too).
    pub fn next_series_ref(&self) -> SeriesRef {
        SeriesRef(self.next_ref.load(Ordering::Acquire))
    }

    /// Makes every series created from now on get a ref at least `next`: a
    /// tenant's head reopened after it was closed must not hand out refs its
    /// previous head logged, which the WAL may still hold.
    pub fn reserve_refs_below(&self, next: SeriesRef) {
        self.next_ref.fetch_max(next.0, Ordering::AcqRel);
    }

    /// The WAL refs of the head's series, sorted (a WAL checkpoint keeps the
    /// series among them).
    pub fn series_refs(&self) -> Vec<SeriesRef> {
        let mut refs: Vec<SeriesRef> = self
            .index
            .read()
            .series
            .iter()
            .map(|s| SeriesRef(s.series_ref))
            .collect();
        refs.sort_unstable();
        refs
    }

    /// A late cut begins: in every series, the late samples behind the block
    /// bound are set aside for [`BlockPart::Late`] blocks (queries still read
    /// them); later ones wait for the next cut. Returns the time range of
    /// what is set aside, `None` if nothing is. Must not run concurrently with
    /// appends (the caller serialises them, as for truncation).
    pub fn begin_late_cut(&self) -> Option<(i64, i64)> {
        let all: Vec<Arc<MemSeries>> = self.index.read().series.clone();
        let mut range: Option<(i64, i64)> = None;
        for s in &all {
            let mut chunks = s.chunks.lock();
            let Some(ooo) = chunks.ooo.as_mut() else {
                continue;
            };
            if let Some((min, max)) = ooo.begin_late_cut() {
                range = Some(range.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
            }
        }
        range
    }

    /// The late cut's blocks before `ts` are in place: the samples it set
    /// aside before `ts` leave the head.
    pub fn finish_late_cut(&self, ts: i64) {
        let all: Vec<Arc<MemSeries>> = self.index.read().series.clone();
        for s in &all {
            let mut chunks = s.chunks.lock();
            if let Some(ooo) = chunks.ooo.as_mut() {
                ooo.drop_cut_before(ts);
                chunks.drop_ooo_if_empty();
            }
        }
    }

    /// The oldest late sample behind the block bound that no block holds
    /// yet (being cut or not): a WAL checkpoint keeps the late samples from
    /// there on.
    pub fn oldest_late_sample(&self) -> Option<i64> {
        let all: Vec<Arc<MemSeries>> = self.index.read().series.clone();
        all.iter()
            .filter_map(|s| {
                let chunks = s.chunks.lock();
                chunks
                    .ooo
                    .as_ref()
                    .and_then(|o| o.late_range())
                    .map(|r| r.0)
            })
            .min()
    }

    /// The timestamp of the earliest sample at or after `t` in any series
    /// (`None` if there is none) that the next in-order block could hold:
    /// where the next block cut starts, so that a lone old sample does not
    /// make the cut walk every empty range after it.
    pub fn earliest_sample_from(&self, t: i64) -> Option<i64> {
        let all: Vec<Arc<MemSeries>> = self.index.read().series.clone();
        all.iter()
            .filter_map(|s| s.chunks.lock().earliest_from(t))
            .min()
    }

    /// Drops every chunk whose samples are all older than `ts` (a chunk
    /// reaching `ts` or later is kept whole) and the series left without
    /// chunks (late samples behind the block bound stay: no block holds them
    /// yet), then moves the head's oldest time. Symbols are kept.
    ///
    /// Must not run concurrently with appends or series creation (the caller
    /// serialises them, as an ingester does with its append lock): a series
    /// found empty here could otherwise take a sample just before it is
    /// dropped. Queries may run meanwhile.
    pub fn truncate_before(&self, ts: i64) -> TruncateStats {
        let mut stats = TruncateStats::default();
        let all: Vec<Arc<MemSeries>> = self.index.read().series.clone();
        let mut dead: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut min_time = i64::MAX;
        for s in &all {
            let mut chunks = s.chunks.lock();
            stats.chunks_dropped += chunks.drop_before(ts);
            match chunks.range() {
                Some((min, _)) => min_time = min_time.min(min),
                None => {
                    dead.insert(s.series_ref);
                }
            }
        }
        if !dead.is_empty() {
            for stripe in self.stripes.iter() {
                let mut stripe = stripe.write();
                stripe.by_hash.retain(|_, list| {
                    list.retain(|s| !dead.contains(&s.series_ref));
                    !list.is_empty()
                });
            }
            let symbols = self.symbols.read();
            let mut index = self.index.write();
            let survivors: Vec<Arc<MemSeries>> = index
                .series
                .iter()
                .filter(|s| !dead.contains(&s.series_ref))
                .cloned()
                .collect();
            let mut postings: BTreeMap<Arc<str>, LabelValues> = BTreeMap::new();
            for (i, s) in survivors.iter().enumerate() {
                for pair in s.labels.chunks_exact(2) {
                    let name = symbols.get_arc(pair[0]);
                    let value = symbols.get_arc(pair[1]);
                    postings
                        .entry(name)
                        .or_default()
                        .add(value, SeriesId(i as u32));
                }
            }
            stats.series_dropped = index.series.len() - survivors.len();
            index.series = survivors;
            index.postings = postings;
        }
        // Only the oldest moves. The newest sample is in a chunk truncation
        // keeps unless it drops everything, and then it stays the head's
        // newest all the same (as in Prometheus): the out-of-order window is
        // measured from it, so a flush does not close the window.
        self.min_time.store(min_time, Ordering::Release);
        stats
    }

    /// Whether the head holds the series `labels` (the ingester checks its
    /// series limits before a push creates one).
    pub fn contains(&self, labels: &Labels) -> bool {
        let hash = labels_hash(labels);
        let stripe = &self.stripes[((hash >> 32) as usize) % STRIPES];
        let found = stripe.read().find(hash, labels, &self.symbols).is_some();
        found
    }

    /// The series `labels` if the head holds it (exemplars attach only to
    /// series that exist).
    pub fn get_series(&self, labels: &Labels) -> Option<HeadSeries> {
        let hash = labels_hash(labels);
        let stripe = &self.stripes[((hash >> 32) as usize) % STRIPES];
        let found = stripe.read().find(hash, labels, &self.symbols);
        found.map(HeadSeries)
    }

    /// Series whose label `name` has the value `value` (with `__name__`: the
    /// series of one metric, for the per-metric series limit).
    pub fn num_series_with(&self, name: &str, value: &str) -> usize {
        self.index
            .read()
            .postings
            .get(name)
            .and_then(|values| values.get(value))
            .map_or(0, |list| list.len())
    }

    /// IDs of the series matching all `matchers` (all series for none), sorted,
    /// with Prometheus's semantics: a series without a label has it as `""`.
    pub fn postings_for_matchers(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        self.index.read().postings_for_matchers(matchers)
    }

    /// Series matching `matchers` with their chunks overlapping `[mint, maxt]`;
    /// series without such a chunk are left out. Sorted by labels.
    pub fn select_chunks(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesChunks> {
        self.select_part(matchers, mint, maxt, Part::All)
    }

    /// The series with chunks of `part` overlapping `[mint, maxt]`, as
    /// [`Head::select_chunks`] gives them: what a block cut from the head
    /// holds.
    pub fn block_chunks(&self, mint: i64, maxt: i64, part: BlockPart) -> Vec<SeriesChunks> {
        let part = match part {
            BlockPart::InOrder => Part::InOrderBlock,
            BlockPart::Late => Part::LateBlock,
        };
        self.select_part(&[], mint, maxt, part)
    }

    fn select_part(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        part: Part,
    ) -> Vec<SeriesChunks> {
        if mint > maxt {
            return Vec::new();
        }
        let found: Vec<(Arc<MemSeries>, Vec<ChunkData>)> = self
            .matching_series(matchers)
            .into_iter()
            .filter_map(|s| {
                let chunks = s.chunks.lock().overlapping(mint, maxt, part);
                (!chunks.is_empty()).then_some((s, chunks))
            })
            .collect();
        let mut out: Vec<SeriesChunks> = {
            let symbols = self.symbols.read();
            found
                .into_iter()
                .map(|(s, chunks)| SeriesChunks {
                    labels: symbols.labels(&s.labels),
                    chunks,
                })
                .collect()
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Labels of the series matching `matchers` that have samples in
    /// `[mint, maxt]`, sorted.
    pub fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let found = self.series_with_data(matchers, mint, maxt);
        let symbols = self.symbols.read();
        let mut out: Vec<Labels> = found.iter().map(|s| symbols.labels(&s.labels)).collect();
        drop(symbols);
        out.sort();
        out
    }

    /// Label names of the series matching `matchers` (all series for none) that
    /// have samples in `[mint, maxt]`, sorted.
    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        if mint > maxt {
            return Vec::new();
        }
        if matchers.is_empty() && self.range_covers_head(mint, maxt) {
            return self
                .index
                .read()
                .postings
                .keys()
                .map(|k| k.to_string())
                .collect();
        }
        let found = self.series_with_data(matchers, mint, maxt);
        let mut ids: Vec<u32> = found
            .iter()
            .flat_map(|s| s.labels.chunks_exact(2).map(|pair| pair[0]))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.resolve_sorted(&ids)
    }

    /// Non-empty values of label `name` among the series matching `matchers` (all
    /// series for none) that have samples in `[mint, maxt]`, sorted.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        if mint > maxt {
            return Vec::new();
        }
        if matchers.is_empty() && self.range_covers_head(mint, maxt) {
            return self
                .index
                .read()
                .postings
                .get(name)
                .map(|values| {
                    let mut sorted: Vec<String> = values.keys().map(|v| v.to_string()).collect();
                    sorted.sort_unstable();
                    sorted
                })
                .unwrap_or_default();
        }
        let Some(name_id) = self.symbols.read().lookup(name) else {
            return Vec::new();
        };
        let found = self.series_with_data(matchers, mint, maxt);
        let mut ids: Vec<u32> = found
            .iter()
            .filter_map(|s| {
                s.labels
                    .chunks_exact(2)
                    .find(|pair| pair[0] == name_id)
                    .map(|pair| pair[1])
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.resolve_sorted(&ids)
    }

    /// Earliest and latest sample timestamps in the head; `None` while empty.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self.min_time.load(Ordering::Acquire);
        let max = self.max_time.load(Ordering::Acquire);
        (min <= max).then_some((min, max))
    }

    fn note_time_range(&self, min_t: i64, max_t: i64) {
        // Load first: the common case changes nothing and keeps the line shared.
        if min_t < self.min_time.load(Ordering::Relaxed) {
            self.min_time.fetch_min(min_t, Ordering::AcqRel);
        }
        if max_t > self.max_time.load(Ordering::Relaxed) {
            self.max_time.fetch_max(max_t, Ordering::AcqRel);
        }
    }

    /// Whether every sample in the head lies within `[mint, maxt]`, so that every
    /// series has data in the range.
    fn range_covers_head(&self, mint: i64, maxt: i64) -> bool {
        match self.time_range() {
            Some((min, max)) => mint <= min && max <= maxt,
            None => true,
        }
    }

    fn matching_series(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let index = self.index.read();
        let ids = index.postings_for_matchers(matchers);
        ids.iter()
            .filter_map(|id| index.series.get(id.0 as usize).cloned())
            .collect()
    }

    fn series_with_data(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Arc<MemSeries>> {
        if mint > maxt {
            return Vec::new();
        }
        let mut found = self.matching_series(matchers);
        found.retain(|s| s.chunks.lock().has_data_in(mint, maxt));
        found
    }

    /// Symbol IDs to strings, sorted by string.
    fn resolve_sorted(&self, ids: &[u32]) -> Vec<String> {
        let symbols = self.symbols.read();
        let mut out: Vec<String> = ids.iter().map(|&id| symbols.get(id).to_string()).collect();
        drop(symbols);
        out.sort_unstable();
        out
    }

    /// The series `labels` and whether this call created it, with `known_ref` as
    /// its ref if given (replay) or the next free one.
    fn get_or_create(&self, labels: &Labels, known_ref: Option<u64>) -> (Arc<MemSeries>, bool) {
        let hash = labels_hash(labels);
        let stripe = &self.stripes[((hash >> 32) as usize) % STRIPES];
        if let Some(found) = stripe.read().find(hash, labels, &self.symbols) {
            return (found, false);
        }
        let mut stripe = stripe.write();
        if let Some(found) = stripe.find(hash, labels, &self.symbols) {
            return (found, false);
        }
        let series_ref = match known_ref {
            Some(r) => {
                self.next_ref
                    .fetch_max(r.saturating_add(1), Ordering::Relaxed);
                r
            }
            None => self.next_ref.fetch_add(1, Ordering::Relaxed),
        };
        let mut syms = Vec::with_capacity(labels.len() * 2);
        let mut strings = Vec::with_capacity(labels.len());
        {
            let mut symbols = self.symbols.write();
            for Label { name, value } in labels.iter() {
                let (name_id, name) = symbols.intern(name, &self.strings);
                let (value_id, value) = symbols.intern(value, &self.strings);
                syms.push(name_id);
                syms.push(value_id);
                strings.push((name, value));
            }
        }
        let series = Arc::new(MemSeries {
            series_ref,
            labels: syms.into_boxed_slice(),
            chunks: Mutex::new(ChunkList::default()),
        });
        {
            let mut index = self.index.write();
            // Four billion series in one head would need terabytes of memory first.
            let id = SeriesId(index.series.len() as u32);
            index.series.push(Arc::clone(&series));
            for (name, value) in strings {
                index.postings.entry(name).or_default().add(value, id);
            }
        }
        stripe
            .by_hash
            .entry(hash)
            .or_default()
            .push(Arc::clone(&series));
        (series, true)
    }
}

/// Which samples of the head a block cut from it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPart {
    /// The in-order samples and the late ones at or after the block bound
    /// ([`Head::set_min_valid_time`]) when they came.
    InOrder,
    /// The late samples behind the bound that [`Head::begin_late_cut`] set
    /// aside.
    Late,
}

/// What [`Head::truncate_before`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruncateStats {
    pub chunks_dropped: usize,
    pub series_dropped: usize,
}

fn labels_hash(labels: &Labels) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    for l in labels.iter() {
        hasher.update(l.name.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(l.value.as_bytes());
        hasher.update(&[0xff]);
    }
    hasher.digest()
}

/// A `Hasher` for keys that already are good hashes.
#[derive(Debug, Default, Clone, Copy)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Series by label hash; collisions share a (rarely longer than one) list.
#[derive(Default)]
struct Stripe {
    by_hash: HashMap<u64, SmallVec<[Arc<MemSeries>; 1]>, BuildHasherDefault<PassThroughHasher>>,
}

impl Stripe {
    fn find(
        &self,
        hash: u64,
        labels: &Labels,
        symbols: &RwLock<SymbolTable>,
    ) -> Option<Arc<MemSeries>> {
        let candidates = self.by_hash.get(&hash)?;
        let symbols = symbols.read();
        candidates
            .iter()
            .find(|s| symbols.equals(&s.labels, labels))
            .cloned()
    }
}

/// Every distinct label string of the head, stored once. The lookup table
/// holds only IDs (4 bytes an entry, hashed through the string they name)
/// rather than a second pointer to each string: in a head of a hundred
/// series most strings are a single series' own.
#[derive(Default)]
struct SymbolTable {
    ids: hashbrown::HashTable<u32>,
    strings: Vec<Arc<str>>,
    hasher: RandomState,
}

impl SymbolTable {
    fn intern(&mut self, s: &str, shared: &SharedStrings) -> (u32, Arc<str>) {
        let hash = self.hasher.hash_one(s);
        let Self {
            ids,
            strings,
            hasher,
        } = self;
        if let Some(&id) = ids.find(hash, |&id| &*strings[id as usize] == s) {
            return (id, Arc::clone(&strings[id as usize]));
        }
        let id = strings.len() as u32;
        let arc = shared.get(s);
        strings.push(Arc::clone(&arc));
        ids.insert_unique(hash, id, |&id| hasher.hash_one(&*strings[id as usize]));
        (id, arc)
    }

    fn lookup(&self, s: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(s);
        self.ids
            .find(hash, |&id| &*self.strings[id as usize] == s)
            .copied()
    }

    fn get(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }

    fn get_arc(&self, id: u32) -> Arc<str> {
        self.strings
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    fn equals(&self, syms: &[u32], labels: &Labels) -> bool {
        syms.len() == labels.len() * 2
            && syms
                .chunks_exact(2)
                .zip(labels.iter())
                .all(|(pair, l)| self.get(pair[0]) == l.name && self.get(pair[1]) == l.value)
    }

    fn labels(&self, syms: &[u32]) -> Labels {
        Labels::from_sorted(
            syms.chunks_exact(2)
                .map(|pair| Label::new(self.get(pair[0]), self.get(pair[1])))
                .collect(),
        )
    }
}

/// The postings index plus the ID → series table.
#[derive(Default)]
struct Index {
    series: Vec<Arc<MemSeries>>,
    postings: BTreeMap<Arc<str>, LabelValues>,
}

impl Index {
    fn all(&self) -> Vec<SeriesId> {
        (0..self.series.len() as u32).map(SeriesId).collect()
    }

    /// Prometheus's `PostingsForMatchers` ([`postings::for_matchers`]).
    fn postings_for_matchers(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        match postings::for_matchers(self, matchers) {
            Ok(ids) => ids,
            Err(never) => match never {},
        }
    }
}

impl PostingsIndex for Index {
    type Ref = SeriesId;
    type Values = LabelValues;
    type Error = Infallible;

    fn values(&self, name: &str) -> Option<&Self::Values> {
        self.postings.get(name)
    }

    fn postings_of(&self, values: &Self::Values, value: &str) -> Result<Vec<SeriesId>, Infallible> {
        Ok(values
            .get(value)
            .map(|list| list.to_vec())
            .unwrap_or_default())
    }

    fn union_of(
        &self,
        values: &Self::Values,
        wanted: &[String],
    ) -> Result<Vec<SeriesId>, Infallible> {
        Ok(union_of(
            wanted.iter().filter_map(|v| values.get(v.as_str())),
        ))
    }

    fn union_where(
        &self,
        values: &Self::Values,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<SeriesId>, Infallible> {
        Ok(union_of(
            values.iter().filter(|(v, _)| keep(v)).map(|(_, p)| p),
        ))
    }

    fn all(&self) -> Result<Vec<SeriesId>, Infallible> {
        Ok(Index::all(self))
    }
}

fn union_of<'a>(lists: impl Iterator<Item = &'a PostingList>) -> Vec<SeriesId> {
    let lists: Vec<&[SeriesId]> = lists.map(|list| list.as_slice()).collect();
    postings::union_many(&lists)
}

#[cfg(test)]
mod tests;
