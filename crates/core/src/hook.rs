//! Sync hooks: objects applied at a phase of a sync (before it, during it, after it,
//! when it fails, when the Application is deleted), awaited, then deleted by their
//! policy — never part of the Application's inventory.
//!
//! Annotations, read as Argo CD reads them (so Argo CD repositories work unchanged),
//! under Capstan's own names too; Helm's hook annotations map to the same phases:
//!
//! | Capstan | Argo CD | Helm |
//! | --- | --- | --- |
//! | `capstan.dev/hook` | `argocd.argoproj.io/hook` | `helm.sh/hook` (`pre-install`/`pre-upgrade` → PreSync, `post-install`/`post-upgrade` → PostSync, `pre-delete` → PreDelete, `post-delete` → PostDelete) |
//! | `capstan.dev/hook-delete-policy` | `argocd.argoproj.io/hook-delete-policy` | `helm.sh/hook-delete-policy` (`before-hook-creation`, `hook-succeeded`, `hook-failed`) |
//!
//! A value lists types separated by commas (`PreSync,PostSync`: the hook runs in both
//! phases). Unknown types are ignored, as Argo CD ignores them: an object whose hook
//! annotation names no known type is still a hook — it runs in no phase. `Skip` means
//! the object is never applied.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Capstan's hook annotation.
pub const HOOK_ANNOTATION: &str = "capstan.dev/hook";
/// Argo CD's hook annotation.
pub const ARGO_HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
/// Helm's hook annotation.
pub const HELM_HOOK_ANNOTATION: &str = "helm.sh/hook";
/// Capstan's delete-policy annotation.
pub const DELETE_POLICY_ANNOTATION: &str = "capstan.dev/hook-delete-policy";
/// Argo CD's delete-policy annotation.
pub const ARGO_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
/// Helm's delete-policy annotation.
pub const HELM_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HookType {
    /// Before anything else is applied; a failure stops the sync.
    PreSync,
    /// With the Application's own objects, in their waves.
    Sync,
    /// After everything was applied and is healthy.
    PostSync,
    /// When the sync failed.
    SyncFail,
    /// When the Application is deleted, before its objects are.
    PreDelete,
    /// When the Application is deleted, after its objects are.
    PostDelete,
}

impl HookType {
    /// The name as written in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            HookType::PreSync => "PreSync",
            HookType::Sync => "Sync",
            HookType::PostSync => "PostSync",
            HookType::SyncFail => "SyncFail",
            HookType::PreDelete => "PreDelete",
            HookType::PostDelete => "PostDelete",
        }
    }
}

impl fmt::Display for HookType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a hook is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DeletePolicy {
    /// Just before it is created again (the default): the last run stays to look at.
    BeforeHookCreation,
    /// Once it succeeded.
    HookSucceeded,
    /// Once it failed.
    HookFailed,
}

/// What an object's hook annotations say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    /// The phases it runs in (empty: a hook that runs in none, e.g. an unknown type).
    pub types: BTreeSet<HookType>,
    /// When it is deleted (never empty: BeforeHookCreation by default).
    pub delete: BTreeSet<DeletePolicy>,
}

/// How an object takes part in a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// One of the Application's objects: applied, in the inventory, pruned.
    Resource,
    /// A hook.
    Hook(Hook),
    /// Never applied (`hook: Skip`).
    Skip,
}

