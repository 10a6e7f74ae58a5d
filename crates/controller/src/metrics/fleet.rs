//! The gauges computed at scrape time from the controller's own state, not recorded
//! as things happen: `capstan_app_info` (one series per Application in the
//! controller's cache, value 1, its state in the labels, as Argo CD's
//! `argocd_app_info`) and `capstan_emergency_stop` (1 while the stop is on).
//!
//! Reading the cache at every scrape is what keeps them true: an Application deleted
//! is gone from the next scrape, a status written shows in it, and there is no second
//! copy of the fleet to keep in step. A scrape clones the cache's `Arc`s, sorts them
//! by namespace and name (stable output) and writes one line each; at 10,000
//! Applications that is a few milliseconds (docs/benchmarks.md).

use std::sync::Mutex;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::crd::Application;
use crate::stop::StopFlag;

/// What the collector reads at each scrape; nothing until the controller starts.
#[derive(Default)]
pub(crate) struct Fleet {
    source: Mutex<Option<(Store<Application>, StopFlag)>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

impl Fleet {
    pub(crate) fn follow(&self, applications: Store<Application>, stop: StopFlag) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = Some((applications, stop));
    }

    fn source(&self) -> Option<(Store<Application>, StopFlag)> {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The labels of one `capstan_app_info` series, borrowed from the Application
/// (only the repository label is computed: its credentials are cut off).
pub struct AppInfo<'a> {
    namespace: &'a str,
    name: &'a str,
    repo: String,
    dest_namespace: &'a str,
    sync_status: &'a str,
    health_status: &'a str,
    suspended: bool,
}

impl<'a> AppInfo<'a> {
    /// The labels of `app`: a status not yet written counts as `Unknown`; the
    /// repository is the first source's for several sources.
    pub fn of(app: &'a Application) -> Self {
        let namespace = app.metadata.namespace.as_deref().unwrap_or_default();
        let repo = match &app.spec.source.repo_url {
            url if !url.is_empty() => url.as_str(),
            _ => app
                .spec
                .sources
                .first()
                .map(|s| s.repo_url.as_str())
                .unwrap_or_default(),
        };
        let status = app.status.as_ref();
        AppInfo {
            namespace,
            name: app.metadata.name.as_deref().unwrap_or_default(),
            repo: super::repo_label(repo),
            dest_namespace: app
                .spec
                .destination
                .namespace
                .as_deref()
                .unwrap_or(namespace),
            sync_status: status
                .and_then(|s| s.sync.as_ref())
                .map(|s| s.status.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("Unknown"),
            health_status: status
                .and_then(|s| s.health.as_ref())
                .map(|h| h.status.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("Unknown"),
            suspended: app.spec.suspend,
        }
    }

    fn labels(&self) -> [(&str, &str); 7] {
        [
            ("namespace", self.namespace),
            ("name", self.name),
            ("repo", &self.repo),
            ("dest_namespace", self.dest_namespace),
            ("sync_status", self.sync_status),
            ("health_status", self.health_status),
            ("suspended", if self.suspended { "true" } else { "false" }),
        ]
    }
}

impl Collector for Fleet {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((applications, stop)) = self.source() else {
            return Ok(());
        };
        // Until the switch has been read the controller treats it as on, but whether
        // it is on is not known: no sample rather than a false alarm at every start.
        if stop.is_known() {
            let gauge = ConstGauge::new(i64::from(stop.is_stopped()));
            let metric = encoder.encode_descriptor(
                "emergency_stop",
                "Whether the emergency stop is on (1): nothing is applied or pruned",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        let mut apps = applications.state();
        if apps.is_empty() {
            return Ok(());
        }
        apps.sort_unstable_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let one = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "app_info",
            "One series per Application the controller manages (always 1): its repository, destination, sync and health status",
            None,
            MetricType::Gauge,
        )?;
        for app in &apps {
            let info = AppInfo::of(app);
            let labels = info.labels();
            one.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    use super::super::Metrics;
    use crate::crd::{Application, ApplicationSpec, ApplicationStatus, HealthStatus, SyncStatus};
    use crate::stop::StopFlag;

    fn app(
        ns: &str,
        name: &str,
        repo: &str,
        sync: Option<&str>,
        health: Option<&str>,
    ) -> Application {
        let mut app = Application::new(name, ApplicationSpec::default());
        app.metadata.namespace = Some(ns.into());
        app.spec.source.repo_url = repo.into();
        app.status = Some(ApplicationStatus {
            sync: sync.map(|s| SyncStatus {
                status: s.into(),
                ..Default::default()
            }),
            health: health.map(|h| HealthStatus {
                status: h.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        app
    }

    fn fleet() -> (Metrics, Writer<Application>, StopFlag) {
        let metrics = Metrics::default();
        let writer = Writer::default();
        let stop = StopFlag::default();
        metrics.follow_fleet(writer.as_reader(), stop.clone());
        (metrics, writer, stop)
    }

    fn info_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("capstan_app_info{"))
            .collect()
    }

    #[test]
    fn app_info_has_one_series_per_application_in_the_cache_with_its_state() {
        let (metrics, mut writer, _stop) = fleet();
        let mut web = app(
            "apps",
            "web",
            "https://x-access-token:ghp_secret@git.example.com/org/env.git",
            Some("Synced"),
            Some("Healthy"),
        );
        web.spec.destination.namespace = Some("web-prod".into());
        web.spec.suspend = true;
        writer.apply_watcher_event(&Event::Apply(web));
        writer.apply_watcher_event(&Event::Apply(app(
            "apps",
            "api",
            "https://git.example.com/org/env.git",
            None,
            None,
        )));
        let text = metrics.encode();
        assert!(text.contains("# TYPE capstan_app_info gauge"), "{text}");
        assert_eq!(
            info_lines(&text),
            [
                "capstan_app_info{namespace=\"apps\",name=\"api\",repo=\"https://git.example.com/org/env.git\",dest_namespace=\"apps\",sync_status=\"Unknown\",health_status=\"Unknown\",suspended=\"false\"} 1",
                "capstan_app_info{namespace=\"apps\",name=\"web\",repo=\"https://git.example.com/org/env.git\",dest_namespace=\"web-prod\",sync_status=\"Synced\",health_status=\"Healthy\",suspended=\"true\"} 1",
            ],
            "sorted by namespace and name"
        );
        assert!(!text.contains("ghp_secret"), "{text}");
    }

    #[test]
    fn app_info_follows_the_cache_a_deleted_application_is_gone_at_the_next_scrape() {
        let (metrics, mut writer, _stop) = fleet();
        let web = app(
            "apps",
            "web",
            "https://git.example.com/env.git",
            Some("OutOfSync"),
            Some("Progressing"),
        );
        writer.apply_watcher_event(&Event::Apply(web.clone()));
        assert!(
            metrics
                .encode()
                .contains("sync_status=\"OutOfSync\",health_status=\"Progressing\"")
        );

        let synced = app(
            "apps",
            "web",
            "https://git.example.com/env.git",
            Some("Synced"),
            Some("Healthy"),
        );
        writer.apply_watcher_event(&Event::Apply(synced));
        let text = metrics.encode();
        assert_eq!(info_lines(&text).len(), 1, "{text}");
        assert!(
            text.contains("sync_status=\"Synced\",health_status=\"Healthy\""),
            "{text}"
        );

        writer.apply_watcher_event(&Event::Delete(web));
        let text = metrics.encode();
        assert!(info_lines(&text).is_empty(), "{text}");
        assert!(
            !text.contains("capstan_app_info"),
            "no family without series: {text}"
        );
    }

    #[test]
    fn emergency_stop_is_reported_once_the_switch_has_been_read() {
        let (metrics, _writer, stop) = fleet();
        assert!(
            !metrics.encode().contains("capstan_emergency_stop"),
            "unknown until read"
        );
        stop.store(false);
        assert!(metrics.encode().contains("\ncapstan_emergency_stop 0\n"));
        stop.store(true);
        assert!(metrics.encode().contains("\ncapstan_emergency_stop 1\n"));
    }

    #[test]
    fn nothing_is_collected_before_the_controller_follows_a_fleet() {
        let text = Metrics::default().encode();
        assert!(
            !text.contains("app_info") && !text.contains("emergency_stop"),
            "{text}"
        );
    }
}
