//! Sync: executing a plan, in Argo CD's order so its repositories sync the same way.
//!
//! ```text
//! refuse an empty desired set (unless allowed) ─▶ destination namespace (create it
//!   with CreateNamespace, else a clear error) ─▶ plan the Application's objects ─▶
//!   record inventory (old ∪ new) ─▶ steps: PreSync hooks, then each Sync wave (its
//!   objects and Sync hooks, by kind: CRDs and Namespaces first), each step's hooks
//!   awaited and its objects healthy before the next ─▶ prune (highest wave first,
//!   only the inventory) ─▶ record inventory (new) ─▶ PostSync hooks
//!   on failure: SyncFail hooks
//! ```
//!
//! The result is a [`ChangeSet`] and the hook runs even when the sync fails part-way,
//! so the CLI can print and the controller record exactly what happened. A stop signal
//! (the emergency stop) is checked before every step and before pruning, and ends
//! running hooks.

pub(crate) mod apply;
pub mod hooks;
mod order;
mod prune;
mod wait;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_core::{
    Change, ChangeSet, Health, HealthState, HookPhase, HookType, ObjectRef, Outcome, Revision, Role,
};
use futures::{StreamExt, stream};

pub use apply::{LAST_APPLIED_ANNOTATION, Method};
pub use hooks::{HOOK_FINALIZER, HOOK_OF_LABEL, HookRun};
pub use order::{Step, Target, Task, kind_rank, steps, tasks};
pub use wait::{WaitError, health_of, health_of_with, wait_healthy};

use crate::destination::Destination;
use crate::health::CustomHealth;
use crate::inventory::{Inventory, InventoryError, InventoryStore};
use crate::plan::{self, Plan, PlanError, PlanOptions, api_error_message};
use crate::render::DesiredObject;
/// A callback telling a sync to stop before its next step (the emergency stop).
pub type StopSignal = Arc<dyn Fn() -> bool + Send + Sync>;

/// A callback receiving progress as the sync goes.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Progress of a sync, for progress bars and logs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The plan is ready.
    Planned {
        /// Desired objects.
        objects: usize,
        /// Objects that will be sent (created, updated or adopted).
        to_apply: usize,
        /// Objects that will be pruned.
        to_prune: usize,
        /// Hook runs the sync will start (SyncFail hooks not counted).
        hooks: usize,
    },
    /// A step (a phase and a wave) starts.
    Step(HookType, i32),
    /// An object was applied (or failed).
    Applied(ObjectRef, Outcome),
    /// A hook run started, or ended.
    Hook(HookRun),
    /// Waiting for objects to become healthy.
    Waiting(Vec<(ObjectRef, Health)>),
    /// An object was pruned (or kept, or failed).
    Pruned(ObjectRef, Outcome),
}

/// Labels and annotations of a namespace the sync creates (`CreateNamespace`), kept on
/// it by later syncs (Argo CD's `managedNamespaceMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceMetadata {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// How to sync.
#[derive(Clone)]
pub struct SyncOptions {
    /// Planning options (Application, field manager, conflicts, ignored fields,
    /// concurrency, the Application's sync options).
    pub plan: PlanOptions,
    /// Delete objects that left the source.
    pub prune: bool,
    /// Prune (or delete) objects marked `Prune=confirm` / `Delete=confirm`.
    pub confirm_prune: bool,
    /// The Application is being deleted: the empty desired set deletes everything but
    /// what `Delete=false` keeps (else `Prune=false` keeps objects).
    pub deleting: bool,
    /// Allow an empty desired set (which then prunes everything, if `prune`).
    pub allow_empty: bool,
    /// Plan and report, change nothing, run no hook.
    pub dry_run: bool,
    /// After applying and pruning, wait until everything is healthy.
    pub wait: bool,
    /// Limit of each wait (a step's health, its hooks, a wave's prunes, the end).
    pub timeout: Duration,
    /// Namespace holding inventories.
    pub inventory_namespace: String,
    /// Name of the inventory (default: the application name). The controller uses
    /// `namespace.name`, since Applications in two namespaces may share a name.
    pub inventory_key: Option<String>,
    /// Metadata of the destination namespace, when `CreateNamespace` creates it.
    pub namespace_metadata: NamespaceMetadata,
    /// Checked before each step and before pruning.
    pub stop: Option<StopSignal>,
    /// Told about progress.
    pub progress: Option<ProgressFn>,
    /// Custom health rules, taking precedence over the built-in ones for their kinds
    /// when the sync judges what it applied and its hooks (default: none).
    pub health: Arc<CustomHealth>,
}

