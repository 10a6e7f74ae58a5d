//! Operating the pull-based controller: `get`, `sync`, `history`, `rollback`,
//! `refresh`, `suspend`, `resume`, `stop`, `audit`. They read and annotate
//! Application objects; the controller does the work, so every action is recorded
//! the same way whoever asks.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use capstan_controller::crd::Application;
use capstan_controller::{SYSTEM_NAMESPACE, actions, audit, stop};
use clap::{Args, Subcommand};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::args::{ClusterArgs, Format};
use crate::print;

/// Where Applications are.
#[derive(Debug, Clone, Args)]
pub struct Scope {
    /// Namespace of the Application(s) (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

impl Scope {
    pub(crate) async fn client(&self) -> anyhow::Result<(kube::Client, String)> {
        let client = crate::kube::client(&self.cluster).await?;
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok((client, ns))
    }
}

/// `capstan get`.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List Applications with their sync, health and revision.
    Apps {
        /// Across all namespaces.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
        #[command(flatten)]
        scope: Scope,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Format,
    },
    /// One Application and its resources as a tree with health.
    App {
        /// The Application.
        name: String,
        #[command(flatten)]
        scope: Scope,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Format,
    },
}

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| {
                    if i + 1 == r.len() {
                        c.clone()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("   ")
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect()
}

fn emit(value: &Value, output: Format) {
    match output {
        Format::Yaml => print::out(&capstan_engine::diff::to_yaml(value)),
        _ => print::json(value),
    }
}

pub async fn get(cmd: GetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GetCommand::Apps {
            all_namespaces,
            scope,
            output,
        } => {
            let (client, ns) = scope.client().await?;
            // An operator looking at the fleet must not miss that nothing syncs.
            if output == Format::Text
                && let Ok(state) = stop::read(&client, SYSTEM_NAMESPACE).await
                && state.stopped
            {
                eprintln!(
                    "EMERGENCY STOP ON since {} by {}{}: nothing is applied or pruned until `capstan resume`",
                    state.at,
                    state.by,
                    if state.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", state.reason)
                    }
                );
            }
            let api: Api<Application> = if all_namespaces {
                Api::all(client)
            } else {
                Api::namespaced(client, &ns)
            };
            let apps = api
                .list(&ListParams::default())
                .await
                .context("listing Applications")?
                .items;
            if output != Format::Text {
                emit(&serde_json::to_value(&apps)?, output);
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                [
                    "NAMESPACE",
                    "NAME",
                    "SYNC",
                    "HEALTH",
                    "REVISION",
                    "LAST SYNC",
                    "MESSAGE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for a in &apps {
                let st = a.status.clone().unwrap_or_default();
                let op = st.operation_state.clone().unwrap_or_default();
                let ready = st.conditions.iter().find(|c| c.type_ == "Ready");
                rows.push(vec![
                    a.namespace().unwrap_or_default(),
                    a.name_any(),
                    st.sync
                        .as_ref()
                        .map(|s| s.status.clone())
                        .unwrap_or_else(|| "Unknown".into()),
                    st.health
                        .as_ref()
                        .map(|h| h.status.clone())
                        .unwrap_or_else(|| "Unknown".into()),
                    st.sync
                        .as_ref()
                        .map(|s| s.short_revision.clone())
                        .unwrap_or_default(),
                    if op.phase.is_empty() {
                        "-".into()
                    } else {
                        op.phase
                    },
                    ready
                        .filter(|c| c.status != "True")
                        .map(|c| c.message.clone())
                        .unwrap_or_default(),
                ]);
            }
            if !all_namespaces {
                rows.iter_mut().for_each(|r| {
                    r.remove(0);
                });
            }
            print::out(&table(&rows));
        }
        GetCommand::App {
            name,
            scope,
            output,
        } => {
            let (client, ns) = scope.client().await?;
            let api: Api<Application> = Api::namespaced(client, &ns);
            let app = api
                .get_opt(&name)
                .await?
                .with_context(|| format!("application {ns}/{name} not found"))?;
            if output != Format::Text {
                emit(&serde_json::to_value(&app)?, output);
                return Ok(ExitCode::SUCCESS);
            }
            print::out(&describe(&app));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An Application and its resources as a tree.
fn describe(app: &Application) -> String {
    let st = app.status.clone().unwrap_or_default();
    let src = &app.spec.source;
    let mut out = String::new();
    out.push_str(&format!(
        "Name:        {}/{}\n",
        app.namespace().unwrap_or_default(),
        app.name_any()
    ));
    out.push_str(&format!(
        "Source:      {} {} at {}\n",
        src.repo_url,
        src.path.as_deref().unwrap_or("."),
        src.target_revision.as_deref().unwrap_or("HEAD")
    ));
    if let Some(s) = &st.sync {
        out.push_str(&format!(
            "Sync:        {} to {}\n",
            s.status, s.short_revision
        ));
    }
    if let Some(h) = &st.health {
        out.push_str(&format!(
            "Health:      {}{}\n",
            h.status,
            if h.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", h.message)
            }
        ));
    }
    if let Some(op) = &st.operation_state {
        out.push_str(&format!(
            "Last sync:   {} ({}) {}\n",
            op.phase, op.trigger, op.message
        ));
    }
    for c in &st.conditions {
        if c.status != "True" && !c.message.is_empty() && c.type_ != "Stalled" {
            out.push_str(&format!(
                "Condition:   {}={} {}: {}\n",
                c.type_, c.status, c.reason, c.message
            ));
        }
    }
    if app.spec.suspend {
        out.push_str("Suspended:   yes\n");
    }
    out.push_str(&format!("{}\n", app.name_any()));
    let mut by_ns: std::collections::BTreeMap<
        String,
        Vec<&capstan_controller::crd::ResourceStatus>,
    > = Default::default();
    for r in &st.resources {
        by_ns.entry(r.namespace.clone()).or_default().push(r);
    }
    let groups: Vec<_> = by_ns.into_iter().collect();
    for (gi, (ns, rs)) in groups.iter().enumerate() {
        let last_group = gi + 1 == groups.len();
        let (branch, indent) = if last_group {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        out.push_str(&format!(
            "{branch}{}\n",
            if ns.is_empty() {
                "(cluster-scoped)".to_string()
            } else {
                format!("namespace {ns}")
            }
        ));
        for (i, r) in rs.iter().enumerate() {
            let b = if i + 1 == rs.len() {
                "└── "
            } else {
                "├── "
            };
            let health = r.health.as_ref().map(|h| {
                if h.message.is_empty() {
                    h.status.clone()
                } else {
                    format!("{} ({})", h.status, h.message)
                }
            });
            let prune = if r.requires_pruning {
                ", requires pruning"
            } else {
                ""
            };
            out.push_str(&format!(
                "{indent}{b}{} {}: {}{prune}{}\n",
                r.kind,
                r.name,
                r.status,
                health.map(|h| format!(", {h}")).unwrap_or_default()
            ));
        }
    }
    out
}

/// `capstan sync APP`.
#[derive(Debug, Args)]
pub struct SyncCommand {
    /// The Application.
    name: String,
    /// Sync to this revision instead of the spec's.
    #[arg(long)]
    revision: Option<String>,
    /// Prune objects that left the source (default: the automated policy's prune).
    #[arg(long)]
    prune: bool,
    /// Return without waiting for the controller.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the sync.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    scope: Scope,
}

pub(crate) fn who() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// Wait until the controller reports the request's operation; returns its phase.
pub(crate) async fn wait_for(
    api: &Api<Application>,
    name: &str,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<(String, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let app = api.get(name).await?;
        if let Some(op) = app.status.and_then(|s| s.operation_state)
            && op.message.contains(&format!("request {id}"))
        {
            return Ok((op.phase, op.message));
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the controller did not act on the request within {timeout:?} (is `capstan controller` running, and not stopped?)"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn sync(cmd: SyncCommand) -> anyhow::Result<ExitCode> {
    let (client, ns) = cmd.scope.client().await?;
    let opts = actions::SyncOptions {
        revision: cmd.revision.clone(),
        prune: cmd.prune,
    };
    let req = actions::sync(&client, &ns, &cmd.name, &opts, &who()).await?;
    let api: Api<Application> = Api::namespaced(client, &ns);
    if cmd.no_wait {
        eprintln!("sync of {ns}/{} requested", cmd.name);
        return Ok(ExitCode::SUCCESS);
    }
    let (phase, message) = wait_for(&api, &cmd.name, &req.id, cmd.timeout).await?;
    crate::outln!("{ns}/{}: {phase}: {message}", cmd.name);
    Ok(if phase == "Succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `capstan history APP`.
#[derive(Debug, Args)]
pub struct HistoryCommand {
    /// The Application.
    name: String,
    #[command(flatten)]
    scope: Scope,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

pub async fn history(cmd: HistoryCommand) -> anyhow::Result<ExitCode> {
    let (client, ns) = cmd.scope.client().await?;
    let api: Api<Application> = Api::namespaced(client, &ns);
    let app = api
        .get_opt(&cmd.name)
        .await?
        .with_context(|| format!("application {ns}/{} not found", cmd.name))?;
    let history = app.status.unwrap_or_default().history;
    if cmd.output != Format::Text {
        emit(&serde_json::to_value(&history)?, cmd.output);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "ID",
            "DEPLOYED AT",
            "REVISION",
            "TRIGGER",
            "RESULT",
            "AUTHOR",
            "MESSAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for h in &history {
        rows.push(vec![
            h.id.to_string(),
            h.deployed_at.clone(),
            h.revision.chars().take(12).collect(),
            h.trigger.clone(),
            h.result.clone(),
            h.author.clone(),
            h.message.clone(),
        ]);
    }
    print::out(&table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// `capstan rollback APP [ID]`.
#[derive(Debug, Args)]
pub struct RollbackCommand {
    /// The Application.
    name: String,
    /// History id to roll back to (default: the last successful sync of an earlier revision).
    id: Option<u64>,
    /// How long to wait for the sync.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    scope: Scope,
}

pub async fn rollback(cmd: RollbackCommand) -> anyhow::Result<ExitCode> {
    let (client, ns) = cmd.scope.client().await?;
    let (req, target) = actions::rollback(&client, &ns, &cmd.name, cmd.id, &who())
        .await
        .map_err(|e| match e {
            actions::ActionError::NoHistoryEntry { .. } => {
                anyhow::anyhow!("{e} (see `capstan history {}`)", cmd.name)
            }
            e => e.into(),
        })?;
    let api: Api<Application> = Api::namespaced(client, &ns);
    let (phase, message) = wait_for(&api, &cmd.name, &req.id, cmd.timeout).await?;
    crate::outln!(
        "{ns}/{}: rolled back to {} (history {}): {phase}: {message}; automated sync is now off",
        cmd.name,
        &target.revision[..target.revision.len().min(12)],
        target.id
    );
    Ok(if phase == "Succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `capstan refresh APP`, `capstan suspend APP`.
#[derive(Debug, Args)]
pub struct AppCommand {
    /// The Application.
    name: String,
    #[command(flatten)]
    scope: Scope,
}

pub async fn refresh(cmd: AppCommand) -> anyhow::Result<ExitCode> {
    let (client, ns) = cmd.scope.client().await?;
    actions::refresh(&client, &ns, &cmd.name, &who()).await?;
    eprintln!("{ns}/{}: refresh requested", cmd.name);
    Ok(ExitCode::SUCCESS)
}

async fn set_suspend(cmd: AppCommand, suspend: bool) -> anyhow::Result<ExitCode> {
    let (client, ns) = cmd.scope.client().await?;
    actions::set_suspend(&client, &ns, &cmd.name, suspend, &who()).await?;
    crate::outln!(
        "{ns}/{}: {}",
        cmd.name,
        if suspend { "suspended" } else { "resumed" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn suspend(cmd: AppCommand) -> anyhow::Result<ExitCode> {
    set_suspend(cmd, true).await
}

/// `capstan resume [APP]`.
#[derive(Debug, Args)]
pub struct ResumeCommand {
    /// The Application to resume; without one, lift the emergency stop.
    name: Option<String>,
    #[command(flatten)]
    scope: Scope,
    /// Namespace of the controller's state.
    #[arg(long, default_value = SYSTEM_NAMESPACE)]
    system_namespace: String,
}

pub async fn resume(cmd: ResumeCommand) -> anyhow::Result<ExitCode> {
    match cmd.name {
        Some(name) => {
            set_suspend(
                AppCommand {
                    name,
                    scope: cmd.scope,
                },
                false,
            )
            .await
        }
        None => {
            let client = crate::kube::client(&cmd.scope.cluster).await?;
            actions::set_stop(&client, &cmd.system_namespace, false, "", &who()).await?;
            crate::outln!("emergency stop lifted: syncing resumes");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `capstan stop`.
#[derive(Debug, Args)]
pub struct StopCommand {
    /// Why (shown in every Application's status).
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Namespace of the controller's state.
    #[arg(long, default_value = SYSTEM_NAMESPACE)]
    system_namespace: String,
}

pub async fn stop(cmd: StopCommand) -> anyhow::Result<ExitCode> {
    let client = crate::kube::client(&cmd.cluster).await?;
    actions::set_stop(&client, &cmd.system_namespace, true, &cmd.reason, &who()).await?;
    crate::outln!("emergency stop on: nothing is applied or pruned until `capstan resume`");
    Ok(ExitCode::SUCCESS)
}

/// `capstan audit`.
#[derive(Debug, Args)]
pub struct AuditCommand {
    /// Only this Application (`name` or `namespace/name`).
    #[arg(long)]
    app: Option<String>,
    /// Only records newer than this (e.g. `1h`, `7d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only this namespace (default: all).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

pub async fn audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let client = crate::kube::client(&cmd.cluster).await?;
    let since = cmd
        .since
        .map(|d| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(d.as_secs() as i64));
    let records = audit::list(&client, cmd.namespace.as_deref(), cmd.app.as_deref(), since)
        .await
        .context("reading the audit log")?;
    if cmd.output != Format::Text {
        emit(&serde_json::to_value(&records)?, cmd.output);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "TIME",
            "APPLICATION",
            "ACTION",
            "TRIGGER",
            "BY",
            "FROM",
            "TO",
            "RESULT",
            "SUMMARY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &records {
        rows.push(vec![
            // to the second, as `kubectl get` shows times; `-o json` has them whole
            match r.time.split_once('.') {
                Some((seconds, _)) => format!("{seconds}Z"),
                None => r.time.clone(),
            },
            r.application.clone(),
            r.action.clone(),
            r.trigger.clone(),
            r.actor.clone(),
            r.from_revision.chars().take(7).collect(),
            r.to_revision.chars().take(7).collect(),
            r.result.clone(),
            if r.summary.is_empty() {
                r.details.clone()
            } else {
                r.summary
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ]);
    }
    print::out(&table(&rows));
    Ok(ExitCode::SUCCESS)
}
