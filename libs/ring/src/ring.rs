//! The ring client: a local copy of a ring kept current from the KV store,
//! so lookups never wait for the network.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::config::RingConfig;
use crate::desc::{InstanceDesc, RingDesc};
use crate::error::RingError;
use crate::kv::{KvStore, KvValue, KvWatch, Versioned};
use crate::lifecycler::forget_instance;
use crate::replication::{
    Operation, ReplicationOptions, ReplicationSet, RingSnapshot, RingSummary,
};

/// How often the ring is re-read in full, in case a watch silently missed
/// an update.
pub const DEFAULT_RESYNC_PERIOD: Duration = Duration::from_secs(10);

/// A read-only view of one ring, updated in the background from
/// [`KvStore::watch_key`] and a periodic re-read. Cheap to clone; the
/// background task stops when the last clone is dropped.
///
/// Lookups ([`Ring::get`]) work on an immutable [`RingSnapshot`]; a caller
/// doing many lookups for one request (a distributor sharding a batch) should
/// take [`Ring::snapshot`] once and use it for the whole batch.
#[derive(Debug, Clone)]
pub struct Ring {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: String,
    kv: Arc<dyn KvStore>,
    options: ReplicationOptions,
    current: Arc<watch::Sender<Arc<RingSnapshot>>>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ring {
    /// Reads the ring at `key` and starts following it. Fails if the KV
    /// store cannot be reached or the stored ring does not decode.
    pub async fn new(
        config: &RingConfig,
        kv: Arc<dyn KvStore>,
        key: impl Into<String>,
    ) -> Result<Self, RingError> {
        Self::with_resync_period(config, kv, key, DEFAULT_RESYNC_PERIOD).await
    }

    /// [`Ring::new`] with a chosen full re-read period.
    pub async fn with_resync_period(
        config: &RingConfig,
        kv: Arc<dyn KvStore>,
        key: impl Into<String>,
        resync_period: Duration,
    ) -> Result<Self, RingError> {
        config.validate()?;
        let key = key.into();
        let options = config.replication_options();
        let watch = kv.watch_key(&key).await?;
        let initial = kv.get(&key).await?;
        let snapshot = build_snapshot(&key, initial.as_ref(), options)?;
        let current = Arc::new(watch::Sender::new(Arc::new(snapshot)));
        let task = tokio::spawn(follow(
            key.clone(),
            kv.clone(),
            watch,
            current.clone(),
            options,
            resync_period,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                kv,
                options,
                current,
                task,
            }),
        })
    }

    /// The ring's KV key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<RingSnapshot> {
        self.inner.current.borrow().clone()
    }

    /// Notified with each new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<RingSnapshot>> {
        self.inner.current.subscribe()
    }

    /// The replica set for `key`; see [`RingSnapshot::get_at`].
    pub fn get(&self, key: u32, op: Operation) -> Result<ReplicationSet, RingError> {
        self.inner.current.borrow().get(key, op)
    }

    /// Every instance healthy for `op`; see [`RingSnapshot::all_healthy`].
    pub fn all_healthy(&self, op: Operation) -> Result<ReplicationSet, RingError> {
        self.inner.current.borrow().all_healthy(op)
    }

    /// Every healthy instance, tolerating `replication_factor / 2` failures;
    /// see [`RingSnapshot::replication_set_for_operation`].
    pub fn replication_set_for_operation(
        &self,
        op: Operation,
    ) -> Result<ReplicationSet, RingError> {
        self.inner
            .current
            .borrow()
            .replication_set_for_operation(op)
    }

    /// All instances, sorted by ID.
    pub fn instances(&self) -> Vec<Arc<InstanceDesc>> {
        self.inner.current.borrow().instances().to_vec()
    }

    /// The instance with this ID.
    pub fn instance(&self, id: &str) -> Option<Arc<InstanceDesc>> {
        self.inner.current.borrow().instance(id).cloned()
    }

    /// The configured replication factor.
    pub fn replication_factor(&self) -> usize {
        self.inner.options.replication_factor
    }

    /// Whether replicas are spread over zones.
    pub fn zone_awareness_enabled(&self) -> bool {
        self.inner.options.zone_awareness_enabled
    }

    /// Counts for metrics: instances per state, unhealthy ones, tokens, zones.
    pub fn summary(&self) -> RingSummary {
        self.inner.current.borrow().summary()
    }

    /// Re-reads the ring now instead of waiting for the watch.
    pub async fn refresh(&self) -> Result<(), RingError> {
        let value = self.inner.kv.get(&self.inner.key).await?;
        apply(
            &self.inner.key,
            value,
            &self.inner.current,
            self.inner.options,
        )
    }

    /// Removes an instance from the ring (operator action from the `/ring`
    /// page). Returns whether it was there.
    pub async fn forget(&self, instance_id: &str) -> Result<bool, RingError> {
        forget_instance(self.inner.kv.as_ref(), &self.inner.key, instance_id).await
    }
}

