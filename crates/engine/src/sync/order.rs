//! The order objects are applied in: by sync wave, then CRDs and Namespaces first
//! (their phase waits until CRDs are established), then the rest by kind — the order
//! kubectl and Argo CD use, so what a workload needs exists before it.

use std::collections::BTreeMap;

use capstan_core::SyncWave;

use crate::plan::PlannedObject;

/// Kinds in apply order; unknown kinds (custom resources) come after all of these.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The rank of a kind in [`KIND_ORDER`].
pub fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// Whether a kind belongs to the first phase of a wave.
pub fn is_foundation(kind: &str) -> bool {
    matches!(kind, "CustomResourceDefinition" | "Namespace")
}

/// One wave: its foundation phase, then groups of the same kind rank in order.
#[derive(Debug, Default)]
pub struct Wave {
    /// The wave number.
    pub wave: SyncWave,
    /// CRDs and Namespaces.
    pub foundation: Vec<usize>,
    /// The other objects, grouped by kind rank (applied group after group).
    pub groups: Vec<Vec<usize>>,
}

impl Wave {
    /// Every object of the wave.
    pub fn all(&self) -> impl Iterator<Item = usize> + '_ {
        self.foundation
            .iter()
            .copied()
            .chain(self.groups.iter().flatten().copied())
    }
}

/// Arrange planned objects (by index) into waves in apply order.
pub fn waves(objects: &[PlannedObject]) -> Vec<Wave> {
    let mut by_wave: BTreeMap<SyncWave, Vec<usize>> = BTreeMap::new();
    for (i, o) in objects.iter().enumerate() {
        by_wave.entry(o.desired.wave).or_default().push(i);
    }
    by_wave
        .into_iter()
        .map(|(wave, idx)| {
            let mut w = Wave {
                wave,
                ..Default::default()
            };
            let mut ranked: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for i in idx {
                let kind = &objects[i].desired.id.kind;
                if is_foundation(kind) {
                    w.foundation.push(i);
                } else {
                    ranked.entry(kind_rank(kind)).or_default().push(i);
                }
            }
            // Namespaces before CRDs inside the foundation phase.
            w.foundation.sort_by_key(|i| {
                (
                    kind_rank(&objects[*i].desired.id.kind),
                    objects[*i].desired.id.clone(),
                )
            });
            for (_, mut group) in ranked {
                group.sort_by_key(|i| objects[*i].desired.id.clone());
                w.groups.push(group);
            }
            w
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{DesiredObject, Origin};
    use capstan_core::{Change, ObjectRef};
    use serde_json::json;

    fn obj(kind: &str, name: &str, wave: i32) -> PlannedObject {
        PlannedObject {
            desired: DesiredObject {
                id: ObjectRef::new("", kind, Some("d"), name),
                object: json!({}),
                origin: Origin {
                    file: "f".into(),
                    document: 1,
                },
                wave: SyncWave(wave),
            },
            live: None,
            change: Change::Create,
            adopt: false,
            error: None,
        }
    }

    #[test]
    fn waves_then_foundation_then_kind_order() {
        let objs = vec![
            obj("Deployment", "web", 0),
            obj("ConfigMap", "cfg", 0),
            obj("Namespace", "ns", 0),
            obj("Job", "migrate", -1),
            obj("Service", "web", 0),
            obj("Widget", "w", 0),
            obj("ConfigMap", "after", 1),
        ];
        let ws = waves(&objs);
        assert_eq!(ws.iter().map(|w| w.wave.0).collect::<Vec<_>>(), [-1, 0, 1]);
        let names = |w: &Wave| {
            w.all()
                .map(|i| objs[i].desired.id.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&ws[0]), ["migrate"]);
        assert_eq!(names(&ws[1]), ["ns", "cfg", "web", "web", "w"]);
        assert_eq!(
            ws[1].groups.len(),
            4,
            "ConfigMap, Service, Deployment, then custom kinds"
        );
    }

    #[test]
    fn one_wave_follows_the_kind_order_of_the_issue() {
        // Namespace, ResourceQuota, LimitRange, ServiceAccount, Secret, ConfigMap, PVC,
        // RBAC, Service, workloads, Ingress — given here in reverse.
        let expected = [
            "Namespace",
            "ResourceQuota",
            "LimitRange",
            "ServiceAccount",
            "Secret",
            "ConfigMap",
            "PersistentVolumeClaim",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "DaemonSet",
            "Pod",
            "ReplicaSet",
            "Deployment",
            "StatefulSet",
            "Job",
            "CronJob",
            "Ingress",
            "Widget",
        ];
        let objs: Vec<PlannedObject> = expected.iter().rev().map(|k| obj(k, "x", 0)).collect();
        let ws = waves(&objs);
        assert_eq!(ws.len(), 1);
        let kinds: Vec<&str> = ws[0]
            .all()
            .map(|i| objs[i].desired.id.kind.as_str())
            .collect();
        assert_eq!(kinds, expected);
        assert_eq!(
            ws[0].groups.len(),
            expected.len() - 1,
            "one group per kind after the Namespace: a kind is applied only after the one before it"
        );
    }
}
