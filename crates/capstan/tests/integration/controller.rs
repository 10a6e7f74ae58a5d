//! End-to-end: `capstan controller` processes keeping Applications in sync, against
//! the embedded API server and a git server on loopback, both started by the test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::{GitServer, TestCluster, TestRepo};
use serde_json::Value;

struct Env {
    cluster: TestCluster,
    server: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    state: tempfile::TempDir,
}

struct Controller {
    child: Child,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    fn new() -> Self {
        Self::with_cluster(TestCluster::start())
    }

    fn with_cluster(cluster: TestCluster) -> Self {
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "env.git");
        let server = GitServer::start(root.path(), None).unwrap();
        Env {
            cluster,
            server,
            repo,
            _root: root,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn controller(&self, extra: &[&str]) -> Controller {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.arg("controller")
            // side by side with other tests: a free port for the server
            .env("CAPSTAN_LISTEN", "127.0.0.1:0")
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .arg("--state-dir")
            .arg(self.state.path())
            .args(extra)
            .env("CAPSTAN_LOG", "capstan_controller=debug")
            .env("CAPSTAN_HELM", capstan_testkit::tools::helm())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.state.path().join("controller.log"))
                    .unwrap(),
            ));
        Controller {
            child: cmd.spawn().expect("capstan controller starts"),
        }
    }

    fn capstan(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path());
        capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
    }

    /// Create an Application for `path` in namespace `apps`, targeting namespace `target`.
    fn application(&self, name: &str, path: &str, target: &str, extra_spec: &str) {
        self.cluster
            .apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
        let yaml = format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  source:\n    repoURL: {}\n    path: {path}\n  destination:\n    namespace: {target}\n{extra_spec}",
            self.server.url("env.git")
        );
        self.cluster.apply(&yaml);
    }

    fn app(&self, name: &str) -> Value {
        let out =
            self.cluster
                .kubectl_ok(&["get", "applications", name, "-n", "apps", "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }

    /// `kubectl patch applications NAME -n apps --type=merge -p PATCH`.
    fn patch_app(&self, name: &str, patch: &str) -> std::process::Output {
        self.cluster.kubectl(&[
            "patch",
            "applications",
            name,
            "-n",
            "apps",
            "--type=merge",
            "-p",
            patch,
        ])
    }

    fn try_kubectl(&self, args: &[&str]) -> Option<String> {
        let o = self.cluster.kubectl(args);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("controller.log")).unwrap_or_default()
    }

    /// Poll until `check` holds; on timeout fail with `what` and the controller log.
    fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\ncontroller log:\n{}",
            self.log()
        );
    }
}

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n";
const AUTOMATED: &str =
    "  interval: 2s\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n";

/// A Deployment in wave 1: the sync waits for its (simulated) rollout before wave 2.
const SLOW_DEPLOYMENT_WAVE_1: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: slow\n  annotations:\n    capstan.dev/sync-wave: \"1\"\nspec:\n  selector:\n    matchLabels: {app: slow}\n  template:\n    metadata:\n      labels: {app: slow}\n    spec:\n      containers:\n      - {name: c, image: nginx:1.27}\n";

fn cm_value(e: &Env, name: &str) -> Option<String> {
    e.try_kubectl(&["get", "cm", name, "-n", "web", "-o", "jsonpath={.data.key}"])
}

/// `status.reconciledAt` (whole seconds) of Application `name`.
fn reconciled_at(e: &Env, name: &str) -> Option<String> {
    e.app(name)["status"]["reconciledAt"]
        .as_str()
        .map(str::to_string)
}

