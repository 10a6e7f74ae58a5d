//! Stage 7 of a reconcile: what is — resources, health, conditions — and when to
//! look again.

use std::time::Duration;

use capstan_core::{HealthState, Revision};
use capstan_engine::plan;
use capstan_engine::render::DesiredObject;
use capstan_engine::sync::SyncReport;

use super::memory::AppMemory;
use super::status::{self, condition, merge_conditions};
use super::{Decision, Pass, Planned, Report, spec};
use crate::crd::{Condition, HealthStatus, SyncStatus};

/// What a reconcile found, for the conditions and the next run.
struct Found<'a> {
    revision: &'a Revision,
    health: capstan_core::Health,
    out_of_sync: bool,
    drift: usize,
    /// The sync's error, when a sync ran and failed.
    sync_failed: Option<String>,
    /// Why a wanted sync did not run.
    blocked: Option<(&'static str, String)>,
    stalled: bool,
}

impl Pass<'_> {
    /// Stage 7: what is (re-planned after a sync): resources, health, conditions, and when
    /// to look again.
    pub(super) async fn assess(
        &mut self,
        planned: Planned,
        desired: &[DesiredObject],
        revision: &Revision,
        decision: Decision,
        synced: Option<SyncReport>,
        memory: &mut AppMemory,
    ) -> Report {
        let after_sync = match &synced {
            Some(_) => self.replan(&planned, desired).await,
            None => None,
        };
        let plan_now = after_sync.as_ref().unwrap_or(&planned.plan);
        let (resources, health) = status::resources_and_health(plan_now, &self.health);
        let out_of_sync = plan_now.has_drift();
        self.status.resources = resources;
        self.status.health = Some(HealthStatus {
            status: health.state.to_string(),
            message: health.message.clone(),
        });
        self.status.sync = Some(SyncStatus {
            status: if out_of_sync { "OutOfSync" } else { "Synced" }.into(),
            revision: revision.id.clone(),
            short_revision: revision.id.chars().take(7).collect(),
        });
        let sync_failed = synced
            .as_ref()
            .and_then(|r| r.error.as_ref())
            .map(|e| e.to_string());
        let retry_limit = self
            .app
            .spec
            .sync_policy
            .retry
            .as_ref()
            .map(|r| r.limit)
            .unwrap_or(self.ctx.opts.retry_limit);
        let found = Found {
            revision,
            health,
            out_of_sync,
            drift: status::drift_count(plan_now),
            stalled: sync_failed.is_some() && memory.failures > retry_limit,
            sync_failed,
            blocked: match &decision {
                Decision::Blocked { reason, message } => Some((*reason, message.clone())),
                _ => None,
            },
        };
        self.status.conditions =
            merge_conditions(&self.old.conditions, self.conditions(&found, memory));
        if found.sync_failed.is_none() && found.blocked.is_none() {
            memory.failures = 0;
        }
        Report {
            status: std::mem::take(&mut self.status),
            next: self.next_run(&found, synced.is_some(), memory),
            synced: synced.is_some(),
        }
    }

    /// The plan after a sync: what the cluster holds now. When the inventory or the
    /// cluster cannot be read, the status keeps the plan from before the sync (which
    /// reports more drift, never less) and the failure is logged naming the cause;
    /// the next reconcile plans again. An unreadable inventory is never taken as an
    /// empty one, which would hide objects that wait to be pruned.
    async fn replan(&self, planned: &Planned, desired: &[DesiredObject]) -> Option<plan::Plan> {
        let inventory = match self.inventory().load(&self.inventory_key).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(application = %self.inventory_key, error = %crate::reconcile::error_chain(&e), "reading the inventory after the sync; the status shows the plan from before it");
                return None;
            }
        };
        match plan::plan(&planned.dest, desired, &inventory, &planned.opts).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(application = %self.inventory_key, error = %crate::reconcile::error_chain(&e), "planning after the sync; the status shows the plan from before it");
                None
            }
        }
    }

    /// `Ready`, `Synced`, `Healthy`, `Stalled`, and `AutomatedSyncDisabled` when it is.
    fn conditions(&self, f: &Found<'_>, memory: &AppMemory) -> Vec<Condition> {
        let generation = self.generation;
        let short = f.revision.short();
        let synced = if f.out_of_sync {
            condition(
                "Synced",
                false,
                "OutOfSync",
                format!("{} object(s) differ from {short}", f.drift),
                generation,
            )
        } else {
            condition(
                "Synced",
                true,
                "Synced",
                format!("in sync with {short}"),
                generation,
            )
        };
        let (ready, reason, message) = if let Some(e) = &f.sync_failed {
            (false, "SyncFailed", e.clone())
        } else if let Some((reason, message)) = &f.blocked {
            (false, *reason, message.clone())
        } else if f.out_of_sync {
            (false, "OutOfSync", synced.message.clone())
        } else if !f.health.state.is_ready() {
            (false, f.health.state.as_str(), f.health.message.clone())
        } else {
            (true, "Ready", format!("synced to {short} and healthy"))
        };
        let mut conditions = vec![
            condition("Ready", ready, reason, message, generation),
            synced,
            condition(
                "Healthy",
                f.health.state.is_ready(),
                f.health.state.as_str(),
                f.health.message.clone(),
                generation,
            ),
            stalled_condition(f.stalled, memory.failures, generation),
        ];
        if self.app.spec.sync_policy.automated.is_none() {
            conditions.push(self.manual_condition());
        }
        if let Some(problem) = &self.health_rules_problem {
            conditions.push(condition(
                "HealthRulesInvalid",
                true,
                "InvalidHealthRules",
                format!("judged without the cluster's custom health rules: {problem}"),
                generation,
            ));
        }
        conditions
    }

    /// When to reconcile again: after the backoff when a sync failed, soon while
    /// waiting for dependencies or a rollout, else at the interval.
    fn next_run(&self, f: &Found<'_>, synced: bool, memory: &AppMemory) -> Duration {
        let interval = spec::interval(self.app, self.ctx.opts.default_interval);
        if f.sync_failed.is_some() && !f.stalled {
            spec::backoff(memory.failures, self.ctx.opts.max_backoff, self.app)
        } else if matches!(f.blocked, Some(("WaitingForDependencies", _))) {
            Duration::from_secs(3)
        } else if f.health.state == HealthState::Progressing
            || f.health.state == HealthState::Missing && synced
        {
            Duration::from_secs(2).min(interval)
        } else {
            interval
        }
    }

    /// `AutomatedSyncDisabled`: why nothing syncs by itself.
    fn manual_condition(&self) -> Condition {
        let rolled_back = self
            .status
            .operation_state
            .as_ref()
            .filter(|o| o.trigger == "rollback")
            .map(|o| o.revision.chars().take(7).collect::<String>());
        condition(
            "AutomatedSyncDisabled",
            true,
            if rolled_back.is_some() {
                "RolledBack"
            } else {
                "Manual"
            },
            match rolled_back {
                Some(r) => format!(
                    "rolled back to {r}; automated sync stays off until it is enabled again"
                ),
                None => "automated sync is off: changes are only reported".into(),
            },
            self.generation,
        )
    }
}

/// `Stalled`: retries exhausted.
fn stalled_condition(stalled: bool, failures: u32, generation: Option<i64>) -> Condition {
    if stalled {
        condition(
            "Stalled",
            true,
            "RetriesExhausted",
            format!("sync failed {failures} times; waiting for a new revision or spec"),
            generation,
        )
    } else {
        condition("Stalled", false, "NotStalled", "", generation)
    }
}
