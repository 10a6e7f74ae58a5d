//! Sets of field paths, the `FieldsV1` format of `metadata.managedFields`.
//!
//! A path is a sequence of [`PathElement`]s: an object field (`f:name`), an item of a
//! keyed list (`k:{"name":"web"}`), an item of a set (`v:"x"`) or a positional item
//! (`i:3`). A [`FieldSet`] is a tree of such elements where a node may itself be a
//! member (a leaf the manager owns) and also have children (fields under it that are
//! owned). Encoded, a member with children carries a `"."` entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::schema::{ListType, Schema};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// An object field, `f:<name>`.
    Field(String),
    /// An item of an associative list, `k:<json object of key fields>` (keys sorted).
    Key(String),
    /// An item of a set, `v:<json value>`.
    Value(String),
    /// A positional list item, `i:<index>`.
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Result<Self, String> {
        let (tag, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid field path element {s:?}"))?;
        match tag {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid key in field path element {s:?}: {e}"))?;
                Ok(PathElement::Key(canonical(&v)))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid value in field path element {s:?}: {e}"))?;
                Ok(PathElement::Value(canonical(&v)))
            }
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid index in field path element {s:?}")),
            _ => Err(format!("unknown field path element {s:?}")),
        }
    }

    /// Find the item or field this element names inside `value`.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        match self {
            PathElement::Field(f) => value.as_object()?.get(f),
            PathElement::Index(i) => value.as_array()?.get(*i),
            PathElement::Key(_) | PathElement::Value(_) => {
                let idx = self.position(value.as_array()?)?;
                value.as_array()?.get(idx)
            }
        }
    }

    /// Mutable version of [`PathElement::get`].
    pub fn get_mut<'a>(&self, value: &'a mut Value) -> Option<&'a mut Value> {
        match self {
            PathElement::Field(f) => value.as_object_mut()?.get_mut(f),
            PathElement::Index(i) => value.as_array_mut()?.get_mut(*i),
            PathElement::Key(_) | PathElement::Value(_) => {
                let idx = self.position(value.as_array()?)?;
                value.as_array_mut()?.get_mut(idx)
            }
        }
    }

    /// Remove what this element names from `value`; true if something was removed.
    pub fn remove(&self, value: &mut Value) -> bool {
        match self {
            PathElement::Field(f) => value
                .as_object_mut()
                .is_some_and(|m| m.shift_remove(f).is_some()),
            PathElement::Index(i) => match value.as_array_mut() {
                Some(a) if *i < a.len() => {
                    a.remove(*i);
                    true
                }
                _ => false,
            },
            PathElement::Key(_) | PathElement::Value(_) => {
                let Some(idx) = value.as_array().and_then(|a| self.position(a)) else {
                    return false;
                };
                value.as_array_mut().expect("array").remove(idx);
                true
            }
        }
    }

    fn position(&self, items: &[Value]) -> Option<usize> {
        match self {
            PathElement::Key(k) => {
                let key: Value = serde_json::from_str(k).ok()?;
                let key = key.as_object()?;
                items.iter().position(|item| {
                    key.iter()
                        .all(|(kf, kv)| item.get(kf).unwrap_or(&Value::Null) == kv)
                })
            }
            PathElement::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                items.iter().position(|item| *item == want)
            }
            _ => None,
        }
    }
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Index(i) => write!(f, "[{i}]"),
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Key(k) => {
                let parsed: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                write!(f, "[{}]", parts.join(","))
            }
        }
    }
}

