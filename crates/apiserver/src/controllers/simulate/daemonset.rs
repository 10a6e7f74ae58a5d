//! The DaemonSet controller: one Pod (`NAME-xxxxx`) per Node, bound to it, or one
//! Pod when the cluster has no Node objects (nothing is scheduled for real). A new
//! template is a new revision (a ControllerRevision): Pods that are not ready are
//! replaced at once, the others one at a time (`maxUnavailable: 1`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::events::{self, Component};
use super::pods::{self, Extra, Name};
use super::{NODES, PODS, Sim, controlled, counters, gr, history, label, template_hash};
use crate::meta;

const REVISION_LABEL: &str = "controller-revision-hash";

pub(super) fn reconcile(sim: &Arc<Sim>, ds: &Value) {
    if meta::is_deleting(ds) {
        return;
    }
    let name = meta::name(ds);
    let template = ds.pointer("/spec/template").cloned().unwrap_or_default();
    let hash = template_hash(&template);
    history::record(sim, ds, &format!("{name}-{hash}"), &hash);
    let nodes: Vec<Option<String>> = {
        let listed = sim.cluster.store.list(&gr(NODES), None).0;
        if listed.is_empty() {
            vec![None]
        } else {
            listed
                .iter()
                .map(|n| Some(meta::name(n).to_string()))
                .collect()
        }
    };
    let node_of = |p: &Value| {
        p.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut pods = controlled(sim, ds, PODS);
    // Pods on Nodes that are gone, and a second Pod on one Node
    let mut seen = Vec::new();
    pods.retain(|p| {
        let node = node_of(p);
        let keep = nodes.contains(&node) && !seen.contains(&node);
        seen.push(node);
        if !keep {
            events::delete_pod(sim, Component::DaemonSet, ds, p);
        }
        keep
    });
    let generation = meta::generation(ds).to_string();
    for node in &nodes {
        if pods.iter().any(|p| node_of(p) == *node) {
            continue;
        }
        let extra = Extra {
            labels: vec![
                (REVISION_LABEL, hash.clone()),
                ("pod-template-generation", generation.clone()),
            ],
            node: node.as_deref(),
            ..Default::default()
        };
        if let Some(made) = pods::create(
            sim,
            Component::DaemonSet,
            ds,
            &template,
            Name::Generated(name),
            extra,
        ) && let Some(pod) = sim.cluster.store.get(&gr(PODS), meta::namespace(ds), &made)
        {
            pods.push((*pod).clone());
        }
    }
    let stale = |p: &Value| label(p, REVISION_LABEL) != Some(hash.as_str());
    let all_ready = pods.iter().all(pods::is_ready);
    let mut replaced_one = false;
    pods.retain(|p| {
        let replace = stale(p) && (!pods::is_ready(p) || all_ready && !replaced_one);
        if replace {
            replaced_one |= pods::is_ready(p);
            events::delete_pod(sim, Component::DaemonSet, ds, p);
        }
        !replace
    });

    let desired = nodes.len() as i64;
    let ready = pods.iter().filter(|p| pods::is_ready(p)).count() as i64;
    let mut status = json!({
        "observedGeneration": meta::generation(ds),
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": pods.len(),
        "numberMisscheduled": 0,
        "numberReady": ready,
    });
    counters(
        &mut status,
        &[
            (
                "updatedNumberScheduled",
                pods.iter().filter(|p| !stale(p)).count() as i64,
            ),
            ("numberAvailable", ready),
            ("numberUnavailable", desired - ready),
        ],
    );
    super::set_status(sim, ds, status);
}