/// Ask for a refresh of `name` and wait until a controller has reconciled it (a
/// requested refresh always writes `reconciledAt`): proof that a controller was at
/// work before a test checks that nothing happened.
fn refreshed(e: &Env, name: &str) {
    let before = reconciled_at(e, name);
    std::thread::sleep(Duration::from_millis(1100)); // reconciledAt has whole seconds
    let out = e.capstan(&["refresh", name, "-n", "apps"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.eventually(
        &format!("{name} reconciled after a refresh"),
        Duration::from_secs(20),
        || reconciled_at(e, name) != before,
    );
}

fn cond<'a>(app: &'a Value, ty: &str) -> Option<&'a Value> {
    app.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

#[test]
fn a_commit_is_applied_within_the_interval_and_at_once_after_refresh() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.write("beat/cm.yaml", cm("beat", "x"));
    let first = e.repo.commit("first");
    let _c = e.controller(&[]);
    e.application("web", "web", "web", AUTOMATED);
    e.application("beat", "beat", "web", AUTOMATED);
    e.eventually("the first sync", Duration::from_secs(30), || {
        cm_value(&e, "settings").as_deref() == Some("one")
    });
    let app = e.app("web");
    assert_eq!(app["status"]["sync"]["status"], "Synced");
    assert_eq!(app["status"]["sync"]["revision"], first.as_str());
    assert_eq!(app["status"]["history"][0]["trigger"], "automated");
    let columns = e.kubectl(&["get", "applications", "-n", "apps"]);
    assert!(
        columns.contains("SYNC") && columns.contains("HEALTH") && columns.contains("REVISION"),
        "{columns}"
    );
    assert!(columns.contains(&first[..7]), "{columns}");

    e.repo.write("web/cm.yaml", cm("settings", "two"));
    e.repo.commit("second");
    e.eventually(
        "the next commit within the 2s interval",
        Duration::from_secs(20),
        || cm_value(&e, "settings").as_deref() == Some("two"),
    );

    // a long interval: only a refresh brings the next commit quickly
    assert!(
        e.patch_app("web", r#"{"spec":{"interval":"1h"}}"#)
            .status
            .success()
    );
    std::thread::sleep(Duration::from_secs(3));
    e.repo.write("web/cm.yaml", cm("settings", "three"));
    e.repo.commit("third");
    // the controller is at work in this window (another Application with a short
    // interval is reconciled again after the commit), but not on this one
    let beat = |e: &Env| {
        e.app("beat")["status"]["reconciledAt"]
            .as_str()
            .map(str::to_string)
    };
    let before = beat(&e);
    assert!(
        before.is_some(),
        "the other Application has been reconciled"
    );
    e.eventually(
        "the other Application reconciled after the commit",
        Duration::from_secs(15),
        || beat(&e) != before,
    );
    assert_eq!(
        cm_value(&e, "settings").as_deref(),
        Some("two"),
        "nothing of the new commit happens before the interval"
    );
    let out = e.capstan(&["refresh", "web", "-n", "apps"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.eventually("the refresh", Duration::from_secs(15), || {
        cm_value(&e, "settings").as_deref() == Some("three")
    });
}

#[test]
fn edits_in_the_cluster_are_healed_with_self_heal_and_only_reported_without() {
    let e = Env::new();
    e.repo.write("heal/cm.yaml", cm("healed", "git"));
    e.repo.write("report/cm.yaml", cm("reported", "git"));
    e.repo.commit("two apps");
    e.cluster.apply(NS);
    let _c = e.controller(&[]);
    e.application(
        "heal",
        "heal",
        "web",
        "  interval: 1h\n  syncPolicy:\n    automated:\n      selfHeal: true\n",
    );
    e.application(
        "report",
        "report",
        "web",
        "  interval: 1h\n  syncPolicy:\n    automated: {}\n",
    );
    e.eventually("both synced", Duration::from_secs(30), || {
        cm_value(&e, "healed").as_deref() == Some("git")
            && cm_value(&e, "reported").as_deref() == Some("git")
    });
    e.kubectl(&[
        "patch",
        "cm",
        "healed",
        "-n",
        "web",
        "--type=merge",
        "-p",
        r#"{"data":{"key":"edited"}}"#,
    ]);
    e.kubectl(&[
        "patch",
        "cm",
        "reported",
        "-n",
        "web",
        "--type=merge",
        "-p",
        r#"{"data":{"key":"edited"}}"#,
    ]);
    let edited = Instant::now();
    e.eventually("self-heal", Duration::from_secs(15), || {
        cm_value(&e, "healed").as_deref() == Some("git")
    });
    assert!(
        edited.elapsed() < Duration::from_secs(15),
        "healed within seconds despite the 1h interval"
    );
    e.eventually("drift reported", Duration::from_secs(15), || {
        e.app("report")["status"]["sync"]["status"] == "OutOfSync"
    });
    assert_eq!(
        cm_value(&e, "reported").as_deref(),
        Some("edited"),
        "without selfHeal the edit stays"
    );
    let app = e.app("report");
    let res = app["status"]["resources"].as_array().unwrap();
    assert_eq!(res[0]["status"], "OutOfSync");
}

#[test]
fn deleted_files_are_pruned_with_prune_and_reported_without() {
    let e = Env::new();
    e.repo.write("pruned/a.yaml", cm("a", "1"));
    e.repo.write("pruned/gone.yaml", cm("gone", "1"));
    e.repo.write("kept/b.yaml", cm("b", "1"));
    e.repo.write("kept/left.yaml", cm("left", "1"));
    e.repo.commit("first");
    e.cluster.apply(NS);
    let _c = e.controller(&[]);
    e.application("pruning", "pruned", "web", AUTOMATED);
    e.application(
        "keeping",
        "kept",
        "web",
        "  interval: 2s\n  syncPolicy:\n    automated:\n      prune: false\n",
    );
    e.eventually("both synced", Duration::from_secs(30), || {
        cm_value(&e, "gone").is_some() && cm_value(&e, "left").is_some()
    });
    e.repo.remove("pruned/gone.yaml");
    e.repo.remove("kept/left.yaml");
    e.repo.commit("remove one file each");
    e.eventually("the pruning", Duration::from_secs(20), || {
        cm_value(&e, "gone").is_none()
    });
    e.eventually("the report", Duration::from_secs(20), || {
        e.app("keeping")["status"]["resources"]
            .as_array()
            .is_some_and(|rs| {
                rs.iter()
                    .any(|r| r["name"] == "left" && r["requiresPruning"] == true)
            })
    });
    assert!(cm_value(&e, "left").is_some(), "prune off keeps the object");
}

#[test]
fn the_emergency_stop_blocks_syncs_survives_a_restart_and_resume_catches_up() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.commit("first");
    let c = e.controller(&[]);
    e.application("web", "web", "web", AUTOMATED);
    e.eventually("the first sync", Duration::from_secs(30), || {
        cm_value(&e, "settings").as_deref() == Some("one")
    });

    let out = e.capstan(&["stop", "--reason", "incident 42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.repo.write("web/cm.yaml", cm("settings", "two"));
    e.repo.commit("while stopped");
    e.eventually("the stop reported", Duration::from_secs(20), || {
        cond(&e.app("web"), "Ready").is_some_and(|c| c["reason"] == "EmergencyStop")
    });
    assert_eq!(
        e.app("web")["status"]["sync"]["status"],
        "OutOfSync",
        "drift is still reported"
    );
    let listed = e.capstan(&["get", "apps", "-n", "apps"]);
    let warning = String::from_utf8_lossy(&listed.stderr);
    assert!(
        warning.contains("EMERGENCY STOP ON") && warning.contains("incident 42"),
        "capstan get apps says the stop is on: {warning}"
    );
    drop(c);
    let _c = e.controller(&[]);
    // the new process reconciles under the stop, and applies nothing
    refreshed(&e, "web");
    assert_eq!(
        cm_value(&e, "settings").as_deref(),
        Some("one"),
        "the stop holds after a restart"
    );

    let out = e.capstan(&["resume"]);
    assert!(out.status.success());
    e.eventually("catching up after resume", Duration::from_secs(20), || {
        cm_value(&e, "settings").as_deref() == Some("two")
    });
    let listed = e.capstan(&["get", "apps", "-n", "apps"]);
    assert!(!String::from_utf8_lossy(&listed.stderr).contains("EMERGENCY STOP"));
    let audit = String::from_utf8_lossy(&e.capstan(&["audit"]).stdout).into_owned();
    assert!(
        audit.contains("stop") && audit.contains("resume") && audit.contains("sync"),
        "{audit}"
    );
    let records: Value =
        serde_json::from_str(&stdout_ok(&e.capstan(&["audit", "-o", "json"]), "audit")).unwrap();
    let actions: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .filter(|a| *a != "sync")
        .collect();
    // (the refresh is the test's, asked after the restart to see the new process at work)
    assert_eq!(
        actions,
        ["stop", "refresh", "resume"],
        "in the order they happened"
    );
    // ...and as Kubernetes Events, on the Application and on the stop switch.
    let described = e.kubectl(&["describe", "application", "web", "-n", "apps"]);
    assert!(
        described.contains("Synced") && described.contains("automated sync to"),
        "kubectl describe shows the sync events:\n{described}"
    );
    let events = e.kubectl(&["get", "events", "-n", "capstan-system"]);
    assert!(
        events.contains("EmergencyStop") && events.contains("EmergencyStopLifted"),
        "{events}"
    );
}

#[test]
fn a_sync_in_progress_stops_before_its_next_wave() {
    // Deployments take 3 s to become available: the stop lands while wave 1 waits.
    let mut opts = TestCluster::default_options();
    opts.simulation = Some(capstan_apiserver::SimulationOptions {
        delay: Duration::from_secs(3),
    });
    let e = Env::with_cluster(TestCluster::start_with(opts));
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/d.yaml", SLOW_DEPLOYMENT_WAVE_1);
    e.repo.write(
        "web/z.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  annotations:\n    capstan.dev/sync-wave: \"2\"\ndata:\n  key: \"x\"\n",
    );
    e.repo.commit("two waves");
    let _c = e.controller(&[]);
    e.application("web", "web", "web", AUTOMATED);
    e.eventually("wave 1 applied", Duration::from_secs(30), || {
        e.try_kubectl(&["get", "deploy", "slow", "-n", "web"])
            .is_some()
    });
    let out = e.capstan(&["stop", "--reason", "mid-sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.eventually("the sync to stop", Duration::from_secs(30), || {
        e.app("web")["status"]["operationState"]["phase"] == "Stopped"
    });
    let op = &e.app("web")["status"]["operationState"];
    assert!(
        op["message"]
            .as_str()
            .is_some_and(|m| m.contains("before wave 2")),
        "{op}"
    );
    assert!(cm_value(&e, "late").is_none(), "wave 2 was not applied");

    let out = e.capstan(&["resume"]);
    assert!(out.status.success());
    e.eventually(
        "the sync finishing after resume",
        Duration::from_secs(30),
        || cm_value(&e, "late").is_some() && e.app("web")["status"]["sync"]["status"] == "Synced",
    );
}

#[test]
fn deleting_an_application_deletes_its_objects_only_with_the_finalizer() {
    let e = Env::new();
    // The Namespace is not the Application's: deleting it would take everything along.
    e.cluster.apply(NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.write(
        "web/keep.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  annotations:\n    capstan.dev/prune: \"false\"\ndata:\n  key: \"x\"\n",
    );
    e.repo.write(
        "other/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  namespace: web\ndata:\n  key: \"y\"\n",
    );
    e.repo.commit("two apps");
    let _c = e.controller(&[]);
    e.cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
    e.cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n  namespace: apps\n  finalizers: [capstan.dev/delete-resources]\nspec:\n  source:\n    repoURL: {}\n    path: web\n  destination:\n    namespace: web\n{AUTOMATED}",
        e.server.url("env.git")
    ));
    e.application("other", "other", "web", AUTOMATED);
    e.eventually("both synced", Duration::from_secs(30), || {
        cm_value(&e, "settings").is_some()
            && e.try_kubectl(&["get", "cm", "other", "-n", "web"])
                .is_some()
    });

    // Without the finalizer: the Application goes, its objects stay (Argo CD's default).
    e.kubectl(&["delete", "application", "other", "-n", "apps"]);
    // the controller is at work meanwhile: the other Application is reconciled again
    refreshed(&e, "web");
    assert!(
        e.try_kubectl(&["get", "cm", "other", "-n", "web"])
            .is_some()
    );

    // With it: everything it applied is deleted first — but not during an emergency stop.
    assert!(e.capstan(&["stop"]).status.success());
    e.kubectl(&["delete", "application", "web", "-n", "apps", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cm_value(&e, "settings").as_deref(),
        Some("one"),
        "stopped: nothing deleted"
    );
    assert!(
        e.try_kubectl(&["get", "application", "web", "-n", "apps"])
            .is_some()
    );
    assert!(e.capstan(&["resume"]).status.success());
    e.eventually(
        "the Application and its objects gone",
        Duration::from_secs(30),
        || {
            e.try_kubectl(&["get", "application", "web", "-n", "apps"])
                .is_none()
        },
    );
    assert!(cm_value(&e, "settings").is_none(), "settings deleted");
    assert!(
        e.try_kubectl(&["get", "cm", "keep", "-n", "web"]).is_some(),
        "objects marked capstan.dev/prune: \"false\" stay"
    );
    assert!(
        e.try_kubectl(&["get", "cm", "other", "-n", "web"])
            .is_some(),
        "another Application's objects stay"
    );
    assert!(
        e.try_kubectl(&[
            "get",
            "cm",
            "-n",
            "capstan-system",
            "capstan-inventory-apps.web"
        ])
        .is_none(),
        "its inventory is gone"
    );
    let audit =
        String::from_utf8_lossy(&e.capstan(&["audit", "--app", "apps/web"]).stdout).into_owned();
    assert!(audit.contains("delete"), "{audit}");
}

#[test]
fn suspend_rollback_and_depends_on() {
    let e = Env::new();
    e.repo.write("db/ns.yaml", NS);
    e.repo.write("db/cm.yaml", cm("db", "v1"));
    e.repo.write("web/cm.yaml", cm("web", "v1"));
    let first = e.repo.commit("v1");
    let _c = e.controller(&[]);
    // web depends on db: it waits until db is synced and healthy
    e.application(
        "web",
        "web",
        "web",
        &format!("{AUTOMATED}  dependsOn: [db]\n"),
    );
    // waited for, not slept on: the controller looked at web and held it
    e.eventually(
        "web to wait for its dependency",
        Duration::from_secs(20),
        || cond(&e.app("web"), "Ready").is_some_and(|c| c["reason"] == "WaitingForDependencies"),
    );
    assert!(cm_value(&e, "web").is_none());
    e.application("db", "db", "web", AUTOMATED);
    e.eventually("db then web", Duration::from_secs(30), || {
        cm_value(&e, "web").as_deref() == Some("v1")
    });

    // suspend: new commits are not applied
    assert!(
        e.capstan(&["suspend", "web", "-n", "apps"])
            .status
            .success()
    );
    e.repo.write("db/cm.yaml", cm("db", "v2"));
    e.repo.write("web/cm.yaml", cm("web", "v2"));
    let second = e.repo.commit("v2");
    e.eventually("db syncs v2", Duration::from_secs(20), || {
        cm_value(&e, "db").as_deref() == Some("v2")
    });
    e.eventually("web reported suspended", Duration::from_secs(20), || {
        let app = e.app("web");
        app["status"]["sync"]["status"] == "OutOfSync"
            && cond(&app, "Ready").is_some_and(|c| c["reason"] == "Suspended")
    });
    assert_eq!(
        cm_value(&e, "web").as_deref(),
        Some("v1"),
        "a suspended Application does not sync"
    );
    assert!(e.capstan(&["resume", "web", "-n", "apps"]).status.success());
    e.eventually("web resumes", Duration::from_secs(20), || {
        cm_value(&e, "web").as_deref() == Some("v2")
    });
    // a suspend made with kubectl is audited too, naming the field manager
    assert!(
        e.patch_app("web", r#"{"spec":{"suspend":true}}"#)
            .status
            .success()
    );
    e.eventually("the kubectl suspend seen", Duration::from_secs(20), || {
        cond(&e.app("web"), "Suspended").is_some_and(|c| c["status"] == "True")
    });
    assert!(e.capstan(&["resume", "web", "-n", "apps"]).status.success());
    e.eventually("resumed again", Duration::from_secs(20), || {
        cond(&e.app("web"), "Suspended").is_some_and(|c| c["status"] == "False")
    });
    let audit: Value = serde_json::from_str(&stdout_ok(
        &e.capstan(&["audit", "--app", "apps/web", "-o", "json"]),
        "audit",
    ))
    .unwrap();
    let switches: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "suspend" || r["action"] == "unsuspend")
        .map(|r| {
            let actor = r["actor"].as_str().unwrap_or("");
            let by = if actor.starts_with("capstan:") {
                "capstan"
            } else {
                actor
            };
            (r["action"].as_str().unwrap().to_string(), by.to_string())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("suspend", "capstan"),
        ("unsuspend", "capstan"),
        ("suspend", "kubectl-patch"),
        ("unsuspend", "capstan"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(switches, expected, "{audit}");

    // rollback to the previous revision turns automated sync off
    let out = e.capstan(&["rollback", "web", "-n", "apps"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        e.log()
    );
    assert_eq!(cm_value(&e, "web").as_deref(), Some("v1"));
    let app = e.app("web");
    assert!(
        app["spec"]["syncPolicy"]
            .get("automated")
            .is_none_or(Value::is_null)
    );
    assert_eq!(app["status"]["history"][0]["trigger"], "rollback");
    assert_eq!(app["status"]["history"][0]["revision"], first.as_str());
    assert_eq!(
        cond(&app, "AutomatedSyncDisabled").unwrap()["reason"],
        "RolledBack"
    );
    // reconciled again (a refresh compares with the branch's head), and still at v1
    refreshed(&e, "web");
    assert_eq!(
        cm_value(&e, "web").as_deref(),
        Some("v1"),
        "no automated sync forward after a rollback"
    );
    assert_eq!(
        e.app("web")["status"]["sync"]["revision"],
        second.as_str(),
        "it compares against the branch"
    );
    let history =
        String::from_utf8_lossy(&e.capstan(&["history", "web", "-n", "apps"]).stdout).into_owned();
    assert!(
        history.contains("rollback") && history.contains("automated"),
        "{history}"
    );
}

#[test]
fn two_controllers_elect_one_leader_and_the_standby_takes_over() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.commit("first");
    let lease = ["--leader-elect", "--lease-duration", "3s"];
    let mut a = e.controller(&[&lease[..], &["--identity", "alpha"]].concat());
    std::thread::sleep(Duration::from_secs(2));
    let _b = e.controller(&[&lease[..], &["--identity", "beta"]].concat());
    e.application("web", "web", "web", AUTOMATED);
    e.eventually("a sync", Duration::from_secs(30), || {
        cm_value(&e, "settings").as_deref() == Some("one")
    });
    let holder = || {
        e.kubectl(&[
            "get",
            "lease",
            "capstan-controller",
            "-n",
            "capstan-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };
    assert_eq!(holder(), "alpha", "the first replica leads");
    // a few interval passes with both running: only the leader syncs
    e.repo.write("web/cm.yaml", cm("settings", "two"));
    e.repo.commit("second");
    e.eventually("the second sync", Duration::from_secs(20), || {
        cm_value(&e, "settings").as_deref() == Some("two")
    });
    let syncs_by = |who: &str| -> usize {
        let audit: Value = serde_json::from_str(&stdout_ok(
            &e.capstan(&["audit", "--app", "apps/web", "-o", "json"]),
            "audit",
        ))
        .unwrap();
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "sync" && r["actor"] == who)
            .count()
    };
    assert_eq!(syncs_by("alpha"), 2);
    assert_eq!(syncs_by("beta"), 0, "the standby never syncs");

    // the emergency stop holds on every replica: the standby taking over syncs nothing
    assert!(
        e.capstan(&["stop", "--reason", "failover"])
            .status
            .success()
    );
    e.repo.write("web/cm.yaml", cm("settings", "three"));
    e.repo.commit("while stopped");
    let _ = a.child.kill();
    let _ = a.child.wait();
    let killed = Instant::now();
    e.eventually(
        "the standby takes the lease",
        Duration::from_secs(15),
        || holder() == "beta",
    );
    let took_over = killed.elapsed();
    // the lease expires 3 s after the last renewal; the standby looks every second
    assert!(
        took_over < Duration::from_secs(3 + 1 + 2),
        "taken over within the lease duration (and one renew period): {took_over:?}"
    );
    // the new leader reconciles web — a refresh always writes the status, and alpha is
    // dead, so a new reconciledAt is beta's — and finds the stop on: waited for, not
    // slept on
    let before = e.app("web")["status"]["reconciledAt"].clone();
    std::thread::sleep(Duration::from_millis(1100)); // reconciledAt has whole seconds
    assert!(
        e.capstan(&["refresh", "web", "-n", "apps"])
            .status
            .success()
    );
    e.eventually(
        "the new leader to reconcile web and hold it for the stop",
        Duration::from_secs(20),
        || {
            let app = e.app("web");
            app["status"]["reconciledAt"] != before
                && cond(&app, "Ready").is_some_and(|c| c["reason"] == "EmergencyStop")
        },
    );
    assert_eq!(
        cm_value(&e, "settings").as_deref(),
        Some("two"),
        "the new leader sees the stop"
    );
    assert!(e.capstan(&["resume"]).status.success());
    e.eventually("beta syncs after resume", Duration::from_secs(20), || {
        cm_value(&e, "settings").as_deref() == Some("three")
    });
    assert_eq!(syncs_by("beta"), 1);
}

#[test]
fn a_controller_killed_in_the_middle_of_a_sync_converges_after_restart() {
    // Deployments take 3 s to become available, so the kill lands while wave 1 waits.
    let mut opts = TestCluster::default_options();
    opts.simulation = Some(capstan_apiserver::SimulationOptions {
        delay: Duration::from_secs(3),
    });
    let e = Env::with_cluster(TestCluster::start_with(opts));
    e.repo.write("web/ns.yaml", NS);
    let wave = |name: &str, w: i32| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    capstan.dev/sync-wave: \"{w}\"\ndata:\n  key: \"x\"\n"
        )
    };
    e.repo.write("web/a.yaml", wave("early", 0));
    // a Deployment in wave 1 takes the simulated rollout time; wave 2 waits for it
    e.repo.write("web/d.yaml", SLOW_DEPLOYMENT_WAVE_1);
    e.repo.write("web/z.yaml", wave("late", 2));
    e.repo.commit("three waves");
    let c = e.controller(&[]);
    e.application("web", "web", "web", AUTOMATED);
    e.eventually("the sync to start", Duration::from_secs(30), || {
        e.try_kubectl(&["get", "deploy", "slow", "-n", "web"])
            .is_some()
    });
    let mut c = c;
    let _ = c.child.kill(); // SIGKILL mid-sync
    let _ = c.child.wait();
    assert!(
        cm_value(&e, "late").is_none(),
        "killed before wave 2 was applied"
    );
    let _c = e.controller(&[]);
    e.eventually(
        "convergence after the restart",
        Duration::from_secs(30),
        || cm_value(&e, "late").is_some() && e.app("web")["status"]["sync"]["status"] == "Synced",
    );
    let inv = e.kubectl(&[
        "get",
        "cm",
        "-n",
        "capstan-system",
        "capstan-inventory-apps.web",
        "-o",
        "jsonpath={.data.objects}",
    ]);
    for name in ["early", "late", "slow", "web"] {
        assert!(inv.contains(name), "{name} is in the inventory: {inv}");
    }
}

#[test]
fn when_git_is_unreachable_the_last_state_stays_and_nothing_is_pruned() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.commit("first");
    let _c = e.controller(&[]);
    e.application("web", "web", "web", AUTOMATED);
    e.eventually("the first sync", Duration::from_secs(30), || {
        cm_value(&e, "settings").as_deref() == Some("one")
    });
    let Env {
        cluster,
        server,
        repo,
        _root,
        state,
    } = e;
    drop(server);
    let e2 = EnvView {
        cluster: &cluster,
        state: &state,
    };
    e2.eventually(
        "the fetch failure condition",
        Duration::from_secs(30),
        || {
            let app: Value = serde_json::from_str(&cluster.kubectl_ok(&[
                "get",
                "applications",
                "web",
                "-n",
                "apps",
                "-o",
                "json",
            ]))
            .unwrap();
            cond(&app, "Ready").is_some_and(|c| c["reason"] == "FetchFailed")
        },
    );
    assert!(
        cluster
            .kubectl(&["get", "cm", "settings", "-n", "web"])
            .status
            .success(),
        "the last applied state stays"
    );
    drop(repo);
}

struct EnvView<'a> {
    cluster: &'a TestCluster,
    state: &'a tempfile::TempDir,
}

impl EnvView<'_> {
    fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.cluster;
        panic!(
            "timed out waiting for {what}\n{}",
            std::fs::read_to_string(self.state.path().join("controller.log")).unwrap_or_default()
        );
    }
}

#[test]
fn a_render_that_fails_or_comes_back_empty_prunes_nothing() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.commit("first");
    let _c = e.controller(&[]);
    e.application("web", "web", "web", AUTOMATED);
    e.eventually("the first sync", Duration::from_secs(30), || {
        cm_value(&e, "settings").as_deref() == Some("one")
    });

    e.repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [broken\n",
    );
    e.repo.commit("broken");
    e.eventually("the render failure", Duration::from_secs(20), || {
        cond(&e.app("web"), "Ready").is_some_and(|c| {
            c["reason"] == "RenderFailed"
                && c["message"].as_str().unwrap_or("").contains("web/cm.yaml")
        })
    });
    assert!(cm_value(&e, "settings").is_some() && e.try_kubectl(&["get", "ns", "web"]).is_some());

    e.repo.remove("web/cm.yaml");
    e.repo.remove("web/ns.yaml");
    e.repo.write("web/README.md", "nothing here\n");
    e.repo.commit("empty");
    e.eventually("the empty render refused", Duration::from_secs(20), || {
        cond(&e.app("web"), "Ready").is_some_and(|c| {
            c["message"]
                .as_str()
                .unwrap_or("")
                .contains("rendered no objects")
        })
    });
    assert!(
        cm_value(&e, "settings").is_some(),
        "an empty render prunes nothing"
    );
}

fn stdout_ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn manual_syncs_and_the_operating_commands_speak_text_json_and_yaml() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    let first = e.repo.commit("first");
    e.repo.write("web/cm.yaml", cm("settings", "two"));
    let second = e.repo.commit("second");
    let _c = e.controller(&[]);
    // no automated policy: changes are only reported until someone syncs
    e.application("web", "web", "web", "  interval: 2s\n");
    e.eventually("the comparison", Duration::from_secs(30), || {
        e.app("web")["status"]["sync"]["status"] == "OutOfSync"
    });
    assert!(cm_value(&e, "settings").is_none(), "nothing applied");
    let listed = stdout_ok(&e.capstan(&["get", "apps", "-n", "apps"]), "get apps");
    let row = listed
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("a row for web:\n{listed}"));
    assert!(
        row.contains("OutOfSync") && row.contains(&second[..7]),
        "{listed}"
    );
    assert!(listed.starts_with("NAME"), "{listed}");

    // a manual sync to an older revision, then to the spec's
    let out = stdout_ok(
        &e.capstan(&["sync", "web", "-n", "apps", "--revision", &first]),
        "sync --revision",
    );
    assert!(out.contains("Succeeded"), "{out}");
    assert_eq!(cm_value(&e, "settings").as_deref(), Some("one"));
    let app = e.app("web");
    assert_eq!(app["status"]["history"][0]["trigger"], "manual");
    assert_eq!(app["status"]["history"][0]["revision"], first.as_str());
    let out = stdout_ok(&e.capstan(&["sync", "web", "-n", "apps"]), "sync");
    assert!(out.contains("Succeeded"), "{out}");
    assert_eq!(cm_value(&e, "settings").as_deref(), Some("two"));

    // the status, as a Kubernetes user expects to read it
    e.eventually("synced and healthy", Duration::from_secs(20), || {
        let app = e.app("web");
        app["status"]["sync"]["status"] == "Synced"
            && app["status"]["health"]["status"] == "Healthy"
    });
    let app = e.app("web");
    let st = &app["status"];
    assert_eq!(st["observedGeneration"], app["metadata"]["generation"]);
    for (ty, status) in [
        ("Ready", "True"),
        ("Synced", "True"),
        ("Healthy", "True"),
        ("Stalled", "False"),
    ] {
        let c = cond(&app, ty).unwrap_or_else(|| panic!("condition {ty}: {st}"));
        assert_eq!(c["status"], status, "{ty}: {c}");
        assert!(c["lastTransitionTime"].is_string(), "{c}");
        assert!(c["reason"].as_str().is_some_and(|r| !r.is_empty()), "{c}");
    }
    let op = &st["operationState"];
    assert_eq!(op["phase"], "Succeeded");
    assert_eq!(op["revision"], second.as_str());
    assert!(
        op["startedAt"].is_string() && op["finishedAt"].is_string(),
        "{op}"
    );
    assert_eq!(op["summary"]["configured"], 1, "{op}");
    let h = &st["history"][0];
    assert_eq!(h["author"], "Capstan Test <test@capstan.invalid>", "{h}");
    assert_eq!(h["message"], "second");
    assert_eq!(h["result"], "Succeeded");
    assert_eq!(h["id"], 2);
    let res = st["resources"].as_array().unwrap();
    let settings = res.iter().find(|r| r["name"] == "settings").unwrap();
    assert_eq!(settings["status"], "Synced");
    assert_eq!(settings["health"]["status"], "Healthy");

    // the tree
    let tree = stdout_ok(&e.capstan(&["get", "app", "web", "-n", "apps"]), "get app");
    assert!(tree.contains("Sync:        Synced to"), "{tree}");
    assert!(tree.contains("Health:      Healthy"), "{tree}");
    assert!(
        tree.lines().any(|l| l.contains("namespace web")),
        "resources grouped by namespace:\n{tree}"
    );
    assert!(
        tree.lines()
            .any(|l| l.contains("── ConfigMap settings: Synced, Healthy")),
        "{tree}"
    );
    assert!(
        tree.lines()
            .any(|l| l.contains("── Namespace web: Synced, Healthy")),
        "{tree}"
    );

    // the same data for scripts
    let apps: Value = serde_json::from_str(&stdout_ok(
        &e.capstan(&["get", "apps", "-n", "apps", "-o", "json"]),
        "get apps -o json",
    ))
    .unwrap();
    assert_eq!(apps[0]["metadata"]["name"], "web");
    assert_eq!(apps[0]["status"]["sync"]["revision"], second.as_str());
    let yaml = stdout_ok(
        &e.capstan(&["get", "app", "web", "-n", "apps", "-o", "yaml"]),
        "get app -o yaml",
    );
    let parsed: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(parsed["status"]["health"]["status"], "Healthy");
    let history: Value = serde_json::from_str(&stdout_ok(
        &e.capstan(&["history", "web", "-n", "apps", "-o", "json"]),
        "history -o json",
    ))
    .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["revision"], first.as_str());

    // rollback to an explicit history entry
    let out = stdout_ok(
        &e.capstan(&["rollback", "web", "1", "-n", "apps"]),
        "rollback 1",
    );
    assert!(out.contains("history 1"), "{out}");
    assert_eq!(cm_value(&e, "settings").as_deref(), Some("one"));
    let missing = e.capstan(&["rollback", "web", "99", "-n", "apps"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no history entry 99"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // the audit log: each sync with who, from → to, the author and what changed
    let audit: Value = serde_json::from_str(&stdout_ok(
        &e.capstan(&["audit", "--app", "apps/web", "--since", "1h", "-o", "json"]),
        "audit -o json",
    ))
    .unwrap();
    let records = audit.as_array().unwrap();
    let syncs: Vec<&Value> = records.iter().filter(|r| r["action"] == "sync").collect();
    assert_eq!(syncs.len(), 2, "{audit}");
    let to_second = syncs
        .iter()
        .find(|r| r["toRevision"] == second.as_str())
        .expect("the sync to the second commit");
    assert_eq!(to_second["fromRevision"], first.as_str());
    assert_eq!(to_second["trigger"], "manual");
    assert_eq!(to_second["author"], "Capstan Test <test@capstan.invalid>");
    assert_eq!(to_second["summary"]["configured"], 1);
    assert_eq!(to_second["result"], "Succeeded");
    let rollback = records
        .iter()
        .find(|r| r["action"] == "rollback")
        .expect("the rollback is recorded");
    assert_eq!(rollback["toRevision"], first.as_str());
    assert_eq!(rollback["fromRevision"], second.as_str());
    // --since filters by time
    let none: Value = serde_json::from_str(&stdout_ok(
        &e.capstan(&["audit", "--app", "apps/web", "--since", "1ms", "-o", "json"]),
        "audit --since 1ms",
    ))
    .unwrap();
    assert!(
        none.as_array().unwrap().len() < records.len(),
        "older records are left out: {none}"
    );
    let text = stdout_ok(&e.capstan(&["audit", "--app", "web"]), "audit");
    assert!(
        text.contains("rollback") && text.contains(&first[..7]) && text.contains("1 configured"),
        "{text}"
    );
}

#[test]
fn a_spec_change_is_reconciled_at_once_and_a_bad_interval_is_named() {
    let e = Env::new();
    e.repo.write("one/cm.yaml", cm("first", "1"));
    e.repo.write("two/cm.yaml", cm("second", "2"));
    e.repo.commit("two paths");
    e.cluster.apply(NS);
    let _c = e.controller(&[]);
    e.application(
        "web",
        "one",
        "web",
        "  interval: 1h\n  syncPolicy:\n    automated:\n      prune: true\n",
    );
    e.eventually("the first sync", Duration::from_secs(30), || {
        cm_value(&e, "first").is_some()
    });
    let changed = Instant::now();
    assert!(
        e.patch_app("web", r#"{"spec":{"source":{"path":"two"}}}"#)
            .status
            .success()
    );
    e.eventually("the new path synced", Duration::from_secs(10), || {
        cm_value(&e, "second").is_some() && cm_value(&e, "first").is_none()
    });
    assert!(
        changed.elapsed() < Duration::from_secs(10),
        "at once, not after the 1h interval"
    );

    // the CRD's schema names a malformed duration
    let bad = e.patch_app("web", r#"{"spec":{"interval":"2x"}}"#);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("spec.interval"), "{err}");
}

#[test]
fn a_restarted_controller_syncs_nothing_while_the_stop_is_on() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.commit("first");
    // the stop is on before any controller runs (the first one installs the CRDs)
    assert!(
        e.capstan(&["stop", "--reason", "before start"])
            .status
            .success()
    );
    let c = e.controller(&[]);
    e.eventually("the CRDs", Duration::from_secs(20), || {
        e.try_kubectl(&["get", "crd", "applications.capstan.dev"])
            .is_some()
    });
    e.application("web", "web", "web", AUTOMATED);
    e.eventually("the stop reported", Duration::from_secs(20), || {
        cond(&e.app("web"), "Ready").is_some_and(|c| c["reason"] == "EmergencyStop")
    });
    drop(c);
    // restarts: each new process must read the switch before it reconciles anything
    for _ in 0..3 {
        let _c = e.controller(&[]);
        refreshed(&e, "web");
        assert!(
            cm_value(&e, "settings").is_none(),
            "nothing applied\n{}",
            e.log()
        );
    }
    let audit = stdout_ok(&e.capstan(&["audit", "-o", "json"]), "audit");
    let records: Value = serde_json::from_str(&audit).unwrap();
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"] != "sync"),
        "no sync was recorded: {audit}"
    );
}

/// Argo CD's hook e2e data (`../shared/conformance/argo-hooks/e2e-testdata`), which CI
/// must have.
fn argo_hooks(fixture: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/argo-hooks/e2e-testdata")
        .join(fixture);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the conformance data is missing at {}",
        dir.display()
    );
    eprintln!(
        "{} not found: Argo CD's delete-hook cases were not checked",
        dir.display()
    );
    None
}

