//! Comparing desired and live objects, and showing the difference.
//!
//! Two objects are compared after dropping what the server owns (`status`,
//! `managedFields`, `resourceVersion`, `uid`, `generation`, `creationTimestamp`,
//! `selfLink`) and the fields an Application asked to ignore (JSON pointers per
//! kind/name). Secret values never appear in a diff: each value is replaced by a mask
//! that shows whether it changed, never what it was or is.
//!
//! [`applies_cleanly`] decides, without asking the server, that applying an object
//! would change nothing: every applied field already has that value in the live
//! object, and every field the manager applied before is still applied (so nothing
//! would be removed). Only objects that fail this check need a server-side dry run.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use capstan_core::ObjectRef;

/// Fields to ignore on some objects, as Argo CD's `ignoreDifferences`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreRule {
    /// API group (empty for core); `None` matches any group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind the rule applies to.
    pub kind: String,
    /// Name; `None` matches every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace; `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// RFC 6901 pointers of the fields to ignore, e.g. `/spec/replicas`.
    pub json_pointers: Vec<String>,
}

impl IgnoreRule {
    /// Whether the rule covers `id`.
    pub fn matches(&self, id: &ObjectRef) -> bool {
        self.kind == id.kind
            && self.group.as_ref().is_none_or(|g| *g == id.group)
            && self.name.as_ref().is_none_or(|n| *n == id.name)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| Some(n) == id.namespace.as_ref())
    }
}

/// The pointers to ignore on `id`.
pub fn ignored_pointers<'a>(rules: &'a [IgnoreRule], id: &ObjectRef) -> Vec<&'a str> {
    rules
        .iter()
        .filter(|r| r.matches(id))
        .flat_map(|r| r.json_pointers.iter().map(String::as_str))
        .collect()
}

/// Remove the value at an RFC 6901 pointer, if present.
pub fn remove_pointer(obj: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(obj)
    } else {
        obj.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(m)) => {
            m.shift_remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// An object as compared and shown: server-owned fields and ignored pointers removed.
pub fn comparable(obj: &Value, ignore: &[&str]) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.as_object_mut() {
        m.remove("status");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for f in SERVER_METADATA {
                meta.remove(*f);
            }
            if meta
                .get("annotations")
                .is_some_and(|a| a.as_object().is_some_and(Map::is_empty))
            {
                meta.remove("annotations");
            }
        }
    }
    for p in ignore {
        remove_pointer(&mut out, p);
    }
    out
}

/// Whether two objects are the same once compared as [`comparable`].
pub fn semantically_equal(live: &Value, desired: &Value, ignore: &[&str]) -> bool {
    values_equal(&comparable(live, ignore), &comparable(desired, ignore))
}

/// JSON equality that treats `1` and `1.0` as equal.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| values_equal(v, w))
        }
        _ => a == b,
    }
}

const MASK: &str = "++++++++";

