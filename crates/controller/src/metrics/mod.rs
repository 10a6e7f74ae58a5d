//! The controller's Prometheus metrics: one registry per controller process, encoded
//! in the OpenMetrics text format by the server's `/metrics` route.
//!
//! Every family is registered here, so `docs/metrics.md` has one place to compare
//! with; the stages that count (reconcile, fetch, sync, scans, webhooks, the kube
//! client) only call the recording functions below.
//!
//! Two kinds of metric live here:
//!
//! - **recorded** — counters and histograms the stages add to as they run
//!   (`capstan_app_sync_total`, `capstan_reconcile_duration_seconds`,
//!   `capstan_git_*`, `capstan_image_scans_total`, `capstan_webhook_requests_total`,
//!   and `capstan_kube_requests_total` from a tower layer on the kube client, see
//!   [`kube`]);
//! - **collected** — gauges computed at scrape time from the controller's own state
//!   ([`fleet`]): `capstan_app_info` from the cache of Applications and
//!   `capstan_emergency_stop` from the stop flag, so a deleted Application is gone
//!   from the next scrape and nothing can go stale.
//!
//! The [`Metrics`] exist before the controller does: the binary creates them, builds
//! the kube client with [`kube::counted_client`], and hands both to
//! [`crate::start_with_metrics`], which connects the collected gauges to the
//! controller's cache.

pub mod fleet;
pub mod kube;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::crd::Application;
use crate::stop::StopFlag;

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

/// The labels of `capstan_app_sync_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// The Application's namespace.
    pub namespace: String,
    /// The Application's name.
    pub name: String,
    /// How the operation ended: `Succeeded`, `Failed` or `Stopped`.
    pub phase: String,
}

/// The phases a sync operation ends in (the values of `SyncLabels::phase`).
pub const SYNC_PHASES: [&str; 3] = ["Succeeded", "Failed", "Stopped"];

/// The labels of `capstan_git_fetch_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabels {
    /// The repository URL without credentials, query or fragment ([`repo_label`]).
    pub repo: String,
}

/// The labels of `capstan_git_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitLabels {
    /// The repository URL without credentials, query or fragment ([`repo_label`]).
    pub repo: String,
    /// `success` or `failure`.
    pub result: String,
}

/// The labels of `capstan_image_scans_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScanLabels {
    /// `success`, or the reason of the failure as the ImageRepository's `Ready`
    /// condition gives it (`ScanFailed`, `CredentialsFailed`, …).
    pub result: String,
}

/// Bucket bounds of `capstan_reconcile_duration_seconds`: a cached pass takes a few
/// milliseconds, a sync that waits for its waves minutes.
const RECONCILE_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Bucket bounds of `capstan_git_fetch_duration_seconds` (Argo CD's
/// `argocd_git_request_duration_seconds` uses 0.1 … 15 s; a fetch over loopback
/// takes milliseconds).
const FETCH_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn fetch_histogram() -> Histogram {
    Histogram::new(FETCH_BUCKETS)
}

/// The controller's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    fleet: Arc<fleet::Fleet>,
    webhook_requests: Family<WebhookLabels, Counter>,
    app_sync: Family<SyncLabels, Counter>,
    reconcile_duration: Histogram,
    git_fetch_duration: HistogramFamily<RepoLabels>,
    git_requests: Family<GitLabels, Counter>,
    kube_requests: Family<kube::KubeLabels, Counter>,
    image_scans: Family<ScanLabels, Counter>,
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

        let fleet = Arc::new(fleet::Fleet::default());
        registry.register_collector(Box::new(fleet.clone()));

        let app_sync = Family::<SyncLabels, Counter>::default();
        registry.register(
            "app_sync",
            "Sync operations that ended, by Application and phase",
            app_sync.clone(),
        );
        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS);
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile of one Application took, from source to status",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let git_fetch_duration: HistogramFamily<RepoLabels> =
            Family::new_with_constructor(fetch_histogram);
        registry.register_with_unit(
            "git_fetch_duration",
            "Time the fetches of a repository took (fetches that went to the remote)",
            Unit::Seconds,
            git_fetch_duration.clone(),
        );
        let git_requests = Family::<GitLabels, Counter>::default();
        registry.register(
            "git_requests",
            "Fetches that went to the remote, by repository and result",
            git_requests.clone(),
        );
        let kube_requests = Family::<kube::KubeLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests of the controller's Kubernetes client, by verb and response code",
            kube_requests.clone(),
        );
        let webhook_requests = Family::<WebhookLabels, _>::default();
        registry.register(
            "webhook_requests",
            "Webhook deliveries received, by provider and what was done with them",
            webhook_requests.clone(),
        );
        let image_scans = Family::<ScanLabels, Counter>::default();
        registry.register(
            "image_scans",
            "Registry scans of ImageRepositories, by result",
            image_scans.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            fleet,
            webhook_requests,
            app_sync,
            reconcile_duration,
            git_fetch_duration,
            git_requests,
            kube_requests,
            image_scans,
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

    /// Compute `capstan_app_info` and `capstan_emergency_stop` from these at every
    /// scrape (the controller's cache of Applications and its stop flag). Called by
    /// [`crate::start_with_metrics`]; a later call replaces the earlier one.
    pub fn follow_fleet(
        &self,
        applications: ::kube::runtime::reflector::Store<Application>,
        stop: StopFlag,
    ) {
        self.fleet.follow(applications, stop);
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

    /// A sync operation of `namespace/name` ended in `phase`.
    pub fn sync_finished(&self, namespace: &str, name: &str, phase: &str) {
        self.app_sync
            .get_or_create(&SyncLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase: phase.into(),
            })
            .inc();
    }

    /// The Application `namespace/name` was deleted: its sync counters go (its
    /// `capstan_app_info` goes with the cache entry).
    pub fn forget_application(&self, namespace: &str, name: &str) {
        for phase in SYNC_PHASES {
            self.app_sync.remove(&SyncLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase: phase.into(),
            });
        }
    }

    /// One reconcile took `took`.
    pub fn reconciled(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// A fetch of `url` went to the remote, took `took` and succeeded or not. The
    /// URL is recorded without credentials ([`repo_label`]).
    pub fn git_fetch(&self, url: &str, took: Duration, ok: bool) {
        let repo = repo_label(url);
        self.git_fetch_duration
            .get_or_create(&RepoLabels { repo: repo.clone() })
            .observe(took.as_secs_f64());
        self.git_requests
            .get_or_create(&GitLabels {
                repo,
                result: if ok { "success" } else { "failure" }.into(),
            })
            .inc();
    }

    /// A registry scan of an ImageRepository ended: `Ok` or the failure's reason.
    pub fn image_scan(&self, result: Result<(), &str>) {
        self.image_scans
            .get_or_create(&ScanLabels {
                result: result.err().unwrap_or("success").into(),
            })
            .inc();
    }

    /// The tower layer that counts every request of a kube client in
    /// `capstan_kube_requests_total` (see [`kube::counted_client`]).
    pub fn kube_layer(&self) -> kube::CountRequestsLayer {
        kube::CountRequestsLayer::new(self.kube_requests.clone())
    }
}

