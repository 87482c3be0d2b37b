//! Wiring one process: the modules `-target` names and those they depend on
//! ([`crate::modules::graph`]), each built into a service for the manager,
//! their routes on one HTTP server and their gRPC services on one gRPC
//! server. The manager starts them in order, stops them in reverse on SIGTERM
//! and stops the process when one fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use prometheus::Registry;
use strata_service::{BoxError, DependencyError, Manager, NotReady, RunError, Slot, StatusBoard};

use crate::config::Config;
use crate::modules::Module;
use crate::wiring::Wiring;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid listen address {0}")]
    BadAddress(String),
    #[error(transparent)]
    Dependencies(#[from] DependencyError),
    #[error("{module}: {source}")]
    Wiring {
        module: Module,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Runs the configured modules until SIGTERM or SIGINT, or until one fails.
pub async fn run(config: Config) -> Result<(), AppError> {
    let started = Instant::now();
    tracing::info!(target_modules = %config.target, version = env!("CARGO_PKG_VERSION"), "starting strata");
    let order = crate::modules::graph().start_order(config.target.modules())?;
    let mut wiring = Wiring::new(&config).await?;
    let mut built = Vec::new();
    // The servers are built last: they take every other module's routes.
    for &module in order.iter().filter(|m| !is_server(**m)) {
        if let Some(service) = wiring.build(module).await? {
            built.push((module, service));
        }
    }
    let status = Slot::<StatusBoard>::default();
    let router = wiring.finish_router(&config, status.clone())?;
    let (http, grpc) = wiring.servers(&config, router)?;
    built.push((Module::HttpServer, http));
    if let Some(grpc) = grpc {
        built.push((Module::GrpcServer, grpc));
    }
    let services = order
        .iter()
        .filter_map(|m| {
            let at = built.iter().position(|(b, _)| b == m)?;
            let (module, service) = built.swap_remove(at);
            Some((module.name().to_string(), service))
        })
        .collect();
    let manager = Manager::new(services);
    status.fill(manager.status());
    tracing::info!(wiring = ?started.elapsed(), order = ?order.iter().map(|m| m.name()).collect::<Vec<_>>(), "starting the services");
    let grace = config.server.graceful_shutdown_timeout.0;
    manager.run(wait_for_signal(), grace).await?;
    tracing::info!("stopped");
    Ok(())
}

fn is_server(module: Module) -> bool {
    matches!(module, Module::HttpServer | Module::GrpcServer)
}

pub(crate) fn socket_addr(host: &str, port: u16) -> Result<SocketAddr, AppError> {
    format!("{host}:{port}")
        .parse()
        .map_err(|_| AppError::BadAddress(format!("{host}:{port}")))
}

/// The ring settings with the defaults that depend on the rest of the config
/// filled in: instance ID and address from the host and gRPC port, and a
/// replication factor of 1 when the ring is in memory (only this process can
/// ever be in it).
pub(crate) fn effective_ring_config(config: &Config) -> strata_ring::RingConfig {
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

/// `GET /config`: the running configuration as YAML, secrets masked.
pub(crate) async fn show_config(State(yaml): State<Arc<String>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
        yaml.as_str().to_owned(),
    )
        .into_response()
}

/// The index page at `/`: the admin and status pages this process serves.
pub(crate) fn index_page(pages: &[(&str, &str)]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><title>Strata</title></head><body>\n<h1>Strata</h1>\n<ul>\n",
    );
    for (path, what) in pages {
        html.push_str(&format!("<li><a href=\"{path}\">{path}</a>: {what}</li>\n"));
    }
    html.push_str("</ul>\n<p>Every HTTP endpoint: docs/api.md.</p>\n</body></html>\n");
    html
}

pub(crate) async fn show_index(State(page): State<Arc<String>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.as_str().to_owned(),
    )
        .into_response()
}

/// `GET /ready`: 200 when every service runs and is ready; 503 naming the
/// service (and its state or reason) otherwise, and while shutting down.
pub(crate) async fn ready(State(board): State<Slot<StatusBoard>>) -> Response {
    let verdict = match board.get() {
        Some(board) => board.readiness(),
        None => Err(NotReady::ShuttingDown),
    };
    match verdict {
        Ok(()) => "ready\n".into_response(),
        Err(reason) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

pub(crate) async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        strata_telemetry::render(&registry),
    )
        .into_response()
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
