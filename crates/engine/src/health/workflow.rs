//! Argo Workflows `Workflow` health, as Argo CD judges it, from `status.phase` with
//! `status.message`:
//!
//! - no phase yet, `Pending` or `Running` → Progressing.
//! - `Succeeded` → Healthy.
//! - `Failed` or `Error` → Degraded.
//! - any other phase → Unknown.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{sentence, text};

/// The health of a Workflow.
pub(super) fn assess(obj: &Value) -> Health {
    let message = text(obj, "/status/message").unwrap_or_default();
    let phase = text(obj, "/status/phase").unwrap_or_default();
    let state = match phase {
        "" | "Pending" | "Running" => HealthState::Progressing,
        "Succeeded" => return Health::healthy(),
        "Failed" | "Error" => HealthState::Degraded,
        _ => HealthState::Unknown,
    };
    let phase = if phase.is_empty() { "Pending" } else { phase };
    Health::new(state, sentence(&[&format!("workflow {phase}"), message]))
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_succeeded_workflow_is_healthy() {
        assert_healthy(include_str!("testdata/workflow-succeeded.yaml"));
    }

    #[test]
    fn a_failed_workflow_is_degraded_with_its_message() {
        assert_health(
            include_str!("testdata/workflow-failed.yaml"),
            HealthState::Degraded,
            "workflow Failed: child 'build-7x9k2' failed",
        );
    }

    #[test]
    fn a_running_workflow_is_progressing() {
        assert_health(
            include_str!("testdata/workflow-running.yaml"),
            HealthState::Progressing,
            "workflow Running",
        );
    }
}