impl SyncOptions {
    /// Defaults for `application`: no prune, no wait, 5 minute waits between steps.
    pub fn new(application: impl Into<String>) -> Self {
        SyncOptions {
            plan: PlanOptions::new(application),
            prune: false,
            confirm_prune: false,
            deleting: false,
            allow_empty: false,
            dry_run: false,
            wait: false,
            timeout: Duration::from_secs(300),
            inventory_namespace: crate::inventory::INVENTORY_NAMESPACE.to_string(),
            inventory_key: None,
            namespace_metadata: NamespaceMetadata::default(),
            stop: None,
            progress: None,
            health: Arc::default(),
        }
    }

    fn tell(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(&p);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s())
    }

    fn inventory_key(&self) -> String {
        self.inventory_key
            .clone()
            .unwrap_or_else(|| self.plan.application.clone())
    }
}

/// Why a sync did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The desired set is empty and the Application does not allow that.
    #[error(
        "the source rendered no objects; refusing to sync (an empty render never prunes unless allowEmpty is set)"
    )]
    EmptyRender,
    /// A namespace the objects live in does not exist, and nothing creates it.
    #[error("namespace {namespace:?} does not exist: {hint}")]
    NamespaceMissing {
        /// The namespace.
        namespace: String,
        /// How to fix it.
        hint: String,
    },
    /// Creating the destination namespace (CreateNamespace) failed.
    #[error("creating namespace {namespace:?} (CreateNamespace=true): {message}")]
    NamespaceCreate {
        /// The namespace.
        namespace: String,
        /// The API's answer.
        message: String,
    },
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Reading or writing the inventory failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Some objects could not be applied or pruned.
    #[error("{count} object(s) failed; first: {first}")]
    Failed {
        /// How many.
        count: usize,
        /// The first failure, with its object.
        first: String,
    },
    /// A hook failed (or was terminated).
    #[error("{phase} hook {hook} {}: {message}", if *.terminated { "was terminated" } else { "failed" })]
    HookFailed {
        /// The hook's object.
        hook: String,
        /// The phase it ran in.
        phase: HookType,
        /// Why.
        message: String,
        /// Terminated rather than failed.
        terminated: bool,
    },
    /// Objects did not become healthy in time, or became degraded.
    #[error(transparent)]
    Unhealthy(#[from] WaitError),
    /// The stop signal was raised.
    #[error("sync stopped by the emergency stop before {wave}")]
    Stopped {
        /// The step that was not started.
        wave: String,
    },
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Per object: the plan, the outcome, the health (when waited for).
    pub changes: ChangeSet,
    /// The plan that was executed.
    pub plan: Plan,
    /// The hook runs, in the order they started.
    pub hooks: Vec<HookRun>,
    /// Rolled-up health, when waited for.
    pub health: Option<Health>,
    /// Why the sync stopped short, if it did.
    pub error: Option<SyncError>,
}

