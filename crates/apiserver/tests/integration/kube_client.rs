//! The kube-rs client (the one Capstan's engine uses) against the embedded API server
//! over HTTPS: watchers, server-side apply, paging, concurrency, subresources, garbage
//! collection, persistence and bad input.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy, WatchEvent,
    WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::util::{api_error, cm, namespace, start_async, test_options};
use capstan_apiserver::ServerOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_adds_changes_deletes_and_selector_transitions() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cfg = watcher::Config::default().labels("app=web");
    let mut events = watcher(api.clone(), cfg).touched_objects().boxed();
    let mut stream_events = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .watch(&WatchParams::default().labels("app=web"), "0")
        .await
        .expect("watch")
        .boxed();

    api.create(
        &PostParams::default(),
        &cm("a", json!({"app": "web"}), json!({"k": "1"})),
    )
    .await
    .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.metadata.name.as_deref(), Some("a"));

    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    // relabel: leaves the selector, so a DELETED is sent to the selector watch
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream_events.next())
            .await
            .expect("event")
            .expect("stream")
            .expect("ok");
        match ev {
            WatchEvent::Added(o) => kinds.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => kinds.push(format!("MODIFIED {}", o.data.unwrap()["k"])),
            WatchEvent::Deleted(o) => kinds.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED a", "MODIFIED 2", "DELETED a"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_owns_fields_conflicts_and_forces() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"a": "1", "b": "2"}});
    let created = api
        .patch("app", &PatchParams::apply("capstan"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    let mf = created.metadata.managed_fields.unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("capstan"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // applying the same configuration again changes nothing, not even the resourceVersion
    let again = api
        .patch("app", &PatchParams::apply("capstan"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );

    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"a": "9"}});
    let (code, reason, message) = api_error(
        api.patch("app", &PatchParams::apply("other"), &Patch::Apply(&other))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("conflict with \"capstan\"") && message.contains(".data.a"),
        "{message}"
    );

    let forced = api
        .patch(
            "app",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");
    // capstan stops applying b: it is removed; a now belongs to "other" and stays
    let fewer =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {}});
    let after = api
        .patch("app", &PatchParams::apply("capstan"), &Patch::Apply(&fewer))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(after.data.unwrap()).unwrap(),
        json!({"a": "9"})
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_limit_and_continue_and_filter_by_selectors() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        api.create(
            &PostParams::default(),
            &cm(&format!("cm-{i:02}"), json!({"tier": tier}), json!({})),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "ordered by name");
    let odd = api
        .list(&ListParams::default().labels("tier in (odd)"))
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 12);
    let one = api
        .list(&ListParams::default().fields("metadata.name=cm-07"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let (code, _, msg) = api_error(
        api.list(&ListParams::default().fields("spec.x=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400, "{msg}");
    let meta = api
        .list_metadata(&ListParams::default().limit(2))
        .await
        .unwrap();
    assert_eq!(meta.items.len(), 2);
    assert!(meta.items[0].metadata.name.is_some());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_from_a_version_older_than_history_is_gone() {
    let opts = ServerOptions {
        history_limit: 5,
        ..test_options()
    };
    let (server, client) = start_async(opts).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("first", json!({}), json!({})))
        .await
        .unwrap();
    for i in 0..10 {
        api.create(
            &PostParams::default(),
            &cm(&format!("n{i}"), json!({}), json!({})),
        )
        .await
        .unwrap();
    }
    let rv = first.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_and_initial_events_end() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("x", json!({}), json!({})))
        .await
        .unwrap();
    let wp = WatchParams::default();
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    let mut got_bookmark = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !got_bookmark && tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(WatchEvent::Bookmark(b)))) =
            tokio::time::timeout(Duration::from_secs(2), stream.next()).await
        {
            assert!(!b.metadata.resource_version.is_empty());
            got_bookmark = true;
        }
    }
    assert!(got_bookmark, "a bookmark arrives when allowed");

    // the watch-list protocol kube-rs' streaming_lists() uses
    let cfg = watcher::Config::default().streaming_lists();
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        watcher(api.clone(), cfg)
            .applied_objects()
            .boxed()
            .try_next(),
    )
    .await
    .expect("initial events arrive")
    .unwrap()
    .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("x"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_concurrency_generate_name_and_dry_run() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let made = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = made.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let mut stale = made.clone();
    generated = made.clone();
    generated.data = Some([("a".to_string(), "1".to_string())].into());
    api.replace(&name, &PostParams::default(), &generated)
        .await
        .unwrap();
    stale.data = Some([("a".to_string(), "2".to_string())].into());
    let (code, reason, msg) = api_error(
        api.replace(&name, &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(msg.contains("the object has been modified"), "{msg}");

    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &cm("dry", json!({}), json!({})))
        .await
        .unwrap();
    assert!(
        api.get_opt("dry").await.unwrap().is_none(),
        "dry-run create stores nothing"
    );
    api.patch(
        &name,
        &PatchParams {
            dry_run: true,
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"a": "3"}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get(&name).await.unwrap().data.unwrap()["a"], "1");
    api.delete(
        &name,
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        api.get_opt(&name).await.unwrap().is_some(),
        "dry-run delete deletes nothing"
    );
    let (code, reason, _) = api_error(
        api.create(&PostParams::default(), &cm(&name, json!({}), json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_collection_by_label() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        api.create(&PostParams::default(), &cm(n, json!({"set": l}), json!({})))
            .await
            .unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("set=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["c"]);
    server.shutdown().await;
}

fn deployment(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_and_generation() {
    let opts = ServerOptions {
        simulation: None,
        ..test_options()
    };
    let (server, client) = start_async(opts).await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let d = api
        .patch(
            "web",
            &PatchParams::apply("t"),
            &Patch::Apply(deployment("web", 1)),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    // status sent to the main resource is ignored
    let with_status = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert!(with_status.status.is_none());
    // spec sent to /status is ignored; status is taken
    let st = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.spec.replicas, Some(1));
    assert_eq!(st.status.unwrap().replicas, Some(1));
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status and metadata changes keep the generation"
    );
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_background_foreground_and_orphan() {
    let (server, client) = start_async(test_options()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let owned_by = |owner: &ConfigMap, name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "blockOwnerDeletion": true}]}}))
        .unwrap()
    };
    let wait_gone = |name: &'static str| {
        let api = api.clone();
        async move {
            for _ in 0..100 {
                if api.get_opt(name).await.unwrap().is_none() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };

    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({}), json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by(&owner, "dep"))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        wait_gone("dep").await,
        "background: the dependent is collected"
    );

    let owner = api
        .create(&PostParams::default(), &cm("fg", json!({}), json!({})))
        .await
        .unwrap();
    let dep = owned_by(&owner, "fg-dep");
    let mut held = serde_json::to_value(&dep).unwrap();
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(held).unwrap(),
    )
    .await
    .unwrap();
    api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fg = api
        .get("fg")
        .await
        .expect("the owner waits for its dependent");
    assert!(fg.metadata.deletion_timestamp.is_some());
    assert!(
        fg.metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    api.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(wait_gone("fg-dep").await);
    assert!(
        wait_gone("fg").await,
        "foreground: the owner goes after its dependent"
    );

    let owner = api
        .create(&PostParams::default(), &cm("orph", json!({}), json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by(&owner, "orph-dep"))
        .await
        .unwrap();
    api.delete(
        "orph",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(wait_gone("orph").await);
    let kept = api
        .get("orph-dep")
        .await
        .expect("orphan: the dependent stays");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "its ownerReference is removed"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_survives_a_restart_and_versions_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..test_options()
    };
    let (server, client) = start_async(opts.clone()).await;
    namespace(&client, "keep").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "keep");
    let mut last_rv = 0u64;
    for i in 0..20 {
        let c = api
            .create(
                &PostParams::default(),
                &cm(&format!("c{i}"), json!({}), json!({"i": i.to_string()})),
            )
            .await
            .unwrap();
        last_rv = c.metadata.resource_version.unwrap().parse().unwrap();
    }
    api.delete("c0", &DeleteParams::default()).await.unwrap();
    server.shutdown().await;

    let (server, client) = start_async(opts).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "keep");
    let items = api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(items.len(), 19);
    assert!(api.get_opt("c0").await.unwrap().is_none());
    let next = api
        .create(&PostParams::default(), &cm("after", json!({}), json!({})))
        .await
        .unwrap();
    let rv: u64 = next.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        rv > last_rv + 1,
        "{rv} is greater than every earlier version ({last_rv} and the delete)"
    );
    server.shutdown().await;
}

