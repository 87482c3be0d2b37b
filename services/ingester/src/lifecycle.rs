//! The ingester as a service of the process: it replays its WAL, joins the
//! ingester ring and becomes ACTIVE while starting; runs its head-compaction
//! and shipping loops; and on stop leaves the ring (so distributors stop
//! sending to it) and, with `flush_on_shutdown`, cuts and ships its heads.
//! The gRPC service, the in-process client and the HTTP routes are built
//! before the start from its [`Slot`] and refuse calls until the replay is
//! done.

use std::sync::Arc;

use strata_limits::Overrides;
use strata_ring::{Membership, Registration, RingError};
use strata_service::{BoxError, Service, Slot, Stop};
use strata_storage::BlocksStorageConfig;

use crate::config::IngesterConfig;
use crate::error::IngesterError;
use crate::ingester::Ingester;
use crate::series_limits::RingCounts;

/// What can stop the ingester service.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("opening the ingester (WAL replay): {0}")]
    Open(#[source] IngesterError),
    #[error("joining the ingester ring: {0}")]
    Join(#[source] RingError),
    #[error("becoming ACTIVE in the ingester ring: {0}")]
    Activate(#[source] RingError),
    #[error("leaving the ingester ring: {0}")]
    Leave(#[source] RingError),
    #[error("flushing the heads on shutdown: {0}")]
    Flush(#[source] IngesterError),
    #[error("the WAL replay's thread stopped: {0}")]
    ReplayThread(#[source] tokio::task::JoinError),
    #[error("the ingester is not open")]
    NotOpen,
}

/// See the module's documentation.
pub struct IngesterService {
    config: IngesterConfig,
    blocks_storage: BlocksStorageConfig,
    registry: prometheus::Registry,
    limits: Option<(Arc<Overrides>, Arc<dyn RingCounts>)>,
    ingester: Slot<Ingester>,
    membership: Membership,
}

impl std::fmt::Debug for IngesterService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngesterService")
            .field(
                "instance",
                &self.membership.registration().config.instance_id,
            )
            .field("ring_state", &self.membership.state())
            .finish_non_exhaustive()
    }
}

impl IngesterService {
    pub fn new(
        config: IngesterConfig,
        blocks_storage: BlocksStorageConfig,
        registry: prometheus::Registry,
        ring: Registration,
    ) -> Self {
        Self {
            config,
            blocks_storage,
            registry,
            limits: None,
            ingester: Slot::default(),
            membership: Membership::new(ring),
        }
    }

    /// Enforce the tenants' series limits (see [`Ingester::with_limits`]).
    pub fn with_limits(mut self, overrides: Arc<Overrides>, ring: Arc<dyn RingCounts>) -> Self {
        self.limits = Some((overrides, ring));
        self
    }

    /// The ingester, once replayed.
    pub fn slot(&self) -> Slot<Ingester> {
        self.ingester.clone()
    }
}

#[async_trait::async_trait]
impl Service for IngesterService {
    async fn starting(&self) -> Result<(), BoxError> {
        let (config, storage, registry) = (
            self.config.clone(),
            self.blocks_storage.clone(),
            self.registry.clone(),
        );
        // Blocking I/O: off the async threads. The ring is joined only after
        // the replay, so no push reaches an ingester that lacks its history.
        let mut ingester =
            tokio::task::spawn_blocking(move || Ingester::open(config, &storage, &registry))
                .await
                .map_err(LifecycleError::ReplayThread)?
                .map_err(LifecycleError::Open)?;
        if let Some((overrides, ring)) = &self.limits {
            ingester = ingester.with_limits(overrides.clone(), ring.clone());
        }
        self.ingester.fill(Arc::new(ingester));
        self.membership.join().await.map_err(LifecycleError::Join)?;
        self.membership
            .activate()
            .await
            .map_err(LifecycleError::Activate)?;
        let ring = &self.membership.registration().config;
        tracing::info!(instance_id = %ring.instance_id, addr = %ring.instance_addr, "ingester is ACTIVE in the ring");
        Ok(())
    }

    async fn running(&self, stop: Stop) -> Result<(), BoxError> {
        let ingester = self.ingester.get().ok_or(LifecycleError::NotOpen)?;
        let loops = ingester.spawn_background(stop.receiver());
        strata_service::watch_loops(stop, loops).await?;
        Ok(())
    }

    async fn stopping(&self) -> Result<(), BoxError> {
        // Leave first, so distributors stop sending here before the flush.
        let left = self.membership.leave().await.map_err(LifecycleError::Leave);
        if let Some(ingester) = self.ingester.get().filter(|i| i.config().flush_on_shutdown) {
            let stats = ingester.flush_all().await.map_err(LifecycleError::Flush)?;
            tracing::info!(?stats, "flushed the heads on shutdown");
        }
        left?;
        Ok(())
    }

    fn not_ready(&self) -> Option<String> {
        self.membership
            .not_active()
            .or_else(|| self.ingester.get().and_then(|i| i.not_ready()))
    }
}
