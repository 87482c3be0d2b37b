//! Wiring of the store-gateway module: its bucket store, ring membership and
//! sync loop, and how this process's querier reaches store-gateways (its own
//! in-process, through the same gRPC service trait as a remote call; others
//! over gRPC).

use std::sync::Arc;

use prometheus::Registry;
use strata_proto::ingester::StreamSeries;
use strata_proto::storegateway::store_gateway_server::StoreGateway as StoreGatewayApi;
use strata_proto::storegateway::{LabelNamesRequest, LabelValuesRequest, SeriesRequest};

use strata_status::ServiceError;
use strata_store_gateway::{BucketStore, ShardingStrategy, StoreGatewayGrpc, StoreMetrics};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppError;
use crate::config::Config;
use crate::in_process::{collect_series, request};

/// A running store-gateway.
pub(crate) struct StoreGateway {
    pub(crate) store: Arc<BucketStore>,
    pub(crate) lifecycler: strata_ring::Lifecycler,
}

/// Joins the store-gateway ring, loads the blocks this instance owns (the
/// first sync finishes before the process reports ready), becomes ACTIVE and
/// keeps syncing.
pub(crate) async fn start(
    config: &Config,
    ring_config: &strata_ring::RingConfig,
    kv: Arc<dyn strata_ring::KvStore>,
    ring: strata_ring::Ring,
    registry: &Registry,
    shutdown: watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<StoreGateway, AppError> {
    let module = |e: String| AppError::Module(format!("store-gateway: {e}"));
    let bucket = config
        .blocks_storage
        .bucket()
        .map_err(|e| module(e.to_string()))?;
    let metrics = StoreMetrics::new(registry).map_err(|e| module(e.to_string()))?;
    let key = ring_config.kvstore.ring_key("store-gateway");
    let lifecycler = strata_ring::Lifecycler::start(ring_config, kv, key)
        .await
        .map_err(|e| module(format!("joining the ring: {e}")))?;
    // The ring copy must show this instance before ownership is decided.
    ring.refresh()
        .await
        .map_err(|e| module(format!("reading the ring: {e}")))?;
    let sharding = ShardingStrategy::new(
        ring,
        ring_config.instance_id.clone(),
        ring_config.replication_factor,
    );
    let store = Arc::new(BucketStore::new(
        bucket,
        config.blocks_storage.bucket_store.clone(),
        metrics,
        Some(sharding),
    ));
    match store.sync().await {
        Ok(stats) => tracing::info!(?stats, "store-gateway loaded its blocks"),
        // Serve what loaded; the next sync retries the rest.
        Err(e) => tracing::warn!(error = %e, "store-gateway: the first sync failed"),
    }
    lifecycler
        .activate()
        .await
        .map_err(|e| module(format!("activating in the ring: {e}")))?;
    tasks.push(store.spawn_sync_loop(shutdown));
    Ok(StoreGateway { store, lifecycler })
}

/// Every store-gateway of the ring, this process's own in-process.
pub(crate) fn query_set(
    config: &Config,
    own: Option<&StoreGateway>,
    ring: strata_ring::Ring,
    own_addr: &str,
) -> Arc<dyn strata_querier::StoreGatewayQuery> {
    let local = own.map(|sg| Arc::new(InProcessStoreGateway::new(sg.store.clone())));
    let own_addr = own_addr.to_string();
    let client_config = config.querier.store_gateway_client.clone();
    let factory: strata_querier::StoreGatewayClientFactory = Arc::new(move |addr: &str| {
        if let (Some(local), true) = (&local, addr == own_addr) {
            return Ok(local.clone() as Arc<dyn strata_querier::StoreGatewayQuery>);
        }
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        Ok(Arc::new(strata_querier::GrpcStoreGatewayQuery::new(
            &uri,
            &client_config,
        )?) as Arc<dyn strata_querier::StoreGatewayQuery>)
    });
    Arc::new(strata_querier::StoreGatewaySet::new(
        ring,
        strata_querier::StoreGatewayClientPool::new(factory),
    ))
}

/// The process's own store-gateway, called through its gRPC service trait.
#[derive(Debug, Clone)]
struct InProcessStoreGateway {
    service: StoreGatewayGrpc,
}

impl InProcessStoreGateway {
    fn new(store: Arc<BucketStore>) -> Self {
        Self {
            service: StoreGatewayGrpc::new(store),
        }
    }
}

#[async_trait::async_trait]
impl strata_querier::StoreGatewayQuery for InProcessStoreGateway {
    async fn series(
        &self,
        tenant: &str,
        message: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let stream = self
            .service
            .series(request(tenant, message)?)
            .await?
            .into_inner();
        collect_series(stream, |batch| batch.series).await
    }

    async fn label_names(
        &self,
        tenant: &str,
        message: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = self.service.label_names(request(tenant, message)?).await?;
        Ok(response.into_inner().label_names)
    }

    async fn label_values(
        &self,
        tenant: &str,
        message: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let response = self.service.label_values(request(tenant, message)?).await?;
        Ok(response.into_inner().label_values)
    }
}
