//! The choice of in-process or remote clients: a module that calls another
//! component gets, for each address of that component's ring, the
//! component's own client — in-process for this process's own address when
//! the process runs the component (`-target=all`), over gRPC otherwise
//! ([`strata_grpc_client::local_or_remote`] decides, the same way for every
//! component).

use std::sync::Arc;

use strata_grpc_client::{local_or_remote, ClientOptions};
use strata_ingester::{Ingester, IngesterClient};
use strata_service::Slot;
use strata_status::ServiceError;
use strata_store_gateway::{BucketStore, StoreGatewayClient};

/// Makes a client for the ingester at an address, as the caller's trait
/// (`erase`: the distributor's `IngesterPush`, the querier's
/// `IngesterQuery`). `ingester` is this process's own, once it has replayed
/// its WAL.
pub(crate) fn ingesters<C>(
    own_address: &str,
    ingester: Option<Slot<Ingester>>,
    options: ClientOptions,
    erase: fn(Arc<IngesterClient>) -> Arc<C>,
) -> strata_ring::ClientFactory<C, ServiceError>
where
    C: ?Sized + Send + Sync + 'static,
{
    let local = ingester.map(|slot| erase(Arc::new(IngesterClient::in_process(slot))));
    local_or_remote(own_address, local, move |address: &str| {
        Ok(erase(Arc::new(IngesterClient::remote(address, &options)?)))
    })
}

/// Every store-gateway of `ring` as one, this process's own (`store`)
/// in-process.
pub(crate) fn store_gateways(
    own_address: &str,
    store: Option<Arc<BucketStore>>,
    ring: strata_ring::Ring,
    options: ClientOptions,
) -> Arc<dyn strata_querier::StoreGatewayQuery> {
    type Query = dyn strata_querier::StoreGatewayQuery;
    let local = store.map(|store| Arc::new(StoreGatewayClient::in_process(store)) as Arc<Query>);
    let factory = local_or_remote(own_address, local, move |address: &str| {
        Ok(Arc::new(StoreGatewayClient::remote(address, &options)?) as Arc<Query>)
    });
    Arc::new(strata_querier::StoreGatewaySet::new(
        ring,
        strata_querier::StoreGatewayClientPool::new(factory),
    ))
}
