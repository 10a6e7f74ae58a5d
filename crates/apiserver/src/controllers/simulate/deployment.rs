//! The Deployment controller: one ReplicaSet per pod template, named
//! `NAME-<pod-template-hash>`, labelled and selected by `pod-template-hash`, with the
//! Deployment's annotations and its revision (`deployment.kubernetes.io/revision`).
//!
//! - A new template gets a new ReplicaSet (the next revision), or brings back the old
//!   one with the same template (`kubectl rollout undo`), which becomes the newest
//!   revision. A new scale only changes `replicas`.
//! - `RollingUpdate`: the new ReplicaSet is scaled to `spec.replicas` at once and the
//!   old ones down as its Pods become available, so what served keeps serving until
//!   the new Pods do (a rollout whose Pods never get ready stalls, as on a cluster).
//!   `Recreate`: the old ones go to 0 first, the new one comes up once their Pods are
//!   gone.
//! - Old ReplicaSets scaled to 0 are kept up to `revisionHistoryLimit` (for `kubectl
//!   rollout history` and `undo`); older ones are deleted.
//! - The status (replicas, updated, ready, available, the `Available` and
//!   `Progressing` conditions with the reasons the real controller gives) follows
//!   from the ReplicaSets. A Deployment told to fail gets `ProgressDeadlineExceeded`
//!   when the rollout is not complete after its delay.
//!
//! Each scaling is a `ScalingReplicaSet` Event on the Deployment.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::events::{self, Component};
use super::{
    REPLICA_SETS, Sim, condition, controlled, controller_ref, counters, fails, int,
    normalized_template, replicas, template_hash,
};
use crate::meta;

/// The label (and selector) that tells a Deployment's ReplicaSets apart.
pub(super) const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment not copied to its ReplicaSets (as upstream).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub(super) fn reconcile(sim: &Arc<Sim>, d: &Value) {
    if meta::is_deleting(d) {
        return;
    }
    let desired = replicas(d).max(0);
    let template = d.pointer("/spec/template").cloned().unwrap_or_default();
    let mut sets = controlled(sim, d, REPLICA_SETS);
    let wanted = normalized_template(&template);
    let newest = sets.iter().map(revision).max().unwrap_or(0);
    let mut created = false;
    let new = match sets.iter().position(|rs| {
        rs.pointer("/spec/template").map(normalized_template) == Some(wanted.clone())
    }) {
        Some(i) => Some(sets.remove(i)),
        None if paused(d) => None,
        None => {
            let initial = match recreates(d) && sets.iter().any(|rs| pods_of(rs) > 0) {
                true => 0,
                false => desired,
            };
            created = true;
            create_replica_set(sim, d, &template, newest + 1, initial)
        }
    };
    let mut olds = sets;
    let new = new.map(|rs| sync_new(sim, d, rs, newest, desired, &olds, created));
    scale_down_olds(sim, d, new.as_ref(), &mut olds, desired);
    prune_history(sim, d, &olds);
    if let Some(rs) = &new {
        let rev = revision(rs).to_string();
        super::update(sim, d, |cur| {
            annotations(cur).insert(REVISION.into(), json!(rev));
        });
    }
    let status = status(sim, d, new.as_ref(), &olds, desired, created);
    super::set_status(sim, d, status);
}

fn paused(d: &Value) -> bool {
    d.pointer("/spec/paused") == Some(&json!(true))
}

fn recreates(d: &Value) -> bool {
    d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate")
}

fn revision(rs: &Value) -> i64 {
    meta::annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Pods a ReplicaSet has or is about to have.
fn pods_of(rs: &Value) -> i64 {
    int(rs, "/status/replicas").max(replicas(rs))
}

fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
    let m = meta::metadata_mut(obj);
    let a = m
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !a.is_object() {
        *a = Value::Object(Map::new());
    }
    a.as_object_mut().expect("an object")
}

