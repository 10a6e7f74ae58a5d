//! Finding every Application a repository defines at one revision.
//!
//! Every YAML and JSON file of the tree is read (Helm templates left out: they are not
//! YAML until rendered), and the objects of the kinds `capstan import` reads — Capstan
//! Applications, Argo CD Applications and ApplicationSets, Flux Kustomizations and
//! HelmReleases with their sources — are converted by it. An Application whose path
//! defines Applications itself (an app-of-apps: a chart of Argo CD Applications, a
//! directory of Capstan ones) is rendered, and the Applications it renders are found
//! the same way, down to a few levels; so is a Helm chart of Applications that no
//! Application points to (the root of an app-of-apps is often made by hand).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use capstan_controller::crd::Application;
use capstan_core::Revision;
use capstan_import::{ImportOptions, Manifest, ObjectId, RepoMap, import, manifest};
use kube::ResourceExt;

use crate::render::{self, SelfRepo, Tools};

/// How deep app-of-apps are followed.
const MAX_DEPTH: usize = 4;

/// An Application found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub app: Application,
    /// `Application argocd/web (apps/web.yaml (document 1))`.
    pub defined_by: String,
    /// The app-of-apps whose render defines it.
    pub parent: Option<String>,
    depth: usize,
    /// What could not be found below it.
    pub notes: Vec<String>,
}

impl Found {
    /// `(namespace, name)`.
    pub fn key(&self) -> (String, String) {
        (
            self.app.namespace().unwrap_or_default(),
            self.app.name_any(),
        )
    }
}

/// An object that defines an Application but could not be converted.
#[derive(Debug, Clone)]
pub(crate) struct Broken {
    /// `(namespace, name)` the Application would have had.
    pub key: (String, String),
    pub defined_by: String,
    pub message: String,
}

/// What a tree defines.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    pub found: Vec<Found>,
    pub broken: Vec<Broken>,
}

/// What discovery needs to know.
pub(crate) struct Context<'a> {
    pub repo: &'a SelfRepo,
    pub tools: &'a Tools,
    /// The namespace of imported Applications.
    pub namespace: &'a str,
}

/// Every Application the tree at `root` (revision `revision`) defines.
pub(crate) async fn discover(root: &Path, revision: &Revision, ctx: &Context<'_>) -> Discovered {
    let opts = ImportOptions {
        namespace: ctx.namespace.to_string(),
        repos: RepoMap {
            rewrites: Vec::new(),
            dirs: ctx
                .repo
                .urls()
                .iter()
                .map(|u| (u.clone(), root.to_path_buf()))
                .collect(),
        },
    };
    let mut d = Discovered::default();
    let (manifests, unreadable) = read_tree(root);
    d.broken.extend(unreadable);
    add(&mut d, &manifests, &opts, None, 0);
    orphan_charts(&mut d, root, revision, ctx, &opts).await;
    let mut i = 0;
    while i < d.found.len() {
        let (parent, depth) = (d.found[i].app.name_any(), d.found[i].depth);
        i += 1;
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(plan) = render::plan(&d.found[i - 1].app, ctx.repo, ctx.tools) else {
            continue;
        };
        if !plan
            .sources
            .iter()
            .any(|s| capstan_import::mentions_applications(&root.join(&s.path)))
        {
            continue;
        }
        match render::render(&plan, root, revision).await {
            Err(e) => d.found[i - 1].notes.push(format!(
                "its path defines Applications, but it does not render: {e}"
            )),
            Ok(objects) => {
                let children: Vec<Manifest> = objects
                    .into_iter()
                    .filter(|o| capstan_import::is_import_kind(&ObjectId::of(&o.object)))
                    .map(|o| {
                        Manifest::new(
                            format!("{} rendered by {parent}", o.origin.file),
                            o.origin.document,
                            o.object,
                        )
                    })
                    .collect();
                add(&mut d, &children, &opts, Some(&parent), depth + 1);
            }
        }
    }
    d
}

