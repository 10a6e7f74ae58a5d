//! Every app of Argo CD's example repository (`argoproj/argocd-example-apps`, a
//! data-only snapshot in `../shared/conformance/repos/`) renders and syncs unchanged
//! against the embedded API server, each into a namespace of its own created with
//! `CreateNamespace=true` — as its `apps/` app-of-apps deploys them with Argo CD.
//!
//! The cluster has what a cluster running these apps has: Argo Rollouts' `Rollout` kind
//! (for `blue-green`) and Argo CD's `Application` kind with its `argocd` namespace (for
//! `apps/`), installed as CRDs that keep every field.
//!
//! One app cannot be rendered here, named in [`NEEDS_THE_NETWORK`]: `helm-dependency`'s
//! chart depends on `wordpress` 9.0.3 from `https://charts.helm.sh/stable`, which the
//! test machine cannot reach (and which that repository no longer serves); the test
//! checks that the render fails with an error naming the missing dependency.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_core::{HookPhase, Outcome, SyncOptionSet};
use capstan_engine::destination::Destination;
use capstan_engine::render::{self, HelmOptions, RenderOptions};
use capstan_engine::source::local;
use capstan_engine::sync::{self, SyncOptions};
use capstan_testkit::TestCluster;

/// Apps whose render needs a chart repository on the internet.
const NEEDS_THE_NETWORK: &[&str] = &["helm-dependency"];

fn snapshot() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/repos/argocd-example-apps");
    if dir.join("guestbook").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the snapshot is missing at {}",
        dir.display()
    );
    eprintln!(
        "{} not found: Argo CD's example apps were not checked",
        dir.display()
    );
    None
}

const CRDS: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rollouts.argoproj.io
spec:
  group: argoproj.io
  names: {kind: Rollout, listKind: RolloutList, plural: rollouts, singular: rollout}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: applications.argoproj.io
spec:
  group: argoproj.io
  names: {kind: Application, listKind: ApplicationList, plural: applications, singular: application}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: v1
kind: Namespace
metadata:
  name: argocd
"#;

/// Render `app` of the snapshot (Helm releases named after the app, as `apps/` names
/// them) and sync it into the namespace of the same name.
async fn sync_app(
    cluster: &TestCluster,
    repo: &Path,
    app: &str,
) -> Result<sync::SyncReport, String> {
    let dest = Destination::new(cluster.client().await, app);
    let checkout = local::open(&repo.join(app)).map_err(|e| e.to_string())?;
    let scopes = dest.scopes().await.map_err(|e| e.to_string())?;
    let opts = RenderOptions {
        helm: HelmOptions {
            release_name: Some(app.to_string()),
            namespace: Some(app.to_string()),
            binary: Some(capstan_testkit::tools::helm().display().to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let desired = render::render(&checkout, &opts, app, &scopes)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut sync_opts = SyncOptions::new(app);
    sync_opts.prune = true;
    sync_opts.timeout = Duration::from_secs(60);
    sync_opts.plan.sync_options = SyncOptionSet::default()
        .with(["CreateNamespace=true"])
        .unwrap();
    Ok(sync::sync(&dest, desired, &checkout.revision, &sync_opts).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_app_syncs_unchanged() {
    let Some(snapshot) = snapshot() else { return };
    let root = tempfile::tempdir().unwrap();
    capstan_testkit::copy_tree(&snapshot, root.path());
    let cluster = TestCluster::start();
    cluster.apply(CRDS);
    let mut apps: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    apps.sort();
    assert!(apps.len() >= 10, "{apps:?}");
    let mut synced = Vec::new();
    for app in &apps {
        if NEEDS_THE_NETWORK.contains(&app.as_str()) {
            let err = sync_app(&cluster, root.path(), app)
                .await
                .err()
                .unwrap_or_else(|| panic!("{app} rendered without its dependency"));
            assert!(
                err.contains("wordpress") && err.contains("helm dependency build"),
                "{app}: the error names the missing dependency and the fix: {err}"
            );
            continue;
        }
        let report = sync_app(&cluster, root.path(), app)
            .await
            .unwrap_or_else(|e| panic!("{app}: {e}"));
        assert!(report.succeeded(), "{app}: {:?}", report.error);
        let failed: Vec<String> = report
            .changes
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Some(Outcome::Failed { .. })))
            .map(|e| e.object.to_string())
            .collect();
        assert!(failed.is_empty(), "{app}: {failed:?}");
        assert!(
            report
                .hooks
                .iter()
                .all(|h| h.result.phase == HookPhase::Succeeded),
            "{app}: {:?}",
            report.hooks
        );
        synced.push((app.clone(), report));
    }
    let report = |name: &str| &synced.iter().find(|(a, _)| a == name).unwrap().1;

    // sync-waves: its generateName PreSync hook, its Sync hooks between the waves
    let waves = report("sync-waves");
    let hooks: Vec<(String, String)> = waves
        .hooks
        .iter()
        .map(|h| (h.result.hook_type.to_string(), h.object.name.clone()))
        .collect();
    assert_eq!(hooks.len(), 3, "{hooks:?}");
    assert!(
        hooks[0].0 == "PreSync" && hooks[0].1.starts_with("upgrade-sql-schema"),
        "{hooks:?}"
    );
    assert_eq!(hooks[1], ("Sync".into(), "maint-page-up".into()));
    assert_eq!(hooks[2], ("Sync".into(), "maint-page-down".into()));
    for (kind, name) in [
        ("ReplicaSet", "backend"),
        ("ReplicaSet", "frontend"),
        ("Service", "frontend"),
    ] {
        let id = waves
            .changes
            .entries
            .iter()
            .find(|e| e.object.kind == kind && e.object.name == name)
            .unwrap_or_else(|| panic!("sync-waves: no {kind}/{name}"));
        assert_eq!(
            id.outcome,
            Some(Outcome::Created),
            "sync-waves: {kind}/{name}"
        );
    }

    // helm-hooks and pre-post-sync: Helm's and Argo CD's hook annotations
    assert!(!report("helm-hooks").hooks.is_empty());
    let pre_post: Vec<String> = report("pre-post-sync")
        .hooks
        .iter()
        .map(|h| h.result.hook_type.to_string())
        .collect();
    assert_eq!(pre_post, ["PreSync", "PostSync"]);

    // apps: the app-of-apps makes Argo CD Applications in the argocd namespace
    let listed = cluster.kubectl_ok(&[
        "get",
        "applications.argoproj.io",
        "-n",
        "argocd",
        "-o",
        "name",
    ]);
    assert!(listed.contains("example.guestbook"), "{listed}");

    // a second round changes nothing
    for (app, _) in &synced {
        let again = sync_app(&cluster, root.path(), app).await.unwrap();
        assert!(again.succeeded(), "{app}: {:?}", again.error);
        let changed: Vec<String> = again
            .changes
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Some(Outcome::Created | Outcome::Configured)))
            .map(|e| e.object.to_string())
            .collect();
        assert!(
            changed.is_empty(),
            "{app}: the second sync changed {changed:?}"
        );
    }
}
