//! Argo CD's hook and sync-wave end-to-end tests, run by Capstan's engine against the
//! embedded API server.
//!
//! The fixtures and the expectations are Argo CD's own, read from
//! `../shared/conformance/argo-hooks/` (`e2e-testdata/` and `cases.json`; never copied
//! here): each test below takes its case by name, applies the case's JSON patches to the
//! fixture files, syncs the directory as one Application, and checks every expectation
//! the case states (operation phase, sync and health status, the number of results,
//! the hook results, which pods exist afterwards).
//!
//! How Argo CD's terms map onto a [`SyncReport`]:
//! - the operation phase is `Succeeded` when the sync succeeded, else `Failed`;
//! - its results are the objects the sync applied (an outcome) plus the hook runs, in
//!   Argo CD's order (PreSync hooks, the Sync phase, PostSync hooks, SyncFail hooks);
//! - an object's sync status and health come from a fresh dry-run plan afterwards
//!   (a planned create is `OutOfSync`/`Missing`);
//! - a hook's `hookPhase` is its run's phase; a terminated run (Argo CD: `Failed`
//!   with message `Terminated`) is `Terminated` here.
//!
//! The cases that override health in Argo CD (TestHookFinalizer*, TestFixingDegradedApp)
//! give the same override as a custom health rule in CEL. Those about deleting an
//! Application (TestPreDeleteHook*, TestPostDeleteHook) are controller tests, in
//! `crates/capstan/tests/integration/controller.rs` (`argo_*`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use capstan_core::{HookPhase, HookType};
use capstan_engine::destination::Destination;
use capstan_engine::health::CustomHealth;
use capstan_engine::render::{self, RenderOptions};
use capstan_engine::source::local;
use capstan_engine::sync::{
    self, HOOK_FINALIZER, HookRun, SyncOptions, SyncReport, health_of, health_of_with,
};
use capstan_testkit::TestCluster;
use serde_json::{Value, json};

const NAMESPACE: &str = "argo-e2e";

/// The conformance data, which CI must have.
fn conformance() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/argo-hooks");
    if dir.join("cases.json").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the conformance data is missing at {}",
        dir.display()
    );
    eprintln!(
        "conformance data not found at {}: Argo CD's hook e2e cases were not checked",
        dir.display()
    );
    None
}

/// The case named `test` in `cases.json`.
fn case(dir: &Path, test: &str) -> Value {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["test"] == test)
        .unwrap_or_else(|| panic!("cases.json has no case {test}"))
        .clone()
}

/// Argo CD's app for one case: the fixture's files (patched as the case says) in a
/// directory of their own, synced to a namespace of the embedded API server.
struct App {
    cluster: TestCluster,
    dir: tempfile::TempDir,
    fixture: PathBuf,
    case: Value,
    files: BTreeMap<String, Vec<Value>>,
    /// The case's health override, as a custom rule.
    health: Arc<CustomHealth>,
}

