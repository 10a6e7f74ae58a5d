//! What a person asks of the controller — refresh, sync, rollback, suspend and resume,
//! the emergency stop — in one implementation for the CLI (`capstan sync`, …) and the
//! HTTP API (`POST /api/v1/.../sync`, …).
//!
//! Every action annotates or patches an object and returns; the controller does the
//! work. Each names who asked, so the audit log does too: a sync or rollback carries
//! the user in its [`SyncRequest`] (the controller records it), a suspend is made with
//! the field manager `capstan:USER` (the controller records the manager that set
//! `spec.suspend`), and a refresh and the emergency stop are recorded here.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::audit::{self, AuditRecordSpec};
use crate::crd::{Application, HistoryEntry};
use crate::reconcile::{REFRESH_ANNOTATION, SYNC_ANNOTATION, SyncRequest};
use crate::stop::{self, StopState};

/// Why an action could not be asked for.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such Application.
    #[error("application {namespace}/{name} not found")]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A rollback named a history entry the Application does not have.
    #[error("no history entry {id} for {application}")]
    NoHistoryEntry {
        /// `namespace/name`.
        application: String,
        /// The id asked for.
        id: u64,
    },
    /// A rollback without an id found no earlier successful revision.
    #[error("{application} has no earlier successful revision to roll back to")]
    NothingToRollBackTo {
        /// `namespace/name`.
        application: String,
    },
    /// The cluster refused or failed a request.
    #[error("{what} {target}")]
    Kube {
        /// What was being done (`requesting a sync of`, …).
        what: &'static str,
        /// The object (`namespace/name`, or the emergency stop).
        target: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// A `Result` of an action.
pub type Result<T, E = ActionError> = std::result::Result<T, E>;

fn kube_err(what: &'static str, target: String) -> impl FnOnce(kube::Error) -> ActionError {
    move |source| ActionError::Kube {
        what,
        target,
        source,
    }
}

/// A unique id for a request: milliseconds since the epoch and a random suffix.
pub fn request_id() -> String {
    use rand::Rng;
    format!(
        "{}-{}",
        jiff::Timestamp::now().as_millisecond(),
        rand::rng().random_range(0..u32::MAX)
    )
}

/// The field manager of a user's own edits: `capstan:USER` (at most 128 characters,
/// as the API server requires).
pub fn field_manager(user: &str) -> String {
    format!("capstan:{user}").chars().take(128).collect()
}

/// What a sync asks for beyond the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Sync to this revision instead of the spec's.
    pub revision: Option<String>,
    /// Prune objects that left the source (default: the automated policy's prune).
    pub prune: bool,
}

