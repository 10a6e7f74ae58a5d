//! `capstan promote`: the images one environment runs, written into another's in one
//! commit (staging's overlay → production's).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use capstan_engine::images::ImageRef;
use capstan_engine::images::edit::{self, EditPlan, ImageSetting, UsedImage};
use capstan_engine::source::Written;
use clap::Args;
use serde::Serialize;

use crate::args::{Format, WriteArgs};
use crate::writeback;

/// Copy the image tags and digests that one path uses into another path.
#[derive(Debug, Args)]
pub struct PromoteCommand {
    /// A local directory holding both paths, edited in place (instead of --repo).
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The environment to take the images from (an overlay, a values file's chart, a
    /// directory of manifests).
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// The environment to write them into.
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// Only these images (as FROM names them; repeatable). Default: every image FROM
    /// pins to a tag or digest.
    #[arg(long = "image", value_name = "NAME")]
    images: Vec<String>,
    #[command(flatten)]
    write: WriteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

/// What the message template sees.
#[derive(Debug, Clone, Serialize)]
struct Vars {
    from: String,
    to: String,
    images: Vec<String>,
    changes: Vec<edit::FieldChange>,
    files: Vec<String>,
}

const DEFAULT_MESSAGE: &str = "Promote {{ images | join(\", \") }} from {{ from }} to {{ to }}\n\n{% for c in changes %}- {{ c.file }}: {{ c.field }}: {{ c.old }} -> {{ c.new }}\n{% endfor %}";

/// The plan that writes what `from` uses into `to`.
fn plan_from(
    root: &Path,
    cmd: &PromoteCommand,
) -> Result<(EditPlan, Vec<String>), edit::EditError> {
    let used: Vec<UsedImage> = edit::used_images(root, &cmd.from)?;
    let mut settings = Vec::new();
    let mut names = Vec::new();
    for wanted in &cmd.images {
        if !used
            .iter()
            .any(|u| u.image == *wanted || ImageRef::named(&u.image).same_repository(wanted))
        {
            return Err(edit::EditError::NotUsed {
                path: cmd.from.display().to_string(),
                names: vec![wanted.clone()],
            });
        }
    }
    for u in used {
        if !cmd.images.is_empty()
            && !cmd
                .images
                .iter()
                .any(|w| *w == u.image || ImageRef::named(&u.image).same_repository(w))
        {
            continue;
        }
        let Ok(new) = ImageRef::parse(&u.reference) else {
            continue;
        };
        names.push(new.to_string());
        settings.push(ImageSetting {
            rename: new.name != u.image,
            image: u.image,
            new,
            // the entry FROM has, TO gets too
            named: true,
        });
    }
    Ok((
        EditPlan {
            images: settings,
            add_kustomize_entries: true,
            ..Default::default()
        },
        names,
    ))
}

pub async fn run(cmd: PromoteCommand) -> anyhow::Result<ExitCode> {
    if cmd.from == cmd.to {
        bail!("--from and --to are the same path");
    }
    let vars = |names: Vec<String>, changes: Vec<edit::FieldChange>, files: Vec<String>| Vars {
        from: cmd.from.display().to_string(),
        to: cmd.to.display().to_string(),
        images: names,
        changes,
        files,
    };
    match (&cmd.dir, &cmd.write.repo) {
        (Some(_), Some(_)) => bail!("give a DIR or --repo, not both"),
        (None, None) => bail!("give the directory holding both paths, or --repo URL"),
        (Some(dir), None) => {
            let (plan, names) = plan_from(dir, &cmd)?;
            if plan.images.is_empty() {
                bail!(
                    "{} pins no image to a tag or digest: nothing to promote",
                    cmd.from.display()
                );
            }
            let outcome = edit::apply(dir, &cmd.to, &plan)?;
            let summary = if outcome.changes.is_empty() {
                format!(
                    "no change: {} already runs {}",
                    cmd.to.display(),
                    names.join(", ")
                )
            } else {
                format!(
                    "{} field(s) changed in {} file(s)",
                    outcome.changes.len(),
                    outcome.files.len()
                )
            };
            writeback::print(&cmd.output, &outcome.changes, &outcome.files, None, summary);
            Ok(ExitCode::SUCCESS)
        }
        (None, Some(_)) => {
            let (src, opts) = writeback::target(&cmd.write)?;
            let message = writeback::template(
                "--message",
                cmd.write
                    .commit
                    .message
                    .as_deref()
                    .unwrap_or(DEFAULT_MESSAGE),
            )?;
            message.render(&vars(Vec::new(), Vec::new(), Vec::new()))?;
            let mut opts = opts;
            if let Some(t) = &cmd.write.push_branch {
                let t = writeback::template("--push-branch", t)?;
                opts.push_branch = Some(
                    t.render(&vars(Vec::new(), Vec::new(), Vec::new()))?
                        .trim()
                        .to_string(),
                );
            }
            let cache = crate::source::cache(cmd.write.commit.cache_dir.as_deref());
            let report = tokio::task::block_in_place(|| {
                cache.write(
                    &src,
                    &opts,
                    |tree| {
                        let (plan, names) = plan_from(tree.root(), &cmd)?;
                        if plan.images.is_empty() {
                            return Err(format!(
                                "{} pins no image to a tag or digest: nothing to promote",
                                cmd.from.display()
                            )
                            .into());
                        }
                        let outcome = edit::apply(tree.root(), &cmd.to, &plan)?;
                        Ok((names, outcome))
                    },
                    |(names, outcome)| {
                        message
                            .render(&vars(
                                names.clone(),
                                outcome.changes.clone(),
                                outcome.files.clone(),
                            ))
                            .unwrap_or_else(|e| format!("Promote {}\n\n({e})", names.join(", ")))
                    },
                )
            })
            .with_context(|| format!("promote in {}", src.display_url()))?;
            let (_, outcome) = &report.edit;
            let summary = writeback::written_line(
                &report.written,
                outcome.files.len(),
                outcome.changes.len(),
            );
            let pushed = match &report.written {
                Written::Pushed { commit, branch, .. } => Some((commit.as_str(), branch.as_str())),
                Written::NoChange { .. } => None,
            };
            writeback::print(
                &cmd.output,
                &outcome.changes,
                &outcome.files,
                pushed,
                summary,
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
