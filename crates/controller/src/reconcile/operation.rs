//! A sync operation of the controller: the engine's sync with the controller's
//! options, then what it leaves behind — the operation state, a history entry, an
//! audit record (and Event), the failure count, and the request it answered.

use std::collections::BTreeMap;
use std::sync::Arc;

use capstan_core::Revision;
use capstan_engine::render::DesiredObject;
use capstan_engine::sync::{self, SyncOptions};
use kube::Resource;

use super::memory::AppMemory;
use super::request::{self, SyncRequest};
use super::spec;
use super::{Pass, Planned};
use crate::audit::{self, AuditRecordSpec};
use crate::crd::{HistoryEntry, HookStatus, OperationState};
use crate::{Context, now};

/// Sync options every controller sync shares: the Application's inventory in the
/// controller's namespace, the wave timeout, and a stop signal raised by the emergency
/// stop or by losing leadership.
pub(super) fn sync_options(name: &str, inventory_key: &str, ctx: &Context) -> SyncOptions {
    let mut opts = SyncOptions::new(name);
    opts.inventory_key = Some(inventory_key.to_string());
    opts.inventory_namespace = ctx.opts.namespace.clone();
    opts.timeout = ctx.opts.wave_timeout;
    let stop = ctx.stop.clone();
    let leader = ctx.leader.clone();
    opts.stop = Some(Arc::new(move || stop.is_stopped() || !leader.is_leader()));
    opts
}

/// The annotation that confirms pruning (and deleting) objects marked `Prune=confirm`
/// or `Delete=confirm`; Argo CD's `argocd.argoproj.io/deletion-approved` is read too.
pub const PRUNE_CONFIRMED_ANNOTATION: &str = "capstan.dev/prune-confirmed";

/// Whether the Application confirms pruning objects marked `confirm`.
pub(super) fn prune_confirmed(app: &crate::crd::Application) -> bool {
    let ann = app.meta().annotations.as_ref();
    [
        PRUNE_CONFIRMED_ANNOTATION,
        "argocd.argoproj.io/deletion-approved",
    ]
    .iter()
    .any(|k| ann.is_some_and(|a| a.get(*k).is_some_and(|v| !v.is_empty() && v != "false")))
}

/// The hook runs, as the status shows them.
pub(super) fn hook_statuses(runs: &[sync::HookRun]) -> Vec<HookStatus> {
    runs.iter()
        .map(|r| HookStatus {
            kind: r.object.kind.clone(),
            name: r.object.name.clone(),
            namespace: r.object.namespace.clone().unwrap_or_default(),
            hook_type: r.result.hook_type.as_str().to_string(),
            phase: format!("{:?}", r.result.phase),
            message: r.result.message.clone(),
        })
        .collect()
}

/// How many objects each outcome had, without the zeros.
pub(super) fn change_summary(report: &sync::SyncReport) -> BTreeMap<String, u32> {
    report
        .changes
        .outcome_counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(verb, n)| (verb.to_string(), n as u32))
        .collect()
}

/// `Succeeded`, `Stopped` or `Failed`.
pub(super) fn phase(report: &sync::SyncReport) -> &'static str {
    match &report.error {
        None => "Succeeded",
        Some(sync::SyncError::Stopped { .. }) => "Stopped",
        Some(_) => "Failed",
    }
}

/// Add a history entry (newest first, ids increasing, at most `limit` kept).
pub(super) fn push_history(
    history: &mut Vec<HistoryEntry>,
    revision: &Revision,
    trigger: &str,
    result: &str,
    limit: usize,
) {
    let id = history.iter().map(|h| h.id).max().unwrap_or(0) + 1;
    history.insert(
        0,
        HistoryEntry {
            id,
            revision: revision.id.clone(),
            author: revision.author.clone(),
            message: revision.message.clone(),
            deployed_at: now(),
            trigger: trigger.to_string(),
            result: result.to_string(),
        },
    );
    history.truncate(limit.max(1));
}

