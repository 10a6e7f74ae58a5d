//! The input: manifests as parsed from files, each with the file and document it came
//! from, and the identity of the object it holds.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::ImportError;

/// `Kind namespace/name` of an input or output object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// The group of its `apiVersion` (empty for the core group).
    pub group: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace (empty when it names none).
    pub namespace: String,
    /// Its name (empty when it has none).
    pub name: String,
}

impl ObjectId {
    /// The identity of a parsed object (fields that are absent are empty).
    pub fn of(object: &Value) -> ObjectId {
        let text = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let api_version = text("/apiVersion");
        let group = api_version
            .split_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default();
        ObjectId {
            group,
            kind: text("/kind"),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind.is_empty() {
            "object"
        } else {
            &self.kind
        };
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (_, true) => write!(f, "{kind} without a name"),
            (true, false) => write!(f, "{kind} {}", self.name),
            (false, false) => write!(f, "{kind} {}/{}", self.namespace, self.name),
        }
    }
}

/// Where an input object came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file as given (or `<stdin>`).
    pub file: String,
    /// The document within the file, counting from 1.
    pub document: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file, self.document)
    }
}

/// One parsed document of the input.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where it came from.
    pub location: Location,
    /// The object as written.
    pub object: Value,
}

impl Manifest {
    /// A manifest of `object` at document `document` of `file`.
    pub fn new(file: impl Into<String>, document: usize, object: Value) -> Manifest {
        Manifest {
            location: Location {
                file: file.into(),
                document,
            },
            object,
        }
    }

    /// The identity of the object it holds.
    pub fn id(&self) -> ObjectId {
        ObjectId::of(&self.object)
    }
}

/// Parse a multi-document YAML (or JSON) text; empty documents are skipped and the
/// others numbered from 1 in the order they appear. Every document must be a mapping.
pub fn parse(text: &str, file: &str) -> Result<Vec<Manifest>, ImportError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 50_000_000,
            max_events: 200_000_000,
        },
    };
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let message = e.to_string();
            let mut message = message
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            if text.contains("{{") {
                message.push_str(
                    " (it looks like a template: render it first, e.g. `capstan render DIR | capstan import -f -`)",
                );
            }
            ImportError::Parse {
                file: file.to_string(),
                message,
            }
        })?;
    let mut out = Vec::new();
    for (i, object) in docs.into_iter().filter(|d| !d.is_null()).enumerate() {
        if !object.is_object() {
            return Err(ImportError::Parse {
                file: file.to_string(),
                message: format!("document {} is not a mapping (an object)", i + 1),
            });
        }
        out.push(Manifest::new(file, i + 1, object));
    }
    Ok(out)
}

/// Read `path`: a file, or a directory whose `*.yaml`, `*.yml` and `*.json` files are
/// read recursively in name order (hidden files and directories are left out).
/// Files are named as `path` joined with their place below it.
pub fn read_path(path: &Path) -> Result<Vec<Manifest>, ImportError> {
    let read_err = |p: &Path, source| ImportError::Read {
        file: p.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_err(path, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        collect(path, &mut files).map_err(|(p, e)| read_err(&p, e))?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| read_err(&file, e))?;
        out.extend(parse(&text, &file.display().to_string())?);
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), (PathBuf, std::io::Error)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_numbered_without_the_empty_ones() {
        let m = parse(
            "---\n# only a comment\n---\nkind: A\nmetadata: {name: a}\n---\nkind: B\n",
            "x.yaml",
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].location.document, 2);
        assert_eq!(m[0].id().name, "a");
    }

    #[test]
    fn a_helm_template_is_not_yaml_and_the_error_says_what_to_do() {
        let err = parse(
            "{{- range .Values.apps }}\nkind: Application\n{{ end }}\n",
            "apps/templates/a.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("apps/templates/a.yaml: "), "{err}");
        assert!(err.contains("render it first"), "{err}");
    }

    #[test]
    fn a_scalar_document_is_an_error() {
        let err = parse("just text\n", "t.yaml").unwrap_err().to_string();
        assert!(err.contains("t.yaml: document 1 is not a mapping"), "{err}");
    }

    #[test]
    fn ids_print_as_kind_namespace_name() {
        let id = ObjectId::of(&serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "argocd"}
        }));
        assert_eq!(id.to_string(), "Application argocd/web");
        assert_eq!(id.group, "argoproj.io");
    }
}
