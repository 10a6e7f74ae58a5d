//! Deleting an Application:
//!
//! ```text
//! PreDelete hooks (awaited; a failure keeps the Application with a DeletionError
//!   condition and is retried, with the source fetched again) ─▶ with
//!   DELETE_RESOURCES_FINALIZER: delete what it applied (Delete=false keeps) and its
//!   inventory ─▶ PostDelete hooks ─▶ audit ─▶ the finalizers removed
//! ```
//!
//! Hooks run when the Application has either finalizer; the controller adds
//! [`DELETE_HOOKS_FINALIZER`] itself to an Application whose source has PreDelete or
//! PostDelete hooks, as Argo CD does. Nothing runs while the emergency stop is on.

use std::time::Duration;

use capstan_core::{HookType, Revision, Role};
use capstan_engine::destination::Destination;
use capstan_engine::inventory::InventoryStore;
use capstan_engine::render::DesiredObject;
use capstan_engine::sync::{self, SyncOptions};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::operation::{change_summary, hook_statuses, prune_confirmed, sync_options};
use super::spec::destination_namespace;
use super::status::{condition, merge_conditions};
use super::{Pass, Trigger};
use crate::Context;
use crate::audit::{self, AuditRecordSpec};
use crate::crd::{Application, OperationState};

/// The finalizer that makes deleting an Application delete what it applied (Argo CD's
/// `resources-finalizer.argocd.argoproj.io`). Without it, deleting an Application
/// leaves its objects in place.
pub const DELETE_RESOURCES_FINALIZER: &str = "capstan.dev/delete-resources";

/// The finalizer that runs an Application's PreDelete and PostDelete hooks when it is
/// deleted (Argo CD's `pre-delete-finalizer.argocd.argoproj.io`); its objects stay.
pub const DELETE_HOOKS_FINALIZER: &str = "capstan.dev/delete-hooks";

/// The hooks of `desired` that run when the Application is deleted.
pub(super) fn delete_hooks(desired: &[DesiredObject]) -> Vec<DesiredObject> {
    desired
        .iter()
        .filter(|d| match &d.role {
            Role::Hook(h) => h
                .types
                .iter()
                .any(|t| matches!(t, HookType::PreDelete | HookType::PostDelete)),
            _ => false,
        })
        .cloned()
        .collect()
}

/// An Application being deleted, with one of our finalizers: run its delete hooks and
/// (with [`DELETE_RESOURCES_FINALIZER`]) delete everything its inventory holds, then
/// remove the finalizers. Returns when to try again, or `None` when nothing is left
/// to do.
pub async fn finalize(app: &Application, ctx: &Context) -> Option<Duration> {
    let has = |f: &str| app.finalizers().iter().any(|x| x == f);
    let resources = has(DELETE_RESOURCES_FINALIZER);
    if !resources && !has(DELETE_HOOKS_FINALIZER) {
        return None;
    }
    if ctx.stop.is_stopped() || !ctx.leader.is_leader() {
        return Some(Duration::from_secs(5));
    }
    let mut deletion = Deletion::new(app, ctx);
    let hooks = match deletion.hooks().await {
        Ok(h) => h,
        Err(message) => return deletion.failed(&message).await,
    };
    if let Err(message) = deletion.run_hooks(&hooks, HookType::PreDelete).await {
        return deletion.failed(&message).await;
    }
    // PreDelete hooks are done with once they succeeded (as Argo CD cleans them up)
    deletion.clean_up(HookType::PreDelete).await;
    let summary = if resources {
        match deletion.delete_resources().await {
            Ok(summary) => summary,
            Err(message) => return deletion.failed(&message).await,
        }
    } else {
        Default::default()
    };
    if let Err(message) = deletion.run_hooks(&hooks, HookType::PostDelete).await {
        return deletion.failed(&message).await;
    }
    deletion.audit(summary).await;
    remove_finalizers(app, ctx).await
}

/// One attempt at deleting an Application.
struct Deletion<'a> {
    app: &'a Application,
    ctx: &'a Context,
    key: String,
    inventory_key: String,
    dest: Destination,
    revision: Revision,
    hook_runs: Vec<sync::HookRun>,
}

impl<'a> Deletion<'a> {
    fn new(app: &'a Application, ctx: &'a Context) -> Self {
        let ns = app.namespace().unwrap_or_default();
        let name = app.name_any();
        let last = app
            .status
            .as_ref()
            .and_then(|s| s.sync.as_ref())
            .map(|s| s.revision.clone())
            .unwrap_or_default();
        Deletion {
            app,
            ctx,
            key: format!("{ns}/{name}"),
            inventory_key: format!("{ns}.{name}"),
            dest: ctx.dest.with_namespace(destination_namespace(app)),
            revision: Revision {
                id: last,
                requested: String::new(),
                author: String::new(),
                message: "Application deleted".into(),
                time: String::new(),
            },
            hook_runs: Vec::new(),
        }
    }

    fn opts(&self) -> SyncOptions {
        sync_options(&self.app.name_any(), &self.inventory_key, self.ctx)
    }

    /// The delete hooks of the source at the revision the spec names (fetched again,
    /// so a fixed hook is picked up on retry). An Application without a source has none.
    async fn hooks(&mut self) -> Result<Vec<DesiredObject>, String> {
        if self.app.spec.source.repo_url.is_empty() && self.app.spec.sources.is_empty() {
            return Ok(Vec::new());
        }
        let mut pass = Pass::new(self.app, Trigger::Refresh, self.ctx);
        let (desired, revision) = pass
            .for_deletion()
            .await
            .map_err(|f| format!("reading the delete hooks: {}: {}", f.reason, f.message))?;
        self.revision = revision;
        Ok(delete_hooks(&desired))
    }

