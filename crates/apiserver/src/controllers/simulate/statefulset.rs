//! The StatefulSet controller: Pods `NAME-0` … `NAME-(N-1)`, each labelled with its
//! revision (`controller-revision-hash`), name and ordinal, with `hostname` and
//! `subdomain` set. A new template is a new revision (a ControllerRevision): the
//! Pods are replaced from the highest ordinal down, one at a time while the others
//! are ready (a Pod that is not ready is replaced at once), and `currentRevision`
//! moves to it once every Pod runs it. Scaling down deletes the highest ordinals.

use std::sync::Arc;

use serde_json::{Value, json};

use super::events::{self, Component};
use super::pods::{self, Extra, Name};
use super::{PODS, Sim, controlled, counters, history, label, replicas, template_hash};
use crate::meta;

const REVISION_LABEL: &str = "controller-revision-hash";

pub(super) fn reconcile(sim: &Arc<Sim>, sts: &Value) {
    if meta::is_deleting(sts) {
        return;
    }
    let name = meta::name(sts);
    let template = sts.pointer("/spec/template").cloned().unwrap_or_default();
    let hash = template_hash(&template);
    let update_revision = format!("{name}-{hash}");
    history::record(sim, sts, &update_revision, &hash);
    let desired = replicas(sts).max(0);
    let ordinal = |pod: &Value| -> Option<i64> {
        meta::name(pod)
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse().ok())
    };
    let mut pods: Vec<(i64, Value)> = controlled(sim, sts, PODS)
        .into_iter()
        .filter_map(|p| ordinal(&p).map(|o| (o, p)))
        .collect();
    pods.sort_by_key(|(o, _)| std::cmp::Reverse(*o));

    // scale down from the highest ordinal
    let (gone, kept): (Vec<_>, Vec<_>) = pods.into_iter().partition(|(o, _)| *o >= desired);
    for (_, pod) in &gone {
        events::delete_pod(sim, Component::StatefulSet, sts, pod);
    }
    let mut pods = kept;
    for i in 0..desired {
        if pods.iter().any(|(o, _)| *o == i) {
            continue;
        }
        let pod_name = format!("{name}-{i}");
        let mut extra = Extra {
            labels: vec![
                (REVISION_LABEL, update_revision.clone()),
                ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                ("apps.kubernetes.io/pod-index", i.to_string()),
            ],
            spec: vec![("hostname", json!(pod_name))],
            ..Default::default()
        };
        if let Some(svc) = sts
            .pointer("/spec/serviceName")
            .filter(|s| s.as_str() != Some(""))
        {
            extra.spec.push(("subdomain", svc.clone()));
        }
        if let Some(made) = pods::create(
            sim,
            Component::StatefulSet,
            sts,
            &template,
            Name::Fixed(&pod_name),
            extra,
        ) && let Some(pod) = sim
            .cluster
            .store
            .get(&super::gr(PODS), meta::namespace(sts), &made)
        {
            pods.push((i, (*pod).clone()));
        }
    }
    pods.sort_by_key(|(o, _)| std::cmp::Reverse(*o));

    // roll to the update revision
    let stale = |p: &Value| label(p, REVISION_LABEL) != Some(update_revision.as_str());
    let all_ready = pods.len() as i64 == desired && pods.iter().all(|(_, p)| pods::is_ready(p));
    let mut replaced = Vec::new();
    for (o, pod) in &pods {
        if stale(pod) && (!pods::is_ready(pod) || all_ready && replaced.is_empty()) {
            events::delete_pod(sim, Component::StatefulSet, sts, pod);
            replaced.push(*o);
        }
    }
    pods.retain(|(o, _)| !replaced.contains(o));

    let count = |f: &dyn Fn(&Value) -> bool| pods.iter().filter(|(_, p)| f(p)).count() as i64;
    let ready = count(&pods::is_ready);
    let updated = count(&|p| !stale(p));
    let mut current_revision = sts
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .unwrap_or(&update_revision)
        .to_string();
    let all_updated = updated == desired && pods.len() as i64 == desired;
    if all_updated && count(&|p| !stale(p) && pods::is_ready(p)) == desired {
        current_revision = update_revision.clone();
    }
    let current = count(&|p| label(p, REVISION_LABEL) == Some(current_revision.as_str()));
    let mut status = json!({"observedGeneration": meta::generation(sts), "replicas": pods.len(),
        "currentRevision": current_revision, "updateRevision": update_revision, "collisionCount": 0});
    counters(
        &mut status,
        &[
            ("readyReplicas", ready),
            ("currentReplicas", current),
            ("updatedReplicas", updated),
            ("availableReplicas", ready),
        ],
    );
    super::set_status(sim, sts, status);
}
