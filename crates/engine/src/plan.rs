//! Planning: what applying a desired set would do to the cluster, object by object.
//!
//! The live objects are read in bulk (one list per resource and namespace, or single
//! gets for small groups). An object whose applied fields already hold their values
//! and which keeps every field Capstan applied before is unchanged without asking the
//! server; every other object is applied with `dryRun=All` and the server's answer is
//! compared with the live object. The plan is a typed change per object — create,
//! update (with a diff), unchanged, prune — with secret values masked.

use std::collections::{BTreeMap, HashMap};

use capstan_core::{
    APPLICATION_LABEL, Change, FIELD_MANAGER, ObjectRef, PRUNE_ANNOTATION, Permission,
    SyncOptionSet, SyncWave,
};
use futures::{StreamExt, stream};
use kube::api::{DynamicObject, ListParams};
use serde_json::Value;

use crate::destination::{Destination, DestinationError};
use crate::diff::{self, IgnoreRule};
use crate::inventory::{Inventory, InventoryEntry};
use crate::render::DesiredObject;
use crate::sync::apply::{self, Method, Send};

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
    /// The Application's sync options; each object's annotations override them.
    pub sync_options: SyncOptionSet,
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
            sync_options: SyncOptionSet::default(),
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
    /// Its sync options (the Application's, with its annotations applied).
    pub options: SyncOptionSet,
}

/// An object to prune: in the previous inventory, no longer desired.
#[derive(Debug, Clone)]
pub struct PruneCandidate {
    /// Its inventory entry.
    pub entry: InventoryEntry,
    /// Whether it still exists.
    pub exists: bool,
    /// Why it is never deleted, not even with its Application (`capstan.dev/prune:
    /// "false"`, sync options that cannot be read), from the live object.
    pub keep: Option<String>,
    /// Its sync options, from the live object (`Prune=false`, `Prune=confirm`,
    /// `Delete=false`, propagation, `IgnoreExtraneous`).
    pub options: SyncOptionSet,
    /// Its wave, from the live object: pruning goes from the highest wave down.
    pub wave: SyncWave,
}

