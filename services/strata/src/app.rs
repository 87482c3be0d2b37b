//! Starting and stopping the modules of one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{HistogramVec, Registry};
use tokio::sync::watch;

use crate::config::Config;
use crate::in_process::InProcessIngester;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("invalid listen address {0}")]
    BadAddress(String),
    #[error("{0}")]
    Module(String),
}

/// Runs the configured modules until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), AppError> {
    let registry = Registry::new();
    let started = Instant::now();
    tracing::info!(target_modules = %config.target, version = env!("CARGO_PKG_VERSION"), "starting strata");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    // Per-tenant limits: the config's defaults and the runtime file's overrides.
    let overrides = Arc::new(strata_limits::Overrides::new(config.limits.clone()));
    tasks.extend(
        crate::limits::start(
            &config.runtime_config,
            overrides.clone(),
            &registry,
            shutdown_rx.clone(),
        )
        .await
        .map_err(AppError::Module)?,
    );
    let ingester_ring_counts = Arc::new(crate::limits::IngesterRingCounts::default());

    // Ingester first: the distributor and querier depend on it.
    let ingester = if config.runs("ingester") {
        // Replays every tenant's WAL before anything is served: the ingester
        // joins the ring (and becomes ACTIVE) only after this.
        let ingester_config = config.ingester.clone();
        let blocks_storage = config.blocks_storage.clone();
        let ingester_registry = registry.clone();
        let ingester = tokio::task::spawn_blocking(move || {
            strata_ingester::Ingester::open(ingester_config, &blocks_storage, &ingester_registry)
        })
        .await
        .map_err(|e| AppError::Module(format!("ingester: {e}")))?
        .map_err(|e| AppError::Module(format!("ingester: {e}")))?
        .with_limits(overrides.clone(), ingester_ring_counts.clone());
        let ingester = Arc::new(ingester);
        tasks.extend(ingester.spawn_background(shutdown_rx.clone()));
        Some(ingester)
    } else {
        None
    };

    let in_process = ingester
        .as_ref()
        .map(|i| Arc::new(InProcessIngester::new(i.clone())));
    let ring_config = effective_ring_config(&config);
    let ring_key = ring_config.kvstore.ring_key("ingester");
    // One KV client for the process; with the in-memory store this is also
    // what makes the ingester and the distributor see the same ring.
    let kv = strata_ring::new_kv_store(&ring_config.kvstore)
        .await
        .map_err(|e| AppError::Module(format!("ingester ring KV store: {e}")))?;

    // The store-gateway: joins its own ring (same KV store), loads the blocks
    // it owns, then becomes ACTIVE; queriers ask every store-gateway.
    let store_gateway_ring_config = config.store_gateway.ring_config(&ring_config);
    let store_gateway_ring = strata_ring::Ring::new(
        &store_gateway_ring_config,
        kv.clone(),
        ring_config.kvstore.ring_key("store-gateway"),
    )
    .await
    .map_err(|e| AppError::Module(format!("reading the store-gateway ring: {e}")))?;
    let store_gateway = if config.runs("store-gateway") {
        Some(
            crate::store_gateway::start(
                &config,
                &store_gateway_ring_config,
                kv.clone(),
                store_gateway_ring.clone(),
                &registry,
                shutdown_rx.clone(),
                &mut tasks,
            )
            .await?,
        )
    } else {
        None
    };

    // One gRPC server for the ingester and store-gateway services.
    if ingester.is_some() || store_gateway.is_some() {
        let addr = socket_addr(
            &config.server.grpc_listen_address,
            config.server.grpc_listen_port,
        )?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AppError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        tracing::info!(%addr, "gRPC server listening");
        let ingester_service = ingester
            .as_ref()
            .map(|i| strata_ingester::grpc_service(i.clone()));
        let store_gateway_service = store_gateway
            .as_ref()
            .map(|sg| strata_store_gateway::grpc_service(sg.store.clone()));
        let grpc_keepalive_time = config.server.grpc_server_keepalive_time.0;
        let grpc_keepalive_timeout = config.server.grpc_server_keepalive_timeout.0;
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let result = tonic::transport::Server::builder()
                // Dead peers (a crashed distributor, a black-holed network)
                // are found by HTTP/2 pings, not kept forever.
                .http2_keepalive_interval(Some(grpc_keepalive_time))
                .http2_keepalive_timeout(Some(grpc_keepalive_timeout))
                // Each call a span (`ingester.Push`) in the caller's trace.
                .layer(strata_telemetry::GrpcServerTraceLayer::new("ingester"))
                .layer(strata_telemetry::GrpcServerMetricsLayer)
                .add_optional_service(ingester_service)
                .add_optional_service(store_gateway_service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "gRPC server failed");
            }
        }));
    }

    let lifecycler = if ingester.is_some() {
        let lifecycler = strata_ring::Lifecycler::start(&ring_config, kv.clone(), ring_key.clone())
            .await
            .map_err(|e| AppError::Module(format!("ingester: joining the ring: {e}")))?;
        lifecycler
            .activate()
            .await
            .map_err(|e| AppError::Module(format!("ingester: activating in the ring: {e}")))?;
        tracing::info!(instance_id = %ring_config.instance_id, addr = %ring_config.instance_addr, "ingester is ACTIVE in the ring");
        Some(lifecycler)
    } else {
        None
    };

    // Every module keeps a local copy of the ring: distributors and queriers
    // route by it, and every process serves the ring page and its metrics.
    let ring = strata_ring::Ring::new(&ring_config, kv.clone(), ring_key.clone())
        .await
        .map_err(|e| AppError::Module(format!("reading the ingester ring: {e}")))?;
    ingester_ring_counts.set_ring(ring.clone());
    crate::ring_page::spawn_ring_metrics(ring.clone(), &registry)
        .map_err(|e| AppError::Module(format!("ring metrics: {e}")))?;
    let own_addr = ring_config.instance_addr.clone();
    // How the HTTP routes decide a request's tenant: trust the header, or (with
    // `auth.enabled`) check a credential from the tenants file. One for the
    // process, so the file is read and watched once.
    let authenticator = strata_auth::Authenticator::new(&config.auth, config.multitenancy_enabled)
        .map_err(|e| AppError::Module(format!("auth: {e}")))?;
    let mut router = Router::new();

    if config.runs("distributor") {
        let remote_timeout = config.ingester_client.remote_timeout.0;
        let local = in_process.clone();
        let own = own_addr.clone();
        let factory: strata_distributor::PushClientFactory = Arc::new(move |addr: &str| {
            if let (Some(local), true) = (&local, addr == own) {
                return Ok(local.clone() as Arc<dyn strata_distributor::IngesterPush>);
            }
            Ok(Arc::new(strata_distributor::GrpcIngesterPush::new(
                addr,
                remote_timeout,
            )?) as Arc<dyn strata_distributor::IngesterPush>)
        });
        let push = Arc::new(strata_distributor::ReplicatedPush::new(
            ring.clone(),
            strata_distributor::PushClientPool::new(factory),
        ));
        let distributor = strata_distributor::Distributor::new(
            config.distributor.clone(),
            overrides.clone(),
            push,
            &registry,
        )
        .map_err(|e| AppError::Module(format!("distributor: {e}")))?;
        router = router.merge(strata_distributor::router(
            Arc::new(distributor),
            authenticator.resolver(strata_auth::Scope::Write),
        ));
    }

    if config.runs("querier") {
        let local = in_process.clone();
        let own = own_addr.clone();
        let client_config = config.querier.ingester_client.clone();
        let factory: strata_querier::QueryClientFactory = Arc::new(move |addr: &str| {
            if let (Some(local), true) = (&local, addr == own) {
                return Ok(local.clone() as Arc<dyn strata_querier::IngesterQuery>);
            }
            Ok(Arc::new(strata_querier::GrpcIngesterQuery::new(
                &grpc_uri(addr),
                &client_config,
            )?) as Arc<dyn strata_querier::IngesterQuery>)
        });
        let source = Arc::new(strata_querier::ReplicatedQuery::new(
            ring.clone(),
            strata_querier::QueryClientPool::new(factory),
        ));
        let mut querier = strata_querier::Querier::new(config.querier.clone(), source)
            .map_err(|e| AppError::Module(e.to_string()))?
            .with_overrides(overrides.clone());
        // Blocks are read when a store-gateway can exist: this process's, or
        // others' through a shared (etcd) ring.
        if store_gateway.is_some() || ring_config.kvstore.store == strata_ring::KvStoreKind::Etcd {
            querier = querier.with_store_gateways(crate::store_gateway::query_set(
                &config,
                store_gateway.as_ref(),
                store_gateway_ring.clone(),
                &own_addr,
            ));
        }
        let api = strata_querier::router(
            Arc::new(querier),
            authenticator.resolver(strata_auth::Scope::Read),
        );
        router = router.merge(api);
    }

    if let Some(ingester) = &ingester {
        router = router.route(
            "/ingester/flush",
            axum::routing::post(flush_ingester).with_state(ingester.clone()),
        );
    }
    let compactor = if config.runs("compactor") {
        let module = crate::compactor::start(
            &config,
            &ring_config,
            kv.clone(),
            overrides.clone(),
            &registry,
        )
        .await?;
        tasks.push(module.compactor.clone().spawn(shutdown_rx.clone()));
        router = router.merge(strata_compactor::router(module.compactor.clone()));
        Some(module)
    } else {
        None
    };
    router = router.merge(crate::limits::router(overrides.clone()));
    router = router.merge(crate::ring_page::router(
        ring.clone(),
        ring_config.heartbeat_timeout.0,
    ));

    let registry = Arc::new(registry);
    strata_telemetry::register_shared(&registry).map_err(|e| AppError::Module(e.to_string()))?;
    let request_duration = strata_telemetry::request_duration().clone();

    let mut pages: Vec<(&'static str, &'static str)> = vec![
        ("/ready", "readiness (200 when ready)"),
        ("/metrics", "this process's metrics, Prometheus text format"),
        ("/config", "the running config, secrets masked"),
        ("/runtime_config", "the per-tenant overrides in force"),
        (
            "/ingester/ring",
            "the ingester ring: instances, states, tokens; forget an instance",
        ),
    ];
    if ingester.is_some() {
        pages.push((
            "/ingester/flush",
            "POST: cut the heads into blocks and ship them",
        ));
    }
    if compactor.is_some() {
        pages.push(("/compactor/run", "POST: run a compaction pass now"));
    }
    if config.runs("querier") {
        pages.push((
            "/prometheus/api/v1/status/buildinfo",
            "the Prometheus query API (also under /api/v1)",
        ));
    }
    let index = Arc::new(index_page(&pages));
    let router = router
        .route("/", get(show_index).with_state(index))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics).with_state(registry.clone()))
        .route(
            "/config",
            get(show_config).with_state(Arc::new(crate::config::masked_yaml(&config))),
        )
        .layer(axum::middleware::from_fn_with_state(
            request_duration,
            observe_request,
        ));

    let addr = socket_addr(
        &config.server.http_listen_address,
        config.server.http_listen_port,
    )?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!(%addr, startup = ?started.elapsed(), "HTTP server listening");
    let limits = crate::http_server::HttpServerLimits {
        idle_timeout: config.server.http_server_idle_timeout.0,
        read_timeout: config.server.http_server_read_timeout.0,
        write_timeout: config.server.http_server_write_timeout.0,
        max_connections: config.server.http_server_max_connections,
    };
    let http_metrics = crate::http_server::HttpServerMetrics::new(&registry)
        .map_err(|e| AppError::Module(e.to_string()))?;
    let router = crate::http_server::with_request_timeouts(router, &limits);
    let grace = config.server.graceful_shutdown_timeout.0;
    tasks.push(tokio::spawn(crate::http_server::serve(
        listener,
        router,
        limits,
        http_metrics,
        shutdown_rx.clone(),
        grace,
    )));

    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(lifecycler) = lifecycler {
        // Leave the ring first, so distributors stop sending to this ingester
        // before its server stops.
        if let Err(e) = lifecycler.stop().await {
            tracing::warn!(error = %e, "could not leave the ingester ring cleanly");
        }
    }
    if let Some(lifecycler) = compactor.and_then(|c| c.lifecycler) {
        if let Err(e) = lifecycler.stop().await {
            tracing::warn!(error = %e, "could not leave the compactor ring cleanly");
        }
    }
    if let Some(store_gateway) = store_gateway {
        if let Err(e) = store_gateway.lifecycler.stop().await {
            tracing::warn!(error = %e, "could not leave the store-gateway ring cleanly");
        }
    }
    if let Some(ingester) = ingester.as_ref().filter(|i| i.config().flush_on_shutdown) {
        match ingester.flush_all().await {
            Ok(stats) => tracing::info!(?stats, "flushed the heads on shutdown"),
            Err(e) => tracing::error!(error = %e, "flushing the heads on shutdown failed"),
        }
    }
    let _ = shutdown_tx.send(true);
    let grace = config
        .server
        .graceful_shutdown_timeout
        .0
        .max(Duration::from_millis(1));
    let _ = tokio::time::timeout(grace, futures::future::join_all(tasks)).await;
    tracing::info!("stopped");
    Ok(())
}

