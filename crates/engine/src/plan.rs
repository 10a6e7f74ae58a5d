//! Planning: what applying a desired set would do to the cluster, object by object.
//!
//! The live objects are read in bulk (one list per resource and namespace, or single
//! gets for small groups). An object whose applied fields already hold their values
//! and which keeps every field Capstan applied before is unchanged without asking the
//! server; every other object is applied with `dryRun=All` and the server's answer is
//! compared with the live object. The plan is a typed change per object — create,
//! update (with a diff), unchanged, prune — with secret values masked.

use std::collections::{BTreeMap, HashMap};

use capstan_core::{APPLICATION_LABEL, Change, FIELD_MANAGER, ObjectRef, PRUNE_ANNOTATION};
use futures::{StreamExt, stream};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;

use crate::destination::{Destination, DestinationError};
use crate::diff::{self, IgnoreRule};
use crate::inventory::{Inventory, InventoryEntry};
use crate::render::DesiredObject;

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The Application the objects belong to (its label is added to each).
    pub application: String,
    /// Field manager for the dry runs (and the sync).
    pub field_manager: String,
    /// Take over fields other managers own instead of failing on conflicts.
    pub force_conflicts: bool,
    /// Fields to ignore when comparing (and to leave out of what is applied).
    pub ignore_differences: Vec<IgnoreRule>,
    /// How many requests run at once.
    pub concurrency: usize,
    /// Dry-run objects that do not exist yet, to validate them and show what the
    /// server would store (a diff wants this; a sync does not: the apply validates).
    pub dry_run_creates: bool,
}

impl PlanOptions {
    /// Options for `application` with the defaults.
    pub fn new(application: impl Into<String>) -> Self {
        PlanOptions {
            application: application.into(),
            field_manager: FIELD_MANAGER.to_string(),
            force_conflicts: false,
            ignore_differences: Vec::new(),
            concurrency: 16,
            dry_run_creates: true,
        }
    }
}

/// One object of a plan.
#[derive(Debug, Clone)]
pub struct PlannedObject {
    /// The desired object as it will be applied (label added, ignored fields removed).
    pub desired: DesiredObject,
    /// The live object, if any.
    pub live: Option<Value>,
    /// What applying will do.
    pub change: Change,
    /// True when the object matches but Capstan does not own it yet: it is applied to
    /// adopt it even though nothing changes.
    pub adopt: bool,
    /// Why this object cannot be planned (apply conflict, validation error); it will fail.
    pub error: Option<String>,
}

/// An object to prune: in the previous inventory, no longer desired.
#[derive(Debug, Clone)]
pub struct PruneCandidate {
    /// Its inventory entry.
    pub entry: InventoryEntry,
    /// Whether it still exists.
    pub exists: bool,
    /// Set when the live object carries `capstan.dev/prune: "false"`.
    pub keep: bool,
}

/// What applying a desired set would do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The desired objects, in the order given.
    pub objects: Vec<PlannedObject>,
    /// Objects that left the source.
    pub prune: Vec<PruneCandidate>,
}

impl Plan {
    /// Whether anything differs: a create, an update, or a prune of an existing object.
    pub fn has_drift(&self) -> bool {
        self.objects
            .iter()
            .any(|o| o.change.is_drift() || o.error.is_some())
            || self.prune.iter().any(|p| p.exists && !p.keep)
    }
}

/// Planning failures that stop the whole plan (per-object failures are in [`PlannedObject::error`]).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Reaching the cluster failed.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// Listing live objects failed.
    #[error("reading live {resource} in {namespace}")]
    Read {
        /// The resource.
        resource: String,
        /// The namespace (or `all namespaces`).
        namespace: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
}

/// The applied form of a desired object: Application label added, ignored fields removed.
pub fn applied_form(obj: &DesiredObject, opts: &PlanOptions) -> DesiredObject {
    let mut out = obj.clone();
    if let Some(meta) = out
        .object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                APPLICATION_LABEL.into(),
                Value::String(opts.application.clone()),
            );
        }
    }
    for p in diff::ignored_pointers(&opts.ignore_differences, &obj.id) {
        diff::remove_pointer(&mut out.object, p);
    }
    out
}

