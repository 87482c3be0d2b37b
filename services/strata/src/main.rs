//! The `strata` binary: parses flags and the config file, picks the modules that
//! `-target` names, starts them in dependency order and stops them in reverse.
//! It only wires; every behaviour lives in the component and library crates.

// A binary crate: `pub` marks what its modules share, nothing is exported.
#![allow(unreachable_pub)]

mod access;
mod addresses;
mod app;
mod cli;
mod clients;
mod config;
mod error;
mod http_server;
mod limits;
mod modules;
mod pages;
mod servers;
mod wiring;

use std::process::ExitCode;

/// The ingest path allocates many small, short-lived strings (the labels of
/// every pushed series); with glibc's malloc ~40 % of ingest CPU went to the
/// allocator in a profile, with mimalloc ingest CPU per sample halves
/// (docs/benchmarks.md, "Ingest profile").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match invocation {
        cli::Invocation::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        cli::Invocation::Verify(config) => {
            println!("config is valid (target {})", config.target);
            return ExitCode::SUCCESS;
        }
        cli::Invocation::Run(config) => config,
    };
    // Queries are parsed and evaluated on threads of their own (strata-promql);
    // the workers' larger stack is a second line of defence for what they
    // parse themselves (selectors of `match[]`, rule files later).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the span exporter sends its batches from a task.
    let telemetry = match runtime.block_on(async {
        strata_telemetry::init(
            &config.server.log_level,
            &config.server.log_format,
            &config.tracing,
        )
    }) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(app::run(*config));
    // The runtime is still up, so its export task can send the last spans.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "strata stopped with an error");
            ExitCode::FAILURE
        }
    }
}
