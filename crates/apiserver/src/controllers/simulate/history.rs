//! ControllerRevisions: the history of a StatefulSet's or DaemonSet's templates, one
//! per template (`NAME-<hash>`, numbered in order, the one brought back by a rollback
//! renumbered as the newest), kept up to `revisionHistoryLimit`, so `kubectl rollout
//! history` finds them.

use serde_json::{Value, json};

use super::{CONTROLLER_REVISIONS, Sim, controlled, controller_ref, int};
use crate::meta;

/// Make sure `owner`'s current template has its revision, named `name`.
pub(super) fn record(sim: &Sim, owner: &Value, name: &str, hash: &str) {
    let revisions = controlled(sim, owner, CONTROLLER_REVISIONS);
    let newest = revisions
        .iter()
        .map(|r| int(r, "/revision"))
        .max()
        .unwrap_or(0);
    match revisions.iter().find(|r| meta::name(r) == name) {
        Some(current) if int(current, "/revision") < newest => {
            super::update(sim, current, |cur| cur["revision"] = json!(newest + 1));
        }
        Some(_) => {}
        None => {
            let mut template = owner
                .pointer("/spec/template")
                .cloned()
                .unwrap_or_else(|| json!({}));
            template["$patch"] = json!("replace");
            let mut labels = owner
                .pointer("/spec/template/metadata/labels")
                .cloned()
                .unwrap_or_else(|| json!({}));
            labels["controller.kubernetes.io/hash"] = json!(hash);
            let body = json!({
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {"name": name, "namespace": meta::namespace(owner), "labels": labels,
                             "ownerReferences": [controller_ref(owner)]},
                "data": {"spec": {"template": template}},
                "revision": newest + 1,
            });
            super::create(sim, CONTROLLER_REVISIONS, meta::namespace(owner), body);
            prune(sim, owner, revisions, name);
        }
    }
}

/// Delete the oldest revisions beyond `revisionHistoryLimit` (never `current`, nor
/// one the status names).
fn prune(sim: &Sim, owner: &Value, mut revisions: Vec<Value>, current: &str) {
    let limit = owner
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10)
        .max(0) as usize;
    let in_use = |r: &Value| {
        let name = meta::name(r);
        name == current
            || owner
                .pointer("/status/currentRevision")
                .and_then(Value::as_str)
                == Some(name)
    };
    revisions.retain(|r| !in_use(r));
    if revisions.len() <= limit {
        return;
    }
    revisions.sort_by_key(|r| int(r, "/revision"));
    let extra = revisions.len() - limit;
    for r in &revisions[..extra] {
        super::delete(sim, r);
    }
}
