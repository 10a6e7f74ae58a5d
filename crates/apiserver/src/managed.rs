//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Every write records which manager set which fields. An ordinary write (create,
//! update, patch) gives its manager ownership of the fields it changed and takes it
//! away from everyone else. An apply merges the applied configuration into the live
//! object, refuses to change fields another manager owns unless forced (listing every
//! conflicting field), and removes fields the manager applied before but no longer
//! applies, unless someone else still owns them.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause, Result};
use crate::fieldset::{FieldSet, PathElement, display_path, item_key, remove_fields, value_at};
use crate::meta;
use crate::registry::GroupResource;
use crate::schema::{ListType, Schema};

/// Which part of an object a write is allowed to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is excluded when the resource has a status subresource.
    Main {
        /// Whether the resource has a `/status` subresource.
        status_subresource: bool,
    },
    /// The `/status` subresource: only `status` is written.
    Status,
}

impl Scope {
    fn subresource(self) -> &'static str {
        match self {
            Scope::Main { .. } => "",
            Scope::Status => "status",
        }
    }
}

/// The kind of write an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or a non-apply patch.
    Update,
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    time: Option<String>,
    subresource: String,
    fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, op: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == op && self.subresource == subresource
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), self.manager.clone().into());
        m.insert(
            "operation".into(),
            match self.operation {
                Operation::Apply => "Apply",
                Operation::Update => "Update",
            }
            .into(),
        );
        m.insert("apiVersion".into(), self.api_version.clone().into());
        if let Some(t) = &self.time {
            m.insert("time".into(), t.clone().into());
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), self.subresource.clone().into());
        }
        Value::Object(m)
    }
}

fn read_entries(obj: Option<&Value>) -> Vec<Entry> {
    let Some(list) = obj
        .and_then(meta::metadata)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let manager = e.get("manager")?.as_str()?.to_string();
            let operation = match e.get("operation")?.as_str()? {
                "Apply" => Operation::Apply,
                _ => Operation::Update,
            };
            let fields = FieldSet::from_fields_v1(e.get("fieldsV1").unwrap_or(&json!({}))).ok()?;
            Some(Entry {
                manager,
                operation,
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                fields,
            })
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_value)
        .collect();
    let m = meta::metadata_mut(obj);
    if list.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), Value::Array(list));
    }
}

