//! Helm values read from the cluster: a key of a ConfigMap or a Secret, as Flux's
//! `HelmRelease.spec.valuesFrom` names them.
//!
//! ```text
//! ConfigMap/Secret ──key (values.yaml)──▶ YAML mapping ──(targetPath: a.b → {a: {b: "…"}})──▶ ValuesDoc
//! ```
//!
//! Each [`ValuesDoc`] is passed to `helm template` as one more `--values` file, after the
//! values files of the repository and before the inline values and `--set`, so later
//! documents override earlier ones key by key, as Helm merges `-f` files. A document
//! from a Secret is written to a file only its owner can read for the length of the
//! render; its `Debug` shows its origin and a digest, never its content, so options that
//! carry it can be logged or used as a cache key.

use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key read when a reference names none, as in Flux.
pub const DEFAULT_KEY: &str = "values.yaml";

/// Which kind of object holds the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValuesKind {
    /// A ConfigMap (`data`, or `binaryData`).
    ConfigMap,
    /// A Secret (`data`).
    Secret,
}

impl fmt::Display for ValuesKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValuesKind::ConfigMap => "ConfigMap",
            ValuesKind::Secret => "Secret",
        })
    }
}

/// One `valuesFrom` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuesReference {
    /// ConfigMap or Secret.
    pub kind: ValuesKind,
    /// The object's name.
    pub name: String,
    /// Its namespace; `None` for the namespace [`values_from`] is given.
    pub namespace: Option<String>,
    /// The key holding the values. Default [`DEFAULT_KEY`].
    pub key: String,
    /// When set, the key holds one value, put at this dotted path (`image.tag`) as a
    /// string, instead of a YAML mapping merged at the root. Default `None`.
    pub target_path: Option<String>,
    /// A missing object or key is skipped instead of being an error. Default `false`.
    pub optional: bool,
}

impl ValuesReference {
    /// The key [`DEFAULT_KEY`] of `kind` `name`, in the default namespace, required.
    pub fn new(kind: ValuesKind, name: impl Into<String>) -> ValuesReference {
        ValuesReference {
            kind,
            name: name.into(),
            namespace: None,
            key: DEFAULT_KEY.to_string(),
            target_path: None,
            optional: false,
        }
    }

    /// `ConfigMap ns/name` or `Secret ns/name`.
    fn object(&self, namespace: &str) -> String {
        format!(
            "{} {}/{}",
            self.kind,
            self.namespace.as_deref().unwrap_or(namespace),
            self.name
        )
    }
}

/// A values document read from the cluster, ready for `helm template --values`.
#[derive(Clone, PartialEq, Eq)]
pub struct ValuesDoc {
    /// Where it came from: `ConfigMap prod/web key values.yaml`.
    pub origin: String,
    yaml: String,
}

impl ValuesDoc {
    /// A document of `yaml` from `origin`.
    pub fn new(origin: impl Into<String>, yaml: impl Into<String>) -> ValuesDoc {
        ValuesDoc {
            origin: origin.into(),
            yaml: yaml.into(),
        }
    }

    /// The YAML (it may hold Secret values: never log it).
    pub fn yaml(&self) -> &str {
        &self.yaml
    }
}

impl fmt::Debug for ValuesDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = hex::encode(&Sha256::digest(self.yaml.as_bytes())[..8]);
        f.debug_struct("ValuesDoc")
            .field("origin", &self.origin)
            .field("sha256", &digest)
            .finish()
    }
}

