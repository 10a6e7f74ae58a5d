//! Pod health, after Argo CD and kstatus. In order:
//!
//! 1. `metadata.deletionTimestamp` → Progressing: the pod is terminating.
//! 2. Phase `Succeeded` → Healthy: it ran to completion.
//! 3. Phase `Failed` → Degraded, with `status.message` or, when there is none, the first
//!    terminated container's reason, message and exit code.
//! 4. A container (init or regular) waiting for a reason it will not get out of on its
//!    own — `CrashLoopBackOff`, `ImagePullBackOff`, `ErrImagePull`, `ErrImageNeverPull`,
//!    `InvalidImageName`, `CreateContainerConfigError`, `CreateContainerError` →
//!    Degraded, naming the container, the reason and the message.
//! 5. Phase `Running`:
//!    - with `spec.restartPolicy: Always` (the default): Healthy when every container is
//!      ready and the `Ready` condition is not False; Progressing otherwise.
//!    - with `OnFailure` or `Never`: Progressing. Such a pod is meant to finish (a Job's
//!      pod, a sync hook) and is only healthy once it has Succeeded.
//! 6. Phase `Pending` or no phase yet → Progressing, with the scheduler's reason when the
//!    pod cannot be scheduled.
//! 7. Any other phase (`Unknown`: the node stopped reporting) → Unknown.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{condition, progressing, sentence, text};

/// Waiting reasons a container does not recover from without a change (to the image,
/// the configuration or the program).
const STUCK_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The health of a Pod.
pub(super) fn assess(obj: &Value) -> Health {
    if text(obj, "/metadata/deletionTimestamp").is_some() {
        return progressing("pod is terminating");
    }
    let phase = text(obj, "/status/phase");
    match phase {
        Some("Succeeded") => return Health::healthy(),
        Some("Failed") => return Health::new(HealthState::Degraded, failure(obj)),
        _ => {}
    }
    if let Some(stuck) = stuck_container(obj) {
        return Health::new(HealthState::Degraded, stuck);
    }
    match phase {
        Some("Running") => running(obj),
        Some("Pending") | None => pending(obj),
        Some(other) => Health::new(
            HealthState::Unknown,
            sentence(&[
                &format!("pod phase is {other}"),
                text(obj, "/status/message").unwrap_or_default(),
            ]),
        ),
    }
}

/// Why a Failed pod failed: the pod's own message (an eviction, a deadline), else the
/// first container that terminated with a reason or a non-zero exit code.
fn failure(obj: &Value) -> String {
    let message = text(obj, "/status/message").unwrap_or_default();
    if !message.is_empty() {
        let reason = text(obj, "/status/reason").unwrap_or_default();
        return format!("pod failed: {}", sentence(&[reason, message]));
    }
    let terminated = statuses(obj).find_map(|status| {
        let state = status.pointer("/state/terminated")?;
        let exit_code = state.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
        let reason = state
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if exit_code == 0 && (reason.is_empty() || reason == "Completed") {
            return None;
        }
        let name = status
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message = state
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Some(format!(
            "pod failed: container {name:?} terminated: {} (exit code {exit_code})",
            sentence(&[reason, message])
        ))
    });
    terminated.unwrap_or_else(|| "pod failed".to_string())
}

/// The first container waiting for a reason in [`STUCK_REASONS`], as a sentence.
fn stuck_container(obj: &Value) -> Option<String> {
    statuses(obj).find_map(|status| {
        let waiting = status.pointer("/state/waiting")?;
        let reason = waiting.get("reason").and_then(Value::as_str)?;
        if !STUCK_REASONS.contains(&reason) {
            return None;
        }
        let name = status
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message = waiting
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Some(sentence(&[
            &format!("container {name:?} is in {reason}"),
            message,
        ]))
    })
}

/// A running pod: done only when it is meant to run forever and every container is ready.
fn running(obj: &Value) -> Health {
    let restart_policy = text(obj, "/spec/restartPolicy").unwrap_or("Always");
    if restart_policy != "Always" {
        return progressing(format!(
            "pod is running (restart policy {restart_policy}), waiting for it to succeed"
        ));
    }
    let total = obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |all| {
            all.iter()
                .filter(|status| status.get("ready").and_then(Value::as_bool) == Some(true))
                .count()
        });
    if ready < total {
        return progressing(format!("{ready} of {total} containers ready"));
    }
    if let Some(pod_ready) = condition(obj, "Ready")
        && pod_ready.is_false()
    {
        return progressing(sentence(&["pod is not ready", &pod_ready.explanation()]));
    }
    Health::healthy()
}