/// `maxSurge` and `maxUnavailable` of a rolling update, resolved against `desired`
/// (a percentage rounds up for the surge, down for the unavailable).
fn surge_and_unavailable(d: &Value, desired: i64) -> (i64, i64) {
    if recreates(d) {
        return (0, 0);
    }
    let resolve = |field: &str, default: &str, up: bool| {
        let v = d
            .pointer(&format!("/spec/strategy/rollingUpdate/{field}"))
            .cloned()
            .unwrap_or_else(|| json!(default));
        match v {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) => {
                let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
                let scaled = pct * desired;
                if up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                }
            }
            _ => 0,
        }
    };
    let surge = resolve("maxSurge", "25%", true);
    let unavailable = resolve("maxUnavailable", "25%", false);
    // both zero would block a rollout; Kubernetes makes the unavailable 1
    (
        surge,
        if surge == 0 && unavailable == 0 {
            1
        } else {
            unavailable
        },
    )
}

/// The Deployment's annotations a ReplicaSet carries, with the replica counts.
fn copied_annotations(d: &Value, desired: i64) -> Map<String, Value> {
    let mut out: Map<String, Value> = meta::metadata(d)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let (surge, _) = surge_and_unavailable(d, desired);
    out.insert(DESIRED_REPLICAS.into(), json!(desired.to_string()));
    out.insert(MAX_REPLICAS.into(), json!((desired + surge).to_string()));
    out
}

fn create_replica_set(
    sim: &Sim,
    d: &Value,
    template: &Value,
    revision: i64,
    initial: i64,
) -> Option<Value> {
    let hash = template_hash(template);
    let name = format!("{}-{hash}", meta::name(d));
    let ns = meta::namespace(d);
    let mut template = template.clone();
    let labels = meta::metadata_mut(&mut template)
        .entry("labels")
        .or_insert_with(|| json!({}));
    labels[HASH_LABEL] = json!(hash);
    let labels = labels.clone();
    let mut selector = d
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !selector.get("matchLabels").is_some_and(Value::is_object) {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut annotations = copied_annotations(d, replicas(d).max(0));
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    let mut spec = json!({"replicas": initial, "selector": selector, "template": template});
    if let Some(m) = d.pointer("/spec/minReadySeconds") {
        spec["minReadySeconds"] = m.clone();
    }
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations,
                     "ownerReferences": [controller_ref(d)]},
        "spec": spec,
    });
    let rs = super::create(sim, REPLICA_SETS, ns, body)?;
    if initial > 0 {
        scaled(sim, d, &rs, 0, initial);
    }
    Some(rs)
}

fn scaled(sim: &Sim, d: &Value, rs: &Value, from: i64, to: i64) {
    let how = if to > from { "up" } else { "down" };
    events::normal(
        sim,
        Component::Deployment,
        d,
        "ScalingReplicaSet",
        &format!(
            "Scaled {how} replica set {} from {from} to {to}",
            meta::name(rs)
        ),
    );
}

/// Bring the new ReplicaSet to the Deployment's annotations, the newest revision and
/// its replicas.
fn sync_new(
    sim: &Sim,
    d: &Value,
    rs: Value,
    newest: i64,
    desired: i64,
    olds: &[Value],
    created: bool,
) -> Value {
    let target = if created {
        replicas(&rs)
    } else if recreates(d) && olds.iter().any(|o| pods_of(o) > 0) {
        0
    } else {
        desired
    };
    let before = replicas(&rs);
    let old_revision = revision(&rs);
    let mut wanted = copied_annotations(d, desired);
    if old_revision < newest {
        // brought back (a rollback): the newest revision now, the old one in its history
        wanted.insert(REVISION.into(), json!((newest + 1).to_string()));
        let mut history: Vec<String> = meta::annotation(&rs, REVISION_HISTORY)
            .map(|h| h.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        history.push(old_revision.to_string());
        wanted.insert(REVISION_HISTORY.into(), json!(history.join(",")));
    }
    let changed = super::update(sim, &rs, |cur| {
        let a = annotations(cur);
        for (k, v) in &wanted {
            a.insert(k.clone(), v.clone());
        }
        cur["spec"]["replicas"] = json!(target);
    });
    if target != before {
        scaled(sim, d, &rs, before, target);
    }
    changed.unwrap_or(rs)
}

/// Scale the old ReplicaSets down: all at once to recreate, else as many Pods as the
/// new ReplicaSet has available beyond what may be unavailable.
fn scale_down_olds(sim: &Sim, d: &Value, new: Option<&Value>, olds: &mut [Value], desired: i64) {
    let keep_total = match new {
        _ if recreates(d) => 0,
        Some(rs) => {
            let (_, unavailable) = surge_and_unavailable(d, desired);
            (desired - unavailable.min(desired) - int(rs, "/status/availableReplicas")).max(0)
        }
        None => return,
    };
    // the newest old ones keep their Pods longest
    olds.sort_by_key(|rs| std::cmp::Reverse(revision(rs)));
    let mut left = keep_total;
    for rs in olds.iter_mut() {
        let before = replicas(rs);
        let keep = before.min(left);
        left -= keep;
        if keep < before
            && let Some(updated) =
                super::update(sim, rs, |cur| cur["spec"]["replicas"] = json!(keep))
        {
            scaled(sim, d, rs, before, keep);
            *rs = updated;
        }
    }
}

/// Delete the old ReplicaSets without Pods beyond `revisionHistoryLimit`, oldest first.
fn prune_history(sim: &Sim, d: &Value, olds: &[Value]) {
    let limit = d
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&Value> = olds
        .iter()
        .filter(|rs| replicas(rs) == 0 && int(rs, "/status/replicas") == 0)
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|rs| revision(rs));
    for rs in &idle[..idle.len() - limit] {
        super::delete(sim, rs);
    }
}

