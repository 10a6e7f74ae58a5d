//! `capstan revert APP`: roll back by reverting the commits in Git, so the repository
//! says the old state again and automated sync stays on (unlike `rollback`, which syncs
//! an old revision and turns automated sync off).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use capstan_controller::SyncRequest;
use capstan_controller::actions::{request_id, request_sync};
use capstan_controller::crd::{Application, HistoryEntry};
use capstan_engine::source::revert::{self, Reverted};
use capstan_engine::source::{GitSource, Written};
use clap::Args;
use kube::ResourceExt;
use kube::api::Api;
use serde::Serialize;

use super::apps::{Scope, wait_for, who};
use crate::args::{CommitArgs, Format};
use crate::writeback;

/// Revert an Application's repository to a past revision with a real revert commit,
/// push it, and wait for the controller to sync it.
#[derive(Debug, Args)]
#[command(
    after_help = "The message template (--message) is Jinja: {{ app }}, {{ namespace }}, {{ target }}, {{ short_target }}, {{ commits }} (each with id and subject), {{ path }}, {{ branch }}."
)]
pub struct RevertCommand {
    /// The Application.
    name: String,
    /// Revert to this history entry (an id from `capstan history`) or revision (a commit
    /// SHA). Default: the last successful sync before the current revision.
    #[arg(long, value_name = "HISTORY-ID|REVISION")]
    to: Option<String>,
    /// Do not wait for the controller to sync the revert.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the sync.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    commit: CommitArgs,
    #[command(flatten)]
    scope: Scope,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

#[derive(Debug, Clone, Serialize)]
struct Vars {
    app: String,
    namespace: String,
    target: String,
    short_target: String,
    commits: Vec<revert::RevertedCommit>,
    path: String,
    branch: String,
}

const DEFAULT_MESSAGE: &str = "Revert {{ app }} to {{ short_target }}\n\nThis reverts the commits that changed {{ path }} since {{ short_target }}:\n{% for c in commits %}- {{ c.id[:12] }} {{ c.subject }}\n{% endfor %}\nCapstan-Revert: {{ namespace }}/{{ app }}\n";

#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    target: &'a str,
    commits: &'a [revert::RevertedCommit],
    commit: Option<&'a str>,
    sync: Option<(&'a str, &'a str)>,
}

/// The revision a history entry id or a commit names.
fn target(history: &[HistoryEntry], to: Option<&str>, current: &str) -> anyhow::Result<String> {
    match to {
        Some(t) if t.chars().all(|c| c.is_ascii_digit()) && t.len() < 10 => {
            let id: u64 = t.parse()?;
            history
                .iter()
                .find(|h| h.id == id)
                .map(|h| h.revision.clone())
                .with_context(|| format!("no history entry {id} (see `capstan history`)"))
        }
        Some(t) => Ok(t.to_string()),
        None => history
            .iter()
            .find(|h| h.result == "Succeeded" && h.revision != current)
            .map(|h| h.revision.clone())
            .context(
                "no earlier successful revision to revert to (see `capstan history`; or give --to)",
            ),
    }
}

