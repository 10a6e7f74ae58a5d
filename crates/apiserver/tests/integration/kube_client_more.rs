//! More of the kube-rs client against the embedded API server over HTTPS: delete
//! preconditions, simulated workload status, dry runs, strategic merge keys, field
//! selectors across namespaces, authentication, `/version`, server-owned metadata and
//! watches of custom resources.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
    WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::util::{api_error, cm, namespace, poll_until, start_async, test_options};

/// How long a simulated workload may take to settle (the tests' delay is 200 ms).
const SETTLE: Duration = Duration::from_secs(10);

fn from_json<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("a valid object")
}

fn preconditions(uid: Option<&str>, resource_version: Option<&str>) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: uid.map(str::to_string),
            resource_version: resource_version.map(str::to_string),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_preconditions_conflict_until_uid_and_resource_version_match() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let made = api
        .create(
            &PostParams::default(),
            &cm("held", json!({}), json!({"k": "1"})),
        )
        .await
        .unwrap();
    let uid = made.metadata.uid.unwrap();
    let first_rv = made.metadata.resource_version.unwrap();

    let (code, reason, message) = api_error(
        api.delete("held", &preconditions(Some("not-the-uid"), None))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.starts_with(
            "Operation cannot be fulfilled on configmaps \"held\": StorageError: invalid object, Code: 4"
        ),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            "AdditionalErrorMsg: Precondition failed: UID in precondition: not-the-uid, UID in object meta: {uid}"
        )),
        "{message}"
    );
    assert!(
        api.get_opt("held").await.unwrap().is_some(),
        "a failed precondition deletes nothing"
    );

    let changed = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
    let rv = changed.metadata.resource_version.unwrap();
    let (code, reason, message) = api_error(
        api.delete("held", &preconditions(Some(&uid), Some(&first_rv)))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.ends_with(&format!(
            "Precondition failed: ResourceVersion in precondition: {first_rv}, ResourceVersion in object meta: {rv}"
        )),
        "{message}"
    );
    let kept = api.get("held").await.expect("still there");
    assert_eq!(kept.data.unwrap()["k"], "2");
    assert_eq!(kept.metadata.resource_version.as_deref(), Some(rv.as_str()));

    api.delete("held", &preconditions(Some(&uid), Some(&rv)))
        .await
        .expect("matching preconditions delete");
    assert!(api.get_opt("held").await.unwrap().is_none());
    server.shutdown().await;
}

fn template(app: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}},
           "spec": {"containers": [{"name": "c", "image": image}]}})
}

fn workload(kind: &str, name: &str, spec: Value, fail: bool) -> Value {
    let mut obj =
        json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec});
    if kind == "Job" {
        obj["apiVersion"] = json!("batch/v1");
    }
    if fail {
        obj["metadata"]["annotations"] = json!({"simulate.capstan.dev/fail": "true"});
    }
    obj
}

/// Poll `api` for `name` until `done` holds for it.
async fn settled<K>(api: &Api<K>, name: &str, done: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let found = poll_until(SETTLE, || async {
        let obj = api.get(name).await.expect("get");
        done(&obj).then_some(obj)
    })
    .await;
    match found {
        Some(obj) => obj,
        None => panic!(
            "{name} did not settle within {SETTLE:?}: {:?}",
            api.get(name).await
        ),
    }
}

