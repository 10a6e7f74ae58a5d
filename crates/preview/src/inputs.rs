//! What an Application reads from the repository: its paths, its values files (`$ref/…`
//! of multi-source included), the Kustomize bases and components its kustomizations
//! name outside its path, and the local chart dependencies (`file://…`) of its charts —
//! so a change elsewhere in the repository does not make it render.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use serde_json::Value;

use crate::render::Plan;

/// Files and directories (paths from the repository root) an Application reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inputs {
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
}

impl Inputs {
    /// The inputs of `plan` in the tree at `root`.
    pub fn of(plan: &Plan, root: &Path) -> Inputs {
        let mut inputs = Inputs::default();
        for s in &plan.sources {
            let path = clean(&s.path);
            inputs.dir(root, &path, 0);
            for f in s.values_files() {
                inputs.files.insert(clean(f));
            }
        }
        inputs
    }

    /// Add another set (the same Application at the other revision).
    pub fn extend(&mut self, other: Inputs) {
        self.dirs.extend(other.dirs);
        self.files.extend(other.files);
    }

    /// Whether `file` (a changed path) is one of the inputs.
    pub fn reads(&self, file: &str) -> bool {
        self.files.contains(file)
            || self
                .dirs
                .iter()
                .any(|d| d == "." || file == d || file.starts_with(&format!("{d}/")))
    }

    /// A directory read whole, and what its kustomization or chart reads besides.
    fn dir(&mut self, root: &Path, dir: &str, depth: usize) {
        if depth > 20 || !self.dirs.insert(dir.to_string()) {
            return;
        }
        let abs = root.join(dir);
        if let Some(k) = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
            .iter()
            .map(|f| abs.join(f))
            .find(|f| f.is_file())
        {
            for r in kustomization_paths(&k) {
                self.path(root, dir, &r, depth);
            }
        }
        if let Some(chart) = read_yaml(&abs.join("Chart.yaml")) {
            for dep in chart["dependencies"].as_array().into_iter().flatten() {
                if let Some(local) = dep["repository"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("file://"))
                {
                    self.path(root, dir, local, depth);
                }
            }
        }
    }

    /// A path a kustomization or chart in `dir` names.
    fn path(&mut self, root: &Path, dir: &str, named: &str, depth: usize) {
        if named.contains("://") || named.starts_with("github.com/") || named.starts_with("git@") {
            return; // remote: not this repository's files
        }
        let Some(p) = join(dir, named) else {
            return;
        };
        if root.join(&p).is_dir() {
            self.dir(root, &p, depth + 1);
        } else {
            self.files.insert(p);
        }
    }
}

/// Every local path a kustomization names: resources, bases, components, CRDs,
/// patches, generators' files, replacements, transformers, generators, Helm values.
fn kustomization_paths(file: &Path) -> Vec<String> {
    let Some(k) = read_yaml(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let strings = |v: &Value, out: &mut Vec<String>| {
        for s in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
            out.push(s.to_string());
        }
    };
    for key in [
        "resources",
        "bases",
        "components",
        "crds",
        "patchesStrategicMerge",
        "transformers",
        "generators",
        "validators",
        "configurations",
    ] {
        strings(&k[key], &mut out);
    }
    for key in ["patches", "patchesJson6902", "replacements"] {
        for p in k[key].as_array().into_iter().flatten() {
            if let Some(path) = p["path"].as_str() {
                out.push(path.to_string());
            }
        }
    }
    for key in ["configMapGenerator", "secretGenerator"] {
        for g in k[key].as_array().into_iter().flatten() {
            for f in g["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                // `key=path` names the key the file's content goes to
                out.push(f.rsplit_once('=').map(|(_, p)| p).unwrap_or(f).to_string());
            }
            strings(&g["envs"], &mut out);
            if let Some(env) = g["env"].as_str() {
                out.push(env.to_string());
            }
        }
    }
    for h in k["helmCharts"].as_array().into_iter().flatten() {
        if let Some(v) = h["valuesFile"].as_str() {
            out.push(v.to_string());
        }
    }
    if let Some(p) = k["openapi"]["path"].as_str() {
        out.push(p.to_string());
    }
    out
}

fn read_yaml(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_saphyr::from_str(&text).ok()
}

/// `./a/b/` → `a/b`; `` → `.`.
fn clean(p: &str) -> String {
    join(".", p).unwrap_or_else(|| p.to_string())
}

/// `named` relative to `dir`, from the repository root; `None` when it leaves it.
fn join(dir: &str, named: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(dir).join(named).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn kustomize_bases_components_and_generator_files_outside_the_path_are_inputs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        write(
            root,
            "envs/prod/web/kustomization.yaml",
            "resources:\n- ../../../bases/web\n- https://github.com/org/remote//base\n- deploy.yaml\ncomponents:\n- ../../../components/probes\nconfigMapGenerator:\n- name: cfg\n  files:\n  - app.conf=../../../shared/app.conf\npatches:\n- path: ../../../patches/replicas.yaml\n",
        );
        write(root, "envs/prod/web/deploy.yaml", "kind: X\n");
        write(
            root,
            "bases/web/kustomization.yaml",
            "resources:\n- ../common\n",
        );
        write(root, "bases/common/cm.yaml", "kind: X\n");
        write(
            root,
            "components/probes/kustomization.yaml",
            "kind: Component\n",
        );
        write(root, "shared/app.conf", "x\n");
        write(root, "patches/replicas.yaml", "x\n");
        let mut i = Inputs::default();
        i.dir(root, "envs/prod/web", 0);
        for yes in [
            "envs/prod/web/deploy.yaml",
            "bases/web/kustomization.yaml",
            "bases/common/cm.yaml",
            "components/probes/kustomization.yaml",
            "shared/app.conf",
            "patches/replicas.yaml",
        ] {
            assert!(i.reads(yes), "{yes}: {i:?}");
        }
        for no in [
            "envs/prod/api/deploy.yaml",
            "bases/webx/cm.yaml",
            "shared/other.conf",
        ] {
            assert!(!i.reads(no), "{no}");
        }
    }

    #[test]
    fn local_chart_dependencies_are_inputs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        write(
            root,
            "charts/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n- name: lib\n  version: 1.0.0\n  repository: file://../lib\n- name: redis\n  repository: https://charts.example.com\n",
        );
        write(
            root,
            "charts/lib/Chart.yaml",
            "apiVersion: v2\nname: lib\nversion: 1.0.0\n",
        );
        let mut i = Inputs::default();
        i.dir(root, "charts/web", 0);
        assert!(i.reads("charts/lib/templates/_helpers.tpl"));
        assert!(!i.reads("charts/other/Chart.yaml"));
    }
}
