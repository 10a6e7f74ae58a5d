//! DaemonSet health, as Argo CD and kstatus judge it. In order:
//!
//! 1. `metadata.generation` ahead of `status.observedGeneration` → Progressing.
//! 2. Fewer `status.updatedNumberScheduled` than `status.desiredNumberScheduled` →
//!    Progressing: the rolling update has not reached every node. Skipped with
//!    `spec.updateStrategy.type: OnDelete`, where pods only move to the new spec when
//!    someone deletes them.
//! 3. Fewer `status.numberAvailable` than `status.desiredNumberScheduled` → Progressing.
//! 4. Otherwise Healthy.
//!
//! Absent status counts are 0.

use capstan_core::Health;
use serde_json::Value;

use super::{int, progressing, rollout_not_observed, text};

/// The health of a DaemonSet.
pub(super) fn assess(obj: &Value) -> Health {
    if let Some(health) = rollout_not_observed(obj) {
        return health;
    }
    let desired = int(obj, "/status/desiredNumberScheduled");
    let updated = int(obj, "/status/updatedNumberScheduled");
    let available = int(obj, "/status/numberAvailable");
    let on_delete = text(obj, "/spec/updateStrategy/type") == Some("OnDelete");
    if !on_delete && updated < desired {
        return progressing(format!("{updated} of {desired} scheduled pods updated"));
    }
    if available < desired {
        return progressing(format!("{available} of {desired} scheduled pods available"));
    }
    Health::healthy()
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_daemonset_updated_and_available_on_every_node_is_healthy() {
        assert_healthy(include_str!("testdata/daemonset-available.yaml"));
    }

    #[test]
    fn a_daemonset_whose_new_spec_is_not_yet_observed_is_progressing() {
        assert_health(
            include_str!("testdata/daemonset-generation-not-observed.yaml"),
            HealthState::Progressing,
            "waiting for the rollout to be observed",
        );
    }

    #[test]
    fn a_daemonset_rolling_out_counts_its_updated_pods() {
        assert_health(
            include_str!("testdata/daemonset-rolling-out.yaml"),
            HealthState::Progressing,
            "2 of 4 scheduled pods updated",
        );
    }

    #[test]
    fn a_daemonset_waits_for_its_pods_to_become_available() {
        assert_health(
            include_str!("testdata/daemonset-pods-unavailable.yaml"),
            HealthState::Progressing,
            "3 of 4 scheduled pods available",
        );
    }

    #[test]
    fn an_on_delete_daemonset_is_healthy_although_pods_are_not_updated() {
        assert_healthy(include_str!("testdata/daemonset-on-delete.yaml"));
    }
}
