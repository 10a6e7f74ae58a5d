//! The ReplicaSet controller: as many Pods as `spec.replicas` (`NAME-xxxxx`, from the
//! template, controlled by the ReplicaSet), the surplus deleted not-ready and newest
//! first; the status counts them.
//!
//! A ReplicaSet of its own (no Deployment controls it) told to fail creates no Pod
//! and reports `ReplicaFailure`; a Deployment's ReplicaSet carries the Deployment's
//! annotations, and its Pods crash-loop instead.

use std::sync::Arc;

use serde_json::{Value, json};

use super::events::{self, Component};
use super::pods::{self, Extra, Name};
use super::{PODS, Sim, condition, controlled, counters, fails, replicas};
use crate::meta;

pub(super) fn reconcile(sim: &Arc<Sim>, rs: &Value) {
    if meta::is_deleting(rs) {
        return;
    }
    let generation = meta::generation(rs);
    let owned_by_deployment = meta::owner_references(rs)
        .iter()
        .any(|r| r["kind"] == "Deployment" && r.get("controller") == Some(&json!(true)));
    if fails(rs) && !owned_by_deployment {
        fail(sim, rs, generation);
        return;
    }
    let mut pods: Vec<Value> = controlled(sim, rs, PODS)
        .into_iter()
        .filter(pods::is_active)
        .collect();
    let want = replicas(rs).max(0) as usize;
    let template = rs.pointer("/spec/template").cloned().unwrap_or_default();
    for _ in pods.len()..want {
        let made = pods::create(
            sim,
            Component::ReplicaSet,
            rs,
            &template,
            Name::Generated(meta::name(rs)),
            Extra::default(),
        );
        match made.and_then(|name| {
            sim.cluster
                .store
                .get(&super::gr(PODS), meta::namespace(rs), &name)
        }) {
            Some(pod) => pods.push((*pod).clone()),
            None => break,
        }
    }
    if pods.len() > want {
        // the ones that serve least go first: not ready, then the newest
        pods.sort_by(|a, b| {
            (pods::is_ready(a), meta::meta_str(b, "creationTimestamp"))
                .cmp(&(pods::is_ready(b), meta::meta_str(a, "creationTimestamp")))
        });
        for pod in pods.drain(..pods.len() - want) {
            events::delete_pod(sim, Component::ReplicaSet, rs, &pod);
        }
    }
    let ready = pods.iter().filter(|p| pods::is_ready(p)).count() as i64;
    let mut status = json!({"replicas": pods.len(), "observedGeneration": generation});
    counters(
        &mut status,
        &[
            ("fullyLabeledReplicas", pods.len() as i64),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
        ],
    );
    super::set_status(sim, rs, status);
}

/// No Pod could be created: there are none.
fn fail(sim: &Sim, rs: &Value, generation: i64) {
    let message = "pods could not be created (simulated failure)";
    let status = json!({"replicas": 0, "observedGeneration": generation, "conditions": [
        condition("ReplicaFailure", "True", "FailedCreate", message, false)]});
    if !super::has_condition(rs, "ReplicaFailure", "True") {
        events::warning(
            sim,
            Component::ReplicaSet,
            rs,
            "FailedCreate",
            &format!("Error creating: {message}"),
        );
    }
    super::set_status(sim, rs, status);
}
