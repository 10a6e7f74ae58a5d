//! End-to-end: `capstan diff --all`, the pull-request preview of a whole repository,
//! run as a CI job runs it — the real binary, a real Git repository, helm and
//! kustomize — with no cluster at all.
//!
//! The repository defines Applications every way Capstan reads them: Capstan's own, an
//! Argo CD Application (Kustomize, with its base outside its path), an Argo CD
//! app-of-apps Helm chart whose children exist only once it is rendered, a Flux
//! Kustomization with its GitRepository, and a chart from a Helm repository elsewhere.
//! One commit changes a values file, a Kustomize base, the app-of-apps' values and the
//! chart's version; the preview must find every Application, render only those whose
//! inputs changed, and say why.

use std::process::{Command, Output};
use std::time::Duration;

use capstan_testkit::TestRepo;
use serde_json::Value;

const URL: &str = "https://git.example.com/env.git";

fn capstan(args: &[&str], cache: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args(args)
        .env("CAPSTAN_CACHE_DIR", cache)
        .env("CAPSTAN_HELM", capstan_testkit::tools::helm())
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG");
    capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
}

fn app(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: capstan-system\nspec:\n{spec}"
    )
}

const WEB_CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  replicas: {{ .Values.replicas | quote }}\n";
const WEB_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-db\nstringData:\n  password: {{ .Values.password | quote }}\n";
const PLATFORM_APPS: &str = "{{- range .Values.apps }}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: platform-{{ . }}\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: https://git.example.com/env.git\n    targetRevision: main\n    path: plain/{{ . }}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: platform\n{{- end }}\n";

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  greeting: {value}\n"
    )
}

