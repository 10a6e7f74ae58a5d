//! The pull-request preview of a whole repository: what a change from one revision to
//! another does to every Application the repository defines — no cluster needed.
//!
//! ```text
//! fetch ──▶ BASE tree, HEAD tree, the files that differ (a tree diff)
//!   ──discover (each tree)──▶ Applications: Capstan's, Argo CD's and Flux's (through
//!                             capstan import), app-of-apps followed
//!   ──pair (namespace/name)──▶ new, removed, or at both
//!   ──select──▶ only those whose inputs changed (paths, values files, Kustomize bases
//!               and components outside the path, local chart dependencies) or whose
//!               definition changed; others from elsewhere are listed as external
//!   ──render both, diff──▶ Report: per Application, per object, Secrets masked
//! ```
//!
//! Rendering uses the controller's own mapping from an Application's spec to the
//! engine's render options, so what the preview shows is what the controller applies.

mod discover;
mod inputs;
mod render;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;

use capstan_controller::crd::Application;
use capstan_core::{ObjectRef, Revision};
use capstan_engine::diff as engine_diff;
use capstan_engine::render::DesiredObject;
use capstan_engine::source::git::CheckoutError;
use capstan_engine::source::{Checkout, GitCache, GitError, GitSource};
use futures::StreamExt;
use kube::ResourceExt;
use serde_json::Value;

pub use render::Tools;
pub use report::{Action, AppReport, ObjectChange, Report, Status};

use discover::{Broken, Context, Discovered, Found};
use inputs::Inputs;
use render::{Plan, SelfRepo};

/// What to preview.
#[derive(Debug, Clone)]
pub struct PreviewOptions {
    /// The repository.
    pub repo: GitSource,
    /// Other URLs the Applications use for this repository (its URL on the Git host
    /// when `repo` is a mirror or a local path).
    pub aliases: Vec<String>,
    /// The old revision (the pull request's base).
    pub from: String,
    /// The new revision (its head).
    pub to: String,
    /// The Git cache directory.
    pub cache_dir: PathBuf,
    /// The renderers.
    pub tools: Tools,
    /// The namespace Argo CD and Flux objects are imported into (for the names shown).
    pub namespace: String,
    /// Applications rendered at once.
    pub concurrency: usize,
}

/// A preview that could not be made at all (one Application that fails is reported in
/// its entry instead).
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// Fetching or reading the repository.
    #[error("reading {url}")]
    Git {
        /// The repository.
        url: String,
        /// Cause.
        #[source]
        source: GitError,
    },
    /// Extracting a revision's tree.
    #[error("checking out {revision} of {url}")]
    Checkout {
        /// The repository.
        url: String,
        /// The revision.
        revision: String,
        /// Cause.
        #[source]
        source: CheckoutError,
    },
    /// The blocking Git work panicked.
    #[error("the Git task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// One revision's tree.
struct Tree {
    checkout: Checkout,
}

impl Tree {
    fn root(&self) -> &std::path::Path {
        self.checkout.root()
    }

    fn revision(&self) -> &Revision {
        &self.checkout.revision
    }
}

/// Both trees and the files that differ.
struct Trees {
    base: Tree,
    head: Tree,
    changed: Vec<String>,
}

/// Preview the change from `opts.from` to `opts.to`; see the [crate documentation](crate).
pub async fn preview(opts: &PreviewOptions) -> Result<Report, PreviewError> {
    let t = std::time::Instant::now();
    let trees = fetch(opts).await?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        files = trees.changed.len(),
        "fetched both trees"
    );
    let repo =
        SelfRepo::new(std::iter::once(opts.repo.display_url()).chain(opts.aliases.iter().cloned()));
    let ctx = Context {
        repo: &repo,
        tools: &opts.tools,
        namespace: &opts.namespace,
    };
    let t = std::time::Instant::now();
    let before = discover::discover(trees.base.root(), trees.base.revision(), &ctx).await;
    let after = discover::discover(trees.head.root(), trees.head.revision(), &ctx).await;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        before = before.found.len(),
        after = after.found.len(),
        "discovered"
    );
    let t = std::time::Instant::now();
    let judge = Judge {
        trees: &trees,
        repo: &repo,
        tools: &opts.tools,
    };
    let mut applications: Vec<AppReport> = futures::stream::iter(pair(before, after))
        .map(|p| judge.assess(p))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    applications.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        rendered = applications.iter().filter(|a| a.rendered).count(),
        "assessed"
    );
    Ok(Report {
        repository: opts.repo.display_url(),
        from: trees.base.revision().clone(),
        to: trees.head.revision().clone(),
        changed_files: trees.changed,
        applications,
    })
}

