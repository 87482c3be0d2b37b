//! Wiring one process: the modules `-target` names and those they depend on
//! ([`crate::modules::graph`]), each built into a service for the manager,
//! their routes on one HTTP server and their gRPC services on one gRPC
//! server. The manager starts them in order, stops them in reverse on SIGTERM
//! and stops the process when one fails.

use std::time::Instant;

use strata_service::{Manager, Slot, StatusBoard};

use crate::config::Config;
use crate::error::AppError;
use crate::modules::Module;
use crate::wiring::Wiring;

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
