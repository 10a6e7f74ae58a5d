//! Acting: refresh, sync, rollback, suspend and resume an Application (`operator`);
//! the emergency stop and its lifting (`admin`). Each calls
//! `capstan_controller::actions` — the CLI's code — as the authenticated user, so the
//! audit record names them; the controller does the work.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use capstan_controller::actions::{self, SyncOptions};
use capstan_controller::stop::{self, StopState};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::app::cached;
use super::{ApiError, Role, auth};
use crate::AppState;

/// The JSON body of an action; an empty body is the defaults. An unknown field or a
/// value of the wrong type is a 400 naming the field.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::bad_request(&field, format!("the request body: {}", e.inner()))
    })
}

type Accepted = (StatusCode, Json<Value>);

fn accepted(v: Value) -> Accepted {
    (StatusCode::ACCEPTED, Json(v))
}

/// `POST .../refresh`: compare with Git now.
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Accepted, ApiError> {
    let user = auth::require(&state, &headers, Role::Operator, "refresh Applications").await?;
    body::<Empty>(&bytes)?;
    cached(&state, &namespace, &name)?;
    actions::refresh(&state.controller.client, &namespace, &name, &user.name).await?;
    Ok(accepted(
        json!({"application": format!("{namespace}/{name}"), "requested": "refresh", "by": user.name}),
    ))
}

/// No fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// The body of `POST .../sync`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    /// Sync to this revision instead of the spec's.
    #[serde(default)]
    revision: Option<String>,
    /// Prune objects that left the source.
    #[serde(default)]
    prune: bool,
}

/// `POST .../sync` `{"revision": "...", "prune": true}`.
pub async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Accepted, ApiError> {
    let user = auth::require(&state, &headers, Role::Operator, "sync Applications").await?;
    let b: SyncBody = body(&bytes)?;
    if b.revision
        .as_deref()
        .is_some_and(|r| r.trim().is_empty() || r.chars().any(char::is_whitespace))
    {
        return Err(ApiError::bad_request(
            "revision",
            "the revision must be a branch, tag or commit, without spaces",
        ));
    }
    let opts = SyncOptions {
        revision: b.revision,
        prune: b.prune,
    };
    let req = actions::sync(
        &state.controller.client,
        &namespace,
        &name,
        &opts,
        &user.name,
    )
    .await?;
    Ok(accepted(json!({
        "application": format!("{namespace}/{name}"),
        "requested": "sync",
        "requestId": req.id,
        "revision": req.revision,
        "prune": opts.prune,
        "by": user.name,
    })))
}

/// The body of `POST .../rollback`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The history id (default: the last successful sync of an earlier revision).
    #[serde(default)]
    id: Option<u64>,
}

/// `POST .../rollback` `{"id": 3}`: sync an earlier revision; automated sync goes off.
pub async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Accepted, ApiError> {
    let user = auth::require(&state, &headers, Role::Operator, "roll back Applications").await?;
    let b: RollbackBody = body(&bytes)?;
    let (req, target) = actions::rollback(
        &state.controller.client,
        &namespace,
        &name,
        b.id,
        &user.name,
    )
    .await?;
    Ok(accepted(json!({
        "application": format!("{namespace}/{name}"),
        "requested": "rollback",
        "requestId": req.id,
        "historyId": target.id,
        "revision": target.revision,
        "automatedSyncDisabled": true,
        "by": user.name,
    })))
}

async fn set_suspend(
    state: AppState,
    headers: HeaderMap,
    namespace: String,
    name: String,
    bytes: Bytes,
    suspend: bool,
) -> Result<Json<Value>, ApiError> {
    let what = if suspend {
        "suspend Applications"
    } else {
        "resume Applications"
    };
    let user = auth::require(&state, &headers, Role::Operator, what).await?;
    body::<Empty>(&bytes)?;
    actions::set_suspend(
        &state.controller.client,
        &namespace,
        &name,
        suspend,
        &user.name,
    )
    .await?;
    Ok(Json(
        json!({"application": format!("{namespace}/{name}"), "suspended": suspend, "by": user.name}),
    ))
}

/// `POST .../suspend`: stop syncing this Application (drift is still reported).
pub async fn suspend(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_suspend(state, headers, namespace, name, bytes, true).await
}

/// `POST .../resume`: sync it again.
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_suspend(state, headers, namespace, name, bytes, false).await
}

/// The body of the emergency stop and its lifting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    /// Why.
    #[serde(default)]
    reason: String,
}

/// `GET /api/v1/emergency-stop`: the switch as stored (`viewer`).
pub async fn stop_state(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<StopState>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "read the emergency stop").await?;
    let s = stop::read(&state.controller.client, &state.controller.namespace)
        .await
        .map_err(|e| ApiError::kube("reading the emergency stop", &e))?;
    Ok(Json(s))
}

async fn set_stop(
    state: AppState,
    headers: HeaderMap,
    bytes: Bytes,
    stopped: bool,
) -> Result<Json<StopState>, ApiError> {
    let what = if stopped {
        "pull the emergency stop"
    } else {
        "lift the emergency stop"
    };
    let user = auth::require(&state, &headers, Role::Admin, what).await?;
    let b: StopBody = body(&bytes)?;
    let s = actions::set_stop(
        &state.controller.client,
        &state.controller.namespace,
        stopped,
        b.reason.trim(),
        &user.name,
    )
    .await?;
    Ok(Json(s))
}

/// `POST /api/v1/emergency-stop` `{"reason": "..."}`: halt every sync (`admin`).
pub async fn stop(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<StopState>, ApiError> {
    set_stop(state, headers, bytes, true).await
}

/// `DELETE /api/v1/emergency-stop` `{"reason": "..."}`: lift it (`admin`).
pub async fn lift_stop(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<StopState>, ApiError> {
    set_stop(state, headers, bytes, false).await
}
