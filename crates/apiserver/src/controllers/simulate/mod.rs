//! Workload simulation, in the spirit of kwok: nothing runs, but workloads get the
//! status their controllers would give them, so health checks and `kubectl wait`
//! behave as on a real cluster.
//!
//! When a workload's generation changes it is reported as progressing at once, and
//! after [`SimulationOptions::delay`] as done: Deployments/ReplicaSets/StatefulSets/
//! DaemonSets available with all replicas ready, Jobs complete, Pods running and ready,
//! PersistentVolumeClaims bound, LoadBalancer Services and Ingresses given an address.
//!
//! A Pod that runs to completion (`restartPolicy: Never` or `OnFailure`) ends
//! `Succeeded` or `Failed`, and a Job `Complete` or `Failed`, as their command says
//! (`false`, `exit N`, `sleep N`: see [`program`]); a finished Job with
//! `ttlSecondsAfterFinished` is deleted that long after, as the TTL controller does.
//! [`DURATION_ANNOTATION`] sets how long one object takes.
//!
//! An object annotated with [`FAIL_ANNOTATION`] (any value but `"false"`) fails instead:
//! a Deployment gets `Progressing=False` with reason `ProgressDeadlineExceeded`, a Job
//! `Failed=True` with `BackoffLimitExceeded`, a ReplicaSet `ReplicaFailure`, a Pod
//! crash-loops (or, run to completion, exits 1), and StatefulSets, DaemonSets, PVCs,
//! LoadBalancers and Ingresses never become ready.

pub mod program;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{CONTROLLER_MANAGER, log_err};
use crate::cluster::{Cluster, DeleteOptions, Propagation, WriteOptions};
use crate::meta;
use crate::registry::GroupResource;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    Pod,
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

    /// Whether a new generation restarts the simulation (the timer is keyed by it).
    fn tracks_generation(self) -> bool {
        self.reports_observed_generation() || self == Kind::Job
    }

    /// Whether the controller reports `status.observedGeneration` (Jobs do not).
    fn reports_observed_generation(self) -> bool {
        matches!(
            self,
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet
        )
    }
}

type TimerKey = (GroupResource, String, String, String);

/// Run the simulation until the store closes.
pub async fn run(cluster: Arc<Cluster>, opts: SimulationOptions) {
    let scheduled: Arc<Mutex<HashSet<TimerKey>>> = Arc::default();
    let mut rx = cluster.store.subscribe();
    let scan = |cluster: &Arc<Cluster>, scheduled: &Arc<Mutex<HashSet<TimerKey>>>| {
        for (gr, obj) in cluster.store.all_objects() {
            consider(cluster, &opts, scheduled, &gr, &obj);
        }
    };
    scan(&cluster, &scheduled);
    loop {
        match rx.recv().await {
            Ok(ev) if ev.kind != crate::store::EventType::Deleted => {
                consider(&cluster, &opts, &scheduled, &ev.gr, &ev.object);
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => scan(&cluster, &scheduled),
            Err(RecvError::Closed) => return,
        }
    }
}

fn fails(obj: &Value) -> bool {
    meta::annotation(obj, FAIL_ANNOTATION).is_some_and(|v| v != "false")
}

/// A Pod whose containers are not restarted: it ends.
fn completes(kind: Kind, obj: &Value) -> bool {
    kind == Kind::Pod
        && matches!(
            obj.pointer("/spec/restartPolicy").and_then(Value::as_str),
            Some("Never" | "OnFailure")
        )
}

/// What the containers of a Pod that completes, or of a Job, do.
fn program_of(kind: Kind, obj: &Value) -> Option<program::Program> {
    match kind {
        Kind::Pod if completes(kind, obj) => Some(program::of_containers(&program::containers(
            obj,
            "/spec/containers",
        ))),
        Kind::Job => Some(program::of_containers(&program::containers(
            obj,
            "/spec/template/spec/containers",
        ))),
        _ => None,
    }
}

/// Whether the object ends failed: annotated so, or its program exits non-zero.
fn fails_for(kind: Kind, obj: &Value) -> bool {
    fails(obj) || program_of(kind, obj).is_some_and(|p| p.exit_code != 0)
}

/// How long the object stays progressing: as annotated, as its program sleeps, or the
/// simulation's delay.
fn delay_for(kind: Kind, obj: &Value, opts: &SimulationOptions) -> Duration {
    program::annotated(obj)
        .or_else(|| program_of(kind, obj).and_then(|p| p.takes))
        .unwrap_or(opts.delay)
}

fn observed(obj: &Value) -> i64 {
    obj.pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn has_condition(obj: &Value, ty: &str, status: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == status))
}

