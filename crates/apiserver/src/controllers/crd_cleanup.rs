//! CRD deletion: a terminating CRD's custom resources are deleted; when none is left,
//! the cleanup finalizer is removed and the CRD (and its API) goes.

use serde_json::Value;

use super::gc::remove_finalizer;
use super::log_err;
use crate::cluster::{Cluster, DeleteOptions, ListOptions};
use crate::crd::CLEANUP_FINALIZER;
use crate::meta;
use crate::registry::GroupResource;
use crate::store::{Event, EventType};

fn crds() -> GroupResource {
    GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions")
}

fn served_resource(crd: &Value) -> GroupResource {
    GroupResource::new(
        crd.pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or(""),
        crd.pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
}

pub(super) fn on_event(cluster: &Cluster, event: &Event) {
    if event.gr == crds() {
        match event.kind {
            EventType::Deleted => cluster
                .registry
                .unserve_custom(&served_resource(&event.object)),
            _ if meta::is_deleting(&event.object) => drain(cluster, &event.object),
            _ => {}
        }
        return;
    }
    if event.kind == EventType::Deleted {
        // The last custom resource of a terminating CRD lets it go.
        let (all, _) = cluster.store.list(&crds(), None);
        if let Some(crd) = all
            .iter()
            .find(|c| meta::is_deleting(c) && served_resource(c) == event.gr)
        {
            drain(cluster, crd);
        }
    }
}

pub(super) fn resync(cluster: &Cluster) {
    let (all, _) = cluster.store.list(&crds(), None);
    for crd in all.iter().filter(|c| meta::is_deleting(c)) {
        drain(cluster, crd);
    }
}

fn drain(cluster: &Cluster, crd: &Value) {
    if !meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
        return;
    }
    let gr = served_resource(crd);
    if let Some(def) = cluster.registry.any_version(&gr) {
        log_err(
            "custom resource cleanup",
            cluster.delete_collection(
                &def,
                None,
                &ListOptions::default(),
                &DeleteOptions::default(),
            ),
        );
    }
    let (left, _) = cluster.store.list(&gr, None);
    if left.is_empty() {
        remove_finalizer(cluster, &crds(), crd, CLEANUP_FINALIZER);
    }
}
