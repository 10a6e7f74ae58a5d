//! `capstan import`: Argo CD and Flux manifests in, Capstan Applications out.
//!
//! ```text
//! manifests (file, document) ──kind──▶ Argo CD Application / ApplicationSet ──┐
//!                                     Flux Kustomization / HelmRelease ───────┼─▶ Applications
//!                    Flux sources (GitRepository, HelmRepository, …) folded in ┘   + warnings
//! ```
//!
//! Every field of the input is either carried over or named in a [`Warning`] with the
//! file, the object and the field path (`spec.source.plugin`, `spec.postBuild`): none
//! is dropped silently. Bad input — a missing required field, a wrong type, a
//! `sourceRef` to an object not in the input — is an [`ImportError`] naming the same,
//! and that object is not converted. Objects that make nothing on their own (Flux
//! sources, Secrets, kinds of neither tool) are listed as [`Note`]s.
//!
//! ```
//! use capstan_import::{ImportOptions, import, manifest};
//! let input = manifest::parse(
//!     "apiVersion: argoproj.io/v1alpha1
//! kind: Application
//! metadata: {name: web, namespace: argocd}
//! spec:
//!   project: default
//!   source: {repoURL: 'https://git.example.com/env.git', path: web, plugin: {name: cmp}}
//!   destination: {server: 'https://kubernetes.default.svc', namespace: web}
//! ",
//!     "web.yaml",
//! )
//! .unwrap();
//! let out = import(&input, &ImportOptions::default());
//! assert_eq!(out.objects[0].application.spec.source.path.as_deref(), Some("web"));
//! assert_eq!(out.warnings[0].field, "spec.source.plugin.name");
//! ```
//!
//! The modules follow the two tools: [`argo`] and [`flux`]; [`fields`] reads an input
//! object and remembers what was used; [`repos`] rewrites repository URLs and reads
//! local copies (for ApplicationSet Git generators and checks of a path).

mod argo;
mod duration;
mod fields;
mod flux;
mod hints;
pub mod manifest;
mod meta;
pub mod report;
pub mod repos;

use std::collections::HashMap;

use capstan_controller::crd::Application;
use kube::ResourceExt;

pub use manifest::{Location, Manifest, ObjectId};
pub use report::{At, ImportError, Imported, Note, NoteReason, Outcome, Warning};
pub use repos::RepoMap;

use fields::Doc;
use flux::sources::Sources;
use repos::Repos;

/// The namespace Capstan objects go to unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = capstan_controller::SYSTEM_NAMESPACE;

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The namespace of every Capstan object made (default `capstan-system`). Flux
    /// objects' own namespaces become their destination namespace where Flux reads
    /// them so (a HelmRelease's), and references into them are named in warnings.
    pub namespace: String,
    /// Repository URL rewrites and local copies of repositories.
    pub repos: RepoMap,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            namespace: DEFAULT_NAMESPACE.to_string(),
            repos: RepoMap::default(),
        }
    }
}

/// Whether an object is of a kind import reads (Argo CD's, Flux's, Capstan's own
/// Applications), so that a caller scanning a whole repository can pass only those.
pub fn is_import_kind(id: &ObjectId) -> bool {
    !matches!(Kind::of(id), Kind::Other | Kind::Secret)
}

/// Whether the files below `dir` (manifests, templates) define Argo CD or Flux
/// Applications, or Capstan's: the directory is an app-of-apps. A text scan, no render.
pub fn mentions_applications(dir: &std::path::Path) -> bool {
    argo::inspect::mentions_applications(dir)
}

/// The kinds import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ArgoApplication,
    ArgoApplicationSet,
    ArgoProject,
    FluxKustomization,
    FluxHelmRelease,
    FluxSource,
    /// Flux kinds without a conversion (image automation, notifications).
    FluxOther,
    /// An Argo CD kind without a conversion.
    ArgoOther,
    Capstan,
    Secret,
    Other,
}

