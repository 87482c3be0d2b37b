//! The compactor as a service of the process. Alone on a bucket (in-memory
//! ring, one process) it compacts every tenant; sharing the bucket (a KV store
//! such as etcd) every compactor joins the compactor ring and compacts only
//! the tenants whose hash lands on it, so several compactors never merge the
//! same blocks.

use std::sync::Arc;

use strata_ring::{Membership, Operation, Registration, Ring, RingConfig, RingError};
use strata_service::{BoxError, Service, Stop};

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
            membership
                .activate()
                .await
                .map_err(LifecycleError::Activate)?;
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
