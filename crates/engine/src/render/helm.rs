//! The Helm renderer: `helm template RELEASE CHART --namespace NS -f VALUES --set K=V`.
//!
//! Values files are paths inside the repository and are confined to it. Objects are
//! attributed to the template that produced them (Helm's `# Source:` comments).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

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
    /// Inline values as a YAML document (like a values file in the Application).
    pub values: Option<String>,
    /// How long rendering may take.
    pub timeout: Duration,
}

impl Default for HelmOptions {
    fn default() -> Self {
        HelmOptions {
            binary: None,
            release_name: None,
            namespace: None,
            values_files: Vec::new(),
            set: Vec::new(),
            values: None,
            timeout: Duration::from_secs(90),
        }
    }
}

pub(super) async fn render(
    root: &Path,
    dir: &Path,
    rel: &str,
    opts: &HelmOptions,
) -> Result<Vec<RawObject>, RenderError> {
    let binary = opts
        .binary
        .clone()
        .or_else(|| std::env::var("CAPSTAN_HELM").ok())
        .unwrap_or_else(|| "helm".to_string());
    let release = opts.release_name.clone().unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "release".into())
    });
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.arg("template").arg(&release).arg(dir);
    if let Some(ns) = &opts.namespace {
        cmd.arg("--namespace").arg(ns);
    }
    for f in &opts.values_files {
        let path = confine::check_tree(root, Path::new(f))?;
        cmd.arg("--values").arg(path);
    }
    let inline_file;
    if let Some(values) = &opts.values {
        inline_file = tempfile::NamedTempFile::new().map_err(|source| RenderError::Read {
            path: "<inline values>".into(),
            source,
        })?;
        std::fs::write(inline_file.path(), values).map_err(|source| RenderError::Read {
            path: "<inline values>".into(),
            source,
        })?;
        cmd.arg("--values").arg(inline_file.path());
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
