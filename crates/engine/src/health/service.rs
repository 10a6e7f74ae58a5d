//! Service health: a `LoadBalancer` Service is Progressing until the cloud provider has
//! given it an address (`status.loadBalancer.ingress` non-empty), then Healthy. Every
//! other type (ClusterIP, NodePort, ExternalName, headless) is Healthy once it exists.

use capstan_core::Health;
use serde_json::Value;

use super::{has_load_balancer_address, progressing, text};

/// The health of a Service.
pub(super) fn assess(obj: &Value) -> Health {
    if text(obj, "/spec/type") == Some("LoadBalancer") && !has_load_balancer_address(obj) {
        return progressing("waiting for a load balancer address");
    }
    Health::healthy()
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use crate::health::test_support::{assert_health, assert_healthy};

    #[test]
    fn a_cluster_ip_service_is_healthy() {
        assert_healthy(include_str!("testdata/service-cluster-ip.yaml"));
    }

    #[test]
    fn a_load_balancer_with_an_address_is_healthy() {
        assert_healthy(include_str!("testdata/service-loadbalancer-ready.yaml"));
    }

    #[test]
    fn a_load_balancer_without_an_address_is_progressing() {
        assert_health(
            include_str!("testdata/service-loadbalancer-pending.yaml"),
            HealthState::Progressing,
            "waiting for a load balancer address",
        );
    }
}