/// Whether the object already has its final simulated status for its generation.
fn is_settled(kind: Kind, obj: &Value) -> bool {
    let gen_ok = !kind.reports_observed_generation() || observed(obj) == meta::generation(obj);
    gen_ok
        && match kind {
            Kind::Deployment => {
                has_condition(obj, "Available", "True")
                    && has_condition(obj, "Progressing", "True")
                    && !has_condition(obj, "Progressing", "False")
                    && obj.pointer("/status/unavailableReplicas").is_none()
                    || has_condition(obj, "Progressing", "False")
            }
            Kind::ReplicaSet => {
                obj.pointer("/status/readyReplicas").is_some()
                    || has_condition(obj, "ReplicaFailure", "True")
                    || replicas(obj) == 0 && observed(obj) > 0
            }
            Kind::StatefulSet => {
                obj.pointer("/status/currentRevision").is_some()
                    && obj.pointer("/status/currentRevision")
                        == obj.pointer("/status/updateRevision")
                    && obj
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        == replicas(obj)
            }
            Kind::DaemonSet => obj.pointer("/status/numberAvailable").is_some(),
            Kind::Job => {
                has_condition(obj, "Complete", "True")
                    || has_condition(obj, "Failed", "True")
                    || has_condition(obj, "Suspended", "True") && suspended(obj)
            }
            Kind::Pod if completes(kind, obj) => matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            ),
            Kind::Pod => obj.pointer("/status/containerStatuses").is_some(),
            Kind::Claim => obj.pointer("/status/phase").and_then(Value::as_str) == Some("Bound"),
            Kind::LoadBalancer | Kind::Ingress => {
                obj.pointer("/status/loadBalancer/ingress").is_some()
            }
        }
}

fn consider(
    cluster: &Arc<Cluster>,
    opts: &SimulationOptions,
    scheduled: &Arc<Mutex<HashSet<TimerKey>>>,
    gr: &GroupResource,
    obj: &Value,
) {
    let Some(kind) = Kind::of(gr, obj) else {
        return;
    };
    if meta::is_deleting(obj) {
        return;
    }
    if is_settled(kind, obj) {
        if kind == Kind::Job {
            expire(cluster, scheduled, gr, obj);
        }
        return;
    }
    if fails(obj)
        && matches!(
            kind,
            Kind::StatefulSet | Kind::DaemonSet | Kind::Claim | Kind::LoadBalancer | Kind::Ingress
        )
    {
        // These never become ready; the progressing status is all they get.
        write_status(cluster, gr, obj, kind, Phase::Progressing);
        return;
    }
    let version = if kind.tracks_generation() {
        meta::generation(obj).to_string()
    } else {
        meta::uid(obj).to_string()
    };
    let key = (
        gr.clone(),
        meta::namespace(obj).to_string(),
        meta::name(obj).to_string(),
        version.clone(),
    );
    if !scheduled.lock().insert(key.clone()) {
        return;
    }
    if kind.reports_observed_generation() && observed(obj) < meta::generation(obj)
        || kind == Kind::Pod && obj.pointer("/status/phase").is_none()
        || kind == Kind::Job && obj.pointer("/status/startTime").is_none()
    {
        write_status(cluster, gr, obj, kind, Phase::Progressing);
    }
    let cluster = cluster.clone();
    let scheduled = scheduled.clone();
    let delay = delay_for(kind, obj, opts);
    let gr = gr.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        scheduled.lock().remove(&key);
        let (_, ns, name, version) = &key;
        if let Some(cur) = cluster.store.get(&gr, ns, name) {
            let same = if kind.tracks_generation() {
                meta::generation(&cur).to_string() == *version
            } else {
                meta::uid(&cur) == version
            };
            if same && !meta::is_deleting(&cur) {
                write_status(&cluster, &gr, &cur, kind, Phase::Done);
            }
        }
    });
}

