//! The distributor as a service of the process. It routes every series by the
//! ingester ring, so it starts by reading that ring and is ready once a read
//! succeeded (until then, `/ready` names it); it has no loops of its own and
//! nothing to undo on stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_limits::Overrides;
use strata_ring::Ring;
use strata_service::{BoxError, Service};

use crate::distributor::{Distributor, DistributorConfig};
use crate::error::DistributorError;
use crate::replicated::{PushClientFactory, PushClientPool, ReplicatedPush};

/// See the module's documentation.
#[derive(Debug)]
pub struct DistributorService {
    distributor: Arc<Distributor>,
    /// The ingester ring the pushes are routed by.
    ring: Ring,
    /// Whether a read of `ring` succeeded since the service started.
    seen_ring: AtomicBool,
}

impl DistributorService {
    /// The distributor pushing to the ingesters of `ingester_ring`, each
    /// reached through the client `clients` makes for its address.
    pub fn new(
        config: DistributorConfig,
        overrides: Arc<Overrides>,
        ingester_ring: Ring,
        clients: PushClientFactory,
        registry: &prometheus::Registry,
    ) -> Result<Self, DistributorError> {
        let ingesters = Arc::new(ReplicatedPush::new(
            ingester_ring.clone(),
            PushClientPool::new(clients),
        ));
        let distributor = Distributor::new(config, overrides, ingesters, registry)?;
        Ok(Self {
            distributor: Arc::new(distributor),
            ring: ingester_ring,
            seen_ring: AtomicBool::new(false),
        })
    }

    /// For the push routes ([`crate::router`]).
    pub fn distributor(&self) -> Arc<Distributor> {
        self.distributor.clone()
    }
}

#[async_trait::async_trait]
impl Service for DistributorService {
    async fn starting(&self) -> Result<(), BoxError> {
        self.ring
            .refresh()
            .await
            .map_err(DistributorError::ReadRing)?;
        self.seen_ring.store(true, Ordering::Release);
        Ok(())
    }

    fn not_ready(&self) -> Option<String> {
        (!self.seen_ring.load(Ordering::Acquire))
            .then(|| "it has not read the ingester ring yet".to_string())
    }
}

#[cfg(test)]
mod tests {
    use strata_ring::{KvStore, MemoryKv, RingConfig};
    use strata_status::ServiceError;

    use super::*;

    fn nowhere() -> PushClientFactory {
        Arc::new(|address: &str| {
            Err(ServiceError::unavailable(format!(
                "no client for {address}"
            )))
        })
    }

    const KEY: &str = "rings/ingester";

    async fn service(kv: Arc<dyn KvStore>) -> DistributorService {
        let ring = Ring::new(&RingConfig::default(), kv, KEY).await.unwrap();
        DistributorService::new(
            DistributorConfig::default(),
            Arc::new(Overrides::new(Default::default())),
            ring,
            nowhere(),
            &prometheus::Registry::new(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn ready_once_it_has_read_the_ring() {
        let service = service(Arc::new(MemoryKv::new())).await;
        assert_eq!(
            service.not_ready().as_deref(),
            Some("it has not read the ingester ring yet")
        );
        service.starting().await.unwrap();
        assert_eq!(service.not_ready(), None);
    }

    #[tokio::test]
    async fn a_ring_it_cannot_read_fails_the_start() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let service = service(kv.clone()).await;
        kv.put(KEY, b"{ not a ring".to_vec()).await.unwrap();
        let err = service.starting().await.unwrap_err();
        assert!(
            err.to_string().starts_with("reading the ingester ring"),
            "{err}"
        );
        assert!(service.not_ready().is_some());
    }
}