/// Put `req` on the Application as its [`SYNC_ANNOTATION`], merged with `extra` (a
/// merge patch whose nulls delete).
pub async fn request_sync(
    api: &Api<Application>,
    name: &str,
    req: &SyncRequest,
    extra: Option<Value>,
) -> Result<(), kube::Error> {
    let value = serde_json::to_string(req).map_err(kube::Error::SerdeError)?;
    let mut patch = json!({"metadata": {"annotations": {SYNC_ANNOTATION: value}}});
    // Not `json_patch::merge`: that would apply the nulls (deletions) in `extra` to the
    // patch itself and drop them, where they must reach the server.
    if let (Some(Value::Object(extra)), Some(p)) = (extra, patch.as_object_mut()) {
        p.extend(extra);
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn get(client: &kube::Client, namespace: &str, name: &str) -> Result<Application> {
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .map_err(kube_err("reading", format!("{namespace}/{name}")))?
        .ok_or_else(|| ActionError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        })
}

/// Ask for a sync of `namespace/name` by `user`; returns the request (its id names the
/// operation that runs it).
pub async fn sync(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    opts: &SyncOptions,
    user: &str,
) -> Result<SyncRequest> {
    get(client, namespace, name).await?;
    let req = SyncRequest {
        id: request_id(),
        revision: opts.revision.clone().unwrap_or_default(),
        trigger: "manual".into(),
        by: user.into(),
        prune: opts.prune.then_some(true),
        history_id: None,
        commit: String::new(),
    };
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    request_sync(&api, name, &req, None)
        .await
        .map_err(kube_err(
            "requesting a sync of",
            format!("{namespace}/{name}"),
        ))?;
    Ok(req)
}

/// The history entry a rollback goes to: entry `id`, or by default the newest
/// successful sync of a revision other than the current one.
pub fn rollback_target(app: &Application, id: Option<u64>) -> Result<HistoryEntry> {
    let application = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    let history = app
        .status
        .as_ref()
        .map(|s| s.history.as_slice())
        .unwrap_or_default();
    let current = history.first().map(|h| h.revision.as_str()).unwrap_or("");
    match id {
        Some(id) => history
            .iter()
            .find(|h| h.id == id)
            .cloned()
            .ok_or(ActionError::NoHistoryEntry { application, id }),
        None => history
            .iter()
            .find(|h| h.result == "Succeeded" && h.revision != current)
            .cloned()
            .ok_or(ActionError::NothingToRollBackTo { application }),
    }
}

/// Ask for a rollback of `namespace/name` to history entry `id` (default: see
/// [`rollback_target`]) by `user`. As Argo CD does, a rollback turns automated sync
/// off, or the next comparison would sync forward again.
pub async fn rollback(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    id: Option<u64>,
    user: &str,
) -> Result<(SyncRequest, HistoryEntry)> {
    let app = get(client, namespace, name).await?;
    let target = rollback_target(&app, id)?;
    let req = SyncRequest {
        id: request_id(),
        revision: target.revision.clone(),
        trigger: "rollback".into(),
        by: user.into(),
        prune: None,
        history_id: Some(target.id),
        commit: String::new(),
    };
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    request_sync(
        &api,
        name,
        &req,
        Some(json!({"spec": {"syncPolicy": {"automated": null}}})),
    )
    .await
    .map_err(kube_err(
        "requesting a rollback of",
        format!("{namespace}/{name}"),
    ))?;
    Ok((req, target))
}

/// Ask for an immediate comparison of `namespace/name` by `user`, and record it.
pub async fn refresh(client: &kube::Client, namespace: &str, name: &str, user: &str) -> Result<()> {
    let app = get(client, namespace, name).await?;
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    let value = format!("{}/{}", crate::now(), request_id());
    let patch = json!({"metadata": {"annotations": {REFRESH_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_err("refreshing", format!("{namespace}/{name}")))?;
    record(
        client,
        namespace,
        format!("{namespace}/{name}"),
        "refresh",
        user,
        String::new(),
        Some(app.object_ref(&())),
    )
    .await;
    Ok(())
}

/// Suspend (or resume) `namespace/name` as `user`: the patch's field manager names
/// the user, and the controller records the change under that name.
pub async fn set_suspend(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    suspend: bool,
    user: &str,
) -> Result<()> {
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams {
        field_manager: Some(field_manager(user)),
        ..Default::default()
    };
    let patch = json!({"spec": {"suspend": suspend}});
    match api.patch(name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(ActionError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        }),
        Err(source) => Err(ActionError::Kube {
            what: "updating",
            target: format!("{namespace}/{name}"),
            source,
        }),
    }
}

/// Turn the emergency stop (in the controller's namespace `system_namespace`) on or
/// off as `user`, with a reason, and record it.
pub async fn set_stop(
    client: &kube::Client,
    system_namespace: &str,
    stopped: bool,
    reason: &str,
    user: &str,
) -> Result<StopState> {
    let state = stop::set(client, system_namespace, stopped, reason, user)
        .await
        .map_err(kube_err(
            if stopped { "setting" } else { "lifting" },
            "the emergency stop".into(),
        ))?;
    record(
        client,
        system_namespace,
        "*".into(),
        if stopped { "stop" } else { "resume" },
        user,
        reason.into(),
        None,
    )
    .await;
    Ok(state)
}

/// Append an audit record of a manual action; a failure is logged (the action itself
/// was done).
async fn record(
    client: &kube::Client,
    namespace: &str,
    application: String,
    action: &str,
    user: &str,
    details: String,
    regarding: Option<ObjectReference>,
) {
    let spec = AuditRecordSpec {
        time: audit::record_time(),
        application,
        action: action.into(),
        trigger: "manual".into(),
        actor: user.into(),
        details,
        ..Default::default()
    };
    if let Err(e) = audit::append(client, namespace, spec, regarding).await {
        tracing::warn!(action, error = %e, "the audit record could not be written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ApplicationStatus;

    fn entry(id: u64, revision: &str, result: &str) -> HistoryEntry {
        HistoryEntry {
            id,
            revision: revision.into(),
            result: result.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_rollback_goes_to_the_last_successful_earlier_revision_unless_told() {
        let mut app = Application::new("web", Default::default());
        app.metadata.namespace = Some("team".into());
        app.status = Some(ApplicationStatus {
            history: vec![
                entry(4, "ccc", "Succeeded"),
                entry(3, "bbb", "Failed"),
                entry(2, "ccc", "Succeeded"),
                entry(1, "aaa", "Succeeded"),
            ],
            ..Default::default()
        });
        assert_eq!(rollback_target(&app, None).unwrap().id, 1);
        assert_eq!(rollback_target(&app, Some(3)).unwrap().revision, "bbb");
        assert!(matches!(
            rollback_target(&app, Some(9)),
            Err(ActionError::NoHistoryEntry { id: 9, .. })
        ));
        app.status = None;
        let err = rollback_target(&app, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "team/web has no earlier successful revision to roll back to"
        );
    }

    #[test]
    fn the_field_manager_names_the_user_within_128_characters() {
        assert_eq!(field_manager("alice"), "capstan:alice");
        assert_eq!(field_manager(&"x".repeat(300)).len(), 128);
    }
}
