//! Deleting an Application with [`DELETE_RESOURCES_FINALIZER`]: what it applied goes
//! first.

use std::time::Duration;

use capstan_core::Revision;
use capstan_engine::inventory::InventoryStore;
use capstan_engine::sync;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::operation::{change_summary, sync_options};
use super::spec::destination_namespace;
use crate::Context;
use crate::audit::{self, AuditRecordSpec};
use crate::crd::Application;

/// The finalizer that makes deleting an Application delete what it applied (Argo CD's
/// `resources-finalizer.argocd.argoproj.io`). Without it, deleting an Application
/// leaves its objects in place.
pub const DELETE_RESOURCES_FINALIZER: &str = "capstan.dev/delete-resources";

/// An Application being deleted. With [`DELETE_RESOURCES_FINALIZER`]: prune everything
/// its inventory holds (objects annotated `capstan.dev/prune: "false"` stay), drop the
/// inventory, audit it, and remove the finalizer — never while the emergency stop is
/// on. Returns when to try again, or `None` when nothing is left to do.
pub async fn finalize(app: &Application, ctx: &Context) -> Option<Duration> {
    let finalizers = app.finalizers();
    let index = finalizers
        .iter()
        .position(|f| f == DELETE_RESOURCES_FINALIZER)?;
    if ctx.stop.is_stopped() || !ctx.leader.is_leader() {
        return Some(Duration::from_secs(5));
    }
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let key = format!("{ns}/{name}");
    let inventory_key = format!("{ns}.{name}");
    let dest = ctx.dest.with_namespace(destination_namespace(app));
    let last = app
        .status
        .as_ref()
        .and_then(|s| s.sync.as_ref())
        .map(|s| s.revision.clone())
        .unwrap_or_default();
    let revision = Revision {
        id: last.clone(),
        requested: String::new(),
        author: String::new(),
        message: "Application deleted".into(),
        time: String::new(),
    };
    let mut opts = sync_options(&name, &inventory_key, ctx);
    opts.prune = true;
    opts.allow_empty = true;
    let report = sync::sync(&dest, Vec::new(), &revision, &opts).await;
    if let Some(e) = &report.error {
        tracing::warn!(app = %key, error = %e, "deleting the Application's resources");
        return Some(Duration::from_secs(10));
    }
    let store = InventoryStore::new(ctx.client.clone(), &ctx.opts.namespace);
    if let Err(e) = store.delete(&inventory_key).await {
        tracing::warn!(app = %key, error = %e, "deleting the inventory");
        return Some(Duration::from_secs(10));
    }
    let record = AuditRecordSpec {
        time: audit::record_time(),
        application: key.clone(),
        action: "delete".into(),
        trigger: "deletion".into(),
        actor: ctx.opts.identity.clone(),
        from_revision: last,
        summary: change_summary(&report),
        result: "Succeeded".into(),
        ..Default::default()
    };
    if let Err(e) = audit::append(&ctx.client, &ns, record, Some(app.object_ref(&()))).await {
        tracing::warn!(app = %key, error = %e, "writing the audit record");
    }
    remove_finalizer(app, index, ctx).await
}

/// Remove exactly our finalizer; the JSON patch's test fails (and we retry) if the
/// list moved meanwhile.
async fn remove_finalizer(app: &Application, index: usize, ctx: &Context) -> Option<Duration> {
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = match serde_json::from_value(json!([
        {"op": "test", "path": path, "value": DELETE_RESOURCES_FINALIZER},
        {"op": "remove", "path": path},
    ])) {
        Ok(p) => p,
        Err(_) => return Some(Duration::from_secs(10)),
    };
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
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
            tracing::warn!(app = %format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any()), error = %e, "removing the finalizer");
            Some(Duration::from_secs(2))
        }
    }
}
