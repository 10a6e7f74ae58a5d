//! The Application's status: conditions, resources with their health, and the
//! `Suspended` condition with its audit record.

use std::collections::BTreeSet;

use capstan_core::{Change, Health, HealthState};
use capstan_engine::health::CustomHealth;
use capstan_engine::plan::Plan;
use kube::{Resource, ResourceExt};

use crate::audit::{self, AuditRecordSpec};
use crate::crd::{Application, ApplicationStatus, Condition, HealthStatus, ResourceStatus};
use crate::{Context, now};

/// A condition; `ok` is its status.
pub(super) fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: generation,
    }
}

/// Keep `lastTransitionTime` when a condition's status did not change.
pub(super) fn merge_conditions(old: &[Condition], new: Vec<Condition>) -> Vec<Condition> {
    let t = now();
    new.into_iter()
        .map(|mut c| {
            c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
                Some(o) if o.status == c.status => {
                    o.last_transition_time.clone().or_else(|| Some(t.clone()))
                }
                _ => Some(t.clone()),
            };
            c
        })
        .collect()
}

/// Every planned object with its sync state and health, plus what waits to be
/// pruned; and the health rolled up worst-first.
pub(super) fn resources_and_health(
    plan: &Plan,
    custom: &CustomHealth,
) -> (Vec<ResourceStatus>, Health) {
    let mut resources = Vec::new();
    let mut healths = Vec::new();
    for o in &plan.objects {
        let h = match &o.live {
            Some(live) => capstan_engine::health::assess_with(live, custom),
            None => Health::new(HealthState::Missing, "not in the cluster"),
        };
        healths.push(h.clone());
        resources.push(ResourceStatus {
            group: o.desired.id.group.clone(),
            version: o.desired.api_version().to_string(),
            kind: o.desired.id.kind.clone(),
            namespace: o.desired.id.namespace.clone().unwrap_or_default(),
            name: o.desired.id.name.clone(),
            status: if matches!(o.change, Change::Unchanged) && o.error.is_none() {
                "Synced"
            } else {
                "OutOfSync"
            }
            .into(),
            health: Some(HealthStatus {
                status: h.state.to_string(),
                message: h.message,
            }),
            requires_pruning: false,
        });
    }
    for p in plan.prune.iter().filter(|p| p.exists && p.keep.is_none()) {
        resources.push(ResourceStatus {
            group: p.entry.id.group.clone(),
            version: p.entry.api_version.clone(),
            kind: p.entry.id.kind.clone(),
            namespace: p.entry.id.namespace.clone().unwrap_or_default(),
            name: p.entry.id.name.clone(),
            status: "OutOfSync".into(),
            health: None,
            requires_pruning: p.options.prune != capstan_core::Permission::Deny,
        });
    }
    (resources, Health::worst(&healths))
}

/// How many objects differ from Git: drifted ones and those waiting to be pruned.
pub(super) fn drift_count(plan: &Plan) -> usize {
    plan.objects.iter().filter(|o| o.change.is_drift()).count()
        + plan.prune.iter().filter(|p| p.is_drift()).count()
}

/// The kinds (apiVersion, kind) of the status's resources, to watch for drift.
pub(super) fn managed_kinds(status: &ApplicationStatus) -> BTreeSet<(String, String)> {
    status
        .resources
        .iter()
        .map(|r| (r.version.clone(), r.kind.clone()))
        .collect()
}

/// Keep the `Suspended` condition in step with `spec.suspend`, and audit each change
/// of it the controller sees — whoever made it: `capstan suspend`, `kubectl edit`, a
/// GitOps repository of Applications. The actor is the field manager that set
/// `spec.suspend` (`capstan:alice`, `kubectl-edit`, …).
pub(super) async fn note_suspension(
    app: &Application,
    status: &mut ApplicationStatus,
    ctx: &Context,
) {
    let old = app
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let before = old
        .iter()
        .find(|c| c.type_ == "Suspended")
        .map(|c| c.status == "True");
    let suspended = app.spec.suspend;
    let generation = app.meta().generation;
    let cond = if suspended {
        condition(
            "Suspended",
            true,
            "Suspended",
            "spec.suspend is set: nothing is synced, drift is still reported",
            generation,
        )
    } else {
        condition("Suspended", false, "NotSuspended", "", generation)
    };
    status.conditions.retain(|c| c.type_ != "Suspended");
    status.conditions.extend(merge_conditions(old, vec![cond]));
    if before.is_none_or(|b| b == suspended) {
        return;
    }
    let ns = app.namespace().unwrap_or_default();
    let record = AuditRecordSpec {
        time: audit::record_time(),
        application: format!("{ns}/{}", app.name_any()),
        action: if suspended { "suspend" } else { "unsuspend" }.into(),
        trigger: "manual".into(),
        actor: suspend_manager(app).unwrap_or_else(|| "unknown".into()),
        details: format!("observed by {}", ctx.opts.identity),
        ..Default::default()
    };
    if let Err(e) = audit::append(&ctx.client, &ns, record, Some(app.object_ref(&()))).await {
        tracing::warn!(app = %format!("{ns}/{}", app.name_any()), error = %e, "writing the audit record");
    }
}

/// The field manager that owns `spec.suspend`, if any.
fn suspend_manager(app: &Application) -> Option<String> {
    app.meta()
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|m| m.subresource.as_deref().unwrap_or("").is_empty())
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:suspend"))
                .is_some()
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let old = vec![Condition {
            last_transition_time: Some("2026-01-01T00:00:00Z".into()),
            ..condition("Ready", true, "Ready", "", Some(1))
        }];
        let same = merge_conditions(&old, vec![condition("Ready", true, "Ready", "x", Some(2))]);
        assert_eq!(
            same[0].last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        let flipped = merge_conditions(
            &old,
            vec![condition("Ready", false, "SyncFailed", "", Some(2))],
        );
        assert_ne!(
            flipped[0].last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }
}
