//! Validation of objects before they are stored.
//!
//! Built-in kinds are decoded into their k8s-openapi types, which checks every field's
//! type the way kube-apiserver's decoder does and reports unknown fields (dropped, or
//! an error under `fieldValidation=Strict`). On top of that come the checks users hit
//! most often in practice: names, labels, annotations, selectors that must match the
//! pod template, required container fields, immutable fields.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, Cause};
use crate::meta;
use crate::registry::{NameRule, ResourceDef};
use crate::selector::{LabelSelector, validate_label_key, validate_label_value};

/// How to treat fields the schema does not know (`fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and return a `Warning` header (the default).
    #[default]
    Warn,
    /// Reject the request.
    Strict,
}

impl FieldValidation {
    /// Parse the query parameter.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?} (must be one of \"Ignore\", \"Warn\", \"Strict\")"
            ))),
        }
    }
}

/// RFC 1123 subdomain: lowercase alphanumerics, `-` and `.`, alphanumeric at both ends.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label_chars)
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Validate `metadata.name` (or `generateName` prefix) by the resource's rule.
pub fn validate_name(rule: NameRule, name: &str) -> Option<String> {
    match rule {
        NameRule::Subdomain if !is_dns_subdomain(name) => Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
        ),
        NameRule::Label if !is_label_chars(name) => Some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into(),
        ),
        NameRule::Rfc1035Label
            if !is_label_chars(name) || !name.as_bytes()[0].is_ascii_lowercase() =>
        {
            Some("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into())
        }
        NameRule::PathSegment if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('%') => {
            Some("may not be '.' or '..' and may not contain '/' or '%'".into())
        }
        _ => None,
    }
}

/// Checks common to every object: name, labels, annotations, finalizers.
pub fn validate_metadata(def: &ResourceDef, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta::name(obj);
    if name.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else if let Some(why) = validate_name(def.name_rule, name) {
        causes.push(Cause::invalid(
            "metadata.name",
            &Value::String(name.into()),
            why,
        ));
    }
    let Some(m) = meta::metadata(obj) else {
        return causes;
    };
    if let Some(labels) = m.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Err(why) = validate_label_key(k) {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    &Value::String(k.clone()),
                    why,
                ));
            }
            match v.as_str() {
                Some(s) => {
                    if let Err(why) = validate_label_value(s) {
                        causes.push(Cause::invalid("metadata.labels", v, why));
                    }
                }
                None => causes.push(Cause::invalid(
                    format!("metadata.labels.{k}"),
                    v,
                    "must be a string",
                )),
            }
        }
    }
    if let Some(annotations) = m.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            if let Err(why) = validate_label_key(k) {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    &Value::String(k.clone()),
                    why,
                ));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            causes.push(Cause::new(
                "FieldValueTooLong",
                "metadata.annotations",
                format!("Too long: may not be more than 262144 bytes (got {total})"),
            ));
        }
    }
    // A finalizer is a qualified name, as a label key (kube-apiserver warns about one
    // without a domain prefix, as Argo CD's `resources-finalizer.argocd.argoproj.io`,
    // but takes it; only a Namespace's spec.finalizers must be standard or qualified).
    for (i, f) in meta::finalizers(obj).iter().enumerate() {
        if let Err(why) = validate_label_key(f) {
            causes.push(Cause::invalid(
                format!("metadata.finalizers[{i}]"),
                &Value::String(f.clone()),
                why,
            ));
        }
    }
    causes
}

/// The outcome of decoding a built-in object into its typed form.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Fields the type does not know, as `spec.template.spec.containers[0].foo`.
    pub unknown: Vec<Vec<PathSegment>>,
}

/// One step of a path reported by the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// An object field.
    Field(String),
    /// A list index.
    Index(usize),
}