fn to_value(o: DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// Read the live objects of a desired set, keyed by identity: one list per big
/// (kind, namespace) group, gets for small ones, up to `concurrency` groups at once.
async fn read_live(
    dest: &Destination,
    desired: &[DesiredObject],
    concurrency: usize,
) -> Result<HashMap<ObjectRef, Value>, PlanError> {
    let mut groups: BTreeMap<(String, String, Option<String>), Vec<ObjectRef>> = BTreeMap::new();
    for d in desired {
        groups
            .entry((
                d.api_version().to_string(),
                d.id.kind.clone(),
                d.id.namespace.clone(),
            ))
            .or_default()
            .push(d.id.clone());
    }
    let read: Vec<Result<Vec<(ObjectRef, Value)>, PlanError>> = stream::iter(groups)
        .map(|((api_version, kind, ns), ids)| async move {
            read_group(dest, &api_version, &kind, ns, ids, concurrency).await
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut live = HashMap::new();
    for group in read {
        live.extend(group?);
    }
    Ok(live)
}

/// The live objects of one (kind, namespace) group.
async fn read_group(
    dest: &Destination,
    api_version: &str,
    kind: &str,
    ns: Option<String>,
    ids: Vec<ObjectRef>,
    concurrency: usize,
) -> Result<Vec<(ObjectRef, Value)>, PlanError> {
    let (ar, caps) = match dest.resource(api_version, kind).await {
        Ok(found) => found,
        // A kind its CRD will bring: nothing of it can exist yet.
        Err(DestinationError::UnknownKind { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let api = dest.api(&ar, &caps, ns.as_deref());
    let read_err = |source| PlanError::Read {
        resource: ar.plural.clone(),
        namespace: ns.clone().unwrap_or_else(|| "all namespaces".into()),
        source: Box::new(source),
    };
    let mut live = Vec::new();
    if ids.len() >= 8 {
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = api.list(&lp).await.map_err(read_err)?;
            let next = page.metadata.continue_.clone();
            for item in page.items {
                let v = to_value(item);
                if let Ok(id) = ObjectRef::from_object(&v) {
                    live.push((id, v));
                }
            }
            match next {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
    } else {
        let got: Vec<Result<(ObjectRef, Option<Value>), kube::Error>> = stream::iter(ids)
            .map(|id| {
                let api = api.clone();
                async move { api.get_opt(&id.name).await.map(|o| (id, o.map(to_value))) }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for g in got {
            if let (id, Some(v)) = g.map_err(read_err)? {
                live.push((id, v));
            }
        }
    }
    Ok(live)
}

/// Plan a desired set against the destination and the previous inventory.
pub async fn plan(
    dest: &Destination,
    desired: &[DesiredObject],
    previous: &Inventory,
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let applied: Vec<DesiredObject> = desired.iter().map(|d| applied_form(d, opts)).collect();
    let t = std::time::Instant::now();
    let live = read_live(dest, &applied, opts.concurrency).await?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        objects = live.len(),
        "read the live objects"
    );
    let crd_kinds: Vec<(String, String)> = applied
        .iter()
        .filter(|d| d.id.kind == "CustomResourceDefinition")
        .map(|d| {
            let s = |p: &str| {
                d.object
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (s("/spec/group"), s("/spec/names/kind"))
        })
        .collect();
    let created_namespaces: Vec<String> = applied
        .iter()
        .filter(|d| d.id.kind == "Namespace" && d.id.group.is_empty())
        .map(|d| d.id.name.clone())
        .filter(|n| {
            !live
                .keys()
                .any(|k| k.kind == "Namespace" && k.group.is_empty() && k.name == *n)
        })
        .collect();
    let (live, crd_kinds, created_namespaces) = (&live, &crd_kinds, &created_namespaces);
    let mut planned: Vec<(usize, Result<PlannedObject, PlanError>)> =
        stream::iter(applied.into_iter().enumerate())
            .map(|(i, d)| async move {
                let current = live.get(&d.id).cloned();
                (
                    i,
                    plan_one(dest, d, current, crd_kinds, created_namespaces, opts).await,
                )
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
    planned.sort_by_key(|(i, _)| *i);
    let objects = planned
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Result<Vec<_>, _>>()?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "planned each object");
    let t = std::time::Instant::now();

    let desired_ids: std::collections::HashSet<&ObjectRef> =
        desired.iter().map(|d| &d.id).collect();
    let mut prune = Vec::new();
    for entry in previous.entries() {
        if desired_ids.contains(&entry.id) {
            continue;
        }
        let api = match dest.api_for(&entry.api_version, &entry.id).await {
            Ok(api) => api,
            Err(DestinationError::UnknownKind { .. }) => {
                // Its kind is gone (CRD deleted): nothing left to prune.
                prune.push(PruneCandidate {
                    entry,
                    exists: false,
                    keep: false,
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let found = api
            .get_opt(&entry.id.name)
            .await
            .map_err(|source| PlanError::Read {
                resource: entry.id.kind.clone(),
                namespace: entry.id.namespace.clone().unwrap_or_default(),
                source: Box::new(source),
            })?;
        let keep = found
            .as_ref()
            .and_then(|o| o.metadata.annotations.as_ref())
            .and_then(|a| a.get(PRUNE_ANNOTATION))
            .is_some_and(|v| v == "false");
        prune.push(PruneCandidate {
            exists: found.is_some(),
            keep,
            entry,
        });
    }
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        candidates = prune.len(),
        "found prune candidates"
    );
    Ok(Plan { objects, prune })
}

async fn plan_one(
    dest: &Destination,
    desired: DesiredObject,
    live: Option<Value>,
    crd_kinds: &[(String, String)],
    created_namespaces: &[String],
    opts: &PlanOptions,
) -> Result<PlannedObject, PlanError> {
    let ignore = diff::ignored_pointers(&opts.ignore_differences, &desired.id);
    let comparable_desired = diff::fold_string_data(&desired.object);
    if let Some(l) = &live
        && diff::is_subset(&comparable_desired, l)
        && diff::keeps_owned_fields(&desired.object, l, &opts.field_manager) == Some(true)
    {
        return Ok(PlannedObject {
            desired,
            live,
            change: Change::Unchanged,
            adopt: false,
            error: None,
        });
    }
    let api = match dest.api_for(desired.api_version(), &desired.id).await {
        Ok(api) => api,
        Err(DestinationError::UnknownKind { api_version, kind }) => {
            let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
            let brought = crd_kinds.iter().any(|(g, k)| g == group && *k == kind);
            let error = (!brought).then(|| {
                format!("the cluster serves no {kind} in {api_version} and no CRD in this source defines it")
            });
            return Ok(PlannedObject {
                desired,
                live: None,
                change: Change::Create,
                adopt: false,
                error,
            });
        }
        Err(e) => return Err(e.into()),
    };
    tracing::trace!(object = %desired.id, exists = live.is_some(), "needs a server-side dry run");
    if live.is_none() && !opts.dry_run_creates {
        return Ok(PlannedObject {
            desired,
            live,
            change: Change::Create,
            adopt: false,
            error: None,
        });
    }
    let mut pp = PatchParams::apply(&opts.field_manager).dry_run();
    pp.force = opts.force_conflicts;
    let merged = match api
        .patch(&desired.id.name, &pp, &Patch::Apply(&desired.object))
        .await
    {
        Ok(m) => to_value(m),
        Err(kube::Error::Api(s))
            if live.is_none()
                && s.code == 404
                && desired
                    .id
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| created_namespaces.contains(ns)) =>
        {
            // Its namespace is created by this same sync: nothing to dry-run against yet.
            return Ok(PlannedObject {
                desired,
                live,
                change: Change::Create,
                adopt: false,
                error: None,
            });
        }
        Err(e) => {
            let change = if live.is_some() {
                Change::Update {
                    diff: String::new(),
                }
            } else {
                Change::Create
            };
            return Ok(PlannedObject {
                desired,
                live,
                change,
                adopt: false,
                error: Some(api_error_message(&e)),
            });
        }
    };
    let (change, adopt) = match &live {
        None => (Change::Create, false),
        Some(l) if diff::semantically_equal(l, &merged, &ignore) => {
            let owned = diff::keeps_owned_fields(&desired.object, l, &opts.field_manager).is_some();
            (Change::Unchanged, !owned)
        }
        Some(l) => (
            Change::Update {
                diff: diff::unified(&desired.id, Some(l), Some(&merged), &ignore),
            },
            false,
        ),
    };
    Ok(PlannedObject {
        desired,
        live,
        change,
        adopt,
        error: None,
    })
}

/// The message of a Kubernetes API error (the Status message when there is one).
pub fn api_error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
