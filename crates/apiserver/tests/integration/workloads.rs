//! The simulated workload controllers, seen as a cluster's users see them: a
//! Deployment makes ReplicaSets and Pods, `kubectl rollout` status, history, undo and
//! restart work from them, deletion cascades, StatefulSets, DaemonSets and Jobs have
//! their Pods, and Events say what the controllers did.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::util::{TestServer, eventually};

const SETTLE: Duration = Duration::from_secs(15);

fn deployment(name: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    \
         metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - {{name: app, image: \"{image}\"}}\n"
    )
}

fn json(s: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&s.kubectl_ok(&all)).expect("kubectl prints JSON")
}

fn items(s: &TestServer, args: &[&str]) -> Vec<Value> {
    json(s, args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(list: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = list
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Wait until the Pods selected by `selector` are `n`, all ready, and return them.
fn ready_pods(s: &TestServer, selector: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = eventually(SETTLE, || {
        last = items(s, &["get", "pods", "-l", selector]);
        last.len() == n && last.iter().all(ready)
    });
    assert!(
        ok,
        "{n} ready pods for {selector}, got: {:#?}",
        names(&last)
    );
    last
}

fn rollout_status(s: &TestServer, target: &str) -> String {
    s.kubectl_ok(&["rollout", "status", target, "--timeout=15s"])
}

/// The ReplicaSets of Deployment `name`, by revision.
fn replica_sets(s: &TestServer, name: &str) -> Vec<(i64, Value)> {
    let mut out: Vec<(i64, Value)> = items(s, &["get", "rs", "-l", &format!("app={name}")])
        .into_iter()
        .map(|rs| {
            let rev = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            (rev, rs)
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    out
}

#[test]
fn a_deployment_makes_a_replica_set_and_its_running_pods() {
    let s = TestServer::start();
    s.apply(&deployment("web", 3, "nginx:1.27"));
    let out = rollout_status(&s, "deployment/web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    let (d, sets, pods) = s.block_on(async {
        let client = s.client().await;
        let d = Api::<Deployment>::default_namespaced(client.clone())
            .get("web")
            .await
            .unwrap();
        let sets = Api::<ReplicaSet>::default_namespaced(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let pods = Api::<Pod>::default_namespaced(client)
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items;
        (d, sets, pods)
    });
    assert_eq!(sets.len(), 1, "one template, one ReplicaSet");
    let rs = &sets[0];
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Deployment", "web", Some(true), Some(true))
    );
    assert_eq!(Some(&owner.uid), d.metadata.uid.as_ref());
    let annotations = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "1");
    assert_eq!(
        annotations["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(annotations["deployment.kubernetes.io/max-replicas"], "4");
    let spec = &rs.spec;
    assert_eq!(spec.replicas, Some(3));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(
        (
            selector["app"].as_str(),
            selector["pod-template-hash"].as_str()
        ),
        ("web", hash.as_str())
    );
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );

    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap();
        let suffix = name
            .strip_prefix(&format!("web-{hash}-"))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(suffix.len(), 5, "{name}");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (labels["app"].as_str(), labels["pod-template-hash"].as_str()),
            ("web", hash.as_str())
        );
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReplicaSet", Some(true))
        );
        assert_eq!(Some(&owner.uid), rs.metadata.uid.as_ref());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("nginx:1.27"));
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
    }

    let status = d.status.unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(status.observed_generation, Some(1));
    let reason = |ty: &str| {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_.as_deref() == Some(ty))
            .and_then(|c| c.reason.clone())
    };
    assert_eq!(
        reason("Available").as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(
        reason("Progressing").as_deref(),
        Some("NewReplicaSetAvailable")
    );

    let table = s.kubectl_ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table
            .lines()
            .all(|l| l.contains("1/1") && l.contains("Running")),
        "{table}"
    );
    let all = s.kubectl_ok(&["get", "all"]);
    for line in ["deployment.apps/web", "replicaset.apps/web-", "pod/web-"] {
        assert!(all.contains(line), "{line} in:\n{all}");
    }
}