/// Render a decoder path as `spec.containers[0].foo`.
pub fn render_path(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSegment::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn collect_path(p: &serde_ignored::Path<'_>, out: &mut Vec<PathSegment>) {
    use serde_ignored::Path;
    match p {
        Path::Root => {}
        Path::Seq { parent, index } => {
            collect_path(parent, out);
            out.push(PathSegment::Index(*index));
        }
        Path::Map { parent, key } => {
            collect_path(parent, out);
            out.push(PathSegment::Field(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => collect_path(parent, out),
    }
}

fn decode<T: DeserializeOwned>(obj: &Value) -> Result<Decoded, (String, String)> {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| {
        let mut segs = Vec::new();
        collect_path(&p, &mut segs);
        unknown.push(segs);
    };
    let mut cb: &mut dyn FnMut(serde_ignored::Path<'_>) = &mut record;
    let de = serde_ignored::Deserializer::new(obj, &mut cb);
    let res: Result<T, _> = serde_path_to_error::deserialize(de);
    match res {
        Ok(_) => Ok(Decoded { unknown }),
        Err(e) => {
            let path = e.path().to_string();
            Err((
                if path == "." { String::new() } else { path },
                e.inner().to_string(),
            ))
        }
    }
}

macro_rules! typed {
    ($group:expr, $kind:expr, $obj:expr, { $( ($g:literal, $k:literal) => $($seg:ident)::+ ),* $(,)? }) => {
        match ($group, $kind) {
            $( ($g, $k) => Some(decode::<k8s_openapi::$($seg)::+>($obj)), )*
            _ => None,
        }
    };
}

/// Call `$m!(args…, { (group, kind) => path, … })` with every built-in kind this server
/// has a type for: decoding ([`decode_builtin`]), the OpenAPI schemas (`http::discovery`)
/// and protobuf bodies (`http::protobuf`) use the same list. `path` is the type's path
/// inside k8s-openapi, which k8s-pb's prost types share (both are generated from the
/// same Kubernetes API definitions).
macro_rules! builtin_types {
    ($m:ident, $($args:tt),*) => {
        $m!($($args),*, {
            ("", "Namespace") => api::core::v1::Namespace,
            ("", "ConfigMap") => api::core::v1::ConfigMap,
            ("", "Secret") => api::core::v1::Secret,
            ("", "Service") => api::core::v1::Service,
            ("", "ServiceAccount") => api::core::v1::ServiceAccount,
            ("", "Pod") => api::core::v1::Pod,
            ("", "Node") => api::core::v1::Node,
            ("", "Event") => api::core::v1::Event,
            ("events.k8s.io", "Event") => api::events::v1::Event,
            ("", "Endpoints") => api::core::v1::Endpoints,
            ("", "PersistentVolumeClaim") => api::core::v1::PersistentVolumeClaim,
            ("", "PersistentVolume") => api::core::v1::PersistentVolume,
            ("", "ResourceQuota") => api::core::v1::ResourceQuota,
            ("", "LimitRange") => api::core::v1::LimitRange,
            ("apps", "Deployment") => api::apps::v1::Deployment,
            ("apps", "StatefulSet") => api::apps::v1::StatefulSet,
            ("apps", "DaemonSet") => api::apps::v1::DaemonSet,
            ("apps", "ReplicaSet") => api::apps::v1::ReplicaSet,
            ("apps", "ControllerRevision") => api::apps::v1::ControllerRevision,
            ("batch", "Job") => api::batch::v1::Job,
            ("batch", "CronJob") => api::batch::v1::CronJob,
            ("networking.k8s.io", "Ingress") => api::networking::v1::Ingress,
            ("networking.k8s.io", "IngressClass") => api::networking::v1::IngressClass,
            ("networking.k8s.io", "NetworkPolicy") => api::networking::v1::NetworkPolicy,
            ("rbac.authorization.k8s.io", "Role") => api::rbac::v1::Role,
            ("rbac.authorization.k8s.io", "RoleBinding") => api::rbac::v1::RoleBinding,
            ("rbac.authorization.k8s.io", "ClusterRole") => api::rbac::v1::ClusterRole,
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
            ("coordination.k8s.io", "Lease") => api::coordination::v1::Lease,
            ("policy", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
            ("autoscaling", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
            ("storage.k8s.io", "StorageClass") => api::storage::v1::StorageClass,
            ("scheduling.k8s.io", "PriorityClass") => api::scheduling::v1::PriorityClass,
            ("apiextensions.k8s.io", "CustomResourceDefinition") => apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        })
    };
}
pub(crate) use builtin_types;

/// Decode a built-in object into its k8s-openapi type.
///
/// `Err((field, message))` when a field has the wrong type or a required field is
/// missing; `None` for kinds this server has no type for.
pub fn decode_builtin(
    group: &str,
    kind: &str,
    obj: &Value,
) -> Option<Result<Decoded, (String, String)>> {
    builtin_types!(typed, group, kind, obj)
}

macro_rules! schema_of {
    ($group:expr, $kind:expr, $gen:expr, { $( ($g:literal, $k:literal) => $($seg:ident)::+ ),* $(,)? }) => {
        match ($group, $kind) {
            $( ($g, $k) => Some(<k8s_openapi::$($seg)::+ as schemars::JsonSchema>::schema_name().into_owned()).map(|name| {
                $gen.subschema_for::<k8s_openapi::$($seg)::+>();
                name
            }), )*
            _ => None,
        }
    };
}

/// Put the OpenAPI schema of the built-in `group`/`kind` (and of every type it uses)
/// into `generator`'s definitions; the name of its own definition, or `None` for kinds
/// this server has no type for.
pub fn builtin_schema(
    group: &str,
    kind: &str,
    generator: &mut schemars::SchemaGenerator,
) -> Option<String> {
    builtin_types!(schema_of, group, kind, generator)
}

/// Remove fields at the given paths (unknown fields the decoder reported).
pub fn prune_paths(obj: &mut Value, paths: &[Vec<PathSegment>]) {
    for path in paths {
        remove_path(obj, path);
    }
}

fn remove_path(v: &mut Value, path: &[PathSegment]) {
    match path {
        [] => {}
        [PathSegment::Field(f)] => {
            if let Some(m) = v.as_object_mut() {
                m.shift_remove(f);
            }
        }
        [PathSegment::Index(_)] => {}
        [first, rest @ ..] => {
            let child = match first {
                PathSegment::Field(f) => v.get_mut(f.as_str()),
                PathSegment::Index(i) => v.get_mut(*i),
            };
            if let Some(c) = child {
                remove_path(c, rest);
            }
        }
    }
}

/// Semantic checks of built-in kinds beyond field types.
pub fn validate_builtin(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let pod_spec_path: Option<&[&str]> = match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => Some(&["spec"]),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            Some(&["spec", "template", "spec"])
        }
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    };
    if let Some(path) = pod_spec_path {
        let spec = path.iter().try_fold(obj, |cur, seg| cur.get(*seg));
        validate_pod_spec(spec, &path.join("."), &mut causes);
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            validate_selector_matches_template(obj, &mut causes);
            if let Some(old) = old {
                let (a, b) = (old.pointer("/spec/selector"), obj.pointer("/spec/selector"));
                if a.is_some() && a != b {
                    causes.push(Cause::immutable("spec.selector", b.unwrap_or(&Value::Null)));
                }
            }
        }
        ("", "Service") => {
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
            if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
                causes.push(Cause::required("spec.ports"));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                if p.get("port")
                    .and_then(Value::as_i64)
                    .is_none_or(|n| !(1..=65535).contains(&n))
                {
                    causes.push(Cause::invalid(
                        format!("spec.ports[{i}].port"),
                        p.get("port").unwrap_or(&Value::Null),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if let Some(old) = old {
                let (a, b) = (
                    old.pointer("/spec/clusterIP"),
                    obj.pointer("/spec/clusterIP"),
                );
                if a.is_some() && b.is_some() && a != b {
                    causes.push(Cause::immutable(
                        "spec.clusterIP",
                        b.unwrap_or(&Value::Null),
                    ));
                }
            }
        }
        ("", "ConfigMap" | "Secret") => {
            for field in ["data", "binaryData", "stringData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        if !is_config_key(k) {
                            causes.push(Cause::invalid(
                                field,
                                &Value::String(k.clone()),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
            if let Some(old) = old
                && old.get("immutable") == Some(&Value::Bool(true))
                && (old.get("data") != obj.get("data")
                    || old.get("binaryData") != obj.get("binaryData"))
            {
                causes.push(Cause::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        ("batch", "Job") => {
            if let Some(old) = old {
                let (a, b) = (
                    old.pointer("/spec/template/spec/containers"),
                    obj.pointer("/spec/template/spec/containers"),
                );
                if a != b {
                    causes.push(Cause::immutable(
                        "spec.template",
                        obj.pointer("/spec/template").unwrap_or(&Value::Null),
                    ));
                }
            }
        }
        _ => {}
    }
    causes
}

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(format!("{at}.containers"))),
        Some(list) if list.is_empty() => causes.push(Cause::required(format!("{at}.containers"))),
        Some(list) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in list.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    causes.push(Cause::required(format!("{at}.containers[{i}].name")));
                } else if !seen.insert(name.to_string()) {
                    causes.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("{at}.containers[{i}].name"),
                        format!("Duplicate value: {name:?}"),
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(format!("{at}.containers[{i}].image")));
                }
            }
        }
    }
}

fn validate_selector_matches_template(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(selector) = obj.pointer("/spec/selector") else {
        causes.push(Cause::required("spec.selector"));
        return;
    };
    let sel = match LabelSelector::from_object(selector) {
        Ok(s) => s,
        Err(why) => {
            causes.push(Cause::invalid("spec.selector", selector, why));
            return;
        }
    };
    if sel.is_empty() {
        causes.push(Cause::invalid(
            "spec.selector",
            selector,
            "empty selector is invalid for deployment",
        ));
        return;
    }
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let matches = sel.matches_labels(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str));
    if !matches {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            obj.pointer("/spec/template/metadata/labels")
                .unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_decode_reports_wrong_types_with_their_path() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                       "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let (path, msg) = decode_builtin("apps", "Deployment", &d)
            .unwrap()
            .unwrap_err();
        assert_eq!(path, "spec.replicas");
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn typed_decode_finds_unknown_fields_and_accepts_numeric_quantities() {
        let d = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                       "spec": {"containers": [{"name": "a", "image": "i", "imagePullPolice": "Always",
                                                "resources": {"limits": {"cpu": 1}}}]}});
        let decoded = decode_builtin("", "Pod", &d).unwrap().unwrap();
        assert_eq!(decoded.unknown.len(), 1);
        assert_eq!(
            render_path(&decoded.unknown[0]),
            "spec.containers[0].imagePullPolice"
        );
        let mut pruned = d.clone();
        prune_paths(&mut pruned, &decoded.unknown);
        assert!(
            pruned
                .pointer("/spec/containers/0/imagePullPolice")
                .is_none()
        );
        assert!(pruned.pointer("/spec/containers/0/image").is_some());
    }

    #[test]
    fn names_follow_their_rule() {
        assert!(validate_name(NameRule::Subdomain, "web.example").is_none());
        assert!(validate_name(NameRule::Subdomain, "Web").is_some());
        assert!(validate_name(NameRule::Label, "a.b").is_some());
        assert!(validate_name(NameRule::Rfc1035Label, "1abc").is_some());
        assert!(validate_name(NameRule::PathSegment, "system:view").is_none());
    }
}
