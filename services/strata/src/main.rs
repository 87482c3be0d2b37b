//! The `strata` binary: parses flags and the config file, picks the modules that
//! `-target` names, starts them in dependency order and stops them in reverse.
//! It only wires; every behaviour lives in the component and library crates.

// A binary crate: `pub` marks what its modules share, nothing is exported.
#![allow(unreachable_pub)]

mod app;
mod cli;
mod config;
mod in_process;
mod limits;
mod ring_page;

use std::process::ExitCode;

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
    if let Err(e) =
        strata_telemetry::init_logging(&config.server.log_level, &config.server.log_format)
    {
        eprintln!("strata: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(*config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "strata stopped with an error");
            ExitCode::FAILURE
        }
    }
}
