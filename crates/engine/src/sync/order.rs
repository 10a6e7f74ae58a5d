//! The order of a sync, as Argo CD orders it (so its repositories sync the same way):
//! every object and hook run is a task, sorted by phase (PreSync, Sync, PostSync,
//! SyncFail), then wave, then kind (the order kubectl uses, so what a workload needs
//! exists before it), then name. Two adjustments follow: a Namespace moves to just
//! before the first task that lives in it, and a CRD to just before the first object
//! of its kind — each taking that task's phase and wave. Tasks of one phase and wave
//! are a step; a sync runs step after step.

use std::collections::BTreeMap;

use capstan_core::{HookType, SyncWave};
use serde_json::Value;

use crate::plan::PlannedObject;
use crate::render::DesiredObject;

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
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
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

/// The rank of a kind in the apply order.
pub fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// Whether a kind must exist (and be established) before the rest of its step.
pub fn is_foundation(kind: &str) -> bool {
    matches!(kind, "CustomResourceDefinition" | "Namespace")
}

/// What a task applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One of the Application's objects (an index into the plan's objects).
    Resource(usize),
    /// A hook run (an index into the hooks).
    Hook(usize),
}

/// One thing a sync does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The phase it runs in.
    pub phase: HookType,
    /// Its wave.
    pub wave: SyncWave,
    /// Its kind.
    pub kind: String,
    /// Its API group.
    pub group: String,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its name (the prefix, for a hook that has none yet).
    pub name: String,
    /// For a CRD: the group and kind it defines.
    pub defines: Option<(String, String)>,
    /// What it applies.
    pub target: Target,
}

impl Task {
    fn key(&self) -> (HookType, SyncWave, usize, &str) {
        (self.phase, self.wave, kind_rank(&self.kind), &self.name)
    }
}

/// A run of tasks of one phase and wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The phase.
    pub phase: HookType,
    /// The wave.
    pub wave: SyncWave,
    /// The tasks, in apply order.
    pub tasks: Vec<Task>,
}

fn task(obj: &DesiredObject, phase: HookType, target: Target) -> Task {
    let defines = (obj.id.kind == "CustomResourceDefinition").then(|| {
        let s = |p: &str| {
            obj.object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        (s("/spec/group"), s("/spec/names/kind"))
    });
    Task {
        phase,
        wave: obj.wave,
        kind: obj.id.kind.clone(),
        group: obj.id.group.clone(),
        namespace: obj.id.namespace.clone(),
        name: obj.id.name.clone(),
        defines,
        target,
    }
}

/// Every task of a sync in order: the planned objects (Sync phase) and a run of each
/// hook in each of its phases (PreSync, Sync, PostSync, SyncFail).
pub fn tasks(objects: &[PlannedObject], hooks: &[(HookType, &DesiredObject)]) -> Vec<Task> {
    let mut tasks: Vec<Task> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| task(&o.desired, HookType::Sync, Target::Resource(i)))
        .chain(
            hooks
                .iter()
                .enumerate()
                .map(|(i, (phase, h))| task(h, *phase, Target::Hook(i))),
        )
        .collect();
    tasks.sort_by(|a, b| a.key().cmp(&b.key()));
    adjust(&mut tasks);
    tasks
}

/// Move each Namespace before the first task in it, and each CRD before the first
/// object of its kind, when that task comes earlier; they take its phase and wave.
fn adjust(tasks: &mut Vec<Task>) {
    let mut i = 0;
    while i < tasks.len() {
        let t = &tasks[i];
        let first_user = if t.kind == "Namespace" && t.group.is_empty() {
            let ns = t.name.clone();
            tasks[..i]
                .iter()
                .position(|o| o.namespace.as_deref() == Some(ns.as_str()))
        } else if let Some((group, kind)) = &t.defines {
            tasks[..i]
                .iter()
                .position(|o| o.group == *group && o.kind == *kind)
        } else {
            None
        };
        match first_user {
            Some(j) => {
                let mut moved = tasks.remove(i);
                moved.phase = tasks[j].phase;
                moved.wave = tasks[j].wave;
                tasks.insert(j, moved);
                // what was at i is now at i + 1: look at it next
                i += 1;
            }
            None => i += 1,
        }
    }
}

/// The tasks grouped into steps (consecutive tasks of one phase and wave).
pub fn steps(tasks: Vec<Task>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for t in tasks {
        match out.last_mut() {
            Some(s) if s.phase == t.phase && s.wave == t.wave => s.tasks.push(t),
            _ => out.push(Step {
                phase: t.phase,
                wave: t.wave,
                tasks: vec![t],
            }),
        }
    }
    out
}

impl Step {
    /// The step's tasks as applied: foundation kinds (Namespaces, CRDs) first, then
    /// groups of the same kind rank, one after the other.
    pub fn groups(&self) -> (Vec<&Task>, Vec<Vec<&Task>>) {
        let mut foundation = Vec::new();
        let mut ranked: BTreeMap<usize, Vec<&Task>> = BTreeMap::new();
        for t in &self.tasks {
            if is_foundation(&t.kind) {
                foundation.push(t);
            } else {
                ranked.entry(kind_rank(&t.kind)).or_default().push(t);
            }
        }
        (foundation, ranked.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_core::{ObjectRef, Role};
    use serde_json::json;

    fn obj(kind: &str, name: &str, wave: i32) -> DesiredObject {
        let mut d = DesiredObject::new(
            ObjectRef::new("", kind, Some("d"), name),
            json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}),
            crate::render::Origin {
                file: "t.yaml".into(),
                document: 1,
            },
        );
        d.wave = SyncWave(wave);
        d.role = Role::Resource;
        d
    }

    fn planned(d: DesiredObject) -> PlannedObject {
        PlannedObject {
            desired: d,
            live: None,
            change: capstan_core::Change::Create,
            adopt: false,
            error: None,
            options: capstan_core::SyncOptionSet::default(),
        }
    }

    #[test]
    fn tasks_sort_by_phase_wave_kind_and_name() {
        let objects = vec![
            planned(obj("Pod", "p", 0)),
            planned(obj("Service", "s", 0)),
            planned(obj("ConfigMap", "b", 1)),
            planned(obj("ConfigMap", "a", 1)),
            planned(obj("Secret", "early", -1)),
        ];
        let pre = obj("Job", "migrate", 0);
        let post = obj("Job", "smoke", 0);
        let hooks = vec![(HookType::PostSync, &post), (HookType::PreSync, &pre)];
        let order: Vec<String> = tasks(&objects, &hooks)
            .iter()
            .map(|t| format!("{}/{}", t.phase, t.name))
            .collect();
        assert_eq!(
            order,
            [
                "PreSync/migrate",
                "Sync/early",
                "Sync/s",
                "Sync/p",
                "Sync/a",
                "Sync/b",
                "PostSync/smoke"
            ]
        );
    }

    #[test]
    fn a_namespace_moves_before_the_first_task_in_it() {
        let mut ns = obj("Namespace", "apps", 1);
        ns.id.namespace = None;
        let mut hook = obj("Job", "migrate", 0);
        hook.id.namespace = Some("apps".into());
        let objects = vec![planned(ns)];
        let hooks = vec![(HookType::PreSync, &hook)];
        let ts = tasks(&objects, &hooks);
        assert_eq!(ts[0].kind, "Namespace");
        assert_eq!((ts[0].phase, ts[0].wave), (HookType::PreSync, SyncWave(0)));
        assert_eq!(steps(ts).len(), 1);
    }
}
