//! The identity of a Kubernetes object: group, kind, namespace, name.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Group, kind, namespace and name: what identifies an object across versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group, empty for the core group.
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// Why an object has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectRefError {
    /// A required field is missing or empty.
    #[error("{field} is missing or empty")]
    Missing {
        /// The field, e.g. `metadata.name`.
        field: &'static str,
    },
    /// A field has the wrong type.
    #[error("{field} must be a string")]
    NotAString {
        /// The field.
        field: &'static str,
    },
    /// A stored key is not `group/kind/namespace/name`.
    #[error("{0:?} is not of the form group/kind/namespace/name")]
    Malformed(String),
}

fn str_field<'a>(v: Option<&'a Value>, field: &'static str) -> Result<&'a str, ObjectRefError> {
    match v {
        None | Some(Value::Null) => Err(ObjectRefError::Missing { field }),
        Some(Value::String(s)) if s.is_empty() => Err(ObjectRefError::Missing { field }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ObjectRefError::NotAString { field }),
    }
}

impl ObjectRef {
    /// The identity of an object (its `apiVersion`, `kind`, `metadata.name`, `metadata.namespace`).
    pub fn from_object(obj: &Value) -> Result<Self, ObjectRefError> {
        let api_version = str_field(obj.get("apiVersion"), "apiVersion")?;
        let kind = str_field(obj.get("kind"), "kind")?;
        let meta = obj.get("metadata");
        let name = str_field(meta.and_then(|m| m.get("name")), "metadata.name")?;
        let namespace = match meta.and_then(|m| m.get("namespace")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(ObjectRefError::NotAString {
                    field: "metadata.namespace",
                });
            }
        };
        Ok(ObjectRef {
            group: group_of(api_version).to_string(),
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
        })
    }

    /// A reference built from parts.
    pub fn new(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The stable key `group/kind/namespace/name` (empty parts kept).
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.group,
            self.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }

    /// Parse a key written by [`ObjectRef::key`].
    pub fn parse_key(key: &str) -> Result<Self, ObjectRefError> {
        let parts: Vec<&str> = key.splitn(4, '/').collect();
        match parts.as_slice() {
            [g, k, ns, n] if !k.is_empty() && !n.is_empty() => {
                Ok(ObjectRef::new(g, k, Some(ns), n))
            }
            _ => Err(ObjectRefError::Malformed(key.to_string())),
        }
    }
}

/// The group part of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map(|(g, _)| g).unwrap_or("")
}

impl fmt::Display for ObjectRef {
    /// `Deployment.apps prod/web`, `Namespace prod`, `ConfigMap default/cfg`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)?;
        } else {
            write!(f, "{}.{}", self.kind, self.group)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name),
            None => write!(f, " {}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_from_object_and_key_round_trip() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "prod"}});
        let r = ObjectRef::from_object(&obj).unwrap();
        assert_eq!(r.to_string(), "Deployment.apps prod/web");
        assert_eq!(r.key(), "apps/Deployment/prod/web");
        assert_eq!(ObjectRef::parse_key(&r.key()).unwrap(), r);
        let ns = ObjectRef::from_object(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}),
        )
        .unwrap();
        assert_eq!(ns.key(), "/Namespace//prod");
        assert_eq!(ObjectRef::parse_key("/Namespace//prod").unwrap(), ns);
    }

    #[test]
    fn missing_fields_are_named() {
        let e = ObjectRef::from_object(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "metadata.name is missing or empty");
        let e = ObjectRef::from_object(&json!({"kind": "ConfigMap"})).unwrap_err();
        assert_eq!(e.to_string(), "apiVersion is missing or empty");
        let e = ObjectRef::from_object(&json!({"apiVersion": "v1", "kind": 3})).unwrap_err();
        assert_eq!(e.to_string(), "kind must be a string");
    }
}
