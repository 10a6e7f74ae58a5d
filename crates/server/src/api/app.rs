//! Reading one Application: its summary, spec, conditions and resource tree; one
//! resource's live and desired manifest and diff; its history, audit log and events;
//! and the audit log as a whole. All need the `viewer` role.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use capstan_controller::Application;
use capstan_controller::audit::{self, AuditRecordSpec};
use capstan_controller::crd::{Condition, HistoryEntry, OperationState};
use capstan_controller::inspect::{InspectError, ResourceView, TreeNode};
use capstan_core::ObjectRef;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::runtime::reflector;
use serde::Serialize;
use serde_json::Value;

use super::list::{self, Row};
use super::{ApiError, Role, User, auth};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(p: Params, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let Query(p) = p.map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    if let Some((k, _)) = p.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            k,
            format!(
                "unknown parameter {k:?}: expected {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ),
        ));
    }
    Ok(p)
}

fn param<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The Application `namespace/name` from the controller's cache; 404 when unknown.
pub(crate) fn cached(
    state: &AppState,
    namespace: &str,
    name: &str,
) -> Result<Arc<Application>, ApiError> {
    state
        .controller
        .applications
        .get(&reflector::ObjectRef::new(name).within(namespace))
        .ok_or_else(|| ApiError::not_found(format!("application {namespace}/{name} not found")))
}

/// `GET /api/v1/whoami`: the caller's name, groups and role (any authenticated user).
pub async fn whoami(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.api.authenticate(&state, &headers).await?))
}

/// `GET /api/v1/applications/{namespace}/{name}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppDetail {
    /// What the list shows.
    pub summary: Row,
    /// The spec.
    pub spec: Value,
    /// Its conditions.
    pub conditions: Vec<Condition>,
    /// The last (or current) sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// Its resources and the live objects they own.
    pub resources: Vec<TreeNode>,
}

/// `GET /api/v1/applications/{namespace}/{name}`: one Application with its tree.
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    q: Params,
) -> Result<Json<AppDetail>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "read Applications").await?;
    params(q, &[])?;
    let app = cached(&state, &namespace, &name)?;
    let resources = state.controller.tree(&app).await.map_err(inspect_error)?;
    let st = app.status.clone().unwrap_or_default();
    Ok(Json(AppDetail {
        summary: list::row(
            &app,
            state.controller.stop.is_stopped(),
            jiff::Timestamp::now(),
        ),
        spec: serde_json::to_value(&app.spec).unwrap_or_default(),
        conditions: st.conditions,
        operation_state: st.operation_state,
        resources,
    }))
}

pub(crate) fn inspect_error(e: InspectError) -> ApiError {
    match &e {
        InspectError::NotManaged { .. } => ApiError::not_found(e.to_string()),
        InspectError::Render { .. } => ApiError::conflict(format!(
            "the source cannot be rendered now, so there is no desired manifest: {e}"
        )),
        InspectError::Read { .. } => ApiError::internal(super::error::error_chain(&e)),
    }
}

/// `GET /api/v1/applications/{namespace}/{name}/resource?group=&kind=&namespace=&name=`:
/// the live and desired manifest of one resource and their diff (Secret values masked).
pub async fn resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    q: Params,
) -> Result<Json<ResourceView>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "read Applications").await?;
    let p = params(q, &["group", "kind", "namespace", "name"])?;
    let required = |k: &str| {
        param(&p, k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request(k, format!("the parameter {k:?} is required")))
    };
    let id = ObjectRef {
        group: param(&p, "group").unwrap_or("").to_string(),
        kind: required("kind")?.to_string(),
        namespace: param(&p, "namespace")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        name: required("name")?.to_string(),
    };
    let app = cached(&state, &namespace, &name)?;
    let view = state
        .controller
        .resource(&app, &id)
        .await
        .map_err(inspect_error)?;
    Ok(Json(view))
}

