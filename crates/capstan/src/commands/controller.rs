//! `capstan controller`: run the pull-based operator against a cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use capstan_controller::{ControllerOptions, Election, SYSTEM_NAMESPACE};
use clap::Args;

use crate::args::ClusterArgs;

/// Run the operator: keep every Application in sync.
#[derive(Debug, Args)]
pub struct ControllerCommand {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Namespace for the controller's own state (inventories, emergency stop, lease).
    #[arg(long, default_value = SYSTEM_NAMESPACE)]
    system_namespace: String,
    /// Only manage Applications in this namespace (default: all).
    #[arg(long)]
    watch_namespace: Option<String>,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long)]
    leader_elect: bool,
    /// How long a leader's lease lasts without renewal.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's identity (default: host name and process id).
    #[arg(long)]
    identity: Option<String>,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Interval of Applications that set none.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Where the Git cache and credentials live.
    #[arg(long, env = "CAPSTAN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Do not install or update the CRDs at start.
    #[arg(long)]
    skip_crds: bool,
    /// Scan interval of ImageRepositories that set none.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    image_scan_interval: Duration,
    /// After an ImagePolicy chose a new image, wait this long (and for scans in flight)
    /// before writing, so images that change together share a commit.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    image_update_settle: Duration,
    /// Limit of one notification request; a receiver that does not answer in time is
    /// tried again later.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    notification_timeout: Duration,
    #[command(flatten)]
    server: ServerArgs,
}

/// The HTTP server of the controller process (probes, metrics, API, webhooks).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Where the HTTP server listens (probes, `/metrics`, the API, webhooks); `off`
    /// runs none.
    #[arg(long, env = "CAPSTAN_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    webhook_body_limit: usize,
    /// The Secret (in the system namespace) with the webhooks' shared secrets, one key
    /// per provider (`github`, `gitlab`, `gitea`, `bitbucket`, `generic`, …).
    #[arg(long, default_value = capstan_server::webhooks::DEFAULT_SECRET)]
    webhook_secret: String,
    /// The Secret (in the system namespace) of the API's static tokens: key = user
    /// name, value = token.
    #[arg(long, default_value = "capstan-api-tokens")]
    api_tokens_secret: String,
    /// The ConfigMap (in the system namespace) binding users and groups to the API's
    /// roles (`viewer`, `operator`, `admin`), key `policy.yaml` (see docs/api.md).
    #[arg(long, default_value = "capstan-rbac")]
    api_rbac_configmap: String,
    /// Serve `/metrics` to anyone who reaches the port, without a token (by default it
    /// needs a `viewer` token, e.g. Prometheus' ServiceAccount token).
    #[arg(long)]
    open_metrics: bool,
}

impl ServerArgs {
    /// The server's options; `None` for `--listen off`.
    pub fn options(&self) -> anyhow::Result<Option<capstan_server::ServerOptions>> {
        if self.listen == "off" {
            return Ok(None);
        }
        // `:8080` as Go programs write it
        let listen = match self.listen.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.listen.clone(),
        };
        let listen = listen.parse().with_context(|| {
            format!(
                "--listen {:?}: expected HOST:PORT, :PORT or off",
                self.listen
            )
        })?;
        Ok(Some(capstan_server::ServerOptions {
            listen,
            webhook_body_limit: self.webhook_body_limit,
            webhook_secret: self.webhook_secret.clone(),
            api: capstan_server::api::ApiOptions {
                tokens_secret: self.api_tokens_secret.clone(),
                rbac_configmap: self.api_rbac_configmap.clone(),
                metrics_auth: !self.open_metrics,
                ..Default::default()
            },
        }))
    }
}

/// The options a `controller` command line asks for.
pub fn options(cmd: &ControllerCommand) -> ControllerOptions {
    let mut opts = ControllerOptions {
        namespace: cmd.system_namespace.clone(),
        watch_namespace: cmd.watch_namespace.clone(),
        concurrency: cmd.concurrency.max(1),
        default_interval: cmd.interval,
        images: capstan_controller::images::ImageOptions {
            scan_interval: cmd.image_scan_interval,
            settle: cmd.image_update_settle,
            ..Default::default()
        },
        notify: capstan_controller::notify::NotifyOptions {
            timeout: cmd.notification_timeout,
            ..Default::default()
        },
        ..Default::default()
    };
    if let Some(id) = &cmd.identity {
        opts.identity = id.clone();
    }
    if let Some(dir) = &cmd.state_dir {
        opts.state_dir = dir.clone();
    }
    if cmd.leader_elect {
        opts.election = Some(Election {
            namespace: cmd.system_namespace.clone(),
            name: "capstan-controller".into(),
            identity: opts.identity.clone(),
            lease_duration: cmd.lease_duration,
            renew: (cmd.lease_duration / 3).max(Duration::from_millis(200)),
        });
    }
    opts
}

pub async fn run(cmd: ControllerCommand) -> anyhow::Result<ExitCode> {
    let stopping = super::stopping::Stopping::listen();
    // the metrics exist before the client, which counts its requests in them
    let metrics = std::sync::Arc::new(capstan_controller::metrics::Metrics::default());
    let client = crate::kube::counted_client(&cmd.cluster, &metrics).await?;
    if !cmd.skip_crds {
        capstan_controller::install::install_crds(&client)
            .await
            .context("installing the CRDs")?;
    }
    let opts = options(&cmd);
    let server = cmd.server.options()?;
    eprintln!(
        "capstan controller {} running{}",
        opts.identity,
        if opts.election.is_some() {
            " (leader election on)"
        } else {
            ""
        }
    );
    let election = opts.election.clone();
    let lease_client = client.clone();
    let (handle, controller) = capstan_controller::start_with_metrics(client, opts, metrics, None);
    let tasks = handle.tasks();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = match server {
        Some(opts) => {
            let bound = capstan_server::bind(opts.listen).await.with_context(
                || "the HTTP server cannot listen there: pass --listen HOST:PORT (or --listen off)",
            )?;
            eprintln!("capstan server listening on http://{}", bound.addr);
            let state = capstan_server::AppState::new(handle, opts);
            Some(tokio::spawn(bound.serve(state, stopped(stop_rx))))
        }
        None => None,
    };
    tokio::select! {
        res = controller => { res?; }
        _ = stopping.requested() => {}
    }
    // in order: the HTTP server stops taking requests (those in flight finish), every
    // task the controller started ends at its next step, the Lease is given up
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.stop()).await;
    // the standby takes over at once, not after the lease duration
    if let Some(e) = &election {
        match tokio::time::timeout(
            Duration::from_secs(2),
            capstan_controller::leader::release(&lease_client, e),
        )
        .await
        {
            Ok(Ok(true)) => eprintln!("released the Lease {}/{}", e.namespace, e.name),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => eprintln!(
                "warning: releasing the Lease {}/{}: {err}",
                e.namespace, e.name
            ),
            Err(_) => eprintln!(
                "warning: releasing the Lease {}/{}: no answer within 2s",
                e.namespace, e.name
            ),
        }
    }
    if let Some(s) = serving {
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Completes once `rx` says stop.
pub async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
