//! `capstan diff`: compare a source with the live cluster, or two revisions with no
//! cluster at all (the pull-request preview). Exit codes follow kubectl: 0 no
//! difference, 1 differences, 2 or more an error.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use capstan_core::{Change, ObjectRef};
use capstan_engine::destination::Destination;
use capstan_engine::diff as engine_diff;
use capstan_engine::inventory::InventoryStore;
use capstan_engine::plan::{self, PlanOptions};
use capstan_engine::render::{DesiredObject, Scopes};
use clap::Args;
use serde_json::{Value, json};

use crate::args::{ClusterArgs, Format, SourceArgs};
use crate::print;

/// Show what applying a source would change, or what changed between two revisions.
#[derive(Debug, Args)]
pub struct DiffCommand {
    #[command(flatten)]
    source: SourceArgs,
    /// The application (compares with the live cluster and its inventory).
    #[arg(long, value_parser = super::apply::app_name, conflicts_with_all = ["from", "to"])]
    app: Option<String>,
    /// Compare two revisions instead of the cluster: the old one.
    #[arg(long, value_name = "REV", requires_all = ["to", "repo"])]
    from: Option<String>,
    /// The new revision.
    #[arg(long, value_name = "REV", requires_all = ["from", "repo"])]
    to: Option<String>,
    /// Preview the whole repository between --from and --to: every Application it
    /// defines (Capstan's, Argo CD's and Flux's, app-of-apps included), those whose
    /// inputs changed rendered at both revisions, one report (-o markdown for a pull
    /// request). --path and the renderer flags other than the binaries do not apply.
    #[arg(long, requires_all = ["from", "to"])]
    all: bool,
    /// With --all: another URL the Applications use for this repository (its URL on
    /// the Git host, when --repo is a mirror or a local path); repeatable.
    #[arg(long = "repo-alias", value_name = "URL", requires = "all")]
    repo_aliases: Vec<String>,
    /// Namespace for namespaced objects that name none.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Take over fields other managers own (as `apply --force-conflicts` would).
    #[arg(long)]
    force_conflicts: bool,
    /// Namespace where inventories are kept.
    #[arg(long, default_value = capstan_engine::inventory::INVENTORY_NAMESPACE)]
    inventory_namespace: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

/// One object's difference, for every output format.
struct Item {
    id: ObjectRef,
    /// `create`, `update`, `prune` (cluster) or `added`, `changed`, `removed` (revisions).
    action: &'static str,
    diff: String,
    error: Option<String>,
}

pub async fn run(args: DiffCommand) -> anyhow::Result<ExitCode> {
    if let (true, Some(from), Some(to)) = (args.all, &args.from, &args.to) {
        return super::preview::run(&args.source, from, to, &args.repo_aliases, args.output).await;
    }
    let (items, title) = match (&args.from, &args.to, &args.app) {
        (Some(from), Some(to), _) => revisions(&args, from, to).await?,
        (None, None, Some(app)) => cluster(&args, app).await?,
        _ => bail!(
            "give --app NAME to compare with the cluster, or --from REV --to REV --repo URL to compare revisions"
        ),
    };
    let errors = items.iter().filter(|i| i.error.is_some()).count();
    match args.output {
        Format::Json | Format::Yaml => print::json(&json!({
            "title": title,
            "changes": items.iter().map(|i| json!({
                "object": i.id, "action": i.action, "diff": i.diff, "error": i.error,
            })).collect::<Vec<_>>(),
        })),
        Format::Markdown => print::out(&markdown(&title, &items)),
        Format::Text => {
            for i in &items {
                match &i.error {
                    Some(e) => crate::outln!("{} {}: error: {e}", i.action, i.id),
                    None => {
                        crate::outln!("{} {}", i.action, i.id);
                        crate::print::out(&print::colored_diff(&i.diff));
                    }
                }
            }
            eprintln!("{}: {}", title, counts(&items));
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else if items.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn counts(items: &[Item]) -> String {
    if items.is_empty() {
        return "no differences".into();
    }
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for i in items {
        *by.entry(i.action).or_default() += 1;
    }
    by.iter()
        .map(|(a, n)| format!("{n} {a}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn markdown(title: &str, items: &[Item]) -> String {
    let mut out = format!("### {title}\n\n**{}**\n\n", counts(items));
    for i in items {
        out.push_str(&format!(
            "<details><summary><code>{}</code> ({})</summary>\n\n",
            i.id, i.action
        ));
        match &i.error {
            Some(e) => out.push_str(&format!("Error: {e}\n\n")),
            None => out.push_str(&format!("```diff\n{}```\n\n", i.diff)),
        }
        out.push_str("</details>\n\n");
    }
    out
}

async fn cluster(args: &DiffCommand, app: &str) -> anyhow::Result<(Vec<Item>, String)> {
    let client = crate::kube::client(&args.cluster).await?;
    let dest = Destination::new(client.clone(), &args.namespace);
    let scopes = dest.scopes().await?;
    let from_cluster = crate::source::from_cluster(&dest, &args.source.render).await?;
    let checkout = crate::source::checkout(&args.source, None).await?;
    let desired = crate::source::render(
        &checkout,
        &args.source.render,
        &args.namespace,
        &scopes,
        Some(&from_cluster),
    )
    .await?;
    let previous = InventoryStore::new(client, &args.inventory_namespace)
        .load(app)
        .await?;
    let mut opts = PlanOptions::new(app);
    opts.force_conflicts = args.force_conflicts;
    let plan = plan::plan(&dest, &desired, &previous, &opts).await?;
    let mut items = Vec::new();
    for o in &plan.objects {
        let (action, diff) = match &o.change {
            Change::Unchanged if o.error.is_none() => continue,
            Change::Create => (
                "create",
                engine_diff::unified(&o.desired.id, None, Some(&o.desired.object), &[]),
            ),
            Change::Update { diff } => ("update", diff.clone()),
            _ => ("update", String::new()),
        };
        items.push(Item {
            id: o.desired.id.clone(),
            action,
            diff,
            error: o.error.clone(),
        });
    }
    for p in plan.prune.iter().filter(|p| p.is_drift()) {
        items.push(Item {
            id: p.entry.id.clone(),
            action: "prune",
            diff: String::new(),
            error: None,
        });
    }
    let title = format!("{app}: {} against the cluster", checkout.describe());
    Ok((items, title))
}

async fn revisions(
    args: &DiffCommand,
    from: &str,
    to: &str,
) -> anyhow::Result<(Vec<Item>, String)> {
    let scopes = Scopes::builtin();
    let old = crate::source::checkout(&args.source, Some(from))
        .await
        .with_context(|| format!("revision {from}"))?;
    let new = crate::source::checkout(&args.source, Some(to))
        .await
        .with_context(|| format!("revision {to}"))?;
    let before = index(
        crate::source::render(&old, &args.source.render, &args.namespace, &scopes, None)
            .await
            .with_context(|| format!("rendering {from}"))?,
    );
    let after = index(
        crate::source::render(&new, &args.source.render, &args.namespace, &scopes, None)
            .await
            .with_context(|| format!("rendering {to}"))?,
    );
    let labels = (
        old.revision.short().to_string(),
        new.revision.short().to_string(),
    );
    let labels = (labels.0.as_str(), labels.1.as_str());
    let mut items = Vec::new();
    for (id, b) in &after {
        match before.get(id) {
            None => items.push(Item {
                id: id.clone(),
                action: "added",
                diff: engine_diff::unified_between(id, None, Some(b), &[], labels),
                error: None,
            }),
            Some(a) if !engine_diff::values_equal(a, b) => items.push(Item {
                id: id.clone(),
                action: "changed",
                diff: engine_diff::unified_between(id, Some(a), Some(b), &[], labels),
                error: None,
            }),
            Some(_) => {}
        }
    }
    for (id, a) in &before {
        if !after.contains_key(id) {
            items.push(Item {
                id: id.clone(),
                action: "removed",
                diff: engine_diff::unified_between(id, Some(a), None, &[], labels),
                error: None,
            });
        }
    }
    let path = args.source.path.display();
    let title = format!(
        "Capstan diff of `{path}`: {} → {}",
        old.revision.short(),
        new.revision.short()
    );
    Ok((items, title))
}

fn index(objs: Vec<DesiredObject>) -> BTreeMap<ObjectRef, Value> {
    objs.into_iter().map(|d| (d.id, d.object)).collect()
}
