//! ReplicaSet health, as Argo CD judges it. In order:
//!
//! 1. `metadata.generation` ahead of `status.observedGeneration` → Progressing.
//! 2. The `ReplicaFailure` condition True → Degraded, with its reason and message: the
//!    controller cannot create pods (a quota, a missing service account).
//! 3. Fewer `status.availableReplicas` than `spec.replicas` (default 1) → Progressing.
//! 4. Otherwise Healthy.
//!
//! Absent status counts are 0.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{condition, int, opt_int, progressing, rollout_not_observed};

/// The health of a ReplicaSet.
pub(super) fn assess(obj: &Value) -> Health {
    if let Some(health) = rollout_not_observed(obj) {
        return health;
    }
    if let Some(failure) = condition(obj, "ReplicaFailure")
        && failure.is_true()
    {
        return Health::new(
            HealthState::Degraded,
            format!("cannot create replicas: {}", failure.explanation()),
        );
    }
    let desired = opt_int(obj, "/spec/replicas").unwrap_or(1);
    let available = int(obj, "/status/availableReplicas");
    if available < desired {
        return progressing(format!("{available} of {desired} replicas available"));
    }
    Health::healthy()
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_replicaset_with_every_replica_available_is_healthy() {
        assert_healthy(include_str!("testdata/replicaset-available.yaml"));
    }

    #[test]
    fn a_replicaset_that_cannot_create_pods_is_degraded_with_the_reason() {
        assert_health(
            include_str!("testdata/replicaset-replica-failure.yaml"),
            HealthState::Degraded,
            "cannot create replicas: FailedCreate: pods \"api-6b7f9-x2k4p\" is forbidden: exceeded quota",
        );
    }

    #[test]
    fn a_replicaset_scaling_up_counts_its_available_replicas() {
        assert_health(
            include_str!("testdata/replicaset-scaling-up.yaml"),
            HealthState::Progressing,
            "1 of 3 replicas available",
        );
    }

    #[test]
    fn a_replicaset_whose_new_spec_is_not_yet_observed_is_progressing() {
        assert_health(
            include_str!("testdata/replicaset-generation-not-observed.yaml"),
            HealthState::Progressing,
            "waiting for the rollout to be observed",
        );
    }
}
