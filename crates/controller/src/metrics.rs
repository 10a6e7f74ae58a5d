//! The controller's Prometheus metrics: one registry per controller process, encoded
//! in the OpenMetrics text format by the server's `/metrics` route.
//!
//! Every family is registered here, so `docs/metrics.md` has one place to compare
//! with; the stages that count (reconcile, fetch, webhooks, …) only call the
//! recording functions below.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The labels of `capstan_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The labels of `capstan_webhook_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `github`, `gitlab`, `gitea`, `bitbucket`, `generic`, `dockerhub`, `harbor`, `registry`.
    pub provider: String,
    /// What the receiver did: `accepted`, `ping`, `ignored`, `duplicate`,
    /// `unauthorized`, `too-large`, `bad-request`, `not-configured`.
    pub result: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    webhook_requests: Family<WebhookLabels, prometheus_client::metrics::counter::Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("capstan");
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("build_info", "Capstan's version (always 1)", build);
        let webhook_requests = Family::<WebhookLabels, _>::default();
        registry.register(
            "webhook_requests",
            "Webhook deliveries received, by provider and what was done with them",
            webhook_requests.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            webhook_requests,
        }
    }
}

impl Metrics {
    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// A webhook delivery was answered.
    pub fn webhook(&self, provider: &str, result: &str) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                provider: provider.into(),
                result: result.into(),
            })
            .inc();
    }
}
