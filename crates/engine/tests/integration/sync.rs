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
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "demo");
    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, "demo");
    let mut rollout = deployments
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let report = f.sync().await;
    assert!(report.succeeded(), "{:?}", report.error);
    // (name, resourceVersion at creation), in the order the server created them
    let mut order = Vec::new();
    while order.len() < 3 {
        if let Some(Ok(WatchEvent::Added(o))) =
            tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .unwrap()
        {
            let rv: u64 = o.metadata.resource_version.unwrap().parse().unwrap();
            order.push((o.metadata.name.unwrap(), rv));
        }
    }
    let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["early", "middle", "late"]);
    // the first version of the gate that reports itself Available: wave 5 came after it
    let available_at = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), rollout.next())
            .await
            .expect("the gate becomes available")
            .unwrap()
            .unwrap();
        if let WatchEvent::Added(d) | WatchEvent::Modified(d) = event {
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_.as_deref() == Some("Available")
                            && c.status.as_deref() == Some("True")
                    })
                });
            if available {
                break d.metadata.resource_version.unwrap().parse::<u64>().unwrap();
            }
        }
    };
    assert!(
        order[1].1 < available_at && available_at < order[2].1,
        "wave 0 (middle, gate) was applied and waited for before wave 5 (late): {order:?}, gate available at {available_at}"
    );
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

fn deployment(name: &str, extra_annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  annotations: {{{extra_annotations}}}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - {{name: c, image: nginx:1.27}}\n"
    )
}

