//! The compactor as a service of the process. Alone on a bucket (in-memory
//! ring, one process) it compacts every tenant; sharing the bucket (a KV store
//! such as etcd) every compactor joins the compactor ring and compacts only
//! the tenants whose hash lands on it, so several compactors never merge the
//! same blocks. A start that fails after the ring join leaves the ring: the
//! manager does not stop a service whose own start failed, and an entry left
//! JOINING would hold its tokens until an operator forgets it.

use std::sync::Arc;

use strata_ring::{Membership, Operation, Registration, Ring, RingConfig, RingError};
use strata_service::{BoxError, Service, Stop};
use strata_status::{Coded, ErrorCode};

use crate::compactor::{Compactor, TenantOwnership};

/// What can stop the compactor service.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("compactor.data_dir {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("joining the compactor ring: {0}")]
    Join(#[source] RingError),
    #[error("becoming ACTIVE in the compactor ring: {0}")]
    Activate(#[source] RingError),
    #[error("leaving the compactor ring: {0}")]
    Leave(#[source] RingError),
}

impl Coded for LifecycleError {
    /// The data directory is the process's own disk; the ring steps are
    /// writes to its KV store, which failing is out of reach (or refusing).
    fn code(&self) -> ErrorCode {
        match self {
            LifecycleError::DataDir { .. } => ErrorCode::Internal,
            LifecycleError::Join(_) | LifecycleError::Activate(_) | LifecycleError::Leave(_) => {
                ErrorCode::Unavailable
            }
        }
    }
}

/// A tenant belongs to the first compactor clockwise from its hash.
#[derive(Debug)]
pub struct RingOwnership {
    ring: Ring,
    instance_id: String,
}

impl RingOwnership {
    pub fn new(ring: Ring, instance_id: impl Into<String>) -> Self {
        Self {
            ring,
            instance_id: instance_id.into(),
        }
    }
}

impl TenantOwnership for RingOwnership {
    fn owns(&self, tenant: &str) -> bool {
        let token = strata_model::shard_token_of(tenant, std::iter::empty());
        self.ring.get(token, Operation::Read).is_ok_and(|set| {
            set.instances
                .first()
                .is_some_and(|i| i.id == self.instance_id)
        })
    }
}

/// The compactor ring's settings from the ingester ring's: the same KV store,
/// heartbeats and instance identity; one owner per tenant; fresh tokens on
/// every start.
pub fn compactor_ring_config(base: &RingConfig) -> RingConfig {
    RingConfig {
        replication_factor: 1,
        zone_awareness_enabled: false,
        tokens_file_path: None,
        unregister_on_shutdown: true,
        ..base.clone()
    }
}

/// See the module's documentation.
#[derive(Debug)]
pub struct CompactorService {
    compactor: Arc<Compactor>,
    /// With a shared bucket: its place in the compactor ring.
    membership: Option<Membership>,
}

impl CompactorService {
    /// `sharing`: the compactor ring's registration and ring copy when
    /// several compactors share the bucket; the compactor then compacts only
    /// the tenants it owns.
    pub fn new(compactor: Compactor, sharing: Option<(Registration, Ring)>) -> Self {
        match sharing {
            None => Self {
                compactor: Arc::new(compactor),
                membership: None,
            },
            Some((registration, ring)) => {
                let ownership = RingOwnership::new(ring, registration.config.instance_id.clone());
                Self {
                    compactor: Arc::new(compactor.with_ownership(Arc::new(ownership))),
                    membership: Some(Membership::new(registration)),
                }
            }
        }
    }

    pub fn compactor(&self) -> Arc<Compactor> {
        self.compactor.clone()
    }
}

#[async_trait::async_trait]
impl Service for CompactorService {
    async fn starting(&self) -> Result<(), BoxError> {
        // Found now rather than at the first pass, an hour later.
        let dir = &self.compactor.config().data_dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| LifecycleError::DataDir {
                path: dir.clone(),
                source,
            })?;
        if let Some(membership) = &self.membership {
            membership.join().await.map_err(LifecycleError::Join)?;
            if let Err(e) = membership.activate().await {
                if let Err(leave) = membership.leave().await {
                    tracing::warn!(error = %leave, "compactor: could not leave the ring after a failed start");
                }
                return Err(LifecycleError::Activate(e).into());
            }
        }
        Ok(())
    }

    async fn running(&self, stop: Stop) -> Result<(), BoxError> {
        let passes = self.compactor.clone().spawn(stop.receiver());
        strata_service::watch_loops(stop, vec![passes]).await?;
        Ok(())
    }

    async fn stopping(&self) -> Result<(), BoxError> {
        if let Some(membership) = &self.membership {
            membership.leave().await.map_err(LifecycleError::Leave)?;
        }
        Ok(())
    }

    fn not_ready(&self) -> Option<String> {
        self.membership.as_ref().and_then(Membership::not_active)
    }
}

#[cfg(test)]
mod tests {
    use strata_limits::Overrides;
    use strata_ring::{InstanceState, KvError, KvStore, KvWatch, MemoryKv, RingDesc, Versioned};
    use strata_storage::Bucket;

    use super::*;
    use crate::config::CompactorConfig;

    const KEY: &str = "rings/compactor";

    /// The in-memory store, refusing any write that shows `c-1` ACTIVE: the
    /// activation, the step after the join, fails.
    #[derive(Debug)]
    struct NoActivation(MemoryKv);

    #[async_trait::async_trait]
    impl KvStore for NoActivation {
        async fn compare_and_put(
            &self,
            key: &str,
            expected: i64,
            value: Vec<u8>,
        ) -> Result<Option<i64>, KvError> {
            let desc = RingDesc::decode(key, &value)?;
            match desc.instances.get("c-1") {
                Some(c) if c.state == InstanceState::Active => Err(KvError::CasConflict {
                    key: key.to_string(),
                    attempts: 1,
                }),
                _ => self.0.compare_and_put(key, expected, value).await,
            }
        }
        async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, KvError> {
            self.0.put(key, value).await
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
    async fn a_failed_activation_leaves_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let config = CompactorConfig {
            data_dir: dir.path().join("work").display().to_string(),
            ..CompactorConfig::default()
        };
        let compactor = Compactor::new(
            config,
            Bucket::new(Arc::new(bucket)),
            Arc::new(Overrides::new(Default::default())),
            &prometheus::Registry::new(),
        )
        .unwrap();
        let kv: Arc<dyn KvStore> = Arc::new(NoActivation(MemoryKv::new()));
        let ring_config = compactor_ring_config(&RingConfig {
            instance_id: "c-1".into(),
            instance_addr: "127.0.0.1:9095".into(),
            num_tokens: 4,
            ..RingConfig::default()
        });
        let ring = Ring::new(&ring_config, kv.clone(), KEY).await.unwrap();
        let registration = Registration {
            config: ring_config,
            kv: kv.clone(),
            key: KEY.to_string(),
        };
        let service = CompactorService::new(compactor, Some((registration, ring)));

        let err = service.starting().await.unwrap_err();
        assert!(err.to_string().starts_with("becoming ACTIVE"), "{err}");
        let stored = kv.get(KEY).await.unwrap().unwrap();
        let left = RingDesc::decode(KEY, &stored.value).unwrap();
        assert_eq!(
            left.instances.get("c-1").map(|c| c.state),
            None,
            "the compactor is still in the ring"
        );
    }

    #[test]
    fn the_data_dir_is_ours_the_ring_unavailable() {
        let dir = LifecycleError::DataDir {
            path: "/data".into(),
            source: std::io::Error::other("read-only"),
        };
        assert_eq!(dir.code(), ErrorCode::Internal);
        assert_eq!(
            LifecycleError::Join(RingError::Stopped).code(),
            ErrorCode::Unavailable
        );
    }
}