impl Role {
    /// The role the annotations of `obj` give it. A CustomResourceDefinition with
    /// Helm's `crd-install` is an ordinary resource (Helm 2's CRD hook).
    pub fn of(obj: &Value) -> Role {
        let ann = |k: &str| {
            obj.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        let (types, skip) = if let Some(v) = ann(HOOK_ANNOTATION).or(ann(ARGO_HOOK_ANNOTATION)) {
            parse_types(v)
        } else if let Some(v) = ann(HELM_HOOK_ANNOTATION) {
            if v.split(',').all(|t| t.trim() == "crd-install") {
                return Role::Resource;
            }
            (parse_helm_types(v), false)
        } else {
            return Role::Resource;
        };
        if skip && types.is_empty() {
            return Role::Skip;
        }
        let delete = match ann(DELETE_POLICY_ANNOTATION)
            .or(ann(ARGO_DELETE_POLICY_ANNOTATION))
            .map(parse_policies)
            .or_else(|| ann(HELM_DELETE_POLICY_ANNOTATION).map(parse_helm_policies))
        {
            Some(p) if !p.is_empty() => p,
            _ => [DeletePolicy::BeforeHookCreation].into(),
        };
        Role::Hook(Hook { types, delete })
    }

    /// Whether the object is one of the Application's own.
    pub fn is_resource(&self) -> bool {
        matches!(self, Role::Resource)
    }
}

/// `PreSync,Skip,...` → (known types, whether Skip was named).
fn parse_types(v: &str) -> (BTreeSet<HookType>, bool) {
    let mut types = BTreeSet::new();
    let mut skip = false;
    for t in v.split(',').map(str::trim) {
        match t {
            "PreSync" => {
                types.insert(HookType::PreSync);
            }
            "Sync" => {
                types.insert(HookType::Sync);
            }
            "PostSync" => {
                types.insert(HookType::PostSync);
            }
            "SyncFail" => {
                types.insert(HookType::SyncFail);
            }
            "PreDelete" => {
                types.insert(HookType::PreDelete);
            }
            "PostDelete" => {
                types.insert(HookType::PostDelete);
            }
            "Skip" => skip = true,
            _ => {}
        }
    }
    (types, skip)
}

fn parse_helm_types(v: &str) -> BTreeSet<HookType> {
    v.split(',')
        .filter_map(|t| match t.trim() {
            "pre-install" | "pre-upgrade" => Some(HookType::PreSync),
            "post-install" | "post-upgrade" => Some(HookType::PostSync),
            "pre-delete" => Some(HookType::PreDelete),
            "post-delete" => Some(HookType::PostDelete),
            _ => None,
        })
        .collect()
}

fn parse_policies(v: &str) -> BTreeSet<DeletePolicy> {
    v.split(',')
        .filter_map(|p| match p.trim() {
            "BeforeHookCreation" => Some(DeletePolicy::BeforeHookCreation),
            "HookSucceeded" => Some(DeletePolicy::HookSucceeded),
            "HookFailed" => Some(DeletePolicy::HookFailed),
            _ => None,
        })
        .collect()
}

fn parse_helm_policies(v: &str) -> BTreeSet<DeletePolicy> {
    v.split(',')
        .filter_map(|p| match p.trim() {
            "before-hook-creation" => Some(DeletePolicy::BeforeHookCreation),
            "hook-succeeded" => Some(DeletePolicy::HookSucceeded),
            "hook-failed" => Some(DeletePolicy::HookFailed),
            _ => None,
        })
        .collect()
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookPhase {
    /// Not started: a dry run, or its step was never reached.
    Pending,
    /// Created, not finished.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully (or could not be created).
    Failed,
    /// Stopped before it finished (the emergency stop, the time limit).
    Terminated,
}

/// One hook run of a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookResult {
    /// The phase it ran in.
    pub hook_type: HookType,
    /// How it ended.
    pub phase: HookPhase,
    /// What it said (`pod/migrate created`, a container's exit reason).
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(ann: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "x", "annotations": ann}})
    }

    #[test]
    fn argo_and_capstan_hook_annotations_name_the_phases() {
        let hook = |v: &str| match Role::of(&obj(json!({ARGO_HOOK_ANNOTATION: v}))) {
            Role::Hook(h) => h.types.into_iter().collect::<Vec<_>>(),
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(hook("PreSync"), [HookType::PreSync]);
        assert_eq!(
            hook("PreSync,PostSync"),
            [HookType::PreSync, HookType::PostSync]
        );
        assert_eq!(hook("Sync,Sync"), [HookType::Sync]);
        assert_eq!(hook("Sync,Garbage"), [HookType::Sync]);
        assert_eq!(hook("Garbage"), []);
        assert_eq!(
            hook("Skip,PreSync,PostSync"),
            [HookType::PreSync, HookType::PostSync]
        );
        assert_eq!(
            Role::of(&obj(json!({ARGO_HOOK_ANNOTATION: "Skip"}))),
            Role::Skip
        );
        assert_eq!(Role::of(&obj(json!({}))), Role::Resource);
        let capstan = Role::of(&obj(
            json!({HOOK_ANNOTATION: "PostSync", ARGO_HOOK_ANNOTATION: "PreSync"}),
        ));
        assert!(matches!(capstan, Role::Hook(h) if h.types == [HookType::PostSync].into()));
    }

    #[test]
    fn helm_hooks_map_to_phases_and_argo_wins_over_helm() {
        let types = |a: Value| match Role::of(&obj(a)) {
            Role::Hook(h) => h.types,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            types(json!({HELM_HOOK_ANNOTATION: "pre-install"})),
            [HookType::PreSync].into()
        );
        assert_eq!(
            types(json!({HELM_HOOK_ANNOTATION: "post-upgrade"})),
            [HookType::PostSync].into()
        );
        assert_eq!(
            types(json!({HELM_HOOK_ANNOTATION: "garbage"})),
            BTreeSet::new()
        );
        assert_eq!(
            types(json!({ARGO_HOOK_ANNOTATION: "Sync", HELM_HOOK_ANNOTATION: "pre-install"})),
            [HookType::Sync].into()
        );
        let crd = json!({"kind": "CustomResourceDefinition", "metadata": {"annotations": {HELM_HOOK_ANNOTATION: "crd-install"}}});
        assert_eq!(Role::of(&crd), Role::Resource);
    }

    #[test]
    fn delete_policies_default_to_before_hook_creation() {
        let policies = |a: Value| match Role::of(&obj(a)) {
            Role::Hook(h) => h.delete,
            other => panic!("{other:?}"),
        };
        let base = || json!({ARGO_HOOK_ANNOTATION: "Sync"});
        assert_eq!(policies(base()), [DeletePolicy::BeforeHookCreation].into());
        let with = |k: &str, v: &str| {
            let mut a = base();
            a[k] = json!(v);
            policies(a)
        };
        assert_eq!(
            with(ARGO_DELETE_POLICY_ANNOTATION, "garbage"),
            [DeletePolicy::BeforeHookCreation].into()
        );
        assert_eq!(
            with(ARGO_DELETE_POLICY_ANNOTATION, "HookSucceeded"),
            [DeletePolicy::HookSucceeded].into()
        );
        assert_eq!(
            with(ARGO_DELETE_POLICY_ANNOTATION, "HookFailed"),
            [DeletePolicy::HookFailed].into()
        );
        assert_eq!(
            with(HELM_DELETE_POLICY_ANNOTATION, "hook-succeeded"),
            [DeletePolicy::HookSucceeded].into()
        );
        assert_eq!(
            with(HELM_DELETE_POLICY_ANNOTATION, "before-hook-creation"),
            [DeletePolicy::BeforeHookCreation].into()
        );
    }
}