/// The fixture's files, in the repository under `path`.
fn write_fixture(e: &Env, fixture: &std::path::Path, path: &str) {
    for entry in std::fs::read_dir(fixture).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        e.repo.write(
            format!("{path}/{name}"),
            std::fs::read_to_string(&p).unwrap(),
        );
    }
}

fn finalizers(app: &Value) -> Vec<String> {
    app["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

/// TestPreDeleteHook: the PreDelete hook (a pod sleeping 3 s) runs when the Application
/// is deleted, before its objects are; the deletion waits for it, and the hook is
/// cleaned up once it succeeded.
#[test]
fn argo_pre_delete_hook_runs_before_the_objects_are_deleted() {
    let Some(fixture) = argo_hooks("pre-delete-hook") else {
        return;
    };
    let e = Env::new();
    e.cluster.apply(NS);
    write_fixture(&e, &fixture, "app");
    e.repo.commit("pre-delete hook");
    let _c = e.controller(&[]);
    e.cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
    e.cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n  namespace: apps\n  finalizers: [capstan.dev/delete-resources]\nspec:\n  source:\n    repoURL: {}\n    path: app\n  destination:\n    namespace: web\n{AUTOMATED}",
        e.server.url("env.git")
    ));
    e.eventually("synced", Duration::from_secs(30), || {
        e.try_kubectl(&["get", "cm", "guestbook-ui", "-n", "web"])
            .is_some()
    });
    assert!(
        e.try_kubectl(&["get", "pod", "hook", "-n", "web"])
            .is_none(),
        "a PreDelete hook does not run on sync"
    );
    e.kubectl(&["delete", "application", "web", "-n", "apps", "--wait=false"]);
    e.eventually(
        "the PreDelete hook running",
        Duration::from_secs(30),
        || {
            e.try_kubectl(&[
                "get",
                "pod",
                "hook",
                "-n",
                "web",
                "-o",
                "jsonpath={.status.phase}",
            ])
            .is_some_and(|p| p == "Running")
        },
    );
    assert!(
        e.try_kubectl(&["get", "cm", "guestbook-ui", "-n", "web"])
            .is_some(),
        "the objects stay while the PreDelete hook runs"
    );
    e.eventually("the Application gone", Duration::from_secs(60), || {
        e.try_kubectl(&["get", "application", "web", "-n", "apps"])
            .is_none()
    });
    assert!(
        e.try_kubectl(&["get", "cm", "guestbook-ui", "-n", "web"])
            .is_none()
    );
    assert!(
        e.try_kubectl(&["get", "pod", "hook", "-n", "web"])
            .is_none(),
        "the hook is cleaned up"
    );
}

