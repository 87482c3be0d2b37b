//! The seam between the querier and the store-gateways, the twin of
//! [`crate::IngesterQuery`]: [`StoreGatewayQuery`] is what the querier asks of
//! "the blocks in object storage"; the store-gateway's own client
//! ([`strata_store_gateway::StoreGatewayClient`], remote or in-process) asks
//! one, and [`StoreGatewaySet`] asks every store-gateway of the ring (each
//! serves the blocks it owns; the querier merges).

use std::fmt;
use std::sync::Arc;

use futures::future::join_all;
use strata_proto::storegateway::{LabelNamesRequest, LabelValuesRequest, SeriesRequest};
use strata_proto::types::StreamSeries;
use strata_ring::{Operation, Ring};
use strata_status::ServiceError;
use strata_store_gateway::StoreGatewayClient;

/// Read access to the blocks in object storage, one tenant per call.
#[async_trait::async_trait]
pub trait StoreGatewayQuery: Send + Sync + fmt::Debug {
    /// Series matching the request with their chunks overlapping [min, max]
    /// (labels only with `skip_chunks`); a series may come several times
    /// (once per block holding it).
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError>;

    /// Label names of the series matching the request, in any order.
    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError>;

    /// Values of one label among the series matching the request.
    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError>;
}

/// One store-gateway, over gRPC or in-process: its own client.
#[async_trait::async_trait]
impl StoreGatewayQuery for StoreGatewayClient {
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        StoreGatewayClient::series(self, tenant, request).await
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        StoreGatewayClient::label_names(self, tenant, request).await
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        StoreGatewayClient::label_values(self, tenant, request).await
    }
}

/// Makes the client for the store-gateway at an address (gRPC, or the
/// process's own store-gateway in-process).
pub type StoreGatewayClientFactory =
    strata_ring::ClientFactory<dyn StoreGatewayQuery, ServiceError>;

/// One client per store-gateway address, made on first use.
pub type StoreGatewayClientPool = strata_ring::ClientPool<dyn StoreGatewayQuery, ServiceError>;

/// Every store-gateway of the ring, as one [`StoreGatewayQuery`]. Each
/// serves the blocks it owns, so all of them are asked and every one must
/// answer: a store-gateway that fails would leave its blocks out, and a
/// query never silently misses data.
#[derive(Debug)]
pub struct StoreGatewaySet {
    ring: Ring,
    pool: StoreGatewayClientPool,
}

impl StoreGatewaySet {
    pub fn new(ring: Ring, pool: StoreGatewayClientPool) -> Self {
        Self { ring, pool }
    }

    async fn fan_out<T, F, Fut>(&self, call: F) -> Result<Vec<T>, ServiceError>
    where
        F: Fn(Arc<dyn StoreGatewayQuery>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let set = self
            .ring
            .all_healthy(Operation::Read)
            .map_err(|e| ServiceError::unavailable(format!("cannot pick store-gateways: {e}")))?;
        if set.instances.is_empty() {
            return Err(ServiceError::unavailable(
                "no healthy store-gateway in the ring: blocks in object storage cannot be read",
            ));
        }
        let calls = set.instances.iter().map(|instance| {
            let client = self.pool.client(&instance.addr);
            let call = &call;
            async move { call(client?).await }
        });
        join_all(calls).await.into_iter().collect()
    }
}

#[async_trait::async_trait]
impl StoreGatewayQuery for StoreGatewaySet {
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.series(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.label_names(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.label_values(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }
}
