//! Structural knowledge that merging needs: how each list is merged (atomic, set, or a
//! map keyed by some fields) and which maps are atomic.
//!
//! Server-side apply, strategic merge patch and field ownership all ask the same
//! questions, so they share one [`Schema`]. Built-in kinds answer from a table that
//! mirrors the `+listType`/`+listMapKey`/`patchMergeKey` markers of the Kubernetes API
//! types; custom resources answer from the CRD's `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`. Anything unknown is a
//! granular map or an atomic list, as in structured-merge-diff.

use serde_json::Value;

/// How a list is merged and how its items are identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The whole list is one value, replaced as a unit.
    Atomic,
    /// A set of scalars, merged by union.
    Set,
    /// A map of objects keyed by the named fields.
    Map(Vec<String>),
}

/// How strategic merge patch treats a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchStrategy {
    /// The patch value replaces the list.
    Replace,
    /// Objects are merged by this key.
    MergeByKey(String),
    /// Scalars are merged by union.
    MergeScalars,
}

/// Everything known about one list field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInfo {
    /// Server-side apply semantics.
    pub list_type: ListType,
    /// Strategic merge patch semantics.
    pub patch: PatchStrategy,
}

impl ListInfo {
    fn atomic() -> Self {
        ListInfo {
            list_type: ListType::Atomic,
            patch: PatchStrategy::Replace,
        }
    }

    fn map(keys: &[&str], merge_key: &str) -> Self {
        ListInfo {
            list_type: ListType::Map(keys.iter().map(|k| k.to_string()).collect()),
            patch: PatchStrategy::MergeByKey(merge_key.to_string()),
        }
    }

    fn set() -> Self {
        ListInfo {
            list_type: ListType::Set,
            patch: PatchStrategy::MergeScalars,
        }
    }
}

/// The schema of one kind, built-in or custom.
#[derive(Debug, Clone, Copy)]
pub enum Schema<'a> {
    /// A compiled-in kind.
    Builtin {
        /// API group.
        group: &'a str,
        /// Kind.
        kind: &'a str,
    },
    /// A custom resource with its `openAPIV3Schema` (if any).
    Custom(Option<&'a Value>),
}

impl Schema<'_> {
    /// The list semantics of the list at `path` (field names from the root, list steps elided).
    pub fn list_info(&self, path: &[&str]) -> ListInfo {
        if let Some(info) = common_list(path) {
            return info;
        }
        match self {
            Schema::Builtin { group, kind } => {
                builtin_list(group, kind, path).unwrap_or_else(ListInfo::atomic)
            }
            Schema::Custom(Some(root)) => custom_node(root, path)
                .map(custom_list)
                .unwrap_or_else(ListInfo::atomic),
            Schema::Custom(None) => ListInfo::atomic(),
        }
    }

    /// Whether the map at `path` is atomic (replaced and owned as a unit).
    pub fn is_atomic_map(&self, path: &[&str]) -> bool {
        match self {
            Schema::Builtin { group, kind } => builtin_atomic_map(group, kind, path),
            Schema::Custom(Some(root)) => {
                custom_node(root, path)
                    .and_then(|n| n.get("x-kubernetes-map-type"))
                    .and_then(Value::as_str)
                    == Some("atomic")
            }
            Schema::Custom(None) => false,
        }
    }

    /// The default of a list-map key field that the API server fills in (e.g. `protocol: TCP`),
    /// needed to identify list items that omit it.
    pub fn key_default(&self, list_path: &[&str], key: &str) -> Option<Value> {
        if key != "protocol" {
            return None;
        }
        match self {
            Schema::Builtin { .. } => {
                let last = list_path.last().copied().unwrap_or("");
                matches!(last, "ports").then(|| Value::String("TCP".into()))
            }
            Schema::Custom(_) => None,
        }
    }
}

fn common_list(path: &[&str]) -> Option<ListInfo> {
    match path {
        ["metadata", "ownerReferences"] => Some(ListInfo::map(&["uid"], "uid")),
        ["metadata", "finalizers"] => Some(ListInfo::set()),
        ["metadata", "managedFields"] => Some(ListInfo::atomic()),
        _ => None,
    }
}