pub async fn run(cmd: RevertCommand) -> anyhow::Result<ExitCode> {
    let (client, ns) = cmd.scope.client().await?;
    let api: Api<Application> = Api::namespaced(client.clone(), &ns);
    let app = api
        .get_opt(&cmd.name)
        .await?
        .with_context(|| format!("application {ns}/{} not found", cmd.name))?;
    let status = app.status.clone().unwrap_or_default();
    let current = status
        .sync
        .as_ref()
        .map(|s| s.revision.clone())
        .unwrap_or_default();
    let target = target(&status.history, cmd.to.as_deref(), &current)?;
    let source = &app.spec.source;
    let branch = source.target_revision.clone().unwrap_or_default();
    if branch.starts_with(|c: char| "<>=~^*".contains(c))
        || (branch.len() >= 7 && branch.chars().all(|c| c.is_ascii_hexdigit()))
    {
        bail!(
            "{ns}/{} follows {branch:?}, not a branch: a revert commit needs a branch to go to (use `capstan rollback`)",
            cmd.name
        );
    }
    let path = source.path.clone().unwrap_or_else(|| ".".into());
    let src = repository(&cmd, &client, &ns, &app).await?;
    let mut opts = writeback::options(&cmd.commit)?;
    opts.branch = branch.clone();
    let message = writeback::template(
        "--message",
        cmd.commit.message.as_deref().unwrap_or(DEFAULT_MESSAGE),
    )?;
    let vars = |r: &Reverted, branch: &str| Vars {
        app: cmd.name.clone(),
        namespace: ns.clone(),
        short_target: r.target.chars().take(12).collect(),
        target: r.target.clone(),
        commits: r.commits.clone(),
        path: path.clone(),
        branch: branch.to_string(),
    };
    message.render(&vars(&Reverted::default(), &branch))?;
    let cache = crate::source::cache(cmd.commit.cache_dir.as_deref());
    let report = tokio::task::block_in_place(|| {
        cache.write(
            &src,
            &opts,
            |tree| Ok(revert::revert_path(tree, &target, &path)?),
            |r| {
                message
                    .render(&vars(r, &branch))
                    .unwrap_or_else(|e| format!("Revert {} to {}\n\n({e})", cmd.name, r.target))
            },
        )
    })
    .with_context(|| format!("reverting {ns}/{} in {}", cmd.name, src.display_url()))?;
    let reverted = &report.edit;
    let json = |commit: Option<&str>, sync: Option<(&str, &str)>| {
        serde_json::to_string_pretty(&JsonOut {
            target: &reverted.target,
            commits: &reverted.commits,
            commit,
            sync,
        })
        .unwrap_or_default()
    };
    let Written::Pushed { commit, branch, .. } = &report.written else {
        let text = format!(
            "nothing to revert: {path} has not changed since {}",
            &reverted.target[..reverted.target.len().min(12)]
        );
        match cmd.output {
            Format::Json => crate::outln!("{}", json(None, None)),
            _ => crate::outln!("{text}"),
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !matches!(cmd.output, Format::Json) {
        let mut text = String::new();
        for c in &reverted.commits {
            text.push_str(&format!(
                "reverted {} {}\n",
                &c.id[..c.id.len().min(12)],
                c.subject
            ));
        }
        text.push_str(&format!(
            "pushed {} to {branch}",
            &commit[..commit.len().min(12)]
        ));
        crate::outln!("{text}");
    }
    let req = SyncRequest {
        id: request_id(),
        revision: commit.clone(),
        trigger: "revert".into(),
        by: who(),
        prune: None,
        history_id: None,
        commit: commit.clone(),
    };
    request_sync(&api, &cmd.name, &req, None)
        .await
        .with_context(|| format!("requesting a sync of {}", cmd.name))?;
    if cmd.no_wait {
        if !matches!(cmd.output, Format::Json) {
            eprintln!("sync of {ns}/{} requested", cmd.name);
        } else {
            crate::outln!("{}", json(Some(commit), None));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (phase, msg) = wait_for(&api, &cmd.name, &req.id, cmd.timeout).await?;
    match cmd.output {
        Format::Json => crate::outln!("{}", json(Some(commit), Some((&phase, &msg)))),
        _ => crate::outln!("{ns}/{}: {phase}: {msg}; automated sync stays on", cmd.name),
    }
    Ok(if phase == "Succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The Application's repository, with credentials from the flags, or else from the
/// Application's credentials Secret (as the controller reads it).
async fn repository(
    cmd: &RevertCommand,
    client: &kube::Client,
    ns: &str,
    app: &Application,
) -> anyhow::Result<GitSource> {
    let url = &app.spec.source.repo_url;
    if cmd.commit.credentials.given() {
        return crate::source::repository(url, &cmd.commit.credentials);
    }
    let state = crate::source::cache(cmd.commit.cache_dir.as_deref())
        .root()
        .join("credentials");
    let auth = capstan_controller::credentials::git_auth(
        client,
        ns,
        app.spec.source.credentials_secret.as_deref(),
        &state,
    )
    .await
    .with_context(|| format!("the credentials of {ns}/{}", app.name_any()))?;
    Ok(GitSource {
        url: url.clone(),
        auth,
    })
}
