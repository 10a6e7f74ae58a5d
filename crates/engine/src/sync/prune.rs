//! Pruning: deleting the objects of the inventory that left the source, after every
//! apply succeeded.
//!
//! - From the highest wave down, as Argo CD does: what was created last goes first.
//!   Inside a wave, dependents before what they live in (reverse apply order,
//!   namespaces and CRDs last). Each wave's objects are gone (their finalizers done)
//!   before the next wave is pruned, so an object that needs its RBAC to clean up
//!   still has it.
//! - Never an object annotated `capstan.dev/prune: "false"`; `Prune=false` keeps it
//!   too (but not from its Application's deletion: `Delete=false` does that).
//!   `Prune=confirm` / `Delete=confirm` wait for a confirmation (`--confirm-prune`).
//! - Deletes propagate as `PrunePropagationPolicy` says (background by default).

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_core::{Outcome, Permission, Propagation, SyncWave};
use kube::api::{DeleteParams, PropagationPolicy};

use super::{Progress, SyncOptions, SyncReport, order};
use crate::destination::Destination;
use crate::inventory::Inventory;
use crate::plan::{PruneCandidate, api_error_message};

/// Why a candidate is not deleted now, or `None` when it is.
fn kept(c: &PruneCandidate, opts: &SyncOptions) -> Option<String> {
    if let Some(reason) = &c.keep {
        return Some(reason.clone());
    }
    let (permission, option) = if opts.deleting {
        (c.options.delete, "Delete")
    } else {
        (c.options.prune, "Prune")
    };
    match permission {
        Permission::Deny => return Some(format!("sync option {option}=false")),
        Permission::Confirm if !opts.confirm_prune => {
            return Some(format!(
                "sync option {option}=confirm: confirm with --confirm-prune (or the Application annotation capstan.dev/prune-confirmed)"
            ));
        }
        _ => {}
    }
    if !opts.prune && !opts.deleting {
        return Some("no longer in the source; pruning is off".into());
    }
    None
}

/// Prune the plan's candidates; what stays is added to `remaining`.
pub(super) async fn prune(
    dest: &Destination,
    opts: &SyncOptions,
    report: &mut SyncReport,
    remaining: &mut Inventory,
    failures: &mut Vec<String>,
) {
    let mut waves: BTreeMap<std::cmp::Reverse<SyncWave>, Vec<PruneCandidate>> = BTreeMap::new();
    for c in report.plan.prune.iter().filter(|c| c.exists) {
        waves
            .entry(std::cmp::Reverse(c.wave))
            .or_default()
            .push(c.clone());
    }
    let count = waves.len();
    for (n, (_, mut wave)) in waves.into_iter().enumerate() {
        wave.sort_by_key(|c| {
            std::cmp::Reverse((order::kind_rank(&c.entry.id.kind), c.entry.id.clone()))
        });
        let mut deleted = Vec::new();
        for c in wave {
            let id = c.entry.id.clone();
            let outcome = match kept(&c, opts) {
                Some(reason) => {
                    remaining.insert(id.clone(), c.entry.api_version.clone());
                    Outcome::Skipped { reason }
                }
                None if opts.dry_run => Outcome::Pruned,
                None => match delete(dest, &c).await {
                    Ok(()) => {
                        deleted.push(c.clone());
                        Outcome::Pruned
                    }
                    Err(reason) => {
                        remaining.insert(id.clone(), c.entry.api_version.clone());
                        Outcome::Failed { reason }
                    }
                },
            };
            if let Outcome::Failed { reason } = &outcome {
                failures.push(format!("pruning {id}: {reason}"));
            }
            opts.tell(Progress::Pruned(id.clone(), outcome.clone()));
            report.changes.entry(&id).outcome = Some(outcome);
        }
        if !failures.is_empty() {
            return;
        }
        let last = n + 1 == count;
        if !last && let Err(e) = gone(dest, &deleted, opts.timeout).await {
            failures.push(e);
            return;
        }
    }
}

async fn delete(dest: &Destination, c: &PruneCandidate) -> Result<(), String> {
    let api = dest
        .api_for(&c.entry.api_version, &c.entry.id)
        .await
        .map_err(|e| e.to_string())?;
    let dp = DeleteParams {
        propagation_policy: Some(match c.options.prune_propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&c.entry.id.name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_error_message(&e)),
    }
}

/// Wait until the objects are gone; name those still there (and their finalizers)
/// when the time is up.
async fn gone(
    dest: &Destination,
    objects: &[PruneCandidate],
    limit: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(50);
    loop {
        let mut left = Vec::new();
        for c in objects {
            let Ok(api) = dest.api_for(&c.entry.api_version, &c.entry.id).await else {
                continue;
            };
            if let Ok(Some(o)) = api.get_opt(&c.entry.id.name).await {
                let finalizers = o.metadata.finalizers.unwrap_or_default();
                left.push(if finalizers.is_empty() {
                    c.entry.id.to_string()
                } else {
                    format!("{} (finalizers: {})", c.entry.id, finalizers.join(", "))
                });
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "still being deleted after {limit:?}, so the lower waves were not pruned: {}",
                left.join("; ")
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
