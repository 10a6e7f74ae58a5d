//! `capstan`: GitOps continuous delivery for Kubernetes in one binary.
//!
//! This file only parses arguments and dispatches to a command.

mod args;
mod commands;
mod kube;
mod print;
mod source;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Capstan allocates many small JSON values (objects, field sets, diffs); mimalloc
/// handles that markedly faster than the system allocator (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GitOps continuous delivery for Kubernetes: the pull-based operator and the
/// push-based CLI in one binary.
#[derive(Debug, Parser)]
#[command(name = "capstan", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded Kubernetes-compatible API server.
    Apiserver(commands::apiserver::ApiserverCommand),
    /// Print the objects a source renders to (no cluster needed).
    Render(commands::render::RenderCommand),
    /// Show what applying a source would change (exit 1 when anything would), or
    /// what changed between two revisions.
    Diff(commands::diff::DiffCommand),
    /// Render a source, apply it, prune what left it, and optionally wait for health.
    Apply(commands::apply::ApplyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One rustls crypto provider for everything in the process (kube, gix/reqwest, the API server).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Apiserver(a) => commands::apiserver::run(a).await,
            Command::Render(a) => commands::render::run(a).await,
            Command::Diff(a) => commands::diff::run(a).await,
            Command::Apply(a) => commands::apply::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