impl App {
    fn new(data: &Path, test: &str) -> App {
        let case = case(data, test);
        let fixture = data.join(case["fixture"].as_str().unwrap());
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&fixture).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                files.insert(name, read_docs(&path));
            }
        }
        let app = App {
            cluster: TestCluster::start(),
            dir: tempfile::tempdir().unwrap(),
            fixture,
            case,
            files,
            health: Arc::new(CustomHealth::default()),
        };
        app.cluster.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
        ));
        let mut app = app;
        let patches = app.case["patches"].as_array().cloned().unwrap_or_default();
        // patches given in prose (a case run for several values) are the test's to apply
        for p in patches.into_iter().filter(Value::is_object) {
            let file = p["file"].as_str().expect("a patch names its file");
            let docs = app.files.get_mut(file).unwrap();
            for op in p["patch"].as_array().unwrap() {
                lenient_patch(&mut docs[0], op);
            }
        }
        app.write();
        app
    }

    /// The first document of a fixture file as it was before the case's patches.
    fn original(&self, file: &str) -> Value {
        read_docs(&self.fixture.join(file)).remove(0)
    }

    fn add(&mut self, file: &str, doc: Value) {
        self.files.insert(file.to_string(), vec![doc]);
        self.write();
    }

    fn edit(&mut self, file: &str, f: impl FnOnce(&mut Value)) {
        f(&mut self.files.get_mut(file).unwrap()[0]);
        self.write();
    }

    fn write(&self) {
        for (name, docs) in &self.files {
            let text: Vec<String> = docs
                .iter()
                .map(|d| serde_json::to_string_pretty(d).unwrap())
                .collect();
            std::fs::write(self.dir.path().join(name), text.join("\n---\n")).unwrap();
        }
    }

    async fn dest(&self) -> Destination {
        Destination::new(self.cluster.client().await, NAMESPACE)
    }

    fn opts(&self) -> SyncOptions {
        let mut o = SyncOptions::new("argo-e2e");
        o.prune = true;
        o.timeout = Duration::from_secs(30);
        o.health = self.health.clone();
        o
    }

    /// Render and sync, as one operation; a render error fails the operation.
    async fn sync_with(&self, opts: &SyncOptions) -> Operation {
        let dest = self.dest().await;
        let checkout = local::open(self.dir.path()).unwrap();
        let scopes = dest.scopes().await.unwrap();
        match render::render(&checkout, &RenderOptions::default(), NAMESPACE, &scopes).await {
            Ok(desired) => {
                let report = sync::sync(&dest, desired, &checkout.revision, opts).await;
                Operation::of(report)
            }
            Err(e) => Operation {
                phase: "Failed",
                message: e.to_string(),
                results: Vec::new(),
                report: None,
            },
        }
    }

    async fn sync(&self) -> Operation {
        self.sync_with(&self.opts()).await
    }

    /// The sync status of the app and of each object (`Kind/name`), from a dry run.
    async fn status(&self) -> Status {
        let dest = self.dest().await;
        let checkout = local::open(self.dir.path()).unwrap();
        let scopes = dest.scopes().await.unwrap();
        let desired = render::render(&checkout, &RenderOptions::default(), NAMESPACE, &scopes)
            .await
            .unwrap();
        let mut opts = self.opts();
        opts.dry_run = true;
        let report = sync::sync(&dest, desired, &checkout.revision, &opts).await;
        assert!(report.succeeded(), "the dry run: {:?}", report.error);
        let mut resources = BTreeMap::new();
        let mut synced = true;
        for o in &report.plan.objects {
            let sync = if o.change.is_drift() {
                synced = false;
                "OutOfSync"
            } else {
                "Synced"
            };
            let health =
                health_of_with(&dest, o.desired.api_version(), &o.desired.id, &self.health).await;
            resources.insert(
                format!("{}/{}", o.desired.id.kind, o.desired.id.name),
                (sync.to_string(), format!("{:?}", health.state)),
            );
        }
        Status {
            sync: if synced { "Synced" } else { "OutOfSync" },
            resources,
        }
    }

    fn pod(&self, name: &str) -> Option<Value> {
        let out = self
            .cluster
            .kubectl(&["get", "pod", name, "-n", NAMESPACE, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Check every expectation the case states.
    async fn expect(&self, op: &Operation) {
        let test = self.case["test"].as_str().unwrap().to_string();
        let expect = self.case["expect"].clone();
        self.check(&test, &expect, op).await;
    }

    async fn check(&self, test: &str, expect: &Value, op: &Operation) {
        let ctx = format!("{test}: {}", op.describe());
        if let Some(phase) = expect["operation_phase"].as_str() {
            assert_eq!(op.phase, phase, "{ctx}");
        }
        if let Some(n) = expect["resource_result_count"].as_u64() {
            assert_eq!(op.results.len() as u64, n, "{ctx}");
        }
        if let Some(n) = expect["sync_result_resources"].as_u64() {
            assert_eq!(op.results.len() as u64, n, "{ctx}");
        }
        if expect.get("sync_status").is_some() || expect.get("resource").is_some() {
            // Argo CD's e2e expectations are polled until they hold (or time out)
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            let mut status = self.status().await;
            while !status.holds(expect) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                status = self.status().await;
            }
            if let Some(s) = expect["sync_status"].as_str() {
                assert_eq!(status.sync, s, "{ctx}; {status:?}");
            }
            if let Some(resources) = expect["resource"].as_object() {
                for (id, want) in resources {
                    let (sync, health) = status
                        .resources
                        .get(id)
                        .unwrap_or_else(|| panic!("{ctx}: no {id} in {status:?}"));
                    if let Some(s) = want["sync"].as_str() {
                        assert_eq!(sync, s, "{ctx}: {id}");
                    }
                    if let Some(h) = want["health"].as_str() {
                        assert_eq!(health, h, "{ctx}: {id}");
                    }
                }
            }
        }
        if expect.get("hook_result").is_some() {
            check_hook(&ctx, op, &expect["hook_result"]);
        }
        for want in expect["results"].as_array().into_iter().flatten() {
            check_hook(&ctx, op, want);
        }
        for (i, key) in [
            (0usize, "resources[0].name contains"),
            (2, "resources[2].name contains"),
        ] {
            if let Some(part) = expect[key].as_str() {
                let name = &op.results.get(i).unwrap_or_else(|| panic!("{ctx}")).1;
                assert!(name.contains(part), "{ctx}: result {i} is {name}");
            }
        }
        if let Some(exists) = expect["hook_pod_exists"].as_bool() {
            assert_eq!(self.pod("hook").is_some(), exists, "{ctx}: pod hook");
        }
        if let Some(exists) = expect["pod_named_pod_exists"].as_bool() {
            assert_eq!(self.pod("pod").is_some(), exists, "{ctx}: pod pod");
        }
        if expect["after"]
            .as_str()
            .is_some_and(|a| a.contains("still exists"))
        {
            let pod = self
                .pod("hook")
                .unwrap_or_else(|| panic!("{ctx}: pod hook is gone"));
            assert!(!has_finalizer(&pod), "{ctx}: the hook keeps its finalizer");
        }
    }
}

/// Apply one JSON patch operation as Argo CD's tests do (evanphx/json-patch v4): a
/// `replace` of a member that does not exist adds it (cases.json's README, ambiguity 2).
fn lenient_patch(doc: &mut Value, op: &Value) {
    let patch: json_patch::Patch = serde_json::from_value(json!([op])).unwrap();
    if json_patch::patch(doc, &patch).is_ok() {
        return;
    }
    assert_eq!(op["op"], "replace", "the patch {op} does not apply");
    let mut add = op.clone();
    add["op"] = json!("add");
    let patch: json_patch::Patch = serde_json::from_value(json!([add])).unwrap();
    json_patch::patch(doc, &patch).unwrap_or_else(|e| panic!("the patch {op}: {e}"));
}

fn read_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn has_finalizer(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == HOOK_FINALIZER))
}

