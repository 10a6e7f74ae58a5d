//! Rendering: turning a source tree into Kubernetes objects.
//!
//! The renderer is chosen as Argo CD does — a `kustomization.yaml` (or `.yml`, or
//! `Kustomization`) means Kustomize, a `Chart.yaml` means Helm, anything else is a
//! directory of manifests — or set explicitly. As in Argo CD, Jsonnet is no renderer of
//! its own: the directory renderer evaluates `*.jsonnet` files next to the YAML and
//! JSON ones ([`jsonnet`]). Every renderer's output then goes
//! through [`normalize`]: each object must have `apiVersion`, `kind` and
//! `metadata.name`; `List` kinds are flattened; namespaced objects without a
//! namespace get the destination namespace (scopes from discovery, or offline from
//! the built-in table plus the CRDs being rendered); the same object twice is an
//! error naming both places it came from.

pub(crate) mod directory;
mod helm;
pub mod jsonnet;
mod kustomize;
pub mod normalize;
pub mod scope;
pub mod values_from;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_core::ObjectRef;
use serde_json::Value;

pub use helm::{ChartDir, HelmOptions};
pub use jsonnet::{JsonnetLocation, JsonnetOptions, JsonnetVar};
pub use kustomize::KustomizeOptions;
pub use normalize::DesiredObject;
pub use scope::Scopes;
pub use values_from::{ValuesDoc, ValuesFromError, ValuesKind, ValuesReference, values_from};

use crate::source::{Checkout, ConfineError};

/// Which renderer to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RendererKind {
    /// Plain manifests: `*.yaml`, `*.yml`, `*.json`, and `*.jsonnet` evaluated,
    /// recursively.
    Directory,
    /// `kustomize build` (or `kubectl kustomize`).
    Kustomize,
    /// `helm template`.
    Helm,
}

impl fmt::Display for RendererKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RendererKind::Directory => "directory",
            RendererKind::Kustomize => "kustomize",
            RendererKind::Helm => "helm",
        })
    }
}

impl std::str::FromStr for RendererKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "directory" | "dir" => Ok(RendererKind::Directory),
            "kustomize" => Ok(RendererKind::Kustomize),
            "helm" => Ok(RendererKind::Helm),
            other => Err(format!(
                "unknown renderer {other:?} (directory, kustomize, helm)"
            )),
        }
    }
}

/// How to render a source.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// The renderer; `None` detects it from the files present.
    pub renderer: Option<RendererKind>,
    /// Directory renderer: globs (relative to the rendered path) a file must match; empty for all.
    pub include: Vec<String>,
    /// Directory renderer: globs of files to leave out.
    pub exclude: Vec<String>,
    /// Kustomize settings.
    pub kustomize: KustomizeOptions,
    /// Helm settings.
    pub helm: HelmOptions,
    /// Directory renderer: how `*.jsonnet` files are evaluated.
    pub jsonnet: JsonnetOptions,
}

/// Where a rendered object came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file (relative to the repository root), or what produced the object
    /// (`kustomize build deploy/overlays/prod`, a Helm template's `# Source:`).
    pub file: String,
    /// The document within the file, counting from 1.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file, self.document)
    }
}

