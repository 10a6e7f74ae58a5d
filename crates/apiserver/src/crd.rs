//! CustomResourceDefinitions: validating a CRD, turning it into served resources and
//! status, and validating, defaulting and pruning custom resources against the
//! version's `openAPIV3Schema` (types, required, enum, bounds, patterns, nullable,
//! int-or-string, preserve-unknown-fields, embedded resources).
//!
//! Not evaluated: `x-kubernetes-validations` (CEL rules) and conversion webhooks;
//! versions convert by rewriting `apiVersion` (conversion strategy `None`).

use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::error::Cause;
use crate::meta;
use crate::registry::{CustomVersion, NameRule, Origin, ResourceDef};

/// The finalizer kube-apiserver puts on every CRD to delete its objects first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn spec_str<'a>(crd: &'a Value, pointer: &str) -> &'a str {
    crd.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Semantic validation of a CRD object.
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = spec_str(crd, "/spec/group");
    let plural = spec_str(crd, "/spec/names/plural");
    let kind = spec_str(crd, "/spec/names/kind");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') || !crate::validation::is_dns_subdomain(group) {
        causes.push(Cause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    } else if !plural
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        causes.push(Cause::invalid(
            "spec.names.plural",
            &json!(plural),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
        ));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    let expected = format!("{plural}.{group}");
    if !plural.is_empty() && !group.is_empty() && meta::name(crd) != expected {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(meta::name(crd)),
            format!("must be spec.names.plural+\".\"+spec.group ({expected:?})"),
        ));
    }
    match spec_str(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        other => causes.push(Cause::unsupported(
            "spec.scope",
            &json!(other),
            &["Cluster".into(), "Namespaced".into()],
        )),
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    match versions {
        None => causes.push(Cause::required("spec.versions")),
        Some(vs) if vs.is_empty() => causes.push(Cause::required("spec.versions")),
        Some(vs) => {
            let storage = vs
                .iter()
                .filter(|v| v.get("storage") == Some(&json!(true)))
                .count();
            if storage != 1 {
                causes.push(Cause::invalid(
                    "spec.versions",
                    &json!(storage),
                    "must have exactly one version marked as storage version",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, v) in vs.iter().enumerate() {
                let name = v.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    causes.push(Cause::required(format!("spec.versions[{i}].name")));
                } else if !seen.insert(name) {
                    causes.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("spec.versions[{i}].name"),
                        format!("Duplicate value: {name:?}"),
                    ));
                }
                match v.pointer("/schema/openAPIV3Schema") {
                    None => causes.push(Cause::required(format!(
                        "spec.versions[{i}].schema.openAPIV3Schema"
                    ))),
                    Some(s) => {
                        if s.get("type").and_then(Value::as_str) != Some("object") {
                            causes.push(Cause::invalid(
                                format!("spec.versions[{i}].schema.openAPIV3Schema.type"),
                                s.get("type").unwrap_or(&Value::Null),
                                "must be object at the root",
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(old) = old {
        for (field, ptr) in [
            ("spec.group", "/spec/group"),
            ("spec.names.plural", "/spec/names/plural"),
        ] {
            if old.pointer(ptr) != crd.pointer(ptr) {
                causes.push(Cause::immutable(
                    field,
                    crd.pointer(ptr).unwrap_or(&Value::Null),
                ));
            }
        }
    }
    causes
}

/// The status an established CRD has: names accepted, established, stored versions.
pub fn established_status(crd: &Value) -> Value {
    let names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut accepted = names.as_object().cloned().unwrap_or_default();
    let kind = accepted
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    accepted
        .entry("singular")
        .or_insert_with(|| Value::String(kind.to_lowercase()));
    accepted
        .entry("listKind")
        .or_insert_with(|| Value::String(format!("{kind}List")));
    let storage = storage_version(crd);
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !storage.is_empty() && !stored.contains(&json!(storage)) {
        stored.push(json!(storage));
    }
    let now = meta::now_rfc3339();
    let keep_time = |ty: &str| -> String {
        crd.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == ty && c["status"] == "True"))
            .and_then(|c| c.get("lastTransitionTime"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| now.clone())
    };
    json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": keep_time("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": keep_time("Established")},
        ],
        "storedVersions": stored,
    })
}

/// The storage version's name.
pub fn storage_version(crd: &Value) -> String {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v.get("storage") == Some(&json!(true))))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The resources a CRD serves: one per served version.
pub fn resource_defs(crd: &Value) -> Vec<ResourceDef> {
    let group = spec_str(crd, "/spec/group").to_string();
    let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
    let s = |k: &str| {
        names
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let list = |k: &str| -> Vec<String> {
        names
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let kind = s("kind");
    let plural = s("plural");
    let singular = match s("singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let namespaced = spec_str(crd, "/spec/scope") == "Namespaced";
    let storage = storage_version(crd);
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served") != Some(&json!(false)))
        .map(|v| {
            let version = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            ResourceDef {
                group: group.clone(),
                version,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: list("shortNames"),
                categories: list("categories"),
                status_subresource: v.pointer("/subresources/status").is_some(),
                generation: true,
                name_rule: NameRule::Subdomain,
                origin: Origin::Custom(Arc::new(CustomVersion {
                    crd_name: meta::name(crd).to_string(),
                    storage_version: storage.clone(),
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    printer_columns: v
                        .get("additionalPrinterColumns")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                })),
            }
        })
        .collect()
}

/// Insert `default` values of the schema into absent fields.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !m.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = m.get_mut(k) {
                        apply_defaults(ps, child);
                    }
                }
            }
            if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let declared: Vec<String> = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for (k, v) in m.iter_mut() {
                    if !declared.contains(k) {
                        apply_defaults(ap, v);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for item in items {
                    apply_defaults(is, item);
                }
            }
        }
        _ => {}
    }
}