fn status(
    sim: &Arc<Sim>,
    d: &Value,
    new: Option<&Value>,
    olds: &[Value],
    desired: i64,
    created: bool,
) -> Value {
    let all: Vec<&Value> = new.into_iter().chain(olds).collect();
    let sum = |p: &str| all.iter().map(|rs| int(rs, p)).sum::<i64>();
    let total = sum("/status/replicas");
    let updated = new.map_or(0, |rs| int(rs, "/status/replicas"));
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let spec_total: i64 = all.iter().map(|rs| replicas(rs)).sum();
    let mut s = json!({"observedGeneration": meta::generation(d)});
    counters(
        &mut s,
        &[
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("unavailableReplicas", (spec_total - available).max(0)),
        ],
    );
    let (_, max_unavailable) = surge_and_unavailable(d, desired);
    let available_condition = if available >= desired - max_unavailable.min(desired) {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            true,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            true,
        )
    };
    let complete = updated == desired && total == desired && available >= desired;
    let rs_name = new.map(|rs| meta::name(rs).to_string()).unwrap_or_default();
    let progressing = if paused(d) {
        condition(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            true,
        )
    } else if complete {
        sim.rollouts
            .lock()
            .remove(&(meta::uid(d).to_string(), rs_name.clone()));
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            true,
        )
    } else if fails(d) && deadline_passed(sim, d, &rs_name) {
        condition(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            true,
        )
    } else if created {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{rs_name}\""),
            true,
        )
    } else {
        condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{rs_name}\" is progressing."),
            true,
        )
    };
    s["conditions"] = json!([available_condition, progressing]);
    s
}

/// Whether the rollout of a Deployment told to fail has been going on for its delay;
/// if not, wake it up when it will have.
fn deadline_passed(sim: &Arc<Sim>, d: &Value, rs_name: &str) -> bool {
    let exceeded = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "Progressing"
                    && c["reason"] == "ProgressDeadlineExceeded"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("\"{rs_name}\"")))
            })
        });
    if exceeded {
        return true;
    }
    let key = (meta::uid(d).to_string(), rs_name.to_string());
    let delay = super::delay_for(sim, d, None);
    let started = *sim
        .rollouts
        .lock()
        .entry(key.clone())
        .or_insert_with(Instant::now);
    let elapsed = started.elapsed();
    if elapsed >= delay {
        return true;
    }
    let timer = (
        super::gr(super::DEPLOYMENTS),
        meta::namespace(d).to_string(),
        meta::name(d).to_string(),
        format!("deadline-{}-{rs_name}", meta::uid(d)),
    );
    if sim.timers.lock().insert(timer.clone()) {
        let sim = sim.clone();
        let uid = meta::uid(d).to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay - elapsed).await;
            sim.timers.lock().remove(&timer);
            let (gr, ns, name, _) = &timer;
            if let Some(cur) = sim.cluster.store.get(gr, ns, name)
                && meta::uid(&cur) == uid
            {
                reconcile(&sim, &cur);
            }
        });
    }
    false
}