/// The server-owned metadata fields nobody manages.
const UNMANAGED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The part of an object whose fields are tracked for a write in `scope`.
fn tracked(obj: &Value, scope: Scope) -> Value {
    let Some(map) = obj.as_object() else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in map {
        match (k.as_str(), scope) {
            ("apiVersion" | "kind", _) => {}
            ("status", Scope::Status) => {
                out.insert(k.clone(), v.clone());
            }
            (_, Scope::Status) => {}
            (
                "status",
                Scope::Main {
                    status_subresource: true,
                },
            ) => {}
            ("metadata", _) => {
                if let Some(m) = v.as_object() {
                    let kept: Map<String, Value> = m
                        .iter()
                        .filter(|(k, _)| !UNMANAGED_META.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if !kept.is_empty() {
                        out.insert(k.clone(), Value::Object(kept));
                    }
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Fill in defaulted key fields of keyed list items (e.g. `protocol: TCP` on ports), so
/// items are identified the same way in applied configurations and stored objects.
pub fn fill_key_defaults(obj: &mut Value, schema: &Schema<'_>) {
    let mut path = Vec::new();
    fill_map(obj, schema, &mut path);
}

fn fill_map(v: &mut Value, schema: &Schema<'_>, path: &mut Vec<String>) {
    let Some(map) = v.as_object_mut() else {
        return;
    };
    for (k, child) in map.iter_mut() {
        path.push(k.clone());
        match child {
            Value::Object(_) => fill_map(child, schema, path),
            Value::Array(items) => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                if let ListType::Map(keys) = schema.list_info(&refs).list_type {
                    for item in items.iter_mut() {
                        if let Some(obj) = item.as_object_mut() {
                            for key in &keys {
                                if obj.get(key).is_none_or(Value::is_null)
                                    && let Some(d) = schema.key_default(&refs, key)
                                {
                                    obj.insert(key.clone(), d);
                                }
                            }
                        }
                    }
                }
                for item in items.iter_mut() {
                    fill_map(item, schema, path);
                }
            }
            _ => {}
        }
        path.pop();
    }
}

fn is_item(path: &[PathElement]) -> bool {
    matches!(
        path.last(),
        Some(PathElement::Key(_) | PathElement::Value(_))
    )
}

/// Fields of `new` that differ from `old`: changed or added leaves, and added list items.
fn changed_fields(old: &Value, new: &Value, new_set: &FieldSet) -> FieldSet {
    let mut changed = FieldSet::default();
    for p in new_set.paths() {
        let before = value_at(old, &p);
        let differs = if is_item(&p) {
            before.is_none()
        } else {
            before != value_at(new, &p)
        };
        if differs {
            changed.insert(&p);
        }
    }
    changed
}

/// What one write is: who makes it, through which version, touching which part.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// `apiVersion` of the request.
    pub api_version: &'a str,
    /// Main resource or status subresource.
    pub scope: Scope,
    /// How lists and maps merge.
    pub schema: Schema<'a>,
}

/// Record an ordinary write (create, update or non-apply patch) in `new`'s managedFields.
///
/// `old` is the stored object (None on create). Managed fields sent by the client are
/// honoured only when they differ from the stored ones (to allow resetting ownership).
pub fn track_update(old: Option<&Value>, new: &mut Value, w: &Writer<'_>, now: &str) {
    let sent = new
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .filter(|mf| mf.as_array().is_some_and(|a| !a.is_empty()))
        .cloned();
    let stored = old
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("managedFields"))
        .cloned();
    let mut entries = match sent {
        Some(mf) if Some(&mf) != stored.as_ref() => {
            let mut holder = json!({"metadata": {"managedFields": mf}});
            // `[{}]` resets ownership: entries without a manager are dropped.
            let parsed = read_entries(Some(&holder));
            holder.take();
            parsed
        }
        _ => read_entries(old),
    };
    let empty = json!({});
    let old_view = old
        .map(|o| tracked(o, w.scope))
        .unwrap_or_else(|| empty.clone());
    let new_view = tracked(new, w.scope);
    let old_set = FieldSet::of_object(&old_view, &w.schema);
    let new_set = FieldSet::of_object(&new_view, &w.schema);
    let changed = changed_fields(&old_view, &new_view, &new_set);
    let removed = old_set.difference(&new_set);
    let sub = w.scope.subresource();
    for e in entries.iter_mut() {
        e.fields = e.fields.difference(&removed);
        if !e.is(w.manager, Operation::Update, sub) {
            e.fields = e.fields.difference(&changed);
        }
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is(w.manager, Operation::Update, sub))
        {
            Some(e) => {
                e.fields = e.fields.union(&changed);
                e.time = Some(now.to_string());
                e.api_version = w.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: w.manager.to_string(),
                operation: Operation::Update,
                api_version: w.api_version.to_string(),
                time: Some(now.to_string()),
                subresource: sub.to_string(),
                fields: changed,
            }),
        }
    }
    write_entries(new, &entries);
}

/// Merge an applied configuration into the live object (or create it from nothing).
///
/// Returns the new object with its managedFields, or a 409 Conflict listing the fields
/// other managers own with a different value (unless `force`).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    w: &Writer<'_>,
    force: bool,
    (gr, name): (&GroupResource, &str),
    now: &str,
) -> Result<Value> {
    // Defaulted key fields (a port's `protocol`) identify list items but are not owned
    // by the applier unless it applied them, as in kube-apiserver.
    let config = tracked(config, w.scope);
    let applied_set = FieldSet::of_object(&config, &w.schema);
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut merged = base.clone();
    let mut path = Vec::new();
    merge_into(&mut merged, &config, &w.schema, &mut path);

    let sub = w.scope.subresource();
    let mut entries = read_entries(live);
    let live_view = tracked(&base, w.scope);
    let merged_view = tracked(&merged, w.scope);
    let mut causes = Vec::new();
    let mut conflicts: Vec<(usize, Vec<PathElement>)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.is(w.manager, Operation::Apply, sub) {
            continue;
        }
        for p in e.fields.intersection(&applied_set).paths() {
            if is_item(&p) {
                continue;
            }
            if value_at(&live_view, &p) != value_at(&merged_view, &p) {
                causes.push(Cause::new(
                    "FieldManagerConflict",
                    display_path(&p),
                    format!("conflict with {:?} using {}", e.manager, e.api_version),
                ));
                conflicts.push((i, p));
            }
        }
    }
    if !causes.is_empty() && !force {
        return Err(ApiError::apply_conflict(gr, name, causes));
    }
    for (i, p) in conflicts {
        entries[i].fields.remove_prefix(&p);
    }

    let own_idx = entries
        .iter()
        .position(|e| e.is(w.manager, Operation::Apply, sub));
    let previous = own_idx
        .map(|i| entries[i].fields.clone())
        .unwrap_or_default();
    let others = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != own_idx)
        .fold(FieldSet::default(), |acc, (_, e)| acc.union(&e.fields));
    let keep = applied_set.union(&others);
    let to_remove = previous.difference(&keep);
    if !to_remove.is_empty() {
        remove_fields(&mut merged, &to_remove, &keep);
    }

    let object_changed = merged != base;
    match own_idx {
        Some(i) => {
            if entries[i].fields != applied_set || object_changed {
                entries[i].time = Some(now.to_string());
            }
            entries[i].fields = applied_set;
            entries[i].api_version = w.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: w.manager.to_string(),
            operation: Operation::Apply,
            api_version: w.api_version.to_string(),
            time: Some(now.to_string()),
            subresource: sub.to_string(),
            fields: applied_set,
        }),
    }
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Merge `applied` into `target` in place: maps field by field, keyed lists item by
/// item, sets by union, everything else replaced. `null` removes a field.
fn merge_into(target: &mut Value, applied: &Value, schema: &Schema<'_>, path: &mut Vec<String>) {
    let refs: Vec<String> = path.clone();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) if !schema.is_atomic_map(&refs) || refs.is_empty() => {
            for (k, av) in a {
                if av.is_null() {
                    t.shift_remove(k);
                    continue;
                }
                path.push(k.clone());
                match t.get_mut(k) {
                    Some(tv) => merge_into(tv, av, schema, path),
                    None => {
                        t.insert(k.clone(), strip_nulls(av));
                    }
                }
                path.pop();
            }
            return;
        }
        _ => {}
    }
    if let (Some(t), Some(a)) = (target.as_array_mut(), applied.as_array()) {
        match schema.list_info(&refs).list_type {
            ListType::Set => {
                for item in a {
                    if !t.contains(item) {
                        t.push(item.clone());
                    }
                }
                return;
            }
            ListType::Map(keys) => {
                let key_of = |v: &Value| {
                    v.as_object()
                        .and_then(|o| item_key(o, &keys, schema, &refs))
                };
                if a.iter().all(|i| key_of(i).is_some()) && t.iter().all(|i| key_of(i).is_some()) {
                    for item in a {
                        let k = key_of(item);
                        match t.iter_mut().find(|ti| key_of(ti) == k) {
                            Some(ti) => merge_into(ti, item, schema, path),
                            None => t.push(strip_nulls(item)),
                        }
                    }
                    return;
                }
            }
            ListType::Atomic => {}
        }
    }
    *target = strip_nulls(applied);
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            scope: Scope::Main {
                status_subresource: false,
            },
            schema: Schema::Builtin {
                group: "",
                kind: "ConfigMap",
            },
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": data})
    }

    fn gr() -> GroupResource {
        GroupResource::new("", "configmaps")
    }

    #[test]
    fn reapply_without_a_field_removes_it() {
        let first = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            &writer("capstan"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        let second = apply(
            Some(&first),
            &cm(json!({"a": "1"})),
            &writer("capstan"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
    }

    #[test]
    fn field_owned_by_another_manager_conflicts_unless_forced() {
        let first = apply(
            None,
            &cm(json!({"a": "1"})),
            &writer("kubectl"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        let err = apply(
            Some(&first),
            &cm(json!({"a": "2"})),
            &writer("other"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        let causes = &err.details.as_ref().unwrap().causes;
        assert_eq!(causes[0].field, ".data.a");
        assert!(causes[0].message.contains("\"kubectl\""));
        // same value: shared ownership, no conflict
        let shared = apply(
            Some(&first),
            &cm(json!({"a": "1"})),
            &writer("other"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        assert_eq!(
            shared["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // forced: the other manager loses the field
        let forced = apply(
            Some(&first),
            &cm(json!({"a": "2"})),
            &writer("other"),
            true,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        assert_eq!(forced["data"]["a"], "2");
        let mf = forced["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1);
        assert_eq!(mf[0]["manager"], "other");
    }

    #[test]
    fn field_still_owned_by_another_manager_survives_removal() {
        let first = apply(
            None,
            &cm(json!({"a": "1"})),
            &writer("one"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        let both = apply(
            Some(&first),
            &cm(json!({"a": "1"})),
            &writer("two"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        let after = apply(
            Some(&both),
            &cm(json!({})),
            &writer("one"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        assert_eq!(after["data"], json!({"a": "1"}));
    }

    #[test]
    fn update_takes_ownership_of_changed_fields() {
        let first = apply(
            None,
            &cm(json!({"a": "1", "b": "1"})),
            &writer("capstan"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap();
        let mut edited = first.clone();
        edited["data"]["a"] = json!("9");
        track_update(Some(&first), &mut edited, &writer("kubectl-edit"), NOW);
        let mf = edited["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 2);
        let edit = mf.iter().find(|e| e["manager"] == "kubectl-edit").unwrap();
        assert_eq!(edit["operation"], "Update");
        assert_eq!(edit["fieldsV1"], json!({"f:data": {"f:a": {}}}));
        // re-applying the old value now conflicts with the editor
        let err = apply(
            Some(&edited),
            &cm(json!({"a": "1", "b": "1"})),
            &writer("capstan"),
            false,
            (&gr(), "c"),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
    }

    #[test]
    fn keyed_lists_merge_by_key_and_drop_unapplied_items() {
        let w = Writer {
            manager: "capstan",
            api_version: "apps/v1",
            scope: Scope::Main {
                status_subresource: true,
            },
            schema: Schema::Builtin {
                group: "apps",
                kind: "Deployment",
            },
        };
        let d = |containers: Value| json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": containers}}}});
        let gr = GroupResource::new("apps", "deployments");
        let first = apply(
            None,
            &d(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])),
            &w,
            false,
            (&gr, "d"),
            NOW,
        )
        .unwrap();
        let second = apply(
            Some(&first),
            &d(json!([{"name": "b", "image": "z"}])),
            &w,
            false,
            (&gr, "d"),
            NOW,
        )
        .unwrap();
        assert_eq!(
            second["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "z"}])
        );
    }

    #[test]
    fn status_is_ignored_on_main_resource_with_status_subresource() {
        let w = Writer {
            manager: "m",
            api_version: "apps/v1",
            scope: Scope::Main {
                status_subresource: true,
            },
            schema: Schema::Builtin {
                group: "apps",
                kind: "Deployment",
            },
        };
        let gr = GroupResource::new("apps", "deployments");
        let out = apply(
            None,
            &json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 5}}),
            &w,
            false,
            (&gr, "d"),
            NOW,
        )
        .unwrap();
        assert!(out.get("status").is_none());
    }
}