impl SyncReport {
    /// Whether the sync completed without error.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Sync `desired` (rendered from `revision`) to the destination.
pub async fn sync(
    dest: &Destination,
    desired: Vec<DesiredObject>,
    revision: &Revision,
    opts: &SyncOptions,
) -> SyncReport {
    let mut report = SyncReport::default();
    let hooks: Vec<DesiredObject> = desired
        .iter()
        .filter(|d| matches!(d.role, Role::Hook(_)))
        .cloned()
        .collect();
    let resources: Vec<DesiredObject> = desired.into_iter().filter(|d| d.is_resource()).collect();
    // Only hooks: the render is not empty, the hooks run; but an empty set of objects
    // still prunes nothing unless allowEmpty says so.
    let only_hooks;
    let opts = if resources.is_empty() && !hooks.is_empty() && !opts.allow_empty {
        only_hooks = SyncOptions {
            prune: false,
            allow_empty: true,
            ..opts.clone()
        };
        &only_hooks
    } else {
        opts
    };
    let mut run = Run {
        dest,
        revision,
        opts,
        hooks: &hooks,
        started: chrono_now(),
    };
    if let Err(e) = run.sync(resources, &mut report).await {
        let stopped = matches!(e, SyncError::Stopped { .. });
        report.error = Some(e);
        if !stopped && !opts.dry_run {
            run.on_failure(&mut report).await;
        }
    }
    report
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One sync under way.
struct Run<'a> {
    dest: &'a Destination,
    revision: &'a Revision,
    opts: &'a SyncOptions,
    hooks: &'a [DesiredObject],
    /// When it started (in the names of unnamed hooks).
    started: i64,
}

/// The stored inventory and the one this sync records.
struct Inventories {
    store: InventoryStore,
    key: String,
    stored: Option<(Inventory, String)>,
    previous: Inventory,
}

impl Run<'_> {
    async fn sync(
        &mut self,
        resources: Vec<DesiredObject>,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        if resources.is_empty() && !self.opts.allow_empty {
            return Err(SyncError::EmptyRender);
        }
        self.namespaces(&resources, report).await?;
        let mut inventories = self.load_inventories().await?;
        self.plan(&resources, &inventories.previous, report).await?;
        let current = self.record_union(&resources, &mut inventories).await?;

        let hook_tasks = self.hook_tasks(&[HookType::PreSync, HookType::Sync, HookType::PostSync]);
        let all = order::steps(order::tasks(&report.plan.objects, &hook_tasks));
        let (main, post): (Vec<Step>, Vec<Step>) =
            all.into_iter().partition(|s| s.phase != HookType::PostSync);
        let count = main.len() + post.len();
        let hook_count = hook_tasks.len();
        self.opts.tell(Progress::Planned {
            objects: report.plan.objects.len(),
            to_apply: report
                .plan
                .objects
                .iter()
                .filter(|o| o.change.is_drift() || o.adopt || o.error.is_some())
                .count(),
            to_prune: report.plan.prune.iter().filter(|p| p.exists).count(),
            hooks: hook_count,
        });
        for (n, step) in main.iter().enumerate() {
            self.step(step, &hook_tasks, n + 1 == count, report).await?;
        }
        self.prune(current, &mut inventories, report).await?;
        for (n, step) in post.iter().enumerate() {
            self.step(step, &hook_tasks, main.len() + n + 1 == count, report)
                .await?;
        }
        self.wait_at_end(report).await
    }

    /// Each hook's run in each of `phases` it names, in the order given.
    fn hook_tasks(&self, phases: &[HookType]) -> Vec<(HookType, &DesiredObject)> {
        let mut out = Vec::new();
        for h in self.hooks {
            if let Role::Hook(hook) = &h.role {
                for t in hook.types.iter().filter(|t| phases.contains(t)) {
                    out.push((*t, h));
                }
            }
        }
        out
    }

