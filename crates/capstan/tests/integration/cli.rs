//! End-to-end: the `capstan` binary as a CI pipeline runs it, against a real git
//! server (`git http-backend` with basic auth) and the embedded API server, both on
//! loopback and started by the test.

use std::process::{Command, Output};
use std::time::Duration;

use capstan_testkit::process::{ok, stderr as err, stdout as out};
use capstan_testkit::{BasicAuth, GitServer, TestCluster, TestRepo};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};

const USER: &str = "ci";
const PASSWORD: &str = "s3cret-token";

struct Env {
    cluster: TestCluster,
    server: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "app.git");
        let server = GitServer::start(root.path(), Some(BasicAuth::new(USER, PASSWORD))).unwrap();
        Env {
            cluster: TestCluster::start(),
            server,
            repo,
            _root: root,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn capstan(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.args(args)
            .env("CAPSTAN_CACHE_DIR", self.cache.path())
            .env("CAPSTAN_GIT_PASSWORD", PASSWORD)
            .env("CAPSTAN_HELM", capstan_testkit::tools::helm())
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG");
        capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
    }

    fn repo_args(&self) -> Vec<String> {
        vec![
            "--repo".into(),
            self.server.url("app.git"),
            "--git-username".into(),
            USER.into(),
        ]
    }

    /// `capstan apply` of `deploy/` from the git server.
    fn apply(&self, extra: &[&str]) -> Output {
        let kc = self.cluster.kubeconfig_path().display().to_string();
        let mut args: Vec<String> = vec!["apply".into()];
        args.extend(self.repo_args());
        args.extend(
            [
                "--path",
                "deploy",
                "--app",
                "demo",
                "--namespace",
                "demo",
                "--prune",
                "--kubeconfig",
                &kc,
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.capstan(&refs)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n";

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

#[test]
fn first_apply_change_prune_and_a_second_apply_that_changes_nothing() {
    let e = Env::new();
    e.repo.write("deploy/ns.yaml", NAMESPACE);
    e.repo.write("deploy/settings.yaml", cm("settings", "one"));
    e.repo.write("deploy/extra.yaml", cm("extra", "x"));
    let first_commit = e.repo.commit("first");
    let o = e.apply(&[]);
    let text = ok(&o);
    assert!(text.contains("namespace/demo created"), "{text}");
    assert!(
        text.contains("configmap/settings -n demo created"),
        "{text}"
    );
    assert!(
        err(&o).contains(&first_commit[..12]),
        "the revision is reported: {}",
        err(&o)
    );

    e.repo.write("deploy/settings.yaml", cm("settings", "two"));
    e.repo.remove("deploy/extra.yaml");
    e.repo.commit("change and remove");
    let text = ok(&e.apply(&[]));
    assert!(
        text.contains("configmap/settings -n demo configured"),
        "{text}"
    );
    assert!(text.contains("configmap/extra -n demo pruned"), "{text}");
    assert_eq!(
        e.kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.key}"
        ]),
        "two"
    );
    assert!(
        !e.kubectl(&["get", "cm", "-n", "demo", "-o", "name"])
            .contains("configmap/extra")
    );

    let rvs = e.kubectl(&[
        "get",
        "cm,ns",
        "-A",
        "-l",
        "capstan.dev/application=demo",
        "-o",
        "jsonpath={.items[*].metadata.resourceVersion}",
    ]);
    let text = ok(&e.apply(&[]));
    // not vacuous: some lines, every one unchanged
    assert!(
        text.lines().count() > 0 && text.lines().all(|l| l.ends_with(" unchanged")),
        "{text}"
    );
    let again = e.kubectl(&[
        "get",
        "cm,ns",
        "-A",
        "-l",
        "capstan.dev/application=demo",
        "-o",
        "jsonpath={.items[*].metadata.resourceVersion}",
    ]);
    assert_eq!(
        rvs, again,
        "a second apply leaves every resourceVersion alone"
    );

    let json = ok(&e.apply(&["-o", "json"]));
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["succeeded"], true);
    assert_eq!(doc["revision"]["message"], "change and remove");
}

#[test]
fn an_empty_render_is_refused_and_nothing_is_pruned() {
    let e = Env::new();
    e.repo.write("deploy/ns.yaml", NAMESPACE);
    e.repo.write("deploy/a.yaml", cm("a", "1"));
    e.repo.commit("first");
    ok(&e.apply(&[]));
    e.repo.remove("deploy/ns.yaml");
    e.repo.remove("deploy/a.yaml");
    e.repo.write("deploy/README.md", "nothing to deploy\n");
    e.repo.commit("empty");
    let o = e.apply(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("rendered no objects; refusing to sync"),
        "{}",
        err(&o)
    );
    e.kubectl(&["get", "cm", "a", "-n", "demo"]);
}

#[test]
fn broken_yaml_is_an_error_naming_the_file_and_line() {
    let e = Env::new();
    e.repo.write("deploy/ok.yaml", cm("a", "1"));
    e.repo.write(
        "deploy/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  labels: {a: b\n",
    );
    e.repo.commit("broken");
    let o = e.apply(&[]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("deploy/broken.yaml: line 5"),
        "{}",
        err(&o)
    );
}

