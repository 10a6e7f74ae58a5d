//! Sync: executing a plan.
//!
//! ```text
//! refuse an empty desired set (unless allowed) ─▶ plan ─▶ record inventory (old ∪ new)
//!   ─▶ for each wave: CRDs + Namespaces, wait until established ─▶ the rest by kind,
//!      bounded concurrency, only drifted objects sent ─▶ wait for the wave's health
//!   ─▶ prune (only after every apply succeeded, only the inventory, never
//!      `capstan.dev/prune: "false"`) ─▶ record inventory (new) ─▶ wait for health
//! ```
//!
//! The result is a [`ChangeSet`] even when the sync fails part-way, so the CLI can
//! print and the controller record exactly what happened. A stop signal (the
//! emergency stop) is checked before every wave and before pruning.

mod order;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use capstan_core::{
    Change, ChangeSet, Health, HealthState, ObjectRef, Outcome, PRUNE_ANNOTATION, Revision,
};
use futures::{StreamExt, stream};
use kube::api::{DeleteParams, Patch, PatchParams};

pub use order::{Wave, kind_rank, waves};
pub use wait::{WaitError, health_of, wait_healthy};

use crate::destination::Destination;
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
    },
    /// A wave starts.
    Wave(i32),
    /// An object was applied (or failed).
    Applied(ObjectRef, Outcome),
    /// Waiting for objects to become healthy.
    Waiting(Vec<(ObjectRef, Health)>),
    /// An object was pruned (or kept, or failed).
    Pruned(ObjectRef, Outcome),
}

/// How to sync.
#[derive(Clone)]
pub struct SyncOptions {
    /// Planning options (Application, field manager, conflicts, ignored fields, concurrency).
    pub plan: PlanOptions,
    /// Delete objects that left the source.
    pub prune: bool,
    /// Allow an empty desired set (which then prunes everything, if `prune`).
    pub allow_empty: bool,
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// After applying and pruning, wait until everything is healthy.
    pub wait: bool,
    /// Limit of each health wait (between waves, and at the end).
    pub timeout: Duration,
    /// Namespace holding inventories.
    pub inventory_namespace: String,
    /// Name of the inventory (default: the application name). The controller uses
    /// `namespace.name`, since Applications in two namespaces may share a name.
    pub inventory_key: Option<String>,
    /// Checked before each wave and before pruning.
    pub stop: Option<StopSignal>,
    /// Told about progress.
    pub progress: Option<ProgressFn>,
}

impl SyncOptions {
    /// Defaults for `application`: no prune, no wait, 5 minute waits between waves.
    pub fn new(application: impl Into<String>) -> Self {
        SyncOptions {
            plan: PlanOptions::new(application),
            prune: false,
            allow_empty: false,
            dry_run: false,
            wait: false,
            timeout: Duration::from_secs(300),
            inventory_namespace: crate::inventory::INVENTORY_NAMESPACE.to_string(),
            inventory_key: None,
            stop: None,
            progress: None,
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
}

/// Why a sync did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The desired set is empty and the Application does not allow that.
    #[error(
        "the source rendered no objects; refusing to sync (an empty render never prunes unless allowEmpty is set)"
    )]
    EmptyRender,
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
    /// Objects did not become healthy in time, or became degraded.
    #[error(transparent)]
    Unhealthy(#[from] WaitError),
    /// The stop signal was raised.
    #[error("sync stopped by the emergency stop before wave {wave}")]
    Stopped {
        /// The wave that was not started.
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
    if let Err(e) = run(dest, desired, revision, opts, &mut report).await {
        report.error = Some(e);
    }
    report
}

async fn run(
    dest: &Destination,
    desired: Vec<DesiredObject>,
    revision: &Revision,
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    if desired.is_empty() && !opts.allow_empty {
        return Err(SyncError::EmptyRender);
    }
    let app = opts
        .inventory_key
        .clone()
        .unwrap_or_else(|| opts.plan.application.clone());
    let store = InventoryStore::new(dest.client().clone(), &opts.inventory_namespace);
    let t = std::time::Instant::now();
    let stored = store.load_stored(&app).await?;
    let previous = stored.clone().map(|(i, _)| i).unwrap_or_default();
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "loaded the inventory");
    let t = std::time::Instant::now();
    // The applies validate creates themselves; a dry run only asks for them to preview.
    let mut plan_opts = opts.plan.clone();
    plan_opts.dry_run_creates = opts.dry_run;
    let plan = plan::plan(dest, &desired, &previous, &plan_opts).await?;
    let to_apply = plan
        .objects
        .iter()
        .filter(|o| o.change.is_drift() || o.adopt || o.error.is_some())
        .count();
    let to_prune = plan.prune.iter().filter(|p| p.exists && !p.keep).count();
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        to_apply,
        to_prune,
        "planned"
    );
    opts.tell(Progress::Planned {
        objects: plan.objects.len(),
        to_apply,
        to_prune,
    });
    for o in &plan.objects {
        report.changes.entry(&o.desired.id).change = Some(o.change.clone());
    }
    for p in plan.prune.iter().filter(|p| p.exists) {
        report.changes.entry(&p.entry.id).change = Some(Change::Prune);
    }
    report.plan = plan;

    let mut current = Inventory::default();
    for d in &desired {
        current.insert(d.id.clone(), d.api_version());
    }
    // Objects about to be created are recorded before they exist, so a crash midway
    // cannot leave one that no inventory knows of; an inventory that already holds
    // them all is not written again until the end.
    let mut stored = stored;
    let union = previous.union(&current);
    if !opts.dry_run && stored.as_ref().is_none_or(|(i, _)| *i != union) {
        store.save(&app, &union, &revision.id).await?;
        stored = Some((union, revision.id.clone()));
    }

    let waves = order::waves(&report.plan.objects);
    let mut failures: Vec<String> = Vec::new();
    for (n, wave) in waves.iter().enumerate() {
        if opts.stopped() {
            return Err(SyncError::Stopped {
                wave: wave.wave.0.to_string(),
            });
        }
        opts.tell(Progress::Wave(wave.wave.0));
        if !wave.foundation.is_empty() {
            apply_group(dest, &wave.foundation, opts, report, &mut failures).await;
            let crds: Vec<usize> = wave
                .foundation
                .iter()
                .copied()
                .filter(|i| report.plan.objects[*i].desired.id.kind == "CustomResourceDefinition")
                .collect();
            if !crds.is_empty() && !opts.dry_run {
                wait_for(dest, &crds, opts, report).await?;
                dest.refresh().await.map_err(PlanError::from)?;
            }
        }
        for group in &wave.groups {
            apply_group(dest, group, opts, report, &mut failures).await;
        }
        if !failures.is_empty() {
            break;
        }
        let last = n + 1 == waves.len();
        if !last && !opts.dry_run {
            let all: Vec<usize> = wave.all().collect();
            wait_for(dest, &all, opts, report).await?;
        }
    }
    if !failures.is_empty() {
        return Err(SyncError::Failed {
            count: failures.len(),
            first: failures[0].clone(),
        });
    }

    if opts.stopped() {
        return Err(SyncError::Stopped {
            wave: "prune".into(),
        });
    }
    let mut remaining = current.clone();
    prune(dest, opts, report, &mut remaining, &mut failures).await;
    // a sync that changed nothing writes nothing (rerunning it costs no write at all)
    if !opts.dry_run
        && stored
            .as_ref()
            .is_none_or(|(i, r)| *i != remaining || *r != revision.id)
    {
        store.save(&app, &remaining, &revision.id).await?;
    }
    if !failures.is_empty() {
        return Err(SyncError::Failed {
            count: failures.len(),
            first: failures[0].clone(),
        });
    }

    if opts.wait && !opts.dry_run {
        let all: Vec<usize> = (0..report.plan.objects.len()).collect();
        wait_for(dest, &all, opts, report).await?;
        let healths: Vec<Health> = report
            .changes
            .entries
            .iter()
            .filter_map(|e| e.health.clone())
            .collect();
        report.health = Some(Health::worst(&healths));
    }
    Ok(())
}