#[test]
fn rollout_history_undo_and_restart_follow_the_replica_sets() {
    let s = TestServer::start();
    s.apply(&deployment("web", 2, "nginx:1.27"));
    rollout_status(&s, "deployment/web");
    s.kubectl_ok(&["set", "image", "deployment/web", "app=nginx:1.28"]);
    s.kubectl_ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=image 1.28",
    ]);
    rollout_status(&s, "deployment/web");
    let sets = replica_sets(&s, "web");
    assert_eq!(sets.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [1, 2]);
    let first = sets[0].1["metadata"]["name"].as_str().unwrap().to_string();
    let second = sets[1].1["metadata"]["name"].as_str().unwrap().to_string();
    assert_ne!(first, second, "a new template, a new ReplicaSet");
    assert_eq!(
        sets[0].1["spec"]["replicas"], 0,
        "the old one is scaled to 0"
    );
    let pods = ready_pods(&s, "app=web", 2);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.28"),
        "the old Pods are gone"
    );

    let history = s.kubectl_ok(&["rollout", "history", "deployment/web"]);
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][0], "1", "{history}");
    assert_eq!(rows[1][..], ["2", "image", "1.28"], "{history}");
    let detail = s.kubectl_ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(detail.contains("nginx:1.27"), "{detail}");

    let out = s.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&s, "deployment/web");
    let image = s.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.27", "the old template is back");
    let sets = replica_sets(&s, "web");
    let revisions: Vec<(i64, &str)> = sets
        .iter()
        .map(|(r, rs)| (*r, rs["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        revisions,
        [(2, second.as_str()), (3, first.as_str())],
        "the old ReplicaSet is the newest revision"
    );
    ready_pods(&s, &format!("pod-template-hash={}", &first[4..]), 2);

    s.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&s, "deployment/web");
    let sets = replica_sets(&s, "web");
    assert_eq!(sets.len(), 3, "{sets:?}");
    let (rev, newest) = sets.last().unwrap();
    assert_eq!(*rev, 4);
    assert!(
        newest["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    let hash = newest["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    ready_pods(&s, &format!("pod-template-hash={hash}"), 2);
    assert!(
        sets[..2].iter().all(|(_, rs)| rs["spec"]["replicas"] == 0),
        "{sets:?}"
    );
}

#[test]
fn scaling_changes_only_replicas_and_deletion_cascades() {
    let s = TestServer::start();
    s.apply(&deployment("web", 2, "nginx:1.27"));
    ready_pods(&s, "app=web", 2);
    let before = names(&items(&s, &["get", "rs"]));
    s.kubectl_ok(&["scale", "deployment/web", "--replicas=0"]);
    assert!(eventually(SETTLE, || items(
        &s,
        &["get", "pods", "-l", "app=web"]
    )
    .is_empty()));
    rollout_status(&s, "deployment/web");
    s.kubectl_ok(&["scale", "deployment/web", "--replicas=3"]);
    ready_pods(&s, "app=web", 3);
    rollout_status(&s, "deployment/web");
    assert_eq!(
        names(&items(&s, &["get", "rs"])),
        before,
        "scaling makes no ReplicaSet"
    );
    assert_eq!(replica_sets(&s, "web")[0].0, 1, "nor a new revision");

    s.kubectl_ok(&["delete", "deployment", "web"]);
    assert!(
        eventually(SETTLE, || items(&s, &["get", "rs,pods"]).is_empty()),
        "the ReplicaSet and its Pods go with the Deployment"
    );

    s.apply(&deployment("api", 2, "nginx:1.27"));
    ready_pods(&s, "app=api", 2);
    s.kubectl_ok(&[
        "delete",
        "deployment",
        "api",
        "--cascade=foreground",
        "--timeout=15s",
    ]);
    assert!(
        items(&s, &["get", "deploy,rs,pods"]).is_empty(),
        "foreground deletion waits for the dependents"
    );
    let all = s.kubectl_ok(&["get", "all", "--no-headers"]);
    assert!(
        all.lines()
            .all(|l| l.starts_with("service/kubernetes") || l.trim().is_empty()),
        "{all}"
    );
}

#[test]
fn a_failing_deployment_has_crash_looping_pods() {
    let s = TestServer::start();
    s.apply(&crate::util::fixture(
        "deployment-progress-deadline-exceeded.yaml",
    ));
    let out = s.kubectl(&["rollout", "status", "deployment/doomed", "--timeout=15s"]);
    assert!(!out.status.success());
    assert!(
        crate::util::stderr(&out).contains("exceeded its progress deadline"),
        "{}",
        crate::util::stderr(&out)
    );
    let table = s.kubectl_ok(&["get", "pods", "-l", "app=doomed", "--no-headers"]);
    assert!(
        table.lines().count() == 1 && table.contains("CrashLoopBackOff") && table.contains("0/1"),
        "{table}"
    );
}

#[test]
fn stateful_sets_daemon_sets_and_jobs_have_their_pods() {
    let s = TestServer::start();
    s.apply(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: default}\nspec:\n  replicas: 2\n  serviceName: db\n  \
         selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - {name: db, image: postgres:16}\n",
    );
    let pods = ready_pods(&s, "app=db", 2);
    assert_eq!(names(&pods), ["db-0", "db-1"]);
    let sts = json(&s, &["get", "sts", "db"]);
    let revision = sts["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    for (i, pod) in pods.iter().enumerate() {
        assert_eq!(
            pod["metadata"]["labels"]["controller-revision-hash"],
            revision.as_str()
        );
        assert_eq!(
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            i.to_string()
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert_eq!(pod["spec"]["hostname"], format!("db-{i}"));
    }
    assert_eq!(
        names(&items(&s, &["get", "controllerrevisions"])),
        [revision.as_str()]
    );
    s.kubectl_ok(&["set", "image", "statefulset/db", "db=postgres:17"]);
    rollout_status(&s, "statefulset/db");
    let pods = ready_pods(&s, "app=db", 2);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "postgres:17"),
        "{pods:#?}"
    );
    assert_eq!(items(&s, &["get", "controllerrevisions"]).len(), 2);

    // a DaemonSet: one Pod without Nodes, then one per Node
    s.apply(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: default}\nspec:\n  \
         selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - {name: a, image: fluent-bit:3}\n",
    );
    ready_pods(&s, "app=agent", 1);
    s.apply("apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n");
    let pods = ready_pods(&s, "app=agent", 2);
    let mut nodes: Vec<&str> = pods
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or(""))
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node-a", "node-b"]);
    let ds = json(&s, &["get", "ds", "agent"]);
    assert!(
        eventually(
            SETTLE,
            || json(&s, &["get", "ds", "agent"])["status"]["numberReady"] == 2
        ),
        "{ds}"
    );

    // a Job: Pods until enough succeed
    s.apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate, namespace: default}\nspec:\n  completions: 2\n  template:\n    \
         spec:\n      restartPolicy: Never\n      containers:\n      - {name: m, image: busybox, command: [\"true\"]}\n",
    );
    s.kubectl_ok(&[
        "wait",
        "--for=condition=Complete",
        "job/migrate",
        "--timeout=15s",
    ]);
    let job = json(&s, &["get", "job", "migrate"]);
    let pods = items(&s, &["get", "pods", "-l", "job-name=migrate"]);
    assert_eq!(pods.len(), 2, "{pods:#?}");
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Succeeded");
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("migrate-")
        );
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/job-name"], "migrate");
        assert_eq!(labels["controller-uid"], job["metadata"]["uid"]);
    }
    assert_eq!(job["status"]["succeeded"], 2);
    // the pods scheduled on the cluster's nodes
    assert!(pods.iter().all(|p| p["spec"]["nodeName"].is_string()));
}