/// TestPreDeleteHookFailureAndRetry: a failing PreDelete hook keeps the Application
/// with a DeletionError condition; fixed in Git, the retry deletes it.
#[test]
fn argo_a_failing_pre_delete_hook_keeps_the_application_until_fixed() {
    let Some(fixture) = argo_hooks("pre-delete-hook") else {
        return;
    };
    let e = Env::new();
    e.cluster.apply(NS);
    write_fixture(&e, &fixture, "app");
    let hook = std::fs::read_to_string(fixture.join("hook.yaml")).unwrap();
    assert!(hook.contains("- \"sleep\"\n        - \"3\""), "{hook}");
    let failing = hook.replace("- \"sleep\"\n        - \"3\"", "- \"false\"");
    e.repo.write("app/hook.yaml", &failing);
    e.repo.commit("a failing pre-delete hook");
    let _c = e.controller(&[]);
    e.application("web", "app", "web", AUTOMATED);
    e.eventually("synced", Duration::from_secs(30), || {
        e.try_kubectl(&["get", "cm", "guestbook-ui", "-n", "web"])
            .is_some()
    });
    e.eventually(
        "the delete-hooks finalizer added",
        Duration::from_secs(30),
        || finalizers(&e.app("web")).contains(&"capstan.dev/delete-hooks".to_string()),
    );
    e.kubectl(&["delete", "application", "web", "-n", "apps", "--wait=false"]);
    e.eventually("DeletionError", Duration::from_secs(60), || {
        cond(&e.app("web"), "DeletionError").is_some_and(|c| c["status"] == "True")
    });
    let app = e.app("web");
    let message = cond(&app, "DeletionError").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("PreDelete hook") && message.contains("exit code 1"),
        "{message}"
    );
    let hooks = &app["status"]["operationState"]["hooks"];
    assert_eq!(hooks[0]["hookType"], "PreDelete", "{hooks}");
    assert_eq!(hooks[0]["phase"], "Failed", "{hooks}");
    assert!(
        e.try_kubectl(&["get", "cm", "guestbook-ui", "-n", "web"])
            .is_some(),
        "nothing else happens without the hook: the Application had no delete-resources finalizer anyway"
    );

    e.repo.write("app/hook.yaml", &hook);
    e.repo.commit("fix the pre-delete hook");
    e.eventually("the Application gone", Duration::from_secs(90), || {
        e.try_kubectl(&["get", "application", "web", "-n", "apps"])
            .is_none()
    });
    assert!(
        e.try_kubectl(&["get", "cm", "guestbook-ui", "-n", "web"])
            .is_some(),
        "without capstan.dev/delete-resources its objects stay (Argo CD's non-cascading delete)"
    );
}

