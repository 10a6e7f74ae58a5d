//! Non-apply patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes strategic merge patch.
//!
//! Strategic merge patch merges lists the way the Kubernetes types declare
//! (`patchStrategy: merge` with a `patchMergeKey`) and understands the directives
//! kubectl emits: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`.

use serde_json::{Map, Value};

use crate::schema::{PatchStrategy, Schema};

/// The patch formats of `PATCH` requests other than server-side apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

/// A non-apply patch: its format and body.
#[derive(Debug, Clone, Copy)]
pub struct Patch<'a> {
    /// The format.
    pub kind: PatchType,
    /// The patch document.
    pub body: &'a Value,
}

impl Patch<'_> {
    /// Apply the patch to `doc`; `schema` is used by strategic merge patches.
    pub fn apply_to(&self, doc: &Value, schema: &Schema<'_>) -> Result<Value, String> {
        match self.kind {
            PatchType::Json => json_patch(doc, self.body),
            PatchType::Merge => merge_patch(doc, self.body),
            PatchType::Strategic => strategic_merge_patch(doc, self.body, schema),
        }
    }
}

/// Apply a JSON patch document.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    // applied to a copy that is dropped on error, so json-patch's own undo is not needed;
    // it also panics when an operation it must undo cannot be reversed (a `move` to the
    // root, found by crates/fuzz)
    let mut out = doc.clone();
    json_patch::patch_unsafe(&mut out, &ops).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Apply a JSON merge patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, String> {
    if !patch.is_object() {
        return Err("a merge patch must be a JSON object".into());
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// Apply a strategic merge patch.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &Schema<'_>,
) -> Result<Value, String> {
    let (Some(orig), Some(p)) = (doc.as_object(), patch.as_object()) else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    let mut path = Vec::new();
    Ok(merge_map(orig, p, schema, &mut path)?
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Map::new())))
}

fn merge_map(
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
    schema: &Schema<'_>,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(Some(strip_directives_map(patch))),
        Some("delete") => return Ok(None),
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type {other:?} in map")),
    }
    let mut result = orig.clone();
    if let Some(keys) = patch.get("$retainKeys") {
        let keys: Vec<&str> = keys
            .as_array()
            .ok_or("$retainKeys must be a list")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        result.retain(|k, _| keys.contains(&k.as_str()));
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = pv
                .as_array()
                .ok_or("$deleteFromPrimitiveList must be a list")?;
            if let Some(Value::Array(items)) = result.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = pv.as_array().ok_or("$setElementOrder must be a list")?;
            orders.push((field.to_string(), order.clone()));
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        path.push(k.clone());
        match pv {
            Value::Null => {
                result.shift_remove(k);
            }
            Value::Object(pm) => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                match result.get(k).and_then(Value::as_object) {
                    Some(om) if !schema.is_atomic_map(&refs) => {
                        match merge_map(om, pm, schema, path)? {
                            Some(m) => {
                                result.insert(k.clone(), Value::Object(m));
                            }
                            None => {
                                result.shift_remove(k);
                            }
                        }
                    }
                    _ => {
                        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                            result.shift_remove(k);
                        } else {
                            result.insert(k.clone(), Value::Object(strip_directives_map(pm)));
                        }
                    }
                }
            }
            Value::Array(pa) => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                let orig_items = result
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let merged = match schema.list_info(&refs).patch {
                    PatchStrategy::MergeByKey(key) => {
                        merge_keyed_list(&orig_items, pa, &key, schema, path)?
                    }
                    PatchStrategy::MergeScalars => {
                        let mut out = orig_items;
                        for item in pa {
                            if !out.contains(item) {
                                out.push(item.clone());
                            }
                        }
                        out
                    }
                    PatchStrategy::Replace => pa.iter().map(strip_directives).collect(),
                };
                result.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                result.insert(k.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    for (field, order) in orders {
        if let Some(Value::Array(items)) = result.get_mut(&field) {
            reorder(items, &order);
        }
    }
    Ok(Some(result))
}

fn merge_keyed_list(
    orig: &[Value],
    patch: &[Value],
    key: &str,
    schema: &Schema<'_>,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    if patch.iter().any(|i| {
        i.get("$patch").and_then(Value::as_str) == Some("replace")
            && i.as_object().is_some_and(|m| m.len() == 1)
    }) {
        return Ok(patch
            .iter()
            .filter(|i| !(i.get("$patch").is_some() && i.as_object().is_some_and(|m| m.len() == 1)))
            .map(strip_directives)
            .collect());
    }
    let mut out: Vec<Value> = orig.to_vec();
    for item in patch {
        let Some(pm) = item.as_object() else {
            out.push(item.clone());
            continue;
        };
        let Some(kv) = pm.get(key) else {
            return Err(format!(
                "map in the list at {} does not contain the merge key {key:?}",
                path.join(".")
            ));
        };
        let pos = out.iter().position(|o| o.get(key) == Some(kv));
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            out.retain(|o| o.get(key) != Some(kv));
            continue;
        }
        match pos {
            Some(i) => {
                let om = out[i].as_object().cloned().unwrap_or_default();
                match merge_map(&om, pm, schema, path)? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            None => out.push(Value::Object(strip_directives_map(pm))),
        }
    }
    Ok(out)
}

