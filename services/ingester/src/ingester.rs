//! The [`Ingester`]: every tenant's head behind one shared WAL, the push and
//! query operations the gRPC service exposes, and the background work that
//! cuts, checkpoints, ships and closes (see the crate's docs).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;
use strata_limits::Overrides;
use strata_model::{validate_tenant_id, Labels, Matcher, Sample};
use strata_proto::prometheus::WriteRequest;
use strata_status::{ErrorCode, ServiceError};
use strata_storage::{BlocksStorageConfig, Bucket};
use strata_tsdb::head::{AppendError, AppendPlan, ChunkData, PlanSeries, SeriesChunks, SeriesRef};
use strata_tsdb::strings::SharedStrings;
use strata_tsdb::wal::{HeadReplayer, Retain, TenantRetain, Wal, WalBatch};

use crate::config::IngesterConfig;
use crate::db::{ClosedTenant, DbSettings, TenantDb, LEGACY_WAL_DIR, SHARED_WAL_DIR};
use crate::error::IngesterError;
use crate::metadata::{MetadataLimits, MetadataStore};
use crate::metrics;
use crate::series_limits::{LimitsSource, PendingSeries, RingCounts, SeriesLimits};

/// What [`Ingester::flush`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlushStats {
    pub blocks_written: usize,
    pub blocks_shipped: usize,
}

/// How many rejected series a push error names before summarising.
const MAX_REJECTIONS_NAMED: usize = 1;

/// The tenants' heads and the operations the gRPC service exposes.
#[derive(Debug)]
pub struct Ingester {
    config: IngesterConfig,
    /// Each open tenant's database (head, local blocks).
    tenant_dbs: Arc<RwLock<HashMap<String, Arc<TenantDb>>>>,
    /// Tenants closed while idle: what their next head must know. Kept in
    /// WAL checkpoints as their bounds.
    closed: Arc<parking_lot::Mutex<HashMap<String, ClosedTenant>>>,
    /// The WAL of every tenant's head; `None` without local storage or with
    /// `wal_enabled: false`.
    wal: Option<Arc<Wal>>,
    metrics: metrics::IngesterMetrics,
    limits: Option<LimitsSource>,
    /// Local TSDB settings; `None`: heads only in memory (no WAL, no blocks).
    storage: Option<DbSettings>,
    bucket: Option<Bucket>,
    /// The wall clock (Unix ms) the heads' appendable bound is taken from.
    clock: fn() -> i64,
    /// The label strings of every tenant's head, held once.
    strings: Arc<SharedStrings>,
    /// Every tenant's metric metadata (not in the WAL: see `metadata`).
    metadata: MetadataStore,
    /// Why the last WAL write failed, until one succeeds again: the
    /// ingester is not ready meanwhile.
    wal_write_error: parking_lot::Mutex<Option<String>>,
    wal_failing: std::sync::atomic::AtomicBool,
}