impl Kind {
    fn of(id: &ObjectId) -> Kind {
        match (id.group.as_str(), id.kind.as_str()) {
            ("argoproj.io", "Application") => Kind::ArgoApplication,
            ("argoproj.io", "ApplicationSet") => Kind::ArgoApplicationSet,
            ("argoproj.io", "AppProject") => Kind::ArgoProject,
            ("argoproj.io", _) => Kind::ArgoOther,
            ("kustomize.toolkit.fluxcd.io", "Kustomization") => Kind::FluxKustomization,
            ("helm.toolkit.fluxcd.io", "HelmRelease") => Kind::FluxHelmRelease,
            ("source.toolkit.fluxcd.io", _) | ("source.extensions.fluxcd.io", _) => {
                Kind::FluxSource
            }
            (g, _) if g.ends_with(".toolkit.fluxcd.io") => Kind::FluxOther,
            ("capstan.dev", "Application") => Kind::Capstan,
            ("", "Secret") => Kind::Secret,
            _ => Kind::Other,
        }
    }
}

/// What every conversion reads: the options, local repositories, Flux's sources, and
/// warnings about objects other than the one being read (an ApplicationSet's
/// template).
pub(crate) struct Ctx<'a> {
    pub opts: &'a ImportOptions,
    pub repos: Repos<'a>,
    pub sources: Sources,
    pub warnings: Vec<Warning>,
}

/// An Application before names are settled and `dependsOn` resolved.
pub(crate) struct Draft {
    app: Application,
    from: ObjectId,
    location: Location,
    /// The input objects it depends on, with the field naming each.
    depends_on: Vec<(ObjectId, String)>,
}

impl Draft {
    pub(crate) fn new(app: Application, doc: &Doc, depends_on: Vec<(ObjectId, String)>) -> Draft {
        Draft {
            app,
            from: doc.id().clone(),
            location: doc.location().clone(),
            depends_on,
        }
    }
}

/// Convert `manifests` into Capstan objects; see the [crate documentation](crate).
pub fn import(manifests: &[Manifest], opts: &ImportOptions) -> Outcome {
    let (sources, errors) = Sources::read(manifests);
    let mut out = Outcome {
        errors,
        ..Default::default()
    };
    let mut ctx = Ctx {
        opts,
        repos: Repos::new(&opts.repos),
        sources,
        warnings: Vec::new(),
    };
    let mut drafts = Vec::new();
    for m in manifests {
        let kind = Kind::of(&m.id());
        let mut doc = Doc::new(m);
        match convert(kind, &mut doc, &mut ctx, &mut out) {
            Ok(made) => {
                drafts.extend(made);
                out.warnings.extend(doc.finish());
            }
            Err(e) => out.errors.push(e),
        }
        out.warnings.append(&mut ctx.warnings);
    }
    let (source_warnings, notes) = ctx.sources.finish();
    out.warnings.extend(source_warnings);
    out.notes.extend(notes);
    settle(drafts, &mut out);
    out.notes.sort_by(|a, b| a.location.cmp(&b.location));
    dedup(&mut out.warnings);
    out
}

