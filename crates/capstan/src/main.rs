//! `capstan`: GitOps continuous delivery for Kubernetes in one binary.
//!
//! This file only parses arguments and dispatches to a command.

mod args;
mod commands;
mod kube;
mod print;
mod registry;
mod source;
mod writeback;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Convert Argo CD and Flux manifests (Application, ApplicationSet, Kustomization,
    /// HelmRelease and their sources) into Capstan Applications.
    Import(commands::import::ImportCommand),
    /// Print the health of every object in a file, by the built-in and custom rules.
    Health(commands::health::HealthCommand),
    /// Write new image references into a directory, or commit them to a repository.
    SetImage(commands::set_image::SetImageCommand),
    /// Write the images one path of a repository uses into another path, in one commit.
    Promote(commands::promote::PromoteCommand),
    /// Image registries and tag policies.
    #[command(subcommand)]
    Images(commands::images::ImagesCommand),
    /// Run everything on this machine: the embedded API server (unless a kubeconfig is
    /// given), the CRDs, the Applications at PATH, and the controller.
    Up(commands::up::UpCommand),
    /// Run the controller (the pull-based operator) against a cluster.
    Controller(commands::controller::ControllerCommand),
    /// Install Capstan's CRDs in the cluster (or print them).
    Install(InstallCommand),
    /// Show Applications.
    #[command(subcommand)]
    Get(commands::apps::GetCommand),
    /// Sync an Application now (optionally to another revision).
    Sync(commands::apps::SyncCommand),
    /// Show an Application's past syncs.
    History(commands::apps::HistoryCommand),
    /// Sync an Application to a past revision and turn automated sync off.
    Rollback(commands::apps::RollbackCommand),
    /// Revert an Application's repository to a past revision with a revert commit, and
    /// sync it (automated sync stays on).
    Revert(commands::revert::RevertCommand),
    /// Compare an Application with Git now.
    Refresh(commands::apps::AppCommand),
    /// Stop syncing one Application.
    Suspend(commands::apps::AppCommand),
    /// Resume one Application, or (without APP) lift the emergency stop.
    Resume(commands::apps::ResumeCommand),
    /// The emergency stop: halt every sync until `capstan resume`.
    Stop(commands::apps::StopCommand),
    /// Read the audit log.
    Audit(commands::apps::AuditCommand),
}

/// `capstan install`.
#[derive(Debug, clap::Args)]
struct InstallCommand {
    /// Print the CRDs instead of applying them.
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    cluster: args::ClusterArgs,
}

async fn install(cmd: InstallCommand) -> anyhow::Result<ExitCode> {
    if cmd.print {
        print::out(&capstan_controller::install::crds_yaml());
        return Ok(ExitCode::SUCCESS);
    }
    let client = kube::client(&cmd.cluster).await?;
    capstan_controller::install::install_crds(&client)
        .await
        .context("installing the CRDs")?;
    let names: Vec<String> = capstan_controller::install::crds()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    eprintln!("CRDs installed: {}", names.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    // The subcommand goes into the User-Agent, so the API server's audit log tells
    // the controller's requests from a person's `capstan sync`.
    kube::set_component(matches.subcommand_name().unwrap_or("capstan"));
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                // TLS and client failures are reported once, by Capstan, with the
                // repository or cluster they concern; the libraries' own lines about
                // the same failure only repeat them (CAPSTAN_LOG shows them again)
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,rustls_platform_verifier=off,kube_client=off",
                    )
                }),
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
            Command::Health(a) => commands::health::run(a).await,
            Command::Up(a) => commands::up::run(a).await,
            Command::Import(a) => commands::import::run(a).await,
            Command::SetImage(a) => commands::set_image::run(a).await,
            Command::Promote(a) => commands::promote::run(a).await,
            Command::Images(a) => commands::images::run(a).await,
            Command::Controller(a) => commands::controller::run(a).await,
            Command::Install(a) => install(a).await,
            Command::Get(a) => commands::apps::get(a).await,
            Command::Sync(a) => commands::apps::sync(a).await,
            Command::History(a) => commands::apps::history(a).await,
            Command::Rollback(a) => commands::apps::rollback(a).await,
            Command::Revert(a) => commands::revert::run(a).await,
            Command::Refresh(a) => commands::apps::refresh(a).await,
            Command::Suspend(a) => commands::apps::suspend(a).await,
            Command::Resume(a) => commands::apps::resume(a).await,
            Command::Stop(a) => commands::apps::stop(a).await,
            Command::Audit(a) => commands::apps::audit(a).await,
        }
    });
    // work left on the blocking pool (a git fetch) does not hold the exit
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
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
