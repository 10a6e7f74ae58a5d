//! Looking into one Application without changing anything, for the HTTP API:
//!
//! - [`tree`]: its resources (from its status) with the objects they own in the live
//!   cluster, found by following `ownerReferences` (Deployment → ReplicaSet → Pod);
//! - [`resource`]: one resource's live and desired manifest and their diff, rendered
//!   and planned by the engine exactly as a sync would (Secret values masked in all
//!   three, invariant 3).

use std::collections::{BTreeSet, HashMap, HashSet};

use capstan_core::{Change, ObjectRef};
use capstan_engine::destination::Destination;
use capstan_engine::diff;
use capstan_engine::inventory::Inventory;
use capstan_engine::plan;
use futures::{StreamExt, stream};
use kube::ResourceExt;
use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;

use crate::Context;
use crate::crd::{Application, HealthStatus, ResourceStatus};

/// Kinds whose objects are usually owned by an Application's objects (made by a
/// cluster's controllers), searched for children in the namespaces the Application
/// deploys to. Kinds the cluster does not serve are skipped.
const CHILD_KINDS: &[(&str, &str)] = &[
    ("apps/v1", "ReplicaSet"),
    ("v1", "Pod"),
    ("apps/v1", "ControllerRevision"),
    ("batch/v1", "Job"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
];

/// How deep owner references are followed below a managed object.
const MAX_DEPTH: usize = 4;

/// One node of an Application's resource tree.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TreeNode {
    /// `group/version` (`v1` for the core group).
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (absent for cluster-scoped objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The live object's uid; absent when it does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Whether the object exists in the cluster.
    pub exists: bool,
    /// For the Application's own objects: `Synced` or `OutOfSync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// For the Application's own objects: it left Git and waits to be pruned.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub requires_pruning: bool,
    /// Its health (the controller's verdict for managed objects, assessed now for the
    /// objects they own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// The objects it owns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TreeNode>,
}

/// Why looking into an Application failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The source could not be fetched or rendered (the condition reason says which stage).
    #[error("{reason}: {message}")]
    Render {
        /// `FetchFailed`, `RenderFailed`, …
        reason: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The object is neither desired nor in the Application's status.
    #[error("{object} is not a resource of application {application}")]
    NotManaged {
        /// The object asked for.
        object: String,
        /// `namespace/name`.
        application: String,
    },
    /// The cluster could not be read.
    #[error("reading {object}")]
    Read {
        /// What was read.
        object: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn read_err(object: String) -> impl FnOnce(kube::Error) -> InspectError {
    move |e| InspectError::Read {
        object,
        source: Box::new(e),
    }
}

/// `group/version` of a resource of the status.
fn api_version(r: &ResourceStatus) -> String {
    if r.version.contains('/') || r.group.is_empty() {
        r.version.clone()
    } else {
        format!("{}/{}", r.group, r.version)
    }
}

fn object_ref(r: &ResourceStatus) -> ObjectRef {
    ObjectRef {
        group: r.group.clone(),
        kind: r.kind.clone(),
        namespace: Some(r.namespace.clone()).filter(|n| !n.is_empty()),
        name: r.name.clone(),
    }
}

async fn get_live(dest: &Destination, api_version: &str, id: &ObjectRef) -> Option<Value> {
    let api = dest.api_for(api_version, id).await.ok()?;
    let obj = api.get_opt(&id.name).await.ok()??;
    serde_json::to_value(obj).ok()
}

fn health_of(obj: &Value) -> HealthStatus {
    let h = capstan_engine::health::assess(obj);
    HealthStatus {
        status: h.state.to_string(),
        message: h.message,
    }
}

/// The Application's resources as a tree: each managed object (from the status, in
/// its order) with the live objects that name it as owner, recursively.
pub async fn tree(app: &Application, ctx: &Context) -> Result<Vec<TreeNode>, InspectError> {
    let dest = &ctx.dest;
    let resources = app
        .status
        .as_ref()
        .map(|s| s.resources.clone())
        .unwrap_or_default();
    let wanted: Vec<(String, ObjectRef)> = resources
        .iter()
        .map(|r| (api_version(r), object_ref(r)))
        .collect();
    let lives: Vec<Option<Value>> = stream::iter(wanted)
        .map(|(av, id)| {
            let dest = dest.clone();
            async move { get_live(&dest, &av, &id).await }
        })
        .buffered(ctx.opts.requests_per_app.max(1))
        .collect()
        .await;

    // the live objects that have owners, by owner uid, in the namespaces deployed to
    let namespaces: BTreeSet<String> = resources
        .iter()
        .filter(|r| !r.namespace.is_empty())
        .map(|r| r.namespace.clone())
        .collect();
    let mut owned: HashMap<String, Vec<Value>> = HashMap::new();
    for (av, kind) in CHILD_KINDS {
        if !dest.serves(av, kind).await {
            continue;
        }
        let Ok((ar, caps)) = dest.resource(av, kind).await else {
            continue;
        };
        for ns in &namespaces {
            let api = dest.api(&ar, &caps, Some(ns));
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(read_err(format!("{kind} in {ns}")))?;
            for obj in list.items {
                for owner in obj.owner_references() {
                    if let Ok(v) = serde_json::to_value(&obj) {
                        owned.entry(owner.uid.clone()).or_default().push(v);
                    }
                }
            }
        }
    }

    let mut seen = HashSet::new();
    Ok(resources
        .iter()
        .zip(lives)
        .map(|(r, live)| {
            let uid = live
                .as_ref()
                .and_then(|l| l.pointer("/metadata/uid"))
                .and_then(Value::as_str)
                .map(str::to_string);
            TreeNode {
                api_version: api_version(r),
                kind: r.kind.clone(),
                namespace: Some(r.namespace.clone()).filter(|n| !n.is_empty()),
                name: r.name.clone(),
                exists: live.is_some(),
                children: uid
                    .as_deref()
                    .map(|u| children(u, &owned, &mut seen, 1))
                    .unwrap_or_default(),
                uid,
                sync: Some(r.status.clone()),
                requires_pruning: r.requires_pruning,
                health: r.health.clone(),
            }
        })
        .collect())
}

fn children(
    owner: &str,
    owned: &HashMap<String, Vec<Value>>,
    seen: &mut HashSet<String>,
    depth: usize,
) -> Vec<TreeNode> {
    if depth > MAX_DEPTH {
        return Vec::new();
    }
    let mut out: Vec<TreeNode> = Vec::new();
    for obj in owned.get(owner).map(Vec::as_slice).unwrap_or_default() {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).map(str::to_string);
        let Some(uid) = s("/metadata/uid") else {
            continue;
        };
        // an owner cycle (or two owners) shows an object once
        if !seen.insert(uid.clone()) {
            continue;
        }
        out.push(TreeNode {
            api_version: s("/apiVersion").unwrap_or_default(),
            kind: s("/kind").unwrap_or_default(),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name").unwrap_or_default(),
            exists: true,
            children: children(&uid, owned, seen, depth + 1),
            uid: Some(uid),
            sync: None,
            requires_pruning: false,
            health: Some(health_of(obj)),
        });
    }
    out.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    out
}

/// One resource of an Application: what the cluster holds, what Git says, the diff.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    /// The object.
    pub object: ObjectRef,
    /// The revision the desired manifest was rendered from.
    pub revision: String,
    /// `create`, `update`, `unchanged` or `prune`.
    pub change: &'static str,
    /// The live object (without `managedFields`), if it exists; Secret values masked.
    pub live: Option<Value>,
    /// The object as a sync would apply it, if Git has it; Secret values masked.
    pub desired: Option<Value>,
    /// Unified diff of live to desired (empty when unchanged); Secret values masked.
    pub diff: String,
    /// Why the object cannot be applied (a conflict, a validation error), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The live and desired manifest of `id` and their diff, as a sync of `app` would see
/// them now (rendered by the engine at the revision the controller would sync; planned
/// with a server-side dry run).
pub async fn resource(
    app: &Application,
    id: &ObjectRef,
    ctx: &Context,
) -> Result<ResourceView, InspectError> {
    let (revision, desired, dest, mut opts) =
        crate::reconcile::desired(app, ctx)
            .await
            .map_err(|f| InspectError::Render {
                reason: f.reason(),
                message: f.message().to_string(),
            })?;
    opts.dry_run_creates = true;
    let found = desired.iter().find(|d| d.is_resource() && d.id == *id);
    let (change, mut live, mut want, diff_text, error) = match found {
        Some(d) => {
            let planned = plan::plan(&dest, std::slice::from_ref(d), &Inventory::default(), &opts)
                .await
                .map_err(|e| InspectError::Read {
                    object: id.to_string(),
                    source: Box::new(e),
                })?;
            let Some(p) = planned.objects.into_iter().next() else {
                return Err(not_managed(app, id));
            };
            let (change, text) = match &p.change {
                Change::Create => (
                    "create",
                    diff::unified(id, None, Some(&p.desired.object), &[]),
                ),
                Change::Update { diff } => ("update", diff.clone()),
                Change::Unchanged => ("unchanged", String::new()),
                Change::Prune => ("prune", String::new()),
            };
            (change, p.live, Some(p.desired.object), text, p.error)
        }
        None => {
            // not in Git any more: the status may still list it, waiting to be pruned
            let r = app
                .status
                .as_ref()
                .and_then(|s| s.resources.iter().find(|r| object_ref(r) == *id))
                .ok_or_else(|| not_managed(app, id))?;
            let live = get_live(&dest, &api_version(r), id).await;
            let text = diff::unified(id, live.as_ref(), None, &[]);
            ("prune", live, None, text, None)
        }
    };
    if let Some(l) = live.as_mut()
        && let Some(m) = l.pointer_mut("/metadata").and_then(Value::as_object_mut)
    {
        m.remove("managedFields");
    }
    diff::mask_secrets(&mut live, &mut want);
    Ok(ResourceView {
        object: id.clone(),
        revision: revision.id.clone(),
        change,
        live,
        desired: want,
        diff: diff_text,
        error,
    })
}

fn not_managed(app: &Application, id: &ObjectRef) -> InspectError {
    InspectError::NotManaged {
        object: id.to_string(),
        application: format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any()),
    }
}
