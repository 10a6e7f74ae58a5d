//! The resources this server serves: the built-in table and the resources that
//! established CustomResourceDefinitions add.
//!
//! A [`ResourceDef`] is what discovery advertises for one group/version/resource and
//! what every handler consults for scope, kind and subresources. Storage is keyed by
//! [`GroupResource`] (version-independent): the versions of one CRD share one storage.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

/// The version-independent identity of a resource, e.g. `deployments.apps`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// A group/resource pair.
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }

    /// The storage key prefix, `resource.group` (or `resource` for the core group).
    pub fn storage_name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// How a resource's objects are named and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most resources).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Rfc1035Label,
    /// Any path segment without `/` or `%` (RBAC objects such as `system:aggregate-to-view`).
    PathSegment,
}

/// Where a resource comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Compiled into the server.
    Builtin,
    /// Served because of a CustomResourceDefinition.
    Custom(Arc<CustomVersion>),
}

/// One served version of a CRD, with what is needed to validate and print its objects.
#[derive(Debug, Clone)]
pub struct CustomVersion {
    /// Name of the CRD (`plural.group`).
    pub crd_name: String,
    /// The version objects are stored at.
    pub storage_version: String,
    /// `openAPIV3Schema` of this version, if any.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns` of this version.
    pub printer_columns: Vec<Value>,
}

/// One group/version/resource as served and advertised by discovery.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group, empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind of the objects, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Singular resource name, e.g. `deployment`.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Whether the `/status` subresource exists (status is then ignored on the main resource).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained.
    pub generation: bool,
    /// Naming rule for `metadata.name`.
    pub name_rule: NameRule,
    /// Built-in or custom.
    pub origin: Origin,
}

impl ResourceDef {
    /// The version-independent identity.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `<Kind>List`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// True for resources served because of a CRD.
    pub fn is_custom(&self) -> bool {
        matches!(self.origin, Origin::Custom(_))
    }

    /// The version objects of this resource are stored at.
    pub fn storage_version(&self) -> &str {
        match &self.origin {
            Origin::Builtin => &self.version,
            Origin::Custom(c) => &c.storage_version,
        }
    }

    /// The CRD schema for this version, if custom and given.
    pub fn custom_schema(&self) -> Option<&Value> {
        match &self.origin {
            Origin::Custom(c) => c.schema.as_ref(),
            Origin::Builtin => None,
        }
    }
}

/// (group, version, kind, plural, namespaced, short names, status, generation, categories)
type BuiltinRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
    bool,
    &'static [&'static str],
);

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// The built-in resources. Scope, short names and categories follow kube-apiserver 1.32.
const BUILTINS: &[BuiltinRow] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        true,
        false,
        NONE,
    ),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        false,
        false,
        NONE,
    ),
    ("", "v1", "Secret", "secrets", true, &[], false, false, NONE),
    (
        "",
        "v1",
        "Service",
        "services",
        true,
        &["svc"],
        true,
        false,
        ALL,
    ),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        false,
        NONE,
    ),
    ("", "v1", "Pod", "pods", true, &["po"], true, false, ALL),
    ("", "v1", "Node", "nodes", false, &["no"], true, false, NONE),
    (
        "",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
        false,
        NONE,
    ),
    (
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        false,
        false,
        NONE,
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
        false,
        NONE,
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        true,
        false,
        NONE,
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        true,
        false,
        NONE,
    ),
    (
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        false,
        false,
        NONE,
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        true,
        ALL,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
        true,
        ALL,
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        true,
        true,
        ALL,
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
        true,
        ALL,
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &[],
        false,
        false,
        NONE,
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        false,
        false,
        NONE,
    ),
    ("batch", "v1", "Job", "jobs", true, &[], true, true, ALL),
    (
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        true,
        true,
        ALL,
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        true,
        true,
        NONE,
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
        false,
        false,
        NONE,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        false,
        true,
        NONE,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        false,
        false,
        NONE,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        false,
        false,
        NONE,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
        false,
        NONE,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
        false,
        NONE,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
        false,
        NONE,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        true,
        true,
        NONE,
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        true,
        false,
        ALL,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        false,
        false,
        NONE,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        false,
        false,
        NONE,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
        true,
        NONE,
    ),
];

fn builtin_defs() -> Vec<ResourceDef> {
    BUILTINS
        .iter()
        .map(
            |&(group, version, kind, plural, namespaced, short, status, generation, categories)| {
                let name_rule = match plural {
                    "namespaces" => NameRule::Label,
                    "services" => NameRule::Rfc1035Label,
                    _ if group == "rbac.authorization.k8s.io" => NameRule::PathSegment,
                    _ => NameRule::Subdomain,
                };
                ResourceDef {
                    group: group.to_string(),
                    version: version.to_string(),
                    kind: kind.to_string(),
                    plural: plural.to_string(),
                    singular: kind.to_lowercase(),
                    namespaced,
                    short_names: short.iter().map(|s| s.to_string()).collect(),
                    categories: categories.iter().map(|s| s.to_string()).collect(),
                    status_subresource: status,
                    generation,
                    name_rule,
                    origin: Origin::Builtin,
                }
            },
        )
        .collect()
}

