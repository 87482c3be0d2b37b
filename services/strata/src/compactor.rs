//! Wiring of the compactor module. Alone on a bucket (in-memory ring, one
//! process) it compacts every tenant; with a shared KV store (etcd) every
//! compactor joins the compactor ring and compacts only the tenants whose hash
//! lands on it, so several `-target=all` processes never merge the same blocks.

use std::sync::Arc;

use prometheus::Registry;
use strata_compactor::{Compactor, TenantOwnership};
use strata_ring::{KvStore, Lifecycler, Operation, Ring, RingConfig};

use crate::app::AppError;
use crate::config::Config;

/// A running compactor and, when it shares the bucket, its ring membership.
pub(crate) struct CompactorModule {
    pub(crate) compactor: Arc<Compactor>,
    pub(crate) lifecycler: Option<Lifecycler>,
}

/// A tenant belongs to the first compactor clockwise from its hash.
#[derive(Debug)]
struct RingOwnership {
    ring: Ring,
    instance_id: String,
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

/// The compactor ring's settings: the ingester ring's KV store, heartbeats and
/// instance identity; one owner per tenant; fresh tokens on every start.
fn compactor_ring_config(base: &RingConfig) -> RingConfig {
    RingConfig {
        replication_factor: 1,
        zone_awareness_enabled: false,
        tokens_file_path: None,
        unregister_on_shutdown: true,
        ..base.clone()
    }
}

pub(crate) async fn start(
    config: &Config,
    ring_config: &RingConfig,
    kv: Arc<dyn KvStore>,
    overrides: Arc<strata_limits::Overrides>,
    registry: &Registry,
) -> Result<CompactorModule, AppError> {
    let module = |e: String| AppError::Module(format!("compactor: {e}"));
    let bucket = config
        .blocks_storage
        .bucket()
        .map_err(|e| module(e.to_string()))?;
    let compactor = Compactor::new(config.compactor.clone(), bucket, overrides, registry)
        .map_err(|e| module(e.to_string()))?;
    if ring_config.kvstore.store != strata_ring::KvStoreKind::Etcd {
        return Ok(CompactorModule {
            compactor: Arc::new(compactor),
            lifecycler: None,
        });
    }
    let ring_config = compactor_ring_config(ring_config);
    let key = ring_config.kvstore.ring_key("compactor");
    let ring = Ring::new(&ring_config, kv.clone(), key.clone())
        .await
        .map_err(|e| module(format!("reading the compactor ring: {e}")))?;
    let lifecycler = Lifecycler::start(&ring_config, kv, key)
        .await
        .map_err(|e| module(format!("joining the compactor ring: {e}")))?;
    lifecycler
        .activate()
        .await
        .map_err(|e| module(format!("activating in the compactor ring: {e}")))?;
    let ownership = RingOwnership {
        ring,
        instance_id: ring_config.instance_id.clone(),
    };
    Ok(CompactorModule {
        compactor: Arc::new(compactor.with_ownership(Arc::new(ownership))),
        lifecycler: Some(lifecycler),
    })
}
