//! API errors as Kubernetes `Status` objects.
//!
//! Every failure the server returns is a `meta/v1 Status` with the same `reason` and
//! `code` kube-apiserver would use, so clients (kubectl, kube-rs) react to them the way
//! they react to a real cluster: `NotFound` is retried as a create, `Conflict` as a
//! re-read, `Invalid` shows its causes.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::registry::GroupResource;

/// One field-level cause of an `Invalid` or `Conflict` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueRequired`, `FieldManagerConflict`.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
    /// JSON-path-like field name, e.g. `spec.replicas`.
    pub field: String,
}

impl Cause {
    /// A cause with the given reason, field and message.
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause {
            reason: reason.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// `field: Required value`.
    pub fn required(field: impl Into<String>) -> Self {
        Cause::new("FieldValueRequired", field, "Required value")
    }

    /// `field: Invalid value: "v": why`.
    pub fn invalid(field: impl Into<String>, value: &Value, why: impl AsRef<str>) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {shown}: {}", why.as_ref()),
        )
    }

    /// `field: Unsupported value: "v": supported values: ...`.
    pub fn unsupported(field: impl Into<String>, value: &Value, supported: &[String]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause::new(
            "FieldValueNotSupported",
            field,
            format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        )
    }

    /// `field: Forbidden: why`.
    pub fn forbidden(field: impl Into<String>, why: impl AsRef<str>) -> Self {
        Cause::new(
            "FieldValueForbidden",
            field,
            format!("Forbidden: {}", why.as_ref()),
        )
    }

    /// `field: Invalid value: ...: field is immutable`.
    pub fn immutable(field: impl Into<String>, value: &Value) -> Self {
        Cause::invalid(field, value, "field is immutable")
    }

    fn line(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// A failed API request, rendered as a `Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} ({reason}, {code})")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`: name, group, kind and causes.
    pub details: Option<Box<Details>>,
    /// `Retry-After` seconds, for `TooManyRequests`-style answers.
    pub retry_after: Option<u64>,
}

/// `Status.details`.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// Name of the object concerned.
    pub name: String,
    /// API group of the object concerned (empty for the core group).
    pub group: String,
    /// The resource (for NotFound/AlreadyExists/Conflict) or kind (for Invalid).
    pub kind: String,
    /// Field-level causes.
    pub causes: Vec<Cause>,
}

/// Shorthand for results whose error is an [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, gr: &GroupResource, name: &str) -> Self {
        self.details = Some(Box::new(Details {
            name: name.to_string(),
            group: gr.group.clone(),
            kind: gr.resource.clone(),
            causes: Vec::new(),
        }));
        self
    }

    /// 404 `<resource> "<name>" not found`.
    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{gr} \"{name}\" not found")).with_details(gr, name)
    }

    /// 404 for a path that names no resource this server serves.
    pub fn no_route(what: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({what})"),
        )
    }

    /// 409 `<resource> "<name>" already exists`.
    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{gr} \"{name}\" already exists"),
        )
        .with_details(gr, name)
    }

    /// 409 Conflict: `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub fn conflict(gr: &GroupResource, name: &str, why: impl AsRef<str>) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {gr} \"{name}\": {}",
                why.as_ref()
            ),
        )
        .with_details(gr, name)
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn stale(gr: &GroupResource, name: &str) -> Self {
        ApiError::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict for a failed uid or resourceVersion precondition, worded like the
    /// storage error kube-apiserver wraps (`key` is the object's storage key).
    pub fn precondition_failed(
        gr: &GroupResource,
        name: &str,
        key: &str,
        why: impl AsRef<str>,
    ) -> Self {
        ApiError::conflict(
            gr,
            name,
            format!(
                "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: {}",
                why.as_ref()
            ),
        )
    }

    /// 409 Conflict raised by server-side apply, listing every conflicting field.
    pub fn apply_conflict(gr: &GroupResource, name: &str, causes: Vec<Cause>) -> Self {
        let n = causes.len();
        let mut message = format!(
            "Apply failed with {n} conflict{}: ",
            if n == 1 { "" } else { "s" }
        );
        let lines: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.message, c.field))
            .collect();
        message.push_str(&lines.join("\n"));
        let mut err = ApiError::new(409, "Conflict", message).with_details(gr, name);
        if let Some(d) = err.details.as_mut() {
            d.causes = causes;
        }
        err
    }

    /// 422 Invalid: `<Kind> "<name>" is invalid: <causes>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let body = if causes.len() == 1 {
            causes[0].line()
        } else {
            let lines: Vec<String> = causes.iter().map(Cause::line).collect();
            format!("[{}]", lines.join(", "))
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} \"{name}\" is invalid: {body}"),
            details: Some(Box::new(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: kind.to_string(),
                causes,
            })),
            retry_after: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(gr: &GroupResource, name: &str, why: impl AsRef<str>) -> Self {
        ApiError::new(
            403,
            "Forbidden",
            format!("{gr} \"{name}\" is forbidden: {}", why.as_ref()),
        )
        .with_details(gr, name)
    }

    /// 403 Forbidden for a request that is not about one object (kube-apiserver's
    /// `forbidden: User "…" cannot get path "…"`).
    pub fn forbidden_request(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(406, "NotAcceptable", message)
    }

    /// 410 Expired: the requested resourceVersion is older than the event history.
    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type:?}) - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 415 UnsupportedMediaType for a body in a known format this server does not take
    /// for what it is (a protobuf body for a custom resource); `message` says which.
    pub fn unsupported_body(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 500 InternalError: something the server itself failed at (storage, I/O).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = ApiError::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    /// 429 TooManyRequests, with `Retry-After` seconds.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = ApiError::new(429, "TooManyRequests", message);
        e.retry_after = Some(retry_after);
        e
    }

    /// 504 Timeout: the server gave up waiting for the request to finish.
    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, "Timeout", message)
    }

    /// True for 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// True for 409 Conflict (stale resourceVersion or apply conflict).
    pub fn is_conflict(&self) -> bool {
        self.code == 409 && self.reason == "Conflict"
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let Some(d) = &self.details {
            let mut details = Map::new();
            if !d.name.is_empty() {
                details.insert("name".into(), d.name.clone().into());
            }
            if !d.group.is_empty() {
                details.insert("group".into(), d.group.clone().into());
            }
            if !d.kind.is_empty() {
                details.insert("kind".into(), d.kind.clone().into());
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                details.insert("causes".into(), causes.into());
            }
            if let Some(secs) = self.retry_after {
                details.insert("retryAfterSeconds".into(), secs.into());
            }
            status["details"] = Value::Object(details);
        }
        status["code"] = self.code.into();
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_kube_apiserver_shape() {
        let gr = GroupResource::new("apps", "deployments");
        let s = ApiError::not_found(&gr, "web").to_status();
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_all_causes_in_message() {
        let e = ApiError::invalid(
            "",
            "ConfigMap",
            "x",
            vec![Cause::required("metadata.name"), Cause::required("data")],
        );
        assert_eq!(
            e.message,
            "ConfigMap \"x\" is invalid: [metadata.name: Required value, data: Required value]"
        );
        assert_eq!(e.to_status()["details"]["causes"][1]["field"], "data");
    }
}
