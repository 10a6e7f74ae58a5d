//! HorizontalPodAutoscaler health, as Argo CD judges it. The conditions come from
//! `status.conditions` (`autoscaling/v2`) or, for `autoscaling/v1`, from the JSON in the
//! annotation `autoscaling.alpha.kubernetes.io/conditions`. In order:
//!
//! 1. A condition that says the autoscaler cannot work, anywhere in the list →
//!    Degraded, with its reason and message: `AbleToScale` with reason `FailedGetScale`
//!    or `FailedUpdateScale`, `ScalingActive` with reason `FailedGet{Resource,Object,
//!    Pods,External}Metric`, `FailedComputeMetricsReplicas` or `InvalidSelector`.
//! 2. `AbleToScale` or `ScalingLimited` True → Healthy.
//! 3. Otherwise (no conditions yet, `autoscaling/v1` without the annotation) →
//!    Progressing: waiting to autoscale.
//!
//! The failures are looked for first because an autoscaler that cannot read its
//! metrics still reports `AbleToScale` True. An annotation that is not a JSON list of
//! conditions is Unknown. `autoscaling/v2beta1` and `v2beta2` (no longer served since
//! Kubernetes 1.25 and 1.26) are Unknown, as Argo CD judges them now.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{Condition, progressing, sentence, text};

/// The annotation `autoscaling/v1` keeps the `v2` conditions in.
const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// `(condition type, reason)` pairs that mean the autoscaler cannot do its work.
const FAILURES: &[(&str, &str)] = &[
    ("AbleToScale", "FailedGetScale"),
    ("AbleToScale", "FailedUpdateScale"),
    ("ScalingActive", "FailedGetResourceMetric"),
    ("ScalingActive", "FailedGetObjectMetric"),
    ("ScalingActive", "FailedGetPodsMetric"),
    ("ScalingActive", "FailedGetExternalMetric"),
    ("ScalingActive", "FailedComputeMetricsReplicas"),
    ("ScalingActive", "InvalidSelector"),
];

/// The health of a HorizontalPodAutoscaler.
pub(super) fn assess(obj: &Value) -> Health {
    let api_version = text(obj, "/apiVersion").unwrap_or_default();
    let conditions = match api_version {
        "autoscaling/v2" => obj.pointer("/status/conditions").cloned(),
        "autoscaling/v1" => match annotated_conditions(obj) {
            Ok(conditions) => conditions,
            Err(health) => return health,
        },
        other => {
            return Health::new(
                HealthState::Unknown,
                format!(
                    "unsupported API version {other} for HorizontalPodAutoscaler (use autoscaling/v2)"
                ),
            );
        }
    };
    let conditions = conditions.unwrap_or_default();
    let all: Vec<Condition> = conditions
        .as_array()
        .map(|all| all.iter().map(Condition::from_value).collect())
        .unwrap_or_default();
    judge(&all)
}

/// The conditions of an `autoscaling/v1` autoscaler, from its annotation: `None` when
/// there is none, Unknown when it is not JSON.
fn annotated_conditions(obj: &Value) -> Result<Option<Value>, Health> {
    let Some(annotation) = obj
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(CONDITIONS_ANNOTATION))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    serde_json::from_str(annotation).map(Some).map_err(|e| {
        Health::new(
            HealthState::Unknown,
            format!("annotation {CONDITIONS_ANNOTATION} is not valid JSON: {e}"),
        )
    })
}

/// Failures first, across every condition; then the healthy ones.
fn judge(all: &[Condition]) -> Health {
    if let Some(failure) = all.iter().find(|c| FAILURES.contains(&(c.kind, c.reason))) {
        return Health::new(
            HealthState::Degraded,
            sentence(&[failure.kind, failure.reason, failure.message]),
        );
    }
    let healthy = all
        .iter()
        .any(|c| matches!(c.kind, "AbleToScale" | "ScalingLimited") && c.is_true());
    if healthy {
        return Health::healthy();
    }
    progressing("waiting to autoscale")
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn an_autoscaler_able_to_scale_is_healthy() {
        assert_healthy(include_str!("testdata/hpa-v2-able-to-scale.yaml"));
    }

    #[test]
    fn an_autoscaler_that_cannot_read_its_metrics_is_degraded_although_able_to_scale() {
        assert_health(
            include_str!("testdata/hpa-v2-metrics-unavailable.yaml"),
            HealthState::Degraded,
            "ScalingActive: FailedGetResourceMetric: the HPA was unable to compute the replica count",
        );
    }

    #[test]
    fn a_v1_autoscaler_reads_its_conditions_from_the_annotation() {
        assert_health(
            include_str!("testdata/hpa-v1-failed-get-scale.yaml"),
            HealthState::Degraded,
            "AbleToScale: FailedGetScale",
        );
    }

    #[test]
    fn a_v1_autoscaler_without_the_annotation_is_waiting_to_autoscale() {
        assert_health(
            include_str!("testdata/hpa-v1-without-conditions.yaml"),
            HealthState::Progressing,
            "waiting to autoscale",
        );
    }

    #[test]
    fn a_v1_autoscaler_whose_annotation_is_not_json_is_unknown() {
        assert_health(
            include_str!("testdata/hpa-v1-conditions-not-json.yaml"),
            HealthState::Unknown,
            "annotation autoscaling.alpha.kubernetes.io/conditions is not valid JSON",
        );
    }

    #[test]
    fn a_v2beta2_autoscaler_is_unknown_as_the_api_is_no_longer_served() {
        assert_health(
            include_str!("testdata/hpa-v2beta2-no-longer-served.yaml"),
            HealthState::Unknown,
            "unsupported API version autoscaling/v2beta2",
        );
    }
}