/// Render a path as kube-apiserver does in conflict messages: `.spec.containers[name="web"].image`.
pub fn display_path(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// JSON with object keys sorted, so equal keys encode equally.
pub fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sort(v)).unwrap_or_default()
}

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// True when the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Add a path as a member.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether a path is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// The subtree under one element.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Whether anything at or below `path` is in the set.
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        match path {
            [] => !self.is_empty(),
            [first, rest @ ..] => {
                (rest.is_empty() && self.members.contains(first))
                    || self.children.get(first).is_some_and(|c| c.has_prefix(rest))
            }
        }
    }

    /// Remove the subtree (member and children) at `path`.
    pub fn remove_prefix(&mut self, path: &[PathElement]) {
        match path {
            [] => {
                *self = FieldSet::default();
            }
            [last] => {
                self.members.remove(last);
                self.children.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(c) = self.children.get_mut(first) {
                    c.remove_prefix(rest);
                    if c.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Set union.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                children.insert(pe.clone(), d);
            }
        }
        FieldSet { members, children }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    children.insert(pe.clone(), i);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Every member path, depth-first.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        let mut names: BTreeSet<&PathElement> = self.members.iter().collect();
        names.extend(self.children.keys());
        for pe in names {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// Encode as `fieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        let mut names: BTreeSet<&PathElement> = self.members.iter().collect();
        names.extend(
            self.children
                .keys()
                .filter(|k| !self.children[*k].is_empty()),
        );
        for pe in names {
            let mut node = match self.children.get(pe) {
                Some(c) if !c.is_empty() => c.to_fields_v1(),
                _ => Value::Object(Map::new()),
            };
            if self.members.contains(pe) && node.as_object().is_some_and(|m| !m.is_empty()) {
                let mut with_dot = Map::new();
                with_dot.insert(".".into(), Value::Object(Map::new()));
                with_dot.extend(node.as_object().cloned().unwrap_or_default());
                node = Value::Object(with_dot);
            }
            out.insert(pe.encode(), node);
        }
        Value::Object(out)
    }

    /// Decode `fieldsV1`.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let map = v
            .as_object()
            .ok_or_else(|| "fieldsV1 must be an object".to_string())?;
        let mut set = FieldSet::default();
        for (k, child) in map {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k)?;
            let child_map = child
                .as_object()
                .ok_or_else(|| format!("fieldsV1 entry {k:?} must be an object"))?;
            if child_map.is_empty() || child_map.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let sub = FieldSet::from_fields_v1(child)?;
            if !sub.is_empty() {
                set.children.insert(pe, sub);
            }
        }
        Ok(set)
    }

    /// The fields present in an object, using `schema` to decide how lists are identified.
    pub fn of_object(obj: &Value, schema: &Schema<'_>) -> FieldSet {
        let mut path = Vec::new();
        match obj.as_object() {
            Some(m) => walk_map(m, schema, &mut path),
            None => FieldSet::default(),
        }
    }
}

fn walk_map(map: &Map<String, Value>, schema: &Schema<'_>, path: &mut Vec<String>) -> FieldSet {
    let mut set = FieldSet::default();
    for (k, v) in map {
        path.push(k.clone());
        let pe = PathElement::Field(k.clone());
        match v {
            Value::Null => {}
            Value::Object(m) => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                if m.is_empty() || schema.is_atomic_map(&refs) {
                    set.members.insert(pe);
                } else {
                    let child = walk_map(m, schema, path);
                    if child.is_empty() {
                        set.members.insert(pe);
                    } else {
                        set.children.insert(pe, child);
                    }
                }
            }
            Value::Array(items) => match walk_list(items, schema, path) {
                Some(child) if !child.is_empty() => {
                    set.children.insert(pe, child);
                }
                _ => {
                    set.members.insert(pe);
                }
            },
            _ => {
                set.members.insert(pe);
            }
        }
        path.pop();
    }
    set
}

/// The set of a granular list, or `None` when the list is owned as one value.
fn walk_list(items: &[Value], schema: &Schema<'_>, path: &mut Vec<String>) -> Option<FieldSet> {
    let owned = path.clone();
    let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut set = FieldSet::default();
    match schema.list_info(&refs).list_type {
        ListType::Atomic => return None,
        ListType::Set => {
            for item in items {
                if item.is_object() || item.is_array() {
                    return None;
                }
                set.members.insert(PathElement::Value(canonical(item)));
            }
        }
        ListType::Map(keys) => {
            for item in items {
                let obj = item.as_object()?;
                let pe = PathElement::Key(item_key(obj, &keys, schema, &refs)?);
                if set.members.contains(&pe) {
                    // duplicate keys: the list cannot be granular
                    return None;
                }
                set.members.insert(pe.clone());
                let child = walk_map(obj, schema, path);
                if !child.is_empty() {
                    set.children.insert(pe, child);
                }
            }
        }
    }
    Some(set)
}