async fn raw(
    client: &kube::Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    match client.request::<Value>(req).await {
        Ok(v) => (200, v),
        Err(kube::Error::Api(s)) => (s.code, json!({"reason": s.reason, "message": s.message})),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_status_never_a_crash() {
    let (server, client) = start_async(test_options()).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = raw(
        &client,
        "POST",
        cms,
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (400, Some("BadRequest")),
        "{body}"
    );
    // a protobuf body: garbled is a 400 naming what failed; a custom resource's is a
    // 415 (kube-apiserver takes no protobuf for custom resources either)
    let (code, body) = raw(
        &client,
        "POST",
        cms,
        "application/vnd.kubernetes.protobuf",
        b"k8s\0\xff\xff\xff".to_vec(),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("runtime.Unknown")),
        "{body}"
    );
    let widget = {
        use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
        use prost::Message;
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("example.com/v1".into()),
                kind: Some("Widget".into()),
            }),
            raw: Some(vec![]),
            ..Default::default()
        };
        [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
    };
    let (code, body) = raw(
        &client,
        "POST",
        cms,
        "application/vnd.kubernetes.protobuf",
        widget,
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Widget")),
        "{body}"
    );
    let (code, _) = raw(
        &client,
        "GET",
        "/apis/example.com/v1/things",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 404);
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "a".repeat(4 * 1024 * 1024)
    );
    let (code, body) = raw(&client, "POST", cms, "application/json", big.into_bytes()).await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    let (code, body) = raw(
        &client,
        "PATCH",
        &format!("{cms}/x"),
        "text/plain",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/nowhere/configmaps",
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 404);
    let (code, body) = raw(
        &client,
        "POST",
        cms,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops\n".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = raw(
        &client,
        "POST",
        cms,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.to_vec(),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    assert!(
        body["message"].as_str().unwrap().contains("metadata.name"),
        "{body}"
    );
    let (code, body) = raw(&client, "POST", "/apis/apps/v1/namespaces/default/deployments", "application/json",
        br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":"three"}}"#.to_vec()).await;
    assert_eq!(code, 400);
    assert!(
        body["message"].as_str().unwrap().contains("spec.replicas"),
        "{body}"
    );
    // nothing half-written
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // no token: 401
    let mut kc = kube::config::Kubeconfig::from_yaml(server.kubeconfig()).unwrap();
    kc.auth_infos[0].auth_info.as_mut().unwrap().token = None;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let anonymous = kube::Client::try_from(config).unwrap();
    let (code, _, _) = api_error(
        Api::<ConfigMap>::namespaced(anonymous, "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 401);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_served_validated_and_defaulted() {
    let (server, client) = start_async(test_options()).await;
    let widgets = crate::util::widgets(&client, "default").await;
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2, "unknown": true}});
    let made = widgets
        .patch("w", &PatchParams::apply("t"), &Patch::Apply(&w))
        .await
        .unwrap();
    assert_eq!(
        made.data["spec"],
        json!({"size": 2}),
        "unknown fields are pruned"
    );
    let status = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"x": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(status.metadata.generation, Some(1));
    let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "b"}, "spec": {"size": 0}});
    let (code, reason, msg) = api_error(
        widgets
            .patch("b", &PatchParams::apply("t"), &Patch::Apply(&bad))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(msg.contains("spec.size"), "{msg}");
    // strategic merge patch is not supported for custom resources
    let (code, _, _) = api_error(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 3}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 415);
    server.shutdown().await;
}