/// TestPostDeleteHook: the PostDelete hook runs after the Application's objects are
/// deleted and is left behind.
#[test]
fn argo_post_delete_hook_runs_after_the_objects_are_deleted() {
    let Some(fixture) = argo_hooks("post-delete-hook") else {
        return;
    };
    let e = Env::new();
    e.cluster.apply(NS);
    write_fixture(&e, &fixture, "app");
    e.repo.write("app/cm.yaml", cm("settings", "one"));
    e.repo.commit("post-delete hook");
    let _c = e.controller(&[]);
    e.cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
    e.cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n  namespace: apps\n  finalizers: [capstan.dev/delete-resources]\nspec:\n  source:\n    repoURL: {}\n    path: app\n  destination:\n    namespace: web\n{AUTOMATED}",
        e.server.url("env.git")
    ));
    e.eventually("synced", Duration::from_secs(30), || {
        cm_value(&e, "settings").is_some()
    });
    e.kubectl(&["delete", "application", "web", "-n", "apps", "--wait=false"]);
    e.eventually("the Application gone", Duration::from_secs(60), || {
        e.try_kubectl(&["get", "application", "web", "-n", "apps"])
            .is_none()
    });
    assert!(
        cm_value(&e, "settings").is_none(),
        "its objects are deleted"
    );
    let phase = e.kubectl(&[
        "get",
        "pod",
        "hook",
        "-n",
        "web",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(
        phase, "Succeeded",
        "the PostDelete hook ran and is left behind"
    );
}

/// The health of the first resource of an Application's status: `(status, message)`.
fn first_resource_health(app: &Value) -> (String, String) {
    let health = &app["status"]["resources"][0]["health"];
    (
        health["status"].as_str().unwrap_or_default().to_string(),
        health["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn custom_health_rules_from_the_capstan_health_config_map_and_the_application() {
    let e = Env::new();
    e.repo.write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  ready: \"no\"\n",
    );
    e.repo.commit("settings");
    e.cluster.apply(NS);
    e.cluster.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: capstan-system\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capstan-health\n  namespace: capstan-system\n\
         data:\n  rules.yaml: |\n    - apiVersion: v1\n      kind: ConfigMap\n      current: \"false\"\n      message: \"'judged by the cluster rule'\"\n",
    );
    let _c = e.controller(&[]);
    e.application("web", "app", "web", AUTOMATED);
    e.eventually(
        "the ConfigMap judged by the cluster's rule",
        Duration::from_secs(30),
        || {
            first_resource_health(&e.app("web"))
                == ("Progressing".into(), "judged by the cluster rule".into())
        },
    );

    // the Application's own rule wins over the cluster's for the same kind
    let own = r#"{"spec":{"healthChecks":[{"apiVersion":"v1","kind":"ConfigMap",
        "current":"data.?ready.orValue('') == 'yes'","failed":"data.?ready.orValue('') == 'no'",
        "message":"'ready is ' + data.?ready.orValue('unset')"}]}}"#;
    assert!(e.patch_app("web", own).status.success());
    e.eventually(
        "the ConfigMap judged by the Application's rule",
        Duration::from_secs(30),
        || {
            let app = e.app("web");
            first_resource_health(&app) == ("Degraded".into(), "ready is no".into())
                && app["status"]["health"]["status"] == "Degraded"
        },
    );

    // a bad rule in the cluster's ConfigMap is named, and the Application's rules go on
    e.cluster.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capstan-health\n  namespace: capstan-system\n\
         data:\n  rules.yaml: |\n    - apiVersion: v1\n      kind: Secret\n      current: \"status.(\"\n",
    );
    e.eventually(
        "a HealthRulesInvalid condition naming the ConfigMap",
        Duration::from_secs(30),
        || {
            let app = e.app("web");
            cond(&app, "HealthRulesInvalid").is_some_and(|c| {
                c["status"] == "True"
                    && c["message"].as_str().is_some_and(|m| {
                        m.contains(
                            "ConfigMap capstan-system/capstan-health, key rules.yaml: rule 1 \
                             (Secret): the current expression does not compile: status.(",
                        )
                    })
            }) && first_resource_health(&app).0 == "Degraded"
        },
    );

    // a bad expression on the Application makes its spec invalid, naming the entry
    let bad =
        r#"{"spec":{"healthChecks":[{"apiVersion":"v1","kind":"ConfigMap","current":"data.("}]}}"#;
    assert!(e.patch_app("web", bad).status.success());
    e.eventually(
        "Ready=False InvalidSpec naming spec.healthChecks[0]",
        Duration::from_secs(30),
        || {
            cond(&e.app("web"), "Ready").is_some_and(|c| {
                c["reason"] == "InvalidSpec"
                    && c["message"].as_str().is_some_and(|m| {
                        m.starts_with(
                            "Application apps/web: spec.healthChecks[0] (ConfigMap): the current \
                             expression does not compile: data.(",
                        )
                    })
            })
        },
    );
}

