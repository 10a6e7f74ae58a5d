//! Namespace deletion: a terminating namespace's objects are deleted; when none is
//! left, the `kubernetes` spec finalizer is removed and the namespace goes.

use serde_json::{Value, json};

use super::{CONTROLLER_MANAGER, log_err};
use crate::cluster::{Cluster, DeleteOptions, Propagation, WriteOptions};
use crate::meta;
use crate::registry::GroupResource;
use crate::store::{Event, EventType};

fn namespaces() -> GroupResource {
    GroupResource::new("", "namespaces")
}

pub(super) fn on_event(cluster: &Cluster, event: &Event) {
    if event.gr == namespaces() {
        if event.kind != EventType::Deleted && meta::is_deleting(&event.object) {
            drain(cluster, meta::name(&event.object));
        }
        return;
    }
    let ns = meta::namespace(&event.object);
    if event.kind == EventType::Deleted
        && !ns.is_empty()
        && cluster
            .store
            .get(&namespaces(), "", ns)
            .is_some_and(|n| meta::is_deleting(&n))
    {
        finalize_if_empty(cluster, ns);
    }
}

pub(super) fn resync(cluster: &Cluster) {
    let (all, _) = cluster.store.list(&namespaces(), None);
    for ns in all.iter().filter(|n| meta::is_deleting(n)) {
        drain(cluster, meta::name(ns));
    }
}

/// Delete everything in the namespace that is not already terminating.
fn drain(cluster: &Cluster, ns: &str) {
    let opts = DeleteOptions {
        propagation: Some(Propagation::Background),
        ..Default::default()
    };
    for (gr, objs) in cluster.store.list_namespace(ns) {
        let Some(def) = cluster.registry.any_version(&gr) else {
            continue;
        };
        for obj in objs.iter().filter(|o| !meta::is_deleting(o)) {
            log_err(
                "namespace cleanup",
                cluster.delete(&def, ns, meta::name(obj), &opts),
            );
        }
    }
    finalize_if_empty(cluster, ns);
}

fn finalize_if_empty(cluster: &Cluster, ns: &str) {
    if !cluster.store.list_namespace(ns).is_empty() {
        return;
    }
    let Some(def) = cluster.registry.get("", "v1", "namespaces") else {
        return;
    };
    let res = cluster.update_with(
        &def,
        "",
        ns,
        false,
        &WriteOptions::internal(CONTROLLER_MANAGER),
        |cur| {
            let fins = cur.pointer("/spec/finalizers").and_then(Value::as_array);
            if fins.is_none_or(|f| f.is_empty()) {
                return None;
            }
            let mut new = cur.clone();
            new["spec"]["finalizers"] = json!([]);
            Some(new)
        },
    );
    log_err("namespace finalization", res);
}
