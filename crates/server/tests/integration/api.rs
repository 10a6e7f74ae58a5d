//! The HTTP API against real parts: the embedded API server, a git server on
//! loopback, the controller (`capstan_controller::start`) and the HTTP server bound on
//! 127.0.0.1:0, spoken to with reqwest.

use std::future::Future;
use std::time::{Duration, Instant};

use capstan_controller::ControllerOptions;
use capstan_testkit::{GitServer, TestCluster, TestRepo};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const ADMIN: &str = "alice-token-0123456789";
const OPERATOR: &str = "olga-token-0123456789";
const VIEWER: &str = "vic-token-0123456789";
const NOBODY: &str = "nobody-token-0123456789";
const SECRET_VALUE: &str = "s3cr3t-hunter2";

struct Env {
    _cluster: TestCluster,
    client: kube::Client,
    _git: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    _state: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
";

fn secret(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {value}\n"
    )
}

pub(super) async fn apply(client: &kube::Client, obj: Value) {
    let (group, version) = match obj["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            obj["apiVersion"].as_str().unwrap().to_string(),
        ),
    };
    let kind = obj["kind"].as_str().unwrap().to_string();
    let plural = match kind.as_str() {
        "Namespace" => "namespaces".to_string(),
        "Secret" => "secrets".into(),
        "ConfigMap" => "configmaps".into(),
        "Application" => "applications".into(),
        "ServiceAccount" => "serviceaccounts".into(),
        "ReplicaSet" => "replicasets".into(),
        "Pod" => "pods".into(),
        "ImageRepository" => "imagerepositories".into(),
        "ImagePolicy" => "imagepolicies".into(),
        other => panic!("no plural for {other}"),
    };
    let ar = kube::discovery::ApiResource {
        group: group.clone(),
        version: version.clone(),
        api_version: obj["apiVersion"].as_str().unwrap().to_string(),
        kind,
        plural,
    };
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let api: Api<kube::api::DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// Run a test on its own runtime, and do not wait at its end for blocking work the
/// controller may have left running (a fetch from the git server being torn down).
pub(super) fn run(test: impl Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test);
    rt.shutdown_timeout(Duration::from_secs(2));
}

async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A controller (identity `test-controller`) and its HTTP server on 127.0.0.1:0 for
/// `client`: the server's base URL, the tasks to abort at the end, and the
/// controller's state directory (kept as long as it runs).
pub(super) async fn serve(
    client: &kube::Client,
    api: capstan_server::api::ApiOptions,
) -> (String, Vec<tokio::task::JoinHandle<()>>, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let opts = ControllerOptions {
        state_dir: state.path().to_path_buf(),
        identity: "test-controller".into(),
        ..Default::default()
    };
    let (handle, running) = capstan_controller::start(client.clone(), opts, None);
    let mut tasks = vec![tokio::spawn(async move {
        let _ = running.await;
    })];
    let bound = capstan_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", bound.addr);
    let server_opts = capstan_server::ServerOptions {
        listen: bound.addr,
        api,
        ..Default::default()
    };
    let app_state = capstan_server::AppState::new(handle, server_opts);
    tasks.push(tokio::spawn(async move {
        let _ = bound.serve(app_state, std::future::pending()).await;
    }));
    (base, tasks, state)
}

impl Env {
    async fn start() -> Env {
        Env::start_with(Default::default()).await
    }