/// One sync, in Argo CD's terms.
struct Operation {
    phase: &'static str,
    message: String,
    /// `(kind, name, hook run)`, in Argo CD's order of results.
    results: Vec<(String, String, Option<HookRun>)>,
    report: Option<SyncReport>,
}

impl Operation {
    fn of(report: SyncReport) -> Operation {
        let order = |t: HookType| match t {
            HookType::PreSync => 0,
            HookType::Sync => 1,
            HookType::PostSync => 3,
            _ => 4,
        };
        let mut results: Vec<(u8, String, String, Option<HookRun>)> = report
            .changes
            .entries
            .iter()
            .filter(|e| e.outcome.is_some())
            .map(|e| (2, e.object.kind.clone(), e.object.name.clone(), None))
            .collect();
        for h in &report.hooks {
            results.push((
                order(h.result.hook_type),
                h.object.kind.clone(),
                h.object.name.clone(),
                Some(h.clone()),
            ));
        }
        results.sort_by_key(|r| r.0);
        Operation {
            phase: if report.succeeded() {
                "Succeeded"
            } else {
                "Failed"
            },
            message: report
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            results: results.into_iter().map(|(_, k, n, h)| (k, n, h)).collect(),
            report: Some(report),
        }
    }

    fn hook(&self, name: &str) -> Option<&HookRun> {
        self.results
            .iter()
            .filter_map(|r| r.2.as_ref())
            .find(|h| h.object.name == name)
    }

