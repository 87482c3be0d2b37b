//! Building each module of a process: its service, its HTTP routes and gRPC
//! service, and the choice between in-process and remote clients. What all
//! modules share — the metrics registry, the per-tenant overrides, the ring's
//! KV store and the local copy of the ingester ring, the authenticator — is
//! made once, here.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use prometheus::Registry;
use strata_ring::{KvStoreKind, Registration, Ring, RingConfig};
use strata_service::{BoxError, Service, Slot, StatusBoard};
use strata_store_gateway::{BucketStore, ShardingStrategy, StoreMetrics};

use crate::addresses::socket_addr;
use crate::config::effective_ring_config;
use crate::config::Config;
use crate::error::AppError;
use crate::http_server::{HttpServerLimits, HttpServerMetrics};
use crate::limits::{runtime_config_service, IngesterRingCounts};
use crate::modules::Module;
use crate::pages;
use crate::servers::{GrpcServerService, GrpcServices, HttpServerService};

/// The modules' shared parts, and what the modules built so far contributed.
pub struct Wiring {
    config: Config,
    registry: Registry,
    overrides: Arc<strata_limits::Overrides>,
    ring_config: RingConfig,
    kv: Arc<dyn strata_ring::KvStore>,
    ingester_ring: Ring,
    ingester_ring_counts: Arc<IngesterRingCounts>,
    authenticator: strata_auth::Authenticator,
    router: Router,
    grpc: GrpcServices,
    /// This process's ingester, once it has replayed its WAL.
    ingester: Option<Slot<strata_ingester::Ingester>>,
    store_gateway: Option<Arc<BucketStore>>,
    store_gateway_ring: Option<Ring>,
    pages: Vec<(&'static str, &'static str)>,
    /// When the process started, Unix ms (`status/runtimeinfo`).
    started_ms: i64,
}

/// The HTTP server, and the gRPC server when a module serves gRPC.
pub type Servers = (Arc<dyn Service>, Option<Arc<dyn Service>>);