    async fn start_with(api: capstan_server::api::ApiOptions) -> Env {
        let cluster = TestCluster::start();
        let client = cluster.client().await;
        capstan_controller::install::install_crds(&client)
            .await
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "env.git");
        repo.write("web/deployment.yaml", WEB);
        repo.write("web/secret.yaml", secret(SECRET_VALUE));
        repo.write(
            "web/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  colour: blue\n",
        );
        repo.commit("first web");
        let git = GitServer::start(root.path(), None).unwrap();
        for ns in ["apps", "web", "capstan-system", "ci"] {
            apply(
                &client,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .await;
        }
        apply(
            &client,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "capstan-api-tokens", "namespace": "capstan-system"},
                "stringData": {"alice": ADMIN, "olga": OPERATOR, "vic": VIEWER, "nobody": NOBODY},
            }),
        )
        .await;
        apply(&client, json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "capstan-rbac", "namespace": "capstan-system"},
            "data": {"policy.yaml": "bindings:\n  - role: admin\n    users: [alice]\n  - role: operator\n    users: [olga]\n  - role: viewer\n    users: [vic]\n    groups: [\"system:serviceaccounts:ci\"]\n"},
        }))
        .await;

        let (base, tasks, state) = serve(&client, api).await;
        let env = Env {
            _cluster: cluster,
            client,
            _git: git,
            repo,
            _root: root,
            _state: state,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            tasks,
        };
        let env_ref = &env;
        eventually("the server to be ready", || async move {
            let r = env_ref
                .http
                .get(format!("{}/readyz", env_ref.base))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        env
    }

    fn git_url(&self) -> String {
        self._git.url("env.git")
    }

    /// An Application `apps/NAME` of `path`, deploying to `web`, without automated sync.
    async fn application(&self, name: &str, path: &str, labels: Value) {
        apply(&self.client, json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "apps", "labels": labels},
            "spec": {"source": {"repoURL": self.git_url(), "path": path}, "destination": {"namespace": "web"}},
        }))
        .await;
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(url),
            "POST" => self.http.post(url),
            "DELETE" => self.http.delete(url),
            m => panic!("method {m}"),
        };
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (code, body) = self.call("GET", path, Some(token), None).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    /// Wait until the list shows `apps/NAME` with `field` = `value`.
    async fn until_row(&self, name: &str, field: &str, value: impl Into<Value>) -> Value {
        let value: Value = value.into();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let l = self
                .get("/api/v1/applications?namespace=apps", VIEWER)
                .await;
            let row = l["items"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["name"] == name).cloned());
            if let Some(r) = row.as_ref().filter(|r| r[field] == value) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name} {field}={value}; the row is {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn audit(&self, action: &str, actor: &str) -> Value {
        eventually(
            &format!("an audit record {action} by {actor}"),
            || async move {
                let records = self.get("/api/v1/audit", VIEWER).await;
                records
                    .as_array()?
                    .iter()
                    .find(|r| r["action"] == action && r["actor"] == actor)
                    .cloned()
            },
        )
        .await
    }
}

#[test]
fn every_route_needs_a_token_and_the_role_it_names() {
    run(async {
        let env = Env::start().await;
        let env = &env;
        let app = "/api/v1/applications/apps/web";
        let routes: Vec<(&str, String, &str)> = vec![
            ("GET", "/api/v1/whoami".into(), "any"),
            ("GET", "/api/v1/applications".into(), "viewer"),
            ("GET", app.into(), "viewer"),
            (
                "GET",
                format!("{app}/resource?kind=ConfigMap&name=settings&namespace=web"),
                "viewer",
            ),
            ("GET", format!("{app}/history"), "viewer"),
            ("GET", format!("{app}/audit"), "viewer"),
            ("GET", format!("{app}/events"), "viewer"),
            ("GET", "/api/v1/audit".into(), "viewer"),
            ("GET", "/api/v1/emergency-stop".into(), "viewer"),
            ("GET", "/api/v1/no-such-route".into(), "any"),
            ("POST", format!("{app}/refresh"), "operator"),
            ("POST", format!("{app}/sync"), "operator"),
            ("POST", format!("{app}/rollback"), "operator"),
            ("POST", format!("{app}/suspend"), "operator"),
            ("POST", format!("{app}/resume"), "operator"),
            ("POST", "/api/v1/emergency-stop".into(), "admin"),
            ("DELETE", "/api/v1/emergency-stop".into(), "admin"),
        ];
        for (method, path, role) in &routes {
            for token in [None, Some("not-a-known-token")] {
                let (code, body) = env.call(method, path, token, None).await;
                assert_eq!(code, 401, "{method} {path} with {token:?}: {body}");
                assert_eq!(body["reason"], "Unauthorized", "{body}");
            }
            if *role == "any" {
                continue;
            }
            let below: &[&str] = match *role {
                "viewer" => &[NOBODY],
                "operator" => &[NOBODY, VIEWER],
                _ => &[NOBODY, VIEWER, OPERATOR],
            };
            for token in below {
                let (code, body) = env.call(method, path, Some(token), None).await;
                assert_eq!(code, 403, "{method} {path} with {token}: {body}");
                assert_eq!(body["requiredRole"], *role, "{body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("needs the role {role}")),
                    "{body}"
                );
            }
        }
        // open: the probes; the metrics need a token unless configured otherwise
        for open in ["/healthz", "/readyz"] {
            let (code, _) = env.call("GET", open, None, None).await;
            assert_eq!(code, 200, "{open}");
        }
        assert_eq!(env.call("GET", "/metrics", None, None).await.0, 401);
        let me = env.get("/api/v1/whoami", OPERATOR).await;
        assert_eq!(
            (me["name"].as_str(), me["role"].as_str(), me["via"].as_str()),
            (Some("olga"), Some("operator"), Some("static-token"))
        );
    });
}