async fn inventory(f: &Fixture) -> capstan_engine::inventory::Inventory {
    InventoryStore::new(f.cluster.client().await, "capstan-system")
        .load("demo-app")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_pruned_unless_every_apply_succeeded() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("a.yaml", &deployment("a", ""));
    f.write("b.yaml", &cm("b", "1"));
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);

    // A now asks for a value the server rejects (a selector its pods do not match),
    // and B left the source.
    f.write(
        "a.yaml",
        &deployment("a", "").replace("labels: {app: a}", "labels: {app: not-a}"),
    );
    f.remove("b.yaml");
    let report = f.sync().await;

    let err = report.error.as_ref().expect("the apply of A fails");
    assert!(
        matches!(err, SyncError::Failed { first, .. } if first.starts_with("Deployment.apps demo/a: ")),
        "{err}"
    );
    assert!(
        matches!(
            outcome(&report, "Deployment", "a"),
            Some(Outcome::Failed { .. })
        ),
        "{:?}",
        report.changes
    );
    assert_eq!(
        outcome(&report, "ConfigMap", "b"),
        None,
        "B is not pruned (nor even attempted): {:?}",
        report.changes
    );
    f.cluster.kubectl_ok(&["get", "cm", "b", "-n", "demo"]);
    let inv = inventory(&f).await;
    assert!(
        inv.contains(&capstan_core::ObjectRef::new(
            "",
            "ConfigMap",
            Some("demo"),
            "b"
        )),
        "B stays in the inventory, so a later sync still prunes it: {inv:?}"
    );

    // Once A is fixed, the next sync prunes B.
    f.write("a.yaml", &deployment("a", ""));
    let report = f.sync().await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(outcome(&report, "ConfigMap", "b"), Some(Outcome::Pruned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_applied_by_the_capstan_field_manager() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    f.write("cm.yaml", &cm("settings", "one"));
    let r = f.sync().await;
    assert!(r.succeeded(), "{:?}", r.error);
    let api: Api<ConfigMap> = Api::namespaced(f.cluster.client().await, "demo");
    let live = api.get("settings").await.unwrap();
    let managed = live.metadata.managed_fields.unwrap_or_default();
    let entry = managed
        .iter()
        .find(|m| m.manager.as_deref() == Some("capstan"))
        .unwrap_or_else(|| panic!("no managedFields entry by capstan: {managed:?}"));
    assert_eq!(entry.operation.as_deref(), Some("Apply"), "{entry:?}");
    let fields = serde_json::to_value(&entry.fields_v1).unwrap();
    assert!(
        fields.pointer("/f:data/f:key").is_some(),
        "capstan owns the fields it applied: {fields}"
    );
}

/// The name every object of the kind-order test has.
const ORDERED: &str = "ordered";

/// ADDED events of `K` in `demo` named [`ORDERED`], as (resourceVersion, kind).
async fn added<K>(client: kube::Client) -> futures::stream::BoxStream<'static, (u64, String)>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::namespaced(client, "demo");
    api.watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .filter_map(|e| async move {
            match e {
                Ok(WatchEvent::Added(o)) if o.meta().name.as_deref() == Some(ORDERED) => {
                    let rv = o.meta().resource_version.as_deref()?.parse().ok()?;
                    Some((rv, K::kind(&()).to_string()))
                }
                _ => None,
            }
        })
        .boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_wave_is_created_in_kind_order() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
    use k8s_openapi::api::networking::v1::Ingress;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let f = Fixture::new();
    f.cluster.apply(NAMESPACE);
    let n = ORDERED;
    // Written in reverse of the expected order, one file per object.
    f.write(
        "1-ingress.yaml",
        &format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {n}\nspec:\n  defaultBackend:\n    service:\n      name: {n}\n      port: {{number: 80}}\n"),
    );
    f.write("2-deployment.yaml", &deployment(n, ""));
    f.write(
        "3-service.yaml",
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {n}\nspec:\n  selector: {{app: {n}}}\n  ports:\n  - port: 80\n"),
    );
    f.write(
        "4-rolebinding.yaml",
        &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {n}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {n}\nsubjects:\n- kind: ServiceAccount\n  name: {n}\n  namespace: demo\n"),
    );
    f.write(
        "5-role.yaml",
        &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {n}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n"),
    );
    f.write(
        "6-pvc.yaml",
        &format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {n}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"),
    );
    f.write("7-configmap.yaml", &cm(n, "v"));
    f.write(
        "8-secret.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {n}\nstringData:\n  k: v\n"),
    );
    f.write(
        "9-serviceaccount.yaml",
        &format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {n}\n"),
    );

    let client = f.cluster.client().await;
    let mut events = futures::stream::select_all([
        added::<Secret>(client.clone()).await,
        added::<ServiceAccount>(client.clone()).await,
        added::<Role>(client.clone()).await,
        added::<RoleBinding>(client.clone()).await,
        added::<PersistentVolumeClaim>(client.clone()).await,
        added::<ConfigMap>(client.clone()).await,
        added::<Service>(client.clone()).await,
        added::<Deployment>(client.clone()).await,
        added::<Ingress>(client.clone()).await,
    ]);
    let report = f.sync().await;
    assert!(report.succeeded(), "{:?}", report.error);

    let mut created = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while created.len() < 9 {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(e)) => created.push(e),
            other => panic!("only {created:?} were seen created: {other:?}"),
        }
    }
    created.sort();
    let kinds: Vec<&str> = created.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Secret",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "Ingress"
        ],
        "creation order by resourceVersion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_installed_in_the_cluster_take_their_scope_from_discovery() {
    let f = Fixture::new();
    f.cluster.apply(NAMESPACE);
    // The CRD is in the cluster, not in the source.
    f.cluster.apply(
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
    let scopes = dest.scopes().await.unwrap();
    assert!(scopes.is_authoritative());
    let checkout = local::open(f.dir.path()).unwrap();
    let desired = render::render(&checkout, &RenderOptions::default(), "demo", &scopes)
        .await
        .unwrap();
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].id.namespace.as_deref(), Some("demo"));
    assert_eq!(desired[0].object["metadata"]["namespace"], "demo");
    let report = sync(&dest, desired, &checkout.revision, &opts()).await;
    assert!(report.succeeded(), "{:?}", report.error);
    f.cluster.kubectl_ok(&["get", "widgets", "w", "-n", "demo"]);

    // A kind neither the cluster nor the source defines is an error naming the file.
    f.write(
        "gadget.yaml",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    let err = render::render(&checkout, &RenderOptions::default(), "demo", &scopes)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, render::RenderError::UnknownKind { object, .. } if object.kind == "Gadget"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "gadget.yaml (document 1): Gadget.example.com g: the cluster serves no kind Gadget in API group example.com (is its CRD installed, or defined in this source?)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_the_server_defaults_are_not_drift() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    // Neither names a protocol, a strategy, a service type, a cluster IP, a pull
    // policy or a termination grace period: the server fills those in.
    f.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        ports:\n        - containerPort: 80\n        resources:\n          requests: {cpu: 100m, memory: 64Mi}\n",
    );
    f.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n    targetPort: 80\n",
    );
    let mut o = opts();
    o.wait = true;
    let first = f.sync_with(&o).await;
    assert!(first.succeeded(), "{:?}", first.error);
    let defaulted = f.cluster.kubectl_ok(&[
        "get",
        "svc",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.type} {.spec.ports[0].protocol} {.spec.clusterIP}",
    ]);
    assert!(
        defaulted.starts_with("ClusterIP TCP "),
        "the server defaulted the Service: {defaulted}"
    );
    let before = (
        f.rv(&["deploy", "web", "-n", "demo"]),
        f.rv(&["svc", "web", "-n", "demo"]),
    );

    let second = f.sync_with(&o).await;
    assert!(second.succeeded(), "{:?}", second.error);
    for e in &second.changes.entries {
        assert_eq!(e.change, Some(Change::Unchanged), "{e:?}");
        assert_eq!(e.outcome, Some(Outcome::Unchanged), "{e:?}");
    }
    assert_eq!(
        (
            f.rv(&["deploy", "web", "-n", "demo"]),
            f.rv(&["svc", "web", "-n", "demo"]),
        ),
        before,
        "no new resourceVersion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_names_every_failing_deployment_with_its_reason() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    let fail = "simulate.capstan.dev/fail: \"true\"";
    f.write("a.yaml", &deployment("doomed-a", fail));
    f.write("b.yaml", &deployment("doomed-b", fail));
    f.write("ok.yaml", &deployment("fine", ""));
    let mut o = opts();
    o.wait = true;
    let report = f.sync_with(&o).await;
    let err = report.error.expect("the wait fails").to_string();
    for name in ["doomed-a", "doomed-b"] {
        let line = err
            .split("; ")
            .find(|l| l.contains(&format!("Deployment.apps demo/{name} ")))
            .unwrap_or_else(|| panic!("{name} is not named: {err}"));
        assert!(
            line.contains("is Degraded") && line.contains("progress deadline"),
            "{name} with its reason: {err}"
        );
    }
    assert!(
        !err.contains("demo/fine is Degraded"),
        "a healthy object is not blamed: {err}"
    );
    for name in ["doomed-a", "doomed-b"] {
        let e = report
            .changes
            .entries
            .iter()
            .find(|e| e.object.name == name)
            .unwrap();
        assert_eq!(
            e.health.as_ref().map(|h| h.state),
            Some(HealthState::Degraded)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_says_so_and_names_what_is_still_progressing() {
    let f = Fixture::new();
    f.write("ns.yaml", NAMESPACE);
    // A StatefulSet told to fail never gets ready: it stays Progressing.
    f.write(
        "sts.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: stuck\n  annotations:\n    simulate.capstan.dev/fail: \"true\"\nspec:\n  serviceName: stuck\n  selector:\n    matchLabels: {app: stuck}\n  template:\n    metadata:\n      labels: {app: stuck}\n    spec:\n      containers:\n      - {name: c, image: nginx:1.27}\n",
    );
    f.write("cm.yaml", &cm("settings", "x"));
    let mut o = opts();
    o.wait = true;
    o.timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let report = f.sync_with(&o).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the wait is bounded by its timeout"
    );
    let err = report.error.expect("the wait times out");
    assert!(
        matches!(
            &err,
            SyncError::Unhealthy(capstan_engine::sync::WaitError::Unhealthy {
                timed_out: true,
                ..
            })
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("timed out waiting for health: "), "{msg}");
    assert!(
        msg.contains("StatefulSet.apps demo/stuck is Progressing: 0 of 1 replicas ready"),
        "{msg}"
    );
    assert!(
        !msg.contains("settings"),
        "only what is not healthy is named: {msg}"
    );
}

/// An HTTP proxy in front of the API server that counts the applies (server-side
/// apply PATCHes by `capstan` in `demo`, not dry runs) in flight at once, holding each
/// for a moment so that concurrent ones overlap.
mod meter {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::extract::{Request, State};
    use axum::response::Response;

    #[derive(Default)]
    pub struct ApplyMeter {
        in_flight: AtomicUsize,
        /// Most applies in flight at once.
        pub max: AtomicUsize,
        /// Applies seen.
        pub total: AtomicUsize,
    }

    /// Start the proxy; returns a client that goes through it.
    pub async fn start(upstream: kube::Client) -> (kube::Client, Arc<ApplyMeter>) {
        let meter = Arc::new(ApplyMeter::default());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state((upstream, meter.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        (kube::Client::try_from(config).unwrap(), meter)
    }

    async fn forward(
        State((upstream, meter)): State<(kube::Client, Arc<ApplyMeter>)>,
        req: Request,
    ) -> Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let query = parts.uri.query().unwrap_or("");
        let is_apply = parts.method == http::Method::PATCH
            && parts.uri.path().contains("/namespaces/demo/")
            && query.contains("fieldManager=capstan")
            && !query.contains("dryRun");
        let mut out = http::Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.path_and_query().unwrap().as_str());
        for (k, v) in &parts.headers {
            if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
                out = out.header(k, v);
            }
        }
        let out = out.body(kube::client::Body::from(body.to_vec())).unwrap();
        if is_apply {
            let now = meter.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            meter.max.fetch_max(now, Ordering::SeqCst);
            meter.total.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let res = upstream.send(out).await;
        if is_apply {
            meter.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let (mut parts, body) = res.unwrap().into_parts();
        let body = body.collect_bytes().await.unwrap();
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        Response::from_parts(parts, axum::body::Body::from(body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_run_concurrently_up_to_the_bound() {
    let f = Fixture::new();
    f.cluster.apply(NAMESPACE);
    for i in 0..12 {
        f.write(&format!("cm-{i}.yaml"), &cm(&format!("cm-{i}"), "v"));
    }
    let (client, meter) = meter::start(f.cluster.client().await).await;
    let dest = Destination::new(client, "demo");
    let checkout = local::open(f.dir.path()).unwrap();
    let scopes = dest.scopes().await.unwrap();
    let desired = render::render(&checkout, &RenderOptions::default(), "demo", &scopes)
        .await
        .unwrap();
    let mut o = opts();
    o.plan.concurrency = 3;
    let report = sync(&dest, desired, &checkout.revision, &o).await;
    assert!(report.succeeded(), "{:?}", report.error);
    use std::sync::atomic::Ordering;
    assert_eq!(
        meter.total.load(Ordering::SeqCst),
        12,
        "one apply per object"
    );
    assert_eq!(
        meter.max.load(Ordering::SeqCst),
        3,
        "three applies at once, never more"
    );
    let names = f
        .cluster
        .kubectl_ok(&["get", "cm", "-n", "demo", "-o", "name"]);
    assert_eq!(names.matches("configmap/cm-").count(), 12, "{names}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_changes_nothing_writes_nothing_not_even_the_inventory() {
    let log = std::sync::Arc::new(capstan_apiserver::http::requests::RequestLog::default());
    let mut server = TestCluster::default_options();
    server.request_log = Some(log.clone());
    let f = Fixture {
        cluster: TestCluster::start_with(server),
        dir: tempfile::tempdir().unwrap(),
    };
    f.write("ns.yaml", NAMESPACE);
    f.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n",
    );
    let first = f.sync().await;
    assert!(first.succeeded(), "{:?}", first.error);
    let writes = |records: &[capstan_apiserver::http::requests::RequestRecord]| -> Vec<String> {
        records
            .iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.verb,
                    r.resource,
                    r.name.as_deref().unwrap_or("")
                )
            })
            .collect()
    };
    let before = log.records().len();
    assert!(
        writes(&log.records())
            .iter()
            .any(|w| w.starts_with("patch configmaps capstan-inventory-demo-app")),
        "the first sync records its inventory"
    );

    let second = f.sync().await;
    assert!(second.succeeded(), "{:?}", second.error);
    let again = log.records()[before..].to_vec();
    assert!(!again.is_empty());
    assert_eq!(writes(&again), Vec::<String>::new(), "{again:?}");

    // a change: the plan's server-side dry run of the object, its apply, and the
    // inventory's new revision — nothing else
    f.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: w\n",
    );
    let before = log.records().len();
    let third = f.sync().await;
    assert!(third.succeeded(), "{:?}", third.error);
    let w = writes(&log.records()[before..]);
    assert_eq!(
        w,
        [
            "patch configmaps c",
            "patch configmaps c",
            "patch configmaps capstan-inventory-demo-app"
        ],
        "{w:?}"
    );
}