async fn wait_for(
    dest: &Destination,
    idx: &[usize],
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let targets: Vec<(String, ObjectRef)> = idx
        .iter()
        .map(|i| {
            let o = &report.plan.objects[*i].desired;
            (o.api_version().to_string(), o.id.clone())
        })
        .collect();
    let progress = opts.progress.clone();
    let result = wait::wait_healthy(dest, &targets, opts.timeout, move |pending| {
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
            let settled = match (&o.change, o.adopt, &o.error) {
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
                    let mut pp = PatchParams::apply(&opts.plan.field_manager);
                    pp.force = opts.plan.force_conflicts;
                    match api
                        .patch(&o.desired.id.name, &pp, &Patch::Apply(&o.desired.object))
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

async fn prune(
    dest: &Destination,
    opts: &SyncOptions,
    report: &mut SyncReport,
    remaining: &mut Inventory,
    failures: &mut Vec<String>,
) {
    let mut candidates = report.plan.prune.clone();
    // Dependents before what they live in: reverse apply order, namespaces and CRDs last.
    candidates.sort_by_key(|c| {
        std::cmp::Reverse((order::kind_rank(&c.entry.id.kind), c.entry.id.clone()))
    });
    for c in candidates {
        let id = c.entry.id.clone();
        if !c.exists {
            continue;
        }
        let outcome = if c.keep {
            remaining.insert(id.clone(), c.entry.api_version.clone());
            Outcome::Skipped {
                reason: format!("annotated {PRUNE_ANNOTATION}: \"false\""),
            }
        } else if !opts.prune {
            remaining.insert(id.clone(), c.entry.api_version.clone());
            Outcome::Skipped {
                reason: "no longer in the source; pruning is off".into(),
            }
        } else if opts.dry_run {
            Outcome::Pruned
        } else {
            match dest.api_for(&c.entry.api_version, &id).await {
                Err(e) => Outcome::Failed {
                    reason: e.to_string(),
                },
                Ok(api) => match api.delete(&id.name, &DeleteParams::background()).await {
                    Ok(_) => Outcome::Pruned,
                    Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Pruned,
                    Err(e) => {
                        remaining.insert(id.clone(), c.entry.api_version.clone());
                        Outcome::Failed {
                            reason: api_error_message(&e),
                        }
                    }
                },
            }
        };
        if let Outcome::Failed { reason } = &outcome {
            failures.push(format!("pruning {id}: {reason}"));
        }
        opts.tell(Progress::Pruned(id.clone(), outcome.clone()));
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
