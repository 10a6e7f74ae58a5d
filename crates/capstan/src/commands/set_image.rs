//! `capstan set-image`: write new image tags into an environment repository — in a
//! directory in place, or as a commit pushed to a repository (a CI pipeline's last
//! step in push-based GitOps).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use capstan_engine::images::ImageRef;
use capstan_engine::images::edit::{self, EditPlan, HelmTarget, ImageSetting};
use capstan_engine::images::update::{self, PathPlan, Updated};
use capstan_engine::source::template::Template;
use clap::Args;
use serde::Serialize;

use crate::args::{Format, WriteArgs};
use crate::writeback;

/// Variables of `--message` and `--push-branch` templates.
const TEMPLATE_HELP: &str = "\
Templates (--message, --push-branch) are Jinja: {{ app }} (--app, default the last part of \
--path), {{ image }}, {{ tag }}, {{ digest }} (of the first IMAGE=REF), {{ images }} (every \
new reference), {{ path }}, {{ branch }}; --message also has {{ changes }} (each with file, \
object, field, old, new, by) and {{ files }}.

Where an image is written: Kustomize images entries (for IMAGE=REF, added to the \
Kustomization at the path when none matches, as `kustomize edit set image` does), Helm values (a --helm-key, or a \
mapping with `repository` and `tag`), container images of plain manifests, and Flux setter \
markers (# {\"$imagepolicy\": \"NS:NAME\"}) for --policy values. Only the changed values \
change in the files: comments, order, quoting and layout stay.";

/// Write new image references into manifests, Kustomizations and Helm values.
#[derive(Debug, Args)]
#[command(after_help = TEMPLATE_HELP)]
pub struct SetImageCommand {
    /// `DIR IMAGE=REF...` edits DIR in place; with --repo, `IMAGE=REF...` only. IMAGE is
    /// the image as the manifests name it; `REF` alone sets REF's tag or digest wherever
    /// REF's repository is used.
    #[arg(value_name = "[DIR] IMAGE=REF")]
    args: Vec<String>,
    /// The path inside DIR or the repository to edit.
    #[arg(long, value_name = "PATH", default_value = ".")]
    path: PathBuf,
    /// A Flux image policy's value for setter markers: `NAMESPACE:POLICY=REF`.
    #[arg(long = "policy", value_name = "NS:NAME=REF")]
    policies: Vec<String>,
    /// Write IMAGE to a Helm values key: `IMAGE=FILE:KEY`, FILE relative to --path, KEY
    /// like `image` (a mapping with repository/tag/digest, or a whole reference),
    /// `image.tag`, `image.repository`, `image.digest`.
    #[arg(long = "helm-key", value_name = "IMAGE=FILE:KEY")]
    helm: Vec<String>,
    /// The application name for templates (default: the last part of --path).
    #[arg(long)]
    app: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

/// What templates see.
#[derive(Debug, Clone, Serialize)]
struct Vars {
    app: String,
    image: String,
    tag: String,
    digest: String,
    images: Vec<String>,
    path: String,
    branch: String,
    changes: Vec<edit::FieldChange>,
    files: Vec<String>,
}

impl Vars {
    /// These variables after a write that changed `updated`.
    fn after(&self, updated: &Updated) -> Vars {
        Vars {
            changes: updated.changes.clone(),
            files: updated.files.clone(),
            ..self.clone()
        }
    }
}

const DEFAULT_MESSAGE: &str = "Set {{ images | join(\", \") }}{% if app %} in {{ app }}{% endif %}\n\n{% for c in changes %}- {{ c.file }}: {{ c.field }}: {{ c.old }} -> {{ c.new }}\n{% endfor %}";

pub async fn run(cmd: SetImageCommand) -> anyhow::Result<ExitCode> {
    let (dir, images) = match (&cmd.write.repo, cmd.args.split_first()) {
        (None, Some((dir, rest))) => (Some(PathBuf::from(dir)), rest.to_vec()),
        (None, None) => {
            bail!("give the directory to edit (set-image DIR IMAGE=REF...) or --repo URL")
        }
        (Some(_), _) => (None, cmd.args.clone()),
    };
    let plan = plan(&images, &cmd.policies, &cmd.helm)?;
    let app = cmd.app.clone().unwrap_or_else(|| {
        cmd.path
            .components()
            .next_back()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|c| c != ".")
            .unwrap_or_default()
    });
    let first = plan.images.first().map(|s| &s.new);
    let vars = Vars {
        app,
        image: first.map(|r| r.name.clone()).unwrap_or_default(),
        tag: first.and_then(|r| r.tag.clone()).unwrap_or_default(),
        digest: first.and_then(|r| r.digest.clone()).unwrap_or_default(),
        images: plan.images.iter().map(|s| s.new.to_string()).collect(),
        path: cmd.path.display().to_string(),
        branch: cmd.write.branch.clone().unwrap_or_default(),
        changes: Vec::new(),
        files: Vec::new(),
    };

    let Some(dir) = dir else {
        return in_repository(&cmd, plan.clone(), &vars).await;
    };
    if !dir.is_dir() {
        bail!(
            "{} is not a directory (set-image DIR IMAGE=REF...; or use --repo URL)",
            dir.display()
        );
    }
    let outcome = edit::apply(&dir, &cmd.path, &plan)?;
    writeback::print(
        &cmd.output,
        &outcome.changes,
        &outcome.files,
        None,
        if outcome.changes.is_empty() {
            "no change: every value was already so".to_string()
        } else {
            format!(
                "{} field(s) changed in {} file(s)",
                outcome.changes.len(),
                outcome.files.len()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

async fn in_repository(
    cmd: &SetImageCommand,
    plan: EditPlan,
    vars: &Vars,
) -> anyhow::Result<ExitCode> {
    let (src, mut opts) = writeback::target(&cmd.write)?;
    let message = writeback::template(
        "--message",
        cmd.write
            .commit
            .message
            .as_deref()
            .unwrap_or(DEFAULT_MESSAGE),
    )?;
    if let Some(t) = &cmd.write.push_branch {
        let t = writeback::template("--push-branch", t)?;
        let name = t.render(vars)?;
        opts.push_branch = Some(name.trim().to_string());
    }
    let plans = vec![PathPlan {
        path: cmd.path.clone(),
        plan,
    }];
    let cache = crate::source::cache(cmd.write.commit.cache_dir.as_deref());
    let rendered = |u: &Updated| -> String { render_message(&message, &vars.after(u)) };
    // check the template against a write's variables before anything is fetched
    message.render(vars)?;
    let report =
        tokio::task::block_in_place(|| update::write(&cache, &src, &opts, &plans, rendered))
            .with_context(|| format!("set-image on {}", src.display_url()))?;
    let summary = writeback::written_line(
        &report.written,
        report.edit.files.len(),
        report.edit.changes.len(),
    );
    let (commit, branch) = match &report.written {
        capstan_engine::source::Written::Pushed { commit, branch, .. } => {
            (Some(commit.as_str()), Some(branch.as_str()))
        }
        _ => (None, None),
    };
    writeback::print(
        &cmd.output,
        &report.edit.changes,
        &report.edit.files,
        commit.zip(branch),
        summary,
    );
    Ok(ExitCode::SUCCESS)
}

fn render_message(t: &Template, vars: &Vars) -> String {
    // the template rendered once already with these variables; a failure now would be
    // a bug, and the write must not be lost over it
    t.render(vars)
        .unwrap_or_else(|e| format!("Set {}\n\n({e})", vars.images.join(", ")))
}

/// The edit plan the arguments describe.
fn plan(images: &[String], policies: &[String], helm: &[String]) -> anyhow::Result<EditPlan> {
    if images.is_empty() && policies.is_empty() {
        bail!("nothing to set: give IMAGE=REF arguments or --policy NS:NAME=REF");
    }
    let images = images
        .iter()
        .map(|a| ImageSetting::parse(a).with_context(|| format!("image argument {a:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut policy_values = BTreeMap::new();
    for p in policies {
        let (name, reference) = p
            .split_once('=')
            .with_context(|| format!("--policy {p:?}: expected NAMESPACE:POLICY=REF"))?;
        if name.split(':').count() != 2 || name.split(':').any(str::is_empty) {
            bail!("--policy {p:?}: the policy must be NAMESPACE:POLICY");
        }
        let r = ImageRef::parse(reference).with_context(|| format!("--policy {p:?}"))?;
        policy_values.insert(name.to_string(), r);
    }
    let helm = helm
        .iter()
        .map(|h| {
            let (image, at) = h
                .split_once('=')
                .with_context(|| format!("--helm-key {h:?}: expected IMAGE=FILE:KEY"))?;
            let (file, key) = at
                .rsplit_once(':')
                .with_context(|| format!("--helm-key {h:?}: expected IMAGE=FILE:KEY"))?;
            if !images.iter().any(|s| s.matches(image)) {
                bail!("--helm-key {h:?}: {image} is not one of the images being set");
            }
            Ok(HelmTarget {
                image: image.to_string(),
                file: file.to_string(),
                key: key.to_string(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(EditPlan {
        images,
        policies: policy_values,
        helm,
        add_kustomize_entries: true,
        require_used: true,
        dry_run: false,
    })
}