fn convert(
    kind: Kind,
    doc: &mut Doc,
    ctx: &mut Ctx,
    out: &mut Outcome,
) -> Result<Vec<Draft>, ImportError> {
    let note = |doc: &mut Doc, out: &mut Outcome, reason: NoteReason, message: &str| {
        doc.mark("metadata");
        doc.mark("spec");
        doc.mark("data");
        out.notes.push(Note {
            location: doc.location().clone(),
            object: doc.id().clone(),
            reason,
            message: message.to_string(),
        });
    };
    let made = match kind {
        Kind::ArgoApplication => {
            let app = argo::application::convert(doc, ctx)?;
            vec![Draft::new(app, doc, Vec::new())]
        }
        Kind::ArgoApplicationSet => argo::appset::convert(doc, ctx)?
            .into_iter()
            .map(|app| Draft::new(app, doc, Vec::new()))
            .collect(),
        Kind::FluxKustomization => flux::kustomization::convert(doc, ctx)?
            .into_iter()
            .collect(),
        Kind::FluxHelmRelease => flux::helmrelease::convert(doc, ctx)?.into_iter().collect(),
        Kind::Capstan => {
            let mut app: Application =
                serde_json::from_value(doc.get("").cloned().unwrap_or_default())
                    .map_err(|e| doc.invalid("spec", e.to_string()))?;
            if app
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default()
                .is_empty()
            {
                app.metadata.namespace = Some(ctx.opts.namespace.clone());
            }
            app.status = None;
            vec![Draft::new(app, doc, Vec::new())]
        }
        Kind::ArgoProject => {
            doc.mark("metadata");
            doc.mark("spec");
            doc.warn(
                "",
                "an AppProject has no Capstan equivalent yet (projects come in a later Capstan release): nothing is made from it, and the Applications of the project are not restricted by it",
            );
            Vec::new()
        }
        Kind::ArgoOther | Kind::FluxOther => {
            doc.mark("metadata");
            doc.mark("spec");
            doc.warn(
                "",
                "capstan import does not convert this kind: nothing is made from it",
            );
            Vec::new()
        }
        Kind::FluxSource => {
            // Read by `Sources`, reported by it.
            doc.mark("");
            Vec::new()
        }
        Kind::Secret => {
            note(
                doc,
                out,
                NoteReason::Secret,
                "a Secret: not converted (its key names are checked against the sources that use it)",
            );
            doc.mark("");
            Vec::new()
        }
        Kind::Other => {
            note(
                doc,
                out,
                NoteReason::Foreign,
                "neither an Argo CD nor a Flux object: nothing made from it",
            );
            doc.mark("");
            Vec::new()
        }
    };
    Ok(made)
}

/// Settle names (an Application name taken twice in a namespace gets the input
/// object's namespace in front, with a warning) and resolve `dependsOn`.
fn settle(drafts: Vec<Draft>, out: &mut Outcome) {
    let mut taken: HashMap<(String, String), usize> = HashMap::new();
    let mut names: HashMap<ObjectId, String> = HashMap::new();
    let mut settled = Vec::new();
    for (i, mut d) in drafts.into_iter().enumerate() {
        let ns = d.app.namespace().unwrap_or_default();
        let wanted = d.app.name_any();
        let mut name = wanted.clone();
        if taken.contains_key(&(ns.clone(), name.clone())) {
            let base = if d.from.namespace.is_empty() {
                wanted.clone()
            } else {
                format!("{}-{wanted}", d.from.namespace)
            };
            name = base.clone();
            let mut n = 2;
            while taken.contains_key(&(ns.clone(), name.clone())) {
                name = format!("{base}-{n}");
                n += 1;
            }
            let first = &settled[taken[&(ns.clone(), wanted.clone())]];
            let first: &Draft = first;
            out.warnings.push(Warning {
                location: d.location.clone(),
                object: d.from.clone(),
                field: "metadata.name".into(),
                message: format!(
                    "the Application {ns}/{wanted} is made from {} ({}) too: this one is named {name}",
                    first.from, first.location
                ),
            });
            d.app.metadata.name = Some(name.clone());
        }
        taken.insert((ns, name.clone()), i);
        names.insert(d.from.clone(), name);
        settled.push(d);
    }
    for d in settled {
        let mut app = d.app;
        for (target, field) in &d.depends_on {
            match names.get(target) {
                Some(n) => app.spec.depends_on.push(n.clone()),
                None => {
                    app.spec.depends_on.push(target.name.clone());
                    out.warnings.push(Warning {
                        location: d.location.clone(),
                        object: d.from.clone(),
                        field: field.clone(),
                        message: format!(
                            "{target} is not in the input: kept as the Application name {:?}",
                            target.name
                        ),
                    });
                }
            }
        }
        out.objects.push(Imported {
            application: app,
            from: d.from,
            location: d.location,
        });
    }
}

fn dedup(warnings: &mut Vec<Warning>) {
    let mut seen = std::collections::HashSet::new();
    warnings.retain(|w| seen.insert(w.to_string()));
}