impl PruneCandidate {
    /// Whether leaving it in the cluster makes the Application OutOfSync.
    pub fn is_drift(&self) -> bool {
        self.exists
            && self.keep.is_none()
            && self.options.prune != Permission::Deny
            && !self.options.ignore_extraneous
    }
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
            || self.prune.iter().any(PruneCandidate::is_drift)
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

/// Plan a desired set against the destination and the previous inventory. Hooks and
/// skipped objects are not the Application's own: they are left out (a sync runs the
/// hooks itself).
pub async fn plan(
    dest: &Destination,
    desired: &[DesiredObject],
    previous: &Inventory,
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let applied: Vec<DesiredObject> = desired
        .iter()
        .filter(|d| d.is_resource())
        .map(|d| applied_form(d, opts))
        .collect();
    let t = std::time::Instant::now();
    let live = read_live(dest, &applied, opts.concurrency).await?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        objects = live.len(),
        "read the live objects"
    );
    let context = Context::new(&applied, &live, dest, opts);
    let (live, context) = (&live, &context);
    let mut planned: Vec<(usize, Result<PlannedObject, PlanError>)> =
        stream::iter(applied.into_iter().enumerate())
            .map(|(i, d)| async move {
                let current = live.get(&d.id).cloned();
                (i, plan_one(dest, d, current, context, opts).await)
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
        objects.iter().map(|o| &o.desired.id).collect();
    let prune = prune_candidates(dest, previous, &desired_ids, opts).await?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        candidates = prune.len(),
        "found prune candidates"
    );
    Ok(Plan { objects, prune })
}

/// What planning one object needs to know about the others.
struct Context {
    /// (group, kind) of the CRDs in the desired set.
    crd_kinds: Vec<(String, String)>,
    /// Namespaces this sync creates (in the desired set, or by CreateNamespace).
    created_namespaces: Vec<String>,
}

impl Context {
    fn new(
        applied: &[DesiredObject],
        live: &HashMap<ObjectRef, Value>,
        dest: &Destination,
        opts: &PlanOptions,
    ) -> Context {
        let crd_kinds = applied
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
        let mut created_namespaces: Vec<String> = applied
            .iter()
            .filter(|d| d.id.kind == "Namespace" && d.id.group.is_empty())
            .map(|d| d.id.name.clone())
            .filter(|n| {
                !live
                    .keys()
                    .any(|k| k.kind == "Namespace" && k.group.is_empty() && k.name == *n)
            })
            .collect();
        if opts.sync_options.create_namespace {
            created_namespaces.push(dest.namespace.clone());
        }
        Context {
            crd_kinds,
            created_namespaces,
        }
    }
}

/// The objects of the previous inventory that left the source, each with what its live
/// object says about pruning it.
async fn prune_candidates(
    dest: &Destination,
    previous: &Inventory,
    desired: &std::collections::HashSet<&ObjectRef>,
    opts: &PlanOptions,
) -> Result<Vec<PruneCandidate>, PlanError> {
    let mut prune = Vec::new();
    for entry in previous.entries() {
        if desired.contains(&entry.id) {
            continue;
        }
        let api = match dest.api_for(&entry.api_version, &entry.id).await {
            Ok(api) => api,
            Err(DestinationError::UnknownKind { .. }) => {
                // Its kind is gone (CRD deleted): nothing left to prune.
                prune.push(PruneCandidate {
                    entry,
                    exists: false,
                    keep: None,
                    options: opts.sync_options,
                    wave: SyncWave(0),
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
            })?
            .map(to_value);
        let live = found.as_ref().unwrap_or(&Value::Null);
        let (options, mut keep) = match opts.sync_options.for_object(live) {
            Ok(o) => (o, None),
            Err(e) => (
                opts.sync_options,
                Some(format!(
                    "its sync options cannot be read, so it is kept: {e}"
                )),
            ),
        };
        if live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(PRUNE_ANNOTATION))
            .is_some_and(|v| v == "false")
        {
            keep = Some(format!("annotated {PRUNE_ANNOTATION}: \"false\""));
        }
        prune.push(PruneCandidate {
            exists: found.is_some(),
            keep,
            options,
            wave: SyncWave::of(live).unwrap_or_default(),
            entry,
        });
    }
    Ok(prune)
}

fn planned(
    desired: DesiredObject,
    live: Option<Value>,
    change: Change,
    options: SyncOptionSet,
    error: Option<String>,
) -> PlannedObject {
    PlannedObject {
        desired,
        live,
        change,
        adopt: false,
        error,
        options,
    }
}

async fn plan_one(
    dest: &Destination,
    desired: DesiredObject,
    live: Option<Value>,
    context: &Context,
    opts: &PlanOptions,
) -> Result<PlannedObject, PlanError> {
    // options were checked when rendering; a hand-made desired set may still hold bad ones
    let options = match opts.sync_options.for_object(&desired.object) {
        Ok(o) => o,
        Err(e) => {
            let change = if live.is_some() {
                Change::Update {
                    diff: String::new(),
                }
            } else {
                Change::Create
            };
            return Ok(planned(
                desired,
                live,
                change,
                opts.sync_options,
                Some(e.to_string()),
            ));
        }
    };
    if let Some(error) = shared_with_another(&desired, live.as_ref(), &options, opts) {
        return Ok(planned(
            desired,
            live,
            Change::Unchanged,
            options,
            Some(error),
        ));
    }
    let method = Method::of(&options);
    let ignore = diff::ignored_pointers(&opts.ignore_differences, &desired.id);
    if let Some(l) = &live
        && unchanged_without_asking(&desired.object, l, method, &opts.field_manager)
    {
        return Ok(planned(desired, live, Change::Unchanged, options, None));
    }
    let api = match dest.api_for(desired.api_version(), &desired.id).await {
        Ok(api) => api,
        Err(DestinationError::UnknownKind { api_version, kind }) => {
            let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
            let brought = context
                .crd_kinds
                .iter()
                .any(|(g, k)| g == group && *k == kind);
            let error = (!brought && !options.skip_dry_run_on_missing_resource).then(|| {
                format!(
                    "the cluster serves no {kind} in {api_version} and no CRD in this source defines it \
                     (if something else installs the CRD, annotate the object with \
                     argocd.argoproj.io/sync-options: SkipDryRunOnMissingResource=true)"
                )
            });
            return Ok(planned(desired, None, Change::Create, options, error));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::trace!(object = %desired.id, exists = live.is_some(), "needs a server-side dry run");
    if live.is_none() && !opts.dry_run_creates {
        return Ok(planned(desired, live, Change::Create, options, None));
    }
    let how = Send {
        field_manager: &opts.field_manager,
        // what the others own does not matter for a prediction of a client-side apply
        force_conflicts: opts.force_conflicts || !method.records_ownership(),
        options,
        dry_run: true,
    };
    let merged =
        match apply::send(&api, &desired.id.name, &desired.object, live.as_ref(), &how).await {
            Ok(m) => m,
            Err(kube::Error::Api(s))
                if live.is_none()
                    && s.code == 404
                    && desired
                        .id
                        .namespace
                        .as_ref()
                        .is_some_and(|ns| context.created_namespaces.contains(ns)) =>
            {
                // Its namespace is created by this same sync: nothing to dry-run against yet.
                return Ok(planned(desired, live, Change::Create, options, None));
            }
            Err(e) => {
                let change = if live.is_some() {
                    Change::Update {
                        diff: String::new(),
                    }
                } else {
                    Change::Create
                };
                return Ok(planned(
                    desired,
                    live,
                    change,
                    options,
                    Some(api_error_message(&e)),
                ));
            }
        };
    let (change, adopt) = match &live {
        None => (Change::Create, false),
        Some(l) if diff::semantically_equal(l, &merged, &ignore) => {
            let owned = !method.records_ownership()
                || diff::keeps_owned_fields(&desired.object, l, &opts.field_manager).is_some();
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
        options,
    })
}

/// Whether the live object already holds everything the method would send, so no dry
/// run is needed: for server-side apply, every applied field with its value and every
/// field Capstan owns still applied; for client-side apply, the last-applied
/// annotation equal to the object. A replace always asks.
fn unchanged_without_asking(desired: &Value, live: &Value, method: Method, manager: &str) -> bool {
    match method {
        Method::ServerSide => {
            diff::is_subset(&diff::fold_string_data(desired), live)
                && diff::keeps_owned_fields(desired, live, manager) == Some(true)
        }
        Method::ClientSide => apply::client_side_unchanged(&diff::fold_string_data(desired), live),
        Method::Replace | Method::Recreate => false,
    }
}

/// With `FailOnSharedResource=true`: the error when the live object belongs to another
/// Application.
fn shared_with_another(
    desired: &DesiredObject,
    live: Option<&Value>,
    options: &SyncOptionSet,
    opts: &PlanOptions,
) -> Option<String> {
    if !options.fail_on_shared_resource {
        return None;
    }
    let owner = live?
        .pointer("/metadata/labels")?
        .get(APPLICATION_LABEL)?
        .as_str()?;
    (owner != opts.application).then(|| {
        format!(
            "{} belongs to Application {owner:?} (label {APPLICATION_LABEL}); FailOnSharedResource=true refuses to take it over",
            desired.id
        )
    })
}

/// The message of a Kubernetes API error (the Status message when there is one).
pub fn api_error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
