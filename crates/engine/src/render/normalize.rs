//! From rendered documents to the desired set: validity, `List` flattening,
//! namespace defaulting, sync waves and duplicate detection.

use std::collections::HashMap;

use capstan_core::{ObjectRef, Role, SyncOptionSet, SyncWave};
use serde_json::Value;

use super::{Origin, RawObject, RenderError, Scopes};

/// One object of the desired set.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    /// Its identity.
    pub id: ObjectRef,
    /// The object, with its namespace filled in.
    pub object: Value,
    /// Where it came from.
    pub origin: Origin,
    /// Its sync wave.
    pub wave: SyncWave,
    /// One of the Application's objects, a hook, or skipped.
    pub role: Role,
    /// A hook without `metadata.name`: the name is made when it runs (its
    /// `generateName`, the revision, the phase). `id.name` then holds the prefix.
    pub unnamed: bool,
}

impl DesiredObject {
    /// `apiVersion` of the object.
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A desired object from a rendered one (for callers that build desired sets by
    /// hand, such as tests): its role read from its annotations, its wave 0.
    pub fn new(id: ObjectRef, object: Value, origin: Origin) -> Self {
        DesiredObject {
            role: Role::of(&object),
            id,
            object,
            origin,
            wave: SyncWave(0),
            unnamed: false,
        }
    }

    /// Whether the object is one of the Application's own (not a hook, not skipped).
    pub fn is_resource(&self) -> bool {
        self.role.is_resource()
    }
}

fn flatten(raw: Vec<RawObject>) -> Vec<RawObject> {
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let is_list = r
            .object
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && r.object.get("items").is_some_and(Value::is_array);
        if is_list {
            if let Some(Value::Array(items)) = r.object.get("items") {
                out.extend(items.iter().cloned().map(|object| RawObject {
                    object,
                    origin: r.origin.clone(),
                }));
            }
        } else {
            out.push(r);
        }
    }
    out
}

/// Normalize rendered documents into the desired set for `namespace`.
pub fn normalize(
    raw: Vec<RawObject>,
    namespace: &str,
    scopes: &Scopes,
) -> Result<Vec<DesiredObject>, RenderError> {
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    let raw = flatten(raw);
    let mut scopes = scopes.clone();
    scopes.add_crds(&raw);
    let mut seen: HashMap<ObjectRef, Origin> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for RawObject { mut object, origin } in raw {
        if !object.is_object() {
            return Err(RenderError::Invalid {
                origin,
                message: "a manifest must be a mapping (a Kubernetes object)".into(),
            });
        }
        if object.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(RenderError::Invalid {
                origin,
                message: "metadata must be a mapping".into(),
            });
        }
        let role = Role::of(&object);
        let (mut id, unnamed) = identity(&object, &role, &origin)?;
        match scopes.namespaced(&id.group, &id.kind) {
            Some(true) | None if id.namespace.is_none() => {
                if scopes.namespaced(&id.group, &id.kind).is_none() && scopes.is_authoritative() {
                    return Err(unknown(origin, id));
                }
                object["metadata"]["namespace"] = Value::String(namespace.to_string());
                id.namespace = Some(namespace.to_string());
            }
            Some(false) => {
                if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("namespace");
                }
                id.namespace = None;
            }
            None if scopes.is_authoritative() => return Err(unknown(origin, id)),
            _ => {}
        }
        let wave = SyncWave::of(&object).map_err(|e| RenderError::Invalid {
            origin: origin.clone(),
            message: format!("{id}: {e}"),
        })?;
        SyncOptionSet::default()
            .for_object(&object)
            .map_err(|e| RenderError::Invalid {
                origin: origin.clone(),
                message: format!("{id}: {e}"),
            })?;
        if unnamed {
            out.push(DesiredObject {
                id,
                object,
                origin,
                wave,
                role,
                unnamed,
            });
            continue;
        }
        if let Some(first) = seen.get(&id) {
            return Err(RenderError::Duplicate {
                object: Box::new(id),
                first: first.clone(),
                second: origin,
            });
        }
        seen.insert(id.clone(), origin.clone());
        out.push(DesiredObject {
            id,
            object,
            origin,
            wave,
            role,
            unnamed,
        });
    }
    Ok(out)
}