/// Where the PodSpec of a workload kind lives.
fn pod_spec_prefix(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (group, kind) {
        ("", "Pod") => Some(&["spec"]),
        ("", "PodTemplate") => Some(&["template", "spec"]),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            Some(&["spec", "template", "spec"])
        }
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

fn pod_spec_list(rel: &[&str]) -> Option<ListInfo> {
    let container_lists = ["containers", "initContainers", "ephemeralContainers"];
    match rel {
        [c] if container_lists.contains(c) => Some(ListInfo::map(&["name"], "name")),
        ["volumes"] => Some(ListInfo::map(&["name"], "name")),
        ["imagePullSecrets"] => Some(ListInfo::map(&["name"], "name")),
        ["hostAliases"] => Some(ListInfo::map(&["ip"], "ip")),
        ["topologySpreadConstraints"] => Some(ListInfo::map(
            &["topologyKey", "whenUnsatisfiable"],
            "topologyKey",
        )),
        ["resourceClaims"] | ["schedulingGates"] => Some(ListInfo::map(&["name"], "name")),
        [c, "ports"] if container_lists.contains(c) => Some(ListInfo::map(
            &["containerPort", "protocol"],
            "containerPort",
        )),
        [c, "env"] if container_lists.contains(c) => Some(ListInfo::map(&["name"], "name")),
        [c, "volumeMounts"] if container_lists.contains(c) => {
            Some(ListInfo::map(&["mountPath"], "mountPath"))
        }
        [c, "volumeDevices"] if container_lists.contains(c) => {
            Some(ListInfo::map(&["devicePath"], "devicePath"))
        }
        [c, "resizePolicy"] if container_lists.contains(c) => Some(ListInfo::atomic()),
        _ => None,
    }
}

fn builtin_list(group: &str, kind: &str, path: &[&str]) -> Option<ListInfo> {
    if let Some(prefix) = pod_spec_prefix(group, kind)
        && path.len() > prefix.len()
        && &path[..prefix.len()] == prefix
        && let Some(info) = pod_spec_list(&path[prefix.len()..])
    {
        return Some(info);
    }
    match (group, kind, path) {
        (_, _, ["status", "conditions"]) => Some(ListInfo::map(&["type"], "type")),
        ("", "Service", ["spec", "ports"]) => Some(ListInfo::map(&["port", "protocol"], "port")),
        ("", "Pod", ["status", "containerStatuses" | "initContainerStatuses"]) => {
            Some(ListInfo::atomic())
        }
        ("apps", "StatefulSet", ["spec", "volumeClaimTemplates"]) => Some(ListInfo::atomic()),
        _ => None,
    }
}

fn builtin_atomic_map(group: &str, kind: &str, path: &[&str]) -> bool {
    // metav1.LabelSelector is `+structType=atomic`.
    matches!(
        (group, kind, path),
        (
            "apps",
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet",
            ["spec", "selector"]
        ) | ("batch", "Job", ["spec", "selector"])
            | ("policy", "PodDisruptionBudget", ["spec", "selector"])
            | (
                "networking.k8s.io",
                "NetworkPolicy",
                ["spec", "podSelector"]
            )
    )
}

/// The schema node at a field path, descending through array `items` implicitly.
fn custom_node<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut node = root;
    for seg in path {
        while node.get("type").and_then(Value::as_str) == Some("array") {
            node = node.get("items")?;
        }
        node = match node.get("properties").and_then(|p| p.get(*seg)) {
            Some(n) => n,
            None => match node.get("additionalProperties") {
                Some(ap) if ap.is_object() => ap,
                _ => return None,
            },
        };
    }
    Some(node)
}

fn custom_list(node: &Value) -> ListInfo {
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListInfo::set(),
        Some("map") => {
            let keys: Vec<String> = node
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                return ListInfo::atomic();
            }
            let first = keys[0].clone();
            ListInfo {
                list_type: ListType::Map(keys),
                patch: PatchStrategy::MergeByKey(first),
            }
        }
        _ => ListInfo::atomic(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_keyed_by_name_in_every_workload() {
        let d = Schema::Builtin {
            group: "apps",
            kind: "Deployment",
        };
        assert_eq!(
            d.list_info(&["spec", "template", "spec", "containers"])
                .list_type,
            ListType::Map(vec!["name".into()])
        );
        let cj = Schema::Builtin {
            group: "batch",
            kind: "CronJob",
        };
        assert_eq!(
            cj.list_info(&[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
                "env"
            ])
            .patch,
            PatchStrategy::MergeByKey("name".into())
        );
        assert_eq!(
            d.list_info(&["spec", "template", "spec", "containers", "args"])
                .list_type,
            ListType::Atomic
        );
        assert_eq!(
            d.list_info(&["metadata", "finalizers"]).list_type,
            ListType::Set
        );
        assert!(d.is_atomic_map(&["spec", "selector"]));
    }

    #[test]
    fn custom_schema_list_markers() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "servers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}},
            "plain": {"type": "array", "items": {"type": "string"}},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic"}
        }}}});
        let s = Schema::Custom(Some(&schema));
        assert_eq!(
            s.list_info(&["spec", "servers"]).list_type,
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            s.list_info(&["spec", "servers", "tags"]).list_type,
            ListType::Set
        );
        assert_eq!(s.list_info(&["spec", "plain"]).list_type, ListType::Atomic);
        assert!(s.is_atomic_map(&["spec", "sel"]));
    }
}
