//! The store-gateway as a service of the process: while starting it joins the
//! store-gateway ring, loads the blocks it owns (the first sync: the process
//! is not ready before it), then becomes ACTIVE; it keeps syncing while
//! running, and leaves the ring on stop.

use std::sync::Arc;

use strata_ring::{Membership, Registration, Ring, RingError};
use strata_service::{BoxError, Service, Stop};

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
}

#[async_trait::async_trait]
impl Service for StoreGatewayService {
    async fn starting(&self) -> Result<(), BoxError> {
        self.membership.join().await.map_err(LifecycleError::Join)?;
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
            .map_err(LifecycleError::Activate)?;
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