/// The repository at BASE, then HEAD: a values file, a Kustomize base outside the
/// Application's path, the app-of-apps' values (a new child) and an external chart's
/// version change; everything else stays.
fn repository(root: &std::path::Path) -> (TestRepo, String, String) {
    let repo = TestRepo::create(root, "env.git");
    let spec = |path: &str, extra: &str| {
        format!(
            "  source:\n    repoURL: {URL}\n    path: {path}\n{extra}  destination:\n    namespace: apps\n"
        )
    };
    repo.write("root.yaml", app("root", &spec("apps", "")));
    repo.write(
        "apps/web.yaml",
        app(
            "web",
            &spec(
                "charts/web",
                "    helm:\n      valueFiles: [envs/prod/web-values.yaml]\n",
            ),
        ),
    );
    repo.write("apps/db.yaml", app("db", &spec("plain/db", "")));
    repo.write(
        "apps/external.yaml",
        app(
            "redis",
            "  source:\n    repoURL: https://charts.example.com\n    chart: redis\n    targetRevision: 17.0.0\n  destination:\n    namespace: redis\n",
        ),
    );
    repo.write(
        "apps/api.yaml",
        format!("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: api\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: {URL}\n    targetRevision: main\n    path: envs/prod/api\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: api\n"),
    );
    repo.write(
        "apps/platform.yaml",
        format!("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: platform\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: {URL}\n    targetRevision: main\n    path: platform\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: argocd\n"),
    );
    repo.write(
        "flux/sync.yaml",
        format!("apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: env\n  namespace: flux-system\nspec:\n  interval: 1m\n  url: {URL}\n  ref:\n    branch: main\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: cache\n  namespace: flux-system\nspec:\n  interval: 10m\n  sourceRef:\n    kind: GitRepository\n    name: env\n  path: ./plain/cache\n  prune: true\n"),
    );
    repo.write(
        "charts/web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    );
    repo.write(
        "charts/web/values.yaml",
        "replicas: 1\npassword: changeme\n",
    );
    repo.write("charts/web/templates/configmap.yaml", WEB_CONFIGMAP);
    repo.write("charts/web/templates/secret.yaml", WEB_SECRET);
    repo.write(
        "envs/prod/web-values.yaml",
        "replicas: 2\npassword: hunter2\n",
    );
    repo.write(
        "envs/prod/api/kustomization.yaml",
        "resources:\n- ../../../bases/api\nnamePrefix: prod-\n",
    );
    repo.write("bases/api/kustomization.yaml", "resources:\n- cm.yaml\n");
    repo.write("bases/api/cm.yaml", cm("api", "hello"));
    repo.write(
        "platform/Chart.yaml",
        "apiVersion: v2\nname: platform\nversion: 1.0.0\n",
    );
    repo.write("platform/values.yaml", "apps: [a, b]\n");
    repo.write("platform/templates/apps.yaml", PLATFORM_APPS);
    for d in ["a", "b", "c", "db", "cache"] {
        repo.write(format!("plain/{d}/cm.yaml"), cm(d, "hello"));
    }
    repo.write("README.md", "the environment\n");
    let base = repo.commit("base");

    repo.write(
        "envs/prod/web-values.yaml",
        "replicas: 3\npassword: hunter3\n",
    );
    repo.write("bases/api/cm.yaml", cm("api", "hello-there"));
    repo.write("platform/values.yaml", "apps: [a, b, c]\n");
    repo.write(
        "apps/external.yaml",
        app(
            "redis",
            "  source:\n    repoURL: https://charts.example.com\n    chart: redis\n    targetRevision: 17.1.0\n  destination:\n    namespace: redis\n",
        ),
    );
    repo.write("README.md", "the environment, documented\n");
    let head = repo.commit("head");
    (repo, base, head)
}

fn find<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no Application {name} in {report:#}"))
}

fn reasons(a: &Value) -> String {
    a["reasons"].to_string()
}

#[test]
fn the_preview_finds_every_application_renders_only_the_touched_ones_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (repo, base, head) = repository(root.path());
    let bare = repo.bare_path().display().to_string();
    let args = |output: &str| {
        vec![
            "diff".to_string(),
            "--repo".into(),
            bare.clone(),
            "--repo-alias".into(),
            URL.into(),
            "--from".into(),
            base.clone(),
            "--to".into(),
            head.clone(),
            "--all".into(),
            "-o".into(),
            output.into(),
        ]
    };
    let json_args = args("json");
    let refs: Vec<&str> = json_args.iter().map(String::as_str).collect();
    let out = capstan(&refs, cache.path());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "differences: exit 1\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();

    // every Application, whichever way it is defined
    let mut names: Vec<&str> = report["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api",
            "cache",
            "db",
            "platform",
            "platform-a",
            "platform-b",
            "platform-c",
            "redis",
            "root",
            "web"
        ],
        "{report:#}"
    );

    // a values file outside the chart changed: rendered, the Secret's values masked
    let web = find(&report, "web");
    assert_eq!(web["status"], "changed");
    assert_eq!(web["rendered"], true);
    assert!(
        reasons(web).contains("envs/prod/web-values.yaml changed"),
        "{web:#}"
    );
    let web_diff = web["objects"].to_string();
    assert!(web_diff.contains("+  replicas: \\\"3\\\""), "{web_diff}");
    assert!(web_diff.contains("Secret"), "{web_diff}");
    assert!(
        !stdout.contains("hunter") && !stderr.contains("hunter"),
        "a Secret's value was printed"
    );

    // a Kustomize base outside the Application's path changed
    let api = find(&report, "api");
    assert_eq!(api["status"], "changed", "{api:#}");
    assert!(
        reasons(api).contains("bases/api/cm.yaml changed"),
        "{api:#}"
    );
    assert!(api["objects"].to_string().contains("prod-api"), "{api:#}");

    // untouched Applications are not rendered
    for name in ["db", "cache", "platform-a", "platform-b"] {
        let a = find(&report, name);
        assert_eq!(a["status"], "unchanged", "{a:#}");
        assert_eq!(a["rendered"], false, "{a:#}");
        assert!(a["objects"].as_array().unwrap().is_empty());
    }
    assert!(
        find(&report, "cache")["defined_by"]
            .as_str()
            .unwrap()
            .starts_with("Kustomization flux-system/cache (flux/sync.yaml")
    );

    // the app-of-apps: its children are found by rendering it, a new one is new
    let platform = find(&report, "platform");
    assert_eq!(platform["status"], "changed", "{platform:#}");
    assert!(platform["objects"].to_string().contains("platform-c"));
    assert_eq!(find(&report, "platform-a")["parent"], "platform");
    let c = find(&report, "platform-c");
    assert_eq!(c["status"], "new", "{c:#}");
    assert_eq!(c["parent"], "platform");
    assert_eq!(c["objects"][0]["action"], "added");
    assert!(
        reasons(c).contains("defined at the new revision only"),
        "{c:#}"
    );

    // a chart from elsewhere: listed, not rendered, its version change shown
    let redis = find(&report, "redis");
    assert_eq!(redis["status"], "external", "{redis:#}");
    assert_eq!(redis["rendered"], false);
    let redis_diff = redis["objects"][0]["diff"].as_str().unwrap();
    assert!(
        redis_diff.contains("-    targetRevision: \"17.0.0\"")
            && redis_diff.contains("+    targetRevision: \"17.1.0\""),
        "{redis_diff}"
    );

    assert!(stderr.contains("10 Applications: "), "{stderr}");
    assert!(report["changed_files"].to_string().contains("README.md"));

    // the same as Markdown for a pull-request comment
    let md_args = args("markdown");
    let refs: Vec<&str> = md_args.iter().map(String::as_str).collect();
    let md = capstan(&refs, cache.path());
    let md = String::from_utf8_lossy(&md.stdout).into_owned();
    assert!(md.starts_with("### Capstan preview of `"), "{md}");
    assert!(
        md.contains(&format!("`{}` → `{}`", &base[..12], &head[..12]))
            || md.contains(&format!("`{}` → `{}`", &base[..7], &head[..7])),
        "{md}"
    );
    assert!(
        md.contains("| Application | Status | + | − | Why |\n| --- | --- | ---: | ---: | --- |\n"),
        "{md}"
    );
    let row = md
        .lines()
        .find(|l| l.starts_with("| `capstan-system/web` |"))
        .unwrap_or_else(|| panic!("no row for web:\n{md}"));
    assert!(
        row.contains("| changed |") && row.contains("envs/prod/web-values.yaml changed"),
        "{row}"
    );
    assert!(
        md.lines()
            .any(|l| l.starts_with("| `capstan-system/db` | unchanged | 0 | 0 |")),
        "{md}"
    );
    let details = md.matches("<details><summary><b>").count();
    assert_eq!(
        details, 6,
        "web, api, platform, platform-c, redis, root:\n{md}"
    );
    assert!(
        md.contains("<details><summary><b>capstan-system/web</b>: changed (+"),
        "{md}"
    );
    assert!(!md.contains("<b>capstan-system/db</b>"), "{md}");
    assert!(md.contains("```diff\n"), "{md}");
    assert_eq!(
        md.matches("<details>").count(),
        md.matches("</details>").count()
    );
    assert!(!md.contains("hunter"));
}