    /// Make sure every namespace the objects live in exists or is created: by the
    /// source's own Namespace objects, or (the destination namespace) by
    /// `CreateNamespace`. A missing one is one clear error saying how to fix it.
    async fn namespaces(
        &self,
        resources: &[DesiredObject],
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let dest_ns = &self.dest.namespace;
        let brought: Vec<&str> = resources
            .iter()
            .filter(|d| d.id.kind == "Namespace" && d.id.group.is_empty())
            .map(|d| d.id.name.as_str())
            .collect();
        let mut used: Vec<&str> = resources
            .iter()
            .chain(self.hooks)
            .filter_map(|d| d.id.namespace.as_deref())
            .filter(|ns| !brought.contains(ns))
            .collect();
        used.sort_unstable();
        used.dedup();
        let create = self.opts.plan.sync_options.create_namespace;
        if create && !brought.contains(&dest_ns.as_str()) {
            self.create_namespace(report).await?;
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.dest.client().clone());
        for ns in used {
            if create && ns == dest_ns {
                continue;
            }
            let found = api
                .get_opt(ns)
                .await
                .map_err(|e| SyncError::NamespaceCreate {
                    namespace: ns.to_string(),
                    message: format!("reading it: {}", api_error_message(&e)),
                })?;
            if found.is_none() {
                let hint = if ns == dest_ns {
                    "add CreateNamespace=true to the Application's syncOptions (or set spec.syncPolicy.createNamespace: true; `capstan apply --create-namespace`), or add a Namespace object to the source"
                } else {
                    "add a Namespace object to the source, or create it before syncing"
                };
                return Err(SyncError::NamespaceMissing {
                    namespace: ns.to_string(),
                    hint: hint.into(),
                });
            }
        }
        Ok(())
    }