/// A repository URL as a label: without user, password or token (`https://TOKEN@host/…`
/// becomes `https://host/…`), query or fragment.
pub fn repo_label(url: &str) -> String {
    let shown = capstan_engine::source::GitSource::new(url).display_url();
    match shown.find(['?', '#']) {
        Some(end) => shown[..end].to_string(),
        None => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_label_never_holds_credentials() {
        assert_eq!(
            repo_label("https://x-access-token:ghp_secret@github.com/org/env.git"),
            "https://github.com/org/env.git"
        );
        assert_eq!(
            repo_label("https://oauth2:glpat-secret@gitlab.com/org/env.git?private_token=t#frag"),
            "https://gitlab.com/org/env.git"
        );
        assert_eq!(
            repo_label("ssh://git@example.com/org/env.git"),
            "ssh://example.com/org/env.git"
        );
        assert_eq!(repo_label("file:///srv/env.git"), "file:///srv/env.git");
    }

    #[test]
    fn every_family_is_named_as_prometheus_expects() {
        let m = Metrics::default();
        m.sync_finished("apps", "web", "Succeeded");
        m.reconciled(Duration::from_millis(30));
        m.git_fetch(
            "https://user:pw@git.example.com/env.git",
            Duration::from_millis(40),
            true,
        );
        m.git_fetch(
            "https://git.example.com/env.git",
            Duration::from_millis(40),
            false,
        );
        m.image_scan(Ok(()));
        m.image_scan(Err("ScanFailed"));
        m.webhook("github", "accepted");
        let text = m.encode();
        for line in [
            "# TYPE capstan_build_info gauge",
            "capstan_app_sync_total{namespace=\"apps\",name=\"web\",phase=\"Succeeded\"} 1",
            "# TYPE capstan_reconcile_duration_seconds histogram",
            "capstan_reconcile_duration_seconds_bucket{le=\"0.05\"} 1",
            "capstan_reconcile_duration_seconds_count 1",
            "# TYPE capstan_git_fetch_duration_seconds histogram",
            "capstan_git_fetch_duration_seconds_count{repo=\"https://git.example.com/env.git\"} 2",
            "capstan_git_requests_total{repo=\"https://git.example.com/env.git\",result=\"success\"} 1",
            "capstan_git_requests_total{repo=\"https://git.example.com/env.git\",result=\"failure\"} 1",
            "capstan_image_scans_total{result=\"success\"} 1",
            "capstan_image_scans_total{result=\"ScanFailed\"} 1",
            "capstan_webhook_requests_total{provider=\"github\",result=\"accepted\"} 1",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("pw@"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_deleted_application_loses_its_sync_counters() {
        let m = Metrics::default();
        m.sync_finished("apps", "web", "Succeeded");
        m.sync_finished("apps", "web", "Failed");
        m.sync_finished("apps", "api", "Succeeded");
        m.forget_application("apps", "web");
        let text = m.encode();
        assert!(!text.contains("name=\"web\""), "{text}");
        assert!(text.contains("name=\"api\""), "{text}");
    }
}
