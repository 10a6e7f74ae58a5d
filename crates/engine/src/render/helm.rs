//! The Helm renderer: `helm template RELEASE CHART --namespace NS -f VALUES… -f
//! VALUES_FROM… -f INLINE --set K=V --api-versions GV --kube-version V`.
//!
//! The chart is a [`ChartDir`]: a directory in a checkout, or a chart fetched from a
//! chart repository ([`source::helm`](crate::source::helm)). Values files are paths
//! inside the chart's values root — the Git checkout they come from — and are
//! confined to it, wherever the chart itself lives. Objects are attributed to the
//! template that produced them (Helm's `# Source:` comments).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::values_from::ValuesDoc;
use super::{Origin, RawObject, RenderError, parse_documents};
use crate::source::confine;

/// How to run Helm.
#[derive(Debug, Clone)]
pub struct HelmOptions {
    /// The binary (default `helm`; `CAPSTAN_HELM` overrides).
    pub binary: Option<String>,
    /// Release name (default: the chart directory's name).
    pub release_name: Option<String>,
    /// Namespace passed to `--namespace` (default: the destination namespace).
    pub namespace: Option<String>,
    /// Values files, relative to the repository root.
    pub values_files: Vec<String>,
    /// Inline values, `key=value` as for `--set`.
    pub set: Vec<String>,
    /// Values read from the cluster's ConfigMaps and Secrets
    /// ([`values_from`](super::values_from())), applied after the values files and
    /// before [`values`](Self::values) and [`set`](Self::set).
    pub values_from: Vec<ValuesDoc>,
    /// Inline values as a YAML document (like a values file in the Application).
    pub values: Option<String>,
    /// How long rendering may take.
    pub timeout: Duration,
    /// What `.Capabilities.APIVersions` holds besides Helm's defaults: `group/version`
    /// and `group/version/Kind` (`apps/v1`, `apps/v1/Deployment`), as
    /// [`Destination::capabilities`](crate::destination::Destination::capabilities)
    /// lists them. Passed as `--api-versions`.
    pub api_versions: Vec<String>,
    /// `.Capabilities.KubeVersion` (`v1.31.0`); Helm's default when `None`. Passed as
    /// `--kube-version`.
    pub kube_version: Option<String>,
}

/// A chart for `helm template`, and where its values files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartDir {
    /// The chart: a directory holding `Chart.yaml`.
    pub dir: PathBuf,
    /// How messages and origins name the chart: its path in the repository
    /// (`charts/web`), or `chart web 1.2.0 from https://…` for a fetched one.
    pub label: String,
    /// The directory [`HelmOptions::values_files`] are relative to and confined in
    /// (symlinks and `..` that leave it are errors): the Git checkout the values come
    /// from. `None` when there is none; then giving values files is an error.
    pub values_root: Option<PathBuf>,
}

impl Default for HelmOptions {
    fn default() -> Self {
        HelmOptions {
            binary: None,
            release_name: None,
            namespace: None,
            values_files: Vec::new(),
            set: Vec::new(),
            values_from: Vec::new(),
            values: None,
            timeout: Duration::from_secs(90),
            api_versions: Vec::new(),
            kube_version: None,
        }
    }
}