    /// Create (or keep the managed metadata of) the destination namespace. It is not
    /// one of the Application's objects: never pruned, not in the inventory.
    async fn create_namespace(&self, report: &mut SyncReport) -> Result<(), SyncError> {
        let ns = self.dest.namespace.clone();
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.dest.client().clone());
        let err = |e: kube::Error| SyncError::NamespaceCreate {
            namespace: ns.clone(),
            message: api_error_message(&e),
        };
        let live = api.get_opt(&ns).await.map_err(err)?;
        let meta = &self.opts.namespace_metadata;
        let holds = |have: Option<&BTreeMap<String, String>>, want: &BTreeMap<String, String>| {
            want.iter()
                .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
        };
        if let Some(l) = &live
            && holds(l.metadata.labels.as_ref(), &meta.labels)
            && holds(l.metadata.annotations.as_ref(), &meta.annotations)
        {
            return Ok(());
        }
        let id = ObjectRef::new("", "Namespace", None, &ns);
        let outcome = if self.opts.dry_run {
            if live.is_none() {
                Outcome::Created
            } else {
                Outcome::Configured
            }
        } else {
            let body = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": meta.labels, "annotations": meta.annotations},
            });
            let pp = kube::api::PatchParams::apply(&self.opts.plan.field_manager);
            api.patch(&ns, &pp, &kube::api::Patch::Apply(&body))
                .await
                .map_err(err)?;
            if live.is_none() {
                Outcome::Created
            } else {
                Outcome::Configured
            }
        };
        self.opts
            .tell(Progress::Applied(id.clone(), outcome.clone()));
        let entry = report.changes.entry(&id);
        entry.change = Some(if live.is_none() {
            Change::Create
        } else {
            Change::Update {
                diff: String::new(),
            }
        });
        entry.outcome = Some(outcome);
        Ok(())
    }

    async fn load_inventories(&self) -> Result<Inventories, SyncError> {
        let key = self.opts.inventory_key();
        let store = InventoryStore::new(self.dest.client().clone(), &self.opts.inventory_namespace);
        let t = std::time::Instant::now();
        let stored = store.load_stored(&key).await?;
        let previous = stored.clone().map(|(i, _)| i).unwrap_or_default();
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "loaded the inventory");
        Ok(Inventories {
            store,
            key,
            stored,
            previous,
        })
    }

    async fn plan(
        &self,
        resources: &[DesiredObject],
        previous: &Inventory,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let t = std::time::Instant::now();
        // The applies validate creates themselves; a dry run only asks for them to preview.
        let mut plan_opts = self.opts.plan.clone();
        plan_opts.dry_run_creates = self.opts.dry_run;
        let plan = plan::plan(self.dest, resources, previous, &plan_opts).await?;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "planned");
        for o in &plan.objects {
            report.changes.entry(&o.desired.id).change = Some(o.change.clone());
        }
        for p in plan.prune.iter().filter(|p| p.exists) {
            report.changes.entry(&p.entry.id).change = Some(Change::Prune);
        }
        report.plan = plan;
        Ok(())
    }

    /// Record the objects about to be created before they exist, so a crash midway
    /// cannot leave one that no inventory knows of; an inventory that already holds
    /// them all is not written again until the end. Returns this sync's inventory.
    async fn record_union(
        &self,
        resources: &[DesiredObject],
        inv: &mut Inventories,
    ) -> Result<Inventory, SyncError> {
        let mut current = Inventory::default();
        for d in resources {
            current.insert(d.id.clone(), d.api_version());
        }
        let union = inv.previous.union(&current);
        if !self.opts.dry_run && inv.stored.as_ref().is_none_or(|(i, _)| *i != union) {
            inv.store.save(&inv.key, &union, &self.revision.id).await?;
            inv.stored = Some((union, self.revision.id.clone()));
        }
        Ok(current)
    }

    /// Run one step: its foundations (CRDs established, Namespaces), then its objects
    /// and hooks kind by kind; its hooks awaited; its objects healthy unless it is the
    /// last step.
    async fn step(
        &self,
        step: &Step,
        hook_tasks: &[(HookType, &DesiredObject)],
        last: bool,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        if self.opts.stopped() {
            let wave = if step.phase == HookType::Sync {
                format!("wave {}", step.wave.0)
            } else {
                format!("the {} hooks (wave {})", step.phase, step.wave.0)
            };
            return Err(SyncError::Stopped { wave });
        }
        self.opts.tell(Progress::Step(step.phase, step.wave.0));
        let (foundation, groups) = step.groups();
        let mut failures: Vec<String> = Vec::new();
        let resources = |tasks: &[&Task]| -> Vec<usize> {
            tasks
                .iter()
                .filter_map(|t| match t.target {
                    Target::Resource(i) => Some(i),
                    Target::Hook(_) => None,
                })
                .collect()
        };
        let mut runs: Vec<HookRun> = Vec::new();
        let found = resources(&foundation);
        if !found.is_empty() {
            apply_group(self.dest, &found, self.opts, report, &mut failures).await;
            let crds: Vec<usize> = found
                .iter()
                .copied()
                .filter(|i| report.plan.objects[*i].desired.id.kind == "CustomResourceDefinition")
                .collect();
            if !crds.is_empty() && !self.opts.dry_run && failures.is_empty() {
                wait_for(self.dest, &crds, self.opts, report).await?;
                self.dest.refresh().await.map_err(PlanError::from)?;
            }
        }
        let mut applied = found;
        for group in groups.iter().chain(std::iter::once(&foundation)) {
            // hooks of foundation kinds (a Namespace as a hook) start after the rest
            let is_foundation = std::ptr::eq(group, &foundation);
            if !is_foundation {
                let idx = resources(group);
                apply_group(self.dest, &idx, self.opts, report, &mut failures).await;
                applied.extend(idx);
            }
            for t in group.iter() {
                if let Target::Hook(h) = t.target {
                    let (phase, hook) = hook_tasks[h];
                    runs.push(self.start_hook(hook, phase).await);
                }
            }
        }
        let hook_failure = self.finish_hooks(runs, report).await;
        if !failures.is_empty() {
            return Err(SyncError::Failed {
                count: failures.len(),
                first: failures[0].clone(),
            });
        }
        if let Some(e) = hook_failure {
            return Err(e);
        }
        if !last && !self.opts.dry_run {
            wait_for(self.dest, &applied, self.opts, report).await?;
        }
        Ok(())
    }

    async fn start_hook(&self, hook: &DesiredObject, phase: HookType) -> HookRun {
        let name = hooks::run_name(hook, phase, &self.revision.id, self.started);
        let run = if self.opts.dry_run {
            hooks::pending(hook, phase, &name)
        } else {
            hooks::start(
                self.dest,
                hook,
                phase,
                &name,
                &self.opts.plan.application,
                &self.opts.plan.field_manager,
            )
            .await
        };
        self.opts.tell(Progress::Hook(run.clone()));
        run
    }

    /// Await the runs, record them, and say which failed first.
    async fn finish_hooks(
        &self,
        mut runs: Vec<HookRun>,
        report: &mut SyncReport,
    ) -> Option<SyncError> {
        if !self.opts.dry_run && !runs.is_empty() {
            let stop = self.opts.stop.clone();
            let stopped = move || stop.as_ref().is_some_and(|s| s());
            hooks::finish(
                self.dest,
                &mut runs,
                self.opts.timeout,
                &self.opts.health,
                &stopped,
            )
            .await;
        }
        let mut failure = None;
        for run in runs {
            if run.result.phase != HookPhase::Pending {
                self.opts.tell(Progress::Hook(run.clone()));
            }
            if failure.is_none()
                && matches!(run.result.phase, HookPhase::Failed | HookPhase::Terminated)
            {
                failure = Some(SyncError::HookFailed {
                    hook: run.object.to_string(),
                    phase: run.result.hook_type,
                    message: run.result.message.clone(),
                    terminated: run.result.phase == HookPhase::Terminated,
                });
            }
            report.hooks.push(run);
        }
        failure
    }

    /// Prune, then record the inventory of what is left.
    async fn prune(
        &self,
        current: Inventory,
        inv: &mut Inventories,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        if self.opts.stopped() {
            return Err(SyncError::Stopped {
                wave: "pruning".into(),
            });
        }
        let mut failures = Vec::new();
        let mut remaining = current;
        prune::prune(self.dest, self.opts, report, &mut remaining, &mut failures).await;
        // a sync that changed nothing writes nothing (rerunning it costs no write at all)
        if !self.opts.dry_run
            && inv
                .stored
                .as_ref()
                .is_none_or(|(i, r)| *i != remaining || *r != self.revision.id)
        {
            inv.store
                .save(&inv.key, &remaining, &self.revision.id)
                .await?;
        }
        if !failures.is_empty() {
            return Err(SyncError::Failed {
                count: failures.len(),
                first: failures[0].clone(),
            });
        }
        Ok(())
    }

    async fn wait_at_end(&self, report: &mut SyncReport) -> Result<(), SyncError> {
        if !self.opts.wait || self.opts.dry_run {
            return Ok(());
        }
        let all: Vec<usize> = (0..report.plan.objects.len()).collect();
        wait_for(self.dest, &all, self.opts, report).await?;
        let healths: Vec<Health> = report
            .changes
            .entries
            .iter()
            .filter_map(|e| e.health.clone())
            .collect();
        report.health = Some(Health::worst(&healths));
        Ok(())
    }

    /// After a failure: run the SyncFail hooks, step by step. Their results are
    /// recorded; the sync stays failed whatever they do.
    async fn on_failure(&self, report: &mut SyncReport) {
        let hook_tasks = self.hook_tasks(&[HookType::SyncFail]);
        if hook_tasks.is_empty() {
            return;
        }
        let steps = order::steps(order::tasks(&[], &hook_tasks));
        let count = steps.len();
        for (n, step) in steps.iter().enumerate() {
            if let Err(e) = self.step(step, &hook_tasks, n + 1 == count, report).await {
                tracing::warn!(error = %e, "a SyncFail hook failed");
                return;
            }
        }
    }
}