/// Fetch, resolve both revisions, extract both trees, diff them.
async fn fetch(opts: &PreviewOptions) -> Result<Trees, PreviewError> {
    let (src, from, to, dir) = (
        opts.repo.clone(),
        opts.from.clone(),
        opts.to.clone(),
        opts.cache_dir.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let cache = GitCache::new(dir);
        let url = src.display_url();
        let git = |source| PreviewError::Git {
            url: url.clone(),
            source,
        };
        let t = std::time::Instant::now();
        cache.fetch(&src).map_err(git)?;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "fetched");
        let a = cache.resolve(&src, &from).map_err(git)?;
        let b = cache.resolve(&src, &to).map_err(git)?;
        let changed = cache.changed_paths(&src, &a, &b).map_err(git)?;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "resolved and diffed");
        let checkout = |rev: &Revision| {
            cache
                .checkout(&src, rev, std::path::Path::new("."))
                .map_err(|source| PreviewError::Checkout {
                    url: url.clone(),
                    revision: rev.requested.clone(),
                    source,
                })
        };
        Ok(Trees {
            base: Tree {
                checkout: checkout(&a)?,
            },
            head: Tree {
                checkout: checkout(&b)?,
            },
            changed,
        })
    })
    .await
    .map_err(PreviewError::Task)?
}

/// One Application at either revision (or an object that failed to convert).
struct Pair {
    key: (String, String),
    before: Option<Found>,
    after: Option<Found>,
    broken: Option<Broken>,
}

fn pair(before: Discovered, after: Discovered) -> Vec<Pair> {
    let mut pairs: BTreeMap<(String, String), Pair> = BTreeMap::new();
    for f in before.found {
        let key = f.key();
        pairs
            .entry(key.clone())
            .or_insert_with(|| empty(key))
            .before = Some(f);
    }
    for f in after.found {
        let key = f.key();
        pairs.entry(key.clone()).or_insert_with(|| empty(key)).after = Some(f);
    }
    // An object that does not convert at the new revision is an error; one that did
    // not at the old revision only is not (the change fixed it).
    for b in after.broken {
        let key = b.key.clone();
        pairs
            .entry(key.clone())
            .or_insert_with(|| empty(key))
            .broken = Some(b);
    }
    pairs.into_values().collect()
}

fn empty(key: (String, String)) -> Pair {
    Pair {
        key,
        before: None,
        after: None,
        broken: None,
    }
}

/// Decides, renders and diffs one Application.
struct Judge<'a> {
    trees: &'a Trees,
    repo: &'a SelfRepo,
    tools: &'a Tools,
}