/// After an object settled, the simulation leaves it alone: no flapping status.
async fn stays_put<K>(api: &Api<K>, name: &str, rv: Option<String>)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    // a few simulation delays (200 ms each)
    tokio::time::sleep(Duration::from_millis(800)).await;
    let now = api.get(name).await.expect("get");
    assert_eq!(
        now.meta().resource_version,
        rv,
        "{name} changed after it settled: {now:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_report_ready_replicas_or_a_replica_failure() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ReplicaSet> = Api::namespaced(client, "default");
    let spec = json!({"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web", "nginx:1.27")});
    api.create(
        &PostParams::default(),
        &from_json(workload("ReplicaSet", "web", spec.clone(), false)),
    )
    .await
    .unwrap();
    let rs = settled(&api, "web", |rs| {
        rs.status.as_ref().and_then(|s| s.ready_replicas) == Some(3)
    })
    .await;
    let s = rs.status.clone().unwrap();
    assert_eq!(
        (
            s.replicas,
            s.fully_labeled_replicas,
            s.available_replicas,
            s.observed_generation
        ),
        (3, Some(3), Some(3), Some(1))
    );
    assert!(s.conditions.unwrap_or_default().is_empty());
    stays_put(&api, "web", rs.metadata.resource_version).await;

    // scaling is a spec change: a new generation, observed once it is done
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let scaled = settled(&api, "web", |rs| {
        rs.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == Some(2) && s.ready_replicas == Some(5))
    })
    .await;
    assert_eq!(scaled.status.unwrap().available_replicas, Some(5));

    api.create(
        &PostParams::default(),
        &from_json(workload("ReplicaSet", "broken", spec, true)),
    )
    .await
    .unwrap();
    let broken = settled(&api, "broken", |rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_.as_deref() == Some("ReplicaFailure"))
            })
    })
    .await;
    let s = broken.status.clone().unwrap();
    let failure = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (failure.status.as_deref(), failure.reason.as_deref()),
        (Some("True"), Some("FailedCreate"))
    );
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        (s.replicas, s.ready_replicas, s.available_replicas),
        (0, None, None),
        "no pod could be created"
    );
    stays_put(&api, "broken", broken.metadata.resource_version).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_sets_roll_to_a_new_revision_and_daemon_sets_become_available() {
    let (server, client) = start_async(test_options()).await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let spec = json!({"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db", "postgres:16")});
    sts.create(
        &PostParams::default(),
        &from_json(workload("StatefulSet", "db", spec, false)),
    )
    .await
    .unwrap();
    let rolled_out = |generation: i64| {
        move |s: &StatefulSet| {
            s.status.as_ref().is_some_and(|st| {
                st.observed_generation == Some(generation)
                    && st.ready_replicas == Some(2)
                    && st.current_revision.is_some()
                    && st.current_revision == st.update_revision
            })
        }
    };
    let first = settled(&sts, "db", rolled_out(1)).await;
    let s = first.status.clone().unwrap();
    assert_eq!(
        (
            s.replicas,
            s.current_replicas,
            s.updated_replicas,
            s.available_replicas
        ),
        (2, Some(2), Some(2), Some(2))
    );
    let first_revision = s.current_revision.unwrap();
    assert!(first_revision.starts_with("db-"), "{first_revision}");
    stays_put(&sts, "db", first.metadata.resource_version).await;

    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "postgres:17"}]}}}}),
        ),
    )
    .await
    .unwrap();
    let second = settled(&sts, "db", rolled_out(2)).await;
    let s = second.status.unwrap();
    assert_ne!(
        s.update_revision.as_deref(),
        Some(first_revision.as_str()),
        "a new template is a new revision"
    );
    assert_eq!(s.updated_replicas, Some(2));

    let ds: Api<DaemonSet> = Api::namespaced(client, "default");
    let spec = json!({"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", "fluent-bit:3")});
    ds.create(
        &PostParams::default(),
        &from_json(workload("DaemonSet", "agent", spec, false)),
    )
    .await
    .unwrap();
    let agent = settled(&ds, "agent", |d| {
        d.status
            .as_ref()
            .is_some_and(|s| s.number_available == Some(1))
    })
    .await;
    let s = agent.status.clone().unwrap();
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.updated_number_scheduled,
            s.number_ready,
            s.number_misscheduled,
            s.number_unavailable,
            s.observed_generation
        ),
        (1, 1, Some(1), 1, 0, None, Some(1))
    );
    stays_put(&ds, "agent", agent.metadata.resource_version).await;
    server.shutdown().await;
}