/// A pending pod, with the scheduler's reason when it cannot be placed.
fn pending(obj: &Value) -> Health {
    let message = match condition(obj, "PodScheduled") {
        Some(scheduled) if scheduled.is_false() => {
            sentence(&["pod is not scheduled", &scheduled.explanation()])
        }
        _ => sentence(&[
            "pod is pending",
            text(obj, "/status/message").unwrap_or_default(),
        ]),
    };
    progressing(message)
}

/// The statuses of the init containers, then of the regular containers.
fn statuses(obj: &Value) -> impl Iterator<Item = &Value> {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|pointer| obj.pointer(pointer).and_then(Value::as_array))
        .flatten()
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_running_pod_with_every_container_ready_is_healthy() {
        assert_healthy(include_str!("testdata/pod-running.yaml"));
    }

    #[test]
    fn a_succeeded_pod_is_healthy() {
        assert_healthy(include_str!("testdata/pod-succeeded.yaml"));
    }

    #[test]
    fn a_failed_pod_is_degraded_with_the_pod_message() {
        assert_health(
            include_str!("testdata/pod-evicted.yaml"),
            HealthState::Degraded,
            "pod failed: Evicted: The node was low on resource: memory.",
        );
    }

    #[test]
    fn a_failed_pod_without_a_message_names_the_container_that_failed() {
        assert_health(
            include_str!("testdata/pod-failed.yaml"),
            HealthState::Degraded,
            "container \"migrate\" terminated: Error: relation \"orders\" does not exist (exit code 1)",
        );
    }

    #[test]
    fn a_crashlooping_container_makes_the_pod_degraded() {
        assert_health(
            include_str!("testdata/pod-crashloop.yaml"),
            HealthState::Degraded,
            "container \"web\" is in CrashLoopBackOff: back-off 5m0s restarting failed container=web",
        );
    }

    #[test]
    fn an_image_that_cannot_be_pulled_makes_the_pod_degraded() {
        assert_health(
            include_str!("testdata/pod-image-pull-backoff.yaml"),
            HealthState::Degraded,
            "container \"web\" is in ImagePullBackOff: Back-off pulling image",
        );
    }

    #[test]
    fn a_crashlooping_init_container_makes_the_pod_degraded() {
        assert_health(
            include_str!("testdata/pod-init-container-crashloop.yaml"),
            HealthState::Degraded,
            "container \"wait-for-db\" is in CrashLoopBackOff",
        );
    }

    #[test]
    fn a_missing_config_map_makes_the_pod_degraded() {
        assert_health(
            include_str!("testdata/pod-create-container-config-error.yaml"),
            HealthState::Degraded,
            "CreateContainerConfigError: configmap \"web-config\" not found",
        );
    }

    #[test]
    fn a_running_pod_counts_its_ready_containers() {
        assert_health(
            include_str!("testdata/pod-containers-not-ready.yaml"),
            HealthState::Progressing,
            "1 of 2 containers ready",
        );
    }

    #[test]
    fn a_running_pod_meant_to_finish_is_progressing_until_it_succeeds() {
        assert_health(
            include_str!("testdata/pod-running-restart-never.yaml"),
            HealthState::Progressing,
            "pod is running (restart policy Never), waiting for it to succeed",
        );
    }

    #[test]
    fn an_unschedulable_pod_is_progressing_with_the_scheduler_reason() {
        assert_health(
            include_str!("testdata/pod-pending-unschedulable.yaml"),
            HealthState::Progressing,
            "pod is not scheduled: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
        );
    }

    #[test]
    fn a_terminating_pod_is_progressing() {
        assert_health(
            include_str!("testdata/pod-terminating.yaml"),
            HealthState::Progressing,
            "pod is terminating",
        );
    }

    #[test]
    fn a_pod_on_an_unreachable_node_is_unknown() {
        assert_health(
            include_str!("testdata/pod-phase-unknown.yaml"),
            HealthState::Unknown,
            "pod phase is Unknown",
        );
    }
}
