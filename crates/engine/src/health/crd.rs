//! CustomResourceDefinition health, from its conditions. In order:
//!
//! 1. `NamesAccepted` False → Degraded, with the message: the kind, plural or short names
//!    conflict with another CRD's.
//! 2. `NonStructuralSchema` True → Degraded, with the message: the schema breaks the
//!    structural rules (only CRDs from before `apiextensions.k8s.io/v1` can get there).
//! 3. `Established` True → Healthy: the API server serves the new resource.
//! 4. Otherwise Progressing: the API server has not established it yet.
//!
//! The failures come first because a CRD whose names were changed to conflicting ones
//! stays Established under its old names.

use capstan_core::{Health, HealthState};
use serde_json::Value;

use super::{condition, progressing, sentence};

/// The health of a CustomResourceDefinition.
pub(super) fn assess(obj: &Value) -> Health {
    if let Some(names) = condition(obj, "NamesAccepted")
        && names.is_false()
    {
        return Health::new(
            HealthState::Degraded,
            sentence(&["names not accepted", &names.explanation()]),
        );
    }
    if let Some(schema) = condition(obj, "NonStructuralSchema")
        && schema.is_true()
    {
        return Health::new(
            HealthState::Degraded,
            sentence(&["schema is not structural", schema.message]),
        );
    }
    if condition(obj, "Established").is_some_and(|established| established.is_true()) {
        return Health::healthy();
    }
    progressing("waiting for the API server to establish the resource")
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn an_established_crd_is_healthy() {
        assert_healthy(include_str!("testdata/crd-established.yaml"));
    }

    #[test]
    fn a_crd_not_yet_established_is_progressing() {
        assert_health(
            include_str!("testdata/crd-not-established.yaml"),
            HealthState::Progressing,
            "waiting for the API server to establish the resource",
        );
    }

    #[test]
    fn a_crd_whose_names_conflict_is_degraded_with_the_reason() {
        assert_health(
            include_str!("testdata/crd-names-not-accepted.yaml"),
            HealthState::Degraded,
            "names not accepted: ListKindConflict: \"WidgetList\" is already in use",
        );
    }
}