fn condition<'a>(job: &'a Job, ty: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_fail_with_backoff_limit_exceeded() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<Job> = Api::namespaced(client, "default");
    let spec = json!({"completions": 2, "backoffLimit": 1, "template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}});
    api.create(
        &PostParams::default(),
        &from_json(workload("Job", "once", spec.clone(), false)),
    )
    .await
    .unwrap();
    let done = settled(&api, "once", |j| {
        condition(j, "Complete").is_some_and(|c| c.status == "True")
    })
    .await;
    let complete = condition(&done, "Complete").unwrap();
    assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
    let s = done.status.clone().unwrap();
    assert_eq!((s.succeeded, s.failed, s.active), (Some(2), None, None));
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    assert!(condition(&done, "Failed").is_none());
    stays_put(&api, "once", done.metadata.resource_version).await;

    api.create(
        &PostParams::default(),
        &from_json(workload("Job", "doomed", spec, true)),
    )
    .await
    .unwrap();
    let failed = settled(&api, "doomed", |j| {
        condition(j, "Failed").is_some_and(|c| c.status == "True")
    })
    .await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("BackoffLimitExceeded"));
    let s = failed.status.clone().unwrap();
    assert_eq!(
        (s.failed, s.succeeded, s.completion_time),
        (Some(2), None, None),
        "backoffLimit 1: the second failure ends it"
    );
    assert!(condition(&failed, "Complete").is_none());
    stays_put(&api, "doomed", failed.metadata.resource_version).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_of_update_apply_and_delete_collection_store_nothing() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api
        .create(
            &PostParams::default(),
            &cm("a", json!({"set": "x"}), json!({"k": "1"})),
        )
        .await
        .unwrap();
    let b = api
        .create(
            &PostParams::default(),
            &cm("b", json!({"set": "x"}), json!({})),
        )
        .await
        .unwrap();
    let unchanged = |name: &'static str, like: ConfigMap| {
        let api = api.clone();
        async move {
            let now = api.get(name).await.expect("still there");
            assert_eq!(
                now.metadata.resource_version, like.metadata.resource_version,
                "{name}: a dry run stores nothing"
            );
            assert_eq!(now.data, like.data);
        }
    };

    let mut replaced = a.clone();
    replaced.data = Some([("k".to_string(), "2".to_string())].into());
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let would = api.replace("a", &dry, &replaced).await.unwrap();
    assert_eq!(would.data.unwrap()["k"], "2", "the would-be object");
    assert_eq!(would.metadata.uid, a.metadata.uid);
    unchanged("a", a.clone()).await;

    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "3"}});
    let would = api
        .patch(
            "a",
            &PatchParams::apply("dry").force().dry_run(),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    assert_eq!(would.data.unwrap()["k"], "3");
    assert!(
        would
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some("dry")),
        "the would-be object records the applier"
    );
    unchanged("a", a.clone()).await;
    assert!(
        api.get("a")
            .await
            .unwrap()
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .all(|m| m.manager.as_deref() != Some("dry"))
    );

    let fresh = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}});
    let would = api
        .patch(
            "c",
            &PatchParams::apply("dry").dry_run(),
            &Patch::Apply(&fresh),
        )
        .await
        .unwrap();
    assert_eq!(would.metadata.name.as_deref(), Some("c"));
    assert!(
        api.get_opt("c").await.unwrap().is_none(),
        "a dry-run apply creates nothing"
    );

    let dry_delete = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    let listed = api
        .delete_collection(&dry_delete, &ListParams::default().labels("set=x"))
        .await
        .unwrap()
        .left()
        .expect("the would-be deleted objects");
    let mut names: Vec<String> = listed
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    unchanged("a", a.clone()).await;
    unchanged("b", b.clone()).await;
    api.delete("b", &dry_delete).await.unwrap();
    unchanged("b", b).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategic_merge_patch_merges_ports_volumes_and_mounts_by_their_keys() {
    let opts = capstan_apiserver::ServerOptions {
        simulation: None,
        ..test_options()
    };
    let (server, client) = start_async(opts).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = workload(
        "Deployment",
        "web",
        json!({"selector": {"matchLabels": {"app": "web"}}, "template": template("web", "nginx:1.27")}),
        false,
    );
    d["spec"]["template"]["spec"] = json!({
        "containers": [{"name": "c", "image": "nginx:1.27",
            "ports": [{"name": "http", "containerPort": 80}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]});
    deployments
        .create(&PostParams::default(), &from_json(d))
        .await
        .unwrap();
    let patch = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "c",
            "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 443, "name": "https"}],
            "volumeMounts": [{"mountPath": "/etc/cfg", "readOnly": true}, {"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "cfg", "configMap": {"optional": true}}, {"name": "data", "emptyDir": {}}]}}}});
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let pod = serde_json::to_value(patched.spec.template.spec.unwrap()).unwrap();
    let by = |list: &Value, key: &str, value: Value| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|i| i[key] == value)
            .cloned()
            .unwrap_or_else(|| panic!("no item with {key}={value} in {list}"))
    };
    let ports = &pod["containers"][0]["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 3, "{ports}");
    assert_eq!(
        by(ports, "containerPort", json!(80)),
        json!({"name": "web", "containerPort": 80, "protocol": "TCP"})
    );
    assert_eq!(
        by(ports, "containerPort", json!(53)),
        json!({"name": "dns", "containerPort": 53, "protocol": "UDP"})
    );
    assert_eq!(by(ports, "containerPort", json!(443))["name"], "https");
    let mounts = &pod["containers"][0]["volumeMounts"];
    assert_eq!(mounts.as_array().unwrap().len(), 2, "{mounts}");
    assert_eq!(
        by(mounts, "mountPath", json!("/etc/cfg")),
        json!({"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true})
    );
    assert_eq!(by(mounts, "mountPath", json!("/data"))["name"], "data");
    let volumes = &pod["volumes"];
    assert_eq!(volumes.as_array().unwrap().len(), 2, "{volumes}");
    let cfg = by(volumes, "name", json!("cfg"));
    assert_eq!(
        (&cfg["configMap"]["name"], &cfg["configMap"]["optional"]),
        (&json!("cfg"), &json!(true))
    );
    assert!(by(volumes, "name", json!("data"))["emptyDir"].is_object());

    let services: Api<Service> = Api::namespaced(client, "default");
    services
        .create(
            &PostParams::default(),
            &from_json(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "https", "port": 443, "targetPort": 8443}]}}),
            ),
        )
        .await
        .unwrap();
    let patched = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [
                {"port": 80, "targetPort": 9090}, {"name": "alt", "port": 8000}]}})),
        )
        .await
        .unwrap();
    let ports = serde_json::to_value(patched.spec.unwrap().ports.unwrap()).unwrap();
    assert_eq!(ports.as_array().unwrap().len(), 3, "{ports}");
    let http = by(&ports, "port", json!(80));
    assert_eq!(
        (&http["name"], &http["targetPort"]),
        (&json!("http"), &json!(9090))
    );
    assert_eq!(by(&ports, "port", json!(443))["targetPort"], 8443);
    assert_eq!(by(&ports, "port", json!(8000))["name"], "alt");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_selectors_on_metadata_namespace_span_namespaces() {
    let (server, client) = start_async(test_options()).await;
    namespace(&client, "ns1").await;
    namespace(&client, "ns2").await;
    for (ns, name) in [("ns1", "a"), ("ns1", "b"), ("ns2", "a"), ("ns2", "c")] {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &cm(name, json!({}), json!({})))
            .await
            .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client);
    let listed = |fields: &'static str| {
        let all = all.clone();
        async move {
            let mut refs: Vec<String> = all
                .list(&ListParams::default().fields(fields))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| {
                    format!(
                        "{}/{}",
                        c.metadata.namespace.unwrap(),
                        c.metadata.name.unwrap()
                    )
                })
                .collect();
            refs.sort();
            refs
        }
    };
    assert_eq!(listed("metadata.namespace=ns1").await, ["ns1/a", "ns1/b"]);
    let everything = listed("").await;
    let not_ns1: Vec<String> = everything
        .iter()
        .filter(|r| !r.starts_with("ns1/"))
        .cloned()
        .collect();
    assert!(not_ns1.contains(&"ns2/c".to_string()), "{everything:?}");
    assert_eq!(listed("metadata.namespace!=ns1").await, not_ns1);
    assert_eq!(
        listed("metadata.namespace=ns2,metadata.name=a").await,
        ["ns2/a"]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_or_with_a_wrong_one_are_unauthorized() {
    let (server, _client) = start_async(test_options()).await;
    for token in [None, Some("not-the-token")] {
        let mut kc = kube::config::Kubeconfig::from_yaml(server.kubeconfig()).unwrap();
        kc.auth_infos[0].auth_info.as_mut().unwrap().token = token.map(|t| t.to_string().into());
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let stranger = kube::Client::try_from(config).unwrap();
        let (code, reason, message) = api_error(
            Api::<ConfigMap>::namespaced(stranger.clone(), "default")
                .list(&ListParams::default())
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (code, reason.as_str(), message.as_str()),
            (401, "Unauthorized", "Unauthorized"),
            "token {token:?}"
        );
        assert!(
            stranger.apiserver_version().await.is_err(),
            "discovery needs the token too"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_reports_major_minor_and_git_version() {
    let (server, client) = start_async(test_options()).await;
    let info = client.apiserver_version().await.unwrap();
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "32"));
    assert!(
        info.git_version.starts_with("v1.32."),
        "{}",
        info.git_version
    );
    assert!(!info.platform.is_empty() && !info.go_version.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_and_creation_timestamp_are_set_once_and_kept_by_updates_and_patches() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let made = api
        .create(
            &PostParams::default(),
            &cm("m", json!({}), json!({"k": "0"})),
        )
        .await
        .unwrap();
    let uid = made.metadata.uid.clone().expect("a uid on create");
    assert_eq!(
        uid.split('-').map(str::len).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{uid}"
    );
    let created = made
        .metadata
        .creation_timestamp
        .clone()
        .expect("a creationTimestamp on create");
    let identity_kept = |c: &ConfigMap, what: &str| {
        assert_eq!(c.metadata.uid.as_deref(), Some(uid.as_str()), "{what}");
        assert_eq!(
            c.metadata.creation_timestamp.as_ref(),
            Some(&created),
            "{what}"
        );
    };

    // PUT without uid, creationTimestamp or resourceVersion
    let put = api
        .replace(
            "m",
            &PostParams::default(),
            &cm("m", json!({}), json!({"k": "1"})),
        )
        .await
        .unwrap();
    identity_kept(&put, "PUT without uid");
    assert_ne!(
        put.metadata.resource_version,
        made.metadata.resource_version
    );
    // a creationTimestamp sent by the client is ignored
    let mut backdated = cm("m", json!({}), json!({"k": "2"}));
    backdated.metadata.creation_timestamp = Some(from_json(json!("2001-01-01T00:00:00Z")));
    identity_kept(
        &api.replace("m", &PostParams::default(), &backdated)
            .await
            .unwrap(),
        "PUT with another creationTimestamp",
    );
    for (what, patch) in [
        ("merge patch", Patch::Merge(json!({"data": {"k": "3"}}))),
        (
            "strategic merge patch",
            Patch::Strategic(json!({"data": {"k": "4"}})),
        ),
        (
            "JSON patch",
            Patch::Json(
                serde_json::from_value(json!([{"op": "replace", "path": "/data/k", "value": "5"}]))
                    .unwrap(),
            ),
        ),
    ] {
        identity_kept(
            &api.patch("m", &PatchParams::default(), &patch)
                .await
                .unwrap(),
            what,
        );
    }
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"x": "1"}});
    identity_kept(
        &api.patch("m", &PatchParams::apply("t"), &Patch::Apply(&config))
            .await
            .unwrap(),
        "server-side apply",
    );

    // a PUT naming another uid fails its precondition; a patch may not change it
    let mut other = cm("m", json!({}), json!({"k": "6"}));
    other.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let (code, reason, message) = api_error(
        api.replace("m", &PostParams::default(), &other)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"), "{message}");
    assert!(
        message.ends_with(&format!(
            "Precondition failed: UID in precondition: 00000000-0000-0000-0000-000000000000, UID in object meta: {uid}"
        )),
        "{message}"
    );
    let (code, reason, message) = api_error(
        api.patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"uid": "00000000-0000-0000-0000-000000000000"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"), "{message}");
    assert!(
        message.contains("metadata.uid") && message.contains("field is immutable"),
        "{message}"
    );
    let last = api.get("m").await.unwrap();
    identity_kept(&last, "after the refused writes");
    assert_eq!(last.data.unwrap()["k"], "5");
    server.shutdown().await;
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin),
) -> WatchEvent<DynamicObject> {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a watch event within 5 s")
            .expect("the watch goes on")
            .expect("a decodable event");
        if !matches!(ev, WatchEvent::Bookmark(_)) {
            return ev;
        }
    }
}

