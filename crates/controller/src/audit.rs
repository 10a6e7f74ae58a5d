//! The audit log: an append-only record of every sync, rollback, stop/resume and
//! suspend/resume — when, which Application, who or what triggered it, from which
//! revision to which, the commit author, and what changed.
//!
//! Where it is kept: as `AuditRecord` objects (`capstan.dev/v1alpha1`) in the cluster,
//! one immutable object per record, in the Application's namespace (the controller's
//! namespace for cluster-wide actions), plus a Kubernetes Event on the Application.
//! Not SQLite: the controller is stateless by design — after a crash it converges
//! from the cluster and Git alone — and a local database would tie the log to one
//! replica's disk, be invisible to the standby after a failover, and sit outside
//! RBAC. Objects in the API are shared by every replica, durable in etcd, readable
//! with `kubectl`, and protected by the same permissions as the Applications.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams, PostParams};
use kube::{CustomResource, Resource};

use crate::crd::Application;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One audited action.
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "AuditRecord",
    namespaced,
    category = "capstan",
    printcolumn(name = "Time", type_ = "string", json_path = ".spec.time"),
    printcolumn(
        name = "Application",
        type_ = "string",
        json_path = ".spec.application"
    ),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "Result", type_ = "string", json_path = ".spec.result")
)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecordSpec {
    /// When (RFC 3339).
    pub time: String,
    /// `namespace/name` of the Application (or of the ImageUpdate, for `image-update`),
    /// or `*` for cluster-wide actions.
    pub application: String,
    /// `sync`, `rollback`, `revert`, `stop`, `resume`, `suspend`, `unsuspend`, `refresh`,
    /// `image-update` (a write-back of an ImageUpdate: `application` names it).
    pub action: String,
    /// What triggered it: `automated`, `manual`, `webhook`, `rollback`, `self-heal`, or the actor.
    pub trigger: String,
    /// Who asked (for manual actions), or the controller's identity.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// Revision before.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from_revision: String,
    /// Revision after.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to_revision: String,
    /// Commit author of the new revision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// Commit message (first line).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// How many objects each outcome had (`created: 2`, `pruned: 1`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub summary: BTreeMap<String, u32>,
    /// `Succeeded`, `Failed`, `Stopped`, or empty for switches.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result: String,
    /// Details (an error, a reason).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// The time of a record made now: RFC 3339 with microseconds, so records of one
/// second (a stop and the resume right after it) sort in the order they were made.
pub fn record_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Append a record in `namespace`, and publish it as a core/v1 Event on the
/// Application it is about (`regarding`; looked up when not given) — or, for the
/// cluster-wide emergency stop, on the stop's ConfigMap — so `kubectl describe` and
/// `kubectl get events` show it. The Event is best effort: the record is what counts.
pub async fn append(
    client: &kube::Client,
    namespace: &str,
    spec: AuditRecordSpec,
    regarding: Option<ObjectReference>,
) -> Result<(), kube::Error> {
    create_record(client, namespace, &spec).await?;
    let regarding = match regarding {
        Some(r) => Some(r),
        None => lookup(client, namespace, &spec.application).await,
    };
    if let Some(r) = regarding
        && let Err(e) = publish(client, &r, &spec).await
    {
        tracing::debug!(error = %e, "publishing the audit event");
    }
    Ok(())
}

async fn lookup(
    client: &kube::Client,
    namespace: &str,
    application: &str,
) -> Option<ObjectReference> {
    if application == "*" {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let cm = api.get_opt(crate::stop::STOP_CONFIGMAP).await.ok()??;
        return Some(cm.object_ref(&()));
    }
    let (ns, name) = application.split_once('/')?;
    let api: Api<Application> = Api::namespaced(client.clone(), ns);
    let app = api.get_opt(name).await.ok()??;
    Some(app.object_ref(&()))
}

/// The Event's reason, type and message for a record.
fn event_text(spec: &AuditRecordSpec) -> (String, &'static str, String) {
    let failed = matches!(spec.result.as_str(), "Failed" | "Stopped");
    let reason = match (spec.action.as_str(), spec.result.as_str()) {
        ("sync", "Failed") => "SyncFailed",
        ("sync", "Stopped") => "SyncStopped",
        ("sync", _) => "Synced",
        ("rollback", "Failed") => "RollbackFailed",
        ("rollback", "Stopped") => "RollbackStopped",
        ("rollback", _) => "RolledBack",
        ("revert", "Failed") => "RevertFailed",
        ("revert", "Stopped") => "RevertStopped",
        ("revert", _) => "Reverted",
        ("image-update", _) => "ImageUpdated",
        ("stop", _) => "EmergencyStop",
        ("resume", _) if spec.application == "*" => "EmergencyStopLifted",
        ("suspend", _) => "Suspended",
        ("unsuspend", _) => "Resumed",
        ("refresh", _) => "RefreshRequested",
        (other, _) => other,
    };
    let kind = if failed || spec.action == "stop" {
        "Warning"
    } else {
        "Normal"
    };
    let mut message = match spec.action.as_str() {
        "image-update" => {
            let to: String = spec.to_revision.chars().take(12).collect();
            format!("pushed {to} by {}: {}", spec.actor, spec.message)
        }
        "sync" | "rollback" | "revert" => {
            let to: String = spec.to_revision.chars().take(12).collect();
            let mut m = format!("{} {} to {to} by {}", spec.trigger, spec.action, spec.actor);
            if !spec.result.is_empty() {
                m.push_str(&format!(": {}", spec.result));
            }
            if !spec.summary.is_empty() {
                let parts: Vec<String> = spec
                    .summary
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect();
                m.push_str(&format!(" ({})", parts.join(", ")));
            }
            m
        }
        action => format!("{action} by {}", spec.actor),
    };
    if !spec.details.is_empty() {
        message.push_str(&format!(" — {}", spec.details));
    }
    (
        reason.to_string(),
        kind,
        message.chars().take(1024).collect(),
    )
}

async fn publish(
    client: &kube::Client,
    regarding: &ObjectReference,
    spec: &AuditRecordSpec,
) -> Result<(), kube::Error> {
    let namespace = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (reason, kind, message) = event_text(spec);
    let now = Time(jiff::Timestamp::now());
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or("capstan"),
        jiff::Timestamp::now().as_nanosecond()
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: regarding.clone(),
        reason: Some(reason),
        message: Some(message),
        type_: Some(kind.into()),
        action: Some(spec.action.clone()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some("capstan".into()),
            ..Default::default()
        }),
        reporting_component: Some("capstan".into()),
        reporting_instance: Some(spec.actor.chars().take(128).collect()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &event).await?;
    Ok(())
}

