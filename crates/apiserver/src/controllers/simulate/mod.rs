//! Workload simulation, in the spirit of kwok: nothing runs, but the workload
//! controllers do what a cluster's do, so `kubectl get pods`, `kubectl rollout`,
//! resource trees, health checks and `kubectl wait` behave as on a real cluster.
//!
//! Each controller reconciles one kind through the [`Cluster`] API, writing as the
//! controller manager, and records Events as the real one does:
//!
//! - [`deployment`]: a ReplicaSet per pod template (`NAME-<pod-template-hash>`, with
//!   its revision), rolled over to the newest one, old ones kept up to
//!   `revisionHistoryLimit`; the Deployment's status follows from them.
//! - [`replicaset`]: as many Pods (`NAME-xxxxx`) as it wants replicas.
//! - [`statefulset`]: Pods `NAME-0..N-1`, replaced one at a time on a new revision,
//!   with a ControllerRevision per revision.
//! - [`daemonset`]: a Pod per Node (one when the cluster has no Node objects).
//! - [`job`]: Pods until enough succeed or too many fail.
//!
//! No kubelet runs the Pods: [`timed`] gives a Pod (and a PersistentVolumeClaim,
//! LoadBalancer Service or Ingress) its final status after [`SimulationOptions::delay`]:
//! Pods run and are ready, PVCs bound, load balancers and Ingresses get an address.
//! A Pod that runs to completion (`restartPolicy: Never` or `OnFailure`) ends
//! `Succeeded` or `Failed` as its command says (`false`, `exit N`, `sleep N`: see
//! [`program`]); a finished Job with `ttlSecondsAfterFinished` is deleted that long
//! after, as the TTL controller does. [`DURATION_ANNOTATION`] sets how long one object
//! takes; a Pod takes its own, else its controller's (so a Deployment's reaches its
//! Pods through its ReplicaSet, which carries the Deployment's annotations).
//!
//! An object annotated with [`FAIL_ANNOTATION`] (any value but `"false"`) fails instead,
//! and so do the Pods it controls: a Deployment's Pods crash-loop and after the delay
//! it gets `Progressing=False` with reason `ProgressDeadlineExceeded`; a Job's Pods exit
//! 1 until it is `Failed` with `BackoffLimitExceeded`; a ReplicaSet of its own (no
//! Deployment controls it) creates no Pods and reports `ReplicaFailure`; StatefulSets'
//! and DaemonSets' Pods crash-loop, so they never become ready, nor do PVCs,
//! LoadBalancers and Ingresses.

mod daemonset;
mod deployment;
mod events;
mod history;
mod job;
mod pods;
pub mod program;
mod replicaset;
mod statefulset;
mod timed;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{CONTROLLER_MANAGER, log_err};
use crate::cluster::{Cluster, DeleteOptions, Preconditions, Propagation, WriteOptions};
use crate::meta;
use crate::registry::GroupResource;
use crate::store::{Event, EventType};

/// Annotation that makes the simulation fail an object instead of making it ready.
pub const FAIL_ANNOTATION: &str = "simulate.capstan.dev/fail";

pub use program::DURATION_ANNOTATION;

/// Options of the workload simulation.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    /// How long a workload stays progressing before it becomes ready (or fails).
    pub delay: Duration,
}

impl Default for SimulationOptions {
    fn default() -> Self {
        SimulationOptions {
            delay: Duration::from_millis(500),
        }
    }
}

/// The resources the simulation acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    Pod,
    Node,
    Claim,
    LoadBalancer,
    Ingress,
}

impl Kind {
    fn of(gr: &GroupResource, obj: &Value) -> Option<Kind> {
        Some(match (gr.group.as_str(), gr.resource.as_str()) {
            ("apps", "deployments") => Kind::Deployment,
            ("apps", "replicasets") => Kind::ReplicaSet,
            ("apps", "statefulsets") => Kind::StatefulSet,
            ("apps", "daemonsets") => Kind::DaemonSet,
            ("batch", "jobs") => Kind::Job,
            ("", "pods") => Kind::Pod,
            ("", "nodes") => Kind::Node,
            ("", "persistentvolumeclaims") => Kind::Claim,
            ("", "services")
                if obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer") =>
            {
                Kind::LoadBalancer
            }
            ("networking.k8s.io", "ingresses") => Kind::Ingress,
            _ => return None,
        })
    }
}

const DEPLOYMENTS: (&str, &str) = ("apps", "deployments");
const REPLICA_SETS: (&str, &str) = ("apps", "replicasets");
const DAEMON_SETS: (&str, &str) = ("apps", "daemonsets");
const CONTROLLER_REVISIONS: (&str, &str) = ("apps", "controllerrevisions");
const JOBS: (&str, &str) = ("batch", "jobs");
const PODS: (&str, &str) = ("", "pods");
const NODES: (&str, &str) = ("", "nodes");

