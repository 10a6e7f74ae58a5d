//! Lossless YAML editing: every byte of a file stays as it was — comments, key
//! order, quoting, indentation, blank lines — except the scalars an editor changes
//! (and the entries it adds).
//!
//! Files are parsed with `yaml-edit` (a lossless concrete syntax tree); edits are made
//! in that tree and the file is printed from it. Before a file is written, what it now
//! says is checked against what it should say: each document is decoded before and
//! after (with the same YAML parser the renderer uses), the planned changes are
//! applied to the decoded original, and the two must be equal. An edit that would
//! change anything else is an error, and nothing is written.

use std::fmt;
use std::str::FromStr;

use rowan::ast::AstNode;
use serde_json::Value;
use yaml_edit::{Document, Mapping, Scalar, Sequence, YamlFile, YamlNode};

use super::EditError;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index, with the item's `name` when it has one (for messages).
    Index(usize, Option<String>),
}

/// Where a value is in a document, e.g. `spec.template.spec.containers[name=web].image`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// This path with a key added.
    pub fn key(&self, k: &str) -> FieldPath {
        let mut p = self.0.clone();
        p.push(Seg::Key(k.to_string()));
        FieldPath(p)
    }

    /// This path with an index added.
    pub fn index(&self, i: usize, name: Option<String>) -> FieldPath {
        let mut p = self.0.clone();
        p.push(Seg::Index(i, name));
        FieldPath(p)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(_, Some(name)) => write!(f, "[name={name}]")?,
                Seg::Index(i, None) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// What the decoded document must show after the edit.
#[derive(Debug, Clone)]
enum Expect {
    /// The value at the path is this string.
    Set(FieldPath, String),
    /// The sequence at the path got this item at its end.
    Append(FieldPath, Value),
    /// The mapping at the path got this key.
    Insert(FieldPath, String, Value),
    /// The mapping at the path lost this key.
    Remove(FieldPath, String),
}

/// A YAML file being edited.
pub(crate) struct EditableFile {
    /// Path relative to the repository, for messages.
    pub rel: String,
    original: String,
    file: YamlFile,
    docs: Vec<DocState>,
}

struct DocState {
    /// The document's text as read (decoded only when it is edited).
    original: String,
    expect: Vec<Expect>,
}

/// Decode one document's text the way the renderer does.
fn decode(text: &str) -> Result<Value, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
    Ok(docs
        .into_iter()
        .find(|d| !d.is_null())
        .unwrap_or(Value::Null))
}

impl EditableFile {
    /// Parse `text` (the file `rel`); a file that is not YAML is an error naming it.
    pub fn parse(rel: &str, text: &str) -> Result<EditableFile, EditError> {
        let parse_err = |message: String| EditError::Parse {
            file: rel.to_string(),
            message,
        };
        let file = YamlFile::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        // the syntax tree must hold the text exactly, or an edit could lose bytes
        if file.to_string() != text {
            return Err(parse_err(
                "this file's layout is not one the lossless YAML editor reproduces exactly".into(),
            ));
        }
        let docs = file
            .documents()
            .map(|d| DocState {
                original: d.to_string(),
                expect: Vec::new(),
            })
            .collect();
        Ok(EditableFile {
            rel: rel.to_string(),
            original: text.to_string(),
            file,
            docs,
        })
    }

    /// The documents, with their index.
    pub fn documents(&self) -> Vec<(usize, Document)> {
        self.file.documents().enumerate().collect()
    }

    /// Set the scalar at `path` (in document `doc`) to `new`, keeping its quoting
    /// style where the value allows it. Returns the old value when it changed.
    pub fn set_scalar(
        &mut self,
        doc: usize,
        scalar: &Scalar,
        path: &FieldPath,
        new: &str,
    ) -> Result<Option<String>, EditError> {
        let raw = scalar.value();
        if raw.starts_with(['|', '>']) {
            return Err(EditError::BlockScalar {
                file: self.rel.clone(),
                field: path.to_string(),
            });
        }
        let old = scalar.as_string();
        if old == new {
            return Ok(None);
        }
        scalar.set_value(&format_like(&raw, new));
        self.docs[doc]
            .expect
            .push(Expect::Set(path.clone(), new.to_string()));
        Ok(Some(old))
    }

