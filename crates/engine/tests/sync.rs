//! The engine against the embedded API server over HTTPS (kube-rs): render a
//! directory, plan, sync, prune, wait — the behaviour every Application relies on.

use std::path::Path;
use std::time::Duration;

use capstan_core::{Change, HealthState, Outcome};
use capstan_engine::destination::Destination;
use capstan_engine::diff::IgnoreRule;
use capstan_engine::inventory::InventoryStore;
use capstan_engine::render::{self, RenderOptions, Scopes};
use capstan_engine::source::local;
use capstan_engine::sync::{SyncError, SyncOptions, SyncReport, sync};
use capstan_testkit::TestCluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};

struct Fixture {
    cluster: TestCluster,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            cluster: TestCluster::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, yaml: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, yaml).unwrap();
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }

    async fn dest(&self) -> Destination {
        Destination::new(self.cluster.client().await, "demo")
    }

    async fn sync_with(&self, opts: &SyncOptions) -> SyncReport {
        let dest = self.dest().await;
        let checkout = local::open(self.dir.path()).unwrap();
        let scopes = dest.scopes().await.unwrap();
        let desired = render::render(
            &checkout,
            &RenderOptions::default(),
            &dest.namespace,
            &scopes,
        )
        .await
        .unwrap();
        sync(&dest, desired, &checkout.revision, opts).await
    }

    async fn sync(&self) -> SyncReport {
        self.sync_with(&opts()).await
    }

    fn rv(&self, args: &[&str]) -> String {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "jsonpath={.metadata.resourceVersion}"]);
        self.cluster.kubectl_ok(&a)
    }
}

