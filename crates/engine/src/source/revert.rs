//! Rolling back the GitOps way: a real revert of the commits that changed an
//! Application's path since a revision, made in a write's work tree so it is
//! committed and pushed like every other write-back.
//!
//! The commits are those `git rev-list TARGET..HEAD -- PATH` lists (merges left out:
//! the commits they brought in are reverted one by one), reverted newest first with
//! `git revert --no-commit`, so the result is one commit. A commit that also changed
//! other paths is reverted whole, as `git revert` does; when a later commit changed
//! those lines again the revert conflicts, and the error names the commit and the
//! files — nothing is committed or pushed.

use serde::Serialize;

use super::write::{WorkTree, WriteError};

/// A reverted commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevertedCommit {
    /// Its id.
    pub id: String,
    /// The first line of its message.
    pub subject: String,
}

/// What a revert undid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reverted {
    /// The revision the path goes back to (full id).
    pub target: String,
    /// The commits reverted, newest first (empty: nothing changed the path).
    pub commits: Vec<RevertedCommit>,
}

/// Why a revert could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    /// The revision is not a commit of the repository.
    #[error("revision {revision:?} is not a commit of the repository")]
    UnknownRevision {
        /// What was asked for.
        revision: String,
    },
    /// The revision is not in the branch's history.
    #[error(
        "revision {revision} is not in the history of branch {branch:?}: only what the branch deployed can be reverted to"
    )]
    NotAnAncestor {
        /// The revision.
        revision: String,
        /// The branch.
        branch: String,
    },
    /// A reverted commit conflicts with a later one.
    #[error(
        "reverting {commit} ({subject}) conflicts with a later change in {}; nothing was committed or pushed — revert it by hand, or revert to a later revision",
        files.join(", ")
    )]
    Conflict {
        /// The commit that did not revert cleanly.
        commit: String,
        /// Its subject.
        subject: String,
        /// The conflicted files.
        files: Vec<String>,
    },
    /// Git failed.
    #[error(transparent)]
    Git(#[from] WriteError),
}

/// Revert, in `tree`, every commit since `target` that touched `path`.
pub fn revert_path(tree: &WorkTree, target: &str, path: &str) -> Result<Reverted, RevertError> {
    let target_id = tree
        .git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{target}^{{commit}}"),
        ])
        .map_err(|_| RevertError::UnknownRevision {
            revision: target.to_string(),
        })?
        .trim()
        .to_string();
    let (ancestor, _, _) = tree.git_status(&["merge-base", "--is-ancestor", &target_id, "HEAD"])?;
    if !ancestor {
        return Err(RevertError::NotAnAncestor {
            revision: target_id,
            branch: tree.branch().to_string(),
        });
    }
    let pathspec = if path.is_empty() || path == "." {
        "."
    } else {
        path
    };
    let list = tree.git(&[
        "rev-list",
        "--no-merges",
        "--topo-order",
        "--format=%s",
        &format!("{target_id}..HEAD"),
        "--",
        pathspec,
    ])?;
    let mut commits = Vec::new();
    let mut lines = list.lines();
    while let Some(line) = lines.next() {
        if let Some(id) = line.strip_prefix("commit ") {
            let subject = lines.next().unwrap_or_default().to_string();
            commits.push(RevertedCommit {
                id: id.trim().to_string(),
                subject,
            });
        }
    }
    for c in &commits {
        let (ok, _, _) = tree.git_status(&["revert", "--no-commit", "--no-edit", &c.id])?;
        if !ok {
            let files = tree
                .git(&["diff", "--name-only", "--diff-filter=U"])
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect();
            let _ = tree.git_status(&["revert", "--abort"]);
            let _ = tree.git_status(&["reset", "-q", "--hard", "HEAD"]);
            return Err(RevertError::Conflict {
                commit: c.id.chars().take(12).collect(),
                subject: c.subject.clone(),
                files,
            });
        }
    }
    // the sequencer's state of the last revert must not linger into the commit
    let _ = tree.git_status(&["revert", "--quit"]);
    Ok(Reverted {
        target: target_id,
        commits,
    })
}