pub(super) async fn render(
    chart: &ChartDir,
    opts: &HelmOptions,
) -> Result<Vec<RawObject>, RenderError> {
    let binary = opts
        .binary
        .clone()
        .or_else(|| std::env::var("CAPSTAN_HELM").ok())
        .unwrap_or_else(|| "helm".to_string());
    let release = opts.release_name.clone().unwrap_or_else(|| {
        chart
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "release".into())
    });
    let rel = chart.label.as_str();
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.arg("template").arg(&release).arg(&chart.dir);
    if let Some(ns) = &opts.namespace {
        cmd.arg("--namespace").arg(ns);
    }
    for f in &opts.values_files {
        let Some(root) = &chart.values_root else {
            return Err(RenderError::NoValuesRoot {
                chart: chart.label.clone(),
                file: f.clone(),
            });
        };
        let path = confine::check_tree(root, Path::new(f))?;
        cmd.arg("--values").arg(path);
    }
    capabilities(&mut cmd, opts);
    // Kept until helm has run; the files are readable by their owner only.
    let mut files = Vec::new();
    for doc in &opts.values_from {
        files.push(values_file(doc.yaml(), &doc.origin)?);
    }
    if let Some(values) = &opts.values {
        files.push(values_file(values, "<inline values>")?);
    }
    for file in &files {
        cmd.arg("--values").arg(file.path());
    }
    for s in &opts.set {
        cmd.arg("--set").arg(s);
    }
    // Helm must not reach the network or read the user's repositories while rendering.
    let home = tempfile::tempdir().map_err(|source| RenderError::Read {
        path: "<helm home>".into(),
        source,
    })?;
    cmd.env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"));
    let stdout = run_tool("helm", &binary, cmd, rel, opts.timeout).await?;
    split_by_source(&stdout, rel)
}

/// A temporary file holding `text` (values named `what` in errors).
fn values_file(text: &str, what: &str) -> Result<tempfile::NamedTempFile, RenderError> {
    let read = |source| RenderError::Read {
        path: what.to_string(),
        source,
    };
    let mut file = tempfile::NamedTempFile::new().map_err(read)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(read)?;
    Ok(file)
}

/// `--api-versions` and `--kube-version`, so `.Capabilities` describes the destination.
fn capabilities(cmd: &mut tokio::process::Command, opts: &HelmOptions) {
    for api in opts.api_versions.iter().filter(|a| !a.trim().is_empty()) {
        cmd.arg("--api-versions").arg(api.trim());
    }
    if let Some(v) = opts
        .kube_version
        .as_deref()
        .filter(|v| !v.trim().is_empty())
    {
        cmd.arg("--kube-version").arg(v.trim());
    }
}

/// Parse `helm template` output, attributing each document to its `# Source:` template.
fn split_by_source(stdout: &str, rel: &str) -> Result<Vec<RawObject>, RenderError> {
    let mut out = Vec::new();
    for (i, doc) in stdout.split("\n---").enumerate() {
        let source = doc
            .lines()
            .find_map(|l| l.trim().strip_prefix("# Source: "))
            .map(|s| format!("helm template {rel}: {s}"))
            .unwrap_or_else(|| format!("helm template {rel}"));
        let mut objs = parse_documents(doc.trim_start_matches("---"), &source)?;
        for o in &mut objs {
            o.origin = Origin {
                file: source.clone(),
                document: i + 1,
            };
        }
        out.extend(objs);
    }
    Ok(out)
}

/// Run an external renderer with a timeout; its stderr becomes the error.
pub(super) async fn run_tool(
    tool: &'static str,
    binary: &str,
    mut cmd: tokio::process::Command,
    rel: &str,
    timeout: Duration,
) -> Result<String, RenderError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| RenderError::ToolMissing {
        tool,
        binary: binary.to_string(),
        source,
    })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        let mut out = String::new();
        let mut err = String::new();
        let (a, b) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        let status = child.wait().await;
        (a.and(b).and(status), out, err)
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(RenderError::Timeout {
            tool,
            path: rel.to_string(),
            timeout,
        }),
        Ok((Err(source), _, _)) => Err(RenderError::ToolMissing {
            tool,
            binary: binary.to_string(),
            source,
        }),
        Ok((Ok(status), out, err)) => {
            if status.success() {
                Ok(out)
            } else {
                let msg = err.trim();
                Err(RenderError::Tool {
                    tool,
                    path: rel.to_string(),
                    stderr: if msg.is_empty() {
                        format!("exited with {status}")
                    } else {
                        msg.to_string()
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_attributed_to_their_template() {
        let out = "---\n# Source: app/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# Source: app/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n";
        let objs = split_by_source(out, "charts/app").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(
            objs[1].origin.file,
            "helm template charts/app: app/templates/svc.yaml"
        );
    }
}