/// Run the hooks of a deletion phase (PreDelete, PostDelete) of `hooks`, step by step
/// (by wave, then kind), each step's runs awaited. The Application's objects are not
/// touched.
pub async fn run_hooks(
    dest: &Destination,
    hooks: &[DesiredObject],
    phase: HookType,
    revision: &Revision,
    opts: &SyncOptions,
) -> (Vec<HookRun>, Result<(), SyncError>) {
    let mut report = SyncReport::default();
    let run = Run {
        dest,
        revision,
        opts,
        hooks,
        started: chrono_now(),
    };
    let hook_tasks = run.hook_tasks(&[phase]);
    let steps = order::steps(order::tasks(&[], &hook_tasks));
    for step in &steps {
        if let Err(e) = run.step(step, &hook_tasks, true, &mut report).await {
            return (report.hooks, Err(e));
        }
    }
    (report.hooks, Ok(()))
}

async fn wait_for(
    dest: &Destination,
    idx: &[usize],
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    if idx.is_empty() {
        return Ok(());
    }
    let targets: Vec<(String, ObjectRef)> = idx
        .iter()
        .map(|i| {
            let o = &report.plan.objects[*i].desired;
            (o.api_version().to_string(), o.id.clone())
        })
        .collect();
    let progress = opts.progress.clone();
    let result = wait::wait_healthy(dest, &targets, opts.timeout, &opts.health, move |pending| {
        if let Some(p) = &progress {
            p(&Progress::Waiting(pending.to_vec()));
        }
    })
    .await;
    let healths = match &result {
        Ok(h) => h.clone(),
        Err(WaitError::Unhealthy { all, .. }) => all.clone(),
    };
    for (id, h) in healths {
        report.changes.entry(&id).health = Some(h);
    }
    result.map(|_| ()).map_err(SyncError::from)
}

