//! The API's errors: one JSON shape for all of them,
//! `{"code": 400, "reason": "BadRequest", "message": "...", "field": "limit"}`.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Role;

/// An error answer of the API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// The HTTP status.
    pub code: u16,
    /// CamelCase reason: `BadRequest`, `Unauthorized`, `Forbidden`, `NotFound`,
    /// `Conflict`, `Unavailable`, `Internal`.
    pub reason: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The query parameter or body field at fault, for `BadRequest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The role the request needs, for `Forbidden`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_role: Option<Role>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            field: None,
            required_role: None,
        }
    }

    /// 400: `field` is wrong.
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(400, "BadRequest", message)
        }
    }

    /// 401: no token, or one nobody knows.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(401, "Unauthorized", message)
    }

    /// 403: the user lacks `role`.
    pub fn forbidden(user: &str, role: Role, what: &str) -> Self {
        ApiError {
            required_role: Some(role),
            ..ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{user} may not {what}: it needs the role {role} (bind it in the RBAC ConfigMap)"
                ),
            )
        }
    }

    /// 403 for a reason other than a role (a form from another site).
    pub fn forbidden_message(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "NotFound", message)
    }

    /// 409: the request cannot be done in the object's current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(409, "Conflict", message)
    }

    /// 503: the controller has not listed the Applications yet.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "Unavailable", message)
    }

    /// 500, or the cluster's own failure.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "Internal", message)
    }

    /// An error of the Kubernetes API, kept as its status where it has one.
    pub fn kube(what: &str, e: &kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 404 => {
                ApiError::not_found(format!("{what}: {}", s.message))
            }
            kube::Error::Api(s) if s.code == 409 => {
                ApiError::conflict(format!("{what}: {}", s.message))
            }
            _ => ApiError::internal(format!("{what}: {}", error_chain(e))),
        }
    }
}

/// An error and its causes, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, Json(&self)).into_response();
        if self.code == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"capstan\""),
            );
        }
        resp
    }
}

impl From<capstan_controller::actions::ActionError> for ApiError {
    fn from(e: capstan_controller::actions::ActionError) -> Self {
        use capstan_controller::actions::ActionError as A;
        match &e {
            A::NotFound { .. } => ApiError::not_found(e.to_string()),
            A::NoHistoryEntry { .. } => ApiError::bad_request("id", e.to_string()),
            A::NothingToRollBackTo { .. } => ApiError::conflict(e.to_string()),
            A::Kube { source, .. } => ApiError::kube(&e.to_string(), source),
        }
    }
}

/// Unknown routes under `/api/v1`: 404 in the API's shape, to authenticated users
/// only (401 before), so not even the routes are open.
pub async fn no_route(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> ApiError {
    if let Err(e) = state.api.authenticate(&state, &headers).await {
        return e;
    }
    ApiError::not_found(format!("no route {} (see docs/api.md)", uri.path()))
}
