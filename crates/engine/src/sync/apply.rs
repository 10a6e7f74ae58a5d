//! Sending one object to the cluster the way its sync options say:
//!
//! | options | method |
//! | --- | --- |
//! | (default) | server-side apply, as Capstan's field manager |
//! | `ServerSideApply=false` | client-side apply, as `kubectl apply` does it: a merge patch of what changed since the `kubectl.kubernetes.io/last-applied-configuration` annotation (fields dropped from the source are removed), the annotation updated |
//! | `Replace=true` | replace (PUT with the live resourceVersion), or create |
//! | `Replace=true,Force=true` | delete, wait until gone, create |
//!
//! Every method validates fields strictly (an unknown field is an error naming it, as
//! `kubectl apply` does by default); `Validate=false` sends `fieldValidation=Ignore`.
//! The planner dry-runs the same request the sync sends, so a plan shows what the
//! chosen method really does.

use std::time::Duration;

use capstan_core::SyncOptionSet;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective,
};
use serde_json::{Map, Value};

use crate::diff::values_equal;

/// The annotation client-side apply keeps the last applied object in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How an object is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Server-side apply (the default).
    ServerSide,
    /// Client-side apply with the last-applied annotation (`ServerSideApply=false`).
    ClientSide,
    /// Replace, or create (`Replace=true`).
    Replace,
    /// Delete and create again (`Replace=true,Force=true`).
    Recreate,
}

impl Method {
    /// The method an object's options choose.
    pub fn of(options: &SyncOptionSet) -> Method {
        match (options.replace, options.force, options.server_side_apply) {
            (true, true, _) => Method::Recreate,
            (true, false, _) => Method::Replace,
            (false, _, true) => Method::ServerSide,
            (false, _, false) => Method::ClientSide,
        }
    }

    /// Whether Capstan's field manager owns the object's fields by apply after a send
    /// (only server-side apply records ownership the planner can check).
    pub fn records_ownership(self) -> bool {
        self == Method::ServerSide
    }
}

/// What a send needs besides the object.
#[derive(Debug, Clone)]
pub struct Send<'a> {
    /// The field manager.
    pub field_manager: &'a str,
    /// Take over conflicting fields (server-side apply).
    pub force_conflicts: bool,
    /// The object's sync options.
    pub options: SyncOptionSet,
    /// Only ask the server what it would do.
    pub dry_run: bool,
}

impl Send<'_> {
    fn validation(&self) -> ValidationDirective {
        if self.options.validate {
            ValidationDirective::Strict
        } else {
            ValidationDirective::Ignore
        }
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams {
            dry_run: self.dry_run,
            force: false,
            field_manager: Some(self.field_manager.to_string()),
            field_validation: Some(self.validation()),
        }
    }
}

/// Send `desired` (named `name`) by its options; `live` is the object as it is now.
/// Returns the object as the server stored it (or would, in a dry run).
pub async fn send(
    api: &Api<DynamicObject>,
    name: &str,
    desired: &Value,
    live: Option<&Value>,
    how: &Send<'_>,
) -> Result<Value, kube::Error> {
    let stored = match (Method::of(&how.options), live) {
        (Method::ServerSide, _) => {
            let mut pp = how.patch_params();
            pp.force = how.force_conflicts || how.options.force;
            api.patch(name, &pp, &Patch::Apply(desired)).await?
        }
        (Method::ClientSide, None) => create(api, &with_last_applied(desired), how).await?,
        (Method::ClientSide, Some(live)) => {
            let patch = client_side_patch(desired, live);
            api.patch(name, &how.patch_params(), &Patch::Merge(&patch))
                .await?
        }
        (Method::Replace | Method::Recreate, None) => create(api, desired, how).await?,
        (Method::Replace, Some(live)) => replace(api, name, desired, live, how).await?,
        // a dry run cannot show a delete and a create in one answer: the replace shows
        // the object the create would make
        (Method::Recreate, Some(live)) if how.dry_run => {
            replace(api, name, desired, live, how).await?
        }
        (Method::Recreate, Some(_)) => {
            delete_and_wait(api, name).await?;
            create(api, desired, how).await?
        }
    };
    Ok(serde_json::to_value(stored).unwrap_or(Value::Null))
}

/// The request a create or replace makes, with the field validation the options ask
/// for (kube's `PostParams` cannot carry it).
fn with_validation(
    mut req: http::Request<Vec<u8>>,
    how: &Send<'_>,
) -> Result<http::Request<Vec<u8>>, kube::Error> {
    let v = match how.validation() {
        ValidationDirective::Ignore => "Ignore",
        ValidationDirective::Warn => "Warn",
        ValidationDirective::Strict => "Strict",
    };
    let uri = req.uri().to_string();
    let sep = if uri.contains('?') { '&' } else { '?' };
    *req.uri_mut() =
        format!("{uri}{sep}fieldValidation={v}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| {
                kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e.into()))
            })?;
    Ok(req)
}

fn post_params(how: &Send<'_>) -> PostParams {
    PostParams {
        dry_run: how.dry_run,
        field_manager: Some(how.field_manager.to_string()),
    }
}

