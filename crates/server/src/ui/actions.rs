//! The forms that act: sync, refresh, rollback, suspend and resume an Application
//! (`operator`), the emergency stop and its lifting (`admin`). Each is a POST with the
//! session's CSRF token and an explicit confirmation, checked here and then done by
//! `capstan_controller::actions` — the code of the CLI and the API — as the logged-in
//! user, so the audit log names them. The answer is a redirect back (303), so a reload
//! does not act twice.

use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use capstan_controller::actions::{self, SyncOptions};
use serde::Deserialize;

use super::page;
use super::{Session, UiError};
use crate::AppState;
use crate::api::app::cached;
use crate::api::{ApiError, Role};

/// The fields of every action form; each action reads those it needs.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
    /// `yes` from the confirm button.
    #[serde(default)]
    confirm: String,
    /// Sync: the revision (empty: the spec's).
    #[serde(default)]
    revision: String,
    /// Sync: `true` when the prune box is ticked.
    #[serde(default)]
    prune: String,
    /// Rollback: the history id.
    #[serde(default)]
    id: String,
    /// Emergency stop: `true` to stop, `false` to resume.
    #[serde(default)]
    stop: String,
    /// Emergency stop: why.
    #[serde(default)]
    reason: String,
}

fn form(f: Result<Form<ActionForm>, FormRejection>) -> Result<ActionForm, UiError> {
    f.map(|Form(f)| f)
        .map_err(|e| ApiError::bad_request("form", e.body_text()).into())
}

fn confirmed(f: &ActionForm) -> Result<(), UiError> {
    if f.confirm == "yes" {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "confirm",
            "the action was not confirmed (press its Confirm button); nothing was done",
        )
        .into())
    }
}

/// `POST /applications/{namespace}/{name}/{action}`.
pub async fn application(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((namespace, name, action)): Path<(String, String, String)>,
    f: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    let f = form(f)?;
    session.check(&headers, &f.csrf)?;
    let what = match action.as_str() {
        "sync" => "sync Applications",
        "refresh" => "refresh Applications",
        "rollback" => "roll back Applications",
        "suspend" => "suspend Applications",
        "resume" => "resume Applications",
        other => {
            return Err(ApiError::not_found(format!(
                "no action {other:?}: expected sync, refresh, rollback, suspend or resume"
            ))
            .into());
        }
    };
    session.require(Role::Operator, what)?;
    confirmed(&f)?;
    cached(&state, &namespace, &name)?;
    let client = &state.controller.client;
    let user = &session.user.name;
    match action.as_str() {
        "sync" => {
            let revision = f.revision.trim();
            if revision.chars().any(char::is_whitespace) {
                return Err(ApiError::bad_request(
                    "revision",
                    "the revision must be a branch, tag or commit, without spaces",
                )
                .into());
            }
            let opts = SyncOptions {
                revision: Some(revision.to_string()).filter(|r| !r.is_empty()),
                prune: f.prune == "true",
            };
            actions::sync(client, &namespace, &name, &opts, user)
                .await
                .map_err(ApiError::from)?;
        }
        "refresh" => actions::refresh(client, &namespace, &name, user)
            .await
            .map_err(ApiError::from)?,
        "rollback" => {
            let id = Some(f.id.trim())
                .filter(|i| !i.is_empty())
                .map(|i| {
                    i.parse::<u64>().map_err(|_| {
                        ApiError::bad_request("id", format!("id={i:?}: expected a history id"))
                    })
                })
                .transpose()?;
            actions::rollback(client, &namespace, &name, id, user)
                .await
                .map_err(ApiError::from)?;
        }
        "suspend" | "resume" => {
            let suspend = action == "suspend";
            actions::set_suspend(client, &namespace, &name, suspend, user)
                .await
                .map_err(ApiError::from)?;
            // the next page shows the new state: wait (briefly) for the cache to see it
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline
                && cached(&state, &namespace, &name).is_ok_and(|a| a.spec.suspend != suspend)
            {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        _ => unreachable!("checked above"),
    }
    Ok(Redirect::to(&format!(
        "{}?done={action}",
        page::app_href(&namespace, &name)
    ))
    .into_response())
}

/// The path the form was on (from `Referer`), to return to; `/` otherwise.
fn back(headers: &HeaderMap) -> String {
    headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split_once("://"))
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".into())
}

/// `POST /emergency-stop` (`stop=true|false`, `reason`): `admin`.
pub async fn emergency_stop(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    f: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    let f = form(f)?;
    session.check(&headers, &f.csrf)?;
    let stopped = match f.stop.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(ApiError::bad_request(
                "stop",
                format!("stop={other:?}: expected true or false"),
            )
            .into());
        }
    };
    session.require(
        Role::Admin,
        if stopped {
            "pull the emergency stop"
        } else {
            "lift the emergency stop"
        },
    )?;
    actions::set_stop(
        &state.controller.client,
        &state.controller.namespace,
        stopped,
        f.reason.trim(),
        &session.user.name,
    )
    .await
    .map_err(ApiError::from)?;
    state.ui_stop.clear();
    // the next page shows the banner: wait (briefly) for the controller's watch to see it
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && state.controller.stop.is_stopped() != stopped {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(Redirect::to(&back(&headers)).into_response())
}