#[test]
fn nothing_changed_is_exit_zero_and_an_unknown_revision_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (repo, _base, head) = repository(root.path());
    let bare = repo.bare_path().display().to_string();
    let same = capstan(
        &[
            "diff",
            "--repo",
            &bare,
            "--repo-alias",
            URL,
            "--from",
            &head,
            "--to",
            &head,
            "--all",
        ],
        cache.path(),
    );
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let stderr = String::from_utf8_lossy(&same.stderr);
    assert!(stderr.contains("0 rendered; 0 files changed"), "{stderr}");
    let missing = capstan(
        &[
            "diff",
            "--repo",
            &bare,
            "--from",
            "no-such-branch",
            "--to",
            &head,
            "--all",
        ],
        cache.path(),
    );
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no-such-branch"), "{stderr}");
}

fn conformance() -> Option<std::path::PathBuf> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/repos");
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the conformance data is missing at {}",
        dir.display()
    );
    eprintln!(
        "conformance data not found at {}: the example repository was not previewed",
        dir.display()
    );
    None
}

/// Commit every file of `from` (below `rel`) into `repo`.
fn copy_into(repo: &TestRepo, from: &std::path::Path, rel: &std::path::Path) {
    for entry in std::fs::read_dir(from.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let r = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_into(repo, from, &r);
        } else {
            repo.write(&r, std::fs::read(entry.path()).unwrap());
        }
    }
}

#[test]
fn argocd_example_apps_the_app_of_apps_chart_no_application_points_to_is_rendered() {
    let Some(snapshot) = conformance() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "argocd-example-apps.git");
    copy_into(
        &repo,
        &snapshot.join("argocd-example-apps"),
        std::path::Path::new(""),
    );
    let base = repo.commit("snapshot");
    // a values change of one app, and a new child in the app-of-apps' values
    let values =
        std::fs::read_to_string(repo.work_path().join("helm-guestbook/values.yaml")).unwrap();
    repo.write(
        "helm-guestbook/values.yaml",
        values.replace("replicaCount: 1", "replicaCount: 2"),
    );
    let apps = std::fs::read_to_string(repo.work_path().join("apps/values.yaml")).unwrap();
    repo.write(
        "apps/values.yaml",
        apps.replace(
            "  - name: sync-waves\n",
            "  - name: sync-waves\n  - name: guestbook-copy\n    path: guestbook\n",
        ),
    );
    let head = repo.commit("head");
    let bare = repo.bare_path().display().to_string();
    let out = capstan(
        &[
            "diff",
            "--repo",
            &bare,
            "--repo-alias",
            "https://github.com/argoproj/argocd-example-apps",
            "--from",
            &base,
            "--to",
            &head,
            "--all",
            "-o",
            "json",
        ],
        cache.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["applications"].as_array().unwrap().len(),
        15,
        "{report:#}"
    );
    let helm = find(&report, "example.helm-guestbook");
    assert_eq!(helm["status"], "changed", "{helm:#}");
    assert!(reasons(helm).contains("helm-guestbook/values.yaml changed"));
    assert_eq!(
        helm["parent"],
        "the chart apps/ (no Application points to it)"
    );
    assert_eq!(find(&report, "example.guestbook-copy")["status"], "new");
    for quiet in [
        "example.guestbook",
        "example.sock-shop",
        "example.kustomize-guestbook",
    ] {
        assert_eq!(find(&report, quiet)["rendered"], false, "{quiet}");
    }
}
