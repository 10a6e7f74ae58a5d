//! Events read from state: what an Application's status (history, sync, health,
//! operation), an ImageUpdate's last push and the emergency stop say has happened.
//!
//! Nothing here listens to the reconcile as it runs: every event is derived again
//! from what the cluster stores, so a controller that restarts (or a standby that
//! takes over) sees the same events as the one before it, and the record of what was
//! sent decides what is still to send. Each event is keyed by (Application uid,
//! trigger, revision): a revision is announced once per trigger, however many syncs,
//! retries and reconciles it takes.

use capstan_engine::source::GitSource;
use kube::ResourceExt;

use super::crd::TriggerName;
use crate::crd::Application;
use crate::images::ImageUpdate;
use crate::stop::StopState;

/// The Application an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFacts {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its source repository (without credentials).
    pub repo_url: String,
    /// `Synced`, `OutOfSync`, `Unknown` (empty when not known yet).
    pub sync: String,
    /// The rolled-up health (empty when not known yet).
    pub health: String,
}

impl AppFacts {
    /// What an Application says of itself.
    pub fn of(app: &Application) -> AppFacts {
        let status = app.status.as_ref();
        AppFacts {
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
            uid: app.uid().unwrap_or_default(),
            repo_url: GitSource::new(&app.spec.source.repo_url).display_url(),
            sync: status
                .and_then(|s| s.sync.as_ref())
                .map(|s| s.status.clone())
                .unwrap_or_default(),
            health: status
                .and_then(|s| s.health.as_ref())
                .map(|h| h.status.clone())
                .unwrap_or_default(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Something that happened, to be sent once per destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Which trigger it fires.
    pub trigger: TriggerName,
    /// The Application (none for the emergency stop, which concerns every one).
    pub app: Option<AppFacts>,
    /// The commit (for the emergency stop: the time it was turned on).
    pub revision: String,
    /// When it happened, as stored (RFC 3339); events from before the Notification
    /// existed are not sent.
    pub time: Option<jiff::Timestamp>,
    /// A sentence for people.
    pub message: String,
}

impl Event {
    /// `namespace/name` of the Application, or `*`.
    pub fn application(&self) -> String {
        self.app.as_ref().map_or_else(|| "*".into(), AppFacts::key)
    }

    /// The Application's uid, or empty.
    pub fn uid(&self) -> &str {
        self.app.as_ref().map_or("", |a| a.uid.as_str())
    }

    /// The revision shortened to 7 characters (unchanged when it is not a commit).
    pub fn short_revision(&self) -> String {
        if self.app.is_some() {
            self.revision.chars().take(7).collect()
        } else {
            self.revision.clone()
        }
    }
}

fn time(s: Option<&str>) -> Option<jiff::Timestamp> {
    s.and_then(|s| s.parse().ok())
}

/// The events an Application's status holds: syncs that succeeded or failed (from its
/// history, newest per revision), Degraded health and a deployment (synced and healthy
/// at the revision a sync applied) at the current revision.
pub fn application_events(app: &Application) -> Vec<Event> {
    let Some(status) = app.status.as_ref() else {
        return Vec::new();
    };
    let facts = AppFacts::of(app);
    let mut events: Vec<Event> = Vec::new();
    // history is newest first: the first entry per (result, revision) is the newest
    for h in &status.history {
        let trigger = match h.result.as_str() {
            "Succeeded" => TriggerName::SyncSucceeded,
            "Failed" => TriggerName::SyncFailed,
            _ => continue,
        };
        if events
            .iter()
            .any(|e| e.trigger == trigger && e.revision == h.revision)
        {
            continue;
        }
        let short: String = h.revision.chars().take(7).collect();
        let message = match trigger {
            TriggerName::SyncSucceeded => format!("{} synced to {short}", facts.key()),
            _ => {
                let why = status
                    .operation_state
                    .as_ref()
                    .filter(|o| o.revision == h.revision && o.phase == "Failed")
                    .map(|o| format!(": {}", o.message))
                    .unwrap_or_default();
                format!("{} failed to sync {short}{why}", facts.key())
            }
        };
        events.push(Event {
            trigger,
            app: Some(facts.clone()),
            revision: h.revision.clone(),
            time: time(Some(h.deployed_at.as_str())),
            message,
        });
    }
    let revision = status
        .sync
        .as_ref()
        .map(|s| s.revision.clone())
        .unwrap_or_default();
    if revision.is_empty() {
        return events;
    }
    let short: String = revision.chars().take(7).collect();
    let healthy_since = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Healthy")
        .and_then(|c| time(c.last_transition_time.as_deref()));
    let health = status.health.as_ref();
    if health.is_some_and(|h| h.status == "Degraded") {
        let why = health
            .map(|h| h.message.as_str())
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        events.push(Event {
            trigger: TriggerName::HealthDegraded,
            app: Some(facts.clone()),
            revision: revision.clone(),
            time: healthy_since.or_else(|| time(status.reconciled_at.as_deref())),
            message: format!("{} is Degraded at {short}{why}", facts.key()),
        });
    }
    let applied = status
        .operation_state
        .as_ref()
        .filter(|o| o.phase == "Succeeded" && o.revision == revision);
    if let Some(op) = applied
        && facts.sync == "Synced"
        && facts.health == "Healthy"
    {
        // deployed when both hold: the later of the sync's end and health's arrival
        let finished = time(op.finished_at.as_deref());
        let at = match (finished, healthy_since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        events.push(Event {
            trigger: TriggerName::Deployed,
            app: Some(facts.clone()),
            revision,
            time: at,
            message: format!("{} deployed {short}: synced and healthy", facts.key()),
        });
    }
    events
}

/// Whether an ImageUpdate's pushes reach an Application: same namespace, same
/// repository, and the branch the Application follows (an update that pushes to
/// another branch, for review, does not).
fn reaches(update: &ImageUpdate, app: &Application) -> bool {
    let git = &update.spec.git;
    if update.namespace() != app.namespace() || git.push_branch.is_some() {
        return false;
    }
    let same_repo = GitSource::new(&git.repo_url).display_url()
        == GitSource::new(&app.spec.source.repo_url).display_url();
    let wants = app.spec.source.target_revision.as_deref().unwrap_or("");
    let branch = git.branch.as_deref().unwrap_or("");
    same_repo && (wants == branch || wants.is_empty() || wants == "HEAD" || branch.is_empty())
}

/// The last push of each ImageUpdate that reaches `app`.
pub fn image_events(app: &Application, updates: &[std::sync::Arc<ImageUpdate>]) -> Vec<Event> {
    let facts = AppFacts::of(app);
    let mut events: Vec<Event> = Vec::new();
    for u in updates.iter().filter(|u| reaches(u, app)) {
        let Some(status) = u.status.as_ref() else {
            continue;
        };
        let commit = &status.last_push_commit;
        if commit.is_empty() || events.iter().any(|e| &e.revision == commit) {
            continue;
        }
        let images: Vec<&str> = status
            .written
            .values()
            .filter(|w| &w.commit == commit)
            .map(|w| w.image.as_str())
            .collect();
        let short: String = commit.chars().take(7).collect();
        let what = if images.is_empty() {
            String::new()
        } else {
            format!(" ({})", images.join(", "))
        };
        events.push(Event {
            trigger: TriggerName::ImageUpdated,
            app: Some(facts.clone()),
            revision: commit.clone(),
            time: time(status.last_push_time.as_deref()),
            message: format!(
                "ImageUpdate {} pushed {short} to the repository of {}{what}",
                u.name_any(),
                facts.key()
            ),
        });
    }
    events
}

/// The emergency stop, while it is on: one event per time it was turned on.
pub fn stop_event(stop: &StopState) -> Option<Event> {
    if !stop.stopped || stop.at.is_empty() {
        return None;
    }
    let mut message = "the emergency stop is on: nothing is applied or pruned".to_string();
    if !stop.by.is_empty() {
        message.push_str(&format!(" (by {})", stop.by));
    }
    if !stop.reason.is_empty() {
        message.push_str(&format!(": {}", stop.reason));
    }
    Some(Event {
        trigger: TriggerName::EmergencyStop,
        app: None,
        revision: stop.at.clone(),
        time: time(Some(stop.at.as_str())),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        ApplicationSpec, ApplicationStatus, Condition, HealthStatus, HistoryEntry, OperationState,
        SyncStatus,
    };

    fn app(status: ApplicationStatus) -> Application {
        let mut a = Application::new("web", ApplicationSpec::default());
        a.metadata.namespace = Some("apps".into());
        a.metadata.uid = Some("u1".into());
        a.status = Some(status);
        a
    }

    fn entry(id: u64, rev: &str, result: &str) -> HistoryEntry {
        HistoryEntry {
            id,
            revision: rev.into(),
            deployed_at: format!("2026-01-01T00:00:{id:02}Z"),
            trigger: "automated".into(),
            result: result.into(),
            ..Default::default()
        }
    }

    fn deployed_status(rev: &str, health: &str) -> ApplicationStatus {
        ApplicationStatus {
            sync: Some(SyncStatus {
                status: "Synced".into(),
                revision: rev.into(),
                short_revision: rev.chars().take(7).collect(),
            }),
            health: Some(HealthStatus {
                status: health.into(),
                message: "pods crash".into(),
            }),
            operation_state: Some(OperationState {
                phase: "Succeeded".into(),
                revision: rev.into(),
                finished_at: Some("2026-01-01T00:00:05Z".into()),
                ..Default::default()
            }),
            conditions: vec![Condition {
                type_: "Healthy".into(),
                status: if health == "Healthy" { "True" } else { "False" }.into(),
                last_transition_time: Some("2026-01-01T00:00:09Z".into()),
                ..Default::default()
            }],
            history: vec![entry(3, rev, "Succeeded")],
            ..Default::default()
        }
    }

    #[test]
    fn retries_of_one_revision_are_one_event_per_result() {
        let a = app(ApplicationStatus {
            history: vec![
                entry(4, "bbbbbbbbbb", "Succeeded"),
                entry(3, "bbbbbbbbbb", "Failed"),
                entry(2, "bbbbbbbbbb", "Failed"),
                entry(1, "aaaaaaaaaa", "Stopped"),
            ],
            ..Default::default()
        });
        let events = application_events(&a);
        let kinds: Vec<(TriggerName, &str)> = events
            .iter()
            .map(|e| (e.trigger, e.revision.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (TriggerName::SyncSucceeded, "bbbbbbbbbb"),
                (TriggerName::SyncFailed, "bbbbbbbbbb")
            ]
        );
        // the newest failure's time
        assert_eq!(events[1].time, time(Some("2026-01-01T00:00:03Z")));
    }

    #[test]
    fn deployed_is_synced_and_healthy_at_the_revision_a_sync_applied() {
        let events = application_events(&app(deployed_status("cccccccccc", "Healthy")));
        let deployed = events
            .iter()
            .find(|e| e.trigger == TriggerName::Deployed)
            .expect("deployed");
        assert_eq!(deployed.revision, "cccccccccc");
        // health arrived after the sync ended: that is when it was deployed
        assert_eq!(deployed.time, time(Some("2026-01-01T00:00:09Z")));

        let mut progressing = deployed_status("cccccccccc", "Progressing");
        let none = application_events(&app(progressing.clone()));
        assert!(none.iter().all(|e| e.trigger != TriggerName::Deployed));
        // the cluster in sync with a revision no sync applied (applied by hand): not deployed
        progressing.health.as_mut().unwrap().status = "Healthy".into();
        progressing.operation_state.as_mut().unwrap().revision = "dddddddddd".into();
        let none = application_events(&app(progressing));
        assert!(none.iter().all(|e| e.trigger != TriggerName::Deployed));
    }

    #[test]
    fn degraded_health_is_an_event_at_the_current_revision() {
        let events = application_events(&app(deployed_status("eeeeeeeeee", "Degraded")));
        let degraded = events
            .iter()
            .find(|e| e.trigger == TriggerName::HealthDegraded)
            .expect("degraded");
        assert_eq!(degraded.revision, "eeeeeeeeee");
        assert!(
            degraded.message.contains("pods crash"),
            "{}",
            degraded.message
        );
    }

    #[test]
    fn the_stop_is_an_event_while_it_is_on() {
        let on = StopState {
            stopped: true,
            reason: "incident 42".into(),
            by: "alice".into(),
            at: "2026-01-01T00:00:00Z".into(),
        };
        let e = stop_event(&on).expect("event");
        assert_eq!(e.application(), "*");
        assert!(e.message.contains("incident 42") && e.message.contains("alice"));
        assert!(
            stop_event(&StopState {
                stopped: false,
                ..on
            })
            .is_none()
        );
    }
}