    /// Append a mapping of string values to the sequence at `path`.
    pub fn append_item(
        &mut self,
        doc: usize,
        seq: &Sequence,
        path: &FieldPath,
        item: &[(&str, String)],
    ) {
        let (m, json) = mapping_of(item);
        seq.push(m);
        self.docs[doc]
            .expect
            .push(Expect::Append(path.clone(), json));
    }

    /// Add `key` to the mapping at `path`: a sequence holding one mapping of string
    /// values.
    pub fn insert_list(
        &mut self,
        doc: usize,
        mapping: &Mapping,
        path: &FieldPath,
        key: &str,
        item: &[(&str, String)],
    ) {
        let seq = Sequence::new();
        let (m, json) = mapping_of(item);
        seq.push(m);
        mapping.set(key, seq);
        self.docs[doc].expect.push(Expect::Insert(
            path.clone(),
            key.to_string(),
            Value::Array(vec![json]),
        ));
    }

    /// Set `key` of the mapping at `path` to the string `value`: the scalar changes
    /// when the key is there, else the key is added. Returns the old value when it
    /// changed (`""` for an added key).
    pub fn put(
        &mut self,
        doc: usize,
        mapping: &Mapping,
        path: &FieldPath,
        key: &str,
        value: &str,
    ) -> Result<Option<String>, EditError> {
        match mapping.get(key) {
            Some(node) => {
                let field = path.key(key);
                let s = node.as_scalar().ok_or_else(|| EditError::NotAScalar {
                    file: self.rel.clone(),
                    field: field.to_string(),
                    found: kind_name(&node),
                })?;
                self.set_scalar(doc, s, &field, value)
            }
            None => {
                mapping.set(key, value);
                self.docs[doc].expect.push(Expect::Insert(
                    path.clone(),
                    key.to_string(),
                    Value::String(value.to_string()),
                ));
                Ok(Some(String::new()))
            }
        }
    }

    /// Remove `key` from the mapping at `path`; its old value when it was there.
    pub fn remove(
        &mut self,
        doc: usize,
        mapping: &Mapping,
        path: &FieldPath,
        key: &str,
    ) -> Option<String> {
        let old = mapping
            .get(key)
            .map(|n| n.as_scalar().map(Scalar::as_string).unwrap_or_default())?;
        mapping.remove(key)?;
        self.docs[doc]
            .expect
            .push(Expect::Remove(path.clone(), key.to_string()));
        Some(old)
    }

    /// The new text when anything changed, after checking that the file says exactly
    /// what the edits planned and nothing else.
    pub fn finish(self) -> Result<Option<String>, EditError> {
        let text = self.file.to_string();
        if text == self.original {
            return Ok(None);
        }
        let verify_err = |message: String| EditError::Verify {
            file: self.rel.clone(),
            message,
        };
        let new_docs: Vec<Document> = self.file.documents().collect();
        if new_docs.len() != self.docs.len() {
            return Err(verify_err(format!(
                "the edit changed the number of documents from {} to {}",
                self.docs.len(),
                new_docs.len()
            )));
        }
        for (i, (state, doc)) in self.docs.iter().zip(&new_docs).enumerate() {
            let now = doc.to_string();
            if state.expect.is_empty() {
                if now != state.original {
                    return Err(verify_err(format!(
                        "document {} would change though nothing in it was to",
                        i + 1
                    )));
                }
                continue;
            }
            let mut expected = decode(&state.original).map_err(|message| EditError::Parse {
                file: self.rel.clone(),
                message,
            })?;
            for e in &state.expect {
                apply(&mut expected, e).map_err(&verify_err)?;
            }
            let got = decode(&now)
                .map_err(|m| verify_err(format!("document {} no longer parses: {m}", i + 1)))?;
            if got != expected {
                return Err(verify_err(format!(
                    "document {} would change beyond the planned fields",
                    i + 1
                )));
            }
        }
        Ok(Some(text))
    }
}