/// `GET /api/v1/applications/{namespace}/{name}/history`: past syncs, newest first.
pub async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    q: Params,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "read Applications").await?;
    params(q, &[])?;
    let app = cached(&state, &namespace, &name)?;
    Ok(Json(app.status.clone().unwrap_or_default().history))
}

fn since(p: &[(String, String)]) -> Result<Option<jiff::Timestamp>, ApiError> {
    let Some(v) = param(p, "since") else {
        return Ok(None);
    };
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(Some(t));
    }
    let d = humantime_like(v).ok_or_else(|| {
        ApiError::bad_request(
            "since",
            format!("since={v:?}: expected an RFC 3339 time or a duration such as 30m, 2h, 7d"),
        )
    })?;
    Ok(Some(
        jiff::Timestamp::now() - jiff::SignedDuration::from_secs(d),
    ))
}

/// `30s`, `15m`, `2h`, `7d` in seconds.
fn humantime_like(v: &str) -> Option<i64> {
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let f = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(f)
}

/// `GET /api/v1/audit?namespace=&application=&since=`: audit records, oldest first.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Params,
) -> Result<Json<Vec<AuditRecordSpec>>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "read the audit log").await?;
    let p = params(q, &["namespace", "application", "since"])?;
    let since = since(&p)?;
    let records = audit::list(
        &state.controller.client,
        param(&p, "namespace"),
        param(&p, "application"),
        since,
    )
    .await
    .map_err(|e| ApiError::kube("reading the audit log", &e))?;
    Ok(Json(records))
}

/// `GET /api/v1/applications/{namespace}/{name}/audit?since=`: its audit records.
pub async fn app_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    q: Params,
) -> Result<Json<Vec<AuditRecordSpec>>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "read the audit log").await?;
    let p = params(q, &["since"])?;
    let since = since(&p)?;
    cached(&state, &namespace, &name)?;
    let key = format!("{namespace}/{name}");
    let records = audit::list(
        &state.controller.client,
        Some(&namespace),
        Some(&key),
        since,
    )
    .await
    .map_err(|e| ApiError::kube("reading the audit log", &e))?;
    Ok(Json(records))
}

/// One Event about an Application.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// CamelCase reason (`Synced`, `SyncFailed`, …).
    pub reason: String,
    /// What happened.
    pub message: String,
    /// How many times.
    pub count: i32,
    /// First seen (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<String>,
    /// Last seen (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<String>,
    /// Who reported it.
    pub source: String,
}

/// `GET /api/v1/applications/{namespace}/{name}/events`: Events on the Application,
/// newest first.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    q: Params,
) -> Result<Json<Vec<EventRow>>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "read Applications").await?;
    params(q, &[])?;
    cached(&state, &namespace, &name)?;
    Ok(Json(event_rows(&state, &namespace, &name).await?))
}

/// The Events on the Application `namespace/name`, newest first.
pub(crate) async fn event_rows(
    state: &AppState,
    namespace: &str,
    name: &str,
) -> Result<Vec<EventRow>, ApiError> {
    let api: Api<Event> = Api::namespaced(state.controller.client.clone(), namespace);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Application,involvedObject.name={name}"
    ));
    let list = api
        .list(&lp)
        .await
        .map_err(|e| ApiError::kube("reading the events", &e))?;
    let ts = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref()
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    };
    let mut rows: Vec<EventRow> = list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object
                .api_version
                .as_deref()
                .is_none_or(|v| v.starts_with("capstan.dev/"))
        })
        .map(|e| EventRow {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
            first_timestamp: ts(&e.first_timestamp),
            last_timestamp: ts(&e.last_timestamp).or_else(|| {
                e.event_time
                    .as_ref()
                    .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            }),
            source: e
                .reporting_component
                .clone()
                .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                .unwrap_or_default(),
        })
        .collect();
    rows.sort_by(|a, b| b.last_timestamp.cmp(&a.last_timestamp));
    Ok(rows)
}