impl Pass<'_> {
    /// Sync the desired set and record the operation.
    pub(super) async fn sync(
        &mut self,
        planned: &Planned,
        desired: &[DesiredObject],
        revision: &Revision,
        memory: &mut AppMemory,
    ) -> sync::SyncReport {
        let ctx = self.ctx;
        let request = self.request.clone();
        let automated = self.app.spec.sync_policy.automated.as_ref();
        let mut opts = sync_options(&self.name, &self.inventory_key, ctx);
        opts.plan = planned.opts.clone();
        opts.prune = request
            .as_ref()
            .and_then(|r| r.prune)
            .unwrap_or_else(|| automated.is_some_and(|a| a.prune));
        opts.allow_empty = self.app.spec.sync_policy.allow_empty;
        opts.confirm_prune = prune_confirmed(self.app);
        opts.namespace_metadata = spec::namespace_metadata(self.app);
        opts.health = Arc::clone(&self.health);
        let trigger = request
            .as_ref()
            .map(|r| r.trigger.clone())
            .unwrap_or_else(|| self.trigger.as_str().to_string());
        let started = now();
        let report = sync::sync(&planned.dest, desired.to_vec(), revision, &opts).await;
        let phase = phase(&report);
        ctx.metrics
            .sync_finished(&self.namespace, &self.name, phase);
        let summary = change_summary(&report);
        let mut message = match &report.error {
            None => format!("synced to {}", revision.short()),
            Some(e) => e.to_string(),
        };
        if let Some(r) = &request {
            message.push_str(&format!(" (request {})", r.id));
        }
        self.status.operation_state = Some(OperationState {
            phase: phase.into(),
            message: message.clone(),
            revision: revision.id.clone(),
            generation: self.generation,
            trigger: trigger.clone(),
            started_at: Some(started),
            finished_at: Some(now()),
            summary: summary.clone(),
            hooks: hook_statuses(&report.hooks),
        });
        push_history(
            &mut self.status.history,
            revision,
            &trigger,
            phase,
            ctx.opts.history_limit,
        );
        self.audit_sync(&report, request.as_ref(), &trigger, revision, summary)
            .await;
        if phase == "Failed" {
            tracing::warn!(app = %self.key, %message, "sync failed");
            memory.failures += 1;
        } else {
            memory.failures = 0;
        }
        if request.is_some() {
            request::clear(self.app, ctx).await;
        }
        report
    }

    async fn audit_sync(
        &self,
        report: &sync::SyncReport,
        request: Option<&SyncRequest>,
        trigger: &str,
        revision: &Revision,
        summary: BTreeMap<String, u32>,
    ) {
        let action = match trigger {
            "rollback" => "rollback",
            "revert" => "revert",
            _ => "sync",
        };
        let details = match (&report.error, request.filter(|r| !r.commit.is_empty())) {
            (Some(e), _) => e.to_string(),
            (None, Some(r)) => format!("revert commit {}", r.commit),
            (None, None) => String::new(),
        };
        let record = AuditRecordSpec {
            time: audit::record_time(),
            application: self.key.clone(),
            action: action.into(),
            trigger: trigger.to_string(),
            actor: request
                .map(|r| r.by.clone())
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| self.ctx.opts.identity.clone()),
            from_revision: self.last_synced().unwrap_or_default(),
            to_revision: revision.id.clone(),
            author: revision.author.clone(),
            message: revision.message.clone(),
            summary,
            result: phase(report).into(),
            details,
        };
        if let Err(e) = audit::append(
            &self.ctx.client,
            &self.namespace,
            record,
            Some(self.app.object_ref(&())),
        )
        .await
        {
            tracing::warn!(app = %self.key, error = %e, "writing the audit record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_newest_first_with_increasing_ids_and_bounded() {
        let mut history = Vec::new();
        for i in 0..12 {
            let revision = Revision {
                id: format!("{i:040}"),
                requested: String::new(),
                author: "Ada <ada@example.com>".into(),
                message: format!("change {i}"),
                time: String::new(),
            };
            push_history(&mut history, &revision, "automated", "Succeeded", 10);
        }
        assert_eq!(history.len(), 10);
        assert_eq!(history[0].id, 12);
        assert_eq!(history[0].message, "change 11");
        assert_eq!(history[9].id, 3);
        assert_eq!(history[0].author, "Ada <ada@example.com>");
    }
}
