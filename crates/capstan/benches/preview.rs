//! Benchmark of the pull-request preview of a whole repository (`capstan diff --all`).
//!
//! The repository: 100 Applications, a third each Helm (one chart, a values file per
//! Application), Kustomize (an overlay per Application over a shared base) and plain
//! manifests (a directory each), defined half as Capstan Applications and half as Argo
//! CD Applications, all in `apps/`. One commit touches 10 of them (4 values files, 3
//! overlays, 3 manifests) and a README. Measured: the whole `capstan diff --repo
//! file://… --from BASE --to HEAD --all -o markdown` of the release binary, from start
//! to exit: fetch, both trees, discovery of all 100, rendering the 10 at both revisions
//! (helm and kustomize processes), the report. First with an empty Git cache, then with
//! the repository cached (as a CI runner with a cache, or a second push to the PR);
//! and the same revision twice (everything but the renders).
//!
//! Run: `cargo bench -p capstan --bench preview` (env: BENCH_PREVIEW_APPS, default 100;
//! BENCH_PREVIEW_TOUCHED, default 10; BENCH_ROUNDS, default 5; BENCH_KEEP=1 only writes
//! the repository, keeps it and prints where, to run by hand). Needs git, helm
//! (`CAPSTAN_HELM` or `target/tools/bin/helm`) and kustomize or kubectl.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const URL: &str = "https://git.example.com/fleet.git";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[derive(Clone, Copy)]
enum Kind {
    Helm,
    Kustomize,
    Plain,
}

fn kind(i: usize) -> Kind {
    match i % 3 {
        0 => Kind::Helm,
        1 => Kind::Kustomize,
        _ => Kind::Plain,
    }
}

fn deployment(name: &str, replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: registry.example.com/{name}:1.0.0\n        ports:\n        - containerPort: 8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-settings\ndata:\n  level: info\n"
    )
}

/// The Application `app-NNN` (a Capstan one for even numbers, an Argo CD one for odd).
fn application(i: usize) -> String {
    let name = format!("app-{i:03}");
    let (path, helm) = match kind(i) {
        Kind::Helm => (
            "charts/service".to_string(),
            format!(
                "    helm:\n      releaseName: {name}\n      valueFiles: [envs/{name}/values.yaml]\n"
            ),
        ),
        Kind::Kustomize => (format!("envs/{name}"), String::new()),
        Kind::Plain => (format!("plain/{name}"), String::new()),
    };
    if i.is_multiple_of(2) {
        format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: capstan-system\nspec:\n  source:\n    repoURL: {URL}\n    targetRevision: main\n    path: {path}\n{helm}  destination:\n    namespace: {name}\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n"
        )
    } else {
        let helm = helm.replace("valueFiles: [envs", "valueFiles: [../../envs");
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: {URL}\n    targetRevision: main\n    path: {path}\n{helm}  destination:\n    server: https://kubernetes.default.svc\n    namespace: {name}\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n"
        )
    }
}