    fn describe(&self) -> String {
        let results: Vec<String> = self
            .results
            .iter()
            .map(|(k, n, h)| match h {
                Some(h) => format!(
                    "{k}/{n} {} {:?} {:?}",
                    h.result.hook_type, h.result.phase, h.result.message
                ),
                None => format!("{k}/{n}"),
            })
            .collect();
        format!(
            "operation {} ({}), results [{}]",
            self.phase,
            self.message,
            results.join(", ")
        )
    }
}

/// Check one hook result against Argo CD's (`name`, `kind`, `message`, `hookType`,
/// `hookPhase`, `syncPhase`). Argo CD's `status: Synced` of a hook says its object was
/// created; here a created hook is one whose run reached a phase by observing it.
fn check_hook(ctx: &str, op: &Operation, want: &Value) {
    let name = want["name"].as_str().unwrap();
    let run = op
        .hook(name)
        .unwrap_or_else(|| panic!("{ctx}: no hook result {name}"));
    if let Some(kind) = want["kind"].as_str() {
        assert_eq!(run.object.kind, kind, "{ctx}");
    }
    if let Some(m) = want["message"].as_str() {
        assert_eq!(run.result.message, m, "{ctx}: {name}");
    }
    for key in ["hookType", "syncPhase"] {
        if let Some(t) = want[key].as_str() {
            assert_eq!(run.result.hook_type.as_str(), t, "{ctx}: {name} {key}");
        }
    }
    if let Some(p) = want["hookPhase"].as_str() {
        assert_eq!(format!("{:?}", run.result.phase), p, "{ctx}: {name}");
    }
}

#[derive(Debug)]
struct Status {
    sync: &'static str,
    resources: BTreeMap<String, (String, String)>,
}

impl Status {
    /// Whether the case's `sync_status` and `resource` expectations hold.
    fn holds(&self, expect: &Value) -> bool {
        let sync = expect["sync_status"]
            .as_str()
            .is_none_or(|s| s == self.sync);
        let resources = expect["resource"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(id, want)| {
                self.resources.get(id).is_some_and(|(sync, health)| {
                    want["sync"].as_str().is_none_or(|s| s == sync)
                        && want["health"].as_str().is_none_or(|h| h == health)
                })
            });
        sync && resources
    }
}

/// A hook Pod made from the fixture's `hook.yaml`: its name, its hook annotation and
/// its command (as the cases' `add_files` describe them).
fn hook_pod(base: &Value, name: &str, annotations: Value, command: &[&str]) -> Value {
    let mut pod = base.clone();
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["annotations"] = annotations;
    pod["spec"]["containers"][0]["command"] = json!(command);
    pod
}

macro_rules! argo_case {
    ($fn_name:ident, $test:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $fn_name() {
            let Some(data) = conformance() else { return };
            let app = App::new(&data, $test);
            let op = app.sync().await;
            app.expect(&op).await;
        }
    };
}