fn is_secret(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("Secret")
        && obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

/// Mask the values of a pair of Secrets (live, desired) so a diff shows which keys
/// were added, removed or changed, and nothing else. Other kinds are left alone.
pub fn mask_secrets(live: &mut Option<Value>, desired: &mut Option<Value>) {
    let secret = live.as_ref().is_some_and(is_secret) || desired.as_ref().is_some_and(is_secret);
    if !secret {
        return;
    }
    let values = |o: &Option<Value>| -> Map<String, Value> {
        let mut all = Map::new();
        if let Some(o) = o {
            for field in ["data", "stringData"] {
                if let Some(m) = o.get(field).and_then(Value::as_object) {
                    for (k, v) in m {
                        all.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        all
    };
    let (before, after) = (values(live), values(desired));
    let mask_one = |obj: &mut Option<Value>, side_is_desired: bool| {
        let Some(o) = obj.as_mut() else { return };
        for field in ["data", "stringData"] {
            if let Some(Value::Object(m)) = o.get_mut(field) {
                for (k, v) in m.iter_mut() {
                    let changed = match (before.get(k), after.get(k)) {
                        (Some(b), Some(a)) => b != a,
                        _ => true,
                    };
                    *v = Value::String(if changed && side_is_desired {
                        format!("{MASK} (changed)")
                    } else {
                        MASK.to_string()
                    });
                }
            }
        }
        if let Some(Value::Object(ann)) = o.pointer_mut("/metadata/annotations") {
            // kubectl's client-side apply copies the whole Secret into this annotation.
            if ann.contains_key("kubectl.kubernetes.io/last-applied-configuration") {
                ann.insert(
                    "kubectl.kubernetes.io/last-applied-configuration".into(),
                    Value::String(MASK.into()),
                );
            }
        }
    };
    mask_one(live, false);
    mask_one(desired, true);
}

/// YAML of an object for display.
pub fn to_yaml(obj: &Value) -> String {
    serde_saphyr::to_string(obj)
        .unwrap_or_else(|_| serde_json::to_string_pretty(obj).unwrap_or_default())
}

/// A unified diff between the live and desired object (either may be absent), with
/// server fields dropped, ignored pointers removed and secret values masked.
pub fn unified(
    id: &ObjectRef,
    live: Option<&Value>,
    desired: Option<&Value>,
    ignore: &[&str],
) -> String {
    unified_between(id, live, desired, ignore, ("live", "desired"))
}

/// [`unified`] with the two sides labelled (e.g. by revision).
pub fn unified_between(
    id: &ObjectRef,
    old: Option<&Value>,
    new: Option<&Value>,
    ignore: &[&str],
    labels: (&str, &str),
) -> String {
    let mut l = old.map(|v| comparable(v, ignore));
    let mut d = new.map(|v| comparable(v, ignore));
    mask_secrets(&mut l, &mut d);
    let a = l.as_ref().map(to_yaml).unwrap_or_default();
    let b = d.as_ref().map(to_yaml).unwrap_or_default();
    let name = id.to_string();
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{}/{name}", labels.0),
            &format!("{}/{name}", labels.1),
        )
        .to_string()
}

/// Whether `applied` is already entirely present in `live`: every field with an equal
/// value, lists of the same length element by element.
pub fn is_subset(applied: &Value, live: &Value) -> bool {
    match (applied, live) {
        (Value::Object(a), Value::Object(l)) => a
            .iter()
            .all(|(k, v)| v.is_null() || l.get(k).is_some_and(|w| is_subset(v, w))),
        (Value::Array(a), Value::Array(l)) => {
            a.len() == l.len() && a.iter().zip(l).all(|(v, w)| is_subset(v, w))
        }
        _ => values_equal(applied, live),
    }
}

/// Whether every field `manager` owns by apply (per `live`'s managedFields) is still in
/// `applied`. `None` when the manager owns nothing: the object must be applied to be
/// adopted.
pub fn keeps_owned_fields(applied: &Value, live: &Value, manager: &str) -> Option<bool> {
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    let entry = entries.iter().find(|e| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
            && e.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
    })?;
    let fields = entry.get("fieldsV1")?;
    Some(covers(fields, applied))
}

/// Whether every path of a FieldsV1 tree exists in `obj`.
fn covers(fields: &Value, obj: &Value) -> bool {
    covers_item(fields, obj, None)
}

/// [`covers`] for a node that is a keyed list item (`key`): its key fields are implied
/// by the key even when the applied item omits a defaulted one (`protocol: TCP`).
fn covers_item(fields: &Value, obj: &Value, key: Option<&serde_json::Map<String, Value>>) -> bool {
    let Some(map) = fields.as_object() else {
        return true;
    };
    map.iter().all(|(k, sub)| {
        if k == "." {
            return true;
        }
        if let Some(f) = k.strip_prefix("f:") {
            return match obj.get(f) {
                Some(c) => covers_item(sub, c, None),
                None => key.is_some_and(|key| key.contains_key(f)),
            };
        }
        if let Some(key_json) = k.strip_prefix("k:") {
            let Ok(Value::Object(want)) = serde_json::from_str::<Value>(key_json) else {
                return false;
            };
            let item = obj.as_array().and_then(|items| {
                items.iter().find(|item| {
                    want.iter().all(|(wk, wv)| match item.get(wk) {
                        Some(v) => values_equal(v, wv),
                        // keys the server defaults (protocol: TCP) may be absent in the applied object
                        None => wk == "protocol" && wv == "TCP",
                    })
                })
            });
            return item.is_some_and(|item| covers_item(sub, item, Some(&want)));
        }
        let child = if let Some(v) = k.strip_prefix("v:") {
            let Ok(want) = serde_json::from_str::<Value>(v) else {
                return false;
            };
            obj.as_array()
                .and_then(|items| items.iter().find(|i| values_equal(i, &want)))
        } else if let Some(i) = k.strip_prefix("i:") {
            i.parse::<usize>().ok().and_then(|i| obj.get(i))
        } else {
            return false;
        };
        child.is_some_and(|c| covers_item(sub, c, None))
    })
}

/// The applied form of a Secret as the server stores it: `stringData` folded into
/// base64 `data`, so it can be compared with the live object.
pub fn fold_string_data(obj: &Value) -> Value {
    use base64::Engine;
    if !is_secret(obj) || obj.get("stringData").is_none() {
        return obj.clone();
    }
    let mut out = obj.clone();
    if let Some(Value::Object(plain)) = out.as_object_mut().and_then(|m| m.remove("stringData")) {
        let data = out
            .as_object_mut()
            .expect("object")
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(d) = data.as_object_mut() {
            for (k, v) in plain {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                d.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm_ref() -> ObjectRef {
        ObjectRef::new("", "ConfigMap", Some("d"), "c")
    }

    #[test]
    fn server_fields_and_ignored_pointers_do_not_count() {
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "uid": "1", "resourceVersion": "9",
            "generation": 3, "managedFields": []}, "spec": {"replicas": 5}, "status": {"readyReplicas": 5}});
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {"replicas": 2}});
        assert!(!semantically_equal(&live, &desired, &[]));
        assert!(semantically_equal(&live, &desired, &["/spec/replicas"]));
        let rule = IgnoreRule {
            group: Some("apps".into()),
            kind: "Deployment".into(),
            json_pointers: vec!["/spec/replicas".into()],
            ..Default::default()
        };
        let id = ObjectRef::new("apps", "Deployment", Some("p"), "w");
        assert_eq!(
            ignored_pointers(std::slice::from_ref(&rule), &id),
            ["/spec/replicas"]
        );
        assert!(ignored_pointers(&[rule], &cm_ref()).is_empty());
    }

    #[test]
    fn ignore_rules_match_by_name_and_namespace_when_given() {
        let rule = IgnoreRule {
            kind: "ConfigMap".into(),
            name: Some("c".into()),
            json_pointers: vec!["/data/k".into()],
            ..Default::default()
        };
        let c = cm_ref();
        let other = ObjectRef::new("", "ConfigMap", Some("d"), "other");
        assert_eq!(
            ignored_pointers(std::slice::from_ref(&rule), &c),
            ["/data/k"]
        );
        assert!(
            ignored_pointers(std::slice::from_ref(&rule), &other).is_empty(),
            "another name is compared in full"
        );
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "autoscaled"}});
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "git"}});
        assert!(semantically_equal(
            &live,
            &desired,
            &ignored_pointers(std::slice::from_ref(&rule), &c)
        ));
        assert!(!semantically_equal(
            &live,
            &desired,
            &ignored_pointers(std::slice::from_ref(&rule), &other)
        ));
        let in_prod = IgnoreRule {
            namespace: Some("prod".into()),
            ..rule
        };
        assert!(!in_prod.matches(&c), "namespace d is not prod");
        assert!(in_prod.matches(&ObjectRef::new("", "ConfigMap", Some("prod"), "c")));
        assert!(
            !in_prod.matches(&ObjectRef::new("", "Secret", Some("prod"), "c")),
            "the kind must match too"
        );
    }

    #[test]
    fn secret_diffs_show_which_keys_changed_never_values() {
        let id = ObjectRef::new("", "Secret", Some("d"), "s");
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"user": "YWRh", "password": "b2xk"}});
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"user": "YWRh", "password": "bmV3", "token": "dA=="}});
        let diff = unified(&id, Some(&live), Some(&desired), &[]);
        assert!(
            !diff.contains("b2xk")
                && !diff.contains("bmV3")
                && !diff.contains("YWRh")
                && !diff.contains("dA=="),
            "{diff}"
        );
        assert!(diff.contains("+  password: ++++++++ (changed)"), "{diff}");
        assert!(diff.contains("+  token: ++++++++ (changed)"), "{diff}");
        assert!(
            !diff.contains("+  user"),
            "unchanged keys show no change: {diff}"
        );
    }

    #[test]
    fn subset_and_ownership_decide_what_needs_no_dry_run() {
        let live = json!({"metadata": {"name": "c", "labels": {"a": "1", "x": "y"}, "managedFields": [
            {"manager": "capstan", "operation": "Apply", "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:k": {}}}}]},
            "data": {"k": "v", "other": "z"}});
        let applied = json!({"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}});
        assert!(is_subset(&applied, &live));
        assert_eq!(keeps_owned_fields(&applied, &live, "capstan"), Some(true));
        let dropped_label = json!({"metadata": {"name": "c"}, "data": {"k": "v"}});
        assert_eq!(
            keeps_owned_fields(&dropped_label, &live, "capstan"),
            Some(false),
            "a removal needs an apply"
        );
        assert_eq!(keeps_owned_fields(&applied, &live, "someone-else"), None);
        assert!(!is_subset(&json!({"data": {"k": "changed"}}), &live));
        let containers_live = json!({"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}});
        assert!(is_subset(
            &json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
            &containers_live
        ));
        assert!(!is_subset(
            &json!({"spec": {"containers": [{"name": "a", "image": "y"}]}}),
            &containers_live
        ));
    }

    #[test]
    fn string_data_is_folded_like_the_server_does() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"p": "hunter2"}});
        assert_eq!(fold_string_data(&s)["data"]["p"], "aHVudGVyMg==");
    }
}