impl Judge<'_> {
    async fn assess(&self, p: Pair) -> AppReport {
        let side = p.after.as_ref().or(p.before.as_ref());
        let mut report = AppReport {
            namespace: p.key.0.clone(),
            name: p.key.1.clone(),
            defined_by: side
                .map(|f| f.defined_by.clone())
                .or_else(|| p.broken.as_ref().map(|b| b.defined_by.clone()))
                .unwrap_or_default(),
            parent: side.and_then(|f| f.parent.clone()),
            status: Status::Unchanged,
            reasons: Vec::new(),
            rendered: false,
            objects: Vec::new(),
            error: None,
            notes: side.map(|f| f.notes.clone()).unwrap_or_default(),
        };
        if let Some(b) = &p.broken {
            report.status = Status::Error;
            report.error = Some(b.message.clone());
            return report;
        }
        let plans = (
            p.before
                .as_ref()
                .map(|f| render::plan(&f.app, self.repo, self.tools)),
            p.after
                .as_ref()
                .map(|f| render::plan(&f.app, self.repo, self.tools)),
        );
        let definition_changed = match (&p.before, &p.after) {
            (Some(a), Some(b)) => !same_spec(&a.app, &b.app),
            _ => false,
        };
        let external = [&plans.1, &plans.0]
            .into_iter()
            .flatten()
            .find_map(|r| r.as_ref().err().cloned());
        if let Some(why) = external {
            return self.external(report, &p, why, definition_changed);
        }
        let (before, after) = (plans.0.and_then(Result::ok), plans.1.and_then(Result::ok));
        for plan in [&before, &after].into_iter().flatten() {
            for n in &plan.notes {
                if !report.notes.contains(n) {
                    report.notes.push(n.clone());
                }
            }
        }
        let mut inputs = Inputs::default();
        if let Some(plan) = &before {
            inputs.extend(Inputs::of(plan, self.trees.base.root()));
        }
        if let Some(plan) = &after {
            inputs.extend(Inputs::of(plan, self.trees.head.root()));
        }
        let touched: Vec<&String> = self
            .trees
            .changed
            .iter()
            .filter(|f| inputs.reads(f))
            .collect();
        report.reasons = reasons(&touched, definition_changed);
        match (&before, &after) {
            (None, Some(_)) => {
                report.status = Status::New;
                report
                    .reasons
                    .insert(0, "defined at the new revision only".into());
            }
            (Some(_), None) => {
                report.status = Status::Removed;
                report
                    .reasons
                    .insert(0, "defined at the old revision only".into());
            }
            _ if touched.is_empty() && !definition_changed => {
                report.reasons = vec!["nothing it reads changed: not rendered".into()];
                return report;
            }
            _ => {}
        }
        self.render_and_diff(report, before.as_ref(), after.as_ref())
            .await
    }

    /// An Application whose sources are elsewhere: listed, its definition's change shown.
    fn external(
        &self,
        mut report: AppReport,
        p: &Pair,
        why: String,
        definition_changed: bool,
    ) -> AppReport {
        report.status = Status::External;
        report.reasons = vec![format!("{why}: not rendered")];
        let labels = self.labels();
        let id = |f: &Found| {
            ObjectRef::new(
                "capstan.dev",
                "Application",
                Some(&f.app.namespace().unwrap_or_default()),
                &f.app.name_any(),
            )
        };
        let json = |f: &Found| definition(&f.app);
        let change = match (&p.before, &p.after) {
            (Some(a), Some(b)) if definition_changed => {
                Some((id(b), Some(json(a)), Some(json(b)), Action::Changed))
            }
            (None, Some(b)) => Some((id(b), None, Some(json(b)), Action::Added)),
            (Some(a), None) => Some((id(a), Some(json(a)), None, Action::Removed)),
            _ => None,
        };
        if let Some((id, old, new, action)) = change {
            report.reasons.insert(0, "its definition changed".into());
            let diff = engine_diff::unified_between(
                &id,
                old.as_ref(),
                new.as_ref(),
                &[],
                (labels.0.as_str(), labels.1.as_str()),
            );
            report.objects.push(ObjectChange {
                object: id,
                action,
                diff,
            });
        }
        report
    }

    async fn render_and_diff(
        &self,
        mut report: AppReport,
        before: Option<&Plan>,
        after: Option<&Plan>,
    ) -> AppReport {
        report.rendered = true;
        let (old, new) = futures::join!(
            async {
                match before {
                    Some(p) => {
                        render::render(p, self.trees.base.root(), self.trees.base.revision())
                            .await
                            .map(Some)
                    }
                    None => Ok(None),
                }
            },
            async {
                match after {
                    Some(p) => {
                        render::render(p, self.trees.head.root(), self.trees.head.revision())
                            .await
                            .map(Some)
                    }
                    None => Ok(None),
                }
            }
        );
        let (old, new) = match (old, new) {
            (Ok(o), Ok(n)) => (o, n),
            (Err(e), _) => {
                report.status = Status::Error;
                report.error = Some(format!("at {}: {e}", self.trees.base.revision().short()));
                return report;
            }
            (_, Err(e)) => {
                report.status = Status::Error;
                report.error = Some(format!("at {}: {e}", self.trees.head.revision().short()));
                return report;
            }
        };
        report.objects = diff_objects(old.as_deref(), new.as_deref(), self.labels());
        if report.status == Status::Unchanged {
            if report.objects.is_empty() {
                report.reasons.push("it renders the same".into());
            } else {
                report.status = Status::Changed;
            }
        }
        report
    }

    fn labels(&self) -> (String, String) {
        (
            self.trees.base.revision().short().to_string(),
            self.trees.head.revision().short().to_string(),
        )
    }
}

fn reasons(touched: &[&String], definition_changed: bool) -> Vec<String> {
    let mut out = Vec::new();
    if definition_changed {
        out.push("its definition changed".to_string());
    }
    const SHOWN: usize = 5;
    for f in touched.iter().take(SHOWN) {
        out.push(format!("{f} changed"));
    }
    if touched.len() > SHOWN {
        out.push(format!("and {} more of its files", touched.len() - SHOWN));
    }
    out
}

/// The Application as it is defined (no status), for comparing and showing.
fn definition(app: &Application) -> Value {
    let mut v = serde_json::to_value(app).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

fn same_spec(a: &Application, b: &Application) -> bool {
    engine_diff::values_equal(&definition(a), &definition(b))
}

fn diff_objects(
    old: Option<&[DesiredObject]>,
    new: Option<&[DesiredObject]>,
    labels: (String, String),
) -> Vec<ObjectChange> {
    let index = |objs: Option<&[DesiredObject]>| -> BTreeMap<ObjectRef, Value> {
        objs.unwrap_or_default()
            .iter()
            .map(|d| (d.id.clone(), d.object.clone()))
            .collect()
    };
    let (before, after) = (index(old), index(new));
    let labels = (labels.0.as_str(), labels.1.as_str());
    let mut out = Vec::new();
    for (id, b) in &after {
        match before.get(id) {
            None => out.push(ObjectChange {
                object: id.clone(),
                action: Action::Added,
                diff: engine_diff::unified_between(id, None, Some(b), &[], labels),
            }),
            Some(a) if !engine_diff::values_equal(a, b) => out.push(ObjectChange {
                object: id.clone(),
                action: Action::Changed,
                diff: engine_diff::unified_between(id, Some(a), Some(b), &[], labels),
            }),
            Some(_) => {}
        }
    }
    for (id, a) in &before {
        if !after.contains_key(id) {
            out.push(ObjectChange {
                object: id.clone(),
                action: Action::Removed,
                diff: engine_diff::unified_between(id, Some(a), None, &[], labels),
            });
        }
    }
    out
}