/// Argo CD's multi-source: a chart from a Helm repository (served on loopback, a
/// version range) takes its values file from a Git repository (`$values/...`), and a
/// ConfigMap (`valuesFrom`) has the last word; a commit to the values is synced.
#[test]
fn a_chart_from_a_helm_repository_takes_values_from_git_and_a_configmap() {
    use capstan_testkit::charts::{ChartRepo, TestChart};
    let e = Env::new();
    e.cluster.apply(NS);
    let charts = ChartRepo::start(None);
    for v in ["1.1.0", "1.2.0", "2.0.0"] {
        charts.add(&TestChart::new("greeter", v));
    }
    e.repo.write("values/prod.yaml", "greeting: from-git\n");
    e.repo.commit("values");
    let _c = e.controller(&[]);
    e.cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
    e.cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: greeter\n  namespace: apps\nspec:\n  sources:\n  - repoURL: {}\n    chart: greeter\n    targetRevision: \">=1.0 <2\"\n    helm:\n      releaseName: greeter\n      valueFiles: [$values/values/prod.yaml]\n  - repoURL: {}\n    ref: values\n  destination:\n    namespace: web\n{AUTOMATED}",
        charts.url(),
        e.server.url("env.git")
    ));
    let data = |key: &str| {
        e.try_kubectl(&[
            "get",
            "cm",
            "greeter",
            "-n",
            "web",
            "-o",
            &format!("jsonpath={{.data.{key}}}"),
        ])
    };
    e.eventually(
        "the chart synced with the Git values",
        Duration::from_secs(60),
        || data("greeting").as_deref() == Some("from-git"),
    );
    assert_eq!(
        data("version").as_deref(),
        Some("1.2.0"),
        "the highest in the range"
    );
    let app = e.app("greeter");
    let revision = app["status"]["sync"]["revision"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        revision.starts_with("sha256:") && revision.contains(','),
        "{revision}"
    );

    e.repo.write("values/prod.yaml", "greeting: changed\n");
    e.repo.commit("change the values");
    e.eventually("the values commit synced", Duration::from_secs(60), || {
        data("greeting").as_deref() == Some("changed")
    });

    e.cluster.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeter-values\n  namespace: apps\ndata:\n  greeting: from-configmap\n",
    );
    let patch = r#"{"spec":{"sources":[{"repoURL":"CHARTS","chart":"greeter","targetRevision":">=1.0 <2","helm":{"releaseName":"greeter","valueFiles":["$values/values/prod.yaml"],"valuesFrom":[{"kind":"ConfigMap","name":"greeter-values","valuesKey":"greeting","targetPath":"greeting"}]}},{"repoURL":"GIT","ref":"values"}]}}"#
        .replace("CHARTS", &charts.url())
        .replace("GIT", &e.server.url("env.git"));
    let out = e.patch_app("greeter", &patch);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.eventually("valuesFrom applied last", Duration::from_secs(60), || {
        data("greeting").as_deref() == Some("from-configmap")
    });

    // a ref to a source that does not exist is one clear condition
    let bad = patch.replace("$values/values", "$nothere/values");
    assert!(e.patch_app("greeter", &bad).status.success());
    e.eventually("the bad ref named", Duration::from_secs(30), || {
        e.app("greeter")["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["message"].as_str().is_some_and(|m| {
                    m.contains("spec.sources[0].helm.valueFiles[0]") && m.contains("nothere")
                })
            })
    });
    assert_eq!(
        data("greeting").as_deref(),
        Some("from-configmap"),
        "the last state stays"
    );
}

