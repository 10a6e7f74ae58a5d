//! PersistentVolumeClaim health, from `status.phase`:
//!
//! - `Bound` → Healthy: a volume backs the claim.
//! - `Lost` → Degraded: the volume bound to the claim is gone.
//! - `Pending`, or no phase yet → Progressing: waiting for a volume to be provisioned or
//!   for a pod to be scheduled (`WaitForFirstConsumer` storage classes bind late).
//! - any other phase → Unknown.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{progressing, text};

/// The health of a PersistentVolumeClaim.
pub(super) fn assess(obj: &Value) -> Health {
    match text(obj, "/status/phase") {
        Some("Bound") => Health::healthy(),
        Some("Lost") => Health::new(
            HealthState::Degraded,
            match text(obj, "/spec/volumeName") {
                Some(volume) => format!("claim lost its volume {volume}"),
                None => "claim lost its volume".to_string(),
            },
        ),
        Some("Pending") | None => progressing("waiting for the claim to be bound to a volume"),
        Some(other) => Health::new(HealthState::Unknown, format!("claim phase is {other}")),
    }
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_bound_claim_is_healthy() {
        assert_healthy(include_str!("testdata/pvc-bound.yaml"));
    }

    #[test]
    fn a_pending_claim_is_progressing() {
        assert_health(
            include_str!("testdata/pvc-pending.yaml"),
            HealthState::Progressing,
            "waiting for the claim to be bound",
        );
    }

    #[test]
    fn a_claim_that_lost_its_volume_is_degraded() {
        assert_health(
            include_str!("testdata/pvc-lost.yaml"),
            HealthState::Degraded,
            "claim lost its volume pvc-2b7e9c1d",
        );
    }
}
