//! `capstan`: GitOps continuous delivery for Kubernetes in one binary.
//!
//! This file only parses arguments and wires the crates together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

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
    Apiserver(ApiserverArgs),
}

#[derive(Debug, Args)]
struct ApiserverArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Directory for the SQLite database and TLS material; omit to keep everything in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to write a kubeconfig for this server.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Do not simulate workload status (Deployments stay without status).
    #[arg(long)]
    no_simulate: bool,
    /// How long simulated workloads stay progressing before they become ready (e.g. 500ms, 2s).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    simulate_delay: Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Apiserver(args) => run_apiserver(args).await,
        }
    })
}

async fn run_apiserver(args: ApiserverArgs) -> anyhow::Result<()> {
    let opts = capstan_apiserver::ServerOptions {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        kubeconfig: args.kubeconfig.clone(),
        simulation: (!args.no_simulate).then_some(capstan_apiserver::SimulationOptions {
            delay: args.simulate_delay,
        }),
        ..Default::default()
    };
    let server = capstan_apiserver::ApiServer::start(opts)
        .await
        .with_context(|| format!("starting the API server on {}", args.listen))?;
    say(&format!("API server listening on {}", server.url()));
    match &args.kubeconfig {
        Some(path) => say(&format!("kubeconfig written to {}", path.display())),
        None => say("no --kubeconfig given; pass one to reach the server with kubectl"),
    }
    match &args.data_dir {
        Some(dir) => say(&format!("data persisted in {}", dir.display())),
        None => say("data kept in memory (pass --data-dir to persist)"),
    }
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

/// Print a status line; a closed stdout (e.g. `| head -1`) must not stop the server.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
