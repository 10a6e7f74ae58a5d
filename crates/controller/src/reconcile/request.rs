//! What makes a reconcile happen: its [`Trigger`], and a sync asked for through an
//! annotation ([`SyncRequest`]).

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Context;
use crate::crd::Application;

/// The annotation asking for a sync (set by `capstan sync`, `rollback` and `revert`).
pub const SYNC_ANNOTATION: &str = "capstan.dev/sync";
/// The annotation asking for an immediate comparison (set by `capstan refresh`).
pub const REFRESH_ANNOTATION: &str = "capstan.dev/refresh";

/// What made a reconcile happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The periodic comparison.
    Interval,
    /// The spec changed (or the Application is new).
    Spec,
    /// A managed object changed in the cluster.
    Drift,
    /// `capstan refresh`.
    Refresh,
    /// A push webhook.
    Webhook,
    /// A retry after a failure.
    Retry,
    /// An ImageUpdate pushed to the Application's repository and branch.
    ImageUpdate,
}

impl Trigger {
    /// The name recorded in history and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Interval | Trigger::Spec | Trigger::Retry => "automated",
            Trigger::Drift => "self-heal",
            Trigger::Refresh => "refresh",
            Trigger::Webhook => "webhook",
            Trigger::ImageUpdate => "image-update",
        }
    }
}

/// A sync asked for through [`SYNC_ANNOTATION`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    /// Unique id of the request (so it runs once).
    pub id: String,
    /// Revision to sync to (default: the spec's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// `manual`, `rollback` or `revert`.
    #[serde(default)]
    pub trigger: String,
    /// Who asked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    /// Prune objects that left the source (default: the automated policy's prune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// For rollbacks: the history entry rolled back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<u64>,
    /// For reverts: the revert commit that was pushed (the sync must reach it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
}

impl SyncRequest {
    /// The request on an Application, if any.
    pub fn of(app: &Application) -> Option<SyncRequest> {
        app.annotations()
            .get(SYNC_ANNOTATION)
            .and_then(|v| serde_json::from_str(v).ok())
    }

    /// The request on `app` that has not run yet: a request runs once, and the
    /// operation it started names it in its message.
    pub fn pending(app: &Application) -> Option<SyncRequest> {
        let done = app.status.as_ref().and_then(|s| s.operation_state.as_ref());
        SyncRequest::of(app)
            .filter(|r| done.is_none_or(|o| !o.message.contains(&format!("request {}", r.id))))
    }
}

/// Remove the sync request from an Application once it ran.
pub(super) async fn clear(app: &Application, ctx: &Context) {
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {SYNC_ANNOTATION: null}}});
    if let Err(e) = api
        .patch(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(error = %e, "clearing the sync request");
    }
}