/// Why a `valuesFrom` entry could not be read. Every variant names the object and key;
/// none holds a value from a Secret.
#[derive(Debug, thiserror::Error)]
pub enum ValuesFromError {
    /// Reading the object failed.
    #[error("valuesFrom: reading {object}")]
    Read {
        /// `ConfigMap ns/name`.
        object: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// The object does not exist (and the entry is not optional).
    #[error("valuesFrom: {object} does not exist")]
    Missing {
        /// `ConfigMap ns/name`.
        object: String,
    },
    /// The object has no such key (and the entry is not optional).
    #[error("valuesFrom: {object} has no key {key:?} (keys: {keys})")]
    MissingKey {
        /// `ConfigMap ns/name`.
        object: String,
        /// The key.
        key: String,
        /// The keys it has.
        keys: String,
    },
    /// The key's value is not a YAML mapping (or not UTF-8).
    #[error("valuesFrom: key {key:?} of {object} is not a YAML mapping")]
    NotAMapping {
        /// `ConfigMap ns/name`.
        object: String,
        /// The key.
        key: String,
        /// The parser's complaint, for ConfigMaps only (it may quote a Secret's text).
        #[source]
        source: Option<Box<serde_saphyr::Error>>,
    },
    /// A target path with an empty segment.
    #[error("valuesFrom: the targetPath {path:?} for {object} is not a dotted path")]
    TargetPath {
        /// `ConfigMap ns/name`.
        object: String,
        /// The path as given.
        path: String,
    },
}

/// Read `refs` in order (objects without a namespace from `namespace`); a document for
/// each, skipping optional ones that are missing.
pub async fn values_from(
    client: &kube::Client,
    namespace: &str,
    refs: &[ValuesReference],
) -> Result<Vec<ValuesDoc>, ValuesFromError> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let ns = r.namespace.as_deref().unwrap_or(namespace);
        let object = r.object(namespace);
        let read = |source| ValuesFromError::Read {
            object: object.clone(),
            source: Box::new(source),
        };
        let data = match r.kind {
            ValuesKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt(&r.name)
                .await
                .map_err(read)?
                .map(configmap_data),
            ValuesKind::Secret => Api::<Secret>::namespaced(client.clone(), ns)
                .get_opt(&r.name)
                .await
                .map_err(read)?
                .map(secret_data),
        };
        if let Some(doc) = document(r, &object, data)? {
            out.push(doc);
        }
    }
    Ok(out)
}

fn configmap_data(cm: ConfigMap) -> Vec<(String, Vec<u8>)> {
    let text = cm
        .data
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.into_bytes()));
    let binary = cm.binary_data.into_iter().flatten().map(|(k, v)| (k, v.0));
    text.chain(binary).collect()
}

fn secret_data(secret: Secret) -> Vec<(String, Vec<u8>)> {
    secret
        .data
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// The document of `r` from the object's `data` (`None`: the object is missing).
pub(crate) fn document(
    r: &ValuesReference,
    object: &str,
    data: Option<Vec<(String, Vec<u8>)>>,
) -> Result<Option<ValuesDoc>, ValuesFromError> {
    let Some(data) = data else {
        return match r.optional {
            true => Ok(None),
            false => Err(ValuesFromError::Missing {
                object: object.to_string(),
            }),
        };
    };
    let key = if r.key.is_empty() {
        DEFAULT_KEY
    } else {
        &r.key
    };
    let Some((_, bytes)) = data.iter().find(|(k, _)| k == key) else {
        if r.optional {
            return Ok(None);
        }
        let mut keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        return Err(ValuesFromError::MissingKey {
            object: object.to_string(),
            key: key.to_string(),
            keys: if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            },
        });
    };
    let not_a_mapping = |source: Option<serde_saphyr::Error>| ValuesFromError::NotAMapping {
        object: object.to_string(),
        key: key.to_string(),
        source: source
            .filter(|_| r.kind == ValuesKind::ConfigMap)
            .map(Box::new),
    };
    let text = String::from_utf8(bytes.clone()).map_err(|_| not_a_mapping(None))?;
    let origin = format!("{object} key {key}");
    if let Some(path) = &r.target_path {
        let yaml = at_path(path, text).ok_or_else(|| ValuesFromError::TargetPath {
            object: object.to_string(),
            path: path.clone(),
        })?;
        return Ok(Some(ValuesDoc::new(origin, yaml)));
    }
    let parsed: Option<Value> =
        serde_saphyr::from_str(&text).map_err(|e| not_a_mapping(Some(e)))?;
    match parsed {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(Some(ValuesDoc::new(origin, text))),
        Some(_) => Err(not_a_mapping(None)),
    }
}