/// Helm charts of Applications that no Application points to (the root of an
/// app-of-apps is often created by hand, as `argocd app create`): rendered with their
/// default values, so the Applications they define are found too.
async fn orphan_charts(
    d: &mut Discovered,
    root: &Path,
    revision: &Revision,
    ctx: &Context<'_>,
    opts: &ImportOptions,
) {
    let mut charts = Vec::new();
    chart_dirs(root, root, &mut charts);
    charts.sort();
    let pointed: BTreeSet<String> = d
        .found
        .iter()
        .filter_map(|f| render::plan(&f.app, ctx.repo, ctx.tools).ok())
        .flat_map(|p| {
            p.sources
                .into_iter()
                .map(|s| s.path.trim_matches('/').to_string())
        })
        .collect();
    for chart in charts {
        if pointed.contains(&chart) || !capstan_import::mentions_applications(&root.join(&chart)) {
            continue;
        }
        let name = chart.rsplit('/').next().unwrap_or(&chart).to_string();
        let plan = render::chart_plan(&chart, &name, ctx.tools);
        let parent = format!("the chart {chart}/ (no Application points to it)");
        match render::render(&plan, root, revision).await {
            Ok(objects) => {
                let children: Vec<Manifest> = objects
                    .into_iter()
                    .filter(|o| capstan_import::is_import_kind(&ObjectId::of(&o.object)))
                    .map(|o| Manifest::new(o.origin.file, o.origin.document, o.object))
                    .collect();
                add(d, &children, opts, Some(&parent), 1);
            }
            Err(e) => d.broken.push(Broken {
                key: (String::new(), format!("{chart}/")),
                defined_by: parent,
                message: e,
            }),
        }
    }
}

/// Directories below `dir` holding a `Chart.yaml`, relative to `root`.
fn chart_dirs(root: &Path, dir: &Path, out: &mut Vec<String>) {
    if dir.join("Chart.yaml").is_file() {
        out.push(dir.strip_prefix(root).unwrap_or(dir).display().to_string());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with('.')
            && e.file_type().is_ok_and(|t| t.is_dir())
        {
            chart_dirs(root, &e.path(), out);
        }
    }
}

/// Import `manifests` into `d`; an Application already found (by namespace and name)
/// is kept as first found.
fn add(
    d: &mut Discovered,
    manifests: &[Manifest],
    opts: &ImportOptions,
    parent: Option<&str>,
    depth: usize,
) {
    let outcome = import(manifests, opts);
    let known: BTreeSet<(String, String)> = d.found.iter().map(Found::key).collect();
    for o in outcome.objects {
        let f = Found {
            app: o.application,
            defined_by: format!("{} ({})", o.from, o.location),
            parent: parent.map(str::to_string),
            depth,
            notes: Vec::new(),
        };
        if !known.contains(&f.key()) {
            d.found.push(f);
        }
    }
    for e in outcome.errors {
        let (key, defined_by) = match e.at() {
            Some(at) => (
                (opts.namespace.clone(), at.object.name.clone()),
                format!("{} ({})", at.object, at.location),
            ),
            None => ((opts.namespace.clone(), String::new()), String::new()),
        };
        d.broken.push(Broken {
            key,
            defined_by,
            message: e.to_string(),
        });
    }
}

/// The manifests of the kinds import reads, from every YAML and JSON file below
/// `root` (named relative to it); a file that does not parse is skipped, unless it
/// mentions those kinds.
fn read_tree(root: &Path) -> (Vec<Manifest>, Vec<Broken>) {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    let mut manifests = Vec::new();
    let mut broken = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if !mentions_kinds(&text) {
            continue;
        }
        match manifest::parse(&text, &rel) {
            Ok(docs) => manifests.extend(
                docs.into_iter()
                    .filter(|m| capstan_import::is_import_kind(&m.id())),
            ),
            Err(e) => broken.push(Broken {
                key: (String::new(), rel.clone()),
                defined_by: rel,
                message: e.to_string(),
            }),
        }
    }
    (manifests, broken)
}

/// A cheap screen: only files naming one of the API groups import reads are parsed.
fn mentions_kinds(text: &str) -> bool {
    text.contains("argoproj.io/") || text.contains("fluxcd.io/") || text.contains("capstan.dev/")
}

/// Files below `dir`, hidden ones and Helm charts' `templates/` and `charts/` left out.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let chart = dir.join("Chart.yaml").is_file();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let Ok(t) = e.file_type() else {
            continue;
        };
        let template = chart && (name == "templates" || name == "charts");
        let manifest = path
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json");
        if t.is_dir() && !template {
            walk(&path, out);
        } else if t.is_file() && manifest {
            out.push(path);
        }
    }
}