/// A new mapping of string values, and what it decodes to.
fn mapping_of(item: &[(&str, String)]) -> (Mapping, Value) {
    let m = Mapping::new();
    let mut json = serde_json::Map::new();
    for (k, v) in item {
        m.set(*k, v.as_str());
        json.insert((*k).to_string(), Value::String(v.clone()));
    }
    (m, Value::Object(json))
}

fn lookup_mut<'a>(v: &'a mut Value, path: &FieldPath) -> Result<&'a mut Value, String> {
    let mut cur = v;
    for seg in &path.0 {
        cur = match seg {
            Seg::Key(k) => cur
                .get_mut(k.as_str())
                .ok_or_else(|| format!("{path}: no key {k:?}"))?,
            Seg::Index(i, _) => cur
                .get_mut(*i)
                .ok_or_else(|| format!("{path}: no item {i}"))?,
        };
    }
    Ok(cur)
}

fn apply(v: &mut Value, e: &Expect) -> Result<(), String> {
    match e {
        Expect::Set(path, s) => *lookup_mut(v, path)? = Value::String(s.clone()),
        Expect::Append(path, item) => match lookup_mut(v, path)? {
            Value::Array(a) => a.push(item.clone()),
            _ => return Err(format!("{path} is not a list")),
        },
        Expect::Insert(path, key, value) => match lookup_mut(v, path)? {
            Value::Object(m) => {
                m.insert(key.clone(), value.clone());
            }
            _ => return Err(format!("{path} is not a mapping")),
        },
        Expect::Remove(path, key) => match lookup_mut(v, path)? {
            Value::Object(m) => {
                m.remove(key);
            }
            _ => return Err(format!("{path} is not a mapping")),
        },
    }
    Ok(())
}

/// `new` written in the style of the scalar `raw` was written in: double or single
/// quotes stay; a plain scalar stays plain when the value reads back as the same
/// string, and is double-quoted when it would not (`1.10` would be a number, `on` a
/// boolean, `a: b` a mapping).
pub(crate) fn format_like(raw: &str, new: &str) -> String {
    match raw.chars().next() {
        Some('"') => double_quoted(new),
        Some('\'') => format!("'{}'", new.replace('\'', "''")),
        _ if plain_safe(new) => new.to_string(),
        _ => double_quoted(new),
    }
}

fn double_quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Whether `s` can be written as a plain scalar and read back as the same string by
/// YAML 1.1 and 1.2 parsers alike (Kubernetes' Go YAML reads 1.1 booleans).
fn plain_safe(s: &str) -> bool {
    const WORDS_1_1: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
    ];
    if s.is_empty()
        || s != s.trim()
        || WORDS_1_1.contains(&s)
        || s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.contains(['\n', '\r', '\t'])
    {
        return false;
    }
    // a date (a timestamp in YAML 1.1) or anything a YAML parser reads as a number
    let b = s.as_bytes();
    if b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return false;
    }
    matches!(decode(s), Ok(Value::String(ref d)) if d == s)
}

/// What a node is, for messages.
pub(crate) fn kind_name(node: &YamlNode) -> &'static str {
    match node {
        YamlNode::Scalar(_) => "a value",
        YamlNode::Mapping(_) => "a mapping",
        YamlNode::Sequence(_) => "a list",
        YamlNode::Alias(_) => "an alias",
        YamlNode::TaggedNode(_) => "a tagged node",
    }
}

type SyntaxNode = rowan::SyntaxNode<yaml_edit::Lang>;