fn gr((group, resource): (&str, &str)) -> GroupResource {
    GroupResource::new(group, resource)
}

type TimerKey = (GroupResource, String, String, String);

/// The simulation's state: the cluster it acts on and its pending timers.
struct Sim {
    cluster: Arc<Cluster>,
    opts: SimulationOptions,
    /// Objects waiting for their delayed status (and Jobs for their TTL).
    timers: Mutex<HashSet<TimerKey>>,
    /// When a failing Deployment's rollout to a ReplicaSet started, by (uid, RS name).
    rollouts: Mutex<HashMap<(String, String), Instant>>,
}

/// Run the simulation until the store closes.
pub async fn run(cluster: Arc<Cluster>, opts: SimulationOptions) {
    let mut rx = cluster.store.subscribe();
    let sim = Arc::new(Sim {
        cluster,
        opts,
        timers: Mutex::default(),
        rollouts: Mutex::default(),
    });
    resync(&sim);
    loop {
        match rx.recv().await {
            Ok(ev) => on_event(&sim, &ev),
            Err(RecvError::Lagged(_)) => resync(&sim),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Re-examine every object, as if each had just changed.
fn resync(sim: &Arc<Sim>) {
    for (gr, obj) in sim.cluster.store.all_objects() {
        if let Some(kind) = Kind::of(&gr, &obj) {
            reconcile(sim, kind, &gr, &obj);
        }
    }
}

fn on_event(sim: &Arc<Sim>, ev: &Event) {
    let Some(kind) = Kind::of(&ev.gr, &ev.object) else {
        return;
    };
    let deleted = ev.kind == EventType::Deleted;
    if !deleted {
        reconcile(sim, kind, &ev.gr, &ev.object);
    }
    // a controller watches what it controls, as a real one does
    match kind {
        Kind::Pod | Kind::ReplicaSet => reconcile_controller_of(sim, &ev.object),
        Kind::Node => {
            for ds in sim.cluster.store.list(&gr(DAEMON_SETS), None).0 {
                daemonset::reconcile(sim, &ds);
            }
        }
        _ => {}
    }
}

fn reconcile(sim: &Arc<Sim>, kind: Kind, gr: &GroupResource, obj: &Value) {
    match kind {
        Kind::Deployment => deployment::reconcile(sim, obj),
        Kind::ReplicaSet => replicaset::reconcile(sim, obj),
        Kind::StatefulSet => statefulset::reconcile(sim, obj),
        Kind::DaemonSet => daemonset::reconcile(sim, obj),
        Kind::Job => job::reconcile(sim, obj),
        Kind::Node => {}
        Kind::Pod | Kind::Claim | Kind::LoadBalancer | Kind::Ingress => {
            timed::consider(sim, kind, gr, obj)
        }
    }
}

/// Reconcile the workload that controls `obj` (its `controller: true` owner).
fn reconcile_controller_of(sim: &Arc<Sim>, obj: &Value) {
    let Some(uid) = controller_uid(obj) else {
        return;
    };
    let Some((owner_gr, owner)) = sim.cluster.store.get_by_uid(&uid) else {
        return;
    };
    if let Some(kind) = Kind::of(&owner_gr, &owner)
        && matches!(
            kind,
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet | Kind::Job
        )
    {
        reconcile(sim, kind, &owner_gr, &owner);
    }
}

// --- what an object says about the simulation ---

fn fails(obj: &Value) -> bool {
    meta::annotation(obj, FAIL_ANNOTATION).is_some_and(|v| v != "false")
}

/// The controller of `obj`, if it still exists.
fn controller_of(sim: &Sim, obj: &Value) -> Option<Arc<Value>> {
    let uid = controller_uid(obj)?;
    sim.cluster.store.get_by_uid(&uid).map(|(_, o)| o)
}

/// Whether a Pod is told to fail: annotated so, or its controller is.
fn pod_fails(sim: &Sim, pod: &Value) -> bool {
    fails(pod) || controller_of(sim, pod).is_some_and(|c| fails(&c))
}

/// How long an object takes: as it is annotated, else (for a Pod) as its controller
/// is, else as its program sleeps, else the simulation's delay.
fn delay_for(sim: &Sim, obj: &Value, program: Option<program::Program>) -> Duration {
    program::annotated(obj)
        .or_else(|| controller_of(sim, obj).and_then(|c| program::annotated(&c)))
        .or_else(|| program.and_then(|p| p.takes))
        .unwrap_or(sim.opts.delay)
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta::labels(obj)
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

fn has_condition(obj: &Value, ty: &str, status: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == status))
}

// --- ownership ---

/// The ownerReference a controller puts on what it makes.
fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta::name(owner),
        "uid": meta::uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The uid of the `controller: true` owner of `obj`.
fn controller_uid(obj: &Value) -> Option<String> {
    meta::owner_references(obj)
        .into_iter()
        .find(|r| r.get("controller") == Some(&json!(true)))
        .and_then(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
}

/// The objects of `resource` that `owner` controls and that are not being deleted.
fn controlled(sim: &Sim, owner: &Value, resource: (&str, &str)) -> Vec<Value> {
    let uid = meta::uid(owner);
    let wanted = gr(resource);
    let mut out: Vec<Value> = sim
        .cluster
        .store
        .dependents_of(uid)
        .into_iter()
        .filter(|(g, o)| {
            *g == wanted && !meta::is_deleting(o) && controller_uid(o).as_deref() == Some(uid)
        })
        .map(|(_, o)| (*o).clone())
        .collect();
    out.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
    out
}

// --- writes, all through the cluster's write path, as the controller manager ---

fn write_opts() -> WriteOptions {
    WriteOptions::internal(CONTROLLER_MANAGER)
}

/// Create `body` in `resource`; the stored object.
fn create(sim: &Sim, resource: (&str, &str), ns: &str, body: Value) -> Option<Value> {
    let def = sim.cluster.registry.any_version(&gr(resource))?;
    match sim.cluster.create(&def, ns, body, &write_opts()) {
        Ok(out) => Some(out.object),
        Err(e) => {
            log_err::<()>("simulated create", Err(e));
            None
        }
    }
}

/// Change the spec or metadata of `obj`: `f` gets the stored object.
fn update(sim: &Sim, obj: &Value, f: impl FnOnce(&mut Value)) -> Option<Value> {
    let resource = gr_of(obj)?;
    let def = sim.cluster.registry.any_version(&resource)?;
    let res = sim.cluster.update_with(
        &def,
        meta::namespace(obj),
        meta::name(obj),
        false,
        &write_opts(),
        |cur| {
            if meta::uid(cur) != meta::uid(obj) {
                return None;
            }
            let mut new = cur.clone();
            f(&mut new);
            (new != *cur).then_some(new)
        },
    );
    match res {
        Ok(out) => out.map(|o| o.object),
        Err(e) => {
            log_err::<()>("simulated update", Err(e));
            None
        }
    }
}

/// Delete `obj` (its dependents in the background), if it is still the same object.
fn delete(sim: &Sim, obj: &Value) -> bool {
    let Some(def) = gr_of(obj).and_then(|g| sim.cluster.registry.any_version(&g)) else {
        return false;
    };
    let opts = DeleteOptions {
        dry_run: false,
        propagation: Some(Propagation::Background),
        preconditions: Preconditions::uid(meta::uid(obj)),
    };
    let res = sim
        .cluster
        .delete(&def, meta::namespace(obj), meta::name(obj), &opts);
    let ok = res.is_ok();
    log_err("simulated delete", res);
    ok
}

/// The resource of a stored object, from its `apiVersion` and `kind`.
fn gr_of(obj: &Value) -> Option<GroupResource> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str)?;
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let resource = match obj.get("kind").and_then(Value::as_str)? {
        "Deployment" => "deployments",
        "ReplicaSet" => "replicasets",
        "StatefulSet" => "statefulsets",
        "DaemonSet" => "daemonsets",
        "ControllerRevision" => "controllerrevisions",
        "Job" => "jobs",
        "Pod" => "pods",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "Service" => "services",
        "Ingress" => "ingresses",
        _ => return None,
    };
    Some(GroupResource::new(group, resource))
}

/// Write `status` as the status of `obj`, unless the object moved to a new
/// generation meanwhile or the status is unchanged. Conditions keep their
/// `lastTransitionTime` while their status stays, and `lastUpdateTime` while their
/// reason and message stay.
fn set_status(sim: &Sim, obj: &Value, mut status: Value) {
    let Some(def) = gr_of(obj).and_then(|g| sim.cluster.registry.any_version(&g)) else {
        return;
    };
    let generation = meta::generation(obj);
    let res = sim.cluster.update_with(
        &def,
        meta::namespace(obj),
        meta::name(obj),
        true,
        &write_opts(),
        |cur| {
            if meta::uid(cur) != meta::uid(obj)
                || meta::generation(cur) != generation
                || meta::is_deleting(cur)
            {
                return None;
            }
            keep_condition_times(cur.get("status"), &mut status);
            if cur.get("status") == Some(&status) {
                return None;
            }
            let mut new = cur.clone();
            new["status"] = status;
            Some(new)
        },
    );
    log_err("simulated status", res);
}

fn keep_condition_times(old: Option<&Value>, new: &mut Value) {
    let old: &[Value] = old
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(conditions) = new.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    for c in conditions {
        let Some(before) = old.iter().find(|o| o["type"] == c["type"]) else {
            continue;
        };
        if before["status"] != c["status"] {
            continue;
        }
        for time in ["lastTransitionTime", "lastProbeTime"] {
            if let Some(t) = before.get(time) {
                c[time] = t.clone();
            }
        }
        if before["reason"] == c["reason"]
            && before["message"] == c["message"]
            && let Some(t) = before.get("lastUpdateTime")
        {
            c["lastUpdateTime"] = t.clone();
        }
    }
}

/// A status condition; `with_update_time` for the kinds that have `lastUpdateTime`
/// (Deployments, Jobs' `lastProbeTime` aside).
fn condition(ty: &str, status: &str, reason: &str, message: &str, with_update_time: bool) -> Value {
    let now = meta::now_rfc3339();
    let mut c = json!({"type": ty, "status": status, "lastTransitionTime": now});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    if with_update_time {
        c["lastUpdateTime"] = json!(now);
    }
    c
}

/// Insert the non-zero counters, as controllers (Go `omitempty`) write them.
fn counters(status: &mut Value, fields: &[(&str, i64)]) {
    for (k, v) in fields {
        if *v != 0 {
            status[*k] = json!(v);
        }
    }
}

/// The hash of a pod template, as the controllers name revisions by it: FNV-1a (32
/// bits) of the template in a canonical form, written in the alphabet Kubernetes uses
/// for generated names (`rand.SafeEncodeString` of the decimal hash). Stable across
/// runs and builds; any change to the template changes it. The form leaves out what
/// a round trip through a client may add or drop (nulls, empty maps and lists) and the
/// `pod-template-hash` label, so a template restored from a ReplicaSet (`kubectl
/// rollout undo`) hashes as it did.
fn template_hash(template: &Value) -> String {
    let canonical = crate::fieldset::canonical(&normalized_template(template));
    let mut hash: u32 = 0x811c_9dc5;
    for b in canonical.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// A template as compared and hashed: without the `pod-template-hash` label, nulls,
/// empty maps or empty lists.
fn normalized_template(template: &Value) -> Value {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let out: serde_json::Map<String, Value> = m
                    .iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k.clone(), v)))
                    .collect();
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(a) => {
                let out: Vec<Value> = a.iter().filter_map(strip).collect();
                (!out.is_empty()).then_some(Value::Array(out))
            }
            other => Some(other.clone()),
        }
    }
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(deployment::HASH_LABEL);
    }
    strip(&t).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_hash_is_stable_and_follows_the_template() {
        let t = json!({"metadata": {"labels": {"app": "web"}},
                       "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}});
        let h = template_hash(&t);
        assert_eq!(h, template_hash(&t));
        assert!(
            h.len() <= 10
                && h.bytes()
                    .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{h}"
        );
        let mut other = t.clone();
        other["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        assert_ne!(template_hash(&other), h);
        // what a ReplicaSet's copy and a client's round trip add does not count
        let mut copied = t.clone();
        copied["metadata"]["labels"][deployment::HASH_LABEL] = json!(h.clone());
        copied["metadata"]["creationTimestamp"] = Value::Null;
        copied["spec"]["containers"][0]["resources"] = json!({});
        assert_eq!(template_hash(&copied), h);
    }

    #[test]
    fn condition_times_are_kept_while_the_condition_holds() {
        let old = json!({"conditions": [
            {"type": "Available", "status": "True", "reason": "A", "lastTransitionTime": "t0", "lastUpdateTime": "t0"},
            {"type": "Progressing", "status": "True", "reason": "A", "lastTransitionTime": "t0", "lastUpdateTime": "t0"}]});
        let mut new = json!({"conditions": [
            {"type": "Available", "status": "True", "reason": "A", "lastTransitionTime": "t1", "lastUpdateTime": "t1"},
            {"type": "Progressing", "status": "True", "reason": "B", "lastTransitionTime": "t1", "lastUpdateTime": "t1"}]});
        keep_condition_times(Some(&old), &mut new);
        assert_eq!(new["conditions"][0]["lastUpdateTime"], "t0");
        assert_eq!(new["conditions"][1]["lastTransitionTime"], "t0");
        assert_eq!(
            new["conditions"][1]["lastUpdateTime"], "t1",
            "a new reason is an update"
        );
    }
}
