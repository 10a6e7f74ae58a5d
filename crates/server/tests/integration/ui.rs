//! The web UI in a real browser: Debian's headless chromium driven through its
//! chromedriver (testkit's `Browser`), against the embedded API server, a git server on
//! loopback holding the bundled example (`examples/guestbook`), the controller and its
//! HTTP server. The screenshots in `docs/` are taken here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use capstan_testkit::{Browser, GitServer, TestCluster, TestRepo};
use kube::api::Api;
use serde_json::{Value, json};

use super::api::{apply, run};

const ADMIN: &str = "alice-token-0123456789";
const OPERATOR: &str = "olga-token-0123456789";
const VIEWER: &str = "vic-token-0123456789";
const SECRET_VALUE: &str = "s3cr3t-hunter2";
const XSS: &str = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">";
const WAIT: Duration = Duration::from_secs(45);

struct Env {
    _cluster: TestCluster,
    client: kube::Client,
    _git: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    _state: tempfile::TempDir,
    base: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/guestbook")
}

fn docs(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(file)
}

impl Env {
    /// The example guestbook (and a Secret) in a repository on a git server, and the
    /// Application `capstan-system/guestbook` of it without automated sync.
    async fn start() -> Env {
        let cluster = TestCluster::start();
        let client = cluster.client().await;
        capstan_controller::install::install_crds(&client)
            .await
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "env.git");
        for entry in std::fs::read_dir(example()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            repo.write(
                format!("guestbook/{name}"),
                std::fs::read_to_string(&path).unwrap(),
            );
        }
        repo.write(
            "guestbook/secret.yaml",
            format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: guestbook-db\nstringData:\n  password: {SECRET_VALUE}\n"),
        );
        repo.commit("guestbook: the example, and its database password");
        let git = GitServer::start(root.path(), None).unwrap();
        apply(&client, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "capstan-system"}})).await;
        apply(
            &client,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "capstan-api-tokens", "namespace": "capstan-system"},
                "stringData": {"alice": ADMIN, "olga": OPERATOR, "vic": VIEWER},
            }),
        )
        .await;
        apply(&client, json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "capstan-rbac", "namespace": "capstan-system"},
            "data": {"policy.yaml": "bindings:\n  - role: admin\n    users: [alice]\n  - role: operator\n    users: [olga]\n  - role: viewer\n    users: [vic]\n"},
        }))
        .await;
        let (base, tasks, state) = super::api::serve(&client, Default::default()).await;
        let env = Env {
            _cluster: cluster,
            client,
            repo,
            _root: root,
            _state: state,
            base,
            tasks,
            _git: git,
        };
        let url = env.git_url();
        apply(&env.client, json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "guestbook", "namespace": "capstan-system",
                "labels": {"team": "web"}},
            "spec": {"source": {"repoURL": url, "path": "guestbook"}, "destination": {"namespace": "guestbook"}},
        }))
        .await;
        let http = capstan_testkit::client::http_async();
        let ready = format!("{}/readyz", env.base);
        let deadline = Instant::now() + WAIT;
        while !http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
        {
            assert!(Instant::now() < deadline, "the server never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        env
    }

    fn git_url(&self) -> String {
        self._git.url("env.git")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser logged in with `token` through the login form.
    async fn browser(&self, token: &str) -> Browser {
        let b = Browser::start().await;
        b.goto(&self.url("/")).await;
        // not logged in: the list sends to the login page
        b.wait_for_text("Log in to Capstan", WAIT).await;
        b.fill("#token", token).await;
        b.click("section.login button[type=submit]").await;
        b.wait_for_text("Applications", WAIT).await;
        assert!(
            b.has("#live").await,
            "after the login the list is shown: {}",
            b.text().await
        );
        b
    }

    async fn app(&self) -> Value {
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            "capstan-system",
            &kube::discovery::ApiResource {
                group: "capstan.dev".into(),
                version: "v1alpha1".into(),
                api_version: "capstan.dev/v1alpha1".into(),
                kind: "Application".into(),
                plural: "applications".into(),
            },
        );
        serde_json::to_value(api.get("guestbook").await.unwrap()).unwrap()
    }

    /// Wait until the Application's status has `pointer` = `value`.
    async fn until_status(&self, pointer: &str, value: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let app = self.app().await;
            if app.pointer(pointer).and_then(Value::as_str) == Some(value) {
                return app;
            }
            assert!(
                Instant::now() < deadline,
                "the Application never had {pointer} = {value}: {}",
                app["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Wait until `script`'s string value holds every one of `needles`.
async fn until(b: &Browser, script: &str, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = b.eval(script).await;
        let text = v.as_str().unwrap_or_default().to_string();
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{script} never showed {needles:?}; it shows:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SUMMARY: &str = "return (document.querySelector('section.summary h1') || {}).innerText || ''";
const ROW: &str = "return (document.querySelector('tr[data-app=\"capstan-system/guestbook\"]') || {}).innerText || ''";

/// Open an action's form and confirm it.
async fn act(b: &Browser, action: &str) {
    b.click(&format!("#act-{action} > summary")).await;
    b.click(&format!("#act-{action} button[type=submit]")).await;
}

#[test]
fn the_example_syncs_from_the_sync_button_and_a_new_commit_shows_up_live() {
    run(async {
        let env = Env::start().await;
        let b = env.browser(OPERATOR).await;
        // the list: the example, not synced yet (no automated sync)
        until(&b, ROW, &["guestbook", "OutOfSync"]).await;
        b.click("tr[data-app=\"capstan-system/guestbook\"] td.name a")
            .await;
        until(&b, SUMMARY, &["guestbook", "OutOfSync"]).await;

        // pressing Sync (and confirming) syncs; the page follows without a reload
        act(&b, "sync").await;
        b.wait_for_text("Sync requested", WAIT).await;
        b.eval("window.__stay = 1; return null").await;
        until(&b, SUMMARY, &["Synced", "Healthy"]).await;
        assert_eq!(b.eval("return window.__stay || 0").await, json!(1));
        let synced = env.until_status("/status/sync/status", "Synced").await;
        assert_eq!(
            synced["status"]["operationState"]["trigger"], "manual",
            "{}",
            synced["status"]
        );
        let first = env.repo.head();
        until(
            &b,
            "return document.querySelector('section.history').innerText",
            &[&first[..7], "manual", "Succeeded", "created: 5", "by olga"],
        )
        .await;
        // the example's objects in the tree, with what the cluster's controllers made
        b.goto(&env.url("/applications/capstan-system/guestbook"))
            .await;
        b.client.set_window_size(1400, 1250).await.unwrap();
        let tree = until(
            &b,
            "return document.querySelector('section.tree').innerText",
            &[
                "Deployment",
                "ReplicaSet",
                "Pod",
                "guestbook-",
                "Service",
                "ConfigMap",
                "guestbook-config",
            ],
        )
        .await;
        assert!(tree.contains("Pod"), "{tree}");
        b.screenshot(&docs("ui-application.png")).await;
        b.client.set_window_size(1400, 900).await.unwrap();

        // the list shows it Synced and Healthy, with the commit, and the counts
        b.goto(&env.url("/")).await;
        let row = until(&b, ROW, &["Synced", "Healthy", &first[..7]]).await;
        assert!(row.contains("guestbook: the example"), "{row}");
        let counts = until(
            &b,
            "return document.getElementById('counts').innerText",
            &["1 Applications", "1 Synced", "1 Healthy"],
        )
        .await;
        assert!(counts.contains("0 OutOfSync"), "{counts}");
        // two more, for the picture: one not synced yet, one whose path is not in Git
        for (name, path) in [("guestbook-staging", "guestbook"), ("payments", "payments")] {
            apply(&env.client, json!({
                "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
                "metadata": {"name": name, "namespace": "capstan-system", "labels": {"team": "web"}},
                "spec": {"source": {"repoURL": env.git_url(), "path": path}, "destination": {"namespace": format!("{name}-ns")}},
            }))
            .await;
        }
        until(
            &b,
            "return document.getElementById('counts').innerText",
            &["3 Applications", "1 Synced", "1 OutOfSync", "1 Unknown"],
        )
        .await;
        until(
            &b,
            "return document.querySelector('table.apps').innerText",
            &["payments", "guestbook-staging", "OutOfSync"],
        )
        .await;
        b.screenshot(&docs("ui-list.png")).await;
        // the filters are the server's: the OutOfSync one only
        b.goto(&env.url("/?sync=OutOfSync")).await;
        until(
            &b,
            "return document.querySelector('table.apps').innerText",
            &["guestbook-staging"],
        )
        .await;
        assert_eq!(
            b.eval("return document.querySelectorAll('table.apps tbody tr').length")
                .await,
            json!(1)
        );

        // a new commit: Refresh shows it (OutOfSync at the new revision) live
        b.goto(&env.url("/applications/capstan-system/guestbook"))
            .await;
        env.repo.write(
            "guestbook/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook-config\ndata:\n  greeting: \"Hello again\"\n  color: \"green\"\n",
        );
        let second = env.repo.commit("guestbook: green");
        act(&b, "refresh").await;
        b.wait_for_text("Refresh requested", WAIT).await;
        let summary = until(&b, SUMMARY, &["OutOfSync"]).await;
        assert!(!summary.contains("Synced "), "{summary}");
        until(
            &b,
            "return document.getElementById('revision').innerText",
            &[&second[..7]],
        )
        .await;
        // and a change made elsewhere (the CLI, another user) appears without a reload
        b.eval("window.__stay = 2; return null").await;
        let (code, body) = {
            let http = capstan_testkit::client::http_async();
            let r = http
                .post(env.url("/api/v1/applications/capstan-system/guestbook/sync"))
                .bearer_auth(OPERATOR)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        assert_eq!(code, 202, "{body}");
        until(&b, SUMMARY, &["Synced", "Healthy"]).await;
        until(
            &b,
            "return document.querySelector('section.history').innerText",
            &["guestbook: green", &second[..7]],
        )
        .await;
        assert_eq!(b.eval("return window.__stay || 0").await, json!(2));

        // rollback to the first sync, from its history row
        b.click("#rollback-1 > summary").await;
        b.click("#rollback-1 button[type=submit]").await;
        b.wait_for_text("Rollback requested", WAIT).await;
        until(
            &b,
            "return document.getElementById('revision').innerText",
            &[&first[..7]],
        )
        .await;
        let back = env
            .until_status("/status/operationState/trigger", "rollback")
            .await;
        assert_eq!(
            back["status"]["sync"]["revision"],
            first.as_str(),
            "{}",
            back["status"]
        );
        until(
            &b,
            "return document.querySelector('section.history').innerText",
            &["rollback"],
        )
        .await;

        // suspend and resume
        act(&b, "suspend").await;
        b.wait_for_text("Suspended: no syncs until resumed", WAIT)
            .await;
        until(&b, SUMMARY, &["suspended"]).await;
        assert_eq!(env.app().await["spec"]["suspend"], true);
        act(&b, "resume").await;
        b.wait_for_text("Resumed.", WAIT).await;
        assert!(
            !until(&b, SUMMARY, &["guestbook"])
                .await
                .contains("suspended")
        );
        assert_eq!(
            env.app().await["spec"]
                .get("suspend")
                .cloned()
                .unwrap_or(json!(false)),
            false
        );
    });
}

#[test]
fn the_emergency_stop_is_a_banner_on_every_page_and_holds_syncs() {
    run(async {
        let env = Env::start().await;
        let b = env.browser(ADMIN).await;
        until(&b, ROW, &["OutOfSync"]).await;
        b.click("#pull-stop > summary").await;
        b.fill(
            "#pull-stop input[name=reason]",
            "incident 42: <b>db</b> migration",
        )
        .await;
        b.click("#pull-stop button[type=submit]").await;
        b.wait_for_text("Emergency stop: every sync is held.", WAIT)
            .await;
        // image automation, for its page: a repository whose registry is not there
        apply(
            &env.client,
            json!({
                "apiVersion": "capstan.dev/v1alpha1", "kind": "ImageRepository",
                "metadata": {"name": "guestbook", "namespace": "capstan-system"},
                "spec": {"image": "127.0.0.1:9/guestbook", "interval": "1h", "insecure": true},
            }),
        )
        .await;
        apply(&env.client, json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": "guestbook-stable", "namespace": "capstan-system"},
            "spec": {"imageRepositoryRef": {"name": "guestbook"}, "policy": {"semver": {"range": ">=1.0.0"}}},
        }))
        .await;
        for path in [
            "/",
            "/applications/capstan-system/guestbook",
            "/audit",
            "/images",
        ] {
            b.goto(&env.url(path)).await;
            let banner = until(
                &b,
                "return (document.getElementById('emergency-stop') || {}).innerText || ''",
                &[
                    "Emergency stop",
                    "alice",
                    "incident 42: <b>db</b> migration",
                ],
            )
            .await;
            assert!(
                banner.contains("Lift the emergency stop"),
                "{path}: {banner}"
            );
        }
        let images = until(
            &b,
            "return document.getElementById('live').innerText",
            &[
                "capstan-system/guestbook",
                "127.0.0.1:9/guestbook",
                "capstan-system/guestbook-stable",
                ">=1.0.0",
            ],
        )
        .await;
        assert!(
            images.contains("Ready False"),
            "the failed scan shows: {images}"
        );
        // a sync asked for now is held: the controller looks at it, and does not sync
        let before = env.app().await["status"]["reconciledAt"].clone();
        b.goto(&env.url("/applications/capstan-system/guestbook"))
            .await;
        act(&b, "sync").await;
        b.wait_for_text("Sync requested", WAIT).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let app = env.app().await;
            if app["status"]["reconciledAt"] != before
                && app["metadata"]["annotations"]
                    .get("capstan.dev/sync")
                    .is_some()
            {
                assert_eq!(
                    app["status"]["sync"]["status"], "OutOfSync",
                    "{}",
                    app["status"]
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the controller never looked at the held sync: {}",
                app["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(env.app().await["status"]["sync"]["status"], "OutOfSync");
        // lifting it lets the held sync run
        b.click("#lift-stop > summary").await;
        b.click("#lift-stop button[type=submit]").await;
        env.until_status("/status/sync/status", "Synced").await;
        until(&b, SUMMARY, &["Synced"]).await;
        assert!(!b.has("#emergency-stop").await);
        // both switches are in the audit log, by alice
        b.goto(&env.url("/audit?actor=alice")).await;
        let audit = until(
            &b,
            "return document.querySelector('table.audit').innerText",
            &["stop", "resume", "alice"],
        )
        .await;
        assert!(audit.contains("*"), "{audit}");
    });
}

#[test]
fn a_viewer_has_no_buttons_and_forms_without_the_session_token_or_from_elsewhere_are_refused() {
    run(async {
        let env = Env::start().await;
        apply(&env.client, json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "guestbook", "namespace": "capstan-system"},
            "spec": {"source": {"repoURL": env.git_url(), "path": "guestbook"}, "destination": {"namespace": "guestbook"}, "dependsOn": ["database"]},
        }))
        .await;
        let b = env.browser(VIEWER).await;
        until(&b, ROW, &["guestbook"]).await;
        assert!(!b.has("#pull-stop").await, "a viewer has no stop button");
        b.goto(&env.url("/applications/capstan-system/guestbook"))
            .await;
        until(&b, SUMMARY, &["guestbook"]).await;
        until(
            &b,
            "return document.querySelector('dd.depends').innerText",
            &["database", "(not found)"],
        )
        .await;
        assert!(
            !b.has("details.action").await,
            "a viewer has no action buttons"
        );
        assert!(!b.has("form[action$=sync]").await);
        // and the server refuses the action anyway, with the viewer's own CSRF token
        let csrf = b
            .eval("return document.querySelector('input[name=_csrf]').value")
            .await;
        let status = b
            .eval(&format!(
                "return fetch('/applications/capstan-system/guestbook/sync', {{method: 'POST', headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: '_csrf={}&confirm=yes'}}).then(r => r.status)",
                csrf.as_str().unwrap()
            ))
            .await;
        assert_eq!(status, json!(403));
        let page = b
            .eval("return fetch('/applications/capstan-system/guestbook/sync', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: '_csrf=x&confirm=yes'}).then(r => r.text())")
            .await;
        assert!(page.as_str().unwrap().contains("CSRF"), "{page}");

        // an operator's session: no CSRF token, a forged one, or a form from another site: 403
        let http = capstan_testkit::client::http_async();
        let cookie = format!("capstan_session={OPERATOR}");
        let csrf = {
            let page = http
                .get(env.url("/applications/capstan-system/guestbook"))
                .header("Cookie", &cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let at = page.find("name=\"_csrf\" value=\"").unwrap() + 20;
            page[at..at + 32].to_string()
        };
        let post = |body: String, origin: Option<&'static str>| {
            let mut r = http
                .post(env.url("/applications/capstan-system/guestbook/sync"))
                .header("Cookie", &cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body);
            if let Some(o) = origin {
                r = r.header("Origin", o);
            }
            async move { r.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(post("confirm=yes".into(), None).await, 403);
        assert_eq!(
            post(format!("_csrf={}&confirm=yes", "0".repeat(32)), None).await,
            403
        );
        assert_eq!(
            post(
                format!("_csrf={csrf}&confirm=yes"),
                Some("http://evil.example")
            )
            .await,
            403
        );
        assert_eq!(
            post(format!("_csrf={csrf}"), None).await,
            400,
            "not confirmed"
        );
        let app = env.app().await;
        assert!(
            app["metadata"]["annotations"]
                .get("capstan.dev/sync")
                .is_none(),
            "nothing was asked for: {}",
            app["metadata"]
        );
        // the operator's own form does it
        assert_eq!(post(format!("_csrf={csrf}&confirm=yes"), None).await, 303);
        // (the sync is asked for; it waits for its dependency)
        let app = env
            .until_status("/status/conditions/0/reason", "WaitingForDependencies")
            .await;
        assert!(
            app["metadata"]["annotations"]
                .get("capstan.dev/sync")
                .is_some(),
            "{}",
            app["metadata"]
        );
        // a bad token gets the login page with a message, not a session
        let r = http
            .post(env.url("/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("token=wrong&next=/")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert!(r.headers().get("set-cookie").is_none());
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("neither a Capstan API token")
        );
    });
}

#[test]
fn text_from_git_and_the_cluster_is_escaped_and_the_diff_masks_secret_values() {
    run(async {
        let env = Env::start().await;
        env.repo.write(
            "guestbook/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook-config\ndata:\n  greeting: \"<b>hi</b>\"\n",
        );
        env.repo
            .commit("the guestbook <b>example</b> & friends <script>window.__xss = 3</script>");
        apply(&env.client, json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "guestbook", "namespace": "capstan-system",
                "annotations": {"capstan.dev/note": XSS}},
            "spec": {"source": {"repoURL": env.git_url(), "path": "guestbook"}, "destination": {"namespace": "guestbook"}},
        }))
        .await;
        let b = env.browser(OPERATOR).await;
        b.goto(&env.url("/applications/capstan-system/guestbook"))
            .await;
        // the annotation is shown as text, and nothing in it ran
        let text = b.wait_for_text("capstan.dev/note", WAIT).await;
        assert!(text.contains(XSS), "{text}");
        assert_eq!(b.eval("return window.__xss || 0").await, json!(0));
        act(&b, "sync").await;
        until(&b, SUMMARY, &["Synced"]).await;
        // the commit message with markup is text in the history
        let history = until(
            &b,
            "return document.querySelector('section.history').innerText",
            &["the guestbook <b>example</b> & friends <script>window.__xss = 3</script>"],
        )
        .await;
        assert!(!history.is_empty());
        assert_eq!(
            b.eval("return document.querySelectorAll('section.history b').length")
                .await,
            json!(0)
        );
        assert_eq!(b.eval("return window.__xss || 0").await, json!(0));

        // the Secret's page: changed in the cluster, the diff shows the change masked
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(env.client.clone(), "guestbook");
        let mut s = secrets.get("guestbook-db").await.unwrap();
        s.data = Some(
            [(
                "password".to_string(),
                k8s_openapi::ByteString(b"changed-by-hand-777".to_vec()),
            )]
            .into_iter()
            .collect(),
        );
        s.metadata.managed_fields = None;
        secrets
            .replace("guestbook-db", &Default::default(), &s)
            .await
            .unwrap();
        b.goto(&env.url(
            "/applications/capstan-system/guestbook/resource?group=&kind=Secret&namespace=guestbook&name=guestbook-db",
        ))
        .await;
        let page = b.wait_for_text("Diff (live → desired)", WAIT).await;
        let source = b.eval("return document.documentElement.outerHTML").await;
        let source = source.as_str().unwrap();
        for secret in [
            SECRET_VALUE,
            "changed-by-hand-777",
            "czNjcjN0LWh1bnRlcjI",
            "Y2hhbmdlZC1ieS1oYW5kLTc3Nw",
        ] {
            assert!(!source.contains(secret), "the page shows {secret}:\n{page}");
        }
        assert!(
            b.has("#diff .add").await && b.has("#diff .del").await,
            "{page}"
        );
        assert!(page.contains("password"), "{page}");

        // the policy every page carries
        let r = capstan_testkit::client::http_async()
            .get(env.url("/login"))
            .send()
            .await
            .unwrap();
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(r.headers()["x-frame-options"], "DENY");
    });
}
