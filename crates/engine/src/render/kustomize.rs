//! The Kustomize renderer: `kustomize build DIR`, or `kubectl kustomize DIR` when no
//! `kustomize` binary is configured or found.

use std::path::Path;
use std::time::Duration;

use super::{RawObject, RenderError, parse_documents};

/// How to run Kustomize.
#[derive(Debug, Clone)]
pub struct KustomizeOptions {
    /// The binary: `kustomize`, or `kubectl` (run as `kubectl kustomize`). `None` tries
    /// `kustomize`, then `kubectl kustomize`.
    pub binary: Option<String>,
    /// Extra arguments for `build` (e.g. `--enable-helm`).
    pub args: Vec<String>,
    /// How long the build may take.
    pub timeout: Duration,
}

impl Default for KustomizeOptions {
    fn default() -> Self {
        KustomizeOptions {
            binary: None,
            args: Vec::new(),
            timeout: Duration::from_secs(90),
        }
    }
}

pub(super) async fn render(
    dir: &Path,
    rel: &str,
    opts: &KustomizeOptions,
) -> Result<Vec<RawObject>, RenderError> {
    let candidates: Vec<String> = match &opts.binary {
        Some(b) => vec![b.clone()],
        None => vec!["kustomize".into(), "kubectl".into()],
    };
    let mut last_err = None;
    for binary in candidates {
        let mut cmd = tokio::process::Command::new(&binary);
        if binary.ends_with("kubectl") {
            cmd.arg("kustomize");
        } else {
            cmd.arg("build");
        }
        cmd.arg(dir).args(&opts.args);
        match super::helm::run_tool("kustomize", &binary, cmd, rel, opts.timeout).await {
            Ok(stdout) => return parse_documents(&stdout, &format!("kustomize build {rel}")),
            Err(RenderError::ToolMissing {
                tool,
                binary,
                source,
            }) => {
                last_err = Some(RenderError::ToolMissing {
                    tool,
                    binary,
                    source,
                });
            }
            Err(other) => return Err(other),
        }
    }
    Err(last_err.expect("at least one candidate"))
}