/// A rendering failure; every variant names where.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A path or symlink leaves the repository.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest is not valid YAML or JSON.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A manifest is not a valid Kubernetes object.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the object came from.
        origin: Origin,
        /// What is wrong (names the field).
        message: String,
    },
    /// The same object appears twice.
    #[error("{object} is defined twice: in {first} and in {second}")]
    Duplicate {
        /// The object.
        object: Box<ObjectRef>,
        /// First place.
        first: Origin,
        /// Second place.
        second: Origin,
    },
    /// An include/exclude glob does not parse.
    #[error("invalid glob {glob:?}")]
    Glob {
        /// The glob.
        glob: String,
        /// Cause.
        #[source]
        source: globset::Error,
    },
    /// A Jsonnet file does not evaluate: a syntax error, a runtime error, or an output
    /// that is not an object or an array of objects. jrsonnet's error holds `Rc`s (it
    /// cannot cross threads), so its message is kept rather than the error itself.
    #[error("{}", jsonnet::error_text(file, at.as_ref(), message))]
    Jsonnet {
        /// The evaluated file, relative to the repository root.
        file: String,
        /// Where in the Jsonnet source, when known (possibly an imported file).
        at: Option<JsonnetLocation>,
        /// What is wrong.
        message: String,
    },
    /// A Jsonnet `import`, `importstr` or `importbin` leaves the repository.
    #[error("{file}: import {import:?} is refused")]
    JsonnetImport {
        /// The importing file, relative to the repository root.
        file: String,
        /// The path as written in the import.
        import: String,
        /// How it leaves (`..`, an absolute path, a symlink out).
        #[source]
        source: ConfineError,
    },
    /// An external renderer (kustomize, helm) failed; `stderr` is its output.
    #[error("{tool} failed on {path}: {stderr}")]
    Tool {
        /// `kustomize` or `helm`.
        tool: &'static str,
        /// The rendered path.
        path: String,
        /// The tool's error output.
        stderr: String,
    },
    /// An external renderer could not be started.
    #[error("cannot run {binary} ({tool}); install it or set its path")]
    ToolMissing {
        /// `kustomize` or `helm`.
        tool: &'static str,
        /// The binary tried.
        binary: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A renderer ran past its timeout.
    #[error("{tool} on {path} did not finish within {timeout:?}")]
    Timeout {
        /// `kustomize`, `helm` or `jsonnet`.
        tool: &'static str,
        /// The rendered path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// Values files were given for a chart that has no values root to read them from.
    #[error("values file {file:?} for {chart}: there is no repository to read it from")]
    NoValuesRoot {
        /// The chart.
        chart: String,
        /// The values file as given.
        file: String,
    },
    /// An object's kind is not known to the cluster or to the rendered CRDs.
    #[error("{origin}: {object}: {message}")]
    UnknownKind {
        /// Where the object came from.
        origin: Origin,
        /// The object.
        object: Box<ObjectRef>,
        /// Why its scope is unknown.
        message: String,
    },
}

/// Which renderer a directory calls for, as Argo CD detects it.
pub fn detect(dir: &Path) -> RendererKind {
    if ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|f| dir.join(f).is_file())
    {
        RendererKind::Kustomize
    } else if dir.join("Chart.yaml").is_file() {
        RendererKind::Helm
    } else {
        RendererKind::Directory
    }
}

/// A rendered object before normalization: the JSON and where it came from.
#[derive(Debug, Clone)]
pub struct RawObject {
    /// The object as written.
    pub object: Value,
    /// Its origin.
    pub origin: Origin,
}

/// Render a checkout into raw objects (not yet normalized).
pub async fn render_raw(
    checkout: &Checkout,
    opts: &RenderOptions,
) -> Result<Vec<RawObject>, RenderError> {
    let dir = crate::source::confine::check_tree(checkout.root(), &checkout.path)?;
    let kind = opts.renderer.unwrap_or_else(|| detect(&dir));
    let rel = display_rel(checkout.root(), &dir);
    match kind {
        RendererKind::Directory => directory::render(checkout.root(), &dir, opts).await,
        RendererKind::Kustomize => kustomize::render(&dir, &rel, &opts.kustomize).await,
        RendererKind::Helm => {
            let chart = ChartDir {
                dir,
                label: rel,
                values_root: Some(checkout.root().to_path_buf()),
            };
            helm::render(&chart, &opts.helm).await
        }
    }
}

/// Render a Helm chart that is not a path of a checkout — one fetched from a chart
/// repository or registry — and normalize its objects for a destination namespace.
///
/// No symlink inside the chart may point out of it; values files are confined to the
/// chart's [`values_root`](ChartDir::values_root), as for a chart in a checkout.
pub async fn render_chart(
    chart: &ChartDir,
    opts: &HelmOptions,
    namespace: &str,
    scopes: &Scopes,
) -> Result<Vec<DesiredObject>, RenderError> {
    crate::source::confine::check_tree(&chart.dir, Path::new("."))?;
    let mut opts = opts.clone();
    if opts.namespace.is_none() && !namespace.is_empty() {
        opts.namespace = Some(namespace.to_string());
    }
    let raw = helm::render(chart, &opts).await?;
    normalize::normalize(raw, namespace, scopes)
}