/// The document index and path of the node `node` (a value inside a document).
pub(crate) fn path_of(node: &SyntaxNode) -> (usize, FieldPath) {
    use yaml_edit::SyntaxKind as K;
    let mut segs = Vec::new();
    let mut doc = 0;
    let mut cur = node.parent();
    while let Some(n) = cur {
        match n.kind() {
            K::VALUE => {
                let entry = n.parent();
                let key = entry
                    .as_ref()
                    .and_then(|e| e.children().find(|c| c.kind() == K::KEY))
                    .and_then(|k| k.children().find_map(Scalar::cast))
                    .map(|s| s.as_string())
                    .unwrap_or_default();
                segs.push(Seg::Key(key));
                cur = entry.and_then(|e| e.parent());
                continue;
            }
            K::SEQUENCE_ENTRY => {
                let index = n
                    .siblings(rowan::Direction::Prev)
                    .filter(|s| s.kind() == K::SEQUENCE_ENTRY)
                    .count()
                    - 1;
                let name = n
                    .children()
                    .find_map(Mapping::cast)
                    .and_then(|m| m.get("name"))
                    .and_then(|v| v.as_scalar().map(Scalar::as_string));
                segs.push(Seg::Index(index, name));
            }
            K::DOCUMENT => {
                doc = n
                    .siblings(rowan::Direction::Prev)
                    .filter(|s| s.kind() == K::DOCUMENT)
                    .count()
                    - 1;
                break;
            }
            _ => {}
        }
        cur = n.parent();
    }
    segs.reverse();
    (doc, FieldPath(segs))
}

/// The `name` of a sequence item that is a mapping with a scalar `name`.
pub(crate) fn item_name(node: &YamlNode) -> Option<String> {
    node.as_mapping()?
        .get("name")
        .and_then(|n| n.as_scalar().map(Scalar::as_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_value_keeps_the_old_quoting_unless_it_would_change_type() {
        assert_eq!(format_like("v1", "v1.0.1"), "v1.0.1");
        assert_eq!(format_like("\"1.0\"", "1.1"), "\"1.1\"");
        assert_eq!(format_like("'1.0'", "it's"), "'it''s'");
        assert_eq!(format_like("v1", "1.10"), "\"1.10\"");
        assert_eq!(format_like("v1", "on"), "\"on\"");
        assert_eq!(format_like("v1", "2024-01-01"), "\"2024-01-01\"");
        assert_eq!(
            format_like("image", "image:v1.0.0@sha256:abc"),
            "image:v1.0.0@sha256:abc"
        );
        assert_eq!(format_like("x", "a: b"), "\"a: b\"");
        assert_eq!(format_like("x", "123"), "\"123\"");
    }

    #[test]
    fn a_scalar_changes_and_nothing_else_does() {
        let text =
            "# head\nimages:\n  - name: web # the web\n    newTag: \"1.0\"   # pinned\n\n# tail\n";
        let mut f = EditableFile::parse("k.yaml", text).unwrap();
        let (_, doc) = f.documents().remove(0);
        let seq = doc.as_mapping().unwrap().get_sequence("images").unwrap();
        let item = seq.get(0).unwrap();
        let tag = item.as_mapping().unwrap().get("newTag").unwrap();
        let path = FieldPath::default()
            .key("images")
            .index(0, Some("web".into()))
            .key("newTag");
        assert_eq!(path.to_string(), "images[name=web].newTag");
        let old = f
            .set_scalar(0, tag.as_scalar().unwrap(), &path, "1.1")
            .unwrap();
        assert_eq!(old.as_deref(), Some("1.0"));
        let out = f.finish().unwrap().unwrap();
        assert_eq!(
            out,
            "# head\nimages:\n  - name: web # the web\n    newTag: \"1.1\"   # pinned\n\n# tail\n"
        );
    }

    #[test]
    fn an_unchanged_value_writes_nothing() {
        let text = "image: web:1.0\n";
        let mut f = EditableFile::parse("a.yaml", text).unwrap();
        let (_, doc) = f.documents().remove(0);
        let node = doc.as_mapping().unwrap().get("image").unwrap();
        let path = FieldPath::default().key("image");
        assert_eq!(
            f.set_scalar(0, node.as_scalar().unwrap(), &path, "web:1.0")
                .unwrap(),
            None
        );
        assert_eq!(f.finish().unwrap(), None);
    }

    #[test]
    fn a_file_that_is_not_yaml_is_named() {
        let e = EditableFile::parse("deploy/web.yaml", "a: [1, 2\nb: {")
            .err()
            .unwrap();
        assert!(e.to_string().contains("deploy/web.yaml"), "{e}");
    }
}