async fn apply_group(
    dest: &Destination,
    group: &[usize],
    opts: &SyncOptions,
    report: &mut SyncReport,
    failures: &mut Vec<String>,
) {
    let jobs: Vec<(usize, Option<Outcome>)> = group
        .iter()
        .map(|&i| {
            let o = &report.plan.objects[i];
            let adopt = o.adopt && Method::of(&o.options).records_ownership();
            let settled = match (&o.change, adopt, &o.error) {
                (_, _, Some(_)) => None,
                (Change::Unchanged, false, None) => Some(Outcome::Unchanged),
                _ if opts.dry_run => Some(match o.change {
                    Change::Create => Outcome::Created,
                    _ => Outcome::Configured,
                }),
                _ => None,
            };
            (i, settled)
        })
        .collect();
    let objects = &report.plan.objects;
    let results: Vec<(usize, Outcome)> = stream::iter(jobs)
        .map(|(i, settled)| async move {
            if let Some(outcome) = settled {
                return (i, outcome);
            }
            let o = &objects[i];
            let outcome = match dest.api_for(o.desired.api_version(), &o.desired.id).await {
                Err(e) => Outcome::Failed {
                    reason: e.to_string(),
                },
                Ok(api) => {
                    let how = apply::Send {
                        field_manager: &opts.plan.field_manager,
                        force_conflicts: opts.plan.force_conflicts,
                        options: o.options,
                        dry_run: false,
                    };
                    match apply::send(
                        &api,
                        &o.desired.id.name,
                        &o.desired.object,
                        o.live.as_ref(),
                        &how,
                    )
                    .await
                    {
                        Ok(_) if o.live.is_none() => Outcome::Created,
                        Ok(_) => Outcome::Configured,
                        Err(e) => Outcome::Failed {
                            reason: api_error_message(&e),
                        },
                    }
                }
            };
            (i, outcome)
        })
        .buffer_unordered(opts.plan.concurrency.max(1))
        .collect()
        .await;
    for (i, outcome) in results {
        let id = report.plan.objects[i].desired.id.clone();
        if let Outcome::Failed { reason } = &outcome {
            failures.push(format!("{id}: {reason}"));
        }
        opts.tell(Progress::Applied(id.clone(), outcome.clone()));
        report.changes.entry(&id).outcome = Some(outcome);
    }
}

/// The state an object's health must reach for a wave to move on.
pub fn is_settled(state: HealthState) -> bool {
    matches!(
        state,
        HealthState::Healthy | HealthState::Suspended | HealthState::Unknown
    )
}