#[test]
fn the_list_filters_counts_and_pages_on_the_server() {
    run(async {
        let env = Env::start().await;
        let env = &env;
        env.application("web", "web", json!({"team": "pay"})).await;
        env.application(
            "web-canary",
            "web",
            json!({"team": "pay", "tier": "canary"}),
        )
        .await;
        env.application("broken", "missing-path", json!({"team": "search"}))
            .await;
        // nothing is synced without a request: all compare and report OutOfSync, but for
        // the one whose path does not exist
        env.until_row("web", "sync", "OutOfSync").await;
        env.until_row("web-canary", "sync", "OutOfSync").await;
        let broken = env.until_row("broken", "sync", "Unknown").await;
        assert!(
            !broken["message"].as_str().unwrap_or("").is_empty(),
            "{broken}"
        );

        let all = env.get("/api/v1/applications", VIEWER).await;
        let names = |l: &Value| -> Vec<String> {
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            names(&all),
            ["broken", "web", "web-canary"],
            "sorted by namespace and name"
        );
        assert_eq!(all["total"], 3);
        assert_eq!(all["counts"]["total"], 3);
        assert_eq!(all["counts"]["sync"]["OutOfSync"], 2);
        assert_eq!(all["counts"]["sync"]["Unknown"], 1);
        assert_eq!(all["emergencyStop"], false);
        let row = &all["items"][1];
        assert_eq!(row["repoURL"], env.git_url());
        assert_eq!(row["revision"]["short"].as_str().unwrap().len(), 7, "{row}");
        assert_eq!(row["suspended"], false);

        let l = env.get("/api/v1/applications?sync=OutOfSync", VIEWER).await;
        assert_eq!(names(&l), ["web", "web-canary"]);
        assert_eq!(l["counts"]["total"], 3, "counts ignore the state filters");
        let l = env
            .get("/api/v1/applications?label=team=pay,!tier", VIEWER)
            .await;
        assert_eq!(names(&l), ["web"]);
        let l = env.get("/api/v1/applications?q=CANARY", VIEWER).await;
        assert_eq!(names(&l), ["web-canary"]);
        let l = env
            .get(
                "/api/v1/applications?repo=env.git&namespace=apps&sort=-name&limit=2&page=2",
                VIEWER,
            )
            .await;
        assert_eq!(
            (names(&l), l["pages"].as_u64(), l["total"].as_u64()),
            (vec!["broken".to_string()], Some(2), Some(3))
        );
        let l = env
            .get("/api/v1/applications?namespace=elsewhere", VIEWER)
            .await;
        assert_eq!(l["total"], 0);

        for (q, field) in [
            ("sync=Fine", "sync"),
            ("limit=0", "limit"),
            ("page=zero", "page"),
            ("colour=red", "colour"),
            ("sort=size", "sort"),
        ] {
            let (code, body) = env
                .call(
                    "GET",
                    &format!("/api/v1/applications?{q}"),
                    Some(VIEWER),
                    None,
                )
                .await;
            assert_eq!(
                (code, body["field"].as_str()),
                (400, Some(field)),
                "{q}: {body}"
            );
        }
        let (code, body) = env
            .call("GET", "/api/v1/applications/apps/nope", Some(VIEWER), None)
            .await;
        assert_eq!(code, 404, "{body}");
    });
}

