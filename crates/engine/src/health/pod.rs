//! Pod health, as Argo CD judges it. In order:
//!
//! 1. `metadata.deletionTimestamp` → Progressing: the pod is terminating.
//! 2. A pod meant to run forever (below) with a container (init or regular) waiting for
//!    a reason it will not get out of on its own — a reason starting with `Err` or
//!    ending with `Error` or `BackOff` (`CrashLoopBackOff`, `ImagePullBackOff`,
//!    `ErrImagePull`, `CreateContainerConfigError`, …), or `InvalidImageName` →
//!    Degraded, naming the container, the reason and the message.
//! 3. Phase `Succeeded` → Healthy: it ran to completion.
//! 4. Phase `Failed` → Degraded, with `status.message` or, when there is none, the first
//!    terminated container's reason, message and exit code.
//! 5. Phase `Running`:
//!    - a pod meant to run forever: Healthy when every container is ready and the
//!      `Ready` condition is not False; Degraded when it is not ready and a container
//!      has terminated before (its `lastState`); Progressing otherwise.
//!    - a pod meant to finish: Progressing. It is only healthy once it has Succeeded.
//! 6. Phase `Pending` or no phase yet → Progressing, with the scheduler's reason when the
//!    pod cannot be scheduled.
//! 7. Any other phase (`Unknown`: the node stopped reporting) → Unknown.
//!
//! A pod is meant to run forever with `spec.restartPolicy: Always` (the default). With
//! `OnFailure` or `Never` it is meant to finish — a Job's pod, a sync hook — so a
//! container in back-off is not judged yet: the hook must not fail before its image
//! arrives. The annotation `argocd.argoproj.io/ignore-restart-policy: "true"` makes such
//! a pod be judged as one meant to run forever, except on a hook pod (one with the
//! annotation `argocd.argoproj.io/hook`), as in Argo CD.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{condition, progressing, sentence, text};

/// Makes a pod with restart policy `Never` or `OnFailure` be judged like `Always`.
const IGNORE_RESTART_POLICY: &str = "argocd.argoproj.io/ignore-restart-policy";

/// Marks a sync hook, which the annotation above never applies to.
const HOOK: &str = "argocd.argoproj.io/hook";

/// The health of a Pod.
pub(super) fn assess(obj: &Value) -> Health {
    if text(obj, "/metadata/deletionTimestamp").is_some() {
        return progressing("pod is terminating");
    }
    let runs_forever = runs_forever(obj);
    if runs_forever && let Some(stuck) = stuck_container(obj) {
        return Health::new(HealthState::Degraded, stuck);
    }
    match text(obj, "/status/phase") {
        Some("Succeeded") => Health::healthy(),
        Some("Failed") => Health::new(HealthState::Degraded, failure(obj)),
        Some("Running") if runs_forever => running(obj),
        Some("Running") => progressing(format!(
            "pod is running (restart policy {}), waiting for it to succeed",
            restart_policy(obj)
        )),
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

/// `spec.restartPolicy`, `Always` when not set.
fn restart_policy(obj: &Value) -> &str {
    text(obj, "/spec/restartPolicy").unwrap_or("Always")
}

/// Whether the pod is judged as one meant to run forever (see the module comment).
fn runs_forever(obj: &Value) -> bool {
    if restart_policy(obj) == "Always" {
        return true;
    }
    let annotation = |name: &str| {
        obj.pointer("/metadata/annotations")
            .and_then(|annotations| annotations.get(name))
            .and_then(Value::as_str)
    };
    annotation(IGNORE_RESTART_POLICY) == Some("true") && annotation(HOOK).is_none()
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

/// Whether a container waiting for this reason stays stuck until something changes
/// (the image, the configuration or the program): Argo CD's test, plus
/// `InvalidImageName`.
fn is_stuck(reason: &str) -> bool {
    reason.starts_with("Err")
        || reason.ends_with("Error")
        || reason.ends_with("BackOff")
        || reason == "InvalidImageName"
}

/// The first container waiting for a reason it is stuck in, as a sentence.
fn stuck_container(obj: &Value) -> Option<String> {
    statuses(obj).find_map(|status| {
        let waiting = status.pointer("/state/waiting")?;
        let reason = waiting.get("reason").and_then(Value::as_str)?;
        if !is_stuck(reason) {
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

/// A running pod meant to run forever: healthy once every container is ready.
fn running(obj: &Value) -> Health {
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
    let not_ready = condition(obj, "Ready").filter(|ready| ready.is_false());
    if ready >= total && not_ready.is_none() {
        return Health::healthy();
    }
    if let Some(restarted) = restarted_container(obj) {
        return Health::new(HealthState::Degraded, restarted);
    }
    if ready < total {
        return progressing(format!("{ready} of {total} containers ready"));
    }
    let explanation = not_ready
        .map(|ready| ready.explanation())
        .unwrap_or_default();
    progressing(sentence(&["pod is not ready", &explanation]))
}

/// The first container that terminated before (its `lastState`), as a sentence: a pod
/// that is not ready while its containers keep restarting is failing, not starting.
fn restarted_container(obj: &Value) -> Option<String> {
    let statuses = obj.pointer("/status/containerStatuses")?.as_array()?;
    statuses.iter().find_map(|status| {
        let terminated = status.pointer("/lastState/terminated")?;
        let field = |name: &str| {
            terminated
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let name = status
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let exit_code = terminated
            .get("exitCode")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        Some(format!(
            "container {name:?} is not ready and terminated before: {} (exit code {exit_code})",
            sentence(&[field("reason"), field("message")])
        ))
    })
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
    fn a_pod_that_is_not_ready_and_restarted_before_is_degraded() {
        assert_health(
            include_str!("testdata/pod-restarted-not-ready.yaml"),
            HealthState::Degraded,
            "container \"web\" is not ready and terminated before: Error (exit code 137)",
        );
    }

    #[test]
    fn a_job_pod_waiting_for_its_image_is_progressing_not_degraded() {
        assert_health(
            include_str!("testdata/pod-restart-on-failure-image-pull-backoff.yaml"),
            HealthState::Progressing,
            "pod is pending",
        );
    }

    #[test]
    fn the_ignore_restart_policy_annotation_judges_a_finite_pod_like_a_service() {
        assert_healthy(include_str!(
            "testdata/pod-running-restart-never-ignore-restart-policy.yaml"
        ));
    }

    #[test]
    fn the_ignore_restart_policy_annotation_does_not_apply_to_hooks() {
        assert_health(
            include_str!("testdata/pod-hook-running-ignore-restart-policy.yaml"),
            HealthState::Progressing,
            "restart policy Never",
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
