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

/// A component's client factory, as the caller's trait `C`: `local` for
/// `own_address`, else one `remote` connects with `options`.
fn factory<Client, C>(
    own_address: &str,
    local: Option<Client>,
    remote: fn(&str, &ClientOptions) -> Result<Client, ServiceError>,
    options: ClientOptions,
    erase: fn(Arc<Client>) -> Arc<C>,
) -> strata_ring::ClientFactory<C, ServiceError>
where
    Client: 'static,
    C: ?Sized + Send + Sync + 'static,
{
    let local = local.map(|client| erase(Arc::new(client)));
    local_or_remote(own_address, local, move |address: &str| {
        Ok(erase(Arc::new(remote(address, &options)?)))
    })
}

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
    let local = ingester.map(IngesterClient::in_process);
    factory(own_address, local, IngesterClient::remote, options, erase)
}

/// Makes a client for the store-gateway at an address; `store` is this
/// process's own.
pub(crate) fn store_gateways(
    own_address: &str,
    store: Option<Arc<BucketStore>>,
    options: ClientOptions,
) -> strata_querier::StoreGatewayClientFactory {
    let local = store.map(StoreGatewayClient::in_process);
    factory(
        own_address,
        local,
        StoreGatewayClient::remote,
        options,
        |client| client,
    )
}
