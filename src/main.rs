//! `studio`: the Reasoning Studio desktop app (no subcommand) and its command line.

mod cli;
mod commands;

use clap::Parser;

/// Freed large blocks are reused instead of page-faulted afresh: see `engine::alloc`.
#[global_allocator]
static ALLOC: engine::alloc::BlockCache = engine::alloc::BlockCache;

fn main() -> std::process::ExitCode {
    engine::alloc::set_limit(engine::alloc::suggested_limit());
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
