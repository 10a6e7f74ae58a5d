//! Deployment health, as Argo CD judges it. In order:
//!
//! 1. `spec.paused` → Suspended: nobody expects it to roll out.
//! 2. `metadata.generation` ahead of `status.observedGeneration` → Progressing: the
//!    controller has not seen the latest spec, so the rest of the status is stale.
//! 3. The `Progressing` condition False with reason `ProgressDeadlineExceeded` →
//!    Degraded, with the condition's message: the rollout gave up.
//! 4. Fewer `status.updatedReplicas` than `spec.replicas` (default 1) → Progressing.
//! 5. More `status.replicas` than updated ones → Progressing: old replicas are still
//!    terminating.
//! 6. Fewer `status.availableReplicas` than updated ones → Progressing.
//! 7. Otherwise Healthy.
//!
//! Absent status counts are 0.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{condition, count, flag, int, opt_int, progressing, rollout_not_observed};

/// The health of a Deployment.
pub(super) fn assess(obj: &Value) -> Health {
    if flag(obj, "/spec/paused") {
        return Health::new(HealthState::Suspended, "deployment is paused");
    }
    if let Some(health) = rollout_not_observed(obj) {
        return health;
    }
    if let Some(progressing) = condition(obj, "Progressing")
        && progressing.is_false()
        && progressing.reason == "ProgressDeadlineExceeded"
    {
        let message = match progressing.message {
            "" => "progress deadline exceeded".to_string(),
            message => format!("progress deadline exceeded: {message}"),
        };
        return Health::new(HealthState::Degraded, message);
    }
    let desired = opt_int(obj, "/spec/replicas").unwrap_or(1);
    let replicas = int(obj, "/status/replicas");
    let updated = int(obj, "/status/updatedReplicas");
    let available = int(obj, "/status/availableReplicas");
    if updated < desired {
        return progressing(format!("{updated} of {desired} replicas updated"));
    }
    if replicas > updated {
        let old = count(replicas - updated, "old replica");
        return progressing(format!("{old} pending termination"));
    }
    if available < updated {
        return progressing(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Health::healthy()
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_deployment_with_every_replica_updated_and_available_is_healthy() {
        assert_healthy(include_str!("testdata/deployment-available.yaml"));
    }

    #[test]
    fn a_deployment_scaled_to_zero_is_healthy() {
        assert_healthy(include_str!("testdata/deployment-scaled-to-zero.yaml"));
    }

    #[test]
    fn a_paused_deployment_is_suspended() {
        assert_health(
            include_str!("testdata/deployment-paused.yaml"),
            HealthState::Suspended,
            "deployment is paused",
        );
    }

    #[test]
    fn a_deployment_whose_new_spec_is_not_yet_observed_is_progressing() {
        assert_health(
            include_str!("testdata/deployment-generation-not-observed.yaml"),
            HealthState::Progressing,
            "waiting for the rollout to be observed (generation 5, observed 4)",
        );
    }

    #[test]
    fn a_deployment_without_status_yet_is_progressing() {
        assert_health(
            include_str!("testdata/deployment-just-created.yaml"),
            HealthState::Progressing,
            "waiting for the rollout to be observed",
        );
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_is_degraded_with_the_reason() {
        assert_health(
            include_str!("testdata/deployment-progress-deadline-exceeded.yaml"),
            HealthState::Degraded,
            "progress deadline exceeded: ReplicaSet \"web-7d4b9c\" has timed out progressing.",
        );
    }

    #[test]
    fn a_deployment_rolling_out_counts_its_updated_replicas() {
        assert_health(
            include_str!("testdata/deployment-rolling-out.yaml"),
            HealthState::Progressing,
            "2 of 3 replicas updated",
        );
    }

    #[test]
    fn a_deployment_waits_for_its_old_replicas_to_terminate() {
        assert_health(
            include_str!("testdata/deployment-old-replicas-terminating.yaml"),
            HealthState::Progressing,
            "1 old replica pending termination",
        );
    }

    #[test]
    fn a_deployment_waits_for_its_updated_replicas_to_become_available() {
        assert_health(
            include_str!("testdata/deployment-updated-replicas-unavailable.yaml"),
            HealthState::Progressing,
            "1 of 3 updated replicas available",
        );
    }
}