/// Render and normalize: the desired set of a checkout for a destination namespace.
pub async fn render(
    checkout: &Checkout,
    opts: &RenderOptions,
    namespace: &str,
    scopes: &Scopes,
) -> Result<Vec<DesiredObject>, RenderError> {
    let mut opts = opts.clone();
    if opts.helm.namespace.is_none() && !namespace.is_empty() {
        // Helm's .Release.Namespace is the destination namespace unless told otherwise.
        opts.helm.namespace = Some(namespace.to_string());
    }
    let raw = render_raw(checkout, &opts).await?;
    normalize::normalize(raw, namespace, scopes)
}

fn display_rel(root: &Path, path: &Path) -> String {
    let rel: PathBuf = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    let s = rel.display().to_string();
    if s.is_empty() { ".".to_string() } else { s }
}

/// Parse a multi-document YAML (or JSON) text into objects, skipping empty documents.
pub(crate) fn parse_documents(text: &str, file: &str) -> Result<Vec<RawObject>, RenderError> {
    // The default budget (1,024 documents, 250,000 nodes) is for configuration files;
    // a generated manifest of thousands of objects is normal here. With that many nodes
    // allowed, the alias limits are what stop a YAML bomb, and their defaults (a million
    // events recorded for anchors or replayed from aliases) let a 250-byte file take half
    // a second and hundreds of megabytes to be refused; renderers' output has no aliases
    // and hand-written files share small blocks, so a tenth of that is plenty.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 50_000_000,
            max_events: 200_000_000,
            max_recorded_anchor_events: 100_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
        },
    };
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            RenderError::Parse {
                path: file.to_string(),
                message: first_line(&e.to_string()),
            }
        })?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.is_null())
        .enumerate()
        .map(|(i, object)| RawObject {
            object,
            origin: Origin {
                file: file.to_string(),
                document: i + 1,
            },
        })
        .collect())
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or(message)
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_file_of_thousands_of_objects_parses() {
        let text: String = (0..5000)
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  a: b\n"))
            .collect();
        let docs = parse_documents(&text, "all.yaml").unwrap();
        assert_eq!(docs.len(), 5000);
        assert_eq!(docs[4999].origin.document, 5000);
    }

    #[test]
    fn broken_yaml_names_file_and_line() {
        let err = parse_documents(
            "a: 1\n---\nkind: X\nmetadata:\n  labels: {a: b\n",
            "deploy/app.yaml",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("deploy/app.yaml: line 5"), "{msg}");
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        // 250 bytes that expand to 8^6 = 262,144 scalars (found by crates/fuzz: half a
        // second per file before the alias limits were tightened)
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{p}"); 8].join(", ")
            ));
        }
        let err = parse_documents(&text, "bomb.yaml").unwrap_err().to_string();
        assert!(err.starts_with("bomb.yaml: line "), "{err}");
        // a few shared blocks still parse
        let objs = parse_documents(
            "base: &base {a: 1, b: [1, 2, 3]}\nx: *base\ny: {<<: *base, c: 2}\n",
            "ok.yaml",
        )
        .unwrap();
        assert_eq!(objs[0].object["y"]["b"][2], 3);
    }

    #[test]
    fn empty_documents_are_skipped() {
        let objs = parse_documents("---\n# nothing\n---\na: 1\n---\n\n", "x.yaml").unwrap();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].origin.document, 1);
    }

    #[test]
    fn detection_follows_argo_cd() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect(d.path()), RendererKind::Directory);
        std::fs::write(d.path().join("Chart.yaml"), "name: x").unwrap();
        assert_eq!(detect(d.path()), RendererKind::Helm);
        std::fs::write(d.path().join("kustomization.yaml"), "resources: []").unwrap();
        assert_eq!(detect(d.path()), RendererKind::Kustomize);
    }
}
