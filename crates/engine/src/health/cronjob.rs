//! CronJob health: `spec.suspend` → Suspended, otherwise Healthy.
//!
//! A CronJob only schedules Jobs; whether the last run succeeded is the health of that
//! Job, not of the CronJob, so a `status.lastSuccessfulTime` older than
//! `status.lastScheduleTime` (a run that failed or is still going) stays Healthy.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::flag;

/// The health of a CronJob.
pub(super) fn assess(obj: &Value) -> Health {
    if flag(obj, "/spec/suspend") {
        return Health::new(HealthState::Suspended, "cron job is suspended");
    }
    Health::healthy()
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_scheduled_cronjob_is_healthy() {
        assert_healthy(include_str!("testdata/cronjob-scheduled.yaml"));
    }

    #[test]
    fn a_cronjob_whose_last_run_has_not_succeeded_is_still_healthy() {
        assert_healthy(include_str!("testdata/cronjob-last-run-unsuccessful.yaml"));
    }

    #[test]
    fn a_suspended_cronjob_is_suspended() {
        assert_health(
            include_str!("testdata/cronjob-suspended.yaml"),
            HealthState::Suspended,
            "cron job is suspended",
        );
    }
}