#[test]
fn a_symlink_escaping_the_repository_is_an_error() {
    let e = Env::new();
    e.repo.write("deploy/ok.yaml", cm("a", "1"));
    e.repo
        .symlink("deploy/passwd.yaml", "../../../../etc/passwd");
    e.repo.commit("evil link");
    let o = e.apply(&[]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("symlink \"deploy/passwd.yaml\""),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("outside the repository"), "{}", err(&o));
}

#[test]
fn a_duplicate_object_is_an_error_naming_both_files() {
    let e = Env::new();
    e.repo.write("deploy/one.yaml", cm("same", "1"));
    e.repo.write("deploy/sub/two.yaml", cm("same", "2"));
    e.repo.commit("dup");
    let o = e.apply(&[]);
    assert!(!o.status.success());
    let msg = err(&o);
    assert!(
        msg.contains("ConfigMap demo/same is defined twice"),
        "{msg}"
    );
    assert!(
        msg.contains("deploy/one.yaml") && msg.contains("deploy/sub/two.yaml"),
        "{msg}"
    );
}

#[test]
fn wrong_credentials_fail_without_showing_the_password() {
    let e = Env::new();
    e.repo.write("deploy/a.yaml", cm("a", "1"));
    e.repo.commit("first");
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args([
        "apply",
        "--repo",
        &e.server.url("app.git"),
        "--git-username",
        USER,
        "--path",
        "deploy",
        "--app",
        "demo",
        "--kubeconfig",
        &kc,
    ])
    .env("CAPSTAN_CACHE_DIR", e.cache.path())
    .env("CAPSTAN_GIT_PASSWORD", "wrong-password");
    let o = capstan_testkit::process::run(cmd, None, Duration::from_secs(60));
    assert!(!o.status.success());
    let msg = err(&o);
    assert!(
        msg.contains(&format!("fetching {}", e.server.url("app.git"))),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong-password") && !msg.contains(PASSWORD),
        "{msg}"
    );
}

#[test]
fn a_file_url_works_without_a_server() {
    let e = Env::new();
    e.repo.write("deploy/ns.yaml", NAMESPACE);
    e.repo.write("deploy/a.yaml", cm("a", "1"));
    e.repo.commit("first");
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let text = ok(&e.capstan(&[
        "apply",
        "--repo",
        &e.repo.file_url(),
        "--path",
        "deploy",
        "--app",
        "local",
        "--namespace",
        "demo",
        "--kubeconfig",
        &kc,
    ]));
    assert!(text.contains("configmap/a -n demo created"), "{text}");
}