/// Remove fields the schema does not declare; returns their paths (`spec.foo`).
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(schema, obj, "", true, &mut pruned);
    pruned
}

fn child_path(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

fn prune_node(schema: &Value, v: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
        && schema.get("properties").is_none()
    {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&json!(true));
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let always =
                    (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                if always {
                    if k == "metadata" && root {
                        continue;
                    }
                    if let (Some(ps), Some(child)) = (props.and_then(|p| p.get(&k)), m.get_mut(&k))
                        && k != "metadata"
                    {
                        prune_node(ps, child, &child_path(path, &k), false, pruned);
                    }
                    continue;
                }
                match props.and_then(|p| p.get(&k)) {
                    Some(ps) => {
                        let child = m.get_mut(&k).expect("key exists");
                        prune_node(ps, child, &child_path(path, &k), false, pruned);
                    }
                    None => match additional {
                        Some(ap) if ap.is_object() => {
                            let child = m.get_mut(&k).expect("key exists");
                            prune_node(ap, child, &child_path(path, &k), false, pruned);
                        }
                        Some(Value::Bool(true)) => {}
                        _ if preserve => {}
                        _ => {
                            m.shift_remove(&k);
                            pruned.push(child_path(path, &k));
                        }
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(is, item, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Drop `null` values of fields that are not `nullable` (as kube-apiserver does before defaulting).
pub fn drop_nulls(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            m.retain(|k, child| {
                let s = props.and_then(|p| p.get(k)).or(additional);
                !(child.is_null() && s.is_some_and(|s| s.get("nullable") != Some(&json!(true))))
            });
            for (k, child) in m.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    drop_nulls(s, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for item in items {
                    drop_nulls(is, item);
                }
            }
        }
        _ => {}
    }
}

/// Validate an object against the schema; every violation becomes a cause naming its field.
pub fn validate_object(schema: &Value, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(m) = obj.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in m {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(ps) = props.and_then(|p| p.get(k)) {
                validate_node(ps, v, k, &mut causes);
            }
        }
        check_required(schema, m, "", &mut causes);
    }
    causes
}

fn check_required(schema: &Value, m: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                causes.push(Cause::required(child_path(path, r)));
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn validate_node(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if schema.get("nullable") != Some(&json!(true)) {
            causes.push(Cause::invalid(
                path,
                v,
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&json!(true));
    let actual = type_name(v);
    if int_or_string {
        if !matches!(actual, "integer" | "string") {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body must be of type integer or string: {actual:?}"),
            ));
            return;
        }
    } else if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let ok = match want {
            "number" => matches!(actual, "number" | "integer"),
            "integer" => {
                actual == "integer"
                    || v.as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && actual == "number")
            }
            other => other == actual,
        };
        if !ok {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body must be of type {want}: {actual:?}"),
            ));
            return;
        }
    }
    if let Some(enum_values) = schema.get("enum").and_then(Value::as_array)
        && !enum_values.contains(v)
    {
        let supported: Vec<String> = enum_values
            .iter()
            .map(|e| {
                e.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            })
            .collect();
        causes.push(Cause::unsupported(path, v, &supported));
    }
    if let Some(n) = v.as_f64() {
        let exclusive = |k: &str| schema.get(k) == Some(&json!(true));
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && (n < min || (exclusive("exclusiveMinimum") && n == min))
        {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be greater than or equal to {min}"),
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && (n > max || (exclusive("exclusiveMaximum") && n == max))
        {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be less than or equal to {max}"),
            ));
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            causes.push(Cause::new(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match Regex::new(pattern) {
                Ok(re) if !re.is_match(s) => {
                    causes.push(Cause::invalid(
                        path,
                        v,
                        format!("{path} in body should match '{pattern}'"),
                    ));
                }
                _ => {}
            }
        }
    }
    match v {
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                causes.push(Cause::invalid(
                    path,
                    v,
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                causes.push(Cause::new(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_node(is, item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(m) => {
            let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&json!(true));
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                if embedded
                    && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    && props.is_none_or(|p| !p.contains_key(k))
                {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    validate_node(s, child, &child_path(path, k), causes)
                }
            }
            check_required(schema, m, path, causes);
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && m.len() as u64 > max
            {
                causes.push(Cause::new(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", m.len()),
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
        "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "default": 3},
            "color": {"type": "string", "enum": ["red", "blue"]},
            "port": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "items": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "mode": {"type": "string", "default": "fast"}
        }}}})
    }

    #[test]
    fn types_enums_and_required_name_the_field() {
        let obj = json!({"spec": {"size": "big", "color": "green", "tags": [1]}});
        let causes = validate_object(&schema(), &obj);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"spec.size"), "{causes:?}");
        assert!(fields.contains(&"spec.color"));
        assert!(fields.contains(&"spec.tags[0]"));
        let missing = validate_object(&schema(), &json!({"spec": {}}));
        assert_eq!(missing[0].field, "spec.size");
        assert_eq!(missing[0].reason, "FieldValueRequired");
        assert!(
            validate_object(&schema(), &json!({"spec": {"size": 0}}))[0]
                .message
                .contains("greater than or equal to 1")
        );
        assert!(validate_object(&schema(), &json!({"spec": {"size": 2, "port": 80}})).is_empty());
        assert!(
            validate_object(&schema(), &json!({"spec": {"size": 2, "port": "http"}})).is_empty()
        );
    }

    #[test]
    fn defaults_and_pruning() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
                             "spec": {"unknown": 1, "free": {"any": {"thing": 1}}, "labels": {"a": "b"}}, "extra": true});
        let pruned = prune(&schema(), &mut obj);
        assert_eq!(
            pruned,
            vec!["spec.unknown".to_string(), "extra".to_string()]
        );
        apply_defaults(&schema(), &mut obj);
        assert_eq!(obj["spec"]["size"], 3);
        assert_eq!(obj["spec"]["mode"], "fast");
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(obj["metadata"]["name"], "a");
    }

    #[test]
    fn crd_must_be_named_plural_dot_group_with_one_storage_version() {
        let crd = json!({"metadata": {"name": "wrong"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        let causes = validate(&crd, None);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"metadata.name"));
        assert!(fields.contains(&"spec.versions"));
    }
}
