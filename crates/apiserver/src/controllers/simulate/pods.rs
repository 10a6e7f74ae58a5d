//! Pods: how the workload controllers make them from a template, what their state
//! is, and the status a kubelet would give them (no kubelet runs: see [`super::timed`]).

use serde_json::{Map, Value, json};

use super::events::{self, Component};
use super::{NODES, PODS, Sim, condition, controller_ref, gr, program};
use crate::meta;

/// How a new Pod is named.
pub(super) enum Name<'a> {
    /// `PREFIX-xxxxx`, five random characters (ReplicaSets, DaemonSets, Jobs).
    Generated(&'a str),
    /// Exactly this (a StatefulSet's `NAME-ORDINAL`).
    Fixed(&'a str),
}

/// What a controller adds to its template for one Pod.
#[derive(Default)]
pub(super) struct Extra<'a> {
    /// Labels besides the template's.
    pub labels: Vec<(&'a str, String)>,
    /// The Node to run on (else one of the cluster's Nodes, if it has any).
    pub node: Option<&'a str>,
    /// Fields set in the Pod's spec (a StatefulSet Pod's `hostname`).
    pub spec: Vec<(&'a str, Value)>,
}

/// Create a Pod from the template of `owner` (at `/spec/template`, or `template`),
/// controlled by it, and record `SuccessfulCreate`. Returns its name.
pub(super) fn create(
    sim: &Sim,
    by: Component,
    owner: &Value,
    template: &Value,
    name: Name<'_>,
    extra: Extra<'_>,
) -> Option<String> {
    let ns = meta::namespace(owner);
    let mut metadata = Map::new();
    match name {
        Name::Generated(prefix) => {
            metadata.insert("generateName".into(), json!(format!("{prefix}-")))
        }
        Name::Fixed(name) => metadata.insert("name".into(), json!(name)),
    };
    metadata.insert("namespace".into(), json!(ns));
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in extra.labels {
        labels.insert(k.to_string(), json!(v));
    }
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    if let Some(a) = template.pointer("/metadata/annotations") {
        metadata.insert("annotations".into(), a.clone());
    }
    metadata.insert("ownerReferences".into(), json!([controller_ref(owner)]));
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    for (k, v) in extra.spec {
        spec[k] = v;
    }
    let node = extra.node.map(str::to_string).or_else(|| pick_node(sim));
    if let Some(node) = node
        && spec.get("nodeName").is_none()
    {
        spec["nodeName"] = json!(node);
    }
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let pod = super::create(sim, PODS, ns, body)?;
    let name = meta::name(&pod).to_string();
    events::pod_created(sim, by, owner, &name);
    Some(name)
}

/// The Node the scheduler would pick: the one with the fewest Pods.
fn pick_node(sim: &Sim) -> Option<String> {
    let nodes = sim.cluster.store.list(&gr(NODES), None).0;
    if nodes.is_empty() {
        return None;
    }
    let pods = sim.cluster.store.list(&gr(PODS), None).0;
    let load = |node: &str| {
        pods.iter()
            .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
            .count()
    };
    nodes
        .iter()
        .map(|n| meta::name(n))
        .min_by_key(|n| (load(n), n.to_string()))
        .map(str::to_string)
}

pub(super) fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Not finished (`Succeeded`/`Failed`); deleting ones are never counted at all.
pub(super) fn is_active(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed")
}

/// The `Ready` condition is `True`.
pub(super) fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// A Pod whose containers are not restarted: it ends.
pub(super) fn completes(pod: &Value) -> bool {
    matches!(
        pod.pointer("/spec/restartPolicy").and_then(Value::as_str),
        Some("Never" | "OnFailure")
    )
}

/// What the containers of a Pod that completes do.
pub(super) fn program_of(pod: &Value) -> Option<program::Program> {
    completes(pod).then(|| program::of_containers(&program::containers(pod, "/spec/containers")))
}

/// Whether the Pod has the status a kubelet would end up giving it.
pub(super) fn is_settled(pod: &Value) -> bool {
    if completes(pod) {
        matches!(phase(pod), "Succeeded" | "Failed")
    } else {
        pod.pointer("/status/containerStatuses").is_some()
    }
}

/// Whether the Pod has not been given any status yet.
pub(super) fn is_new(pod: &Value) -> bool {
    pod.pointer("/status/phase").is_none()
}

/// The status of a Pod: `Pending` until it started (`done`), then `Running` and
/// ready, or crash-looping (`fail`); a Pod that runs to completion runs meanwhile and
/// ends `Succeeded` or `Failed`.
pub(super) fn status(pod: &Value, done: bool, fail: bool) -> Value {
    let now = meta::now_rfc3339();
    let containers = program::containers(pod, "/spec/containers");
    let started = pod
        .pointer("/status/startTime")
        .cloned()
        .unwrap_or_else(|| json!(now));
    let (host_ip, pod_ip) = addresses(pod);
    let fail = match (done, completes(pod)) {
        (true, true) => return completed(pod, &containers, fail, &now),
        (false, true) => false,
        (false, false) => {
            return json!({"phase": "Pending", "conditions": [condition("PodScheduled", "True", "", "", false)],
                          "qosClass": "BestEffort"});
        }
        (true, false) => fail,
    };
    let ready = if fail { "False" } else { "True" };
    let not_ready = if fail { "ContainersNotReady" } else { "" };
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let image = c.get("image").cloned().unwrap_or(Value::Null);
            if fail {
                json!({"name": c["name"], "image": image, "imageID": "", "ready": false, "started": false, "restartCount": 3,
                       "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container (simulated)"}},
                       "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}}})
            } else {
                json!({"name": c["name"], "image": image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": now}}})
            }
        })
        .collect();
    json!({"phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip,
           "podIPs": [{"ip": pod_ip}], "startTime": started, "qosClass": "BestEffort",
           "conditions": [
               condition("PodReadyToStartContainers", "True", "", "", false),
               condition("Initialized", "True", "", "", false),
               condition("Ready", ready, not_ready, "", false),
               condition("ContainersReady", ready, not_ready, "", false),
               condition("PodScheduled", "True", "", "", false),
           ],
           "containerStatuses": statuses})
}

/// The Node's and the Pod's address: stable for a Pod, distinct between Pods.
fn addresses(pod: &Value) -> (String, String) {
    let h = meta::uid(pod)
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .map_or(1, |n| {
            n.bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
                % 250
                + 1
        });
    (
        format!("10.0.0.{node}"),
        format!("10.244.{}.{}", (h >> 8) % 256, h % 254 + 1),
    )
}

/// The status of a Pod whose containers ran to their end: `Succeeded`, or `Failed`
/// with each container's exit code (told to fail: the first exits 1).
fn completed(pod: &Value, containers: &[Value], fail: bool, now: &str) -> Value {
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
    let (host_ip, pod_ip) = addresses(pod);
    json!({"phase": phase, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip,
           "podIPs": [{"ip": pod_ip}], "startTime": now, "qosClass": "BestEffort",
           "conditions": [
               condition("PodReadyToStartContainers", "False", "", "", false),
               condition("Initialized", "True", "PodCompleted", "", false),
               condition("Ready", "False", "PodCompleted", "", false),
               condition("ContainersReady", "False", "PodCompleted", "", false),
               condition("PodScheduled", "True", "", "", false),
           ],
           "containerStatuses": statuses})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(cmd: Value) -> Value {
        json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": "x", "command": cmd}]}})
    }

    #[test]
    fn a_pod_that_runs_to_completion_ends_as_its_command_says() {
        let ok = pod(json!(["true"]));
        let mut done = ok.clone();
        done["status"] = status(&ok, true, false);
        assert_eq!(done["status"]["phase"], "Succeeded");
        assert!(is_settled(&done));
        let bad = pod(json!(["false"]));
        let fail = program_of(&bad).is_some_and(|p| p.exit_code != 0);
        let s = status(&bad, true, fail);
        assert_eq!(s["phase"], "Failed");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
        // a pod that is restarted keeps running: its command does not end it
        let mut always = bad.clone();
        always["spec"]["restartPolicy"] = json!("Always");
        assert!(program_of(&always).is_none());
        let mut running = always.clone();
        running["status"] = status(&always, true, false);
        assert_eq!(running["status"]["phase"], "Running");
        assert!(is_ready(&running) && is_settled(&running));
    }

    #[test]
    fn a_pod_told_to_fail_crash_loops_and_is_not_ready() {
        let mut p = pod(json!(["nginx"]));
        p["spec"]["restartPolicy"] = json!("Always");
        p["status"] = status(&p, false, true);
        assert_eq!(p["status"]["phase"], "Pending");
        assert!(!is_settled(&p));
        p["status"] = status(&p, true, true);
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        assert!(!is_ready(&p) && is_active(&p));
    }
}