argo_case!(pre_sync_hook_successful, "TestPreSyncHookSuccessful");
argo_case!(sync_hook_successful, "TestSyncHookSuccessful");
argo_case!(post_sync_hook_successful, "TestPostSyncHookSuccessful");
argo_case!(pre_sync_hook_failure, "TestPreSyncHookFailure");
argo_case!(sync_hook_failure, "TestSyncHookFailure");
argo_case!(post_sync_hook_failure, "TestPostSyncHookFailure");
argo_case!(post_sync_hook_pod_failure, "TestPostSyncHookPodFailure");
argo_case!(
    hook_delete_policy_hook_succeeded_hook_exit_0,
    "TestHookDeletePolicyHookSucceededHookExit0"
);
argo_case!(
    hook_delete_policy_hook_succeeded_hook_exit_1,
    "TestHookDeletePolicyHookSucceededHookExit1"
);
argo_case!(
    hook_delete_policy_hook_failed_hook_exit_0,
    "TestHookDeletePolicyHookFailedHookExit0"
);
argo_case!(
    hook_delete_policy_hook_failed_hook_exit_1,
    "TestHookDeletePolicyHookFailedHookExit1"
);
argo_case!(hook_skip, "TestHookSkip");
argo_case!(naming_non_hook_resource, "TestNamingNonHookResource");
argo_case!(
    automatically_naming_unnamed_hook,
    "TestAutomaticallyNamingUnnamedHook"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_fail_hook_pod_failure() {
    let Some(data) = conformance() else { return };
    let mut app = App::new(&data, "TestSyncFailHookPodFailure");
    let base = app.original("hook.yaml");
    app.add(
        "sync-fail-hook.yaml",
        hook_pod(
            &base,
            "sync-fail-hook",
            json!({"argocd.argoproj.io/hook": "SyncFail"}),
            &["true"],
        ),
    );
    let op = app.sync().await;
    app.expect(&op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_fail_hook_pod_failure_sync_fail_failure() {
    let Some(data) = conformance() else { return };
    let mut app = App::new(&data, "TestSyncFailHookPodFailureSyncFailFailure");
    let base = app.original("hook.yaml");
    let sync_fail = json!({"argocd.argoproj.io/hook": "SyncFail"});
    app.add(
        "successful-sync-fail-hook.yaml",
        hook_pod(
            &base,
            "successful-sync-fail-hook",
            sync_fail.clone(),
            &["true"],
        ),
    );
    app.add(
        "failed-sync-fail-hook.yaml",
        hook_pod(&base, "failed-sync-fail-hook", sync_fail, &["false"]),
    );
    let op = app.sync().await;
    app.expect(&op).await;
}

/// Deviation, written down: the Deployment's readiness probe (`/does-not-exist`) is what
/// keeps it Progressing on a real cluster. The embedded API server runs no kubelet and no
/// probe, so the test adds the simulation's annotation that keeps a workload
/// progressing for an hour — the same state the probe leads to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_hook_resource_failure() {
    let Some(data) = conformance() else { return };
    let mut app = App::new(&data, "TestSyncHookResourceFailure");
    app.edit("deployment.yaml", |d| {
        d["metadata"]["annotations"] = json!({capstan_apiserver::DURATION_ANNOTATION: "1h"});
    });
    let op = app.sync().await;
    app.expect(&op).await;
    let dest = app.dest().await;
    let id = capstan_core::ObjectRef::new("apps", "Deployment", Some(NAMESPACE), "my-deployment");
    let health = health_of(&dest, "apps/v1", &id).await;
    assert_eq!(
        format!("{:?}", health.state),
        app.case["expect"]["app_health"].as_str().unwrap(),
        "the app's health is its Deployment's: {health:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_before_hook_creation() {
    let Some(data) = conformance() else { return };
    let app = App::new(&data, "TestHookBeforeHookCreation");
    let first = app.sync().await;
    let ctx = first.describe();
    assert_eq!(first.phase, "Succeeded", "{ctx}");
    assert_eq!(first.results.len(), 2, "{ctx}");
    let status = app.status().await;
    assert_eq!(status.sync, "Synced", "{status:?}");
    let created = |app: &App| {
        app.pod("hook").expect("the hook pod exists")["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let t1 = created(&app);
    // creation timestamps have a resolution of one second
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = app.sync().await;
    assert_eq!(second.phase, "Succeeded", "{}", second.describe());
    let t2 = created(&app);
    assert_ne!(
        t1, t2,
        "the old hook was deleted and the hook created again"
    );
}

/// A stop signal raised once a hook has started: Argo CD's `terminate-op`.
fn terminate_when_running(opts: &mut SyncOptions) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    opts.stop = Some(Arc::new(move || flag.load(Ordering::SeqCst)));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_before_hook_creation_failure() {
    let Some(data) = conformance() else { return };
    let app = App::new(&data, "TestHookBeforeHookCreationFailure");
    let mut opts = app.opts();
    let stop = terminate_when_running(&mut opts);
    let started = stop.clone();
    opts.progress = Some(Arc::new(move |p| {
        if let sync::Progress::Hook(run) = p
            && run.result.phase == HookPhase::Running
        {
            started.store(true, Ordering::SeqCst);
        }
    }));
    let op = app.sync_with(&opts).await;
    app.expect(&op).await;
    let run = op.hook("hook").unwrap();
    assert_eq!(run.result.phase, HookPhase::Terminated, "{}", op.describe());
    assert!(op.report.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_with_running_hooks() {
    let Some(data) = conformance() else { return };
    let mut app = App::new(&data, "TestTerminateWithRunningHooks");
    let base = app.original("hook.yaml");
    for (policy, suffix) in [
        ("HookSucceeded", "success"),
        ("BeforeHookCreation", "create"),
        ("HookFailed", "failed"),
    ] {
        let ann = json!({
            "argocd.argoproj.io/hook": "PreSync",
            "argocd.argoproj.io/hook-delete-policy": policy,
        });
        let running = format!("running-delete-on-{suffix}");
        let complete = format!("complete-delete-on-{suffix}");
        app.add(
            &format!("{running}.yaml"),
            hook_pod(&base, &running, ann.clone(), &["sleep", "300"]),
        );
        app.add(
            &format!("{complete}.yaml"),
            hook_pod(&base, &complete, ann, &["true"]),
        );
    }
    let mut opts = app.opts();
    opts.timeout = Duration::from_secs(120);
    let stop = terminate_when_running(&mut opts);
    let task = {
        let dest = app.dest().await;
        let dir = app.dir.path().to_path_buf();
        tokio::spawn(async move {
            let checkout = local::open(&dir).unwrap();
            let scopes = dest.scopes().await.unwrap();
            let desired = render::render(&checkout, &RenderOptions::default(), NAMESPACE, &scopes)
                .await
                .unwrap();
            sync::sync(&dest, desired, &checkout.revision, &opts).await
        })
    };
    // before terminating: six hooks, the complete ones done, the running ones running
    let names = [
        "running-delete-on-success",
        "running-delete-on-create",
        "running-delete-on-failed",
        "complete-delete-on-success",
        "complete-delete-on-create",
        "complete-delete-on-failed",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let phases: Vec<Option<String>> = names
            .iter()
            .map(|n| {
                app.pod(n).and_then(|p| {
                    p.pointer("/status/phase")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
            })
            .collect();
        let ready = phases[..3].iter().all(|p| p.as_deref() == Some("Running"))
            && phases[3..]
                .iter()
                .all(|p| p.as_deref() == Some("Succeeded"));
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hooks never started: {phases:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!task.is_finished(), "the operation is still running");
    stop.store(true, Ordering::SeqCst);
    let report = task.await.unwrap();
    let op = Operation::of(report);
    let ctx = op.describe();
    assert_eq!(op.phase, "Failed", "{ctx}");
    assert_eq!(op.results.len(), 6, "{ctx}");
    for n in &names[..3] {
        let run = op.hook(n).unwrap();
        assert_eq!(run.result.phase, HookPhase::Terminated, "{ctx}");
        if let Some(pod) = app.pod(n) {
            assert!(!has_finalizer(&pod), "{n} keeps the finalizer");
            assert!(
                pod.pointer("/metadata/deletionTimestamp").is_some(),
                "{n} is neither deleted nor terminating"
            );
        }
    }
    for n in &names[3..] {
        let run = op.hook(n).unwrap();
        assert_eq!(run.result.phase, HookPhase::Succeeded, "{ctx}");
        assert_eq!(run.result.message, format!("pod/{n} created"), "{ctx}");
        let pod = app
            .pod(n)
            .unwrap_or_else(|| panic!("{n} was deleted, though the operation was terminated"));
        assert!(!has_finalizer(&pod), "{n} keeps the finalizer");
    }
}

/// Argo CD's test removes the pod's finalizer from the pod's own preStop hook, with the
/// RBAC of wave 0 and 1; that works only if the pod (wave 2) is deleted while the
/// RoleBinding (wave 1) still exists. The embedded API server runs no preStop hook, so
/// the test plays it: once the pod is terminating, it checks that the RoleBinding and
/// the Role still exist (the hook could authorise) and only then removes the finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_prune_order_with_sync_waves() {
    let Some(data) = conformance() else { return };
    let mut app = App::new(&data, "TestSyncPruneOrderWithSyncWaves");
    let first = app.sync().await;
    assert_eq!(first.phase, "Succeeded", "{}", first.describe());
    let status = app.status().await;
    assert_eq!(status.sync, "Synced", "{status:?}");

    // delete pod.yaml and rbac.yaml: everything leaves the source, but for a marker
    app.files.clear();
    std::fs::remove_file(app.dir.path().join("pod.yaml")).unwrap();
    std::fs::remove_file(app.dir.path().join("rbac.yaml")).unwrap();
    app.add(
        "keep.yaml",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}}),
    );

    let kubelet = {
        let kubeconfig = app.cluster.kubeconfig_path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let kubectl = |args: &[&str]| {
                std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(args)
                    .output()
                    .unwrap()
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let out = kubectl(&[
                    "get",
                    "pod",
                    "pod-with-finalizers",
                    "-n",
                    NAMESPACE,
                    "-o",
                    "jsonpath={.metadata.deletionTimestamp}",
                ]);
                if out.status.success() && !out.stdout.is_empty() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the pod was never deleted"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let rbac_there = [
                "rolebinding/modify-pods-rolebinding",
                "role/modify-pods-role",
            ]
            .iter()
            .all(|o| kubectl(&["get", o, "-n", NAMESPACE]).status.success());
            let out = kubectl(&[
                "patch",
                "pod",
                "pod-with-finalizers",
                "-n",
                NAMESPACE,
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            rbac_there
        })
    };
    let op = app.sync().await;
    let rbac_there = kubelet.await.unwrap();
    let ctx = op.describe();
    assert!(
        rbac_there,
        "the pod (wave 2) was deleted after its RBAC (waves 0 and 1): {ctx}"
    );
    let expect = json!({"operation_phase": "Succeeded", "sync_status": "Synced"});
    app.check("TestSyncPruneOrderWithSyncWaves", &expect, &op)
        .await;
    assert!(app.pod("pod-with-finalizers").is_none(), "{ctx}");
    let report = op.report.as_ref().unwrap();
    let pruned: Vec<String> = report
        .changes
        .entries
        .iter()
        .filter(|e| e.outcome == Some(capstan_core::Outcome::Pruned))
        .map(|e| e.object.kind.clone())
        .collect();
    // Argo CD counts 4 results: the four pruned objects (the marker is ours)
    assert_eq!(pruned.len(), 4, "{ctx}");
}

/// TestHookFinalizer{PreSync,Sync,PostSync}: a hook Job with `ttlSecondsAfterFinished: 0`
/// is deleted by the cluster the moment it completes; the hook finalizer keeps it until
/// its result is read. Argo CD's health override for Jobs (Progressing until deleted,
/// then Healthy with "Resource has finalizer" while the hook finalizer holds it) is
/// this CEL rule, with Capstan's finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_finalizer() {
    let Some(data) = conformance() else { return };
    for phase in ["PreSync", "Sync", "PostSync"] {
        let mut app = App::new(&data, "TestHookFinalizer{PreSync,Sync,PostSync}");
        app.edit("hook.yaml", |d| {
            d["metadata"]["annotations"] = json!({"argocd.argoproj.io/hook": phase});
        });
        app.health = Arc::new(
            CustomHealth::from_yaml(
                &format!(
                    r#"- group: batch
  kind: Job
  inProgress: "!has(metadata.deletionTimestamp)"
  current: has(metadata.finalizers) && metadata.finalizers.exists(f, f == '{HOOK_FINALIZER}')
  message: "has(metadata.deletionTimestamp) ? 'Resource has finalizer' : 'waiting for deletion'"
"#
                ),
                "TestHookFinalizer's health override",
            )
            .unwrap(),
        );
        let op = app.sync().await;
        let expect = app.case["expect"].clone();
        app.check(&format!("TestHookFinalizer{phase}"), &expect, &op)
            .await;
        let run = op.hook("hook").unwrap();
        assert_eq!(run.object.group, "batch");
        let dest = app.dest().await;
        let job = capstan_core::ObjectRef::new("batch", "Job", Some(NAMESPACE), "hook");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while health_of(&dest, "batch/v1", &job).await.state != capstan_core::HealthState::Missing {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{phase}: the hook Job is not released once its result was read"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// TestFixingDegradedApp: with a health override that reads a ConfigMap's `health`
/// annotation (Degraded when it has none), wave 1 is Degraded and wave 2 is never
/// applied; annotated Healthy, the next sync applies both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_degraded_app() {
    let Some(data) = conformance() else { return };
    let mut app = App::new(&data, "TestFixingDegradedApp");
    app.health = Arc::new(
        CustomHealth::from_yaml(
            r#"- apiVersion: v1
  kind: ConfigMap
  current: "has(metadata.annotations) && 'health' in metadata.annotations && metadata.annotations.health == 'Healthy'"
  failed: "!(has(metadata.annotations) && 'health' in metadata.annotations) || metadata.annotations.health == 'Degraded'"
"#,
            "TestFixingDegradedApp's health override",
        )
        .unwrap(),
    );
    let first = app.sync().await;
    let expect = json!({
        "operation_phase": "Failed",
        "sync_status": "OutOfSync",
        "resource_result_count": 1,
        "resource": {
            "ConfigMap/cm-1": {"sync": "Synced", "health": "Degraded"},
            "ConfigMap/cm-2": {"sync": "OutOfSync", "health": "Missing"},
        },
    });
    app.check("TestFixingDegradedApp sync #1", &expect, &first)
        .await;

    // upstream patches with `replace` on a missing key; evanphx/json-patch v4 adds it
    let healthy =
        json!({"op": "replace", "path": "/metadata/annotations/health", "value": "Healthy"});
    for file in ["cm-1.yaml", "cm-2.yaml"] {
        app.edit(file, |d| lenient_patch(d, &healthy));
    }
    let status = app.status().await;
    assert_eq!(
        status.resources["ConfigMap/cm-1"].0, "OutOfSync",
        "{status:?}"
    );
    let second = app.sync().await;
    let expect = json!({
        "operation_phase": "Succeeded",
        "sync_status": "Synced",
        "resource_result_count": 2,
        "resource": {
            "ConfigMap/cm-1": {"sync": "Synced", "health": "Healthy"},
            "ConfigMap/cm-2": {"sync": "Synced", "health": "Healthy"},
        },
    });
    app.check("TestFixingDegradedApp sync #2", &expect, &second)
        .await;
}
