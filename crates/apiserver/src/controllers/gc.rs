//! Garbage collection by ownerReferences.
//!
//! - An object whose owners are all gone is deleted (background propagation).
//! - An owner deleted with `Foreground` carries the `foregroundDeletion` finalizer:
//!   its dependents are deleted first, then the finalizer is removed.
//! - An owner deleted with `Orphan` carries the `orphan` finalizer: the
//!   ownerReferences to it are removed from its dependents, then the finalizer.

use serde_json::Value;

use super::{CONTROLLER_MANAGER, log_err};
use crate::cluster::{Cluster, DeleteOptions, Propagation, WriteOptions};
use crate::meta;
use crate::registry::GroupResource;
use crate::store::{Event, EventType};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

pub(super) fn on_event(cluster: &Cluster, event: &Event) {
    let obj = &event.object;
    match event.kind {
        EventType::Deleted => {
            collect_dependents_of(cluster, meta::uid(obj));
            for owner in meta::owner_uids(obj) {
                finish_foreground_if_done(cluster, &owner);
            }
        }
        EventType::Added | EventType::Modified => {
            if meta::is_deleting(obj) {
                process_deleting_owner(cluster, &event.gr, obj);
            }
            if event.kind == EventType::Added && !meta::owner_uids(obj).is_empty() {
                delete_if_orphaned(cluster, &event.gr, obj);
            }
        }
    }
}

pub(super) fn resync(cluster: &Cluster) {
    for (gr, obj) in cluster.store.objects_with_owners() {
        delete_if_orphaned(cluster, &gr, &obj);
    }
    for (gr, obj) in cluster.store.all_objects() {
        if meta::is_deleting(&obj) {
            process_deleting_owner(cluster, &gr, &obj);
        }
    }
}

fn delete_opts(policy: Propagation) -> DeleteOptions {
    DeleteOptions {
        propagation: Some(policy),
        ..Default::default()
    }
}

/// Dependents of a vanished owner that have no other live owner are deleted.
fn collect_dependents_of(cluster: &Cluster, uid: &str) {
    if uid.is_empty() {
        return;
    }
    for (gr, dep) in cluster.store.dependents_of(uid) {
        delete_if_orphaned(cluster, &gr, &dep);
    }
}

fn delete_if_orphaned(cluster: &Cluster, gr: &GroupResource, obj: &Value) {
    let owners = meta::owner_uids(obj);
    if owners.is_empty()
        || meta::is_deleting(obj)
        || owners.iter().any(|u| cluster.store.uid_exists(u))
    {
        return;
    }
    let Some(def) = cluster.registry.any_version(gr) else {
        return;
    };
    log_err(
        "garbage collection",
        cluster.delete(
            &def,
            meta::namespace(obj),
            meta::name(obj),
            &delete_opts(Propagation::Background),
        ),
    );
}

fn process_deleting_owner(cluster: &Cluster, gr: &GroupResource, obj: &Value) {
    let finalizers = meta::finalizers(obj);
    let uid = meta::uid(obj);
    if finalizers.iter().any(|f| f == ORPHAN) {
        for (dgr, dep) in cluster.store.dependents_of(uid) {
            let Some(def) = cluster.registry.any_version(&dgr) else {
                continue;
            };
            let res = cluster.update_with(
                &def,
                meta::namespace(&dep),
                meta::name(&dep),
                false,
                &WriteOptions::internal(CONTROLLER_MANAGER),
                |cur| {
                    let mut new = cur.clone();
                    let refs: Vec<Value> = meta::owner_references(cur)
                        .into_iter()
                        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                        .collect();
                    let m = meta::metadata_mut(&mut new);
                    if refs.is_empty() {
                        m.remove("ownerReferences");
                    } else {
                        m.insert("ownerReferences".into(), Value::Array(refs));
                    }
                    Some(new)
                },
            );
            log_err("orphaning a dependent", res);
        }
        remove_finalizer(cluster, gr, obj, ORPHAN);
    }
    if finalizers.iter().any(|f| f == FOREGROUND) {
        for (dgr, dep) in cluster.store.dependents_of(uid) {
            if meta::is_deleting(&dep) {
                continue;
            }
            let Some(def) = cluster.registry.any_version(&dgr) else {
                continue;
            };
            log_err(
                "foreground deletion of a dependent",
                cluster.delete(
                    &def,
                    meta::namespace(&dep),
                    meta::name(&dep),
                    &delete_opts(Propagation::Foreground),
                ),
            );
        }
        finish_foreground_if_done(cluster, uid);
    }
}

/// Remove `foregroundDeletion` from the owner once no dependent is left.
fn finish_foreground_if_done(cluster: &Cluster, owner_uid: &str) {
    if !cluster.store.dependents_of(owner_uid).is_empty() {
        return;
    }
    let Some((gr, owner)) = cluster.store.get_by_uid(owner_uid) else {
        return;
    };
    if meta::is_deleting(&owner) && meta::finalizers(&owner).iter().any(|f| f == FOREGROUND) {
        remove_finalizer(cluster, &gr, &owner, FOREGROUND);
    }
}

pub(super) fn remove_finalizer(
    cluster: &Cluster,
    gr: &GroupResource,
    obj: &Value,
    finalizer: &str,
) {
    let Some(def) = cluster.registry.any_version(gr) else {
        return;
    };
    let res = cluster.update_with(
        &def,
        meta::namespace(obj),
        meta::name(obj),
        false,
        &WriteOptions::internal(CONTROLLER_MANAGER),
        |cur| {
            let fins = meta::finalizers(cur);
            if !fins.iter().any(|f| f == finalizer) {
                return None;
            }
            let mut new = cur.clone();
            let kept: Vec<String> = fins.into_iter().filter(|f| f != finalizer).collect();
            meta::set_finalizers(&mut new, &kept);
            Some(new)
        },
    );
    log_err("removing a finalizer", res);
}
