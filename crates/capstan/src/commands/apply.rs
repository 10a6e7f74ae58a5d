//! `capstan apply`: render, apply, prune — the push-based delivery for CI pipelines.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use capstan_core::{HookType, Outcome, SyncOptionSet};
use capstan_engine::destination::Destination;
use capstan_engine::sync::{self, Progress, SyncOptions};
use clap::Args;
use serde_json::json;

use crate::args::{ClusterArgs, Format, SourceArgs};
use crate::print;

/// Render a source and apply it to the cluster, pruning what left it.
#[derive(Debug, Args)]
pub struct ApplyCommand {
    #[command(flatten)]
    source: SourceArgs,
    /// The application name: labels the objects and names the inventory used for pruning.
    #[arg(long, value_parser = app_name)]
    app: String,
    /// Namespace for namespaced objects that name none.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Delete objects this application applied before that are no longer in the source.
    #[arg(long)]
    prune: bool,
    /// Allow an empty render (with --prune it deletes everything the application applied).
    #[arg(long)]
    allow_empty: bool,
    /// Wait until everything is healthy.
    #[arg(long)]
    wait: bool,
    /// Time limit for each health wait.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Show what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Take over fields that other field managers own.
    #[arg(long)]
    force_conflicts: bool,
    /// Create the namespace (-n) when it does not exist (Argo CD's CreateNamespace=true).
    #[arg(long)]
    create_namespace: bool,
    /// A sync option for every object, as Argo CD spells them (repeatable):
    /// Replace=true, ServerSideApply=false, Validate=false, Prune=false, ... Objects'
    /// own `argocd.argoproj.io/sync-options` / `capstan.dev/sync-options` annotations win.
    #[arg(long = "sync-option", value_name = "KEY=VALUE")]
    sync_options: Vec<String>,
    /// Prune objects marked Prune=confirm.
    #[arg(long)]
    confirm_prune: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Namespace where inventories are kept.
    #[arg(long, default_value = capstan_engine::inventory::INVENTORY_NAMESPACE)]
    inventory_namespace: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

/// Application names are RFC 1123 labels (they name a label value and a ConfigMap).
pub fn app_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 53
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a valid application name: use lowercase letters, digits and '-', at most 53 characters"
        ))
    }
}

pub async fn run(args: ApplyCommand) -> anyhow::Result<ExitCode> {
    let t = std::time::Instant::now();
    let client = crate::kube::client(&args.cluster).await?;
    let dest = Destination::new(client, &args.namespace);
    let scopes = dest.scopes().await?;
    let from_cluster = crate::source::from_cluster(&dest, &args.source.render).await?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        "discovered the cluster"
    );
    let t = std::time::Instant::now();
    let checkout = crate::source::checkout(&args.source, None).await?;
    let desired = crate::source::render(
        &checkout,
        &args.source.render,
        &args.namespace,
        &scopes,
        Some(&from_cluster),
    )
    .await?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        objects = desired.len(),
        "rendered"
    );
    let text = args.output == Format::Text;
    if text {
        eprintln!(
            "{} objects rendered from {}",
            desired.len(),
            checkout.describe()
        );
    }

    let mut opts = SyncOptions::new(&args.app);
    opts.prune = args.prune;
    opts.allow_empty = args.allow_empty;
    opts.wait = args.wait;
    opts.timeout = args.timeout;
    opts.dry_run = args.dry_run;
    opts.inventory_namespace = args.inventory_namespace.clone();
    opts.plan.force_conflicts = args.force_conflicts;
    opts.confirm_prune = args.confirm_prune;
    opts.plan.sync_options = SyncOptionSet::default()
        .with(args.sync_options.iter().map(String::as_str))
        .map_err(|e| anyhow::anyhow!("--sync-option: {e}"))?;
    if args.create_namespace {
        opts.plan.sync_options.create_namespace = true;
    }
    opts.plan.concurrency = args.concurrency.max(1);
    let bar = (text && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    if let Some(b) = bar.clone() {
        opts.progress = Some(Arc::new(move |p: &Progress| match p {
            Progress::Planned {
                to_apply, to_prune, ..
            } => b.set_length((*to_apply + *to_prune) as u64),
            Progress::Step(phase, w) => b.set_message(format!("{phase} wave {w}")),
            Progress::Hook(run) => b.set_message(print::hook_line(run, false)),
            Progress::Applied(id, o) | Progress::Pruned(id, o) if *o != Outcome::Unchanged => {
                b.inc(1);
                b.set_message(print::kubectl_name(id));
            }
            Progress::Waiting(pending) => b.set_message(format!(
                "waiting for {} object(s) to become healthy",
                pending.len()
            )),
            _ => {}
        }));
    }
    let report = sync::sync(&dest, desired, &checkout.revision, &opts).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    match args.output {
        Format::Json | Format::Yaml => {
            let doc = json!({
                "application": args.app,
                "revision": checkout.revision,
                "dryRun": args.dry_run,
                "changes": report.changes.entries,
                "hooks": report.hooks.iter().map(|h| json!({
                    "object": h.object,
                    "hookType": h.result.hook_type,
                    "phase": h.result.phase,
                    "message": h.result.message,
                })).collect::<Vec<_>>(),
                "health": report.health,
                "succeeded": report.succeeded(),
                "error": report.error.as_ref().map(|e| e.to_string()),
            });
            if args.output == Format::Yaml {
                crate::print::out(&capstan_engine::diff::to_yaml(&doc));
            } else {
                print::json(&doc);
            }
        }
        _ => {
            // one write for all the lines (thousands of objects, one line each)
            let mut text = String::new();
            // PreSync hooks, the objects, then the hooks that ran with or after them
            let (pre, later): (Vec<_>, Vec<_>) = report
                .hooks
                .iter()
                .partition(|h| h.result.hook_type == HookType::PreSync);
            for h in pre {
                text.push_str(&print::hook_line(h, true));
                text.push('\n');
            }
            for e in &report.changes.entries {
                if let Some(o) = &e.outcome {
                    text.push_str(&print::outcome_line(&e.object, o, args.dry_run));
                    text.push('\n');
                }
            }
            for h in later {
                text.push_str(&print::hook_line(h, true));
                text.push('\n');
            }
            if let Some(h) = &report.health {
                text.push_str(&format!("health: {}\n", h.state));
                for e in &report.changes.entries {
                    if let Some(h) = &e.health {
                        text.push_str(&print::health_line(&e.object, h));
                        text.push('\n');
                    }
                }
            }
            print::out(&text);
            let dry_run = if args.dry_run {
                " — dry run, nothing was changed"
            } else {
                ""
            };
            eprintln!(
                "{}{dry_run} ({})",
                print::summary(&report.changes),
                checkout.describe()
            );
        }
    }
    match &report.error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
