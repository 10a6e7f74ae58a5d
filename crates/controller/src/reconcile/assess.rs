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
            Some(_) => {
                let inventory = self
                    .inventory()
                    .load(&self.inventory_key)
                    .await
                    .unwrap_or_default();
                plan::plan(&planned.dest, desired, &inventory, &planned.opts)
                    .await
                    .ok()
            }
            None => None,
        };
        let plan_now = after_sync.as_ref().unwrap_or(&planned.plan);
        let (resources, health) = status::resources_and_health(plan_now);
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
        let stalled = sync_failed.is_some() && memory.failures > retry_limit;
        let generation = self.generation;
        let synced_cond = if out_of_sync {
            condition(
                "Synced",
                false,
                "OutOfSync",
                format!(
                    "{} object(s) differ from {}",
                    status::drift_count(plan_now),
                    revision.short()
                ),
                generation,
            )
        } else {
            condition(
                "Synced",
                true,
                "Synced",
                format!("in sync with {}", revision.short()),
                generation,
            )
        };
        let blocked = match &decision {
            Decision::Blocked { reason, message } => Some((*reason, message.clone())),
            _ => None,
        };
        let (ready, ready_reason, ready_message) = if let Some(e) = &sync_failed {
            (false, "SyncFailed", e.clone())
        } else if let Some((reason, message)) = &blocked {
            (false, *reason, message.clone())
        } else if out_of_sync {
            (false, "OutOfSync", synced_cond.message.clone())
        } else if !health.state.is_ready() {
            (false, health.state.as_str(), health.message.clone())
        } else {
            (
                true,
                "Ready",
                format!("synced to {} and healthy", revision.short()),
            )
        };
        let mut conditions = vec![
            condition("Ready", ready, ready_reason, ready_message, generation),
            synced_cond,
            condition(
                "Healthy",
                health.state.is_ready(),
                health.state.as_str(),
                health.message.clone(),
                generation,
            ),
            stalled_condition(stalled, memory.failures, generation),
        ];
        if self.app.spec.sync_policy.automated.is_none() {
            conditions.push(self.manual_condition());
        }
        self.status.conditions = merge_conditions(&self.old.conditions, conditions);
        if sync_failed.is_none() && blocked.is_none() {
            memory.failures = 0;
        }

        let interval = spec::interval(self.app, self.ctx.opts.default_interval);
        let next = if sync_failed.is_some() && !stalled {
            spec::backoff(memory.failures, self.ctx.opts.max_backoff, self.app)
        } else if matches!(
            decision,
            Decision::Blocked {
                reason: "WaitingForDependencies",
                ..
            }
        ) {
            Duration::from_secs(3)
        } else if health.state == HealthState::Progressing
            || health.state == HealthState::Missing && synced.is_some()
        {
            Duration::from_secs(2).min(interval)
        } else {
            interval
        };
        Report {
            status: std::mem::take(&mut self.status),
            next,
            synced: synced.is_some(),
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
