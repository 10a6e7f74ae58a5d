//! The embedded API server for tests, driven by kubectl and kube-rs.

use capstan_testkit::TestCluster;
use k8s_openapi::api::core::v1::Namespace;

#[test]
fn kubectl_lists_default_namespace() {
    let cluster = TestCluster::start();
    let out = cluster.kubectl(&["get", "ns"]);
    capstan_testkit::process::assert_success(&out, "kubectl get ns");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("default ")),
        "{stdout}"
    );
    assert!(cluster.kubeconfig_path().is_file());
    assert!(cluster.kubeconfig_yaml().contains(cluster.url()));
}

#[test]
fn apply_and_read_back_with_kube_client() {
    let cluster = TestCluster::start();
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n");
    let names = cluster.block_on(async {
        let client = cluster.client().await;
        let api: kube::Api<Namespace> = kube::Api::all(client);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect::<Vec<_>>()
    });
    assert!(names.contains(&"demo".to_string()), "{names:?}");
    assert!(
        cluster
            .cluster()
            .store
            .get(
                &cluster
                    .cluster()
                    .registry
                    .get("", "v1", "namespaces")
                    .unwrap()
                    .group_resource(),
                "",
                "demo"
            )
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn usable_from_async_tests() {
    let cluster = TestCluster::start();
    let client = cluster.client().await;
    let api: kube::Api<Namespace> = kube::Api::all(client);
    assert!(api.get("default").await.is_ok());
    drop(cluster);
}
