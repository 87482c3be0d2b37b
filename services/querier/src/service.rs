//! The querier as a service of the process. It asks the ingesters (and the
//! store-gateways, when blocks are read) that their rings name, so it starts
//! by reading those rings and is ready once every read succeeded (until then,
//! `/ready` names it); it has no loops of its own and nothing to undo on
//! stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_limits::Overrides;
use strata_ring::Ring;
use strata_service::{BoxError, Service};

use crate::config::{ConfigError, QuerierConfig};
use crate::error::StartError;
use crate::querier::Querier;
use crate::replicated::{QueryClientFactory, QueryClientPool, ReplicatedQuery};
use crate::store_gateway::StoreGatewaySet;

/// See the module's documentation.
#[derive(Debug)]
pub struct QuerierService {
    querier: Arc<Querier>,
    /// The rings the querier finds its sources by, with their names.
    rings: Vec<(&'static str, Ring)>,
    /// Whether a read of every ring succeeded since the service started.
    seen_rings: AtomicBool,
}

impl QuerierService {
    /// The querier reading recent data from the ingesters of `ingester_ring`
    /// (each reached through the client its factory makes for its address)
    /// and, with `store_gateways`, blocks through them; within the tenants'
    /// limits from `overrides`.
    pub fn new(
        config: QuerierConfig,
        overrides: Arc<Overrides>,
        ingester_ring: Ring,
        ingesters: QueryClientFactory,
        store_gateways: Option<StoreGatewaySet>,
    ) -> Result<Self, ConfigError> {
        let mut replicated =
            ReplicatedQuery::new(ingester_ring.clone(), QueryClientPool::new(ingesters));
        if config.minimize_ingester_requests {
            replicated =
                replicated.minimizing_requests(config.minimize_ingester_requests_hedging_delay.0);
        }
        let source = Arc::new(replicated);
        let mut querier = Querier::new(config, source)?.with_overrides(overrides);
        let mut rings = vec![("ingester", ingester_ring)];
        if let Some(set) = store_gateways {
            rings.push(("store-gateway", set.ring().clone()));
            querier = querier.with_store_gateways(Arc::new(set));
        }
        Ok(Self {
            querier: Arc::new(querier),
            rings,
            seen_rings: AtomicBool::new(false),
        })
    }

    /// For the query API ([`crate::router`]).
    pub fn querier(&self) -> Arc<Querier> {
        self.querier.clone()
    }
}

#[async_trait::async_trait]
impl Service for QuerierService {
    async fn starting(&self) -> Result<(), BoxError> {
        for (name, ring) in &self.rings {
            ring.refresh()
                .await
                .map_err(|source| StartError::ReadRing { ring: name, source })?;
        }
        self.seen_rings.store(true, Ordering::Release);
        Ok(())
    }

    fn not_ready(&self) -> Option<String> {
        (!self.seen_rings.load(Ordering::Acquire)).then(|| {
            let names: Vec<&str> = self.rings.iter().map(|(name, _)| *name).collect();
            format!("it has not read the {} ring yet", names.join(" and "))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_ring::{KvStore, MemoryKv, RingConfig};
    use strata_status::ServiceError;

    use super::*;
    use crate::store_gateway::{StoreGatewayClientFactory, StoreGatewayClientPool};
    use crate::BlocksFinder;

    async fn ring(kv: &Arc<dyn KvStore>, key: &str) -> Ring {
        Ring::new(&RingConfig::default(), kv.clone(), key)
            .await
            .unwrap()
    }

    fn service(ingesters: Ring, store_gateways: Option<Ring>) -> QuerierService {
        let no_ingester: QueryClientFactory =
            Arc::new(|a: &str| Err(ServiceError::unavailable(format!("no client for {a}"))));
        let no_store_gateway: StoreGatewayClientFactory =
            Arc::new(|a: &str| Err(ServiceError::unavailable(format!("no client for {a}"))));
        QuerierService::new(
            QuerierConfig::default(),
            Arc::new(Overrides::new(Default::default())),
            ingesters,
            no_ingester,
            store_gateways.map(|ring| {
                let bucket = object_store::memory::InMemory::new();
                let bucket = strata_storage::Bucket::new(Arc::new(bucket));
                let finder = BlocksFinder::new(bucket, Duration::from_secs(60), Duration::ZERO);
                let pool = StoreGatewayClientPool::new(no_store_gateway);
                let registry = prometheus::Registry::new();
                StoreGatewaySet::new(ring, pool, Arc::new(finder), &registry).unwrap()
            }),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn ready_once_it_has_read_the_rings() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let service = service(ring(&kv, "ingester").await, None);
        assert_eq!(
            service.not_ready().as_deref(),
            Some("it has not read the ingester ring yet")
        );
        service.starting().await.unwrap();
        assert_eq!(service.not_ready(), None);
    }

    #[tokio::test]
    async fn a_ring_it_cannot_read_fails_the_start_naming_the_ring() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let service = service(
            ring(&kv, "ingester").await,
            Some(ring(&kv, "store-gateway").await),
        );
        assert_eq!(
            service.not_ready().as_deref(),
            Some("it has not read the ingester and store-gateway ring yet")
        );
        kv.put("store-gateway", b"[1,2".to_vec()).await.unwrap();
        let err = service.starting().await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading the store-gateway ring"),
            "{err}"
        );
        assert!(service.not_ready().is_some());
    }
}