/// Delete a finished Job `ttlSecondsAfterFinished` after its completion (as the TTL
/// controller does); its finalizers, if any, hold it as on a real cluster.
fn expire(
    cluster: &Arc<Cluster>,
    scheduled: &Arc<Mutex<HashSet<TimerKey>>>,
    gr: &GroupResource,
    obj: &Value,
) {
    let Some(ttl) = obj
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_u64)
    else {
        return;
    };
    let key = (
        gr.clone(),
        meta::namespace(obj).to_string(),
        meta::name(obj).to_string(),
        format!("ttl-{}", meta::uid(obj)),
    );
    if !scheduled.lock().insert(key.clone()) {
        return;
    }
    let (cluster, scheduled, gr) = (cluster.clone(), scheduled.clone(), gr.clone());
    let uid = meta::uid(obj).to_string();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(ttl)).await;
        scheduled.lock().remove(&key);
        let (_, ns, name, _) = &key;
        let Some(def) = cluster.registry.any_version(&gr) else {
            return;
        };
        if cluster
            .store
            .get(&gr, ns, name)
            .is_some_and(|cur| meta::uid(&cur) == uid && !meta::is_deleting(&cur))
        {
            let opts = DeleteOptions {
                dry_run: false,
                propagation: Some(Propagation::Background),
                preconditions: crate::cluster::Preconditions::uid(&uid),
            };
            log_err("job ttl", cluster.delete(&def, ns, name, &opts));
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Progressing,
    Done,
}

fn write_status(cluster: &Cluster, gr: &GroupResource, obj: &Value, kind: Kind, phase: Phase) {
    let Some(def) = cluster.registry.any_version(gr) else {
        return;
    };
    let generation = meta::generation(obj);
    let res = cluster.update_with(
        &def,
        meta::namespace(obj),
        meta::name(obj),
        true,
        &WriteOptions::internal(CONTROLLER_MANAGER),
        |cur| {
            if kind.tracks_generation() && meta::generation(cur) != generation {
                return None;
            }
            let status = status_for(kind, cur, phase, fails_for(kind, cur));
            let mut new = cur.clone();
            new["status"] = status;
            Some(new)
        },
    );
    log_err("simulated status", res);
}