impl Ingester {
    pub fn new(
        config: IngesterConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, IngesterError> {
        Ok(Self {
            config,
            tenant_dbs: Arc::default(),
            closed: Arc::default(),
            wal: None,
            metrics: metrics::IngesterMetrics::new(registry)?,
            limits: None,
            storage: None,
            bucket: None,
            clock: now_ms,
            strings: Arc::default(),
            metadata: MetadataStore::default(),
            wal_write_error: parking_lot::Mutex::new(None),
            wal_failing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// An ingester whose heads are durable: replays the WAL under
    /// `blocks_storage.tsdb.dir` into every tenant's head and migrates the
    /// per-tenant WALs of earlier versions into it (blocking I/O: call it off
    /// the async threads), logging what the replay read and the process's
    /// memory, and ships blocks to the bucket `blocks_storage` names.
    pub fn open(
        config: IngesterConfig,
        blocks_storage: &BlocksStorageConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, IngesterError> {
        let bucket = blocks_storage.bucket()?;
        let settings = DbSettings::from_config(&blocks_storage.tsdb);
        let metrics = metrics::IngesterMetrics::new(registry)?;
        std::fs::create_dir_all(&settings.dir).map_err(|e| IngesterError::Io {
            path: settings.dir.clone(),
            source: e,
        })?;
        let mut tenants: Vec<String> = std::fs::read_dir(&settings.dir)
            .map_err(|e| IngesterError::Io {
                path: settings.dir.clone(),
                source: e,
            })?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|name| validate_tenant_id(name).is_ok())
            .collect();
        tenants.sort();
        let started = std::time::Instant::now();
        let rss_before = memory_kib("VmRSS:");
        let now = now_ms();
        let strings = Arc::<SharedStrings>::default();
        let mut tenant_dbs: HashMap<String, Arc<TenantDb>> = tenants
            .iter()
            .map(|t| {
                let db = TenantDb::open(&settings, t, None, now, &strings);
                (t.clone(), Arc::new(db))
            })
            .collect();
        let wal_dir = settings.dir.join(SHARED_WAL_DIR);
        let legacy: Vec<String> = tenants
            .iter()
            .filter(|t| settings.dir.join(t).join(LEGACY_WAL_DIR).is_dir())
            .cloned()
            .collect();
        let mut replayed_samples = HashMap::new();
        let wal = if settings.wal_enabled {
            let mut replayer = HeadReplayer::new(|tenant: &str| {
                // Records of a tenant ID this version refuses are skipped:
                // no directory or query could reach them.
                validate_tenant_id(tenant).ok()?;
                let db = tenant_dbs.entry(tenant.to_string()).or_insert_with(|| {
                    Arc::new(TenantDb::open(&settings, tenant, None, now, &strings))
                });
                Some(db.head.clone())
            });
            let mut stats = Wal::replay(&wal_dir, |t, r| replayer.apply(t, r))?;
            let wal = Arc::new(Wal::open_observed(
                &wal_dir,
                settings.wal,
                Some(metrics.wal_observer()),
            )?);
            // The per-tenant WALs of earlier versions: each record goes to its
            // tenant's head and, tagged with the tenant, into the shared WAL;
            // once that is durable, the old directory goes. A crash before
            // that replays both next time: the copies are duplicates, which
            // the head skips.
            let mut batch = WalBatch::new("");
            for tenant in &legacy {
                let dir = settings.dir.join(tenant).join(LEGACY_WAL_DIR);
                batch.set_tenant(tenant);
                let mut logged = Ok(strata_tsdb::wal::Lsn::default());
                let migrated = Wal::replay_legacy(&dir, tenant, |t, record| {
                    if logged.is_ok() {
                        logged = batch
                            .add_record(&record)
                            .map_err(strata_tsdb::wal::WalError::from)
                            .and_then(|()| wal.log(&mut batch));
                    }
                    replayer.apply(t, record);
                })?;
                wal.wait_durable(logged?)?;
                std::fs::remove_dir_all(&dir).map_err(|e| IngesterError::Io {
                    path: dir.clone(),
                    source: e,
                })?;
                tracing::info!(
                    tenant = %tenant,
                    records = migrated.records,
                    samples = migrated.samples,
                    "migrated a per-tenant WAL of an earlier version into the shared WAL"
                );
                stats.records += migrated.records;
                stats.series += migrated.series;
                stats.samples += migrated.samples;
            }
            replayed_samples = replayer.finish(&mut stats);
            metrics.replayed(&stats);
            tracing::info!(
                checkpoint = ?stats.checkpoint,
                segments = stats.segments,
                records = stats.records,
                series = stats.series,
                samples = stats.samples,
                migrated_tenants = legacy.len(),
                rejected_samples = stats.rejected_samples,
                unknown_series_samples = stats.unknown_series_samples,
                skipped = stats.skipped.len(),
                unreadable_records = stats.unreadable_records,
                truncated = ?stats.truncated.as_ref().map(|(p, o)| format!("{}@{o}", p.display())),
                "replayed the WAL"
            );
            Some(wal)
        } else {
            if wal_dir.exists() || !legacy.is_empty() {
                tracing::warn!(
                    dir = %wal_dir.display(),
                    "the WAL is disabled (blocks_storage.tsdb.wal_enabled=false): not replaying the WAL left in this directory"
                );
            }
            None
        };
        // Tenants with nothing left (an empty head, no local block) are kept
        // closed: only their bound, no head, until they push again.
        let mut closed = HashMap::new();
        tenant_dbs.retain(|tenant, db| {
            db.replayed();
            let empty = db.head.num_series() == 0 && !db.has_local_blocks();
            if empty {
                closed.insert(tenant.clone(), db.close());
            } else {
                let samples = replayed_samples.get(tenant).copied().unwrap_or(0);
                metrics.tenant_opened(tenant, db.head.num_series(), samples);
            }
            !empty
        });
        metrics.replay_took(started.elapsed());
        metrics.tenants(tenant_dbs.len());
        tracing::info!(
            tenants = tenant_dbs.len(),
            closed_tenants = closed.len(),
            elapsed = ?started.elapsed(),
            rss_before_kib = rss_before,
            rss_after_kib = memory_kib("VmRSS:"),
            peak_rss_kib = memory_kib("VmHWM:"),
            "WAL replay done"
        );
        Ok(Self {
            config,
            tenant_dbs: Arc::new(RwLock::new(tenant_dbs)),
            closed: Arc::new(parking_lot::Mutex::new(closed)),
            wal,
            metrics,
            limits: None,
            storage: Some(settings),
            bucket: Some(bucket),
            clock: now_ms,
            strings,
            metadata: MetadataStore::default(),
            wal_write_error: parking_lot::Mutex::new(None),
            wal_failing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Enforces the tenants' series limits from `overrides`, each global limit
    /// divided among the ingesters `ring` reports. Without this, no limits.
    pub fn with_limits(mut self, overrides: Arc<Overrides>, ring: Arc<dyn RingCounts>) -> Self {
        self.limits = Some(LimitsSource { overrides, ring });
        self
    }

    /// The tenant's out-of-order window now, in ms (0 without limits).
    fn out_of_order_window_ms(&self, tenant: &str) -> i64 {
        self.limits.as_ref().map_or(0, |source| {
            source
                .overrides
                .for_tenant(tenant)
                .out_of_order_time_window
                .as_millis_i64()
        })
    }

    /// The series limits of `tenant` on this ingester now; `None` if none apply.
    fn series_limits(&self, tenant: &str) -> Option<SeriesLimits> {
        let source = self.limits.as_ref()?;
        let limits = source.overrides.for_tenant(tenant);
        let rf = source.ring.replication_factor();
        let ingesters = source.ring.healthy_ingesters();
        let share = |global| strata_limits::local_series_limit(global, rf, ingesters);
        let series = SeriesLimits {
            user_global: limits.max_global_series_per_user,
            user_local: share(limits.max_global_series_per_user),
            metric_global: limits.max_global_series_per_metric,
            metric_local: share(limits.max_global_series_per_metric),
        };
        (series.user_local > 0 || series.metric_local > 0).then_some(series)
    }

    /// This ingester's share of the tenant's metadata limits.
    fn metadata_limits(&self, tenant: &str) -> MetadataLimits {
        let Some(source) = self.limits.as_ref() else {
            return MetadataLimits::default();
        };
        let limits = source.overrides.for_tenant(tenant);
        MetadataLimits {
            families: strata_limits::local_series_limit(
                limits.max_global_metadata_per_user,
                source.ring.replication_factor(),
                source.ring.healthy_ingesters(),
            ),
            // Every replica of a family holds all of its entries.
            per_family: limits.max_global_metadata_per_metric,
        }
    }

    /// This ingester's share of the tenant's `max_global_exemplars_per_user`
    /// (0: exemplars off, also without limits).
    fn exemplar_capacity(&self, tenant: &str) -> usize {
        let Some(source) = self.limits.as_ref() else {
            return 0;
        };
        strata_limits::local_series_limit(
            source
                .overrides
                .for_tenant(tenant)
                .max_global_exemplars_per_user,
            source.ring.replication_factor(),
            source.ring.healthy_ingesters(),
        )
    }

    fn metadata_retain_ms(&self) -> i64 {
        i64::try_from(self.config.metadata_retain_period.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// Records a push's metadata entries (no WAL: see `metadata`), within
    /// the tenant's limits; refused entries are counted, never an error, as
    /// in Mimir, so a sender is not made to retry its samples for them.
    fn store_metadata(&self, tenant: &str, entries: Vec<strata_proto::prometheus::MetricMetadata>) {
        let now = (self.clock)();
        let retain = self.metadata_retain_ms();
        // Expired entries are freed at most once a minute, by a push.
        self.metadata
            .purge_if_due(now, now.saturating_sub(retain), 60_000);
        let refused = self
            .metadata
            .add(tenant, entries, self.metadata_limits(tenant), now);
        let reasons: Vec<&'static str> = refused.iter().map(|r| r.reason()).collect();
        self.metrics
            .metadata(tenant, self.metadata.families(tenant), &reasons);
    }

    /// The tenant's metric metadata received within the retain period,
    /// sorted by family name then (type, help, unit); see
    /// [`MetricsMetadataRequest`](strata_proto::ingester::MetricsMetadataRequest)
    /// for the filters.
    pub fn metric_metadata(
        &self,
        tenant: &str,
        metric: &str,
        limit: i64,
        limit_per_metric: i64,
    ) -> Result<Vec<strata_proto::prometheus::MetricMetadata>, ServiceError> {
        check_tenant(tenant)?;
        let oldest = (self.clock)().saturating_sub(self.metadata_retain_ms());
        Ok(self
            .metadata
            .query(tenant, metric, limit, limit_per_metric, oldest))
    }

    pub fn config(&self) -> &IngesterConfig {
        &self.config
    }

    #[cfg(test)]
    fn head(&self, tenant: &str) -> Option<Arc<strata_tsdb::head::Head>> {
        self.tenant_dbs.read().get(tenant).map(|db| db.head.clone())
    }

    fn tenants(&self) -> Vec<Arc<TenantDb>> {
        self.tenant_dbs.read().values().cloned().collect()
    }

    fn db_or_create(&self, tenant: &str) -> Arc<TenantDb> {
        if let Some(db) = self.tenant_dbs.read().get(tenant) {
            return db.clone();
        }
        let mut dbs = self.tenant_dbs.write();
        if let Some(db) = dbs.get(tenant) {
            return db.clone();
        }
        let db = Arc::new(match &self.storage {
            None => TenantDb::in_memory(tenant, &self.strings),
            Some(settings) => {
                let closed = self.closed.lock().remove(tenant);
                TenantDb::open(settings, tenant, closed, (self.clock)(), &self.strings)
            }
        });
        dbs.insert(tenant.to_string(), db.clone());
        self.metrics.tenants(dbs.len());
        db
    }

    /// Appends every series of the request; valid series are stored even when some
    /// are rejected, and the first rejection is reported: a series over a limit
    /// as TooManyRequests (429), otherwise BadRequest (400). Returns once the
    /// WAL holds what was stored, durable per the fsync policy; a WAL failure
    /// is an internal error (5xx: the client retries, duplicates are skipped).
    pub async fn push(&self, tenant: &str, mut request: WriteRequest) -> Result<(), ServiceError> {
        check_tenant(tenant)?;
        let metadata = std::mem::take(&mut request.metadata);
        if !metadata.is_empty() {
            self.store_metadata(tenant, metadata);
            // Prometheus sends metadata in requests of their own: those
            // need no head.
            if request.timeseries.is_empty() {
                return Ok(());
            }
        }
        // A database closed while this push waited for it is replaced by the
        // tenant's new one. Touched under its lock, an open one is not idle,
        // so it cannot be closed before the append below.
        let db = loop {
            let db = self.db_or_create(tenant);
            let _append = db.append.lock();
            if !db.is_closed() {
                db.touch((self.clock)());
                drop(_append);
                break db;
            }
        };
        let head = &db.head;
        let wal = self.wal.as_deref();
        let series_limits = self.series_limits(tenant);
        let mut appended = 0u64;
        let mut rejected = 0u64;
        let mut first_error: Option<String> = None;
        let mut first_limit: Option<String> = None;
        let mut batch = WalBatch::new(tenant);
        let ooo_window_ms = self.out_of_order_window_ms(tenant);
        let late: u64;
        let logged = {
            let _append = db.append.lock();
            // Runtime overrides may change the window between pushes.
            head.set_out_of_order_window(ooo_window_ms);
            // Appends are serialised by the lock: the change in the head's
            // count over this push is this push's late samples.
            let late_before = head.out_of_order_appended();
            // A head cut into blocks takes nothing its next block could not
            // hold (memory-only heads take anything).
            let oldest_ms = match &self.storage {
                Some(settings) => head.appendable_min_time((self.clock)(), settings.block_range_ms),
                None => i64::MIN,
            };
            // Stable under the lock: a cut raises it holding the lock.
            let blocks_bound = head.min_valid_time();
            let mut exemplars = ExemplarPush::new(self.exemplar_capacity(tenant), head);
            // WAL first: the push is planned (what the head will take, which
            // series it creates), logged, and only then applied, so a push
            // whose WAL write fails leaves no trace in the head (Prometheus's
            // order too). Nothing else changes the head meanwhile: appends,
            // cuts and truncation all hold the append lock.
            let mut plan = AppendPlan::with_capacity(request.timeseries.len());
            let mut steps: Vec<PlannedStep> = Vec::with_capacity(request.timeseries.len());
            let mut accepted_samples: Vec<Sample> = Vec::new();
            let mut new_series: HashMap<Labels, SeriesRef> = HashMap::new();
            let mut new_per_metric: HashMap<String, usize> = HashMap::new();
            let mut samples = Vec::new();
            for series in request.timeseries {
                let labels = strata_proto::labels_from_proto(series.labels);
                let held = head.get_series(&labels);
                if series.samples.is_empty() {
                    // Prometheus sends a series' exemplars in entries of
                    // their own; they attach to a series the head holds (or
                    // this push creates).
                    if !series.exemplars.is_empty() {
                        let target = held
                            .as_ref()
                            .map(|s| s.series_ref())
                            .or_else(|| new_series.get(&labels).copied());
                        match target {
                            Some(r) => exemplars.add(r, series.exemplars, wal.map(|_| &mut batch)),
                            None => exemplars.missing_series(series.exemplars.len()),
                        }
                    }
                    continue;
                }
                let known_new = new_series.get(&labels).copied();
                if held.is_none() && known_new.is_none() {
                    if let Some(limits) = &series_limits {
                        let name = labels.get(strata_model::METRIC_NAME).unwrap_or_default();
                        let pending = PendingSeries {
                            total: new_series.len(),
                            same_metric: new_per_metric.get(name).copied().unwrap_or(0),
                        };
                        if let Err((reason, message)) =
                            limits.check_new_series(head, &labels, pending)
                        {
                            let n = series.samples.len() as u64;
                            rejected += n;
                            self.metrics.discarded(tenant, reason, n);
                            first_limit.get_or_insert(message);
                            continue;
                        }
                    }
                }
                samples.clear();
                samples.extend(
                    series
                        .samples
                        .iter()
                        .map(|s| Sample::new(s.timestamp, s.value)),
                );
                // A series the WAL could not record must not enter the head:
                // its later samples would be logged against an unknown ref.
                if wal.is_some() && held.is_none() && known_new.is_none() {
                    if let Err(e) = WalBatch::check_series(&labels) {
                        first_error.get_or_insert(e.to_string());
                        rejected += samples.len() as u64;
                        continue;
                    }
                }
                let (series_ref, target) = match (&held, known_new) {
                    (Some(s), _) => (s.series_ref(), PlanSeries::Held(s)),
                    (None, Some(r)) => (r, PlanSeries::New(r)),
                    (None, None) => {
                        let r = head.reserve_series_ref();
                        if wal.is_some() {
                            if let Err(e) = batch.add_series(r, &labels) {
                                first_error.get_or_insert(e.to_string());
                                rejected += samples.len() as u64;
                                continue;
                            }
                        }
                        let name = labels.get(strata_model::METRIC_NAME).unwrap_or_default();
                        *new_per_metric.entry(name.to_string()).or_default() += 1;
                        new_series.insert(labels.clone(), r);
                        (r, PlanSeries::New(r))
                    }
                };
                let accepted =
                    match head
                        .plan_append(&mut plan, target, &samples, oldest_ms, || labels.clone())
                    {
                        Ok(outcome) => {
                            appended += outcome.appended as u64;
                            samples.len()
                        }
                        Err(e) => {
                            appended += e.appended() as u64;
                            rejected += (samples.len() - e.appended()) as u64;
                            self.metrics.discarded(
                                tenant,
                                e.reason(),
                                (samples.len() - e.appended()) as u64,
                            );
                            if first_error.is_none() {
                                first_error = Some(describe_append_error(&e));
                            }
                            e.index()
                        }
                    };
                if wal.is_some() && accepted > 0 {
                    // Late samples behind the blocks already cut are logged
                    // apart: replay takes them back behind the bound.
                    for s in &samples[..accepted] {
                        if s.timestamp_ms < blocks_bound {
                            batch.add_late_sample(series_ref, s.timestamp_ms, s.value);
                        } else {
                            batch.add_sample(series_ref, s.timestamp_ms, s.value);
                        }
                    }
                }
                let from = accepted_samples.len();
                accepted_samples.extend_from_slice(&samples[..accepted]);
                steps.push(PlannedStep {
                    target: match held {
                        Some(s) => StepTarget::Held(s),
                        None => StepTarget::New(labels),
                    },
                    series_ref,
                    samples: from..accepted_samples.len(),
                });
                if !series.exemplars.is_empty() {
                    exemplars.add(series_ref, series.exemplars, wal.map(|_| &mut batch));
                }
            }
            let logged = match wal {
                Some(wal) if !batch.is_empty() => match wal.log(&mut batch) {
                    Ok(lsn) => {
                        self.wal_writable();
                        Some(lsn)
                    }
                    Err(e) => {
                        // Nothing of the push is in the head: it is refused
                        // whole, and the sender retries it.
                        exemplars.finish(tenant, &self.metrics, 0);
                        self.metrics.wal_write_failed();
                        *self.wal_write_error.lock() = Some(e.to_string());
                        self.wal_failing
                            .store(true, std::sync::atomic::Ordering::Release);
                        return Err(wal_error(e));
                    }
                },
                _ => None,
            };
            self.apply_plan(head, steps, &accepted_samples, oldest_ms);
            let stored = exemplars.planned.len() as u64;
            exemplars.commit();
            exemplars.finish(tenant, &self.metrics, stored);
            late = head.out_of_order_appended() - late_before;
            logged
        };
        if let (Some(wal), Some(lsn)) = (wal, logged) {
            wal.durable(lsn).await.map_err(wal_error)?;
        }
        self.metrics.ingested(tenant, appended, head.num_series());
        self.metrics.out_of_order(tenant, late);
        let more = if rejected > MAX_REJECTIONS_NAMED as u64 {
            format!(" ({rejected} samples rejected in all)")
        } else {
            String::new()
        };
        match (first_limit, first_error) {
            (Some(msg), _) => Err(ServiceError::new(
                ErrorCode::TooManyRequests,
                format!("{msg}{more}"),
            )),
            (None, Some(msg)) => Err(ServiceError::bad_request(format!("{msg}{more}"))),
            (None, None) => Ok(()),
        }
    }

    /// A WAL write succeeded: a failure before it no longer makes the
    /// ingester unready.
    fn wal_writable(&self) {
        // Every push comes here: the lock only while a failure is recorded.
        if !self.wal_failing.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        self.wal_failing
            .store(false, std::sync::atomic::Ordering::Release);
        let mut error = self.wal_write_error.lock();
        if let Some(reason) = error.take() {
            tracing::info!(previous_error = %reason, "the WAL can be written again");
        }
    }

    /// Why the ingester cannot take pushes now, if it cannot: its last WAL
    /// write failed (a full or failing disk) and none succeeded since.
    pub fn not_ready(&self) -> Option<String> {
        self.wal_write_error
            .lock()
            .as_ref()
            .map(|e| format!("the WAL cannot be written: {e}"))
    }

    /// Applies a push's planned appends, in the planned order, once their
    /// WAL record is written: creates the new series with their reserved
    /// refs and appends what the plan accepted. Call with the tenant's
    /// append lock held since the plan was made.
    fn apply_plan(
        &self,
        head: &strata_tsdb::head::Head,
        steps: Vec<PlannedStep>,
        accepted: &[Sample],
        oldest_ms: i64,
    ) {
        for step in steps {
            let target = match step.target {
                StepTarget::Held(s) => s,
                // A second entry of a series the push creates finds the
                // one the first created.
                StepTarget::New(labels) => head.create_series(step.series_ref, &labels),
            };
            let planned = accepted.get(step.samples.clone()).unwrap_or_default();
            if let Err(e) = head.append_to_from(&target, planned, oldest_ms) {
                // The plan ran the same rules over the same head: a
                // disagreement is a bug, and the WAL holds the plan.
                tracing::error!(error = %e, "the head refused a sample its plan accepted");
            }
        }
    }

    /// The same ingester reading `clock` instead of the wall clock, so that
    /// tests may push samples at small timestamps.
    #[doc(hidden)]
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    /// `POST /ingester/flush`: cuts every tenant's head into blocks, but for
    /// the last [`FLUSH_KEEPS_RECENT`] before the clock, and uploads the
    /// blocks not yet shipped. Pushes go on meanwhile; the recent part stays
    /// in the head (and the WAL), so a sender's batches in flight — seconds
    /// old — are not refused as out of bounds by the cut.
    pub async fn flush(&self) -> Result<FlushStats, IngesterError> {
        let keep_from = (self.clock)().saturating_sub(FLUSH_KEEPS_RECENT.as_millis() as i64);
        self.flush_before(keep_from).await
    }

    /// `flush_on_shutdown`: cuts every head whole (no push comes after it).
    pub async fn flush_all(&self) -> Result<FlushStats, IngesterError> {
        self.flush_before(i64::MAX).await
    }

    /// Cuts every tenant's head into blocks before `cut_before`, then ships.
    async fn flush_before(&self, cut_before: i64) -> Result<FlushStats, IngesterError> {
        let Some(settings) = &self.storage else {
            return Ok(FlushStats::default());
        };
        let started = std::time::Instant::now();
        let mut stats = FlushStats::default();
        let mut ship_error = None;
        // Every head is cut first: a tenant whose upload fails must not keep
        // the others' heads from being cut.
        // A tenant whose cut fails is reported, not a reason to leave the
        // others unflushed.
        let tenants = self.tenants();
        let mut cut_failures = Vec::new();
        for db in &tenants {
            match db
                .cut_blocks(settings.block_range_ms, true, cut_before, &self.metrics)
                .await
            {
                Ok(blocks) => stats.blocks_written += blocks.len(),
                Err(e) => {
                    self.metrics.cut_failed();
                    tracing::error!(tenant = %db.tenant, error = %e, "flush: cutting the head failed; the other tenants are flushed");
                    cut_failures.push((db.tenant.clone(), e.to_string()));
                }
            }
        }
        // One checkpoint for every tenant cut: the WAL lets go of what the
        // blocks hold.
        self.checkpoint_wal().await?;
        if let Some(bucket) = &self.bucket {
            for db in &tenants {
                let _one = db.cutting.lock().await;
                match db.ship(bucket, settings.retention, &self.metrics).await {
                    Ok(n) => stats.blocks_shipped += n,
                    Err(e) => {
                        tracing::warn!(tenant = %db.tenant, error = %e, "flush: shipping failed; the shipper retries in the background");
                        ship_error.get_or_insert(e);
                    }
                }
            }
        }
        self.metrics.flushed(started.elapsed());
        if !cut_failures.is_empty() {
            return Err(IngesterError::Cut {
                blocks_written: stats.blocks_written,
                failed: cut_failures,
            });
        }
        if let Some(e) = ship_error {
            return Err(IngesterError::Ship {
                blocks_written: stats.blocks_written,
                source: Box::new(e),
            });
        }
        tracing::info!(?stats, "flushed the ingester's heads");
        Ok(stats)
    }

    /// One round of the head-compaction loop: cut every head that spans more
    /// than 1.5 block ranges (or, idle for `head_compaction_idle_timeout`,
    /// all of it), checkpoint the WAL once if anything was cut, close block
    /// files no query read lately, and close tenants idle for
    /// `close_idle_tsdb_timeout` whose data is all shipped.
    async fn compact_heads(&self, settings: &DbSettings) {
        let now = (self.clock)();
        let mut cut_any = false;
        let mut open_readers = 0;
        for db in self.tenants() {
            let idle = !settings.head_compaction_idle_timeout.is_zero()
                && db.idle_for(now) >= settings.head_compaction_idle_timeout
                && db.head.num_series() > 0;
            match db
                .cut_blocks(settings.block_range_ms, idle, i64::MAX, &self.metrics)
                .await
            {
                Ok(blocks) => cut_any |= idle || !blocks.is_empty(),
                Err(e) => {
                    self.metrics.cut_failed();
                    tracing::error!(tenant = %db.tenant, error = %e, "cutting a block failed; retrying at the next interval");
                }
            }
            db.close_idle_readers(settings.block_reader_idle_timeout);
            open_readers += db.open_readers();
        }
        self.metrics.open_block_readers(open_readers);
        if cut_any {
            if let Err(e) = self.checkpoint_wal().await {
                tracing::error!(error = %e, "checkpointing the WAL failed; retrying after the next cut");
            }
        }
        if !settings.close_idle_tsdb_timeout.is_zero() {
            if let Err(e) = self
                .close_idle_tenants(settings.close_idle_tsdb_timeout, now)
                .await
            {
                tracing::error!(error = %e, "closing idle tenants failed; retrying at the next interval");
            }
        }
    }

    /// Checkpoints the WAL once for every tenant: what each open tenant's
    /// head still needs, and each closed tenant's bound.
    async fn checkpoint_wal(&self) -> Result<(), IngesterError> {
        let Some(wal) = self.wal.clone() else {
            return Ok(());
        };
        let dbs = self.tenant_dbs.clone();
        let closed = self.closed.clone();
        let stats = tokio::task::spawn_blocking(move || {
            wal.checkpoint(|| {
                // Both locks at once, in the order closing takes them: a
                // tenant being closed is in exactly one of the two maps.
                let dbs = dbs.read();
                let closed = closed.lock();
                let mut retain = Retain::default();
                for (tenant, c) in closed.iter() {
                    retain.insert(tenant, TenantRetain::bound_only(c.blocks_end));
                }
                for (tenant, db) in dbs.iter() {
                    retain.insert(tenant, db.retain());
                }
                retain
            })
        })
        .await
        .map_err(IngesterError::Task)??;
        self.metrics.checkpointed();
        tracing::debug!(?stats, "WAL checkpoint");
        Ok(())
    }

    /// Closes the tenants that took no push for `timeout`, whose heads are
    /// empty and whose blocks are all shipped: frees their heads, then, once a
    /// checkpoint keeps only their bounds, removes their local directories
    /// (Mimir's `close_idle_tsdb_timeout`). Their next push opens them again.
    async fn close_idle_tenants(&self, timeout: Duration, now: i64) -> Result<(), IngesterError> {
        let mut closed = Vec::new();
        for db in self.tenants() {
            if db.idle_for(now) < timeout || db.head.num_series() > 0 {
                continue;
            }
            let _one = db.cutting.lock().await;
            if !db.all_shipped()? {
                continue;
            }
            let mut dbs = self.tenant_dbs.write();
            let _append = db.append.lock();
            // Checked again where no push can come in between.
            if db.idle_for((self.clock)()) < timeout || db.head.num_series() > 0 {
                continue;
            }
            self.closed.lock().insert(db.tenant.clone(), db.close());
            dbs.remove(&db.tenant);
            self.metrics.tenant_closed(&db.tenant);
            self.metrics.tenants(dbs.len());
            closed.push(db.clone());
        }
        if closed.is_empty() {
            return Ok(());
        }
        self.checkpoint_wal().await?;
        for db in &closed {
            // Not if the tenant came back meanwhile: its new database reads
            // that directory (the write lock keeps it from coming back now).
            let dbs = self.tenant_dbs.read();
            if dbs.contains_key(&db.tenant) {
                continue;
            }
            if let Some(dir) = &db.dir {
                if dir.exists() {
                    std::fs::remove_dir_all(dir).map_err(|e| IngesterError::Io {
                        path: dir.clone(),
                        source: e,
                    })?;
                }
            }
        }
        let tenants = closed.len();
        // Their heads go with the last reference (a query may still hold
        // one: a later sweep takes what it leaves), and with them the label
        // strings no other head holds.
        drop(closed);
        let forgotten_strings = self.strings.sweep();
        tracing::info!(tenants, forgotten_strings, "closed idle tenants");
        Ok(())
    }

    /// Starts the head-compaction loop (cut blocks when a head spans more
    /// than 1.5 block ranges) and the shipper (upload new blocks, retrying
    /// with backoff while object storage fails; delete shipped blocks past
    /// retention). Both stop when `shutdown` turns true. Nothing without
    /// local storage.
    pub fn spawn_background(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(settings) = self.storage.clone() else {
            return Vec::new();
        };
        let mut tasks = Vec::new();
        let ingester = self.clone();
        let mut stop = shutdown.clone();
        let interval = settings.head_compaction_interval;
        let compaction = settings.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                ingester.compact_heads(&compaction).await;
            }
        }));
        if let Some(bucket) = self.bucket.clone() {
            let ingester = self.clone();
            let mut stop = shutdown;
            tasks.push(tokio::spawn(async move {
                let mut delay = settings.ship_interval;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    let mut failed = false;
                    for db in ingester.tenants() {
                        let _one = db.cutting.lock().await;
                        if let Err(e) = db.ship(&bucket, settings.retention, &ingester.metrics).await {
                            tracing::warn!(tenant = %db.tenant, error = %e, retry_in = ?delay, "shipping blocks failed; will retry");
                            failed = true;
                        }
                    }
                    delay = if failed {
                        (delay * 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
                    } else {
                        settings.ship_interval
                    };
                }
            }));
        }
        tasks
    }

    /// The tenant's series matching `matchers` with their chunks overlapping
    /// `[mint, maxt]`: from the head and from the local blocks cut from it.
    pub fn query(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesChunks>, ServiceError> {
        check_tenant(tenant)?;
        let Some(db) = self.db(tenant) else {
            return Ok(Vec::new());
        };
        let from_head = db.head.select_chunks(matchers, mint, maxt);
        let blocks = db.local_block_readers(mint, maxt);
        if blocks.is_empty() {
            return Ok(from_head);
        }
        let mut by_labels: BTreeMap<Labels, Vec<ChunkData>> = from_head
            .into_iter()
            .map(|s| (s.labels, s.chunks))
            .collect();
        for block in blocks {
            for s in block
                .select(matchers, mint, maxt)
                .map_err(|e| local_block_error(block.meta(), e))?
            {
                by_labels.entry(s.labels).or_default().extend(s.chunks);
            }
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, mut chunks)| {
                chunks.sort_by_key(|c| c.min_time);
                SeriesChunks { labels, chunks }
            })
            .collect())
    }

    /// Labels of the series matching `matchers` with samples in
    /// `[mint, maxt]`, from the head and the local blocks, sorted and unique.
    fn series_labels(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, ServiceError> {
        let Some(db) = self.db(tenant) else {
            return Ok(Vec::new());
        };
        let mut out = db.head.series(matchers, mint, maxt);
        for block in db.local_block_readers(mint, maxt) {
            let index = block.index();
            let ids = index
                .postings_for_matchers(matchers)
                .map_err(|e| local_block_error(block.meta(), e))?;
            for id in ids {
                let entry = index
                    .series(id)
                    .map_err(|e| local_block_error(block.meta(), e))?;
                if entry
                    .chunks
                    .iter()
                    .any(|c| c.min_time <= maxt && c.max_time >= mint)
                {
                    out.push(entry.labels);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, ServiceError> {
        check_tenant(tenant)?;
        let Some(db) = self.db(tenant) else {
            return Ok(Vec::new());
        };
        if db.local_block_readers(mint, maxt).is_empty() {
            return Ok(db.head.label_names(matchers, mint, maxt));
        }
        let mut names: Vec<String> = self
            .series_labels(tenant, matchers, mint, maxt)?
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, ServiceError> {
        check_tenant(tenant)?;
        let Some(db) = self.db(tenant) else {
            return Ok(Vec::new());
        };
        if db.local_block_readers(mint, maxt).is_empty() {
            return Ok(db.head.label_values(name, matchers, mint, maxt));
        }
        let mut values: Vec<String> = self
            .series_labels(tenant, matchers, mint, maxt)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Series matching any of the matcher sets, sorted and deduplicated.
    pub fn series(
        &self,
        tenant: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, ServiceError> {
        check_tenant(tenant)?;
        let mut out = Vec::new();
        for matchers in matcher_sets {
            out.extend(self.series_labels(tenant, matchers, mint, maxt)?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The tenant's exemplars within `[mint, maxt]` of the series matching
    /// any of `matcher_sets`, by series sorted by labels, each series'
    /// exemplars oldest first. Exemplars live in the head only: a series'
    /// exemplars are kept until the store's capacity overwrites them.
    pub fn exemplars(
        &self,
        tenant: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<strata_tsdb::exemplars::Exemplar>)>, ServiceError> {
        check_tenant(tenant)?;
        let Some(db) = self.db(tenant) else {
            return Ok(Vec::new());
        };
        let mut by_series: BTreeMap<Labels, Vec<strata_tsdb::exemplars::Exemplar>> =
            BTreeMap::new();
        for matchers in matcher_sets {
            for (labels, list) in db.head.select_exemplars(matchers, mint, maxt) {
                // A series two sets match is answered once.
                by_series.entry(labels).or_insert(list);
            }
        }
        Ok(by_series.into_iter().collect())
    }

    fn db(&self, tenant: &str) -> Option<Arc<TenantDb>> {
        self.tenant_dbs.read().get(tenant).cloned()
    }
}

/// A local block that cannot be read: the details go to the log, the querier
/// gets 500 (and the other replicas answer).
fn local_block_error(
    meta: &strata_tsdb::block::BlockMeta,
    e: strata_tsdb::block::BlockError,
) -> ServiceError {
    tracing::error!(block = %meta.ulid, error = %e, "reading a local block failed");
    ServiceError::new(
        ErrorCode::Internal,
        format!("the ingester could not read its local block {}", meta.ulid),
    )
}

/// A WAL that cannot take a push: the details go to the log, the client gets 500.
fn wal_error(e: strata_tsdb::wal::WalError) -> ServiceError {
    tracing::error!(error = %e, "WAL write failed");
    ServiceError::new(ErrorCode::Internal, "the ingester could not write its WAL")
}

/// A line of /proc/self/status in KiB (`VmRSS:`, `VmHWM:`); 0 if unknown.
fn memory_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn check_tenant(tenant: &str) -> Result<(), ServiceError> {
    validate_tenant_id(tenant)
        .map_err(|e| ServiceError::new(ErrorCode::Unauthenticated, e.to_string()))
}

/// Mimir-like wording, so a Prometheus log line tells the operator what happened.
/// How much of the most recent data a `POST /ingester/flush` leaves in the
/// heads: more than a remote-write sender's usual delay, so that its batches
/// in flight stay appendable after the cut.
pub const FLUSH_KEEPS_RECENT: Duration = Duration::from_secs(60);

/// The wall clock in Unix milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn describe_append_error(e: &AppendError) -> String {
    e.to_string()
}

/// One series entry of a push, planned: where its accepted samples go.
struct PlannedStep {
    target: StepTarget,
    series_ref: SeriesRef,
    /// Its accepted samples, in the push's list of them.
    samples: std::ops::Range<usize>,
}

enum StepTarget {
    /// A series the head held when the push was planned.
    Held(strata_tsdb::head::HeadSeries),
    /// One the push creates (with the ref reserved for it), by its labels.
    New(Labels),
}

/// One push's exemplars: checked against the tenant head's store (sized to
/// the tenant's share first), logged with the push's WAL batch, stored once
/// the batch is written, and what was skipped counted by reason. Skipped
/// exemplars are never an error, as in Prometheus's remote-write receiver:
/// the samples beside them are stored.
struct ExemplarPush<'a> {
    store: parking_lot::MutexGuard<'a, strata_tsdb::exemplars::ExemplarStore>,
    /// What the push will store, in order, by series ref.
    planned: Vec<(u64, strata_tsdb::exemplars::Exemplar)>,
    /// Index in `planned` of each series' newest.
    newest: HashMap<u64, usize>,
    skipped: HashMap<&'static str, u64>,
}

impl<'a> ExemplarPush<'a> {
    fn new(capacity: usize, head: &'a strata_tsdb::head::Head) -> Self {
        // Also with capacity 0: a store a replay filled is emptied.
        let mut store = head.exemplars();
        if store.capacity() != capacity {
            store.set_capacity(capacity);
        }
        Self {
            store,
            planned: Vec::new(),
            newest: HashMap::new(),
            skipped: HashMap::new(),
        }
    }

    fn add(
        &mut self,
        series_ref: SeriesRef,
        exemplars: Vec<strata_proto::prometheus::Exemplar>,
        mut batch: Option<&mut WalBatch>,
    ) {
        for e in exemplars {
            let exemplar = strata_tsdb::exemplars::Exemplar {
                labels: strata_proto::labels_from_proto(e.labels),
                value: e.value,
                timestamp_ms: e.timestamp,
            };
            let planned = self.newest.get(&series_ref.0).map(|&i| &self.planned[i].1);
            match self.store.check(series_ref.0, &exemplar, planned) {
                Ok(()) => {
                    // Logged only if it will be stored, so a replay rebuilds
                    // what the store took.
                    if let Some(batch) = batch.as_deref_mut() {
                        batch.add_exemplar(series_ref, &exemplar);
                    }
                    self.newest.insert(series_ref.0, self.planned.len());
                    self.planned.push((series_ref.0, exemplar));
                }
                Err(why) => *self.skipped.entry(why.reason()).or_default() += 1,
            }
        }
    }

    fn missing_series(&mut self, n: usize) {
        *self.skipped.entry("exemplar_series_missing").or_default() += n as u64;
    }

    /// The push's WAL batch is written: stores what was planned.
    fn commit(&mut self) {
        for (series, exemplar) in self.planned.drain(..) {
            if let Err(why) = self.store.add(series, exemplar) {
                *self.skipped.entry(why.reason()).or_default() += 1;
            }
        }
    }

    fn finish(self, tenant: &str, metrics: &metrics::IngesterMetrics, stored: u64) {
        let held = self.store.len();
        drop(self.store);
        metrics.exemplars(tenant, stored, held, &self.skipped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series_limits::FixedRingCounts;
    use strata_proto::prometheus::{Label, Sample as WireSample, TimeSeries};

    fn request(name: &str, samples: &[(i64, f64)]) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                samples: samples
                    .iter()
                    .map(|(t, v)| WireSample {
                        timestamp: *t,
                        value: *v,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn push_then_query_per_tenant() {
        let ingester =
            Ingester::new(IngesterConfig::default(), &prometheus::Registry::new()).unwrap();
        ingester
            .push("a", request("m", &[(1, 1.0), (2, 2.0)]))
            .await
            .unwrap();
        let m = [Matcher::equal("__name__", "m")];
        assert_eq!(ingester.query("a", &m, 0, 10).unwrap().len(), 1);
        assert!(ingester.query("b", &m, 0, 10).unwrap().is_empty());
        assert_eq!(
            ingester.label_values("a", "__name__", &[], 0, 10).unwrap(),
            vec!["m".to_string()]
        );
        assert!(ingester.label_names("b", &[], 0, 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn out_of_order_is_a_bad_request_naming_the_series() {
        let ingester =
            Ingester::new(IngesterConfig::default(), &prometheus::Registry::new()).unwrap();
        ingester
            .push("a", request("m", &[(10, 1.0)]))
            .await
            .unwrap();
        let err = ingester
            .push("a", request("m", &[(5, 1.0)]))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(
            err.message.contains("m{}") || err.message.contains("\"m\""),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn invalid_tenant_is_rejected() {
        let ingester =
            Ingester::new(IngesterConfig::default(), &prometheus::Registry::new()).unwrap();
        assert_eq!(
            ingester
                .push("../x", request("m", &[(1, 1.0)]))
                .await
                .unwrap_err()
                .code,
            ErrorCode::Unauthenticated
        );
    }

    fn series_request(series: &[(&str, &str)]) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(name, instance)| TimeSeries {
                    labels: vec![
                        Label {
                            name: "__name__".into(),
                            value: name.to_string(),
                        },
                        Label {
                            name: "instance".into(),
                            value: instance.to_string(),
                        },
                    ],
                    samples: vec![WireSample {
                        timestamp: 1,
                        value: 1.0,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn limited(limits: strata_limits::Limits, counts: FixedRingCounts) -> Ingester {
        let overrides = Arc::new(Overrides::new(Default::default()));
        overrides.replace_tenant_overrides(HashMap::from([("a".to_string(), limits)]));
        Ingester::new(IngesterConfig::default(), &prometheus::Registry::new())
            .unwrap()
            .with_limits(overrides, Arc::new(counts))
    }

    #[tokio::test]
    async fn metadata_is_kept_per_tenant_within_its_share_and_never_fails_a_push() {
        // Global 6 families over 4 ingesters at RF 2: 3 on this one.
        let ingester = limited(
            strata_limits::Limits {
                max_global_metadata_per_user: 6,
                max_global_metadata_per_metric: 1,
                ..Default::default()
            },
            FixedRingCounts {
                replication_factor: 2,
                healthy_ingesters: 4,
            },
        );
        let entry = |name: &str, help: &str| strata_proto::prometheus::MetricMetadata {
            r#type: 1,
            metric_family_name: name.into(),
            help: help.into(),
            unit: String::new(),
        };
        let metadata_only = WriteRequest {
            metadata: ["m1", "m2", "m3", "m4"]
                .iter()
                .map(|n| entry(n, "h"))
                .chain([entry("m1", "another help")])
                .collect(),
            ..Default::default()
        };
        // Over the limits is counted, not refused: samples never retry for it.
        ingester.push("a", metadata_only).await.unwrap();
        let held = ingester.metric_metadata("a", "", -1, 0).unwrap();
        let names: Vec<_> = held
            .iter()
            .map(|m| (m.metric_family_name.as_str(), m.help.as_str()))
            .collect();
        assert_eq!(names, [("m1", "h"), ("m2", "h"), ("m3", "h")]);
        // A metadata-only push opens no head for the tenant.
        assert!(ingester.head("a").is_none());
        assert!(ingester.metric_metadata("b", "", -1, 0).unwrap().is_empty());
        assert_eq!(ingester.metric_metadata("a", "m2", -1, 0).unwrap().len(), 1);

        // With samples in the same request, both are stored.
        let mut both = request("m9", &[(1, 1.0)]);
        both.metadata = vec![entry("m1", "h")];
        ingester.push("a", both).await.unwrap();
        assert!(ingester.head("a").is_some());
        assert!(ingester.metric_metadata("bad\ntenant", "", -1, 0).is_err());
    }

    #[tokio::test]
    async fn new_series_over_the_tenant_limit_are_rejected_with_429() {
        let single = FixedRingCounts {
            replication_factor: 1,
            healthy_ingesters: 1,
        };
        let ingester = limited(
            strata_limits::Limits {
                max_global_series_per_user: 2,
                ..Default::default()
            },
            single,
        );
        // The new series of one push count as they are planned (none is in
        // the head before the push is logged): the third of three is refused.
        let err = ingester
            .push("a", series_request(&[("m", "1"), ("m", "2"), ("m", "4")]))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(err.message.contains("instance=\"4\""), "{}", err.message);
        let m = [Matcher::equal("__name__", "m")];
        assert_eq!(ingester.query("a", &m, 0, 10).unwrap().len(), 2);
        let err = ingester
            .push("a", series_request(&[("m", "3"), ("m", "1")]))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(
            err.message
                .starts_with("per-tenant series limit of 2 exceeded (max_global_series_per_user"),
            "{}",
            err.message
        );
        assert!(err.message.contains("err-strata-max-series-per-user"));
        assert!(err.message.contains("instance=\"3\""), "{}", err.message);
        // Existing series still take samples; the rejected one was not created.
        assert_eq!(ingester.query("a", &m, 0, 10).unwrap().len(), 2);
        // Other tenants have the defaults.
        ingester
            .push("b", series_request(&[("m", "1"), ("m", "2"), ("m", "3")]))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_per_metric_limit_counts_series_of_one_name() {
        let single = FixedRingCounts {
            replication_factor: 1,
            healthy_ingesters: 1,
        };
        let ingester = limited(
            strata_limits::Limits {
                max_global_series_per_metric: 1,
                ..Default::default()
            },
            single,
        );
        ingester
            .push("a", series_request(&[("m", "1"), ("n", "1")]))
            .await
            .unwrap();
        let err = ingester
            .push("a", series_request(&[("m", "2")]))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(
            err.message.contains(
                "per-metric series limit of 1 exceeded for metric m (max_global_series_per_metric"
            ),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn the_global_limit_is_shared_among_ingesters() {
        // 6 series over 3 ingesters at RF 1: 2 each.
        let ingester = limited(
            strata_limits::Limits {
                max_global_series_per_user: 6,
                ..Default::default()
            },
            FixedRingCounts {
                replication_factor: 1,
                healthy_ingesters: 3,
            },
        );
        ingester
            .push("a", series_request(&[("m", "1"), ("m", "2")]))
            .await
            .unwrap();
        let err = ingester
            .push("a", series_request(&[("m", "3")]))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("2 on this ingester"),
            "{}",
            err.message
        );
    }
}

#[cfg(test)]
mod durability_tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use strata_proto::prometheus::{Label, Sample as WireSample, TimeSeries};
    use strata_tsdb::block::BlockReader;

    fn request(series: &[(&str, &[(i64, f64)])]) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(name, samples)| TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: name.to_string(),
                    }],
                    samples: samples
                        .iter()
                        .map(|(t, v)| WireSample {
                            timestamp: *t,
                            value: *v,
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn storage(dir: &std::path::Path, range: Duration) -> BlocksStorageConfig {
        let mut c = BlocksStorageConfig::default();
        c.tsdb.dir = dir.join("tsdb").display().to_string();
        c.tsdb.block_ranges_period = strata_model::ConfigDuration(range);
        c.filesystem.dir = dir.join("bucket").display().to_string();
        c
    }

    fn points(ingester: &Ingester, tenant: &str, name: &str) -> Vec<i64> {
        let m = [Matcher::equal("__name__", name)];
        timestamps(&ingester.query(tenant, &m, i64::MIN, i64::MAX).unwrap())
    }

    /// Like [`points`], merged as a querier merges: the head keeps whole
    /// chunks, so its first chunk may overlap the last cut block.
    fn merged_points(ingester: &Ingester, tenant: &str, name: &str) -> Vec<i64> {
        let mut t = points(ingester, tenant, name);
        t.sort_unstable();
        t.dedup();
        t
    }

    /// Like [`points`], from the head alone (not the local blocks).
    fn head_points(ingester: &Ingester, tenant: &str, name: &str) -> Vec<i64> {
        let m = [Matcher::equal("__name__", name)];
        ingester
            .head(tenant)
            .map(|h| timestamps(&h.select_chunks(&m, i64::MIN, i64::MAX)))
            .unwrap_or_default()
    }

    /// An ingester whose clock stands at the epoch: these tests push samples
    /// at small timestamps.
    pub(super) fn open_at_epoch(
        config: IngesterConfig,
        storage: &BlocksStorageConfig,
        registry: &prometheus::Registry,
    ) -> Result<Ingester, IngesterError> {
        Ingester::open(config, storage, registry).map(|i| i.with_clock(|| 0))
    }

    fn timestamps(series: &[SeriesChunks]) -> Vec<i64> {
        series
            .iter()
            .flat_map(|s| s.chunks.iter())
            .flat_map(|c| strata_tsdb::chunk::decode_xor(&c.data).unwrap())
            .map(|s| s.timestamp_ms)
            .collect()
    }

    /// Every timestamp of `name` in the ingester (head and local blocks) and
    /// in the blocks shipped to the filesystem bucket under `bucket`, once each.
    fn points_anywhere(ingester: &Ingester, bucket: &std::path::Path, name: &str) -> Vec<i64> {
        let mut t = points(ingester, "t", name);
        let m = [Matcher::equal("__name__", name)];
        for entry in std::fs::read_dir(bucket.join("t")).into_iter().flatten() {
            let path = entry.unwrap().path();
            if let Ok(reader) = BlockReader::open(&path) {
                t.extend(timestamps(&reader.select(&m, i64::MIN, i64::MAX).unwrap()));
            }
        }
        t.sort_unstable();
        t.dedup();
        t
    }

    /// Extreme timestamps that reach a head (an old WAL, a memory-only head
    /// promoted, a bug) go through the periodic cut, a flush, WAL replay and
    /// another flush without an error, a wrapped range or an endless loop;
    /// every sample stays queryable from the head or the local blocks.
    #[tokio::test]
    async fn extreme_timestamps_survive_cut_flush_and_replay() {
        const YEAR_MS: i64 = 365 * 86_400_000;
        let now = 1_800_000_000_000;
        let sets: [&[i64]; 8] = [
            &[i64::MIN],
            &[i64::MIN, 0],
            &[i64::MIN, i64::MIN + 1, -1, 0, 1],
            &[-1, 0, now],
            &[now - YEAR_MS, now],
            &[i64::MIN, now, i64::MAX],
            &[i64::MAX - 1, i64::MAX],
            &[0, 7_199_999, 7_200_000, i64::MAX / 2],
        ];
        for set in sets {
            let dir = tempfile::tempdir().unwrap();
            let config = storage(dir.path(), Duration::from_secs(7200));
            let bucket = dir.path().join("bucket");
            let labels = Labels::from_pairs([("__name__", "m")]);
            let samples: Vec<Sample> = set.iter().map(|&t| Sample::new(t, 1.0)).collect();
            {
                let ingester = open_at_epoch(
                    IngesterConfig::default(),
                    &config,
                    &prometheus::Registry::new(),
                )
                .unwrap();
                // Straight into the head and the WAL, past the push path's bound.
                let db = ingester.db_or_create("t");
                let (target, _) = db.head.get_or_create_series(&labels);
                let mut batch = WalBatch::new("t");
                batch.add_series(target.series_ref(), &labels).unwrap();
                db.head.append_to(&target, &samples).unwrap();
                batch.add_samples(target.series_ref(), &samples);
                let wal = ingester.wal.as_ref().unwrap();
                let lsn = wal.log(&mut batch).unwrap();
                wal.durable(lsn).await.unwrap();
                db.cut_blocks(7_200_000, false, i64::MAX, &ingester.metrics)
                    .await
                    .unwrap_or_else(|e| panic!("{set:?}: periodic cut: {e}"));
                assert_eq!(merged_points(&ingester, "t", "m"), set.to_vec(), "{set:?}");
                ingester
                    .flush_all()
                    .await
                    .unwrap_or_else(|e| panic!("{set:?}: flush: {e}"));
                // Shipped blocks past the local retention leave the ingester.
                assert_eq!(
                    points_anywhere(&ingester, &bucket, "m"),
                    set.to_vec(),
                    "{set:?}"
                );
            }
            let ingester = open_at_epoch(
                IngesterConfig::default(),
                &config,
                &prometheus::Registry::new(),
            )
            .unwrap_or_else(|e| panic!("{set:?}: replay: {e}"));
            assert_eq!(
                points_anywhere(&ingester, &bucket, "m"),
                set.to_vec(),
                "{set:?}"
            );
            ingester
                .flush_all()
                .await
                .unwrap_or_else(|e| panic!("{set:?}: second flush: {e}"));
            assert_eq!(
                points_anywhere(&ingester, &bucket, "m"),
                set.to_vec(),
                "{set:?}"
            );
        }
    }

    fn with_window(ingester: Ingester, window: Duration) -> Ingester {
        let overrides = Arc::new(strata_limits::Overrides::new(Default::default()));
        overrides.replace_tenant_overrides(HashMap::from([(
            "t".to_string(),
            strata_limits::Limits {
                out_of_order_time_window: strata_model::ConfigDuration(window),
                max_global_series_per_user: 0,
                ..Default::default()
            },
        )]));
        let single = crate::series_limits::FixedRingCounts {
            replication_factor: 1,
            healthy_ingesters: 1,
        };
        ingester.with_limits(overrides, Arc::new(single))
    }

    fn push_one(name: &str, points: &[(i64, f64)]) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                samples: points
                    .iter()
                    .map(|&(timestamp, value)| WireSample { timestamp, value })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Late samples within the tenant's window are taken, refused beyond it
    /// with 400 naming the series, survive a restart (WAL), go into the cut
    /// and shipped blocks once each.
    #[tokio::test]
    async fn late_samples_within_the_window_are_kept_through_replay_and_blocks() {
        const MIN: i64 = 60_000;
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        let bucket = dir.path().join("bucket");
        let window = Duration::from_secs(3600);
        let in_order: Vec<(i64, f64)> = (0..=240).map(|i| (i * MIN, i as f64)).collect();
        let late = [(200 * MIN + 30_000, -1.0), (181 * MIN + 1, -2.0)];
        let mut want: Vec<i64> = in_order.iter().chain(&late).map(|p| p.0).collect();
        want.sort_unstable();
        {
            let ingester = with_window(
                open_at_epoch(
                    IngesterConfig::default(),
                    &config,
                    &prometheus::Registry::new(),
                )
                .unwrap(),
                window,
            );
            ingester.push("t", push_one("m", &in_order)).await.unwrap();
            ingester.push("t", push_one("m", &late)).await.unwrap();
            let err = ingester
                .push("t", push_one("m", &[(180 * MIN - 1, 0.0)]))
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest);
            assert!(
                err.message.contains("sample timestamp too old"),
                "{}",
                err.message
            );
            assert!(err.message.contains("m{}"), "{}", err.message);
            assert_eq!(merged_points(&ingester, "t", "m"), want);
        }
        // kill -9 as far as the head knows: only the WAL is left.
        let ingester = with_window(
            open_at_epoch(
                IngesterConfig::default(),
                &config,
                &prometheus::Registry::new(),
            )
            .unwrap(),
            window,
        );
        assert_eq!(merged_points(&ingester, "t", "m"), want);
        ingester.flush_all().await.unwrap();
        assert!(ingester.head("t").is_none_or(|h| h.time_range().is_none()));
        assert_eq!(points_anywhere(&ingester, &bucket, "m"), want);
        // Each shipped sample once: the blocks do not overlap in samples.
        let mut shipped = Vec::new();
        let m = [Matcher::equal("__name__", "m")];
        for entry in std::fs::read_dir(bucket.join("t")).unwrap() {
            if let Ok(reader) = BlockReader::open(&entry.unwrap().path()) {
                shipped.extend(timestamps(&reader.select(&m, i64::MIN, i64::MAX).unwrap()));
            }
        }
        shipped.sort_unstable();
        assert_eq!(shipped, want);
    }

    /// Late samples behind the blocks already cut (a window longer than the
    /// head keeps, or after a flush): taken while within the window of the
    /// head's newest sample, logged apart in the WAL and replayed behind the
    /// bound after a restart, then cut at the next flush into a block of
    /// their own that overlaps the in-order one; the checkpoint after it
    /// lets go of them.
    #[tokio::test]
    async fn late_samples_behind_the_blocks_go_into_blocks_of_their_own() {
        const MIN: i64 = 60_000;
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        let bucket = dir.path().join("bucket");
        let window = Duration::from_secs(3 * 3600);
        let open = || {
            with_window(
                open_at_epoch(
                    IngesterConfig::default(),
                    &config,
                    &prometheus::Registry::new(),
                )
                .unwrap(),
                window,
            )
        };
        let in_order: Vec<(i64, f64)> = (0..=150).map(|i| (i * MIN, i as f64)).collect();
        // Between the in-order samples of the first block's range.
        let late: Vec<(i64, f64)> = (30..=60)
            .step_by(5)
            .map(|i| (i * MIN + 30_000, -(i as f64)))
            .collect();
        let mut want: Vec<i64> = in_order.iter().chain(&late).map(|p| p.0).collect();
        want.sort_unstable();
        {
            let ingester = open();
            ingester.push("t", push_one("m", &in_order)).await.unwrap();
            ingester.flush_all().await.unwrap();
            let head = ingester.head("t").unwrap();
            assert_eq!(head.min_valid_time(), 150 * MIN + 1);
            assert_eq!(head.time_range(), None);
            // Behind the blocks, within three hours of the newest sample.
            ingester.push("t", push_one("m", &late)).await.unwrap();
            assert_eq!(head.oldest_late_sample(), Some(30 * MIN + 30_000));
            let err = ingester
                .push("t", push_one("m", &[(150 * MIN - 180 * MIN - 1, 0.0)]))
                .await
                .unwrap_err();
            assert!(
                err.message.contains("sample timestamp too old"),
                "{}",
                err.message
            );
            assert_eq!(points_anywhere(&ingester, &bucket, "m"), want);
            // A checkpoint meanwhile (another tenant's cut) keeps them.
            ingester.checkpoint_wal().await.unwrap();
        }
        // kill -9: the late samples come back from the WAL, behind the bound
        // the blocks set (local, or shipped and gone from the disk).
        let ingester = open();
        let head = ingester.head("t").unwrap();
        assert_eq!(head.oldest_late_sample(), Some(30 * MIN + 30_000));
        assert_eq!(points_anywhere(&ingester, &bucket, "m"), want);
        let stats = ingester.flush_all().await.unwrap();
        assert_eq!(stats.blocks_written, 1, "{stats:?}");
        assert_eq!(head.oldest_late_sample(), None);
        assert!(head_points(&ingester, "t", "m").is_empty());
        assert_eq!(head.num_series(), 0);
        // The late block covers the first block's range and holds only the
        // late samples; every sample is somewhere, each once.
        let m = [Matcher::equal("__name__", "m")];
        let mut shipped = Vec::new();
        let mut late_blocks = 0;
        for entry in std::fs::read_dir(bucket.join("t")).unwrap() {
            if let Ok(reader) = BlockReader::open(&entry.unwrap().path()) {
                let got = timestamps(&reader.select(&m, i64::MIN, i64::MAX).unwrap());
                if got.iter().all(|t| t % MIN == 30_000) {
                    late_blocks += 1;
                    assert_eq!(got.len(), late.len());
                    assert_eq!(
                        (reader.meta().min_time, reader.meta().max_time),
                        (0, 120 * MIN)
                    );
                }
                shipped.extend(got);
            }
        }
        assert_eq!(late_blocks, 1);
        shipped.sort_unstable();
        assert_eq!(shipped, want);
        assert_eq!(points_anywhere(&ingester, &bucket, "m"), want);
        // The checkpoint after the cut let go of them: nothing comes back
        // into the head, and the blocks answer.
        drop(head);
        drop(ingester);
        let ingester = open();
        assert!(ingester
            .head("t")
            .is_none_or(|h| h.oldest_late_sample().is_none()));
        assert_eq!(points_anywhere(&ingester, &bucket, "m"), want);
    }

    /// `POST /ingester/flush` leaves the last minute in the head, so that a
    /// sender's batches in flight (a few seconds old, older than the newest
    /// sample) are still accepted after it; what is older is cut and shipped.
    #[tokio::test]
    async fn a_flush_keeps_the_last_minute_appendable() {
        const NOW: i64 = 1_800_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        let ingester = Ingester::open(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap()
        .with_clock(|| NOW);
        let samples: Vec<(i64, f64)> = (0..=12)
            .map(|i| (NOW - 120_000 + i * 10_000, i as f64))
            .collect();
        ingester
            .push("t", request(&[("a", &samples)]))
            .await
            .unwrap();
        ingester
            .push("t", request(&[("b", &[(NOW, 1.0)])]))
            .await
            .unwrap();
        let stats = ingester.flush().await.unwrap();
        assert_eq!(stats.blocks_written, 1);
        // A batch in flight: 30 s older than the newest sample, after the cut.
        ingester
            .push("t", request(&[("c", &[(NOW - 30_000, 1.0)])]))
            .await
            .unwrap();
        // Older than the cut: out of bounds, as before.
        let err = ingester
            .push("t", request(&[("d", &[(NOW - 61_000, 1.0)])]))
            .await
            .unwrap_err();
        assert!(err.message.contains("out-of-bounds"), "{}", err.message);
        let bucket = dir.path().join("bucket");
        let cut: Vec<i64> = samples
            .iter()
            .map(|s| s.0)
            .filter(|&t| t < NOW - 60_000)
            .collect();
        let in_blocks = std::fs::read_dir(bucket.join("t")).unwrap().count();
        assert!(in_blocks > 0);
        assert_eq!(
            points_anywhere(&ingester, &bucket, "a"),
            samples.iter().map(|s| s.0).collect::<Vec<_>>()
        );
        // The head still holds the last minute (whole chunks may hold more).
        let head = head_points(&ingester, "t", "a");
        assert!(
            head.contains(&(NOW - 60_000)) && head.contains(&NOW),
            "{head:?}"
        );
        assert!(!cut.is_empty());
    }

    /// One tenant whose cut fails does not keep the others from being cut
    /// and shipped; the flush error names it, and the next flush retries it.
    #[tokio::test]
    async fn a_failing_tenant_does_not_stop_the_others_flush() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        for tenant in ["a", "b", "c"] {
            ingester
                .push(tenant, request(&[("m", &[(1_000, 1.0), (2_000, 2.0)])]))
                .await
                .unwrap();
        }
        ingester
            .db("b")
            .unwrap()
            .fail_next_cut
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let err = ingester.flush_all().await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, IngesterError::Cut { blocks_written: 2, failed } if failed.len() == 1 && failed[0].0 == "b"),
            "{message}"
        );
        assert!(message.contains("tenant(s) b"), "{message}");
        for tenant in ["a", "c"] {
            assert!(
                ingester.head(tenant).unwrap().time_range().is_none()
                    || head_points(&ingester, tenant, "m").is_empty(),
                "{tenant} was not cut"
            );
            assert!(
                std::fs::read_dir(dir.path().join("bucket").join(tenant))
                    .unwrap()
                    .count()
                    > 0,
                "{tenant} was not shipped"
            );
        }
        assert_eq!(head_points(&ingester, "b", "m"), vec![1_000, 2_000]);
        // The next flush cuts and ships it.
        let stats = ingester.flush_all().await.unwrap();
        assert_eq!(stats.blocks_written, 1);
        assert!(head_points(&ingester, "b", "m").is_empty());
    }

    /// The push path refuses what its head could not take: timestamps far
    /// before the newest sample (or, for an empty head, the clock), with the
    /// reason and counted.
    #[tokio::test]
    async fn pushes_older_than_the_head_takes_are_out_of_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        let registry = prometheus::Registry::new();
        let ingester = Ingester::open(IngesterConfig::default(), &config, &registry)
            .unwrap()
            .with_clock(|| 1_800_000_000_000);
        let now = 1_800_000_000_000;
        for t in [
            i64::MIN,
            -1,
            0,
            now - 365 * 86_400_000,
            now - 3 * 3_600_000 - 1,
        ] {
            let err = ingester
                .push("oob-tenant", request(&[("a", &[(t, 1.0)])]))
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{t}");
            assert!(
                err.message.contains("err-strata-sample-out-of-bounds"),
                "{t}: {}",
                err.message
            );
        }
        // An empty head takes a backlog of three hours ...
        ingester
            .push(
                "oob-tenant",
                request(&[("a", &[(now - 3 * 3_600_000 + 1, 1.0)])]),
            )
            .await
            .unwrap();
        ingester
            .push("oob-tenant", request(&[("b", &[(now, 1.0)])]))
            .await
            .unwrap();
        // ... and, once it holds the present, half a range (1 h) behind it.
        let err = ingester
            .push("oob-tenant", request(&[("c", &[(now - 3_600_001, 1.0)])]))
            .await
            .unwrap_err();
        assert!(err.message.contains("out-of-bounds"), "{}", err.message);
        ingester
            .push("oob-tenant", request(&[("c", &[(now - 3_600_000, 1.0)])]))
            .await
            .unwrap();
        let discarded = strata_telemetry::discarded_samples()
            .with_label_values(&["oob-tenant", "sample-out-of-bounds"])
            .get();
        assert_eq!(discarded, 6);
    }

    /// Every sample of `name` the tenant's head and local blocks hold, as
    /// (timestamp, value), sorted.
    fn samples_of(ingester: &Ingester, tenant: &str, name: &str) -> Vec<(i64, f64)> {
        let m = [Matcher::equal("__name__", name)];
        let mut out: Vec<(i64, f64)> = ingester
            .query(tenant, &m, i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .flat_map(|s| s.chunks.iter())
            .flat_map(|c| strata_tsdb::chunk::decode_xor(&c.data).unwrap())
            .map(|s| (s.timestamp_ms, s.value))
            .collect();
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out.dedup();
        out
    }

    /// Copies a directory tree.
    fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// `tests/fixtures/wal-v1` was written by Strata before the shared WAL
    /// (one `<tenant>/wal/` per tenant, records without a tenant): two
    /// tenants, 3 series each, 5 pushes of one sample per series, then
    /// SIGKILL. The first start migrates them into `@wal` and removes the old
    /// directories; every sample survives that start and the next one.
    #[tokio::test]
    async fn per_tenant_wals_of_the_previous_version_are_migrated_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal-v1");
        copy_tree(&fixture, &dir.path().join("tsdb"));
        let check = |ingester: &Ingester| {
            for tenant in ["legacy-a", "legacy-b"] {
                let got = samples_of(ingester, tenant, "legacy_metric");
                assert_eq!(got.len(), 15, "{tenant}: {got:?}");
                let mut values: Vec<f64> = got.iter().map(|s| s.1).collect();
                values.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let mut want: Vec<f64> = (0..5)
                    .flat_map(|i| (0..3).map(move |s| f64::from(i * 10 + s)))
                    .collect();
                want.sort_by(|a, b| a.partial_cmp(b).unwrap());
                assert_eq!(values, want, "{tenant}");
            }
        };
        let registry = prometheus::Registry::new();
        let ingester = Ingester::open(IngesterConfig::default(), &config, &registry).unwrap();
        check(&ingester);
        for tenant in ["legacy-a", "legacy-b"] {
            assert!(
                !dir.path().join("tsdb").join(tenant).join("wal").exists(),
                "{tenant}'s old WAL is removed once migrated"
            );
        }
        assert!(dir.path().join("tsdb/@wal").is_dir());
        drop(ingester);
        let ingester = Ingester::open(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        check(&ingester);
    }

    /// Many tenants share the one WAL: each comes back with exactly its own
    /// samples, and no tenant adds a thread or an open file.
    #[tokio::test]
    async fn many_tenants_share_one_wal_and_each_replays_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        for t in 0..200 {
            let tenant = format!("t{t}");
            let samples = [(1000, f64::from(t)), (2000, f64::from(t) + 0.5)];
            ingester
                .push(&tenant, request(&[("m", &samples)]))
                .await
                .unwrap();
        }
        let wal_dirs: Vec<_> = std::fs::read_dir(dir.path().join("tsdb"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            wal_dirs,
            vec!["@wal".to_string()],
            "no directory per tenant before a block is cut"
        );
        drop(ingester);
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        for t in 0..200 {
            let tenant = format!("t{t}");
            assert_eq!(
                samples_of(&ingester, &tenant, "m"),
                vec![(1000, f64::from(t)), (2000, f64::from(t) + 0.5)],
                "{tenant}"
            );
        }
    }

    /// A tenant idle past `close_idle_tsdb_timeout`, its blocks shipped, is
    /// closed (no head, no directory); its next push opens it again, still
    /// refusing what its shipped blocks hold, and what it pushes then
    /// survives a restart.
    #[tokio::test]
    async fn an_idle_shipped_tenant_is_closed_and_opens_again_on_its_next_push() {
        static NOW: AtomicI64 = AtomicI64::new(10_000_000);
        let dir = tempfile::tempdir().unwrap();
        let mut config = storage(dir.path(), Duration::from_secs(7200));
        config.tsdb.close_idle_tsdb_timeout = strata_model::ConfigDuration(Duration::from_secs(60));
        config.tsdb.retention_period = strata_model::ConfigDuration(Duration::ZERO);
        let ingester = Ingester::open(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap()
        .with_clock(|| NOW.load(Ordering::SeqCst));
        ingester
            .push("idle", request(&[("m", &[(9_000_000, 1.0)])]))
            .await
            .unwrap();
        ingester
            .push("busy", request(&[("m", &[(9_000_000, 2.0)])]))
            .await
            .unwrap();
        ingester.flush_all().await.unwrap();
        assert!(dir.path().join("tsdb/idle").is_dir());
        let settings = ingester.storage.clone().unwrap();
        NOW.fetch_add(30_000, Ordering::SeqCst);
        ingester.compact_heads(&settings).await;
        assert!(ingester.db("idle").is_some(), "not idle long enough yet");
        NOW.fetch_add(60_000, Ordering::SeqCst);
        ingester
            .push("busy", request(&[("m", &[(10_050_000, 3.0)])]))
            .await
            .unwrap();
        ingester.compact_heads(&settings).await;
        assert!(ingester.db("idle").is_none(), "closed");
        assert!(
            !dir.path().join("tsdb/idle").exists(),
            "its directory removed"
        );
        assert!(
            ingester.db("busy").is_some(),
            "a tenant that pushed stays open"
        );
        // Back on its next push, refusing what its blocks hold.
        let err = ingester
            .push("idle", request(&[("m", &[(9_000_000, 5.0)])]))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{}", err.message);
        ingester
            .push("idle", request(&[("m", &[(10_060_000, 6.0)])]))
            .await
            .unwrap();
        drop(ingester);
        let ingester = Ingester::open(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        assert_eq!(samples_of(&ingester, "idle", "m"), vec![(10_060_000, 6.0)]);
        assert_eq!(samples_of(&ingester, "busy", "m"), vec![(10_050_000, 3.0)]);
    }

    #[tokio::test]
    async fn a_reopened_ingester_has_every_accepted_sample_and_no_rejected_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        {
            let ingester = open_at_epoch(
                IngesterConfig::default(),
                &config,
                &prometheus::Registry::new(),
            )
            .unwrap();
            ingester
                .push(
                    "t",
                    request(&[("a", &[(1, 1.0), (2, 2.0)]), ("b", &[(5, 1.0)])]),
                )
                .await
                .unwrap();
            // 3 accepted, 1 rejected (out of order), the rest not looked at.
            let err = ingester
                .push("t", request(&[("a", &[(3, 3.0), (1, 9.0), (4, 4.0)])]))
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest);
            ingester
                .push("u", request(&[("a", &[(10, 1.0)])]))
                .await
                .unwrap();
        }
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        assert_eq!(points(&ingester, "t", "a"), vec![1, 2, 3]);
        assert_eq!(points(&ingester, "t", "b"), vec![5]);
        assert_eq!(points(&ingester, "u", "a"), vec![10]);
        // New series after a restart get fresh refs; a second restart agrees.
        ingester
            .push("t", request(&[("c", &[(7, 1.0)]), ("a", &[(8, 1.0)])]))
            .await
            .unwrap();
        drop(ingester);
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        assert_eq!(points(&ingester, "t", "a"), vec![1, 2, 3, 8]);
        assert_eq!(points(&ingester, "t", "c"), vec![7]);
    }

    #[tokio::test]
    async fn a_series_the_wal_cannot_record_never_enters_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(7200));
        // A label value past the WAL's record size: refused before the head
        // creates the series, so no later sample can be logged against a
        // series the WAL never saw.
        let huge = "x".repeat(40 << 20);
        {
            let ingester = open_at_epoch(
                IngesterConfig::default(),
                &config,
                &prometheus::Registry::new(),
            )
            .unwrap();
            let err = ingester
                .push("t", request(&[(huge.as_str(), &[(1, 1.0)])]))
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{}", err.message);
            // Again: had the first push left the series in the head, this one
            // would be acknowledged and its sample lost on restart.
            let err = ingester
                .push("t", request(&[(huge.as_str(), &[(2, 1.0)])]))
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{}", err.message);
            assert!(points(&ingester, "t", &huge).is_empty());
            ingester
                .push("t", request(&[("ok", &[(2, 1.0)])]))
                .await
                .unwrap();
        }
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        assert_eq!(points(&ingester, "t", "ok"), vec![2]);
        assert!(points(&ingester, "t", &huge).is_empty());
    }

    #[tokio::test]
    async fn local_blocks_are_queried_before_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(60));
        // Recent data (within the local retention): 250 s at 1 s, so whole
        // chunks of the cut ranges leave the head.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let start = (now - 300_000) / 60_000 * 60_000;
        let samples: Vec<(i64, f64)> = (0..250).map(|i| (start + i * 1000, i as f64)).collect();
        let want: Vec<i64> = samples.iter().map(|s| s.0).collect();
        {
            let ingester = open_at_epoch(
                IngesterConfig::default(),
                &config,
                &prometheus::Registry::new(),
            )
            .unwrap();
            ingester
                .push("t", request(&[("m", &samples)]))
                .await
                .unwrap();
            let db = ingester.db("t").unwrap();
            let cut = db
                .cut_blocks(60_000, false, i64::MAX, &ingester.metrics)
                .await
                .unwrap();
            assert!(!cut.is_empty());
            assert!(head_points(&ingester, "t", "m").len() < want.len());
            assert_eq!(merged_points(&ingester, "t", "m"), want);
        }
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        assert!(head_points(&ingester, "t", "m").len() < want.len());
        assert_eq!(
            merged_points(&ingester, "t", "m"),
            want,
            "head and reopened blocks"
        );
    }

    #[tokio::test]
    async fn blocks_are_cut_shipped_and_the_head_and_wal_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path(), Duration::from_secs(60));
        let range = 60_000i64;
        let ingester = Arc::new(
            open_at_epoch(
                IngesterConfig::default(),
                &config,
                &prometheus::Registry::new(),
            )
            .unwrap(),
        );
        // 0 .. 100 s, one sample a second: spans more than 1.5 ranges.
        let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
        ingester
            .push("t", request(&[("old", &samples[..10]), ("m", &samples)]))
            .await
            .unwrap();
        let db = ingester.tenant_dbs.read().get("t").cloned().unwrap();
        let blocks = db
            .cut_blocks(range, false, i64::MAX, &ingester.metrics)
            .await
            .unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!((blocks[0].min_time, blocks[0].max_time), (0, range));
        assert_eq!(blocks[0].stats.num_samples, 70);
        // "old" only had samples in the block: gone from the head, and still
        // answered from the local block (queriers ask ingesters for the
        // recent hours, store-gateways only for older data).
        assert!(head_points(&ingester, "t", "old").is_empty());
        let first_ten: Vec<i64> = (0..10).map(|i| i * 1000).collect();
        assert_eq!(points(&ingester, "t", "old"), first_ten);
        let m = [Matcher::equal("__name__", "old")];
        assert_eq!(
            ingester
                .series("t", &[m.to_vec()], 0, 10_000)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            ingester
                .label_values("t", "__name__", &[], 0, 10_000)
                .unwrap(),
            vec!["m".to_string(), "old".to_string()]
        );
        assert_eq!(
            ingester
                .push("t", request(&[("m", &[(59_000, 1.0)])]))
                .await
                .unwrap_err()
                .code,
            ErrorCode::BadRequest
        );
        let stats = ingester.flush_all().await.unwrap();
        assert_eq!(stats.blocks_written, 1);
        assert_eq!(stats.blocks_shipped, 2);
        let bucket = config.bucket().unwrap();
        assert_eq!(bucket.list_blocks("t").await.unwrap().len(), 2);
        assert!(ingester.head("t").unwrap().time_range().is_none());
        // Shipping again uploads nothing; a restart neither replays the cut
        // samples into the head nor re-ships.
        assert_eq!(ingester.flush_all().await.unwrap(), FlushStats::default());
        drop(db);
        drop(ingester);
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        // The shipped blocks hold data from 1970, far past the local
        // retention, so shipping deleted them: their samples are the
        // store-gateways' to serve now, and the ingester has none left.
        assert_eq!(head_points(&ingester, "t", "m"), Vec::<i64>::new());
        assert_eq!(points(&ingester, "t", "m"), Vec::<i64>::new());
        assert_eq!(ingester.flush_all().await.unwrap(), FlushStats::default());
        ingester
            .push("t", request(&[("m", &[(200_000, 1.0)])]))
            .await
            .unwrap();
        assert_eq!(points(&ingester, "t", "m"), vec![200_000]);
    }
}

#[cfg(test)]
mod wal_and_metrics_tests {
    use super::durability_tests::open_at_epoch;
    use super::*;
    use strata_proto::prometheus::{Label, Sample as WireSample, TimeSeries};

    fn request(name: &str, samples: &[(i64, f64)]) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                samples: samples
                    .iter()
                    .map(|(t, v)| WireSample {
                        timestamp: *t,
                        value: *v,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn storage(dir: &std::path::Path) -> BlocksStorageConfig {
        let mut c = BlocksStorageConfig::default();
        c.tsdb.dir = dir.join("tsdb").display().to_string();
        c.tsdb.block_ranges_period = strata_model::ConfigDuration(Duration::from_secs(60));
        c.filesystem.dir = dir.join("bucket").display().to_string();
        c
    }

    /// The value of an unlabelled metric family (counter, gauge, or a
    /// histogram's sample count).
    fn value(registry: &prometheus::Registry, name: &str) -> f64 {
        let family = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("no metric {name}"));
        let m = &family.get_metric()[0];
        match family.get_field_type() {
            prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
            prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
            _ => m.get_histogram().get_sample_count() as f64,
        }
    }

    #[tokio::test]
    async fn wal_cut_ship_and_replay_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let config = storage(dir.path());
        let registry = prometheus::Registry::new();
        let ingester = open_at_epoch(IngesterConfig::default(), &config, &registry).unwrap();
        let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
        ingester.push("t", request("m", &samples)).await.unwrap();
        // One batch: a series record and a samples record.
        assert_eq!(
            value(&registry, "strata_ingester_wal_records_written_total"),
            2.0
        );
        assert!(value(&registry, "strata_ingester_wal_written_bytes_total") > 1000.0);
        assert!(value(&registry, "strata_ingester_wal_fsyncs_total") >= 1.0);
        assert!(value(&registry, "strata_ingester_wal_fsync_duration_seconds") >= 1.0);
        let stats = ingester.flush_all().await.unwrap();
        assert_eq!(stats.blocks_written, 2);
        assert_eq!(value(&registry, "strata_ingester_blocks_cut_total"), 2.0);
        assert_eq!(
            value(&registry, "strata_ingester_shipper_uploads_total"),
            2.0
        );
        assert_eq!(
            value(&registry, "strata_ingester_shipper_upload_failures_total"),
            0.0
        );
        assert!(
            value(
                &registry,
                "strata_ingester_shipper_last_successful_upload_timestamp_seconds"
            ) > 1.7e9
        );
        assert_eq!(
            value(&registry, "strata_ingester_flush_duration_seconds"),
            1.0
        );
        drop(ingester);

        // The checkpoint after the cut holds no sample: nothing to replay.
        let registry = prometheus::Registry::new();
        let ingester = open_at_epoch(IngesterConfig::default(), &config, &registry).unwrap();
        assert!(value(&registry, "strata_ingester_wal_replayed_records_total") >= 1.0);
        assert_eq!(
            value(&registry, "strata_ingester_wal_corruptions_total"),
            0.0
        );
        // Nothing left of the tenant but its bound: kept closed, no head.
        assert!(ingester.head("t").is_none());
        // And the bound came back with it: what the blocks hold is refused.
        assert_eq!(
            ingester
                .push("t", request("m", &[(50_000, 1.0)]))
                .await
                .unwrap_err()
                .code,
            ErrorCode::BadRequest
        );
    }

    #[tokio::test]
    async fn without_the_wal_nothing_is_written_or_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = storage(dir.path());
        config.tsdb.wal_enabled = false;
        let registry = prometheus::Registry::new();
        let ingester = open_at_epoch(IngesterConfig::default(), &config, &registry).unwrap();
        ingester.push("t", request("m", &[(1, 1.0)])).await.unwrap();
        assert_eq!(
            value(&registry, "strata_ingester_wal_written_bytes_total"),
            0.0
        );
        assert!(!dir.path().join("tsdb/t/wal").exists());
        drop(ingester);
        let ingester = open_at_epoch(
            IngesterConfig::default(),
            &config,
            &prometheus::Registry::new(),
        )
        .unwrap();
        assert!(ingester.head("t").is_none_or(|h| h.num_series() == 0));
    }
}
