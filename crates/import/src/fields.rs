//! Reading an input object field by field, remembering which fields were used, so that
//! every field left over is named in a warning: nothing is dropped silently.
//!
//! A converter reads through a [`Doc`]: each read marks the field (and everything
//! below it) as handled. [`Doc::finish`] then walks the object and reports every
//! field no read reached — down to the leaves, so the warning says
//! `spec.install.strategy.name`, not just `spec`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::manifest::{Location, Manifest, ObjectId};
use crate::report::{At, ImportError, Warning};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

type Path = Vec<Step>;

/// `spec.sources[1].helm` → steps.
fn parse_path(path: &str) -> Path {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Step::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let close = stripped.find(']').unwrap_or(stripped.len());
                match stripped[..close].parse() {
                    Ok(i) => out.push(Step::Index(i)),
                    Err(_) => out.push(Step::Key(stripped[..close].to_string())),
                }
                rest = stripped.get(close + 1..).unwrap_or_default();
            }
        } else {
            out.push(Step::Key(rest.to_string()));
        }
    }
    out
}

fn show(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn lookup<'v>(mut v: &'v Value, path: &[Step]) -> Option<&'v Value> {
    for step in path {
        v = match step {
            Step::Key(k) => v.get(k)?,
            Step::Index(i) => v.get(*i)?,
        };
    }
    Some(v)
}

/// Fields of every object that carry no configuration: the server fills them in.
const SERVER_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "status",
    "metadata.uid",
    "metadata.resourceVersion",
    "metadata.generation",
    "metadata.creationTimestamp",
    "metadata.deletionTimestamp",
    "metadata.deletionGracePeriodSeconds",
    "metadata.managedFields",
    "metadata.selfLink",
];

/// An input object being read; see the [module documentation](self).
pub(crate) struct Doc<'a> {
    root: &'a Value,
    /// Prepended to every field named in a warning or error (`spec.template` for the
    /// Applications an ApplicationSet's template makes).
    prefix: String,
    location: Location,
    id: ObjectId,
    used: BTreeSet<Path>,
    warnings: Vec<Warning>,
}

impl<'a> Doc<'a> {
    /// Read a manifest.
    pub fn new(manifest: &'a Manifest) -> Doc<'a> {
        Doc::over(
            &manifest.object,
            manifest.location.clone(),
            manifest.id(),
            "",
        )
    }

    /// Read `root`, reporting as the field `prefix` of `id` at `location`.
    pub fn over(root: &'a Value, location: Location, id: ObjectId, prefix: &str) -> Doc<'a> {
        let mut doc = Doc {
            root,
            prefix: prefix.to_string(),
            location,
            id,
            used: BTreeSet::new(),
            warnings: Vec::new(),
        };
        for f in SERVER_FIELDS {
            doc.used.insert(parse_path(f));
        }
        doc
    }

    /// The object read.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The field as named in messages.
    pub fn field(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{path}", self.prefix),
        }
    }

    /// The value at `path`, marked as used (with everything below it).
    pub fn get(&mut self, path: &str) -> Option<&'a Value> {
        let steps = parse_path(path);
        let v = lookup(self.root, &steps)?;
        self.used.insert(steps);
        Some(v).filter(|v| !v.is_null())
    }

