//! Which kinds are namespaced: from the cluster's discovery, or offline from the
//! built-in Kubernetes kinds plus the CRDs in the rendered set.

use std::collections::HashMap;

use serde_json::Value;

use super::RawObject;

/// What is known about a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
    /// The plural resource name, when known.
    pub plural: String,
}

/// Kind scopes, keyed by (group, kind).
#[derive(Debug, Clone, Default)]
pub struct Scopes {
    kinds: HashMap<(String, String), KindInfo>,
    /// From a cluster's discovery: an unknown kind is an error (its CRD is missing).
    pub(crate) authoritative: bool,
}

/// Cluster-scoped kinds of Kubernetes (everything else built in is namespaced).
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("policy", "PodSecurityPolicy"),
];

/// Namespaced kinds of Kubernetes (so offline rendering knows them for sure).
const NAMESPACED: &[(&str, &str)] = &[
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "Service"),
    ("", "ServiceAccount"),
    ("", "Pod"),
    ("", "Endpoints"),
    ("", "Event"),
    ("", "PersistentVolumeClaim"),
    ("", "ResourceQuota"),
    ("", "LimitRange"),
    ("", "ReplicationController"),
    ("", "PodTemplate"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("apps", "ControllerRevision"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("coordination.k8s.io", "Lease"),
    ("policy", "PodDisruptionBudget"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("events.k8s.io", "Event"),
];

impl Scopes {
    /// The built-in Kubernetes kinds, for rendering without a cluster.
    pub fn builtin() -> Self {
        let mut kinds = HashMap::new();
        for (g, k) in CLUSTER_SCOPED {
            kinds.insert(
                (g.to_string(), k.to_string()),
                KindInfo {
                    namespaced: false,
                    plural: String::new(),
                },
            );
        }
        for (g, k) in NAMESPACED {
            kinds.insert(
                (g.to_string(), k.to_string()),
                KindInfo {
                    namespaced: true,
                    plural: String::new(),
                },
            );
        }
        Scopes {
            kinds,
            authoritative: false,
        }
    }

    /// Everything the cluster serves, from its discovery.
    pub async fn discover(client: &kube::Client) -> Result<Self, kube::Error> {
        let discovery = kube::discovery::Discovery::new(client.clone())
            .run()
            .await?;
        Ok(Scopes::from_discovery(&discovery))
    }

    /// Everything a discovery found.
    pub fn from_discovery(discovery: &kube::discovery::Discovery) -> Self {
        let mut kinds = HashMap::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                kinds.insert(
                    (ar.group.clone(), ar.kind.clone()),
                    KindInfo {
                        namespaced: caps.scope == kube::discovery::Scope::Namespaced,
                        plural: ar.plural.clone(),
                    },
                );
            }
        }
        Scopes {
            kinds,
            authoritative: true,
        }
    }

    /// Learn the kinds defined by CRDs among the rendered objects.
    pub fn add_crds(&mut self, objects: &[RawObject]) {
        for o in objects {
            let obj = &o.object;
            let is_crd = obj.get("kind").and_then(Value::as_str)
                == Some("CustomResourceDefinition")
                && obj
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"));
            if !is_crd {
                continue;
            }
            let s = |p: &str| {
                obj.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let (group, kind) = (s("/spec/group"), s("/spec/names/kind"));
            if kind.is_empty() {
                continue;
            }
            self.kinds.insert(
                (group, kind),
                KindInfo {
                    namespaced: s("/spec/scope") != "Cluster",
                    plural: s("/spec/names/plural"),
                },
            );
        }
    }

    /// Whether `kind` in `group` is namespaced; `None` when unknown.
    pub fn namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.kinds
            .get(&(group.to_string(), kind.to_string()))
            .map(|k| k.namespaced)
    }

    /// Whether these scopes come from a cluster (unknown kinds are then errors).
    pub fn is_authoritative(&self) -> bool {
        self.authoritative
    }
}