fn suspended(obj: &Value) -> bool {
    obj.pointer("/spec/suspend") == Some(&json!(true))
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn template_hash(obj: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    crate::fieldset::canonical(obj.pointer("/spec/template").unwrap_or(&Value::Null)).hash(&mut h);
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn condition(
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    with_update_time: bool,
) -> Value {
    let mut c = json!({"type": ty, "status": status, "reason": reason, "message": message, "lastTransitionTime": now});
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

fn status_for(kind: Kind, obj: &Value, phase: Phase, fail: bool) -> Value {
    let now = meta::now_rfc3339();
    let generation = meta::generation(obj);
    let n = replicas(obj);
    let name = meta::name(obj);
    let rs_name = format!("{name}-{}", template_hash(obj));
    let done = phase == Phase::Done;
    match kind {
        Kind::Deployment => {
            let mut s = json!({"observedGeneration": generation});
            let (available, progressing) = match (done, fail) {
                (true, false) => {
                    counters(
                        &mut s,
                        &[
                            ("replicas", n),
                            ("updatedReplicas", n),
                            ("readyReplicas", n),
                            ("availableReplicas", n),
                        ],
                    );
                    (
                        condition(
                            "Available",
                            "True",
                            "MinimumReplicasAvailable",
                            "Deployment has minimum availability.",
                            &now,
                            true,
                        ),
                        condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetAvailable",
                            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                            &now,
                            true,
                        ),
                    )
                }
                (true, true) => {
                    counters(
                        &mut s,
                        &[
                            ("replicas", n),
                            ("updatedReplicas", n),
                            ("unavailableReplicas", n),
                        ],
                    );
                    (
                        condition(
                            "Available",
                            "False",
                            "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability.",
                            &now,
                            true,
                        ),
                        condition(
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                            &now,
                            true,
                        ),
                    )
                }
                (false, _) => {
                    counters(
                        &mut s,
                        &[
                            ("replicas", n),
                            ("updatedReplicas", n),
                            ("unavailableReplicas", n),
                        ],
                    );
                    let avail = if n == 0 {
                        condition(
                            "Available",
                            "True",
                            "MinimumReplicasAvailable",
                            "Deployment has minimum availability.",
                            &now,
                            true,
                        )
                    } else {
                        condition(
                            "Available",
                            "False",
                            "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability.",
                            &now,
                            true,
                        )
                    };
                    (
                        avail,
                        condition(
                            "Progressing",
                            "True",
                            "ReplicaSetUpdated",
                            &format!("ReplicaSet \"{rs_name}\" is progressing."),
                            &now,
                            true,
                        ),
                    )
                }
            };
            s["conditions"] = json!([available, progressing]);
            s
        }
        Kind::ReplicaSet => {
            let mut s = json!({"observedGeneration": generation, "replicas": n});
            counters(&mut s, &[("fullyLabeledReplicas", n)]);
            if done && !fail {
                counters(&mut s, &[("readyReplicas", n), ("availableReplicas", n)]);
            } else if done {
                // no pod could be created: there are none
                s = json!({"observedGeneration": generation, "replicas": 0});
                s["conditions"] = json!([condition(
                    "ReplicaFailure",
                    "True",
                    "FailedCreate",
                    "pods could not be created (simulated failure)",
                    &now,
                    false
                )]);
            }
            s
        }
        Kind::StatefulSet => {
            let rev = format!("{name}-{}", template_hash(obj));
            let mut s = json!({"observedGeneration": generation, "replicas": n, "updateRevision": rev, "collisionCount": 0});
            if done && !fail {
                counters(
                    &mut s,
                    &[
                        ("readyReplicas", n),
                        ("currentReplicas", n),
                        ("updatedReplicas", n),
                        ("availableReplicas", n),
                    ],
                );
                s["currentRevision"] = json!(rev);
            } else {
                // Rolling out: the pods of the current revision (all of them, for a new
                // set) run until they are replaced; none is updated yet.
                let current = obj
                    .pointer("/status/currentRevision")
                    .and_then(Value::as_str)
                    .unwrap_or(&rev)
                    .to_string();
                let before = |field: &str| {
                    obj.pointer(&format!("/status/{field}"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        .min(n)
                };
                let updated = if current == rev { n } else { 0 };
                counters(
                    &mut s,
                    &[
                        ("readyReplicas", before("readyReplicas")),
                        ("currentReplicas", n),
                        ("updatedReplicas", updated),
                        ("availableReplicas", before("availableReplicas")),
                    ],
                );
                s["currentRevision"] = json!(current);
            }
            s
        }
        Kind::DaemonSet => {
            let mut s = json!({"observedGeneration": generation, "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0, "updatedNumberScheduled": 1});
            if done && !fail {
                s["numberReady"] = json!(1);
                s["numberAvailable"] = json!(1);
            } else {
                s["numberReady"] = json!(0);
                s["numberUnavailable"] = json!(1);
            }
            s
        }
        Kind::Job => {
            let start = obj
                .pointer("/status/startTime")
                .cloned()
                .unwrap_or_else(|| json!(now));
            if suspended(obj) {
                return json!({"conditions": [condition("Suspended", "True", "JobSuspended", "Job suspended", &now, true)]});
            }
            let completions = obj
                .pointer("/spec/completions")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let backoff = obj
                .pointer("/spec/backoffLimit")
                .and_then(Value::as_i64)
                .unwrap_or(6);
            match (done, fail) {
                (false, _) => {
                    json!({"startTime": start, "active": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}})
                }
                (true, false) => {
                    json!({"startTime": start, "completionTime": now, "succeeded": completions, "ready": 0, "terminating": 0,
                    "uncountedTerminatedPods": {},
                    "conditions": [
                        condition("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", &now, true),
                        condition("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", &now, true),
                    ]})
                }
                (true, true) => {
                    json!({"startTime": start, "failed": backoff + 1, "ready": 0, "terminating": 0,
                    "uncountedTerminatedPods": {},
                    "conditions": [
                        condition("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &now, true),
                        condition("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &now, true),
                    ]})
                }
            }
        }
        Kind::Pod => {
            let containers: Vec<Value> = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            // a Pod that runs to completion runs its program meanwhile; others start
            let fail = match (done, completes(kind, obj)) {
                (true, true) => return completed_pod(&containers, fail, &now),
                (false, true) => false,
                (false, false) => {
                    return json!({"phase": "Pending", "conditions": [condition("PodScheduled", "True", "Scheduled", "simulated", &now, false)]});
                }
                (true, false) => fail,
            };
            let ready = if fail { "False" } else { "True" };
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| {
                    let image = c.get("image").cloned().unwrap_or(Value::Null);
                    if fail {
                        json!({"name": c["name"], "image": image, "imageID": "", "ready": false, "started": false, "restartCount": 3,
                               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container (simulated)"}}})
                    } else {
                        json!({"name": c["name"], "image": image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
                               "state": {"running": {"startedAt": now}}})
                    }
                })
                .collect();
            json!({"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.244.0.10", "startTime": now,
                   "conditions": [
                       condition("PodScheduled", "True", "", "", &now, false),
                       condition("Initialized", "True", "", "", &now, false),
                       condition("ContainersReady", ready, if fail { "ContainersNotReady" } else { "" }, "", &now, false),
                       condition("Ready", ready, if fail { "ContainersNotReady" } else { "" }, "", &now, false),
                   ],
                   "containerStatuses": statuses})
        }
        Kind::Claim => {
            if done && !fail {
                json!({"phase": "Bound",
                       "accessModes": obj.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                       "capacity": {"storage": obj.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))}})
            } else {
                json!({"phase": "Pending"})
            }
        }
        Kind::LoadBalancer => {
            if done && !fail {
                json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.10", "ipMode": "VIP"}]}})
            } else {
                json!({"loadBalancer": {}})
            }
        }
        // what an ingress controller writes once it serves the Ingress
        Kind::Ingress => {
            if done && !fail {
                json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.11"}]}})
            } else {
                json!({"loadBalancer": {}})
            }
        }
    }
}

/// The status of a Pod whose containers ran to their end: `Succeeded`, or `Failed`
/// with each container's exit code (annotated to fail: the first exits 1).
fn completed_pod(containers: &[Value], fail: bool, now: &str) -> Value {
    let mut codes: Vec<i64> = containers
        .iter()
        .map(|c| program::of_containers(std::slice::from_ref(c)).exit_code)
        .collect();
    if fail
        && codes.iter().all(|c| *c == 0)
        && let Some(first) = codes.first_mut()
    {
        *first = 1;
    }
    let statuses: Vec<Value> = containers
        .iter()
        .zip(&codes)
        .map(|(c, exit)| {
            let reason = if *exit == 0 { "Completed" } else { "Error" };
            json!({"name": c["name"], "image": c.get("image").cloned().unwrap_or(Value::Null), "imageID": "",
                   "ready": false, "started": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": exit, "reason": reason, "startedAt": now, "finishedAt": now}}})
        })
        .collect();
    let phase = if codes.iter().any(|c| *c != 0) {
        "Failed"
    } else {
        "Succeeded"
    };
    json!({"phase": phase, "hostIP": "10.0.0.1", "podIP": "10.244.0.10", "startTime": now,
           "conditions": [
               condition("PodScheduled", "True", "", "", now, false),
               condition("Initialized", "True", "", "", now, false),
               condition("ContainersReady", "False", "PodCompleted", "", now, false),
               condition("Ready", "False", "PodCompleted", "", now, false),
           ],
           "containerStatuses": statuses})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(fail: bool) -> Value {
        let mut d = json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3, "template": {}}});
        if fail {
            d["metadata"]["annotations"] = json!({FAIL_ANNOTATION: "true"});
        }
        d
    }

    #[test]
    fn deployment_becomes_available_or_exceeds_its_deadline() {
        let mut ok = deploy(false);
        ok["status"] = status_for(Kind::Deployment, &ok, Phase::Done, false);
        assert_eq!(ok["status"]["availableReplicas"], 3);
        assert_eq!(ok["status"]["observedGeneration"], 2);
        assert!(is_settled(Kind::Deployment, &ok));

        let mut bad = deploy(true);
        bad["status"] = status_for(Kind::Deployment, &bad, Phase::Done, fails(&bad));
        assert!(has_condition(&bad, "Progressing", "False"));
        assert_eq!(
            bad["status"]["conditions"][1]["reason"],
            "ProgressDeadlineExceeded"
        );
        assert!(is_settled(Kind::Deployment, &bad));

        let mut progressing = deploy(false);
        progressing["status"] =
            status_for(Kind::Deployment, &progressing, Phase::Progressing, false);
        assert!(!is_settled(Kind::Deployment, &progressing));
    }

    #[test]
    fn a_pod_that_runs_to_completion_ends_as_its_command_says() {
        let pod = |cmd: Value| {
            json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "x", "command": cmd}]}})
        };
        let ok = pod(json!(["true"]));
        let mut done = ok.clone();
        done["status"] = status_for(Kind::Pod, &ok, Phase::Done, fails_for(Kind::Pod, &ok));
        assert_eq!(done["status"]["phase"], "Succeeded");
        assert!(is_settled(Kind::Pod, &done));
        let bad = pod(json!(["false"]));
        let status = status_for(Kind::Pod, &bad, Phase::Done, fails_for(Kind::Pod, &bad));
        assert_eq!(status["phase"], "Failed");
        assert_eq!(
            status["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
        let slow = pod(json!(["sleep", "3"]));
        assert_eq!(
            delay_for(Kind::Pod, &slow, &SimulationOptions::default()),
            Duration::from_secs(3)
        );
        // a pod that is restarted keeps running: its command does not end it
        let mut always = bad.clone();
        always["spec"]["restartPolicy"] = json!("Always");
        assert!(!fails_for(Kind::Pod, &always));
        let mut running = always.clone();
        running["status"] = status_for(Kind::Pod, &always, Phase::Done, false);
        assert_eq!(running["status"]["phase"], "Running");
    }

    #[test]
    fn job_completes_or_fails() {
        let job = json!({"metadata": {"name": "j", "generation": 1}, "spec": {"completions": 2, "backoffLimit": 1}});
        let ok = status_for(Kind::Job, &job, Phase::Done, false);
        assert_eq!(ok["succeeded"], 2);
        assert_eq!(ok["conditions"][1]["type"], "Complete");
        let bad = status_for(Kind::Job, &job, Phase::Done, true);
        assert_eq!(bad["conditions"][1]["type"], "Failed");
        assert_eq!(bad["failed"], 2);
        // Jobs report no observedGeneration: finished is settled all the same
        let with = |status: Value| {
            let mut j = job.clone();
            j["status"] = status;
            j
        };
        assert!(is_settled(Kind::Job, &with(ok)));
        assert!(is_settled(Kind::Job, &with(bad)));
        let running = status_for(Kind::Job, &job, Phase::Progressing, false);
        assert!(!is_settled(Kind::Job, &with(running)));
    }

    #[test]
    fn a_stateful_set_keeps_its_current_revision_until_the_new_one_is_rolled_out() {
        let mut sts = json!({"metadata": {"name": "db", "generation": 1}, "spec": {"replicas": 2,
            "template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}}});
        sts["status"] = status_for(Kind::StatefulSet, &sts, Phase::Progressing, false);
        assert_eq!(
            sts["status"]["currentRevision"], sts["status"]["updateRevision"],
            "a new set starts at its only revision"
        );
        assert!(!is_settled(Kind::StatefulSet, &sts), "no pod is ready yet");
        sts["status"] = status_for(Kind::StatefulSet, &sts, Phase::Done, false);
        assert!(is_settled(Kind::StatefulSet, &sts));
        let old = sts["status"]["currentRevision"].clone();

        sts["metadata"]["generation"] = json!(2);
        sts["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b");
        sts["status"] = status_for(Kind::StatefulSet, &sts, Phase::Progressing, false);
        assert_eq!(sts["status"]["currentRevision"], old);
        assert_ne!(sts["status"]["updateRevision"], old);
        assert_eq!(
            sts["status"]["readyReplicas"], 2,
            "the old pods still serve"
        );
        assert!(sts["status"].get("updatedReplicas").is_none());
        assert!(!is_settled(Kind::StatefulSet, &sts));

        sts["status"] = status_for(Kind::StatefulSet, &sts, Phase::Done, false);
        assert_eq!(
            sts["status"]["currentRevision"],
            sts["status"]["updateRevision"]
        );
        assert_eq!(sts["status"]["updatedReplicas"], 2);
        assert!(is_settled(Kind::StatefulSet, &sts));
    }
}
