//! Job health, as Argo CD judges it. In order:
//!
//! 1. The `Failed` condition True → Degraded, with its reason and message (the backoff
//!    limit or the deadline was reached).
//! 2. The `Complete` condition True → Healthy.
//! 3. The `Suspended` condition True, or `spec.suspend` → Suspended, with the
//!    condition's message: no pods are started until it is resumed.
//! 4. Otherwise Progressing, counting active, succeeded and failed pods.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{condition, flag, int, progressing};

/// The health of a Job.
pub(super) fn assess(obj: &Value) -> Health {
    if let Some(failed) = condition(obj, "Failed")
        && failed.is_true()
    {
        let message = match failed.explanation() {
            explanation if explanation.is_empty() => "job failed".to_string(),
            explanation => format!("job failed: {explanation}"),
        };
        return Health::new(HealthState::Degraded, message);
    }
    if condition(obj, "Complete").is_some_and(|complete| complete.is_true()) {
        return Health::healthy();
    }
    let suspended = condition(obj, "Suspended").filter(|suspended| suspended.is_true());
    if suspended.is_some() || flag(obj, "/spec/suspend") {
        let message = suspended
            .map(|suspended| suspended.message)
            .filter(|message| !message.is_empty())
            .unwrap_or("job is suspended");
        return Health::new(HealthState::Suspended, message);
    }
    let active = int(obj, "/status/active");
    let succeeded = int(obj, "/status/succeeded");
    let mut message = format!("job is running: {active} active, {succeeded} succeeded");
    let failed = int(obj, "/status/failed");
    if failed > 0 {
        message.push_str(&format!(", {failed} failed"));
    }
    progressing(message)
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_complete_job_is_healthy() {
        assert_healthy(include_str!("testdata/job-complete.yaml"));
    }

    #[test]
    fn a_failed_job_is_degraded_with_the_reason() {
        assert_health(
            include_str!("testdata/job-failed.yaml"),
            HealthState::Degraded,
            "job failed: BackoffLimitExceeded: Job has reached the specified backoff limit",
        );
    }

    #[test]
    fn a_suspended_job_is_suspended() {
        assert_health(
            include_str!("testdata/job-suspended.yaml"),
            HealthState::Suspended,
            "Job suspended",
        );
    }

    #[test]
    fn a_running_job_counts_its_pods() {
        assert_health(
            include_str!("testdata/job-running.yaml"),
            HealthState::Progressing,
            "job is running: 2 active, 3 succeeded, 1 failed",
        );
    }
}
