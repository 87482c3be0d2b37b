//! The distributor as a service of the process. It routes every series by the
//! ingester ring, so it starts by reading that ring and is ready once a read
//! succeeded (until then, `/ready` names it). Its one loop, with the HA
//! tracker on, deletes clusters that stopped sending; nothing to undo on stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_limits::Overrides;
use strata_ring::{KvStore, Ring};
use strata_service::{BoxError, Service, Stop};

use crate::distributor::{Distributor, DistributorConfig};
use crate::error::DistributorError;
use crate::ha_tracker::HaTracker;
use crate::replicated::{PushClientFactory, PushClientPool, ReplicatedPush};

/// How often the HA tracker looks for clusters to delete (each distributor
/// does; the deletes are conditional, so they do not conflict).
const HA_CLEANUP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// reached through the client `clients` makes for its address. With the
    /// HA tracker on, its elections live in `kv` under `<kv_prefix>ha-tracker/`.
    pub fn new(
        config: DistributorConfig,
        overrides: Arc<Overrides>,
        ingester_ring: Ring,
        clients: PushClientFactory,
        (kv, kv_prefix): (Arc<dyn KvStore>, &str),
        registry: &prometheus::Registry,
    ) -> Result<Self, DistributorError> {
        let ingesters = Arc::new(
            ReplicatedPush::new(ingester_ring.clone(), PushClientPool::new(clients))
                .with_inflight_limit(config.max_inflight_push_requests_per_ingester),
        );
        let ha_tracker = config
            .ha_tracker
            .enable_ha_tracker
            .then(|| HaTracker::new(&config.ha_tracker, kv, kv_prefix, registry))
            .transpose()?;
        let mut distributor = Distributor::new(config, overrides, ingesters, registry)?;
        if let Some(tracker) = ha_tracker {
            distributor = distributor.with_ha_tracker(tracker);
        }
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

    async fn running(&self, mut stop: Stop) -> Result<(), BoxError> {
        let Some(tracker) = self.distributor.ha_tracker() else {
            stop.wait().await;
            return Ok(());
        };
        let mut tick = tokio::time::interval(HA_CLEANUP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait() => return Ok(()),
                _ = tick.tick() => {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    match tracker.clean_up(now_ms).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(clusters = n, "deleted HA clusters that stopped sending"),
                        // The next round tries again; pushes do not depend on it.
                        Err(e) => tracing::warn!(error = %e, "cleaning up the HA tracker's entries failed"),
                    }
                }
            }
        }
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
        let ring = Ring::new(&RingConfig::default(), kv.clone(), KEY)
            .await
            .unwrap();
        DistributorService::new(
            DistributorConfig::default(),
            Arc::new(Overrides::new(Default::default())),
            ring,
            nowhere(),
            (kv, ""),
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
