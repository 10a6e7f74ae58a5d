//! End-to-end: the `capstan` binary as a CI pipeline runs it, against a real git
//! server (`git http-backend` with basic auth) and the embedded API server, both on
//! loopback and started by the test.

use std::process::{Command, Output};
use std::time::Duration;

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

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed with {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        out(o),
        err(o)
    );
    out(o)
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
    assert!(text.lines().all(|l| l.ends_with(" unchanged")), "{text}");
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
