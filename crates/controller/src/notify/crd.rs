//! The `Notification` custom resource (`capstan.dev/v1alpha1`): which events of which
//! Applications (in its namespace) are sent where, and the record of what was sent.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::Condition;

/// Events of Applications sent to webhooks, chat and Git forges.
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "Notification",
    namespaced,
    status = "NotificationStatus",
    shortname = "notif",
    category = "capstan",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Last delivery",
        type_ = "string",
        json_path = ".status.lastDelivery.time"
    ),
    printcolumn(
        name = "Result",
        type_ = "string",
        json_path = ".status.lastDelivery.result"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSpec {
    /// The events to send (at least one).
    pub triggers: Vec<TriggerName>,
    /// Which Applications of this namespace; empty selects all of them.
    #[serde(default)]
    pub selector: AppSelector,
    /// Where to send them (at least one).
    pub destinations: Vec<DestinationSpec>,
    /// Send nothing. Events that happen meanwhile are not sent later either.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// An event that can be sent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum TriggerName {
    /// A sync of a revision succeeded.
    #[serde(rename = "on-sync-succeeded")]
    SyncSucceeded,
    /// A sync of a revision failed.
    #[serde(rename = "on-sync-failed")]
    SyncFailed,
    /// The Application's health became Degraded at a revision.
    #[serde(rename = "on-health-degraded")]
    HealthDegraded,
    /// Synced and Healthy at a revision a sync applied.
    #[serde(rename = "on-deployed")]
    Deployed,
    /// The emergency stop was turned on.
    #[serde(rename = "on-emergency-stop")]
    EmergencyStop,
    /// An ImageUpdate pushed a commit to the Application's repository and branch.
    #[serde(rename = "on-image-updated")]
    ImageUpdated,
}

impl TriggerName {
    /// The name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerName::SyncSucceeded => "on-sync-succeeded",
            TriggerName::SyncFailed => "on-sync-failed",
            TriggerName::HealthDegraded => "on-health-degraded",
            TriggerName::Deployed => "on-deployed",
            TriggerName::EmergencyStop => "on-emergency-stop",
            TriggerName::ImageUpdated => "on-image-updated",
        }
    }
}

impl std::fmt::Display for TriggerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which Applications a Notification is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSelector {
    /// Application names or globs (`web-*`); empty matches any name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Labels an Application must all have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Where events go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationSpec {
    /// Names the destination in the status and the record of what was sent (default:
    /// its type). Renaming a destination sends its events again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `webhook`, `slack`, `teams`, `github`, `gitlab` or `gitea`.
    #[serde(rename = "type")]
    pub type_: DestinationType,
    /// The Secret key holding the URL to post to (`webhook`, `slack`, `teams`): Slack's
    /// and Teams' webhook URLs are credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// The Secret key holding the API token (`github`, `gitlab`, `gitea`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// The Secret key holding the HMAC key that signs a `webhook`'s body
    /// (`X-Capstan-Signature: sha256=…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_ref: Option<SecretKeyRef>,
    /// The forge's API base URL, not a secret (default `https://api.github.com`,
    /// `https://gitlab.com/api/v4`; required for `gitea`, e.g.
    /// `https://gitea.example.com/api/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The forge repository (`owner/repo`, GitLab's `group/sub/project`) commit
    /// statuses go to (default: derived from each Application's `repoURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// The kind of destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    /// A JSON POST, optionally HMAC-signed.
    #[default]
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams webhook (Workflows or a legacy connector): an Adaptive Card.
    Teams,
    /// GitHub commit statuses.
    Github,
    /// GitLab commit statuses.
    Gitlab,
    /// Gitea (and Forgejo) commit statuses.
    Gitea,
}

impl DestinationType {
    /// The name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationType::Webhook => "webhook",
            DestinationType::Slack => "slack",
            DestinationType::Teams => "teams",
            DestinationType::Github => "github",
            DestinationType::Gitlab => "gitlab",
            DestinationType::Gitea => "gitea",
        }
    }

    /// A Git forge's commit statuses (as opposed to a message).
    pub fn is_forge(self) -> bool {
        matches!(
            self,
            DestinationType::Github | DestinationType::Gitlab | DestinationType::Gitea
        )
    }
}

/// A key of a Secret in the Notification's namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// The Secret.
    pub name: String,
    /// The key.
    pub key: String,
}

/// What the controller observed and sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationStatus {
    /// The spec generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the spec is usable) and `Delivered` (the last delivery arrived, or
    /// why it did not after every attempt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last delivery that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<Delivery>,
    /// What was sent (or given up on), so nothing is sent twice — across restarts and
    /// leader changes too. Bounded per Application; entries of deleted Applications
    /// are dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<SentRecord>,
}

/// One finished delivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `namespace/name` of the Application, `*` for the emergency stop.
    pub application: String,
    /// The event.
    pub trigger: String,
    /// The revision (the stop's time for `on-emergency-stop`).
    pub revision: String,
    /// The destination's name.
    pub destination: String,
    /// `Sent` or `Failed`.
    pub result: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it finished.
    pub time: String,
    /// What the receiver answered, or why it failed (never a URL or token).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An event handled for one destination: sent, or given up on after every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentRecord {
    /// `namespace/name` of the Application, `*` for the emergency stop.
    pub application: String,
    /// The Application's uid (a recreated Application is a new one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The event.
    pub trigger: TriggerName,
    /// The revision (the stop's time for `on-emergency-stop`).
    pub revision: String,
    /// The destination's name.
    pub destination: String,
    /// `Sent` or `Failed`.
    pub result: String,
    /// When.
    pub time: String,
}
