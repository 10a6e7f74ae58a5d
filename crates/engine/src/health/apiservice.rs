//! APIService health (`apiregistration.k8s.io`), as Argo CD judges it, from the
//! `Available` condition:
//!
//! - True → Healthy: the aggregated API (or the local group) is served.
//! - False or Unknown → Progressing, with its reason and message: the backing Service
//!   has no endpoints yet, or does not answer discovery. Argo CD does not call this
//!   Degraded, as an extension API server usually comes up after its APIService.
//! - no `Available` condition yet → Progressing.

use capstan_core::Health;
use serde_json::Value;

use super::{condition, progressing, sentence};

/// The health of an APIService.
pub(super) fn assess(obj: &Value) -> Health {
    match condition(obj, "Available") {
        Some(available) if available.is_true() => Health::healthy(),
        Some(available) => progressing(sentence(&["not available", &available.explanation()])),
        None => progressing("waiting for the API server to check the service"),
    }
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn an_available_api_service_is_healthy() {
        assert_healthy(include_str!("testdata/apiservice-available.yaml"));
    }

    #[test]
    fn an_api_service_without_endpoints_is_progressing_with_the_reason() {
        assert_health(
            include_str!("testdata/apiservice-missing-endpoints.yaml"),
            HealthState::Progressing,
            "not available: MissingEndpoints: endpoints for service/metrics-server in \"kube-system\" have no addresses",
        );
    }
}