/// Key of a served resource: (group, version, plural).
type GvrKey = (String, String, String);

/// The set of served resources; CRDs add to and remove from it at run time.
#[derive(Debug)]
pub struct Registry {
    served: RwLock<BTreeMap<GvrKey, Arc<ResourceDef>>>,
    /// Order in which groups were first added, for discovery (built-ins first, like kube-apiserver).
    group_order: RwLock<Vec<String>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// A registry with the built-in resources.
    pub fn new() -> Self {
        let reg = Registry {
            served: RwLock::new(BTreeMap::new()),
            group_order: RwLock::new(Vec::new()),
        };
        for def in builtin_defs() {
            reg.insert(def);
        }
        reg
    }

    fn insert(&self, def: ResourceDef) {
        {
            let mut order = self.group_order.write();
            if !order.contains(&def.group) {
                order.push(def.group.clone());
            }
        }
        self.served.write().insert(
            (def.group.clone(), def.version.clone(), def.plural.clone()),
            Arc::new(def),
        );
    }

    /// The resource served at group/version/plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.served
            .read()
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Any served version of a group/resource, preferring the storage version.
    pub fn any_version(&self, gr: &GroupResource) -> Option<Arc<ResourceDef>> {
        let served = self.served.read();
        let mut found: Option<Arc<ResourceDef>> = None;
        for ((g, _, p), def) in served.iter() {
            if g == &gr.group && p == &gr.resource {
                if def.version == def.storage_version() {
                    return Some(def.clone());
                }
                found.get_or_insert_with(|| def.clone());
            }
        }
        found
    }

    /// The resource serving `kind` in `apiVersion` (e.g. `apps/v1`, `Deployment`).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        let (group, version) = split_api_version(api_version);
        self.served
            .read()
            .values()
            .find(|d| d.group == group && d.version == version && d.kind == kind)
            .cloned()
    }

    /// Every served resource, in discovery order (group order, then version, then plural).
    pub fn all(&self) -> Vec<Arc<ResourceDef>> {
        let order = self.group_order.read().clone();
        let served = self.served.read();
        let mut out: Vec<Arc<ResourceDef>> = Vec::with_capacity(served.len());
        for group in &order {
            out.extend(served.values().filter(|d| &d.group == group).cloned());
        }
        out
    }

    /// The served groups, in discovery order, each with its versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let order = self.group_order.read().clone();
        let served = self.served.read();
        let mut out = Vec::new();
        for group in order {
            let mut versions: Vec<String> = Vec::new();
            for ((g, v, _), def) in served.iter() {
                if g == &group && !versions.contains(v) {
                    if def.version == def.storage_version() {
                        versions.insert(0, v.clone());
                    } else {
                        versions.push(v.clone());
                    }
                }
            }
            if !versions.is_empty() {
                out.push((group, versions));
            }
        }
        out
    }

    /// Serve the versions of a CRD, replacing whatever it served before.
    pub fn serve_custom(&self, defs: Vec<ResourceDef>) {
        if let Some(first) = defs.first() {
            self.unserve_custom(&first.group_resource());
        }
        for def in defs {
            self.insert(def);
        }
    }

    /// Stop serving every version of a custom group/resource.
    pub fn unserve_custom(&self, gr: &GroupResource) {
        self.served
            .write()
            .retain(|(g, _, p), def| !(g == &gr.group && p == &gr.resource && def.is_custom()));
    }
}

/// Split `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_kube_scope_and_short_names() {
        let reg = Registry::new();
        let ns = reg.get("", "v1", "namespaces").unwrap();
        assert!(!ns.namespaced);
        assert_eq!(ns.name_rule, NameRule::Label);
        let deploy = reg.get("apps", "v1", "deployments").unwrap();
        assert!(deploy.namespaced);
        assert_eq!(deploy.short_names, vec!["deploy"]);
        assert_eq!(deploy.api_version(), "apps/v1");
        assert!(
            reg.by_kind("rbac.authorization.k8s.io/v1", "ClusterRole")
                .is_some()
        );
    }

    #[test]
    fn core_group_comes_first_in_discovery() {
        let reg = Registry::new();
        assert_eq!(reg.groups()[0].0, "");
        assert_eq!(reg.groups()[1].0, "apps");
    }
}