/// The canonical key of a list-map item; `None` when a key field without default is missing.
pub fn item_key(
    item: &Map<String, Value>,
    keys: &[String],
    schema: &Schema<'_>,
    list_path: &[&str],
) -> Option<String> {
    let mut key = Map::new();
    for k in keys {
        let v = match item.get(k) {
            Some(v) if !v.is_null() => v.clone(),
            _ => schema.key_default(list_path, k)?,
        };
        key.insert(k.clone(), v);
    }
    Some(canonical(&Value::Object(key)))
}

/// The value at a path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, pe| pe.get(cur))
}

/// Remove the members of `remove` from `obj`, except where `keep` still owns something
/// beneath them. Objects emptied by the removal are removed too, unless `keep` owns them.
pub fn remove_fields(obj: &mut Value, remove: &FieldSet, keep: &FieldSet) {
    for pe in &remove.members {
        let kept_below = keep.children.get(pe).is_some_and(|c| !c.is_empty());
        if !kept_below && !keep.members.contains(pe) {
            pe.remove(obj);
        }
    }
    let empty = FieldSet::default();
    for (pe, sub) in &remove.children {
        let keep_sub = keep.children.get(pe).unwrap_or(&empty);
        let mut emptied = false;
        if let Some(child) = pe.get_mut(obj) {
            let before = !is_empty_container(child);
            remove_fields(child, sub, keep_sub);
            emptied = before && is_empty_container(child) && child.is_object();
        }
        if emptied && !keep.members.contains(pe) && keep_sub.is_empty() {
            pe.remove(obj);
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy_schema() -> Schema<'static> {
        Schema::Builtin {
            group: "apps",
            kind: "Deployment",
        }
    }

    #[test]
    fn fields_v1_round_trip_matches_kube_encoding() {
        let obj = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 2, "template": {"spec": {
            "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}});
        let set = FieldSet::of_object(&obj, &deploy_schema());
        let enc = set.to_fields_v1();
        assert_eq!(enc["f:spec"]["f:replicas"], json!({}));
        let item = &enc["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(item["."], json!({}));
        assert_eq!(item["f:image"], json!({}));
        assert!(item["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"].is_object());
        assert_eq!(FieldSet::from_fields_v1(&enc).unwrap(), set);
    }

    #[test]
    fn set_algebra() {
        let a = FieldSet::of_object(&json!({"a": 1, "b": {"c": 1, "d": 2}}), &deploy_schema());
        let b = FieldSet::of_object(&json!({"b": {"d": 3}}), &deploy_schema());
        let diff = a.difference(&b);
        assert!(diff.contains(&[PathElement::Field("a".into())]));
        assert!(!diff.contains(&[
            PathElement::Field("b".into()),
            PathElement::Field("d".into())
        ]));
        let inter = a.intersection(&b);
        assert_eq!(inter.paths().len(), 1);
        assert_eq!(a.union(&b), a);
    }

    #[test]
    fn remove_fields_keeps_what_others_own_and_drops_emptied_maps() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let s = deploy_schema();
        let remove =
            FieldSet::of_object(&json!({"metadata": {"labels": {"a": "1", "b": "2"}}}), &s);
        let keep = FieldSet::of_object(&json!({"metadata": {"labels": {"b": "2"}}}), &s);
        remove_fields(&mut obj, &remove.difference(&keep), &keep);
        assert_eq!(
            obj,
            json!({"metadata": {"labels": {"b": "2"}}, "data": {"x": "1"}})
        );
        remove_fields(&mut obj, &keep, &FieldSet::default());
        assert_eq!(obj, json!({"data": {"x": "1"}}));
    }

    #[test]
    fn display_path_like_structured_merge_diff() {
        let p = vec![
            PathElement::Field("spec".into()),
            PathElement::Key("{\"name\":\"web\"}".into()),
            PathElement::Field("image".into()),
        ];
        assert_eq!(display_path(&p), ".spec[name=\"web\"].image");
    }
}
