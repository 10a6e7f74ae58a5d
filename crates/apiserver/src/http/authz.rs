//! `authorization.k8s.io/v1` self reviews: `SelfSubjectAccessReview` (what `kubectl
//! auth can-i VERB RESOURCE` asks) and `SelfSubjectRulesReview` (`kubectl auth can-i
//! --list`).
//!
//! The server's authorization is simple and these answer it truthfully: the admin may
//! do everything; any other authenticated user (a ServiceAccount token) may do nothing
//! but ask these two questions, as on a cluster with no RoleBinding for it (what
//! `system:basic-user` grants every authenticated user).

use serde_json::{Value, json};

use super::authn::UserInfo;
use crate::error::{ApiError, Result};

/// The resource names of the reviews any authenticated user may create.
pub const REVIEWS: [&str; 2] = ["selfsubjectaccessreviews", "selfsubjectrulesreviews"];

fn checked<'a>(body: &'a Value, kind: &str) -> Result<&'a Value> {
    if body
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != kind)
    {
        return Err(ApiError::bad_request(format!(
            "the body's kind is {}, expected {kind}",
            body["kind"]
        )));
    }
    body.get("spec")
        .filter(|s| s.is_object())
        .ok_or_else(|| ApiError::bad_request(format!("{kind}: spec is required")))
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub fn access_review(user: &UserInfo, body: &Value) -> Result<Value> {
    let spec = checked(body, "SelfSubjectAccessReview")?;
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    if resource.is_none() && non_resource.is_none() {
        return Err(ApiError::bad_request(
            "SelfSubjectAccessReview: spec.resourceAttributes or spec.nonResourceAttributes is required",
        ));
    }
    let asks_for_a_review = resource.is_some_and(|r| {
        r["group"].as_str() == Some("authorization.k8s.io")
            && r["verb"].as_str() == Some("create")
            && r["resource"]
                .as_str()
                .is_some_and(|res| REVIEWS.contains(&res))
    });
    let allowed = user.is_admin() || asks_for_a_review;
    let reason = if user.is_admin() {
        "the embedded API server's admin may do everything".to_string()
    } else if allowed {
        "every authenticated user may review its own access".to_string()
    } else {
        format!(
            "no RBAC in the embedded API server: only its admin is authorized, not {}",
            user.username
        )
    };
    Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"allowed": allowed, "reason": reason},
    }))
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`.
pub fn rules_review(user: &UserInfo, body: &Value) -> Result<Value> {
    let spec = checked(body, "SelfSubjectRulesReview")?;
    let (resource_rules, non_resource_rules) = if user.is_admin() {
        (
            json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]),
            json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
        )
    } else {
        (
            json!([{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": REVIEWS}]),
            json!([]),
        )
    };
    Ok(json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": false,
        },
    }))
}
