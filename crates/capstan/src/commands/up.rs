//! `capstan up [PATH]`: everything on one machine — the embedded Kubernetes API
//! (unless a kubeconfig is given), the CRDs, the Applications found at PATH, and the
//! controller in the foreground, printing what it does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use capstan_controller::crd::ApplicationStatus;
use capstan_controller::{ControllerOptions, Reconciled};
use capstan_engine::render::{RenderOptions, Scopes};
use capstan_engine::source::local;
use clap::Args;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::args::ClusterArgs;

/// Run Capstan on this machine.
#[derive(Debug, Args)]
pub struct UpCommand {
    /// Directory with Application manifests (searched recursively).
    #[arg(default_value = "examples")]
    path: PathBuf,
    /// Use this cluster instead of the embedded API server.
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Where the embedded API server keeps its data and kubeconfig.
    #[arg(long, default_value = ".capstan")]
    dir: PathBuf,
    /// Port of the embedded API server (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Interval of Applications that set none.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Where Capstan's HTTP server (API, webhooks, metrics) listens; when the port is
    /// taken, a free one is used and printed.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
}

/// Find the Git repository a path belongs to.
fn git_root(start: &Path) -> Option<PathBuf> {
    let mut cur = start.canonicalize().ok()?;
    loop {
        if cur.join(".git").exists() {
            return Some(cur);
        }
        cur = cur.parent()?.to_path_buf();
    }
}

/// A relative `repoURL` names a Git repository on disk relative to the manifest:
/// it becomes a `file://` URL of that repository's root.
fn resolve_repo(app: &mut Value, manifest_dir: &Path) -> anyhow::Result<()> {
    let Some(url) = app
        .pointer("/spec/source/repoURL")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Ok(());
    };
    let scp_like = url.contains('@') && url.contains(':');
    if url.contains("://") || scp_like {
        return Ok(());
    }
    let dir = manifest_dir.join(&url);
    let root = git_root(&dir).with_context(|| {
        format!(
            "repoURL {url:?} (relative to {}) is not inside a Git repository",
            manifest_dir.display()
        )
    })?;
    app["spec"]["source"]["repoURL"] = Value::String(format!("file://{}", root.display()));
    Ok(())
}

fn line(key: &str, st: &ApplicationStatus) -> String {
    let sync = match st.sync.as_ref() {
        Some(s) if !s.short_revision.is_empty() => format!("{} at {}", s.status, s.short_revision),
        Some(s) => s.status.clone(),
        None => "Unknown".into(),
    };
    let health = st.health.as_ref().map(|h| {
        if h.message.is_empty() {
            h.status.clone()
        } else {
            format!("{} ({})", h.status, h.message)
        }
    });
    let ready = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status != "True");
    let mut out = format!(
        "{key}: {sync}, {}",
        health.unwrap_or_else(|| "Unknown".into())
    );
    if let Some(op) = &st.operation_state
        && !op.summary.is_empty()
    {
        let s: Vec<String> = op.summary.iter().map(|(k, v)| format!("{v} {k}")).collect();
        out.push_str(&format!(
            " — last sync {} ({}): {}",
            op.phase,
            op.trigger,
            s.join(", ")
        ));
    }
    if let Some(c) = ready
        && !c.message.is_empty()
        && c.reason != "Progressing"
        && c.reason != "OutOfSync"
    {
        out.push_str(&format!(" — {}: {}", c.reason, c.message));
    }
    out
}