async fn create_record(
    client: &kube::Client,
    namespace: &str,
    spec: &AuditRecordSpec,
) -> Result<(), kube::Error> {
    let api: Api<AuditRecord> = Api::namespaced(client.clone(), namespace);
    let base = spec
        .application
        .rsplit('/')
        .next()
        .unwrap_or("cluster")
        .replace('*', "cluster");
    let stamp: String = spec.time.chars().filter(|c| c.is_ascii_digit()).collect();
    let suffix: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..5)
            .map(|_| (b'a' + rng.random_range(0..26)) as char)
            .collect()
    };
    // a long Application name is shortened so the record's name stays valid (at most
    // 253 characters, ending in the random letters)
    let mut base = base;
    base.truncate(200);
    let name = format!(
        "{}-{}-{}-{suffix}",
        base.trim_end_matches(['-', '.']),
        spec.action,
        stamp
    );
    let record = AuditRecord::new(&name, spec.clone());
    api.create(&PostParams::default(), &record).await?;
    Ok(())
}

/// Records, oldest first, optionally for one Application and since a time.
pub async fn list(
    client: &kube::Client,
    namespace: Option<&str>,
    application: Option<&str>,
    since: Option<jiff::Timestamp>,
) -> Result<Vec<AuditRecordSpec>, kube::Error> {
    let api: Api<AuditRecord> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut out: Vec<AuditRecordSpec> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|r| r.spec)
        .filter(|r| {
            application
                .is_none_or(|a| r.application == a || r.application.rsplit('/').next() == Some(a))
        })
        .filter(|r| {
            since.is_none_or(|s| {
                r.time
                    .parse::<jiff::Timestamp>()
                    .map(|t| t >= s)
                    .unwrap_or(true)
            })
        })
        .collect();
    // oldest first; records of the same second keep the order they were made in
    out.sort_by_key(|r| r.time.parse::<jiff::Timestamp>().ok());
    Ok(out)
}
