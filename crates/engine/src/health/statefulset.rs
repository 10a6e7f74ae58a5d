//! StatefulSet health, as Argo CD and kstatus judge it. In order:
//!
//! 1. `metadata.generation` ahead of `status.observedGeneration` → Progressing.
//! 2. Fewer `status.readyReplicas` than `spec.replicas` (default 1) → Progressing.
//! 3. `spec.updateStrategy.type: OnDelete` → Healthy: pods only move to a new revision
//!    when someone deletes them, so a revision gap is expected, not a rollout.
//! 4. A rolling update with `rollingUpdate.partition` above 0 → Progressing while fewer
//!    than `replicas - partition` pods are updated, Healthy after: the pods below the
//!    partition deliberately stay on the old revision, so the revisions never match.
//! 5. `status.currentRevision` differing from `status.updateRevision` → Progressing:
//!    a rolling update is under way.
//! 6. Otherwise Healthy.
//!
//! Absent status counts are 0.

use capstan_core::Health;
use serde_json::Value;

use super::{int, opt_int, progressing, rollout_not_observed, text};

/// The health of a StatefulSet.
pub(super) fn assess(obj: &Value) -> Health {
    if let Some(health) = rollout_not_observed(obj) {
        return health;
    }
    let desired = opt_int(obj, "/spec/replicas").unwrap_or(1);
    let ready = int(obj, "/status/readyReplicas");
    if ready < desired {
        return progressing(format!("{ready} of {desired} replicas ready"));
    }
    if text(obj, "/spec/updateStrategy/type") == Some("OnDelete") {
        return Health::healthy();
    }
    let updated = int(obj, "/status/updatedReplicas");
    let partition = int(obj, "/spec/updateStrategy/rollingUpdate/partition");
    if partition > 0 {
        let target = desired - partition;
        if updated < target {
            return progressing(format!(
                "partitioned rollout: {updated} of {target} replicas updated (partition {partition})"
            ));
        }
        return Health::healthy();
    }
    if let Some(update_revision) = text(obj, "/status/updateRevision")
        && text(obj, "/status/currentRevision") != Some(update_revision)
    {
        return progressing(format!(
            "rolling update: {updated} of {desired} replicas at revision {update_revision}"
        ));
    }
    Health::healthy()
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_statefulset_with_every_replica_ready_at_one_revision_is_healthy() {
        assert_healthy(include_str!("testdata/statefulset-ready.yaml"));
    }

    #[test]
    fn a_statefulset_whose_new_spec_is_not_yet_observed_is_progressing() {
        assert_health(
            include_str!("testdata/statefulset-generation-not-observed.yaml"),
            HealthState::Progressing,
            "waiting for the rollout to be observed (generation 3, observed 2)",
        );
    }

    #[test]
    fn a_statefulset_waits_for_its_replicas_to_be_ready() {
        assert_health(
            include_str!("testdata/statefulset-replicas-not-ready.yaml"),
            HealthState::Progressing,
            "2 of 3 replicas ready",
        );
    }

    #[test]
    fn a_statefulset_rolling_update_is_progressing_until_the_revisions_match() {
        assert_health(
            include_str!("testdata/statefulset-rolling-update.yaml"),
            HealthState::Progressing,
            "rolling update: 1 of 3 replicas at revision db-5c9d7b8f4",
        );
    }

    #[test]
    fn a_partitioned_rollout_counts_the_replicas_above_the_partition() {
        assert_health(
            include_str!("testdata/statefulset-partitioned-rollout.yaml"),
            HealthState::Progressing,
            "partitioned rollout: 1 of 2 replicas updated (partition 3)",
        );
    }

    #[test]
    fn a_finished_partitioned_rollout_is_healthy_although_the_revisions_differ() {
        assert_healthy(include_str!(
            "testdata/statefulset-partitioned-rollout-complete.yaml"
        ));
    }

    #[test]
    fn an_on_delete_statefulset_is_healthy_although_the_revisions_differ() {
        assert_healthy(include_str!("testdata/statefulset-on-delete.yaml"));
    }
}