async fn next_change(
    stream: &mut (impl futures::Stream<Item = watcher::Result<watcher::Event<DynamicObject>>> + Unpin),
) -> watcher::Event<DynamicObject> {
    tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("a watcher event within 5 s")
        .expect("the watcher goes on")
        .expect("the watcher does not end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_watched_as_they_are_added_modified_and_deleted() {
    let (server, client) = start_async(test_options()).await;
    let widgets = crate::util::widgets(&client, "default").await;
    let mut raw = widgets
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut changes = watcher(widgets.clone(), watcher::Config::default()).boxed();
    loop {
        if let watcher::Event::InitDone = next_change(&mut changes).await {
            break;
        }
    }

    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}});
    widgets
        .create(&PostParams::default(), &from_json(w))
        .await
        .unwrap();
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    widgets.delete("w", &DeleteParams::default()).await.unwrap();

    let size = |o: &DynamicObject| o.data["spec"]["size"].as_i64();
    match next_event(&mut raw).await {
        WatchEvent::Added(o) => {
            assert_eq!((o.metadata.name.as_deref(), size(&o)), (Some("w"), Some(1)))
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    match next_event(&mut raw).await {
        WatchEvent::Modified(o) => assert_eq!(size(&o), Some(2)),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    match next_event(&mut raw).await {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("w")),
        other => panic!("expected DELETED, got {other:?}"),
    }

    match next_change(&mut changes).await {
        watcher::Event::Apply(o) => assert_eq!(size(&o), Some(1)),
        other => panic!("expected the added widget, got {other:?}"),
    }
    match next_change(&mut changes).await {
        watcher::Event::Apply(o) => assert_eq!(size(&o), Some(2)),
        other => panic!("expected the modified widget, got {other:?}"),
    }
    match next_change(&mut changes).await {
        watcher::Event::Delete(o) => {
            assert_eq!(o.metadata.name.as_deref(), Some("w"));
            assert_eq!(o.types.map(|t| t.kind).as_deref(), Some("Widget"));
        }
        other => panic!("expected the deleted widget, got {other:?}"),
    }
    server.shutdown().await;
}