fn socket_addr(host: &str, port: u16) -> Result<SocketAddr, AppError> {
    format!("{host}:{port}")
        .parse()
        .map_err(|_| AppError::BadAddress(format!("{host}:{port}")))
}

/// The ring settings with the defaults that depend on the rest of the config
/// filled in: instance ID and address from the host and gRPC port, and a
/// replication factor of 1 when the ring is in memory (only this process can
/// ever be in it).
fn effective_ring_config(config: &Config) -> strata_ring::RingConfig {
    let mut ring = config.ingester.ring.clone();
    let port = config.server.grpc_listen_port;
    if ring.instance_id.is_empty() {
        ring.instance_id = format!("{}-{port}", hostname());
    }
    if ring.instance_addr.is_empty() {
        let host = match config.server.grpc_listen_address.as_str() {
            "" | "0.0.0.0" | "::" | "[::]" => hostname(),
            other => other.to_string(),
        };
        ring.instance_addr = format!("{host}:{port}");
    }
    if ring.kvstore.store == strata_ring::KvStoreKind::Inmemory && ring.replication_factor > 1 {
        tracing::info!(
            configured = ring.replication_factor,
            "the ingester ring is in memory (one process): using replication factor 1"
        );
        ring.replication_factor = 1;
    }
    ring
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// tonic wants a URI; the config takes `host:port` as Mimir's does.
fn grpc_uri(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// `GET /config`: the running configuration as YAML, secrets masked.
async fn show_config(State(yaml): State<Arc<String>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
        yaml.as_str().to_owned(),
    )
        .into_response()
}

/// `POST /ingester/flush`: cut every head into blocks (but for its last
/// minute, which pushes in flight still reach) and upload them.
async fn flush_ingester(State(ingester): State<Arc<strata_ingester::Ingester>>) -> Response {
    match ingester.flush().await {
        Ok(stats) => axum::Json(stats).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "flush failed");
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("flush failed: {e}\n"),
            )
                .into_response()
        }
    }
}

/// The index page at `/`: the admin and status pages this process serves.
fn index_page(pages: &[(&str, &str)]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><title>Strata</title></head><body>\n<h1>Strata</h1>\n<ul>\n",
    );
    for (path, what) in pages {
        html.push_str(&format!("<li><a href=\"{path}\">{path}</a>: {what}</li>\n"));
    }
    html.push_str("</ul>\n<p>Every HTTP endpoint: docs/api.md.</p>\n</body></html>\n");
    html
}

async fn show_index(State(page): State<Arc<String>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.as_str().to_owned(),
    )
        .into_response()
}

async fn ready() -> &'static str {
    "ready\n"
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        strata_telemetry::render(&registry),
    )
        .into_response()
}

async fn observe_request(
    State(histogram): State<HistogramVec>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let start = Instant::now();
    let response = next.run(request).await;
    histogram
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
