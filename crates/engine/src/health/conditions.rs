//! The generic rule, for every kind no other module knows (custom resources included),
//! following the kstatus conventions for `status.conditions`. In order:
//!
//! 1. No `status` at all → Healthy: ConfigMaps, Secrets, ServiceAccounts, RBAC objects
//!    and the like have nothing to become; being present is their health.
//! 2. `status.observedGeneration` (when there is one) behind `metadata.generation` →
//!    Progressing: the controller has not acted on the latest spec, so the rest of the
//!    status is stale.
//! 3. A `Ready` condition whose own `observedGeneration` is behind → Progressing, for
//!    the same reason.
//! 4. `Stalled` True → Degraded, with its reason and message: the controller gave up.
//! 5. `Reconciling` True → Progressing, with its reason and message.
//! 6. `Ready` True → Healthy; `Ready` False → Degraded, with its reason and message;
//!    `Ready` Unknown → Progressing.
//! 7. A status without any of those conditions → Unknown: no rule knows this kind.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{ConditionStatus, condition, int, opt_int, progressing, sentence, text};

/// The health of an object of any other kind, from its conditions.
pub(super) fn assess(obj: &Value) -> Health {
    if obj.get("status").is_none_or(Value::is_null) {
        return Health::healthy();
    }
    let generation = int(obj, "/metadata/generation");
    if let Some(observed) = opt_int(obj, "/status/observedGeneration")
        && observed < generation
    {
        return not_observed(generation, observed);
    }
    let ready = condition(obj, "Ready");
    if let Some(observed) = ready.and_then(|ready| ready.observed_generation)
        && observed < generation
    {
        return not_observed(generation, observed);
    }
    if let Some(stalled) = condition(obj, "Stalled")
        && stalled.is_true()
    {
        return Health::new(
            HealthState::Degraded,
            sentence(&["stalled", &stalled.explanation()]),
        );
    }
    if let Some(reconciling) = condition(obj, "Reconciling")
        && reconciling.is_true()
    {
        return progressing(sentence(&["reconciling", &reconciling.explanation()]));
    }
    let Some(ready) = ready else {
        let kind = text(obj, "/kind").unwrap_or("this kind");
        return Health::new(HealthState::Unknown, format!("no health rule for {kind}"));
    };
    match ready.status {
        ConditionStatus::True => Health::healthy(),
        ConditionStatus::False => Health::new(
            HealthState::Degraded,
            sentence(&["not ready", &ready.explanation()]),
        ),
        ConditionStatus::Unknown => {
            progressing(sentence(&["readiness not known yet", &ready.explanation()]))
        }
    }
}

fn not_observed(generation: i64, observed: i64) -> Health {
    progressing(format!(
        "waiting for the controller to observe generation {generation} (observed {observed})"
    ))
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_configmap_is_healthy_by_being_present() {
        assert_healthy(include_str!("testdata/configmap.yaml"));
    }

    #[test]
    fn a_role_binding_is_healthy_by_being_present() {
        assert_healthy(include_str!("testdata/rolebinding.yaml"));
    }

    #[test]
    fn a_ready_custom_resource_is_healthy() {
        assert_healthy(include_str!("testdata/custom-resource-ready.yaml"));
    }

    #[test]
    fn a_custom_resource_that_is_not_ready_is_degraded_with_the_reason() {
        assert_health(
            include_str!("testdata/custom-resource-ready-false.yaml"),
            HealthState::Degraded,
            "not ready: AuthenticationFailed: failed to authenticate to bucket \"backups\": access denied",
        );
    }

    #[test]
    fn a_custom_resource_of_unknown_readiness_is_progressing() {
        assert_health(
            include_str!("testdata/custom-resource-ready-unknown.yaml"),
            HealthState::Progressing,
            "readiness not known yet: Progressing: reconciliation in progress",
        );
    }

    #[test]
    fn a_stalled_custom_resource_is_degraded_with_the_reason() {
        assert_health(
            include_str!("testdata/custom-resource-stalled.yaml"),
            HealthState::Degraded,
            "stalled: InvalidChartReference: chart \"podinfo\" version \"9.9.9\" not found",
        );
    }

    #[test]
    fn a_reconciling_custom_resource_is_progressing() {
        assert_health(
            include_str!("testdata/custom-resource-reconciling.yaml"),
            HealthState::Progressing,
            "reconciling: Progressing: upgrading release to chart version 6.7.1",
        );
    }

    #[test]
    fn a_custom_resource_whose_new_spec_is_not_yet_observed_is_progressing() {
        assert_health(
            include_str!("testdata/custom-resource-generation-not-observed.yaml"),
            HealthState::Progressing,
            "waiting for the controller to observe generation 4 (observed 3)",
        );
    }

    #[test]
    fn a_ready_condition_computed_for_an_older_generation_is_progressing() {
        assert_health(
            include_str!("testdata/custom-resource-ready-condition-stale.yaml"),
            HealthState::Progressing,
            "waiting for the controller to observe generation 3 (observed 2)",
        );
    }

    #[test]
    fn a_status_without_known_conditions_is_unknown() {
        assert_health(
            include_str!("testdata/custom-resource-without-conditions.yaml"),
            HealthState::Unknown,
            "no health rule for Widget",
        );
    }
}