/// The identity of a rendered object, and whether it is a hook without a name (then
/// `name` is its `generateName`, possibly empty). Only hooks may go without a name: a
/// resource without one could not be tracked.
fn identity(
    object: &Value,
    role: &Role,
    origin: &Origin,
) -> Result<(ObjectRef, bool), RenderError> {
    match ObjectRef::from_object(object) {
        Ok(id) => Ok((id, false)),
        Err(e) => {
            let has_name = object.pointer("/metadata/name").is_some();
            if matches!(role, Role::Hook(_)) && !has_name {
                let mut named = object.clone();
                let prefix = object
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                named["metadata"]["name"] = Value::String("-".into());
                if let Ok(mut id) = ObjectRef::from_object(&named) {
                    id.name = prefix;
                    return Ok((id, true));
                }
            }
            let hint = if object.pointer("/metadata/generateName").is_some() {
                " (generateName is for hooks: an object of the Application without a name cannot be tracked)"
            } else {
                ""
            };
            Err(RenderError::Invalid {
                origin: origin.clone(),
                message: format!("{e}{hint}"),
            })
        }
    }
}

fn unknown(origin: Origin, object: ObjectRef) -> RenderError {
    let group = if object.group.is_empty() {
        "core".to_string()
    } else {
        object.group.clone()
    };
    RenderError::UnknownKind {
        message: format!(
            "the cluster serves no kind {} in API group {group} (is its CRD installed, or defined in this source?)",
            object.kind
        ),
        origin,
        object: Box::new(object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(file: &str, doc: usize, object: Value) -> RawObject {
        RawObject {
            object,
            origin: Origin {
                file: file.into(),
                document: doc,
            },
        }
    }

    #[test]
    fn namespaces_are_filled_in_only_for_namespaced_kinds() {
        let objs = normalize(
            vec![
                raw("a.yaml", 1, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})),
                raw("a.yaml", 2, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "namespace": "x"}})),
                raw("b.yaml", 1, json!({"apiVersion": "v1", "kind": "List", "items": [
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}},
                    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "other"}}]})),
            ],
            "prod",
            &Scopes::builtin(),
        )
        .unwrap();
        let ids: Vec<String> = objs.iter().map(|o| o.id.key()).collect();
        assert_eq!(
            ids,
            [
                "/ConfigMap/prod/c",
                "/Namespace//prod",
                "rbac.authorization.k8s.io/ClusterRole//r",
                "/Secret/other/s"
            ]
        );
        assert!(objs[1].object["metadata"].get("namespace").is_none());
    }

    #[test]
    fn custom_kinds_take_their_scope_from_rendered_crds() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "things.example.com"},
                         "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Thing", "plural": "things"}}});
        let thing =
            json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}});
        let objs = normalize(
            vec![raw("crd.yaml", 1, crd), raw("t.yaml", 1, thing.clone())],
            "prod",
            &Scopes::builtin(),
        )
        .unwrap();
        assert_eq!(objs[1].id.namespace, None);
        let mut strict = Scopes::builtin();
        strict.authoritative = true;
        let err = normalize(vec![raw("t.yaml", 1, thing)], "prod", &strict).unwrap_err();
        assert!(
            err.to_string()
                .contains("the cluster serves no kind Thing in API group example.com"),
            "{err}"
        );
    }

    #[test]
    fn duplicates_name_both_places_and_bad_objects_name_the_field() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let err = normalize(
            vec![raw("a.yaml", 1, cm.clone()), raw("b/c.yaml", 3, cm)],
            "prod",
            &Scopes::builtin(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap prod/c is defined twice: in a.yaml (document 1) and in b/c.yaml (document 3)"
        );
        let err = normalize(
            vec![raw(
                "x.yaml",
                2,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
            )],
            "p",
            &Scopes::builtin(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml (document 2): metadata.name is missing or empty"
        );
        let err = normalize(
            vec![raw(
                "x.yaml",
                1,
                json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
            )],
            "p",
            &Scopes::builtin(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml (document 1): apiVersion is missing or empty"
        );
        let err = normalize(
            vec![raw(
                "y.yaml",
                3,
                json!({"apiVersion": "v1", "metadata": {"name": "a"}}),
            )],
            "p",
            &Scopes::builtin(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "y.yaml (document 3): kind is missing or empty"
        );
        let bad_wave = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"capstan.dev/sync-wave": "soon"}}});
        let err = normalize(vec![raw("w.yaml", 1, bad_wave)], "p", &Scopes::builtin()).unwrap_err();
        assert!(
            err.to_string()
                .contains("capstan.dev/sync-wave must be an integer, got \"soon\""),
            "{err}"
        );
    }
}