#[test]
fn events_say_what_the_controllers_did() {
    let s = TestServer::start();
    s.apply(&deployment("web", 2, "nginx:1.27"));
    ready_pods(&s, "app=web", 2);
    let events = items(&s, &["get", "events"]);
    let find = |reason: &str, kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["reason"] == reason && e["involvedObject"]["kind"] == kind)
            .collect()
    };
    let scaled = find("ScalingReplicaSet", "Deployment");
    assert_eq!(scaled.len(), 1, "{events:#?}");
    let message = scaled[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Scaled up replica set web-") && message.ends_with(" from 0 to 2"),
        "{message}"
    );
    assert_eq!(scaled[0]["source"]["component"], "deployment-controller");
    let created = find("SuccessfulCreate", "ReplicaSet");
    assert_eq!(created.len(), 2, "{events:#?}");
    assert!(created.iter().all(|e| {
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Created pod: web-")
            && e["source"]["component"] == "replicaset-controller"
    }));
    let table = s.kubectl_ok(&["get", "events"]);
    assert!(
        table.contains("ScalingReplicaSet") && table.contains("SuccessfulCreate"),
        "{table}"
    );
    let described = s.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(
        described.contains("Scaled up replica set web-"),
        "{described}"
    );
    assert!(described.contains("NewReplicaSet:"), "{described}");
}
