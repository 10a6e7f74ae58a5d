//! The preview as data: one entry per Application, what happened to it and why, and the
//! difference of each of its objects — one type for the text, JSON and Markdown output.

use capstan_core::{ObjectRef, Revision};
use serde::Serialize;

/// What the change does to one Application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Its rendered objects differ (or its definition changed).
    Changed,
    /// It is defined at the new revision only.
    New,
    /// It is defined at the old revision only.
    Removed,
    /// It could not be read or rendered.
    Error,
    /// Its sources are not (only) this repository: listed, not rendered.
    External,
    /// Nothing it reads changed, or what it renders is the same.
    Unchanged,
}

impl Status {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Changed => "changed",
            Status::New => "new",
            Status::Removed => "removed",
            Status::Error => "error",
            Status::External => "external",
            Status::Unchanged => "unchanged",
        }
    }
}

/// How an object differs between the two revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Rendered at the new revision only.
    Added,
    /// Rendered at both, differently.
    Changed,
    /// Rendered at the old revision only.
    Removed,
}

impl Action {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Changed => "changed",
            Action::Removed => "removed",
        }
    }
}

/// One object's difference (Secret values masked, as in every Capstan diff).
#[derive(Debug, Clone, Serialize)]
pub struct ObjectChange {
    /// The object.
    pub object: ObjectRef,
    /// What happened to it.
    pub action: Action,
    /// A unified diff of its YAML.
    pub diff: String,
}

/// One Application of the repository.
#[derive(Debug, Clone, Serialize)]
pub struct AppReport {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The object that defines it (`Application argocd/web`, `Kustomization
    /// flux-system/apps`), and where (`apps/web.yaml (document 1)`, or the Application
    /// whose render made it).
    pub defined_by: String,
    /// The Application (app-of-apps) whose render defines it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// What the change does to it.
    pub status: Status,
    /// Why it was rendered, or why not (`apps/web/values.yaml changed`, `its definition
    /// changed`, `repoURL https://… is another repository`).
    pub reasons: Vec<String>,
    /// Whether it was rendered.
    pub rendered: bool,
    /// Its objects that differ.
    pub objects: Vec<ObjectChange>,
    /// The error, for status `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Things the reader should know (values read from the cluster that a preview
    /// cannot read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl AppReport {
    /// Lines added and removed over all its object diffs.
    pub fn counts(&self) -> (usize, usize) {
        let mut plus = 0;
        let mut minus = 0;
        for o in &self.objects {
            for l in o.diff.lines() {
                if l.starts_with("+++") || l.starts_with("---") {
                    continue;
                }
                if l.starts_with('+') {
                    plus += 1;
                } else if l.starts_with('-') {
                    minus += 1;
                }
            }
        }
        (plus, minus)
    }
}

/// The preview of a change of a repository.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The repository, as shown to people (no credentials).
    pub repository: String,
    /// The old revision.
    pub from: Revision,
    /// The new revision.
    pub to: Revision,
    /// The files that differ between them.
    pub changed_files: Vec<String>,
    /// Every Application found at either revision, by namespace and name.
    pub applications: Vec<AppReport>,
}

impl Report {
    /// How many Applications have each status, in the order of [`Status`].
    pub fn counts(&self) -> Vec<(Status, usize)> {
        let mut out: Vec<(Status, usize)> = Vec::new();
        for s in [
            Status::Changed,
            Status::New,
            Status::Removed,
            Status::Error,
            Status::External,
            Status::Unchanged,
        ] {
            let n = self.applications.iter().filter(|a| a.status == s).count();
            if n > 0 {
                out.push((s, n));
            }
        }
        out
    }

    /// How many Applications were rendered (at one revision or both).
    pub fn rendered(&self) -> usize {
        self.applications.iter().filter(|a| a.rendered).count()
    }
}