/// The repository at BASE in `work`, committed; then the commit touching `touched`
/// Applications. Returns both commits.
fn repository(work: &Path, apps: usize, touched: usize) -> (String, String) {
    git(work, &["init", "-q", "-b", "main"]);
    write(
        work,
        "charts/service/Chart.yaml",
        "apiVersion: v2\nname: service\nversion: 1.0.0\n",
    );
    write(
        work,
        "charts/service/values.yaml",
        "replicas: 1\nimage: registry.example.com/service:1.0.0\nlevel: info\n",
    );
    write(
        work,
        "charts/service/templates/all.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n    spec:\n      containers:\n      - name: app\n        image: {{ .Values.image }}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  selector: {app: {{ .Release.Name }}}\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  level: {{ .Values.level | quote }}\n",
    );
    write(
        work,
        "bases/service/kustomization.yaml",
        "resources:\n- all.yaml\n",
    );
    write(work, "bases/service/all.yaml", &deployment("service", 1));
    for i in 0..apps {
        let name = format!("app-{i:03}");
        write(work, &format!("apps/{name}.yaml"), &application(i));
        match kind(i) {
            Kind::Helm => write(
                work,
                &format!("envs/{name}/values.yaml"),
                &format!("replicas: 2\nimage: registry.example.com/{name}:1.0.0\n"),
            ),
            Kind::Kustomize => {
                write(
                    work,
                    &format!("envs/{name}/kustomization.yaml"),
                    &format!(
                        "resources:\n- ../../bases/service\nnamePrefix: {name}-\npatches:\n- path: replicas.yaml\n"
                    ),
                );
                write(
                    work,
                    &format!("envs/{name}/replicas.yaml"),
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: service\nspec:\n  replicas: 2\n",
                );
            }
            Kind::Plain => write(
                work,
                &format!("plain/{name}/all.yaml"),
                &deployment(&name, 2),
            ),
        }
    }
    write(work, "README.md", "the fleet\n");
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "base"]);
    let base = git(work, &["rev-parse", "HEAD"]);
    for i in (0..apps)
        .step_by((apps / touched.max(1)).max(1))
        .take(touched)
    {
        let name = format!("app-{i:03}");
        match kind(i) {
            Kind::Helm => write(
                work,
                &format!("envs/{name}/values.yaml"),
                &format!("replicas: 3\nimage: registry.example.com/{name}:1.1.0\n"),
            ),
            Kind::Kustomize => write(
                work,
                &format!("envs/{name}/replicas.yaml"),
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: service\nspec:\n  replicas: 3\n",
            ),
            Kind::Plain => write(
                work,
                &format!("plain/{name}/all.yaml"),
                &deployment(&name, 3),
            ),
        }
    }
    write(work, "README.md", "the fleet, documented\n");
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "touch some applications"]);
    let head = git(work, &["rev-parse", "HEAD"]);
    (base, head)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let apps = env("BENCH_PREVIEW_APPS", 100);
    let touched = env("BENCH_PREVIEW_TOUCHED", 10);
    let rounds = env("BENCH_ROUNDS", 5).max(1);
    let helm = std::env::var("CAPSTAN_HELM").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tools/bin/helm")
            .display()
            .to_string()
    });
    let work = tempfile::tempdir().unwrap();
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("repository kept in {}", work.path().display());
    }
    let repo = work.path().join("fleet");
    std::fs::create_dir_all(&repo).unwrap();
    let (base, head) = repository(&repo, apps, touched);
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("BASE {base} HEAD {head}");
        let _ = work.keep();
        return;
    }
    let url = format!("file://{}", repo.display());
    let run_between = |cache: &Path, from: &str, to: &str, code: i32| {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args([
                "diff",
                "--repo",
                &url,
                "--repo-alias",
                URL,
                "--from",
                from,
                "--to",
                to,
            ])
            .args(["--all", "-o", "markdown"])
            .env("CAPSTAN_CACHE_DIR", cache)
            .env("CAPSTAN_HELM", &helm)
            .output()
            .unwrap();
        let took = t.elapsed();
        assert_eq!(
            out.status.code(),
            Some(code),
            "the preview: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            took,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |cache: &Path| run_between(cache, &base, &head, 1);
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut unchanged = Vec::new();
    let mut summary = String::new();
    let mut markdown = 0;
    for _ in 0..rounds {
        let cache = tempfile::tempdir().unwrap();
        let (t, md, err) = run(cache.path());
        cold.push(t);
        let (t, _, _) = run(cache.path());
        warm.push(t);
        // the same revision twice: fetch, both trees and discovery, nothing rendered
        let (t, _, _) = run_between(cache.path(), &head, &head, 0);
        unchanged.push(t);
        summary = err.trim().to_string();
        markdown = md.len();
    }
    println!("capstan diff --all over {apps} Applications, one commit touching {touched}:");
    println!("  {summary}");
    println!("  markdown report: {markdown} bytes");
    println!(
        "  empty Git cache: median {:.2} s (of {rounds}); repository cached: median {:.2} s; nothing changed (discovery only): median {:.2} s",
        median(cold).as_secs_f64(),
        median(warm).as_secs_f64(),
        median(unchanged).as_secs_f64()
    );
}