#[test]
fn an_application_renders_jsonnet_with_argo_cds_directory_jsonnet_fields() {
    let e = Env::new();
    e.repo.write(
        "vendor/cm.libsonnet",
        "{\n  cm(name, value):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: { key: value } },\n}\n",
    );
    e.repo.write("web/ns.yaml", NS);
    e.repo.write(
        "web/main.jsonnet",
        "local lib = import 'cm.libsonnet';\nfunction(name, copies=1) [lib.cm(name + '-' + i, std.extVar('value')) for i in std.range(1, copies)]\n",
    );
    e.repo.commit("jsonnet");
    let _c = e.controller(&[]);
    e.cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
    e.cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1
kind: Application
metadata:
  name: web
  namespace: apps
spec:
  source:
    repoURL: {}
    path: web
    directory:
      jsonnet:
        tlas:
        - {{name: name, value: settings}}
        - {{name: copies, value: '1 + 1', code: true}}
        extVars:
        - {{name: value, value: from-the-application}}
        libs: [vendor]
  destination:
    namespace: web
{AUTOMATED}",
        e.server.url("env.git")
    ));

    e.eventually(
        "the Jsonnet objects synced",
        Duration::from_secs(30),
        || {
            cm_value(&e, "settings-1").as_deref() == Some("from-the-application")
                && cm_value(&e, "settings-2").as_deref() == Some("from-the-application")
        },
    );
    let app = e.app("web");
    assert_eq!(app["status"]["sync"]["status"], "Synced");
    assert_eq!(
        app["spec"]["source"]["directory"]["jsonnet"]["tlas"][1],
        serde_json::json!({"name": "copies", "value": "1 + 1", "code": true}),
        "the API server keeps the fields (the CRD's schema has them)"
    );

    // A changed external variable is a changed spec: rendered and synced again.
    assert!(
        e.patch_app(
            "web",
            r#"{"spec":{"source":{"directory":{"jsonnet":{"extVars":[{"name":"value","value":"patched"}]}}}}}"#
        )
        .status
        .success()
    );
    e.eventually(
        "the new external variable synced",
        Duration::from_secs(20),
        || cm_value(&e, "settings-1").as_deref() == Some("patched"),
    );

    // An import out of the repository is a render failure naming the file.
    e.repo
        .write("web/main.jsonnet", "import '../../outside.libsonnet'\n");
    e.repo.commit("escape");
    e.eventually("the refused import", Duration::from_secs(20), || {
        cond(&e.app("web"), "Ready").is_some_and(|c| {
            c["reason"] == "RenderFailed"
                && c["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("web/main.jsonnet: import \"../../outside.libsonnet\" is refused")
        })
    });
    assert_eq!(
        cm_value(&e, "settings-1").as_deref(),
        Some("patched"),
        "a failed render prunes nothing"
    );
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HMAC-SHA256 of `body` under `key`, as GitHub signs a delivery (checked against the
/// server's own `sign`, which the conformance tests check against GitHub's vectors).
fn github_signature(key: &str, body: &[u8]) -> String {
    capstan_server::webhooks::verify::sign(key.as_bytes(), body)
}

#[test]
fn a_push_webhook_syncs_the_application_at_once_with_the_trigger_in_history_and_audit() {
    let e = Env::new();
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", "one"));
    e.repo.commit("first");
    let port = free_port();
    let _c = e.controller(&["--listen", &format!("127.0.0.1:{port}"), "--interval", "1h"]);
    // an hour between comparisons: only the webhook brings a commit quickly
    e.application(
        "web",
        "web",
        "web",
        "  interval: 1h\n  syncPolicy:\n    automated:\n      prune: true\n",
    );
    e.eventually("the first sync", Duration::from_secs(30), || {
        cm_value(&e, "settings").as_deref() == Some("one")
    });
    e.cluster.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: capstan-webhooks\n  namespace: capstan-system\nstringData:\n  github: s3cret-for-github\n",
    );

    e.repo.write("web/cm.yaml", cm("settings", "two"));
    let second = e.repo.commit("second");
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": second,
        "repository": {"html_url": e.server.url("env.git"), "default_branch": "main"},
        "commits": [{"id": second, "added": [], "modified": ["web/cm.yaml"], "removed": []}],
    }))
    .unwrap();
    let post = |sig: &str| {
        capstan_testkit::client::http()
            .post(format!("http://127.0.0.1:{port}/webhooks/github"))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .header("X-Hub-Signature-256", sig)
            .body(body.clone())
            .send()
            .unwrap()
    };
    let refused = post(&github_signature("not the secret", &body));
    assert_eq!(refused.status().as_u16(), 401);
    let accepted = post(&github_signature("s3cret-for-github", &body));
    assert_eq!(accepted.status().as_u16(), 200);
    let answer: Value = serde_json::from_str(&accepted.text().unwrap()).unwrap();
    assert_eq!(
        answer["refreshed"],
        serde_json::json!(["apps/web"]),
        "{answer}"
    );
    e.eventually("the webhook's sync", Duration::from_secs(20), || {
        cm_value(&e, "settings").as_deref() == Some("two")
    });
    let app = e.app("web");
    assert_eq!(app["status"]["sync"]["revision"], second.as_str());
    assert_eq!(
        app["status"]["history"][0]["trigger"], "webhook",
        "{}",
        app["status"]["history"]
    );
    let audit = e.capstan(&["audit", "--app", "apps/web", "-o", "json"]);
    let records: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == "webhook" && r["toRevision"] == second.as_str()),
        "{records}"
    );
}
