//! `capstan apiserver`: run the embedded Kubernetes-compatible API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Run the embedded Kubernetes-compatible API server.
#[derive(Debug, Args)]
pub struct ApiserverCommand {
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
    /// Inject faults into resource requests, to try how clients cope (off by default), e.g.
    /// 'rate=0.1,status=500|503|429|409,delay=2s,reset,watch-close=5s,gone,verbs=create|patch,resources=configmaps'.
    /// See docs/reliability.md.
    #[arg(long, value_name = "SPEC")]
    faults: Option<capstan_apiserver::faults::FaultPlan>,
}

pub async fn run(args: ApiserverCommand) -> anyhow::Result<ExitCode> {
    let stopping = super::stopping::Stopping::listen();
    let opts = capstan_apiserver::ServerOptions {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        kubeconfig: args.kubeconfig.clone(),
        simulation: (!args.no_simulate).then_some(capstan_apiserver::SimulationOptions {
            delay: args.simulate_delay,
        }),
        faults: args.faults.clone(),
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
    if let Some(plan) = &args.faults {
        say(&format!("injecting faults: {plan}"));
    }
    stopping.requested().await;
    if let Some(stats) = server.fault_stats() {
        say(&stats.to_string());
    }
    server.shutdown().await;
    say("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Print a status line; a closed stdout (e.g. `| head -1`) must not stop the server.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
