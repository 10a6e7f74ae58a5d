//! Namespace health: a Namespace that is being deleted (`status.phase: Terminating` or
//! `metadata.deletionTimestamp` set) is Progressing, with what it still waits for (the
//! `NamespaceContentRemaining` / `NamespaceFinalizersRemaining` conditions); any other
//! Namespace is Healthy.

use capstan_core::Health;
use serde_json::Value;

use super::{condition, progressing, sentence, text};

/// The conditions that say what a terminating Namespace still waits for, most telling first.
const REMAINING: &[&str] = &[
    "NamespaceDeletionContentFailure",
    "NamespaceFinalizersRemaining",
    "NamespaceContentRemaining",
];

/// The health of a Namespace.
pub(super) fn assess(obj: &Value) -> Health {
    let terminating = text(obj, "/status/phase") == Some("Terminating")
        || text(obj, "/metadata/deletionTimestamp").is_some();
    if !terminating {
        return Health::healthy();
    }
    let waiting_for = REMAINING
        .iter()
        .filter_map(|kind| condition(obj, kind))
        .find(|remaining| remaining.is_true())
        .map(|remaining| remaining.message)
        .unwrap_or_default();
    progressing(sentence(&["namespace is terminating", waiting_for]))
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn an_active_namespace_is_healthy() {
        assert_healthy(include_str!("testdata/namespace-active.yaml"));
    }

    #[test]
    fn a_terminating_namespace_is_progressing_and_says_what_remains() {
        assert_health(
            include_str!("testdata/namespace-terminating.yaml"),
            HealthState::Progressing,
            "namespace is terminating: Some content in the namespace has finalizers remaining: example.com/cleanup in 2 resource instances",
        );
    }
}
