//! Checks of an Argo CD or Flux source against its repository, when a local copy is known
//! (`--repo-dir`, `--repo-map` to a local path, or a local `repoURL`): the path
//! exists at the revision; subdirectories Argo CD would not read; and child
//! Applications of an app-of-apps, which need importing too.

use std::path::{Path, PathBuf};

use capstan_controller::crd::{DirectorySpec, SourceSpec};
use capstan_engine::render::{RendererKind, detect};

use crate::Ctx;
use crate::fields::Doc;
use crate::report::ImportError;

/// The fields of the input a check names.
pub(crate) struct Fields<'f> {
    /// The field naming the repository (`spec.source.repoURL`, `spec.sourceRef`).
    pub repo: &'f str,
    /// The field naming the path (`spec.source.path`, `spec.path`).
    pub path: &'f str,
    /// The source's plugin field, when the tool has plugins.
    pub plugin: Option<&'f str>,
    /// A directory is read without its subdirectories unless told otherwise (Argo CD;
    /// Flux reads them all, as Capstan does).
    pub top_level_only: bool,
}

/// Check the source `src` (read from `url`) and adjust it where Argo CD's defaults
/// differ from Capstan's.
pub(crate) fn source(
    doc: &mut Doc,
    ctx: &mut Ctx,
    fields: &Fields,
    url: &str,
    src: &mut SourceSpec,
) -> Result<(), ImportError> {
    if src.chart.is_some() || (src.ref_.is_some() && src.path.is_none()) {
        return Ok(());
    }
    let revision = src.target_revision.clone().unwrap_or_default();
    let shown_rev = if revision.is_empty() {
        "HEAD"
    } else {
        &revision
    };
    let (root, commit) = match ctx.repos.tree(url, &revision) {
        None => return Ok(()),
        Some(Err(message)) => {
            doc.warn(
                fields.repo,
                format!("could not be read to check the path: {message}"),
            );
            return Ok(());
        }
        Some(Ok(tree)) => (tree.root.to_path_buf(), tree.commit.map(str::to_string)),
    };
    let at_rev = match &commit {
        Some(c) => format!("{url} at {shown_rev} ({})", &c[..c.len().min(12)]),
        None => url.to_string(),
    };
    let path = src.path.clone().unwrap_or_else(|| ".".into());
    let dir = match capstan_engine::source::confine::check_tree(&root, Path::new(&path)) {
        Ok(d) if d.is_dir() => d,
        Ok(_) | Err(_) => {
            doc.warn(
                fields.path,
                format!("{path} is not a directory in {at_rev}"),
            );
            return Ok(());
        }
    };
    if fields.plugin.is_some_and(|p| doc.has(p)) {
        return Ok(());
    }
    let kind = if src.helm.is_some() {
        RendererKind::Helm
    } else if src.kustomize.is_some() {
        RendererKind::Kustomize
    } else if src.directory.is_some() {
        RendererKind::Directory
    } else {
        detect(&dir)
    };
    let mut files = Vec::new();
    walk(&dir, 6, &mut files);
    if kind == RendererKind::Directory {
        let nested = files.iter().any(|f| {
            f.parent() != Some(dir.as_path())
                && f.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json" || e == "jsonnet")
        });
        if fields.top_level_only && src.directory.is_none() && nested {
            // Argo CD reads only the top level of a directory unless told to recurse.
            src.directory = Some(DirectorySpec {
                exclude: vec!["*/*".into()],
                ..Default::default()
            });
        }
    }
    let children: Vec<String> = files
        .iter()
        .filter(|f| defines_applications(f, false))
        .map(|f| rel(&dir, f))
        .collect();
    if !children.is_empty() {
        doc.warn(
            fields.path,
            format!(
                "{path} defines Argo CD or Flux objects ({}), an app-of-apps: Capstan applies them as they are and does not reconcile them; import them too (`capstan render --repo URL --path {path} | capstan import -f -`) and commit the Capstan Applications in their place",
                list(&children)
            ),
        );
    }
    Ok(())
}

/// Whether any file below `dir` defines Applications (see [`defines_applications`]).
pub(crate) fn mentions_applications(dir: &Path) -> bool {
    let mut files = Vec::new();
    walk(dir, 6, &mut files);
    files.iter().any(|f| defines_applications(f, true))
}

fn rel(dir: &Path, f: &Path) -> String {
    f.strip_prefix(dir).unwrap_or(f).display().to_string()
}

fn list(items: &[String]) -> String {
    if items.len() > 3 {
        format!("{}, … {} in all", items[..3].join(", "), items.len())
    } else {
        items.join(", ")
    }
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() && depth > 0 => walk(&p, depth - 1, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// Whether a manifest (or a template of one) defines an Argo CD Application or
/// ApplicationSet, a Flux Kustomization or HelmRelease, or (`with_capstan`) a Capstan
/// Application.
fn defines_applications(f: &Path, with_capstan: bool) -> bool {
    if !f
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json" || e == "tpl")
    {
        return false;
    }
    if std::fs::metadata(f).map(|m| m.len()).unwrap_or(0) > 1 << 20 {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(f) else {
        return false;
    };
    let argo = text.contains("argoproj.io/")
        && (text.contains("kind: Application") || text.contains("\"kind\": \"Application"));
    let flux =
        text.contains("kustomize.toolkit.fluxcd.io/") || text.contains("helm.toolkit.fluxcd.io/");
    let capstan =
        with_capstan && text.contains("capstan.dev/v1") && text.contains("kind: Application");
    argo || flux || capstan
}