pub async fn run(cmd: UpCommand) -> anyhow::Result<ExitCode> {
    let stopping = super::stopping::Stopping::listen();
    // one `capstan up` per directory: its data, kubeconfig and controller state
    super::stopping::lock_dir(&cmd.dir)?;
    let mut server = None;
    let metrics = std::sync::Arc::new(capstan_controller::metrics::Metrics::default());
    let embedded = cmd.cluster.kubeconfig.is_none() && cmd.cluster.context.is_none();
    let client = if !embedded {
        crate::kube::counted_client(&cmd.cluster, &metrics).await?
    } else {
        let kubeconfig = cmd.dir.join("kubeconfig");
        let mut opts = capstan_apiserver::ServerOptions {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], cmd.port)),
            data_dir: Some(cmd.dir.join("data")),
            kubeconfig: Some(kubeconfig.clone()),
            ..Default::default()
        };
        let started = match capstan_apiserver::ApiServer::start(opts.clone()).await {
            Ok(s) => s,
            Err(capstan_apiserver::StartError::Bind { .. }) if cmd.port != 0 => {
                opts.listen.set_port(0);
                capstan_apiserver::ApiServer::start(opts)
                    .await
                    .context("starting the embedded API server")?
            }
            Err(e) => return Err(e).context("starting the embedded API server"),
        };
        eprintln!("Kubernetes API (embedded): {}", started.url());
        eprintln!(
            "  kubectl:  export KUBECONFIG={}",
            kubeconfig
                .canonicalize()
                .unwrap_or(kubeconfig.clone())
                .display()
        );
        let client = crate::kube::counted_client(
            &ClusterArgs {
                kubeconfig: Some(kubeconfig),
                context: None,
            },
            &metrics,
        )
        .await?;
        server = Some(started);
        client
    };
    capstan_controller::install::install_crds(&client)
        .await
        .context("installing the CRDs")?;

    // The Applications found at PATH.
    let checkout =
        local::open(&cmd.path).with_context(|| format!("reading {}", cmd.path.display()))?;
    let raw = capstan_engine::render::render_raw(&checkout, &RenderOptions::default()).await?;
    let mut apps = Vec::new();
    for r in raw {
        let is_app = r.object.get("kind").and_then(Value::as_str) == Some("Application")
            && r.object.get("apiVersion").and_then(Value::as_str) == Some("capstan.dev/v1alpha1");
        if is_app {
            let mut obj = r.object.clone();
            let file_dir = cmd
                .path
                .join(&r.origin.file)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| cmd.path.clone());
            resolve_repo(&mut obj, &file_dir).with_context(|| format!("{}", r.origin))?;
            apps.push(capstan_engine::render::RawObject {
                object: obj,
                origin: r.origin.clone(),
            });
        }
    }
    if apps.is_empty() {
        bail!(
            "no Application (capstan.dev/v1alpha1) found under {}",
            cmd.path.display()
        );
    }
    let desired = capstan_engine::render::normalize::normalize(
        apps,
        client.default_namespace(),
        &Scopes::builtin(),
    )?;
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("capstan.dev", "v1alpha1", "Application"),
        "applications",
    );
    for d in &desired {
        let ns = d.id.namespace.clone().unwrap_or_else(|| "default".into());
        capstan_controller::ensure_namespace(&client, &ns).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        api.patch(
            &d.id.name,
            &PatchParams::apply("capstan-up").force(),
            &Patch::Apply(&d.object),
        )
        .await
        .with_context(|| format!("applying Application {ns}/{}", d.id.name))?;
        eprintln!(
            "Application {ns}/{} applied from {}",
            d.id.name, d.origin.file
        );
    }

    let opts = ControllerOptions {
        default_interval: cmd.interval,
        state_dir: cmd.dir.join("controller"),
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Reconciled>();
    let (handle, controller) =
        capstan_controller::start_with_metrics(client, opts, metrics, Some(tx));
    let bound = match capstan_server::bind(cmd.listen).await {
        Ok(b) => b,
        Err(_) if cmd.listen.port() != 0 => {
            let mut any = cmd.listen;
            any.set_port(0);
            capstan_server::bind(any).await?
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!("Capstan server: http://{}", bound.addr);
    if embedded {
        eprintln!(
            "  web UI:   http://{}/ (log in with the kubeconfig's token: kubectl --kubeconfig {} config view --raw --minify -o jsonpath='{{.users[0].user.token}}')",
            bound.addr,
            cmd.dir.join("kubeconfig").display()
        );
    } else {
        eprintln!(
            "  web UI:   http://{}/ (log in with an API token; see docs/ui.md)",
            bound.addr
        );
    }
    let tasks = handle.tasks();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(bound.serve(
        capstan_server::AppState::new(
            handle,
            capstan_server::ServerOptions {
                listen: cmd.listen,
                ..Default::default()
            },
        ),
        super::controller::stopped(stop_rx),
    ));
    eprintln!("controller running; Ctrl-C to stop");
    let mut controller = tokio::spawn(controller);
    let mut last: HashMap<String, String> = HashMap::new();
    let printer = async {
        while let Some(r) = rx.recv().await {
            let text = line(&r.key, &r.status);
            if last.get(&r.key) != Some(&text) {
                crate::outln!("{text}");
                last.insert(r.key, text);
            }
        }
    };
    tokio::select! {
        _ = printer => {}
        res = &mut controller => { res.context("the controller task failed")??; }
        _ = stopping.requested() => {}
    }
    // In order: the HTTP server stops taking requests, the controller and every task
    // it started end (a sync stops at its next step), then the embedded API server.
    let _ = stop_tx.send(true);
    controller.abort();
    let _ = controller.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.stop()).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), serving).await;
    if let Some(s) = server {
        let _ = tokio::time::timeout(Duration::from_secs(3), s.shutdown()).await;
    }
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}
