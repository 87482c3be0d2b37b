//! How this process's querier reaches store-gateways: its own in-process,
//! through the same gRPC service trait as a remote call; others over gRPC.
//! (The store-gateway's lifecycle is `strata_store_gateway::StoreGatewayService`.)

use std::sync::Arc;

use strata_proto::ingester::StreamSeries;
use strata_proto::storegateway::store_gateway_server::StoreGateway as StoreGatewayApi;
use strata_proto::storegateway::{LabelNamesRequest, LabelValuesRequest, SeriesRequest};

use strata_status::ServiceError;
use strata_store_gateway::{BucketStore, StoreGatewayGrpc};

use crate::config::Config;
use crate::in_process::{collect_series, request};

/// Every store-gateway of the ring, this process's own in-process.
pub(crate) fn query_set(
    config: &Config,
    own: Option<Arc<BucketStore>>,
    ring: strata_ring::Ring,
    own_addr: &str,
) -> Arc<dyn strata_querier::StoreGatewayQuery> {
    let local = own.map(|store| Arc::new(InProcessStoreGateway::new(store)));
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