#[test]
fn a_kustomize_overlay_overrides_the_image() {
    let e = Env::new();
    e.repo.write(
        "deploy/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    );
    e.repo.write(
        "deploy/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
    );
    e.repo.write(
        "deploy/overlays/prod/kustomization.yaml",
        "namespace: demo\nresources:\n- ../../base\n- ns.yaml\nimages:\n- name: nginx\n  newTag: \"1.27.1\"\n",
    );
    e.repo.write("deploy/overlays/prod/ns.yaml", NAMESPACE);
    e.repo.commit("kustomize");
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let mut args: Vec<String> = vec!["apply".into()];
    args.extend(e.repo_args());
    args.extend(
        [
            "--path",
            "deploy/overlays/prod",
            "--app",
            "kust",
            "--kubeconfig",
            &kc,
            "--wait",
            "--timeout",
            "30s",
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = ok(&e.capstan(&refs));
    assert!(
        text.contains("deployment.apps/web -n demo created"),
        "{text}"
    );
    assert!(text.contains("health: Healthy"), "{text}");
    assert_eq!(
        e.kubectl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.27.1"
    );
}

fn write_chart(repo: &TestRepo) {
    repo.write(
        "charts/web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    );
    repo.write(
        "charts/web/values.yaml",
        "replicaCount: 1\nimage:\n  tag: \"1.0\"\ngreeting: hello\n",
    );
    repo.write(
        "charts/web/templates/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicaCount }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n    spec:\n      containers:\n      - name: web\n        image: \"example.com/web:{{ .Values.image.tag }}\"\n",
    );
    repo.write(
        "charts/web/templates/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    );
    repo.write(
        "env/prod-values.yaml",
        "replicaCount: 3\ngreeting: bonjour\n",
    );
}

#[test]
fn a_helm_chart_is_rendered_with_values_files_and_inline_values() {
    let e = Env::new();
    write_chart(&e.repo);
    e.repo.commit("chart");
    e.cluster.apply(NAMESPACE);
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let mut args: Vec<String> = vec!["apply".into()];
    args.extend(e.repo_args());
    args.extend(
        [
            "--path",
            "charts/web",
            "--app",
            "web",
            "--namespace",
            "demo",
            "--release-name",
            "shop",
            "--values",
            "env/prod-values.yaml",
            "--set",
            "image.tag=2.0",
            "--kubeconfig",
            &kc,
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = ok(&e.capstan(&refs));
    assert!(
        text.contains("deployment.apps/shop -n demo created"),
        "{text}"
    );
    assert_eq!(
        e.kubectl(&[
            "get",
            "deploy",
            "shop",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );
    assert_eq!(
        e.kubectl(&[
            "get",
            "deploy",
            "shop",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "example.com/web:2.0"
    );
    assert_eq!(
        e.kubectl(&[
            "get",
            "cm",
            "shop-config",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.greeting}"
        ]),
        "bonjour"
    );
}

#[test]
fn waves_are_applied_in_order() {
    let e = Env::new();
    let wave = |name: &str, w: i32| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    capstan.dev/sync-wave: \"{w}\"\n"
        )
    };
    e.repo.write("deploy/c.yaml", wave("third", 10));
    e.repo.write("deploy/a.yaml", wave("first", -1));
    e.repo.write("deploy/b.yaml", wave("second", 2));
    e.repo.commit("waves");
    e.cluster.apply(NAMESPACE);
    let order = e.cluster.block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(e.cluster.client().await, "demo");
        let mut events = api
            .watch(&WatchParams::default(), "0")
            .await
            .unwrap()
            .boxed();
        let run = tokio::task::spawn_blocking({
            let kc = e.cluster.kubeconfig_path().display().to_string();
            let url = e.server.url("app.git");
            let cache = e.cache.path().to_path_buf();
            move || {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
                cmd.args([
                    "apply",
                    "--repo",
                    &url,
                    "--git-username",
                    USER,
                    "--path",
                    "deploy",
                    "--app",
                    "waves",
                    "--namespace",
                    "demo",
                    "--kubeconfig",
                    &kc,
                ])
                .env("CAPSTAN_CACHE_DIR", cache)
                .env("CAPSTAN_GIT_PASSWORD", PASSWORD);
                capstan_testkit::process::run(cmd, None, Duration::from_secs(60))
            }
        });
        let mut order = Vec::new();
        while order.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(30), events.next()).await {
                Ok(Some(Ok(WatchEvent::Added(o)))) => order.push(o.metadata.name.unwrap()),
                Ok(Some(_)) => {}
                other => panic!("watch ended: {other:?}"),
            }
        }
        ok(&run.await.unwrap());
        order
    });
    assert_eq!(order, ["first", "second", "third"]);
}

#[test]
fn waiting_on_a_failing_deployment_exits_non_zero_with_the_reason() {
    let e = Env::new();
    e.repo.write("deploy/ns.yaml", NAMESPACE);
    e.repo.write(
        "deploy/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: doomed\n  annotations:\n    simulate.capstan.dev/fail: \"true\"\nspec:\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      containers:\n      - {name: c, image: nginx:1.27}\n",
    );
    e.repo.commit("doomed");
    let o = e.apply(&["--wait", "--timeout", "30s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let msg = err(&o);
    assert!(
        msg.contains("Deployment.apps demo/doomed is Degraded"),
        "{msg}"
    );
    assert!(msg.contains("progress deadline"), "{msg}");
}

#[test]
fn a_secret_change_shows_in_diff_without_its_value() {
    let e = Env::new();
    e.repo.write("deploy/ns.yaml", NAMESPACE);
    e.repo.write("deploy/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: first-Pa55\n");
    e.repo.commit("secret");
    ok(&e.apply(&[]));
    e.repo.write("deploy/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: second-Pa55\n");
    e.repo.commit("rotate");
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let mut args: Vec<String> = vec!["diff".into()];
    args.extend(e.repo_args());
    args.extend(
        [
            "--path",
            "deploy",
            "--app",
            "demo",
            "--namespace",
            "demo",
            "--kubeconfig",
            &kc,
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = e.capstan(&refs);
    assert_eq!(o.status.code(), Some(1), "differences exit 1: {}", err(&o));
    let text = out(&o);
    assert!(text.contains("update Secret demo/db"), "{text}");
    assert!(text.contains("password: ++++++++ (changed)"), "{text}");
    for leaked in [
        "first-Pa55",
        "second-Pa55",
        "Zmlyc3QtUGE1NQ==",
        "c2Vjb25kLVBhNTU=",
    ] {
        assert!(
            !text.contains(leaked) && !err(&o).contains(leaked),
            "secret value {leaked} leaked:\n{text}"
        );
    }
    ok(&e.apply(&[]));
    assert_eq!(
        e.capstan(&refs).status.code(),
        Some(0),
        "no differences exit 0"
    );
}

#[test]
fn diff_between_two_commits_needs_no_cluster() {
    let e = Env::new();
    write_chart(&e.repo);
    let from = e.repo.commit("chart 1");
    e.repo.write(
        "charts/web/values.yaml",
        "replicaCount: 2\nimage:\n  tag: \"1.0\"\ngreeting: hello\n",
    );
    e.repo.write(
        "charts/web/templates/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
    );
    let to = e.repo.commit("chart 2");
    let mut args: Vec<String> = vec!["diff".into()];
    args.extend(e.repo_args());
    args.extend(
        [
            "--path",
            "charts/web",
            "--from",
            &from,
            "--to",
            &to,
            "-o",
            "markdown",
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = e.capstan(&refs);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let md = out(&o);
    assert!(md.starts_with("### Capstan diff of `charts/web`"), "{md}");
    assert!(md.contains("**1 added, 1 changed**"), "{md}");
    assert!(
        md.contains("-  replicas: 1") && md.contains("+  replicas: 2"),
        "{md}"
    );
    assert!(
        md.contains("<code>ConfigMap default/extra</code> (added)"),
        "{md}"
    );
    let same = [
        "diff",
        "--repo",
        &e.server.url("app.git"),
        "--git-username",
        USER,
        "--path",
        "charts/web",
        "--from",
        &to,
        "--to",
        &to,
    ];
    assert_eq!(e.capstan(&same).status.code(), Some(0));
}

#[test]
fn context_selects_the_cluster_and_every_command_speaks_json() {
    let e = Env::new();
    e.repo.write("deploy/ns.yaml", NAMESPACE);
    e.repo.write("deploy/a.yaml", cm("a", "1"));
    e.repo.commit("first");
    // a kubeconfig whose current context points nowhere; --context picks the real one
    let kc = e
        .cluster
        .kubeconfig_yaml()
        .replace("current-context: capstan", "current-context: nowhere")
        + "---\n";
    let kc = kc.trim_end_matches("---\n").to_string();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&kc).unwrap();
    doc["contexts"].as_array_mut().unwrap().push(
        serde_json::json!({"name": "nowhere", "context": {"cluster": "void", "user": "capstan"}}),
    );
    doc["clusters"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "void", "cluster": {"server": "https://127.0.0.1:1"}}));
    let path = e.cache.path().join("two-contexts.yaml");
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    let p = path.display().to_string();
    let url = e.server.url("app.git");
    let base = [
        "--repo",
        url.as_str(),
        "--git-username",
        USER,
        "--path",
        "deploy",
    ];

    let mut apply = vec!["apply"];
    apply.extend(base);
    apply.extend(["--app", "ctx", "--namespace", "demo", "--kubeconfig", &p]);
    assert!(
        !e.capstan(&apply).status.success(),
        "the current context reaches no cluster"
    );
    apply.extend(["--context", "capstan"]);
    ok(&e.capstan(&apply));

    let mut render = vec!["render"];
    render.extend(base);
    render.extend(["-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&ok(&e.capstan(&render))).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    e.repo.write("deploy/a.yaml", cm("a", "2"));
    e.repo.commit("second");
    let mut diff = vec!["diff"];
    diff.extend(base);
    diff.extend([
        "--app",
        "ctx",
        "--namespace",
        "demo",
        "--kubeconfig",
        &p,
        "--context",
        "capstan",
        "-o",
        "json",
    ]);
    let o = e.capstan(&diff);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["changes"][0]["action"], "update");
    assert_eq!(doc["changes"][0]["object"]["name"], "a");
}

#[test]
fn the_diff_is_coloured_on_a_terminal_and_plain_in_a_pipe() {
    let e = Env::new();
    e.repo.write("deploy/ns.yaml", NAMESPACE);
    e.repo.write("deploy/a.yaml", cm("a", "1"));
    e.repo.commit("first");
    ok(&e.apply(&[]));
    e.repo.write("deploy/a.yaml", cm("a", "2"));
    e.repo.commit("second");
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let cmdline = format!(
        "{} diff --repo {} --git-username {USER} --path deploy --app demo --namespace demo --kubeconfig {kc}",
        env!("CARGO_BIN_EXE_capstan"),
        e.server.url("app.git")
    );
    // `script` gives the command a pseudo-terminal, as a developer's shell would.
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &cmdline, "/dev/null"])
        .env("CAPSTAN_CACHE_DIR", e.cache.path())
        .env("CAPSTAN_GIT_PASSWORD", PASSWORD)
        .env_remove("NO_COLOR");
    let tty = capstan_testkit::process::run(cmd, None, Duration::from_secs(60));
    let text = out(&tty);
    assert!(
        text.contains("\x1b[32m+  key: \"2\""),
        "green additions on a terminal: {text:?}"
    );
    assert!(
        text.contains("\x1b[31m-  key: \"1\""),
        "red removals on a terminal: {text:?}"
    );
    let plain = out(&e.capstan(&[
        "diff",
        "--repo",
        &e.server.url("app.git"),
        "--git-username",
        USER,
        "--path",
        "deploy",
        "--app",
        "demo",
        "--namespace",
        "demo",
        "--kubeconfig",
        &kc,
    ]));
    assert!(
        plain.contains("+  key: \"2\"") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

impl Env {
    /// `capstan args…` with extra environment variables (KUBECONFIG left as given).
    fn capstan_env(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.args(args)
            .env("CAPSTAN_CACHE_DIR", self.cache.path())
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
    }

    /// A kubeconfig whose cluster is a closed port on loopback.
    fn unreachable_kubeconfig(&self) -> std::path::PathBuf {
        let yaml = self
            .cluster
            .kubeconfig_yaml()
            .replace(self.cluster.url(), "https://127.0.0.1:1");
        assert_ne!(
            yaml,
            self.cluster.kubeconfig_yaml(),
            "the server URL is replaced"
        );
        let path = self.cache.path().join("unreachable.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

/// A local directory of manifests.
fn local_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn diff_exits_2_on_an_error() {
    let e = Env::new();
    let kc = e.cluster.kubeconfig_path().display().to_string();

    // A source that does not render.
    let broken = local_dir(&[
        ("ok.yaml", &cm("a", "1")),
        (
            "broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  labels: {a: b\n",
        ),
    ]);
    let dir = broken.path().display().to_string();
    let o = e.capstan(&["diff", &dir, "--app", "demo", "--kubeconfig", &kc]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("broken.yaml: line 5"), "{}", err(&o));

    // A cluster that cannot be reached.
    let good = local_dir(&[("ns.yaml", NAMESPACE), ("a.yaml", &cm("a", "1"))]);
    let dir = good.path().display().to_string();
    let nowhere = e.unreachable_kubeconfig().display().to_string();
    let o = e.capstan(&["diff", &dir, "--app", "demo", "--kubeconfig", &nowhere]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("error: discovering the API of the cluster"),
        "{}",
        err(&o)
    );

    // An object the server refuses to plan (a conflict with another field manager).
    ok(&e.capstan(&[
        "apply",
        &dir,
        "--app",
        "demo",
        "--namespace",
        "demo",
        "--kubeconfig",
        &kc,
    ]));
    let hand = e.cluster.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "--field-manager=hand", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: demo\ndata:\n  key: hand\n",
    );
    assert!(hand.status.success());
    let o = e.capstan(&[
        "diff",
        &dir,
        "--app",
        "demo",
        "--namespace",
        "demo",
        "--kubeconfig",
        &kc,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        out(&o).contains("update ConfigMap demo/a: error: ") && out(&o).contains("conflict"),
        "{}",
        out(&o)
    );
}

#[test]
fn diff_between_two_commits_of_a_kustomize_overlay_shows_no_secret_value() {
    let e = Env::new();
    e.repo.write(
        "deploy/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- secret.yaml\n",
    );
    e.repo.write(
        "deploy/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
    );
    let secret = |password: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {password}\n  user: admin\n"
        )
    };
    let overlay = |tag: &str, token: &str| {
        format!(
            "namespace: shop\nresources:\n- ../../base\nimages:\n- name: nginx\n  newTag: \"{tag}\"\nsecretGenerator:\n- name: api\n  literals:\n  - token={token}\n"
        )
    };
    e.repo
        .write("deploy/base/secret.yaml", secret("first-Pa55"));
    e.repo.write(
        "deploy/overlays/prod/kustomization.yaml",
        overlay("1.27.1", "first-T0ken"),
    );
    let from = e.repo.commit("prod at 1.27.1");
    e.repo
        .write("deploy/base/secret.yaml", secret("second-Pa55"));
    e.repo.write(
        "deploy/overlays/prod/kustomization.yaml",
        overlay("1.27.2", "second-T0ken"),
    );
    let to = e.repo.commit("prod at 1.27.2, rotated");

    let url = e.server.url("app.git");
    let base = [
        "diff",
        "--repo",
        url.as_str(),
        "--git-username",
        USER,
        "--path",
        "deploy/overlays/prod",
        "--from",
        from.as_str(),
        "--to",
        to.as_str(),
    ];
    let leaks = [
        "first-Pa55",
        "second-Pa55",
        "first-T0ken",
        "second-T0ken",
        "Zmlyc3QtUGE1NQ==",
        "c2Vjb25kLVBhNTU=",
        "Zmlyc3QtVDBrZW4=",
        "c2Vjb25kLVQwa2Vu",
    ];
    for format in [None, Some("json"), Some("markdown")] {
        let mut args = base.to_vec();
        if let Some(f) = format {
            args.extend(["-o", f]);
        }
        let o = e.capstan(&args);
        assert_eq!(o.status.code(), Some(1), "{format:?}: {}", err(&o));
        let (text, stderr) = (out(&o), err(&o));
        for leaked in leaks {
            assert!(
                !text.contains(leaked) && !stderr.contains(leaked),
                "{format:?}: secret value {leaked} leaked:\n{text}\n{stderr}"
            );
        }
        let diff_text = match format {
            Some("json") => {
                let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
                let changes = doc["changes"].as_array().unwrap();
                let find = |kind: &str, action: &str| {
                    changes
                        .iter()
                        .find(|c| c["object"]["kind"] == kind && c["action"] == action)
                        .unwrap_or_else(|| panic!("no {action} {kind}: {doc:#}"))
                };
                assert_eq!(find("Deployment", "changed")["object"]["name"], "web");
                assert_eq!(find("Secret", "changed")["object"]["name"], "db");
                // the generated Secret's name carries a hash of its content
                find("Secret", "added");
                find("Secret", "removed");
                changes
                    .iter()
                    .map(|c| c["diff"].as_str().unwrap().to_string())
                    .collect::<String>()
            }
            _ => text.clone(),
        };
        assert!(
            diff_text.contains("-      - image: nginx:1.27.1")
                && diff_text.contains("+      - image: nginx:1.27.2"),
            "{format:?}: the image change is shown:\n{diff_text}"
        );
        assert!(
            diff_text.contains("+  password: ++++++++ (changed)"),
            "{format:?}: a changed key is shown as changed:\n{diff_text}"
        );
        assert!(
            !diff_text.contains("+  user:"),
            "{format:?}: an unchanged key is not a change:\n{diff_text}"
        );
        if format == Some("markdown") {
            assert!(
                text.contains("<code>Deployment.apps shop/web</code> (changed)"),
                "{text}"
            );
            assert!(
                text.contains("<code>Secret shop/db</code> (changed)"),
                "{text}"
            );
        }
    }
}

#[test]
fn apply_dry_run_of_a_directory_creates_nothing_and_a_real_apply_does() {
    let e = Env::new();
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let src = local_dir(&[("ns.yaml", NAMESPACE), ("app/a.yaml", &cm("a", "1"))]);
    let dir = src.path().display().to_string();
    let args = [
        "apply",
        dir.as_str(),
        "--app",
        "dry",
        "--namespace",
        "demo",
        "--prune",
        "--kubeconfig",
        kc.as_str(),
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let o = e.capstan(&dry);
    let text = ok(&o);
    assert!(text.contains("namespace/demo created (dry run)"), "{text}");
    assert!(
        text.contains("configmap/a -n demo created (dry run)"),
        "{text}"
    );
    assert!(
        err(&o).contains("dry run, nothing was changed"),
        "{}",
        err(&o)
    );
    let gone = e.cluster.kubectl(&["get", "ns", "demo"]);
    assert!(!gone.status.success(), "a dry run creates no namespace");
    let inventory =
        e.cluster
            .kubectl(&["get", "cm", "capstan-inventory-dry", "-n", "capstan-system"]);
    assert!(!inventory.status.success(), "nor an inventory");

    let o = e.capstan(&args);
    let text = ok(&o);
    assert!(text.contains("configmap/a -n demo created"), "{text}");
    assert!(
        !text.contains("dry run") && !err(&o).contains("dry run"),
        "{text}"
    );
    assert_eq!(
        e.kubectl(&["get", "cm", "a", "-n", "demo", "-o", "jsonpath={.data.key}"]),
        "1"
    );
    e.kubectl(&["get", "cm", "capstan-inventory-dry", "-n", "capstan-system"]);
}

/// The README's "Push-based delivery from a CI pipeline", command by command.
#[test]
fn the_readme_push_example_works_as_written() {
    let e = Env::new();
    let deploy = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../apiserver/tests/fixtures/mixed-set.yaml"
        ),
        deploy.path().join("app.yaml"),
    )
    .unwrap();
    let dir = deploy.path().display().to_string();
    let env = [("KUBECONFIG", e.cluster.kubeconfig_path().as_os_str())];
    let objects = [
        "Namespace demo",
        "ConfigMap demo/cfg",
        "Secret demo/sec",
        "Deployment.apps demo/web",
        "Service demo/web",
    ];

    // capstan diff /tmp/deploy --app demo
    let o = e.capstan_env(&["diff", &dir, "--app", "demo"], &env);
    assert_eq!(o.status.code(), Some(1), "differences exit 1: {}", err(&o));
    let text = out(&o);
    for object in objects {
        assert!(
            text.contains(&format!("create {object}\n")),
            "{object}: {text}"
        );
    }
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMg=="),
        "{text}"
    );

    // capstan apply /tmp/deploy --app demo --prune --wait
    let text = ok(&e.capstan_env(&["apply", &dir, "--app", "demo", "--prune", "--wait"], &env));
    for line in [
        "namespace/demo created",
        "configmap/cfg -n demo created",
        "secret/sec -n demo created",
        "deployment.apps/web -n demo created",
        "service/web -n demo created",
        "health: Healthy",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let o = e.capstan_env(&["diff", &dir, "--app", "demo"], &env);
    assert_eq!(o.status.code(), Some(0), "in sync: {}{}", out(&o), err(&o));

    // sed -i 's/replicas: 2/replicas: 3/' /tmp/deploy/app.yaml
    let mut sed = Command::new("sed");
    sed.args(["-i", "s/replicas: 2/replicas: 3/"])
        .arg(deploy.path().join("app.yaml"));
    capstan_testkit::process::assert_success(
        &capstan_testkit::process::run(sed, None, Duration::from_secs(10)),
        "sed",
    );

    // capstan diff /tmp/deploy --app demo: exactly that change
    let o = e.capstan_env(&["diff", &dir, "--app", "demo"], &env);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let text = out(&o);
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["create ", "update ", "prune "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert_eq!(headers, ["update Deployment.apps demo/web"], "{text}");
    let changed: Vec<&str> = text
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed, ["-  replicas: 2", "+  replicas: 3"], "{text}");

    // capstan apply /tmp/deploy --app demo --prune: configures only what drifted
    let text = ok(&e.capstan_env(&["apply", &dir, "--app", "demo", "--prune"], &env));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), objects.len(), "{text}");
    for line in lines {
        if line.starts_with("deployment.apps/web ") {
            assert_eq!(line, "deployment.apps/web -n demo configured");
        } else {
            assert!(line.ends_with(" unchanged"), "{text}");
        }
    }
    assert_eq!(
        e.kubectl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );
}

#[test]
fn apply_shows_progress_on_a_terminal_and_none_in_a_pipe() {
    let e = Env::new();
    let mut files = vec![
        ("ns.yaml".to_string(), NAMESPACE.to_string()),
        (
            "deploy.yaml".to_string(),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: nginx:1.27}\n".to_string(),
        ),
    ];
    for i in 0..5 {
        files.push((format!("cm-{i}.yaml"), cm(&format!("cm-{i}"), "v")));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let src = local_dir(&files);
    let kc = e.cluster.kubeconfig_path().display().to_string();
    let dir = src.path().display().to_string();
    let cmdline = format!(
        "{} apply {dir} --app bar --namespace demo --wait --timeout 30s --kubeconfig {kc}",
        env!("CARGO_BIN_EXE_capstan"),
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &cmdline, "/dev/null"])
        .env("CAPSTAN_CACHE_DIR", e.cache.path())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    let tty = capstan_testkit::process::run(cmd, None, Duration::from_secs(60));
    let text = out(&tty);
    assert!(tty.status.success(), "{text:?}");
    assert!(
        text.contains("/7 "),
        "a bar counting the 7 objects to apply: {text:?}"
    );
    assert!(text.contains("] "), "the bar is drawn: {text:?}");

    // the same apply into a pipe: the result lines, no bar
    let o = e.capstan(&[
        "apply",
        &dir,
        "--app",
        "bar",
        "--namespace",
        "demo",
        "--wait",
        "--timeout",
        "30s",
        "--kubeconfig",
        &kc,
    ]);
    let text = ok(&o);
    let stderr = err(&o);
    // not vacuous: objects were reported, and every one unchanged
    assert!(
        text.lines().any(|l| l.ends_with(" unchanged"))
            && text.lines().all(|l| {
                l.ends_with(" unchanged") || l.starts_with("health") || l.starts_with("  ")
            }),
        "{text}"
    );
    for drawn in ["\r", "\x1b[", "] ", "/7"] {
        assert!(
            !stderr.contains(drawn) && !text.contains(drawn),
            "no progress drawn in a pipe ({drawn:?}): {stderr:?}"
        );
    }
}

#[test]
fn render_prints_yaml_that_parses_back_into_the_desired_set() {
    let e = Env::new();
    let src = local_dir(&[
        ("ns.yaml", NAMESPACE),
        ("a.yaml", &cm("a", "1")),
        (
            "multi.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: quoted\ndata:\n  number: \"8080\"\n  text: \"yes: no\"\n",
        ),
    ]);
    let dir = src.path().display().to_string();
    let o = e.capstan(&["render", &dir, "--namespace", "shop"]);
    let yaml = ok(&o);
    assert!(yaml.starts_with("---\n# Source: "), "{yaml}");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let json: serde_json::Value = serde_json::from_str(&ok(&e.capstan(&[
        "render",
        &dir,
        "--namespace",
        "shop",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(docs.len(), 4, "{yaml}");
    assert_eq!(
        &docs,
        json["items"].as_array().unwrap(),
        "YAML and JSON agree"
    );
    let quoted = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "quoted")
        .unwrap();
    assert_eq!(quoted["data"]["number"], "8080", "strings stay strings");
    assert_eq!(quoted["data"]["text"], "yes: no");
    assert_eq!(quoted["metadata"]["namespace"], "shop");
    assert!(err(&o).contains("rendered 4 objects"), "{}", err(&o));
}

#[test]
fn a_repository_over_https_is_fetched_with_basic_auth_when_its_ca_is_trusted() {
    let e = Env::new();
    e.repo.write(
        "deploy/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-tls\ndata:\n  k: v\n",
    );
    let commit = e.repo.commit("over https");
    let front = capstan_testkit::HttpsFront::start(e.server.addr()).unwrap();
    let url = front.url("app.git");
    let render = |ca: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.args([
            "render",
            "--repo",
            &url,
            "--git-username",
            USER,
            "--path",
            "deploy",
            "-o",
            "json",
        ])
        .env("CAPSTAN_CACHE_DIR", e.cache.path())
        .env("CAPSTAN_GIT_PASSWORD", PASSWORD)
        .env("NO_COLOR", "1");
        match ca {
            // the CA replaces the system's trust store for this process
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env("SSL_CERT_FILE", "/dev/null"),
        };
        capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
    };

    let untrusted = render(None);
    assert_eq!(
        untrusted.status.code(),
        Some(2),
        "an untrusted certificate is an error"
    );
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(err.contains(&url), "the error names the repository: {err}");
    assert!(
        err.starts_with(&format!("error: fetching {url}")) && err.contains("UnknownIssuer"),
        "one line of error, naming the repository and the cause: {err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(
        e.server.request_log().is_empty(),
        "nothing reached the server without a trusted TLS session"
    );

    let out = render(Some(front.ca_file()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = objects.to_string();
    assert!(text.contains("over-tls"), "{text}");
    let log = e.server.request_log();
    assert!(
        log.iter()
            .any(|r| r.status == 200 && r.user.as_deref() == Some(USER)),
        "the fetch went through TLS to the server, authenticated: {log:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(
        stderr.contains(&format!("rendered 1 objects from {}", &commit[..7])),
        "{stderr}"
    );
}

/// `capstan render` of a local directory, run from `cwd` (no cluster, no git server).
fn render_in(cwd: &std::path::Path, args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.arg("render")
        .args(args)
        .current_dir(cwd)
        .env("CAPSTAN_CACHE_DIR", cache.path())
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG");
    capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
}

#[test]
fn render_evaluates_jsonnet_with_the_top_level_argument_external_variable_and_library_flags() {
    let work = local_dir(&[
        (
            "env/vendor/k.libsonnet",
            "{\n  labels(team):: { team: team, tier: std.extVar('tier') },\n}\n",
        ),
        (
            "env/apps/web/main.jsonnet",
            r#"local k = import 'k.libsonnet';
function(name, replicas=1) [
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: k.labels(std.extVar('team')) },
    spec: {
      replicas: replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] },
      },
    },
  },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name + '-settings' }, data: std.extVar('settings') },
]
"#,
        ),
        ("env/apps/web/cm.yaml", &cm("plain", "yaml")),
    ]);
    // A relative SOURCE, as a pipeline gives it: files and libraries are still found
    // and named relative to it.
    let flags = [
        "env",
        "--path",
        "apps/web",
        "--namespace",
        "shop",
        "--jsonnet-tla",
        "name=web",
        "--jsonnet-tla-code",
        "replicas=1 + 2",
        "--jsonnet-ext-str",
        "team=payments",
        "--jsonnet-ext-str",
        "tier=front=end",
        "--jsonnet-ext-code",
        "settings={ mode: std.asciiUpper('fast') }",
        "--jsonnet-lib",
        "vendor",
    ];
    let mut json_flags = flags.to_vec();
    json_flags.extend(["-o", "json"]);

    let o = render_in(work.path(), &json_flags);

    let list: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let items = list["items"].as_array().unwrap();
    let names: Vec<_> = items
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["kind"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "ConfigMap/plain",
            "Deployment/web",
            "ConfigMap/web-settings"
        ]
    );
    let web = &items[1];
    assert_eq!(web["spec"]["replicas"], 3, "code, evaluated");
    assert_eq!(web["metadata"]["namespace"], "shop");
    assert_eq!(
        web["metadata"]["labels"],
        serde_json::json!({"team": "payments", "tier": "front=end"}),
        "split at the first '='"
    );
    assert_eq!(items[2]["data"], serde_json::json!({"mode": "FAST"}));
    assert!(err(&o).contains("rendered 3 objects"), "{}", err(&o));

    let yaml = ok(&render_in(work.path(), &flags));
    assert!(
        yaml.contains("\n# Source: apps/web/main.jsonnet (document 2)\n"),
        "objects are attributed to the Jsonnet file: {yaml}"
    );

    // Without the library the import is not found: the file and the import are named.
    let o = render_in(work.path(), &flags[..flags.len() - 2]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("error: apps/web/main.jsonnet:") && err(&o).contains("\"k.libsonnet\""),
        "{}",
        err(&o)
    );

    // A flag without `=` is refused by the argument parser, before anything runs.
    let o = render_in(work.path(), &["env", "--jsonnet-tla", "name"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("expected NAME=VALUE"), "{}", err(&o));
}

#[test]
fn render_refuses_a_jsonnet_import_out_of_the_repository_and_names_a_syntax_errors_line() {
    let work = local_dir(&[
        ("outside.libsonnet", "{ secret: 'x' }"),
        (
            "env/app/main.jsonnet",
            "(import '../../outside.libsonnet') + { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }",
        ),
    ]);

    let o = render_in(work.path(), &["env", "--path", "app"]);

    assert!(!o.status.success());
    let stderr = err(&o);
    assert!(
        stderr.contains("error: app/main.jsonnet: import \"../../outside.libsonnet\" is refused")
            && stderr.contains("escapes the repository"),
        "{stderr}"
    );
    assert!(!out(&o).contains("secret"), "nothing rendered");

    std::fs::write(
        work.path().join("env/app/main.jsonnet"),
        "{\n  apiVersion: 'v1',\n  kind: 'ConfigMap'\n  metadata: { name: 'x' },\n}\n",
    )
    .unwrap();
    let o = render_in(work.path(), &["env", "--path", "app"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("error: app/main.jsonnet:4:"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("syntax error"), "{}", err(&o));
}
