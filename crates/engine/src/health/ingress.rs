//! Ingress health: Progressing until the ingress controller has published an address
//! (`status.loadBalancer.ingress` non-empty), then Healthy.

use capstan_core::Health;
use serde_json::Value;

use super::{has_load_balancer_address, progressing};

/// The health of an Ingress.
pub(super) fn assess(obj: &Value) -> Health {
    if has_load_balancer_address(obj) {
        return Health::healthy();
    }
    progressing("waiting for the ingress controller to assign an address")
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn an_ingress_with_an_address_is_healthy() {
        assert_healthy(include_str!("testdata/ingress-address-assigned.yaml"));
    }

    #[test]
    fn an_ingress_without_an_address_is_progressing() {
        assert_health(
            include_str!("testdata/ingress-pending.yaml"),
            HealthState::Progressing,
            "waiting for the ingress controller to assign an address",
        );
    }
}
