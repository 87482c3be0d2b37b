//! The store-gateway as a service of the process: while starting it joins the
//! store-gateway ring, loads the blocks it owns (the first sync: the process
//! is not ready before it), then becomes ACTIVE; it keeps syncing while
//! running, and leaves the ring on stop. A start that fails after the join
//! leaves the ring too: the manager does not stop a service whose own start
//! failed, and an entry left JOINING would hold its tokens until an operator
//! forgets it.

use std::sync::Arc;

use strata_ring::{Membership, Registration, Ring, RingError};
use strata_service::{BoxError, Service, Stop};
use strata_status::{Coded, ErrorCode};

use crate::store::BucketStore;

/// What can stop the store-gateway service.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("joining the store-gateway ring: {0}")]
    Join(#[source] RingError),
    #[error("reading the store-gateway ring: {0}")]
    ReadRing(#[source] RingError),
    #[error("becoming ACTIVE in the store-gateway ring: {0}")]
    Activate(#[source] RingError),
    #[error("leaving the store-gateway ring: {0}")]
    Leave(#[source] RingError),
}

impl Coded for LifecycleError {
    /// Every step is a write or a read of the ring in its KV store: failing,
    /// the store is out of reach (or refuses), not the caller wrong.
    fn code(&self) -> ErrorCode {
        match self {
            LifecycleError::Join(_)
            | LifecycleError::ReadRing(_)
            | LifecycleError::Activate(_)
            | LifecycleError::Leave(_) => ErrorCode::Unavailable,
        }
    }
}

/// See the module's documentation.
#[derive(Debug)]
pub struct StoreGatewayService {
    store: Arc<BucketStore>,
    /// The ring the store's sharding reads: it must show this instance
    /// before ownership is decided.
    ring: Ring,
    membership: Membership,
}

impl StoreGatewayService {
    pub fn new(store: Arc<BucketStore>, ring: Ring, registration: Registration) -> Self {
        Self {
            store,
            ring,
            membership: Membership::new(registration),
        }
    }

    pub fn store(&self) -> Arc<BucketStore> {
        self.store.clone()
    }

    /// The start after the ring join: ownership needs the ring to show this
    /// instance, the blocks it owns load, then it takes queries.
    async fn start_as_member(&self) -> Result<(), LifecycleError> {
        self.ring
            .refresh()
            .await
            .map_err(LifecycleError::ReadRing)?;
        match self.store.sync().await {
            Ok(stats) => tracing::info!(?stats, "store-gateway loaded its blocks"),
            // Serve what loaded; the next sync retries the rest.
            Err(e) => tracing::warn!(error = %e, "store-gateway: the first sync failed"),
        }
        self.membership
            .activate()
            .await
            .map_err(LifecycleError::Activate)
    }
}

#[async_trait::async_trait]
impl Service for StoreGatewayService {
    async fn starting(&self) -> Result<(), BoxError> {
        self.membership.join().await.map_err(LifecycleError::Join)?;
        if let Err(error) = self.start_as_member().await {
            if let Err(leave) = self.membership.leave().await {
                tracing::warn!(error = %leave, "store-gateway: could not leave the ring after a failed start");
            }
            return Err(error.into());
        }
        Ok(())
    }

    async fn running(&self, stop: Stop) -> Result<(), BoxError> {
        let sync = self.store.spawn_sync_loop(stop.receiver());
        strata_service::watch_loops(stop, vec![sync]).await?;
        Ok(())
    }

    async fn stopping(&self) -> Result<(), BoxError> {
        self.membership
            .leave()
            .await
            .map_err(LifecycleError::Leave)?;
        Ok(())
    }

    fn not_ready(&self) -> Option<String> {
        self.membership.not_active()
    }
}

#[cfg(test)]
mod tests {
    use strata_ring::{InstanceState, KvError, KvStore, KvWatch, MemoryKv, RingConfig, RingDesc};
    use strata_storage::{Bucket, BucketStoreConfig};

    use super::*;
    use crate::metrics::StoreMetrics;

    const KEY: &str = "rings/store-gateway";

    /// The in-memory store, except that it refuses to store `sg-1` ACTIVE:
    /// the start's last step fails after the join succeeded.
    #[derive(Debug)]
    struct RefusesActive(MemoryKv);

    #[async_trait::async_trait]
    impl KvStore for RefusesActive {
        async fn get(&self, key: &str) -> Result<Option<strata_ring::Versioned>, KvError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, KvError> {
            self.0.put(key, value).await
        }
        async fn compare_and_put(
            &self,
            key: &str,
            expected: i64,
            value: Vec<u8>,
        ) -> Result<Option<i64>, KvError> {
            let active = RingDesc::decode(key, &value).is_ok_and(|desc| {
                desc.instances
                    .get("sg-1")
                    .is_some_and(|i| i.state == InstanceState::Active)
            });
            if active {
                return Err(KvError::Timeout {
                    op: "txn",
                    timeout: std::time::Duration::from_millis(1),
                });
            }
            self.0.compare_and_put(key, expected, value).await
        }
        async fn compare_and_delete(&self, key: &str, expected: i64) -> Result<bool, KvError> {
            self.0.compare_and_delete(key, expected).await
        }
        async fn list_prefix(
            &self,
            prefix: &str,
        ) -> Result<Vec<(String, strata_ring::Versioned)>, KvError> {
            self.0.list_prefix(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), KvError> {
            self.0.delete(key).await
        }
        async fn watch_key(&self, key: &str) -> Result<KvWatch, KvError> {
            self.0.watch_key(key).await
        }
    }

    #[tokio::test]
    async fn a_start_that_fails_after_the_join_leaves_the_ring() {
        let kv: Arc<dyn KvStore> = Arc::new(RefusesActive(MemoryKv::new()));
        let config = RingConfig {
            instance_id: "sg-1".into(),
            instance_addr: "127.0.0.1:9095".into(),
            num_tokens: 4,
            ..RingConfig::default()
        };
        let ring = Ring::new(&config, kv.clone(), KEY).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bucket = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let store = Arc::new(BucketStore::new(
            Bucket::new(Arc::new(bucket)),
            BucketStoreConfig {
                sync_dir: dir.path().join("sync").display().to_string(),
                ..BucketStoreConfig::default()
            },
            StoreMetrics::new(&prometheus::Registry::new()).unwrap(),
            None,
        ));
        let registration = Registration {
            config,
            kv: kv.clone(),
            key: KEY.into(),
        };
        let service = StoreGatewayService::new(store, ring, registration);

        let err = service.starting().await.unwrap_err();
        assert!(err.to_string().contains("becoming ACTIVE"), "{err}");
        let stored = kv.get(KEY).await.unwrap().unwrap();
        let desc = RingDesc::decode(KEY, &stored.value).unwrap();
        assert!(
            !desc.instances.contains_key("sg-1"),
            "still in the ring after the failed start: {:?}",
            desc.instances.get("sg-1").map(|i| i.state)
        );
        assert_eq!(
            service.not_ready().as_deref(),
            Some("not in the ring"),
            "{:?}",
            service.not_ready()
        );
    }

    #[test]
    fn ring_failures_are_unavailable() {
        let err = LifecycleError::Activate(RingError::Stopped);
        assert_eq!(err.code(), ErrorCode::Unavailable);
        assert_eq!(
            strata_status::ServiceError::from_coded(&err).message,
            "becoming ACTIVE in the store-gateway ring: the lifecycler is stopped"
        );
    }
}