/// `{a: {b: value}}` for the path `a.b`, as YAML (JSON is YAML); `None` for an empty
/// segment.
fn at_path(path: &str, value: String) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return None;
    }
    let doc = parts
        .iter()
        .rev()
        .fold(Value::String(value), |inner, part| {
            let mut map = serde_json::Map::new();
            map.insert(part.trim().to_string(), inner);
            Value::Object(map)
        });
    Some(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(kv: &[(&str, &str)]) -> Option<Vec<(String, Vec<u8>)>> {
        Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn a_mapping_under_the_key_is_a_document_named_after_its_origin() {
        let r = ValuesReference::new(ValuesKind::ConfigMap, "web");
        let doc = document(&r, "ConfigMap prod/web", data(&[("values.yaml", "a: 1\n")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (doc.origin.as_str(), doc.yaml()),
            ("ConfigMap prod/web key values.yaml", "a: 1\n")
        );
        let empty = document(&r, "ConfigMap prod/web", data(&[("values.yaml", "")])).unwrap();
        assert!(empty.is_some(), "an empty document sets nothing");
    }

    #[test]
    fn a_target_path_nests_one_value_as_a_string() {
        let r = ValuesReference {
            key: "tag".into(),
            target_path: Some("image.tag".into()),
            ..ValuesReference::new(ValuesKind::Secret, "tags")
        };
        let doc = document(&r, "Secret prod/tags", data(&[("tag", "1.2")]))
            .unwrap()
            .unwrap();
        assert_eq!(doc.yaml(), r#"{"image":{"tag":"1.2"}}"#);
        let bad = ValuesReference {
            target_path: Some("image..tag".into()),
            ..r
        };
        let e = document(&bad, "Secret prod/tags", data(&[("tag", "1.2")])).unwrap_err();
        assert!(matches!(e, ValuesFromError::TargetPath { .. }), "{e}");
    }

    #[test]
    fn missing_objects_and_keys_are_errors_unless_optional() {
        let r = ValuesReference::new(ValuesKind::ConfigMap, "web");
        let e = document(&r, "ConfigMap prod/web", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "valuesFrom: ConfigMap prod/web does not exist"
        );
        let e = document(&r, "ConfigMap prod/web", data(&[("b", ""), ("a", "")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "valuesFrom: ConfigMap prod/web has no key \"values.yaml\" (keys: a, b)"
        );
        let optional = ValuesReference {
            optional: true,
            ..r
        };
        assert!(document(&optional, "x", None).unwrap().is_none());
        assert!(document(&optional, "x", data(&[])).unwrap().is_none());
    }

    #[test]
    fn a_secret_that_is_not_a_mapping_is_named_without_its_text() {
        let r = ValuesReference::new(ValuesKind::Secret, "creds");
        for text in ["- a\n- b\n", "password: [unclosed hunter2"] {
            let e = document(&r, "Secret prod/creds", data(&[("values.yaml", text)])).unwrap_err();
            assert_eq!(
                e.to_string(),
                "valuesFrom: key \"values.yaml\" of Secret prod/creds is not a YAML mapping"
            );
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
        let doc = ValuesDoc::new("Secret prod/creds key values.yaml", "password: hunter2");
        assert!(!format!("{doc:?}").contains("hunter2"));
        let cm = ValuesReference::new(ValuesKind::ConfigMap, "web");
        let e = document(&cm, "ConfigMap prod/web", data(&[("values.yaml", "a: [")])).unwrap_err();
        assert!(
            std::error::Error::source(&e).is_some(),
            "a ConfigMap's parse error is kept"
        );
    }
}