fn build_snapshot(
    key: &str,
    value: Option<&Versioned>,
    options: ReplicationOptions,
) -> Result<RingSnapshot, RingError> {
    Ok(match value {
        Some(v) => RingSnapshot::new(&RingDesc::decode_value(key, &v.value)?, options, v.revision),
        None => RingSnapshot::empty(options),
    })
}

/// Publishes `value` unless the current snapshot already reflects its revision.
fn apply(
    key: &str,
    value: Option<Versioned>,
    current: &watch::Sender<Arc<RingSnapshot>>,
    options: ReplicationOptions,
) -> Result<(), RingError> {
    let revision = value.as_ref().map_or(0, |v| v.revision);
    if current.borrow().revision() == revision {
        return Ok(());
    }
    let snapshot = build_snapshot(key, value.as_ref(), options)?;
    current.send_replace(Arc::new(snapshot));
    Ok(())
}

async fn follow(
    key: String,
    kv: Arc<dyn KvStore>,
    mut watch: KvWatch,
    current: Arc<watch::Sender<Arc<RingSnapshot>>>,
    options: ReplicationOptions,
    resync_period: Duration,
) {
    let mut resync = tokio::time::interval(resync_period);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync.tick().await;
    let mut watching = true;
    loop {
        let value = tokio::select! {
            changed = watch.changed(), if watching => match changed {
                Ok(()) => Ok(watch.borrow_and_update().clone()),
                Err(_) => {
                    tracing::warn!(key, "ring watch closed; relying on periodic re-reads");
                    watching = false;
                    continue;
                }
            },
            _ = resync.tick() => kv.get(&key).await.map_err(RingError::from),
        };
        if let Err(err) = value.and_then(|value| apply(&key, value, &current, options)) {
            tracing::warn!(key, error = %err, "could not update the ring; keeping the previous copy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desc::InstanceState;
    use crate::kv::MemoryKv;
    use crate::lifecycler::Lifecycler;
    use strata_model::ConfigDuration;

    const KEY: &str = "strata/rings/ingester";

    fn config(id: &str) -> RingConfig {
        RingConfig {
            instance_id: id.into(),
            instance_addr: format!("{id}:9095"),
            heartbeat_period: ConfigDuration(Duration::from_millis(50)),
            num_tokens: 16,
            replication_factor: 1,
            ..RingConfig::default()
        }
    }

    async fn wait_for(ring: &Ring, what: &str, pred: impl Fn(&RingSnapshot) -> bool) {
        let mut rx = ring.subscribe();
        let result = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| pred(s))).await;
        assert!(matches!(result, Ok(Ok(_))), "timed out waiting for {what}");
    }

    #[tokio::test]
    async fn follows_lifecycler_changes() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let ring = Ring::new(&config(""), kv.clone(), KEY).await.unwrap();
        assert!(matches!(
            ring.get(1, Operation::Write),
            Err(RingError::EmptyRing)
        ));
        assert_eq!(ring.replication_factor(), 1);
        assert!(!ring.zone_awareness_enabled());
        assert_eq!(ring.key(), KEY);

        let lc = Lifecycler::start(&config("ing-1"), kv.clone(), KEY)
            .await
            .unwrap();
        wait_for(&ring, "JOINING", |s| {
            s.instance("ing-1")
                .is_some_and(|i| i.state == InstanceState::Joining)
        })
        .await;
        // JOINING takes no writes.
        assert!(matches!(
            ring.get(1, Operation::Write),
            Err(RingError::TooManyUnhealthy { .. })
        ));

        lc.activate().await.unwrap();
        wait_for(&ring, "ACTIVE", |s| {
            s.instance("ing-1")
                .is_some_and(|i| i.state == InstanceState::Active)
        })
        .await;
        let set = ring.get(12345, Operation::Write).unwrap();
        assert_eq!(set.instances[0].addr, "ing-1:9095");
        assert_eq!(ring.instances().len(), 1);
        assert_eq!(ring.summary().by_state[&InstanceState::Active], 1);
        assert_eq!(
            ring.all_healthy(Operation::Read).unwrap().instances.len(),
            1
        );

        lc.stop().await.unwrap();
        wait_for(&ring, "empty ring", |s| s.instances().is_empty()).await;
    }

    #[tokio::test]
    async fn corrupt_updates_keep_the_previous_copy() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let lc = Lifecycler::start(&config("ing-1"), kv.clone(), KEY)
            .await
            .unwrap();
        let ring = Ring::new(&config(""), kv.clone(), KEY).await.unwrap();
        assert_eq!(ring.instances().len(), 1);
        let before = ring.snapshot().revision();

        kv.put(KEY, b"{ corrupt".to_vec()).await.unwrap();
        // A read of the corrupt value is an error; the ring keeps its copy.
        assert!(ring.refresh().await.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ring.instances().len(), 1);

        // The next heartbeat cannot overwrite corrupt data either (it fails
        // loudly), so an operator fixes the key; the ring follows again.
        assert!(lc.heartbeat().await.is_err());
        // (Its periodic heartbeat re-creates the deleted key.)
        kv.delete(KEY).await.unwrap();
        lc.heartbeat().await.unwrap();
        wait_for(&ring, "instance back", |s| {
            s.instance("ing-1").is_some() && s.revision() > before
        })
        .await;
        assert!(ring.refresh().await.is_ok());

        // Starting a ring client on a corrupt key is an error, not a panic.
        kv.put(KEY, b"[1,2".to_vec()).await.unwrap();
        assert!(Ring::new(&config(""), kv.clone(), KEY).await.is_err());
    }

    #[tokio::test]
    async fn periodic_resync_catches_up_without_a_watch() {
        /// A store whose watches never report anything.
        #[derive(Debug)]
        struct Deaf(MemoryKv);
        #[async_trait::async_trait]
        impl KvStore for Deaf {
            async fn get(&self, key: &str) -> Result<Option<Versioned>, crate::KvError> {
                self.0.get(key).await
            }
            async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, crate::KvError> {
                self.0.put(key, value).await
            }
            async fn compare_and_put(
                &self,
                key: &str,
                expected: i64,
                value: Vec<u8>,
            ) -> Result<Option<i64>, crate::KvError> {
                self.0.compare_and_put(key, expected, value).await
            }
            async fn compare_and_delete(
                &self,
                key: &str,
                expected: i64,
            ) -> Result<bool, crate::KvError> {
                self.0.compare_and_delete(key, expected).await
            }
            async fn list_prefix(
                &self,
                prefix: &str,
            ) -> Result<Vec<(String, crate::Versioned)>, crate::KvError> {
                self.0.list_prefix(prefix).await
            }
            async fn delete(&self, key: &str) -> Result<(), crate::KvError> {
                self.0.delete(key).await
            }
            async fn watch_key(&self, _key: &str) -> Result<KvWatch, crate::KvError> {
                Ok(watch::channel(None).1)
            }
        }
        let kv: Arc<dyn KvStore> = Arc::new(Deaf(MemoryKv::new()));
        let ring =
            Ring::with_resync_period(&config(""), kv.clone(), KEY, Duration::from_millis(50))
                .await
                .unwrap();
        let _lc = Lifecycler::start(&config("ing-1"), kv.clone(), KEY)
            .await
            .unwrap();
        wait_for(&ring, "resync", |s| s.instance("ing-1").is_some()).await;
    }
}
