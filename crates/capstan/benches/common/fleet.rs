//! The fleet the HTTP benchmarks (`api`, `ui`) serve: N Applications with varied sync
//! and health states, labels, a history entry and a last sync each, in the embedded API
//! server, watched by a standby controller (another replica holds the Lease, so it fills
//! its cache but reconciles nothing and the statuses stay as written), and
//! `capstan-server` on loopback. The bench token is [`TOKEN`].

use std::time::{Duration, Instant};

use capstan_controller::{ControllerOptions, Election, Handle};
use capstan_testkit::TestCluster;
use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

/// The bench user's static token.
pub const TOKEN: &str = "bench-token-0123456789abcdef";

/// An environment variable as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile of `sorted`, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Server-side apply `obj` as `name`.
pub async fn apply(api: &Api<DynamicObject>, name: &str, obj: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::apply("bench").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// The embedded API server without simulation.
pub fn cluster() -> TestCluster {
    TestCluster::start_with(capstan_apiserver::ServerOptions {
        simulation: None,
        ..TestCluster::default_options()
    })
}

/// The fleet of `apps` Applications and a server for them, the bench user bound to
/// `role`: the server's base URL and the controller's handle.
pub async fn serve(cluster: &TestCluster, apps: usize, role: &str) -> (String, Handle) {
    let client = cluster.client().await;
    capstan_controller::install::install_crds(&client)
        .await
        .unwrap();
    let ns_ar = ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&());
    let namespaces: Api<DynamicObject> = Api::all_with(client.clone(), &ns_ar);
    let spaces = ["capstan-system", "team-a", "team-b", "team-c", "team-d"];
    for ns in spaces {
        apply(
            &namespaces,
            ns,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "capstan-system",
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    apply(
        &secrets,
        "capstan-api-tokens",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "capstan-api-tokens", "namespace": "capstan-system"},
            "stringData": {"bench": TOKEN},
        }),
    )
    .await;
    let maps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "capstan-system",
        &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    apply(
        &maps,
        "capstan-rbac",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "capstan-rbac", "namespace": "capstan-system"},
            "data": {"policy.yaml": format!("bindings:\n  - role: {role}\n    users: [bench]\n")},
        }),
    )
    .await;
    // another replica leads: this controller only watches
    let leases: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "capstan-system",
        &ApiResource::erase::<k8s_openapi::api::coordination::v1::Lease>(&()),
    );
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    apply(&leases, "capstan-controller", json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "capstan-controller", "namespace": "capstan-system"},
        "spec": {"holderIdentity": "the-other-replica", "leaseDurationSeconds": 36000, "acquireTime": now, "renewTime": now},
    }))
    .await;

    let t = Instant::now();
    let app_ar = ApiResource::erase::<capstan_controller::Application>(&());
    let syncs = ["Synced", "Synced", "Synced", "OutOfSync", "Unknown"];
    let healths = ["Healthy", "Healthy", "Progressing", "Degraded", "Missing"];
    stream::iter(0..apps)
        .map(|i| {
            let (client, app_ar) = (client.clone(), app_ar.clone());
            async move {
                let ns = spaces[1 + i % 4];
                let name = format!("web-{i:05}");
                let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &app_ar);
                let sha = format!("{:040x}", i * 7919 + 1);
                apply(&api, &name, json!({
                    "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
                    "metadata": {"name": name, "namespace": ns, "labels": {"team": format!("t{}", i % 10), "tier": if i % 3 == 0 { "prod" } else { "dev" }}},
                    "spec": {"source": {"repoURL": format!("https://git.example/fleet-{}.git", i % 20), "path": format!("apps/{name}")}},
                }))
                .await;
                let status = json!({
                    "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
                    "status": {
                        "sync": {"status": syncs[i % 5], "revision": sha, "shortRevision": &sha[..7]},
                        "health": {"status": healths[(i / 5) % 5]},
                        "operationState": {"phase": "Succeeded", "message": "synced", "revision": sha, "trigger": "automated",
                            "startedAt": "2026-12-01T10:00:00Z", "finishedAt": format!("2026-12-01T10:{:02}:{:02}Z", (i / 60) % 60, i % 60)},
                        "history": [{"id": 1, "revision": sha, "author": "Dev <dev@example.com>", "message": format!("deploy {name}"), "deployedAt": "2026-12-01T10:00:00Z", "trigger": "automated", "result": "Succeeded"}],
                    },
                });
                api.patch_status(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&status))
                    .await
                    .unwrap_or_else(|e| panic!("status of {name}: {e}"));
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "created {apps} Applications with status in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // the controller's state directory lives as long as the bench
    let state: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let (handle, running) = capstan_controller::start(
        client.clone(),
        ControllerOptions {
            state_dir: state.path().to_path_buf(),
            election: Some(Election {
                namespace: "capstan-system".into(),
                name: "capstan-controller".into(),
                identity: "bench".into(),
                lease_duration: Duration::from_secs(36000),
                renew: Duration::from_secs(3600),
            }),
            ..Default::default()
        },
        None,
    );
    tokio::spawn(running);
    let bound = capstan_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", bound.addr);
    let opts = capstan_server::ServerOptions {
        listen: bound.addr,
        api: capstan_server::api::ApiOptions {
            // the bench measures the list, not reading the Secret
            config_ttl: Duration::from_secs(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    tokio::spawn(bound.serve(
        capstan_server::AppState::new(handle.clone(), opts),
        std::future::pending(),
    ));
    let t = Instant::now();
    while handle.applications.state().len() < apps || !handle.is_ready() {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the cache did not fill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the controller's cache holds {apps} Applications after {:.1}s",
        t.elapsed().as_secs_f64()
    );

    (base, handle)
}