    /// The value at `path` without marking it.
    pub fn peek(&self, path: &str) -> Option<&'a Value> {
        lookup(self.root, &parse_path(path)).filter(|v| !v.is_null())
    }

    /// Mark `path` as used without reading it.
    pub fn mark(&mut self, path: &str) {
        self.used.insert(parse_path(path));
    }

    /// The object and where it is, for an error.
    pub fn at(&self) -> Box<At> {
        Box::new(At {
            location: self.location.clone(),
            object: self.id.clone(),
        })
    }

    /// An error about the field at `path`.
    pub fn invalid(&self, path: &str, message: impl Into<String>) -> ImportError {
        ImportError::Invalid {
            at: self.at(),
            field: self.field(path),
            message: message.into(),
        }
    }

    /// A string, when present.
    pub fn str(&mut self, path: &str) -> Result<Option<&'a str>, ImportError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.invalid(path, format!("must be a string, not {}", kind_of(other))))
            }
        }
    }

    /// A string that must be present and not empty.
    pub fn required_str(&mut self, path: &str) -> Result<&'a str, ImportError> {
        match self.str(path)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.invalid(path, "is required")),
        }
    }

    /// A string or a number (Argo CD and Flux accept both in places), as text.
    pub fn text(&mut self, path: &str) -> Result<Option<String>, ImportError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => {
                Err(self.invalid(path, format!("must be a string, not {}", kind_of(other))))
            }
        }
    }

    /// A boolean, when present.
    pub fn bool(&mut self, path: &str) -> Result<Option<bool>, ImportError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(
                path,
                format!("must be true or false, not {}", kind_of(other)),
            )),
        }
    }

    /// An integer, when present.
    pub fn int(&mut self, path: &str) -> Result<Option<i64>, ImportError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
            Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().ok()),
            Some(other) => {
                Err(self.invalid(path, format!("must be an integer, not {}", kind_of(other))))
            }
        }
    }

    /// A list (empty when absent). Its items are not marked: read them by index.
    pub fn list(&mut self, path: &str) -> Result<&'a [Value], ImportError> {
        let steps = parse_path(path);
        match lookup(self.root, &steps) {
            None | Some(Value::Null) => {
                self.used.insert(steps);
                Ok(&[])
            }
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    self.used.insert(steps);
                }
                Ok(items)
            }
            Some(other) => {
                Err(self.invalid(path, format!("must be a list, not {}", kind_of(other))))
            }
        }
    }

    /// A list of strings (empty when absent).
    pub fn strings(&mut self, path: &str) -> Result<Vec<String>, ImportError> {
        let items = self.list(path)?;
        let mut out = Vec::new();
        for i in 0..items.len() {
            if let Some(s) = self.text(&format!("{path}[{i}]"))? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// A mapping, when present. Its fields are not marked.
    pub fn map(&mut self, path: &str) -> Result<Option<&'a Map<String, Value>>, ImportError> {
        let steps = parse_path(path);
        match lookup(self.root, &steps) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => {
                if m.is_empty() {
                    self.used.insert(steps);
                }
                Ok(Some(m))
            }
            Some(other) => {
                Err(self.invalid(path, format!("must be a mapping, not {}", kind_of(other))))
            }
        }
    }

    /// A mapping of strings to strings (labels, annotations), marked as used.
    pub fn string_map(
        &mut self,
        path: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, ImportError> {
        let mut out = std::collections::BTreeMap::new();
        let Some(m) = self.map(path)? else {
            return Ok(out);
        };
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                other => {
                    return Err(self.invalid(
                        &format!("{path}.{k}"),
                        format!("must be a string, not {}", kind_of(other)),
                    ));
                }
            };
            out.insert(k.clone(), v);
        }
        self.mark(path);
        Ok(out)
    }

    /// Whether `path` is present in the input.
    pub fn has(&self, path: &str) -> bool {
        self.peek(path).is_some()
    }

    /// Warn about the field at `path` (marking it, so it is not reported again).
    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.mark(path);
        let w = Warning {
            location: self.location.clone(),
            object: self.id.clone(),
            field: self.field(path),
            message: message.into(),
        };
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Warn about `path` only when it is present.
    pub fn warn_if_present(&mut self, path: &str, message: &str) {
        if self.has(path) {
            self.warn(path, message);
        }
    }

    /// The warnings so far plus one for every field no read reached.
    pub fn finish(mut self) -> Vec<Warning> {
        let mut unmapped = Vec::new();
        self.walk(self.root, &mut Vec::new(), &mut unmapped);
        for path in unmapped {
            let shown = show(&path);
            let message = crate::hints::hint(&shown)
                .unwrap_or("has no Capstan equivalent; left out")
                .to_string();
            let w = Warning {
                location: self.location.clone(),
                object: self.id.clone(),
                field: self.field(&shown),
                message,
            };
            self.warnings.push(w);
        }
        self.warnings
    }

    fn covered(&self, path: &[Step]) -> bool {
        (0..=path.len()).any(|n| self.used.contains(&path[..n]))
    }

    /// Whether a field below `path` was used: paths sharing a prefix sort together,
    /// right after the prefix itself.
    fn used_below(&self, path: &[Step]) -> bool {
        self.used
            .range(path.to_vec()..)
            .find(|p| p.len() > path.len() || !p.starts_with(path))
            .is_some_and(|p| p.starts_with(path))
    }

    fn walk(&self, v: &Value, path: &mut Path, out: &mut Vec<Path>) {
        if self.covered(path) {
            return;
        }
        if !path.is_empty() && !self.used_below(path) {
            let mut leaves = Vec::new();
            leaves_of(v, path, &mut leaves);
            if leaves.len() <= 6 {
                out.extend(leaves);
                return;
            }
            // A large block below the top level is named once (`spec.postRenderers`).
            if path.len() > 1 {
                out.push(path.clone());
                return;
            }
        }
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(Step::Key(k.clone()));
                    self.walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    self.walk(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// The leaf fields below `path`: scalars, lists and empty mappings. Null values are
/// not fields (`helm: null` says nothing).
fn leaves_of(v: &Value, path: &mut Path, out: &mut Vec<Path>) {
    match v {
        Value::Null => {}
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(Step::Key(k.clone()));
                leaves_of(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn appset_id() -> ObjectId {
        ObjectId {
            group: "argoproj.io".into(),
            kind: "ApplicationSet".into(),
            namespace: "argocd".into(),
            name: "s".into(),
        }
    }

    fn doc(v: &Value) -> Doc<'_> {
        Doc::over(
            v,
            Location {
                file: "f.yaml".into(),
                document: 1,
            },
            ObjectId::of(v),
            "",
        )
    }

    #[test]
    fn fields_not_read_are_named_down_to_the_leaf() {
        let v = json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "p", "uid": "x"},
            "spec": {"interval": "5m", "install": {"strategy": {"name": "RetryOnFailure"}, "createNamespace": true}},
            "status": {"conditions": []}
        });
        let mut d = doc(&v);
        d.get("metadata.name");
        d.get("spec.interval");
        d.bool("spec.install.createNamespace").unwrap();
        let fields: Vec<String> = d.finish().into_iter().map(|w| w.field).collect();
        assert_eq!(fields, ["spec.install.strategy.name"]);
    }

    #[test]
    fn a_large_unread_mapping_is_named_once() {
        let v = json!({"spec": {"postRenderers": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}}});
        let fields: Vec<String> = doc(&v).finish().into_iter().map(|w| w.field).collect();
        assert_eq!(fields, ["spec.postRenderers"]);
    }

    #[test]
    fn list_items_are_reported_by_index() {
        let v = json!({"spec": {"sources": [{"repoURL": "a"}, {"repoURL": "b", "plugin": {"name": "x"}}]}});
        let mut d = doc(&v);
        d.list("spec.sources").unwrap();
        d.str("spec.sources[0].repoURL").unwrap();
        d.str("spec.sources[1].repoURL").unwrap();
        let w = d.finish();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].field, "spec.sources[1].plugin.name");
        assert!(
            w[0].message.contains("Config Management Plugin"),
            "{}",
            w[0].message
        );
    }

    #[test]
    fn a_wrong_type_is_an_error_naming_the_field() {
        let v = json!({"kind": "Application", "metadata": {"name": "a", "namespace": "argocd"}, "spec": {"source": {"repoURL": 3}}});
        let mut d = doc(&v);
        let err = d
            .required_str("spec.source.repoURL")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "f.yaml (document 1): Application argocd/a: spec.source.repoURL: must be a string, not a number"
        );
    }

    #[test]
    fn a_prefix_names_fields_of_a_template() {
        let v = json!({"spec": {"source": {"plugin": {"name": "x"}}}});
        let d = Doc::over(
            &v,
            Location {
                file: "s.yaml".into(),
                document: 2,
            },
            appset_id(),
            "spec.template",
        );
        let w = d.finish();
        assert_eq!(w[0].field, "spec.template.spec.source.plugin.name");
    }
}