#[test]
fn one_application_shows_its_tree_and_a_diff_that_masks_secret_values() {
    run(async {
        let env = Env::start().await;
        let env = &env;
        env.application("web", "web", json!({})).await;
        env.until_row("web", "sync", "OutOfSync").await;
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/sync",
                Some(OPERATOR),
                Some(json!({"prune": true})),
            )
            .await;
        assert_eq!(code, 202, "{body}");
        env.until_row("web", "sync", "Synced").await;

        let detail = env.get("/api/v1/applications/apps/web", VIEWER).await;
        assert_eq!(detail["summary"]["sync"], "Synced");
        let resources = detail["resources"].as_array().unwrap();
        let kinds: Vec<&str> = resources
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"Secret") && kinds.contains(&"ConfigMap"),
            "{kinds:?}"
        );
        // what the cluster's controllers made: a ReplicaSet owned by the Deployment, its Pod
        let dep = resources
            .iter()
            .find(|r| r["kind"] == "Deployment")
            .unwrap();
        assert_eq!(dep["exists"], true);
        let dep = eventually("the ReplicaSet and its Pod in the tree", || async move {
            let detail = env.get("/api/v1/applications/apps/web", VIEWER).await;
            let dep = detail["resources"]
                .as_array()?
                .iter()
                .find(|r| r["kind"] == "Deployment")?
                .clone();
            (dep["children"][0]["children"][0]["kind"] == "Pod").then_some(dep)
        })
        .await;
        let rs_node = &dep["children"][0];
        let rs_name = rs_node["name"].as_str().unwrap();
        assert_eq!(rs_node["kind"], "ReplicaSet", "{dep}");
        assert!(rs_name.starts_with("web-"), "{dep}");
        let pod = rs_node["children"][0]["name"].as_str().unwrap();
        assert!(pod.starts_with(&format!("{rs_name}-")), "{rs_node}");

        // in sync: no diff, both manifests there, the Secret's value masked
        let path = "/api/v1/applications/apps/web/resource?kind=Secret&name=creds&namespace=web";
        let view = env.get(path, VIEWER).await;
        assert_eq!(view["change"], "unchanged", "{view}");
        assert!(
            view["live"].is_object() && view["desired"].is_object(),
            "{view}"
        );
        // someone edits the Secret in the cluster: the diff says it changed, never what to
        apply(&env.client, json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "web"},
            "stringData": {"password": "edited-by-hand-42"},
        }))
        .await;
        let view = eventually("the edit to show", || async move {
            let v = env.get(path, VIEWER).await;
            (v["change"] == "update").then_some(v)
        })
        .await;
        let text = view.to_string();
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        for leaked in [
            SECRET_VALUE.to_string(),
            b64(SECRET_VALUE),
            "edited-by-hand-42".into(),
            b64("edited-by-hand-42"),
        ] {
            assert!(!text.contains(&leaked), "{leaked} leaked: {text}");
        }
        assert!(
            view["diff"].as_str().unwrap().contains("(changed)"),
            "{view}"
        );

        let view = env.get("/api/v1/applications/apps/web/resource?kind=Deployment&group=apps&name=web&namespace=web", VIEWER).await;
        assert_eq!(
            view["desired"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
        let (code, body) = env
            .call(
                "GET",
                "/api/v1/applications/apps/web/resource?kind=Secret",
                Some(VIEWER),
                None,
            )
            .await;
        assert_eq!(
            (code, body["field"].as_str()),
            (400, Some("name")),
            "{body}"
        );
        let (code, body) = env
            .call(
                "GET",
                "/api/v1/applications/apps/web/resource?kind=Secret&name=other&namespace=web",
                Some(VIEWER),
                None,
            )
            .await;
        assert_eq!(code, 404, "{body}");

        let history = env
            .get("/api/v1/applications/apps/web/history", VIEWER)
            .await;
        assert_eq!(history[0]["trigger"], "manual", "{history}");
        let events = env
            .get("/api/v1/applications/apps/web/events", VIEWER)
            .await;
        assert!(
            events
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["reason"] == "Synced"),
            "{events}"
        );
    });
}