fn opts() -> SyncOptions {
    let mut o = SyncOptions::new("demo-app");
    o.prune = true;
    o.timeout = Duration::from_secs(20);
    o
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n";

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

fn outcome(report: &SyncReport, kind: &str, name: &str) -> Option<Outcome> {
    report
        .changes
        .entries
        .iter()
        .find(|e| e.object.kind == kind && e.object.name == name)
        .and_then(|e| e.outcome.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_creates_and_a_second_changes_nothing() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("app/cm.yaml", &cm("settings", "one"));
    let first = f.sync().await;
    assert!(first.succeeded(), "{:?}", first.error);
    assert_eq!(
        outcome(&first, "ConfigMap", "settings"),
        Some(Outcome::Created)
    );
    assert_eq!(outcome(&first, "Namespace", "demo"), Some(Outcome::Created));
    let label = f.cluster.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.labels.capstan\\.dev/application}",
    ]);
    assert_eq!(
        label, "demo-app",
        "applied objects carry the application label"
    );

    let before = (
        f.rv(&["cm", "settings", "-n", "demo"]),
        f.rv(&["ns", "demo"]),
    );
    let second = f.sync().await;
    assert!(second.succeeded(), "{:?}", second.error);
    assert!(
        second
            .changes
            .entries
            .iter()
            .all(|e| e.outcome == Some(Outcome::Unchanged)),
        "{:?}",
        second.changes
    );
    assert_eq!(
        (
            f.rv(&["cm", "settings", "-n", "demo"]),
            f.rv(&["ns", "demo"])
        ),
        before,
        "no new resourceVersion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_planned_with_its_diff_and_applied() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("cm.yaml", &cm("settings", "one"));
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);
    f.write("cm.yaml", &cm("settings", "two"));
    let report = f.sync().await;
    assert!(report.succeeded(), "{:?}", report.error);
    let entry = report
        .changes
        .entries
        .iter()
        .find(|e| e.object.name == "settings")
        .unwrap();
    match &entry.change {
        Some(Change::Update { diff }) => assert!(
            diff.contains("-  key: one") && diff.contains("+  key: two"),
            "{diff}"
        ),
        other => panic!("expected an update, got {other:?}"),
    }
    assert_eq!(entry.outcome, Some(Outcome::Configured));
    assert_eq!(
        f.cluster.kubectl_ok(&[
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_that_leave_the_source_are_pruned_unless_told_not_to() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("a.yaml", &cm("a", "1"));
    f.write("b.yaml", &cm("b", "1"));
    f.write(
        "keep.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  annotations:\n    capstan.dev/prune: \"false\"\n",
    );
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);
    f.cluster.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stranger\n  namespace: demo\n  labels:\n    capstan.dev/application: demo-app\n");
    f.remove("b.yaml");
    f.remove("keep.yaml");

    let mut no_prune = opts();
    no_prune.prune = false;
    let report = f.sync_with(&no_prune).await;
    assert!(report.succeeded());
    assert!(matches!(
        outcome(&report, "ConfigMap", "b"),
        Some(Outcome::Skipped { .. })
    ));
    f.cluster.kubectl_ok(&["get", "cm", "b", "-n", "demo"]);

    let report = f.sync().await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(outcome(&report, "ConfigMap", "b"), Some(Outcome::Pruned));
    assert!(
        matches!(outcome(&report, "ConfigMap", "keep"), Some(Outcome::Skipped { reason }) if reason.contains("capstan.dev/prune"))
    );
    let left = f
        .cluster
        .kubectl_ok(&["get", "cm", "-n", "demo", "-o", "name"]);
    assert!(!left.contains("configmap/b\n"), "{left}");
    assert!(
        left.contains("configmap/keep"),
        "annotated objects are kept: {left}"
    );
    assert!(
        left.contains("configmap/stranger"),
        "only the inventory is pruned, never by label alone: {left}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_render_is_refused_and_prunes_nothing() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("a.yaml", &cm("a", "1"));
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);
    f.remove("ns.yaml");
    f.remove("a.yaml");
    let report = f.sync().await;
    assert!(
        matches!(report.error, Some(SyncError::EmptyRender)),
        "{:?}",
        report.error
    );
    f.cluster.kubectl_ok(&["get", "cm", "a", "-n", "demo"]);
    let inv = InventoryStore::new(f.cluster.client().await, "capstan-system")
        .load("demo-app")
        .await
        .unwrap();
    assert_eq!(inv.len(), 2, "the inventory is untouched");

    let mut allow = opts();
    allow.allow_empty = true;
    let report = f.sync_with(&allow).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(outcome(&report, "ConfigMap", "a"), Some(Outcome::Pruned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_prunes_correctly_from_the_inventory_in_the_cluster() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("a.yaml", &cm("a", "1"));
    f.write("b.yaml", &cm("b", "1"));
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);
    // a fresh destination, client and store: nothing is remembered in memory
    f.remove("b.yaml");
    let report = f.sync().await;
    assert_eq!(outcome(&report, "ConfigMap", "b"), Some(Outcome::Pruned));
    let inv = InventoryStore::new(f.cluster.client().await, "capstan-system")
        .load("demo-app")
        .await
        .unwrap();
    assert_eq!(inv.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_are_applied_in_order_and_each_waits_for_health() {
    let f = Fixture::new();
    f.cluster.apply(NAMESPACE);
    let wave = |name: &str, w: i32| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    capstan.dev/sync-wave: \"{w}\"\n"
        )
    };
    f.write("late.yaml", &wave("late", 5));
    f.write("early.yaml", &wave("early", -3));
    f.write("middle.yaml", &wave("middle", 0));
    f.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gate\n  annotations:\n    capstan.dev/sync-wave: \"0\"\nspec:\n  selector:\n    matchLabels: {app: gate}\n  template:\n    metadata:\n      labels: {app: gate}\n    spec:\n      containers:\n      - {name: c, image: nginx:1.27}\n",
    );
    let client = f.cluster.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "demo");
    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let report = f.sync().await;
    assert!(report.succeeded(), "{:?}", report.error);
    let mut order = Vec::new();
    while order.len() < 3 {
        if let Some(Ok(WatchEvent::Added(o))) =
            tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .unwrap()
        {
            order.push(o.metadata.name.unwrap());
        }
    }
    assert_eq!(order, ["early", "middle", "late"]);
    let gate = report
        .changes
        .entries
        .iter()
        .find(|e| e.object.name == "gate")
        .unwrap();
    assert_eq!(
        gate.health.as_ref().map(|h| h.state),
        Some(HealthState::Healthy),
        "wave 0 was waited for before wave 5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_fails_the_wait_with_its_reason() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: doomed\n  annotations:\n    simulate.capstan.dev/fail: \"true\"\nspec:\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      containers:\n      - {name: c, image: nginx:1.27}\n",
    );
    let mut o = opts();
    o.wait = true;
    let report = f.sync_with(&o).await;
    let err = report.error.expect("the wait fails").to_string();
    assert!(
        err.contains("Deployment.apps demo/doomed is Degraded"),
        "{err}"
    );
    assert!(err.contains("progress deadline"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_change_is_planned_without_showing_values() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n");
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);
    f.write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: correct-horse\n");
    let mut dry = opts();
    dry.dry_run = true;
    let report = f.sync_with(&dry).await;
    let entry = report
        .changes
        .entries
        .iter()
        .find(|e| e.object.name == "creds")
        .unwrap();
    let Some(Change::Update { diff }) = &entry.change else {
        panic!("{:?}", entry.change)
    };
    for secret in [
        "hunter2",
        "correct-horse",
        "aHVudGVyMg==",
        "Y29ycmVjdC1ob3JzZQ==",
    ] {
        assert!(
            !diff.contains(secret),
            "a secret value leaked into the diff:\n{diff}"
        );
    }
    assert!(diff.contains("password: ++++++++ (changed)"), "{diff}");
    assert_eq!(
        f.cluster.kubectl_ok(&[
            "get",
            "secret",
            "creds",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.password}"
        ]),
        "aHVudGVyMg==",
        "a dry run changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_owned_by_others_conflict_until_forced_and_ignored_fields_are_left_alone() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("cm.yaml", &cm("shared", "git"));
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);
    let out = f.cluster.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "--field-manager=hand", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: demo\ndata:\n  key: hand\n",
    );
    assert!(out.status.success());
    let report = f.sync().await;
    let err = report.error.expect("a conflict fails the sync").to_string();
    assert!(err.contains("conflict with \"hand\""), "{err}");

    let mut forced = opts();
    forced.plan.force_conflicts = true;
    assert!(f.sync_with(&forced).await.succeeded());
    assert_eq!(
        f.cluster.kubectl_ok(&[
            "get",
            "cm",
            "shared",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.key}"
        ]),
        "git"
    );

    // an ignored field is neither compared nor applied
    f.cluster.kubectl_ok(&[
        "patch",
        "cm",
        "shared",
        "-n",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"key":"autoscaler"}}"#,
    ]);
    let mut ignoring = opts();
    ignoring.plan.ignore_differences = vec![IgnoreRule {
        kind: "ConfigMap".into(),
        json_pointers: vec!["/data/key".into()],
        ..Default::default()
    }];
    let report = f.sync_with(&ignoring).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(
        f.cluster.kubectl_ok(&[
            "get",
            "cm",
            "shared",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.key}"
        ]),
        "autoscaler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_and_its_custom_resources_sync_together() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write(
        "crd.yaml",
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../apiserver/tests/fixtures/widget-crd.yaml"),
        )
        .unwrap(),
    );
    f.write(
        "widget.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 2\n",
    );
    let dest = f.dest().await;
    let checkout = local::open(f.dir.path()).unwrap();
    let desired = render::render(
        &checkout,
        &RenderOptions::default(),
        "demo",
        &Scopes::builtin(),
    )
    .await
    .unwrap();
    let report = sync(&dest, desired, &checkout.revision, &opts()).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(outcome(&report, "Widget", "w"), Some(Outcome::Created));
    f.cluster.kubectl_ok(&["get", "widgets", "w", "-n", "demo"]);
}