    async fn run_hooks(&mut self, hooks: &[DesiredObject], phase: HookType) -> Result<(), String> {
        if hooks.is_empty() {
            return Ok(());
        }
        let (runs, result) =
            sync::run_hooks(&self.dest, hooks, phase, &self.revision, &self.opts()).await;
        self.hook_runs.extend(runs);
        result.map_err(|e| e.to_string())
    }

    /// Delete the objects of the runs of `phase`.
    async fn clean_up(&self, phase: HookType) {
        for run in self
            .hook_runs
            .iter()
            .filter(|r| r.result.hook_type == phase)
        {
            if let Err(e) = sync::hooks::remove(&self.dest, run).await {
                tracing::warn!(app = %self.key, hook = %run.object, error = %e, "deleting the hook");
            }
        }
    }

    /// Delete what the inventory holds (objects marked Delete=false stay) and the
    /// inventory; the outcome counts.
    async fn delete_resources(&self) -> Result<std::collections::BTreeMap<String, u32>, String> {
        let mut opts = self.opts();
        opts.prune = true;
        opts.allow_empty = true;
        opts.deleting = true;
        opts.confirm_prune = prune_confirmed(self.app);
        let report = sync::sync(&self.dest, Vec::new(), &self.revision, &opts).await;
        if let Some(e) = &report.error {
            return Err(format!("deleting the Application's resources: {e}"));
        }
        let store = InventoryStore::new(self.ctx.client.clone(), &self.ctx.opts.namespace);
        store
            .delete(&self.inventory_key)
            .await
            .map_err(|e| format!("deleting the inventory: {e}"))?;
        Ok(change_summary(&report))
    }

    /// Keep the Application, with a `DeletionError` condition and the hook runs, and
    /// try again.
    async fn failed(&self, message: &str) -> Option<Duration> {
        tracing::warn!(app = %self.key, %message, "deleting the Application");
        let mut status = self.app.status.clone().unwrap_or_default();
        let mut conditions: Vec<_> = status
            .conditions
            .iter()
            .filter(|c| c.type_ != "DeletionError")
            .cloned()
            .collect();
        conditions.push(condition(
            "DeletionError",
            true,
            "DeletionFailed",
            format!("{message}; retried every 10s (fix the source, or remove the finalizers to delete the Application without this step)"),
            self.app.meta().generation,
        ));
        status.conditions = merge_conditions(&status.conditions, conditions);
        self.record_hooks(&mut status, "Failed", message);
        crate::apply_status(&self.ctx.client, self.app, &status).await;
        Some(Duration::from_secs(10))
    }

    fn record_hooks(&self, status: &mut crate::crd::ApplicationStatus, phase: &str, message: &str) {
        if self.hook_runs.is_empty() {
            return;
        }
        status.operation_state = Some(OperationState {
            phase: phase.into(),
            message: message.into(),
            revision: self.revision.id.clone(),
            generation: self.app.meta().generation,
            trigger: "deletion".into(),
            started_at: None,
            finished_at: Some(crate::now()),
            summary: Default::default(),
            hooks: hook_statuses(&self.hook_runs),
        });
    }

    async fn audit(&self, summary: std::collections::BTreeMap<String, u32>) {
        let record = AuditRecordSpec {
            time: audit::record_time(),
            application: self.key.clone(),
            action: "delete".into(),
            trigger: "deletion".into(),
            actor: self.ctx.opts.identity.clone(),
            from_revision: self.revision.id.clone(),
            summary,
            result: "Succeeded".into(),
            details: hook_statuses(&self.hook_runs)
                .iter()
                .map(|h| format!("{} hook {}/{} {}", h.hook_type, h.kind, h.name, h.phase))
                .collect::<Vec<_>>()
                .join("; "),
            ..Default::default()
        };
        let ns = self.app.namespace().unwrap_or_default();
        if let Err(e) = audit::append(
            &self.ctx.client,
            &ns,
            record,
            Some(self.app.object_ref(&())),
        )
        .await
        {
            tracing::warn!(app = %self.key, error = %e, "writing the audit record");
        }
    }
}

/// Add `finalizer` to the Application (a JSON patch that fails if the list moved).
pub(super) async fn add_finalizer(
    app: &Application,
    finalizer: &str,
    ctx: &Context,
) -> Result<(), kube::Error> {
    let patch = match &app.meta().finalizers {
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ]),
        None => json!([{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}]),
    };
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    api.patch(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .map(|_| ())
}

/// Remove our finalizers in one patch; its test fails (and we retry) if the list moved
/// meanwhile.
async fn remove_finalizers(app: &Application, ctx: &Context) -> Option<Duration> {
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let current = match api.get_opt(&app.name_any()).await {
        Ok(Some(a)) => a,
        Ok(None) => return None,
        Err(_) => return Some(Duration::from_secs(2)),
    };
    let list = current.finalizers().to_vec();
    let kept: Vec<&String> = list
        .iter()
        .filter(|f| *f != DELETE_RESOURCES_FINALIZER && *f != DELETE_HOOKS_FINALIZER)
        .collect();
    if kept.len() == list.len() {
        return None;
    }
    let patch: json_patch::Patch = match serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": list},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ])) {
        Ok(p) => p,
        Err(_) => return Some(Duration::from_secs(10)),
    };
    match api
        .patch(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => {
            tracing::warn!(app = %format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any()), error = %e, "removing the finalizers");
            Some(Duration::from_secs(2))
        }
    }
}
