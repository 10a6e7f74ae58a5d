//! An image write-back: edit plans applied to paths of a repository, in one commit.
//!
//! This is what `capstan set-image --repo`, `capstan promote` and the operator's
//! ImageUpdate have in common: check the branch out ([`GitCache::write`]), apply
//! every [`PathPlan`] to the work tree ([`edit::apply`]), and commit and push what
//! changed — however many paths, images and policies, one commit. When others push
//! first, the plans are applied again on their commit, so an image someone else
//! already set is not committed twice.

use std::path::PathBuf;

use serde::Serialize;

use super::edit::{self, EditOutcome, EditPlan, FieldChange};
use crate::source::write::EditError as WriteEditError;
use crate::source::{GitCache, GitSource, WriteError, WriteOptions, WriteReport};

/// What to set under one path of the repository.
#[derive(Debug, Clone)]
pub struct PathPlan {
    /// The path, relative to the repository's top.
    pub path: PathBuf,
    /// What to set there.
    pub plan: EditPlan,
}

/// What a write-back changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Updated {
    /// Every changed field, path by path.
    pub changes: Vec<FieldChange>,
    /// Files written.
    pub files: Vec<String>,
    /// Images and policies nothing used, as `path: name`.
    pub unused: Vec<String>,
}

/// Apply `plans` on `opts.branch` of `src` and push the result as one commit whose
/// message `message` makes from what changed.
pub fn write(
    cache: &GitCache,
    src: &GitSource,
    opts: &WriteOptions,
    plans: &[PathPlan],
    message: impl Fn(&Updated) -> String,
) -> Result<WriteReport<Updated>, WriteError> {
    cache.write(
        src,
        opts,
        |tree| {
            let mut updated = Updated::default();
            for p in plans {
                let outcome: EditOutcome = edit::apply(tree.root(), &p.path, &p.plan)
                    .map_err(|e| Box::new(e) as WriteEditError)?;
                updated.changes.extend(outcome.changes);
                updated.files.extend(outcome.files);
                updated.unused.extend(
                    outcome
                        .unused
                        .into_iter()
                        .map(|u| format!("{}: {u}", display(&p.path))),
                );
            }
            Ok(updated)
        },
        message,
    )
}

fn display(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    if s.is_empty() { ".".into() } else { s }
}
