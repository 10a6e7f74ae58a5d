//! Events, as the real controllers record them (`core/v1` Events named
//! `<object>.<hex nanoseconds>`, with the controller as their source), so `kubectl get
//! events` and `kubectl describe` tell what the simulation did.

use serde_json::{Value, json};

use super::{PODS, Sim};
use crate::meta;

/// A controller of the simulation, as named in the Events it records.
#[derive(Debug, Clone, Copy)]
pub(super) enum Component {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Deployment => "deployment-controller",
            Component::ReplicaSet => "replicaset-controller",
            Component::StatefulSet => "statefulset-controller",
            Component::DaemonSet => "daemonset-controller",
            Component::Job => "job-controller",
        }
    }
}

/// Record a `Normal` Event on `involved`.
pub(super) fn normal(sim: &Sim, by: Component, involved: &Value, reason: &str, message: &str) {
    record(sim, by, involved, "Normal", reason, message);
}

/// Record a `Warning` Event on `involved`.
pub(super) fn warning(sim: &Sim, by: Component, involved: &Value, reason: &str, message: &str) {
    record(sim, by, involved, "Warning", reason, message);
}

fn record(sim: &Sim, by: Component, involved: &Value, ty: &str, reason: &str, message: &str) {
    let ns = meta::namespace(involved);
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let now = meta::now_rfc3339();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{nanos:x}", meta::name(involved)), "namespace": ns},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "namespace": ns,
            "name": meta::name(involved),
            "uid": meta::uid(involved),
            "resourceVersion": meta::meta_str(involved, "resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": ty,
        "source": {"component": by.name()},
        "reportingComponent": by.name(),
        "reportingInstance": "",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    super::create(sim, ("", "events"), ns, event);
}

/// `SuccessfulCreate` for a Pod a workload made, in its controller's words.
pub(super) fn pod_created(sim: &Sim, by: Component, owner: &Value, pod: &str) {
    let message = match by {
        Component::StatefulSet => format!(
            "create Pod {pod} in StatefulSet {} successful",
            meta::name(owner)
        ),
        _ => format!("Created pod: {pod}"),
    };
    normal(sim, by, owner, "SuccessfulCreate", &message);
}

/// Delete a Pod a workload controls and record `SuccessfulDelete`.
pub(super) fn delete_pod(sim: &Sim, by: Component, owner: &Value, pod: &Value) {
    debug_assert_eq!(super::gr_of(pod), Some(super::gr(PODS)));
    if !super::delete(sim, pod) {
        return;
    }
    let name = meta::name(pod);
    let message = match by {
        Component::StatefulSet => format!(
            "delete Pod {name} in StatefulSet {} successful",
            meta::name(owner)
        ),
        _ => format!("Deleted pod: {name}"),
    };
    normal(sim, by, owner, "SuccessfulDelete", &message);
}