#[test]
fn each_action_works_and_its_audit_record_names_the_user() {
    run(async {
        let env = Env::start().await;
        let env = &env;
        env.application("web", "web", json!({})).await;
        env.until_row("web", "sync", "OutOfSync").await;

        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/sync",
                Some(OPERATOR),
                Some(json!({"prune": "yes"})),
            )
            .await;
        assert_eq!(
            (code, body["field"].as_str()),
            (400, Some("prune")),
            "{body}"
        );
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/sync",
                Some(OPERATOR),
                Some(json!({"revison": "main"})),
            )
            .await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/sync",
                Some(OPERATOR),
                None,
            )
            .await;
        assert_eq!(code, 202, "{body}");
        let first = env.repo.head();
        env.until_row("web", "sync", "Synced").await;
        let rec = env.audit("sync", "olga").await;
        assert_eq!(rec["toRevision"], first.as_str());

        // a second revision, synced, then rolled back to the first
        env.repo.write("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  colour: green\n");
        let second = env.repo.commit("green");
        let second = &second;
        let (code, _) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/refresh",
                Some(OPERATOR),
                None,
            )
            .await;
        assert_eq!(code, 202);
        env.audit("refresh", "olga").await;
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/sync",
                Some(OPERATOR),
                Some(json!({"revision": second})),
            )
            .await;
        assert_eq!(code, 202, "{body}");
        eventually("the second revision", || async move {
            let h = env
                .get("/api/v1/applications/apps/web/history", VIEWER)
                .await;
            (h[0]["revision"] == second.as_str() && h[0]["result"] == "Succeeded").then_some(())
        })
        .await;
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/rollback",
                Some(OPERATOR),
                Some(json!({"id": 999})),
            )
            .await;
        assert_eq!((code, body["field"].as_str()), (400, Some("id")), "{body}");
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/rollback",
                Some(OPERATOR),
                Some(json!({})),
            )
            .await;
        assert_eq!(code, 202, "{body}");
        assert_eq!(body["revision"], first.as_str());
        let rec = env.audit("rollback", "olga").await;
        assert_eq!(rec["toRevision"], first.as_str());

        // suspend and resume: the field manager names the user, the controller records it
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/suspend",
                Some(OPERATOR),
                None,
            )
            .await;
        assert_eq!(
            (code, body["suspended"].as_bool()),
            (200, Some(true)),
            "{body}"
        );
        env.until_row("web", "suspended", true).await;
        env.audit("suspend", "capstan:olga").await;
        let (code, _) = env
            .call(
                "POST",
                "/api/v1/applications/apps/web/resume",
                Some(OPERATOR),
                None,
            )
            .await;
        assert_eq!(code, 200);
        env.audit("unsuspend", "capstan:olga").await;

        // the emergency stop, with a reason, by an admin
        let (code, body) = env
            .call(
                "POST",
                "/api/v1/emergency-stop",
                Some(ADMIN),
                Some(json!({"reason": "incident 42"})),
            )
            .await;
        assert_eq!(
            (code, body["stopped"].as_bool(), body["by"].as_str()),
            (200, Some(true), Some("alice")),
            "{body}"
        );
        let rec = env.audit("stop", "alice").await;
        assert_eq!(rec["details"], "incident 42");
        eventually("the list to show the stop", || async move {
            let l = env.get("/api/v1/applications", VIEWER).await;
            (l["emergencyStop"] == true && l["items"][0]["emergencyStop"] == true).then_some(())
        })
        .await;
        let state = env.get("/api/v1/emergency-stop", VIEWER).await;
        assert_eq!(state["reason"], "incident 42");
        let (code, body) = env
            .call(
                "DELETE",
                "/api/v1/emergency-stop",
                Some(ADMIN),
                Some(json!({"reason": "resolved"})),
            )
            .await;
        assert_eq!(
            (code, body["stopped"].as_bool()),
            (200, Some(false)),
            "{body}"
        );
        env.audit("resume", "alice").await;
        let own = env.get("/api/v1/applications/apps/web/audit", VIEWER).await;
        let actions: Vec<&str> = own
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.contains(&"rollback") && actions.contains(&"refresh"),
            "{actions:?}"
        );
        assert!(
            !actions.contains(&"stop"),
            "cluster-wide records are not the Application's: {actions:?}"
        );
    });
}