async fn create(
    api: &Api<DynamicObject>,
    desired: &Value,
    how: &Send<'_>,
) -> Result<DynamicObject, kube::Error> {
    let body = serde_json::to_vec(desired).map_err(kube::Error::SerdeError)?;
    let req = kube::core::Request::new(api.resource_url())
        .create(&post_params(how), body)
        .map_err(kube::Error::BuildRequest)?;
    api.clone()
        .into_client()
        .request(with_validation(req, how)?)
        .await
}

async fn replace(
    api: &Api<DynamicObject>,
    name: &str,
    desired: &Value,
    live: &Value,
    how: &Send<'_>,
) -> Result<DynamicObject, kube::Error> {
    let mut obj = desired.clone();
    if let (Some(meta), Some(rv)) = (
        obj.get_mut("metadata").and_then(Value::as_object_mut),
        live.pointer("/metadata/resourceVersion"),
    ) {
        meta.insert("resourceVersion".into(), rv.clone());
    }
    let body = serde_json::to_vec(&obj).map_err(kube::Error::SerdeError)?;
    let req = kube::core::Request::new(api.resource_url())
        .replace(name, &post_params(how), body)
        .map_err(kube::Error::BuildRequest)?;
    api.clone()
        .into_client()
        .request(with_validation(req, how)?)
        .await
}

/// Delete an object and wait (up to five minutes) until it is gone.
async fn delete_and_wait(api: &Api<DynamicObject>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut pause = Duration::from_millis(50);
    while api.get_opt(name).await?.is_some() {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    Ok(())
}

/// `desired` as client-side apply sends it: with itself in the last-applied annotation.
pub fn with_last_applied(desired: &Value) -> Value {
    let mut out = desired.clone();
    let recorded = serde_json::to_string(&without_last_applied(desired)).unwrap_or_default();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = ann.as_object_mut() {
            a.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(recorded));
        }
    }
    out
}

fn without_last_applied(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(a) = out
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED_ANNOTATION);
        if a.is_empty()
            && let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    out
}

/// The object last applied client-side, from `live`'s annotation.
pub fn last_applied(live: &Value) -> Option<Value> {
    let raw = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()?;
    serde_json::from_str(raw).ok()
}

/// Whether a client-side apply of `desired` would change nothing in `live`.
pub fn client_side_unchanged(desired: &Value, live: &Value) -> bool {
    last_applied(live).is_some_and(|l| values_equal(&l, &without_last_applied(desired)))
        && crate::diff::is_subset(desired, live)
}

/// The merge patch client-side apply sends: every field of `desired` that `live` does
/// not hold yet (lists as a whole), and `null` for every field the last apply set that
/// `desired` no longer has.
pub fn client_side_patch(desired: &Value, live: &Value) -> Value {
    let modified = with_last_applied(desired);
    let original = last_applied(live).unwrap_or(Value::Null);
    Value::Object(three_way(&original, &modified, live))
}

fn three_way(original: &Value, modified: &Value, current: &Value) -> Map<String, Value> {
    let mut patch = Map::new();
    let Some(m) = modified.as_object() else {
        return patch;
    };
    for (k, want) in m {
        match current.get(k) {
            Some(have) if values_equal(have, want) => {}
            Some(have) if have.is_object() && want.is_object() => {
                let sub = three_way(original.get(k).unwrap_or(&Value::Null), want, have);
                if !sub.is_empty() {
                    patch.insert(k.clone(), Value::Object(sub));
                }
            }
            _ => {
                patch.insert(k.clone(), want.clone());
            }
        }
    }
    if let Some(o) = original.as_object() {
        for k in o.keys() {
            if !m.contains_key(k) && current.get(k).is_some() {
                patch.insert(k.clone(), Value::Null);
            }
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_choose_the_method() {
        let o = SyncOptionSet::default();
        assert_eq!(Method::of(&o), Method::ServerSide);
        let csa = o.with(["ServerSideApply=false"]).unwrap();
        assert_eq!(Method::of(&csa), Method::ClientSide);
        let replace = o.with(["Replace=true"]).unwrap();
        assert_eq!(Method::of(&replace), Method::Replace);
        let recreate = o.with(["Replace=true", "Force=true"]).unwrap();
        assert_eq!(Method::of(&recreate), Method::Recreate);
    }

    #[test]
    fn the_client_side_patch_removes_what_the_source_dropped_and_keeps_what_others_set() {
        let before = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1", "gone": "x"}});
        let mut live = with_last_applied(&before);
        live["metadata"]["labels"] = json!({"set-by-someone-else": "yes"});
        live["metadata"]["resourceVersion"] = json!("7");
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "2"}});
        let patch = client_side_patch(&desired, &live);
        assert_eq!(patch["data"], json!({"a": "2", "gone": null}));
        assert!(patch["metadata"].get("labels").is_none(), "{patch}");
        let recorded = patch["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(recorded).unwrap(), desired);
    }

    #[test]
    fn an_object_applied_client_side_before_is_unchanged() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1"}});
        let mut live = with_last_applied(&desired);
        live["metadata"]["uid"] = json!("u");
        assert!(client_side_unchanged(&desired, &live));
        let mut changed = desired.clone();
        changed["data"]["a"] = json!("2");
        assert!(!client_side_unchanged(&changed, &live));
        // a field someone else removed is put back
        live["data"] = json!({});
        assert!(!client_side_unchanged(&desired, &live));
    }
}