fn reorder(items: &mut Vec<Value>, order: &[Value]) {
    let position = |item: &Value| {
        order.iter().position(|o| match o.as_object() {
            // ordered by merge key: every field of the order entry must match
            Some(om) => om.iter().all(|(k, v)| item.get(k) == Some(v)),
            None => o == item,
        })
    };
    let mut indexed: Vec<(usize, usize, Value)> = items
        .drain(..)
        .enumerate()
        .map(|(i, v)| (position(&v).unwrap_or(usize::MAX), i, v))
        .collect();
    indexed.sort_by_key(|(p, i, _)| (*p, *i));
    items.extend(indexed.into_iter().map(|(_, _, v)| v));
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives_map(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn strip_directives_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| (k.clone(), strip_directives(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failing_json_patch_that_moved_the_root_is_an_error_not_a_panic() {
        // found by crates/fuzz: json-patch could not undo the move and panicked
        let doc = json!({"kind": "ConfigMap"});
        let patch = json!([
            {"op": "add", "path": "", "value": ["v1"]},
            {"op": "move", "path": "", "from": "/0"},
            {"op": "remove", "path": ""},
        ]);
        assert!(json_patch(&doc, &patch).is_err());
        let ok = json!([{"op": "add", "path": "/data", "value": {"a": "b"}}]);
        assert_eq!(json_patch(&doc, &ok).unwrap()["data"]["a"], "b");
    }

    fn deploy() -> Schema<'static> {
        Schema::Builtin {
            group: "apps",
            kind: "Deployment",
        }
    }

    fn containers(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
            {"name": "b", "image": "y"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x2", "env": [{"name": "B", "value": "2"}]}]}}}});
        let out = strategic_merge_patch(&doc, &patch, &deploy()).unwrap();
        assert_eq!(containers(&out)[0]["image"], "x2");
        assert_eq!(containers(&out)[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(containers(&out)[1]["name"], "b");
    }

    #[test]
    fn strategic_merge_merges_container_ports_by_container_port() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [
            {"name": "http", "containerPort": 80, "protocol": "TCP"},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [
            {"containerPort": 80, "name": "web"}, {"containerPort": 443, "name": "https"}]}]}}}});
        let out = strategic_merge_patch(&doc, &patch, &deploy()).unwrap();
        assert_eq!(
            containers(&out)[0]["ports"],
            json!([
                {"name": "web", "containerPort": 80, "protocol": "TCP"},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                {"containerPort": 443, "name": "https"},
            ])
        );
        let keyless = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [{"name": "x"}]}]}}}});
        let err = strategic_merge_patch(&doc, &keyless, &deploy()).unwrap_err();
        assert!(err.contains("containerPort"), "{err}");
    }

    #[test]
    fn strategic_merge_merges_volumes_by_name_and_mounts_by_mount_path() {
        let doc = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "logs", "mountPath": "/var/log"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "logs", "emptyDir": {}}]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "volumeMounts": [
                {"mountPath": "/etc/cfg", "readOnly": true}, {"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "cfg", "configMap": {"optional": true}}, {"name": "data", "emptyDir": {}}]}}}});
        let out = strategic_merge_patch(&doc, &patch, &deploy()).unwrap();
        assert_eq!(
            containers(&out)[0]["volumeMounts"],
            json!([
                {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true},
                {"name": "logs", "mountPath": "/var/log"},
                {"name": "data", "mountPath": "/data"},
            ])
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([
                {"name": "cfg", "configMap": {"name": "cfg", "optional": true}},
                {"name": "logs", "emptyDir": {}},
                {"name": "data", "emptyDir": {}},
            ])
        );
    }

    #[test]
    fn strategic_merge_merges_service_ports_by_port() {
        let svc = Schema::Builtin {
            group: "",
            kind: "Service",
        };
        let doc = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"name": "alt", "port": 8000}]}});
        let out = strategic_merge_patch(&doc, &patch, &svc).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
                {"name": "alt", "port": 8000},
            ])
        );
        let delete = json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}]}});
        let out = strategic_merge_patch(&doc, &delete, &svc).unwrap();
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 1);
        assert_eq!(out["spec"]["ports"][0]["port"], 80);
    }

    #[test]
    fn strategic_merge_directives() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let patch = json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}}
        });
        let out = strategic_merge_patch(&doc, &patch, &deploy()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(containers(&out), &json!([{"name": "b", "image": "y"}]));
        let replace = json!({"spec": {"template": {"spec": {"$patch": "replace", "containers": [{"name": "z", "image": "z"}]}}}});
        let out = strategic_merge_patch(&doc, &replace, &deploy()).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"],
            json!({"containers": [{"name": "z", "image": "z"}]})
        );
    }

    #[test]
    fn strategic_merge_set_element_order() {
        let doc =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x"}]}}}});
        let out = strategic_merge_patch(&doc, &patch, &deploy()).unwrap();
        assert_eq!(
            containers(&out),
            &json!([{"name": "b"}, {"name": "a", "image": "x"}])
        );
    }

    #[test]
    fn lists_without_strategy_are_replaced_and_null_deletes() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}}, "x": 1});
        let patch = json!({"x": null, "spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["3"]}]}}}});
        let out = strategic_merge_patch(&doc, &patch, &deploy()).unwrap();
        assert_eq!(containers(&out)[0]["args"], json!(["3"]));
        assert!(out.get("x").is_none());
    }

    #[test]
    fn json_and_merge_patches() {
        let doc = json!({"data": {"a": "1"}});
        let out = json_patch(
            &doc,
            &json!([{"op": "add", "path": "/data/b", "value": "2"}]),
        )
        .unwrap();
        assert_eq!(out["data"]["b"], "2");
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/data/a", "value": "x"}])
            )
            .is_err()
        );
        let out = merge_patch(&doc, &json!({"data": {"a": null, "c": "3"}})).unwrap();
        assert_eq!(out, json!({"data": {"c": "3"}}));
    }
}