/// A module's construction failed.
fn failed(module: Module) -> impl Fn(BoxError) -> AppError {
    move |source| AppError::Wiring { module, source }
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> BoxError {
    Box::new(e)
}

impl Wiring {
    pub async fn new(config: &Config) -> Result<Self, AppError> {
        let ring_config = effective_ring_config(config);
        let ring_failed = failed(Module::Ingester);
        // One KV client for the process; with the in-memory store this is
        // also what makes the ingester and the distributor see one ring.
        let kv = strata_ring::new_kv_store(&ring_config.kvstore)
            .await
            .map_err(|e| ring_failed(format!("the ring's KV store: {e}").into()))?;
        // Every module keeps a local copy of the ingester ring: distributors
        // and queriers route by it, every process serves its page and metrics.
        let ingester_ring = Ring::new(
            &ring_config,
            kv.clone(),
            ring_config.kvstore.ring_key("ingester"),
        )
        .await
        .map_err(|e| ring_failed(format!("reading the ingester ring: {e}").into()))?;
        let registry = Registry::new();
        strata_ring::http::spawn_ring_metrics(ingester_ring.clone(), &registry)
            .map_err(|e| ring_failed(boxed(e)))?;
        let ingester_ring_counts = Arc::new(IngesterRingCounts::default());
        ingester_ring_counts.set_ring(ingester_ring.clone());
        // How routes decide a request's tenant: trust the header, or (with
        // `auth.enabled`) check a credential; one for the process, so the
        // tenants file is read and watched once.
        let authenticator =
            strata_auth::Authenticator::new(&config.auth, config.multitenancy_enabled, &registry)
                .map_err(|e| failed(Module::HttpServer)(format!("auth: {e}").into()))?;
        Ok(Self {
            overrides: Arc::new(strata_limits::Overrides::new(config.limits.clone())),
            config: config.clone(),
            registry,
            ring_config,
            kv,
            ingester_ring,
            ingester_ring_counts,
            authenticator,
            router: Router::new(),
            grpc: GrpcServices::default(),
            ingester: None,
            store_gateway: None,
            store_gateway_ring: None,
            pages: Vec::new(),
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        })
    }

    fn registration(&self, config: &RingConfig, ring: &str) -> Registration {
        Registration {
            config: config.clone(),
            kv: self.kv.clone(),
            key: self.ring_config.kvstore.ring_key(ring),
        }
    }

    /// Whether other processes can share this one's rings (and bucket).
    fn shared_ring(&self) -> bool {
        self.ring_config.kvstore.store == KvStoreKind::Etcd
    }

    /// Builds `module` (not a server: see [`Wiring::servers`]); modules it
    /// depends on were built before it.
    pub async fn build(&mut self, module: Module) -> Result<Option<Arc<dyn Service>>, AppError> {
        let fail = failed(module);
        let config = self.config.clone();
        let service: Option<Arc<dyn Service>> = match module {
            Module::RuntimeConfig => Some(Arc::new(runtime_config_service(
                &config.runtime_config,
                self.overrides.clone(),
                self.registry.clone(),
            ))),
            Module::Ingester => {
                let registration = self.registration(&self.ring_config, "ingester");
                let service = strata_ingester::IngesterService::new(
                    config.ingester.clone(),
                    config.blocks_storage.clone(),
                    self.registry.clone(),
                    registration,
                )
                .with_limits(self.overrides.clone(), self.ingester_ring_counts.clone());
                let slot = service.slot();
                self.grpc.ingester = Some(strata_ingester::grpc_service(slot.clone()));
                self.router =
                    std::mem::take(&mut self.router).merge(strata_ingester::router(slot.clone()));
                self.pages.push((
                    "/ingester/flush",
                    "POST: cut the heads into blocks and ship them",
                ));
                self.ingester = Some(slot);
                Some(Arc::new(service))
            }
            Module::StoreGateway => {
                let ring_config = config.store_gateway.ring_config(&self.ring_config);
                let ring = self.store_gateway_ring().await.map_err(&fail)?;
                let bucket = config.blocks_storage.bucket().map_err(|e| fail(boxed(e)))?;
                let metrics = StoreMetrics::new(&self.registry).map_err(|e| fail(boxed(e)))?;
                let sharding = ShardingStrategy::new(
                    ring.clone(),
                    ring_config.instance_id.clone(),
                    ring_config.replication_factor,
                );
                let store = Arc::new(BucketStore::new(
                    bucket,
                    config.blocks_storage.bucket_store.clone(),
                    metrics,
                    Some(sharding),
                ));
                self.grpc.store_gateway = Some(strata_store_gateway::grpc_service(store.clone()));
                self.store_gateway = Some(store.clone());
                let registration = self.registration(&ring_config, "store-gateway");
                Some(Arc::new(strata_store_gateway::StoreGatewayService::new(
                    store,
                    ring,
                    registration,
                )))
            }
            Module::Distributor => {
                let clients = crate::clients::ingesters::<dyn strata_distributor::IngesterPush>(
                    &self.ring_config.instance_addr,
                    self.ingester.clone(),
                    strata_distributor::push_client_options(
                        config.ingester_client.remote_timeout.0,
                    ),
                    |client| client,
                );
                let service = strata_distributor::DistributorService::new(
                    config.distributor.clone(),
                    self.overrides.clone(),
                    self.ingester_ring.clone(),
                    clients,
                    (self.kv.clone(), &self.ring_config.kvstore.prefix),
                    &self.registry,
                )
                .map_err(|e| fail(boxed(e)))?;
                if config.distributor.ha_tracker.enable_ha_tracker {
                    self.pages.push((
                        "/distributor/ha_tracker",
                        "the HA tracker: each tenant's clusters and elected replica",
                    ));
                }
                self.router = std::mem::take(&mut self.router).merge(strata_distributor::router(
                    service.distributor(),
                    self.authenticator.resolver(strata_auth::Scope::Write),
                ));
                Some(Arc::new(service))
            }
            Module::Querier => {
                let ingesters = crate::clients::ingesters::<dyn strata_querier::IngesterQuery>(
                    &self.ring_config.instance_addr,
                    self.ingester.clone(),
                    config.querier.ingester_client.client_options(),
                    |client| client,
                );
                // Blocks are read when a store-gateway can exist: this
                // process's, or others' through a shared (etcd) ring.
                let store_gateways = if self.store_gateway.is_some() || self.shared_ring() {
                    let ring = self.store_gateway_ring().await.map_err(&fail)?;
                    let clients = crate::clients::store_gateways(
                        &self.ring_config.instance_addr,
                        self.store_gateway.clone(),
                        config.querier.store_gateway_client.client_options(),
                    );
                    let bucket = config.blocks_storage.bucket().map_err(|e| fail(boxed(e)))?;
                    let bucket_store = &config.blocks_storage.bucket_store;
                    let finder = strata_querier::BlocksFinder::new(
                        bucket,
                        bucket_store.sync_interval.0,
                        bucket_store.ignore_deletion_mark_delay.0,
                    );
                    let set = strata_querier::StoreGatewaySet::new(
                        ring,
                        strata_querier::StoreGatewayClientPool::new(clients),
                        Arc::new(finder),
                        &self.registry,
                    )
                    .map_err(|e| fail(boxed(e)))?
                    .hedging(Some(config.querier.store_gateway_hedging_delay.0));
                    Some(set)
                } else {
                    None
                };
                let service = strata_querier::QuerierService::new(
                    config.querier.clone(),
                    self.overrides.clone(),
                    self.ingester_ring.clone(),
                    ingesters,
                    store_gateways,
                )
                .map_err(|e| fail(boxed(e)))?;
                let process = strata_querier::ProcessStatus {
                    config_yaml: crate::config::masked_yaml(&config),
                    flags: crate::config::flag_values(&config),
                    start_time_ms: self.started_ms,
                    cwd: std::env::current_dir()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default(),
                    storage_retention: config.limits.compactor_blocks_retention_period.to_string(),
                };
                self.router = std::mem::take(&mut self.router).merge(strata_querier::router(
                    service.querier(),
                    self.authenticator.resolver(strata_auth::Scope::Read),
                    Arc::new(process),
                ));
                self.pages.push((
                    "/prometheus/api/v1/status/buildinfo",
                    "the Prometheus query API (also under /api/v1)",
                ));
                Some(Arc::new(service))
            }
            Module::Compactor => {
                let bucket = config.blocks_storage.bucket().map_err(|e| fail(boxed(e)))?;
                let compactor = strata_compactor::Compactor::new(
                    config.compactor.clone(),
                    bucket,
                    self.overrides.clone(),
                    &self.registry,
                )
                .map_err(|e| fail(boxed(e)))?;
                let sharing = if self.shared_ring() {
                    let ring_config = strata_compactor::compactor_ring_config(&self.ring_config);
                    let registration = self.registration(&ring_config, "compactor");
                    let ring = Ring::new(&ring_config, self.kv.clone(), registration.key.clone())
                        .await
                        .map_err(|e| fail(format!("reading the compactor ring: {e}").into()))?;
                    Some((registration, ring))
                } else {
                    None
                };
                let service = strata_compactor::CompactorService::new(compactor, sharing);
                self.router = std::mem::take(&mut self.router)
                    .merge(strata_compactor::router(service.compactor()));
                self.pages
                    .push(("/compactor/run", "POST: run a compaction pass now"));
                Some(Arc::new(service))
            }
            Module::HttpServer | Module::GrpcServer => None,
        };
        Ok(service)
    }

    /// The local copy of the store-gateway ring (one per process: the
    /// store-gateway and the querier read the same).
    async fn store_gateway_ring(&mut self) -> Result<Ring, BoxError> {
        if let Some(ring) = &self.store_gateway_ring {
            return Ok(ring.clone());
        }
        let ring_config = self.config.store_gateway.ring_config(&self.ring_config);
        let key = self.ring_config.kvstore.ring_key("store-gateway");
        let ring = Ring::new(&ring_config, self.kv.clone(), key)
            .await
            .map_err(|e| format!("reading the store-gateway ring: {e}"))?;
        self.store_gateway_ring = Some(ring.clone());
        Ok(ring)
    }

    /// The process's own routes (status pages, `/ready` from `status`) added
    /// to every module's, with the request metrics around them all.
    pub fn finish_router(
        &mut self,
        config: &Config,
        status: Slot<StatusBoard>,
    ) -> Result<Router, AppError> {
        let fail = failed(Module::HttpServer);
        strata_telemetry::register_shared(&self.registry).map_err(|e| fail(boxed(e)))?;
        let mut pages: Vec<(&'static str, &'static str)> = vec![
            ("/ready", "readiness (200 when ready, else 503 and why)"),
            ("/metrics", "this process's metrics, Prometheus text format"),
            ("/config", "the running config, secrets masked"),
            ("/runtime_config", "the per-tenant overrides in force"),
            (
                "/ingester/ring",
                "the ingester ring: instances, states, tokens; forget an instance",
            ),
        ];
        let mut router = std::mem::take(&mut self.router);
        if let Some(ring) = &self.store_gateway_ring {
            pages.push((
                "/store-gateway/ring",
                "the store-gateway ring: instances, states, tokens; forget an instance",
            ));
            let timeout = config.store_gateway.sharding_ring.heartbeat_timeout.0;
            router = router.merge(strata_ring::http::router_at(
                "/store-gateway/ring",
                ring.clone(),
                timeout,
            ));
        }
        pages.append(&mut self.pages);
        let registry = Arc::new(self.registry.clone());
        let router = router
            .merge(crate::limits::router(self.overrides.clone()))
            .merge(strata_ring::http::router(
                self.ingester_ring.clone(),
                self.ring_config.heartbeat_timeout.0,
            ))
            .route(
                "/",
                get(pages::show_index).with_state(Arc::new(pages::index_page(&pages))),
            )
            .route("/ready", get(pages::ready).with_state(status))
            .route("/metrics", get(pages::metrics).with_state(registry))
            .route(
                "/config",
                get(pages::show_config).with_state(Arc::new(crate::config::masked_yaml(config))),
            );
        // With auth on, every route (and the 404 fallback) is admitted by
        // the route table of `access` first; off, nothing changes.
        let router = if self.authenticator.is_enabled() {
            router.layer(axum::middleware::from_fn_with_state(
                self.authenticator.clone(),
                crate::access::admit,
            ))
        } else {
            router
        };
        let router = router.layer(axum::middleware::from_fn(
            strata_telemetry::observe_http_request,
        ));
        Ok(router)
    }

    /// The HTTP server with `router`, and the gRPC server when a module of
    /// this process serves gRPC.
    pub fn servers(&mut self, config: &Config, router: Router) -> Result<Servers, AppError> {
        let server = &config.server;
        let limits = HttpServerLimits {
            idle_timeout: server.http_server_idle_timeout.0,
            read_timeout: server.http_server_read_timeout.0,
            write_timeout: server.http_server_write_timeout.0,
            max_connections: server.http_server_max_connections,
        };
        let metrics = HttpServerMetrics::new(&self.registry)
            .map_err(|e| failed(Module::HttpServer)(boxed(e)))?;
        let router = crate::http_server::with_request_timeouts(router, &limits);
        let http = HttpServerService::new(
            socket_addr(&server.http_listen_address, server.http_listen_port)?,
            router,
            limits,
            metrics,
            server.graceful_shutdown_timeout.0,
        );
        let grpc_services = std::mem::take(&mut self.grpc);
        let grpc = if grpc_services.is_empty() {
            None
        } else {
            Some(Arc::new(GrpcServerService::new(
                socket_addr(&server.grpc_listen_address, server.grpc_listen_port)?,
                grpc_services,
                server.grpc_server_keepalive_time.0,
                server.grpc_server_keepalive_timeout.0,
            )) as Arc<dyn Service>)
        };
        Ok((Arc::new(http), grpc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_distributor_and_the_querier_are_services_ready_once_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.blocks_storage.tsdb.dir = dir.path().join("tsdb").display().to_string();
        config.blocks_storage.filesystem.dir = dir.path().join("blocks").display().to_string();
        let mut wiring = Wiring::new(&config).await.unwrap();
        for module in [Module::Distributor, Module::Querier] {
            let Some(service) = wiring.build(module).await.unwrap() else {
                panic!("{module} is not a service of the process");
            };
            assert!(
                service.not_ready().is_some(),
                "{module} ready before its start"
            );
            service.starting().await.unwrap();
            assert_eq!(service.not_ready(), None, "{module}");
        }
    }
}
