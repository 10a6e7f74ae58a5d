//! Where manifests come from: a Git repository at a revision, a local directory, or a
//! Helm chart from a chart repository or an OCI registry ([`helm`]).
//!
//! Either way the result is a [`Checkout`]: a directory on disk holding the tree, the
//! [`Revision`] it was taken from, and the path inside it to render. Every path later
//! read from a checkout stays inside it ([`confine`]): symlinks and `..` that escape
//! are errors naming the path.
//!
//! The write side ([`write`]) checks out a branch, lets an edit change the tree,
//! and commits and pushes the result — never forced, retried on top of anyone who
//! pushed first, and no commit when nothing changed.

pub mod confine;
pub mod git;
/// Helm charts from chart repositories (`index.yaml`) and OCI registries, cached by digest.
pub mod helm;
pub mod local;
pub mod revert;
pub mod template;
pub mod url;
pub mod write;

use std::path::{Path, PathBuf};

use capstan_core::Revision;

pub use confine::ConfineError;
pub use git::{GitAuth, GitCache, GitError, GitSource};
pub use helm::{ChartCache, ChartError, ChartSource, FetchedChart, HelmAuth};
pub use write::{Identity, SigningKey, WorkTree, WriteError, WriteOptions, WriteReport, Written};

/// A tree on disk, ready to render.
#[derive(Debug)]
pub struct Checkout {
    /// The root of the tree (the repository's top, or the local directory).
    pub root: PathBuf,
    /// The path inside `root` that holds the manifests (`.` for the root).
    pub path: PathBuf,
    /// What the tree is.
    pub revision: Revision,
    /// Keeps a temporary extraction alive for as long as the checkout is used.
    _temp: Option<tempfile::TempDir>,
}

impl Checkout {
    /// A checkout over an existing directory (nothing is removed when it is dropped).
    pub fn existing(root: PathBuf, path: PathBuf, revision: Revision) -> Self {
        Checkout {
            root,
            path,
            revision,
            _temp: None,
        }
    }

    /// A checkout in a temporary directory removed when the checkout is dropped.
    pub fn temporary(dir: tempfile::TempDir, path: PathBuf, revision: Revision) -> Self {
        Checkout {
            root: dir.path().to_path_buf(),
            path,
            revision,
            _temp: Some(dir),
        }
    }

    /// The absolute directory to render.
    pub fn render_dir(&self) -> PathBuf {
        self.root.join(&self.path)
    }

    /// `root`, for confinement checks.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