#[test]
fn a_service_account_token_is_checked_with_a_token_review() {
    run(async {
        let env = Env::start().await;
        let env = &env;
        apply(&env.client, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dashboard", "namespace": "ci"}})).await;
        let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), "ci");
        let issued = sas
            .create_token_request(
                "dashboard",
                &PostParams::default(),
                &TokenRequest {
                    spec: Some(TokenRequestSpec {
                        expiration_seconds: Some(3600),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let token = issued.status.unwrap().token.unwrap();

        // the kubeconfig's own token (what `capstan up` writes): a superuser, admin
        let admin = env
            ._cluster
            .kubeconfig_yaml()
            .lines()
            .find_map(|l| l.trim().strip_prefix("token: "))
            .expect("the kubeconfig has a token")
            .trim_matches('"')
            .to_string();
        let me = env.get("/api/v1/whoami", &admin).await;
        assert_eq!(
            (me["name"].as_str(), me["role"].as_str()),
            (Some("kubernetes-admin"), Some("admin")),
            "{me}"
        );

        let me = env.get("/api/v1/whoami", &token).await;
        assert_eq!(me["name"], "system:serviceaccount:ci:dashboard", "{me}");
        assert_eq!(me["via"], "token-review");
        assert_eq!(
            me["role"], "viewer",
            "bound through the group system:serviceaccounts:ci"
        );
        assert!(
            me["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "system:serviceaccounts:ci"),
            "{me}"
        );
        let l = env.get("/api/v1/applications", &token).await;
        assert_eq!(l["total"], 0);
        let (code, body) = env
            .call("POST", "/api/v1/emergency-stop", Some(&token), None)
            .await;
        assert_eq!(
            (code, body["requiredRole"].as_str()),
            (403, Some("admin")),
            "{body}"
        );

        // a token of a ServiceAccount that is gone (and a forged one) authenticates nobody
        // once the cached review has expired; a forged one never does
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        let (code, body) = env
            .call("GET", "/api/v1/applications", Some(&forged), None)
            .await;
        assert_eq!(code, 401, "{body}");
        // the ServiceAccount token may not use the cluster itself: the embedded server,
        // like a cluster with no RoleBinding for it, refuses
        let kc = kube::config::Kubeconfig::from_yaml(env._cluster.kubeconfig_yaml()).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        config.auth_info.token = Some(token.clone().into());
        let sa_client = kube::Client::try_from(config).unwrap();
        let err = Api::<ServiceAccount>::namespaced(sa_client, "ci")
            .list(&Default::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 403),
            "{err:?}"
        );
    });
}

#[test]
fn the_metrics_need_a_viewer_token_when_so_configured() {
    run(async {
        let env = Env::start_with(capstan_server::api::ApiOptions {
            metrics_auth: true,
            ..Default::default()
        })
        .await;
        let env = &env;
        let (code, _) = env.call("GET", "/metrics", None, None).await;
        assert_eq!(code, 401);
        let (code, body) = env.call("GET", "/metrics", Some(NOBODY), None).await;
        assert_eq!(
            (code, body["requiredRole"].as_str()),
            (403, Some("viewer")),
            "{body}"
        );
        let (code, _) = env.call("GET", "/metrics", Some(VIEWER), None).await;
        assert_eq!(code, 200);
        for open in ["/healthz", "/readyz"] {
            let (code, _) = env.call("GET", open, None, None).await;
            assert_eq!(code, 200, "{open}");
        }
    });
}
