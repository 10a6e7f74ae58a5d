//! Running hooks: create the object of a hook run (deleting the one of the last run
//! first, by default), wait until it finished, then delete it by its policy.
//!
//! - A hook without a name gets one made of its `generateName`, the revision and the
//!   phase (`migrate-3f9c2e1-presync-1733100000`), so one hook runs once per phase.
//! - A named hook that still exists is run again only with `BeforeHookCreation` (the
//!   default): the old object is deleted and gone before the new one is created.
//!   Without it, the existing object is its result, as Argo CD does.
//! - While it runs a hook carries the finalizer `capstan.dev/hook-finalizer`, so a
//!   Job's `ttlSecondsAfterFinished` cannot remove it before its result was read.
//! - Finished means: a Pod `Succeeded` or `Failed`; a Job `Complete` or `Failed`; any
//!   other object Healthy (or Degraded).
//! - Hooks carry the label `capstan.dev/hook-of: APPLICATION`, not the Application's
//!   own label: they are not part of it, its inventory or its drift.

use std::time::Duration;

use capstan_core::{
    DeletePolicy, Health, HealthState, HookPhase, HookResult, HookType, ObjectRef, Role,
};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::destination::Destination;
use crate::health::CustomHealth;
use crate::plan::api_error_message;
use crate::render::DesiredObject;

/// The label hooks carry, naming their Application.
pub const HOOK_OF_LABEL: &str = "capstan.dev/hook-of";

/// The finalizer a hook carries while it runs.
pub const HOOK_FINALIZER: &str = "capstan.dev/hook-finalizer";

/// One hook run of a sync: which object, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// The object (with the name it was given).
    pub object: ObjectRef,
    /// Its apiVersion.
    pub api_version: String,
    /// The run.
    pub result: HookResult,
    /// Its delete policies.
    pub delete: Vec<DeletePolicy>,
}

/// The name a hook gets for a run: its own, or made from its `generateName`, the
/// revision and the phase.
pub fn run_name(hook: &DesiredObject, phase: HookType, revision: &str, started: i64) -> String {
    if !hook.unnamed {
        return hook.id.name.clone();
    }
    // a commit's first 7 characters (`sha256:…` of a local directory: its digest's)
    let digest = revision.rsplit(':').next().unwrap_or(revision);
    let mut rev: String = digest
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(7)
        .collect();
    if rev.is_empty() {
        rev = "local".into();
    }
    let mut name = format!("{}{rev}-{}-{started}", hook.id.name, phase.as_str()).to_lowercase();
    name.truncate(253);
    name
}

/// A run that is not started (a dry run): what would run.
pub fn pending(hook: &DesiredObject, phase: HookType, name: &str) -> HookRun {
    let mut id = hook.id.clone();
    id.name = name.to_string();
    HookRun {
        object: id,
        api_version: hook.api_version().to_string(),
        result: HookResult {
            hook_type: phase,
            phase: HookPhase::Pending,
            message: "would run (dry run)".into(),
        },
        delete: policies(hook),
    }
}

fn policies(hook: &DesiredObject) -> Vec<DeletePolicy> {
    match &hook.role {
        Role::Hook(h) => h.delete.iter().copied().collect(),
        _ => vec![DeletePolicy::BeforeHookCreation],
    }
}

/// Create the object of a hook run; the run is Running, or Failed when the object
/// could not be created.
pub async fn start(
    dest: &Destination,
    hook: &DesiredObject,
    phase: HookType,
    name: &str,
    application: &str,
    field_manager: &str,
) -> HookRun {
    let mut id = hook.id.clone();
    id.name = name.to_string();
    let delete = policies(hook);
    let mut run = HookRun {
        object: id.clone(),
        api_version: hook.api_version().to_string(),
        result: HookResult {
            hook_type: phase,
            phase: HookPhase::Running,
            message: String::new(),
        },
        delete: delete.clone(),
    };
    let fail = |run: &mut HookRun, message: String| {
        run.result.phase = HookPhase::Failed;
        run.result.message = message;
    };
    let api = match dest.api_for(hook.api_version(), &id).await {
        Ok(api) => api,
        Err(e) => {
            fail(&mut run, e.to_string());
            return run;
        }
    };
    let kind = id.kind.to_lowercase();
    match api.get_opt(name).await {
        Ok(Some(_)) if !delete.contains(&DeletePolicy::BeforeHookCreation) => {
            // a named hook of an earlier run, kept by its policy: it is this run's result
            run.result.message = format!("{kind}/{name} exists");
            return run;
        }
        Ok(Some(_)) => {
            if let Err(e) = remove(dest, &run).await {
                fail(
                    &mut run,
                    format!("deleting the last run's {kind}/{name}: {e}"),
                );
                return run;
            }
            if let Err(e) = gone(dest, &run, Duration::from_secs(60)).await {
                fail(&mut run, e);
                return run;
            }
        }
        Ok(None) => {}
        Err(e) => {
            fail(&mut run, api_error_message(&e));
            return run;
        }
    }
    let object = prepared(&hook.object, name, application);
    let created: Result<DynamicObject, kube::Error> = match serde_json::from_value(object) {
        Ok(o) => {
            let pp = PostParams {
                dry_run: false,
                field_manager: Some(field_manager.to_string()),
            };
            api.create(&pp, &o).await
        }
        Err(e) => {
            fail(&mut run, format!("not a Kubernetes object: {e}"));
            return run;
        }
    };
    match created {
        Ok(_) => run.result.message = format!("{kind}/{name} created"),
        Err(e) => fail(&mut run, api_error_message(&e)),
    }
    run
}

/// The object of a hook run: its name, the hook label, the finalizer; no
/// `generateName`.
fn prepared(object: &Value, name: &str, application: &str) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("generateName");
        meta.insert("name".into(), json!(name));
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(HOOK_OF_LABEL.into(), json!(application));
        }
        let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(f) = finalizers.as_array_mut()
            && !f.iter().any(|x| x == HOOK_FINALIZER)
        {
            f.push(json!(HOOK_FINALIZER));
        }
    }
    o
}

/// Whether a hook's object has finished, and how: by a custom rule for its kind if
/// there is one (Healthy is success, Degraded failure), else by its status.
fn finished(obj: &Value, health: &CustomHealth) -> Option<(bool, String)> {
    if let Some(h) = health.assess(obj) {
        return settled(h);
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let cond = |ty: &str| {
        obj.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == ty && c["status"] == "True"))
            .map(|c| c["message"].as_str().unwrap_or("").to_string())
    };
    match kind {
        "Pod" => match obj.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Some((true, String::new())),
            Some("Failed") => Some((false, pod_failure(obj))),
            _ => None,
        },
        "Job" => cond("Complete")
            .map(|m| (true, m))
            .or_else(|| cond("Failed").map(|m| (false, m))),
        _ => settled(crate::health::assess(obj)),
    }
}

/// Healthy: finished well; Degraded: failed; anything else: not finished yet.
fn settled(h: Health) -> Option<(bool, String)> {
    match h.state {
        HealthState::Healthy => Some((true, h.message)),
        HealthState::Degraded => Some((false, h.message)),
        _ => None,
    }
}

/// Why a Pod failed: its first terminated container's exit, or its status message.
fn pod_failure(obj: &Value) -> String {
    let statuses = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in statuses {
        if let Some(t) = c.pointer("/state/terminated")
            && t["exitCode"].as_i64().unwrap_or(0) != 0
        {
            return format!(
                "container {:?} failed with exit code {}",
                c["name"].as_str().unwrap_or(""),
                t["exitCode"]
            );
        }
    }
    obj.pointer("/status/message")
        .and_then(Value::as_str)
        .unwrap_or("the pod failed")
        .to_string()
}

/// Wait until every running hook finished, the time is up, or `stopped` says so;
/// then remove the finalizer and delete each by its policy.
pub async fn finish(
    dest: &Destination,
    runs: &mut [HookRun],
    timeout: Duration,
    health: &CustomHealth,
    stopped: &(dyn Fn() -> bool + Send + Sync),
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        let mut pending = 0;
        for run in runs
            .iter_mut()
            .filter(|r| r.result.phase == HookPhase::Running)
        {
            match observe(dest, run, health).await {
                Some((ok, message)) => {
                    run.result.phase = if ok {
                        HookPhase::Succeeded
                    } else {
                        HookPhase::Failed
                    };
                    if !message.is_empty() {
                        run.result.message = message;
                    }
                }
                None => pending += 1,
            }
        }
        if pending == 0 {
            break;
        }
        let out_of_time = tokio::time::Instant::now() >= deadline;
        if out_of_time || stopped() {
            for run in runs
                .iter_mut()
                .filter(|r| r.result.phase == HookPhase::Running)
            {
                run.result.phase = HookPhase::Terminated;
                run.result.message = if out_of_time {
                    format!("did not finish within {timeout:?}")
                } else {
                    "terminated: the sync was stopped".into()
                };
            }
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    // When runs were terminated, the ones that completed are left as they are, whatever
    // their policy (as Argo CD does when an operation is terminated).
    let terminated = runs.iter().any(|r| r.result.phase == HookPhase::Terminated);
    for run in runs.iter() {
        let _ = release(dest, run).await;
        let delete = match run.result.phase {
            HookPhase::Succeeded => {
                !terminated && run.delete.contains(&DeletePolicy::HookSucceeded)
            }
            HookPhase::Failed => !terminated && run.delete.contains(&DeletePolicy::HookFailed),
            // a terminated run is deleted, as Argo CD does when it terminates an operation
            HookPhase::Terminated => true,
            HookPhase::Running | HookPhase::Pending => false,
        };
        if delete && let Err(e) = remove(dest, run).await {
            tracing::warn!(hook = %run.object, error = %e, "deleting the hook");
        }
    }
}

/// How the run's object is now: finished (and how), or not yet. An object gone before
/// it finished is a failure.
async fn observe(
    dest: &Destination,
    run: &HookRun,
    health: &CustomHealth,
) -> Option<(bool, String)> {
    let api = dest.api_for(&run.api_version, &run.object).await.ok()?;
    match api.get_opt(&run.object.name).await {
        Ok(Some(o)) => finished(&serde_json::to_value(o).unwrap_or_default(), health),
        Ok(None) => Some((false, "deleted before it finished".into())),
        Err(_) => None,
    }
}

/// Remove the hook finalizer (the run's result is read).
async fn release(dest: &Destination, run: &HookRun) -> Result<(), String> {
    let api = dest
        .api_for(&run.api_version, &run.object)
        .await
        .map_err(|e| e.to_string())?;
    let Some(obj) = api
        .get_opt(&run.object.name)
        .await
        .map_err(|e| api_error_message(&e))?
    else {
        return Ok(());
    };
    let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
    let Some(i) = finalizers.iter().position(|f| f == HOOK_FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{i}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": HOOK_FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .map_err(|e| e.to_string())?;
    api.patch(
        &run.object.name,
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| api_error_message(&e))
}

/// Delete a run's object (its finalizer first).
/// Delete a run's object (its finalizer removed first).
pub async fn remove(dest: &Destination, run: &HookRun) -> Result<(), String> {
    release(dest, run).await?;
    let api = dest
        .api_for(&run.api_version, &run.object)
        .await
        .map_err(|e| e.to_string())?;
    match api
        .delete(&run.object.name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_error_message(&e)),
    }
}

/// Wait until a run's object is gone.
async fn gone(dest: &Destination, run: &HookRun, limit: Duration) -> Result<(), String> {
    let api = dest
        .api_for(&run.api_version, &run.object)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match api.get_opt(&run.object.name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "the last run's {} was not deleted within {limit:?}",
                    run.object
                ));
            }
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(api_error_message(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_hooks_are_named_by_prefix_revision_and_phase() {
        let mut d = DesiredObject::new(
            ObjectRef::new("batch", "Job", Some("d"), "migrate-"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "migrate-"}}),
            crate::render::Origin {
                file: "j.yaml".into(),
                document: 1,
            },
        );
        d.unnamed = true;
        let name = run_name(&d, HookType::PreSync, "3f9c2e1a7b0d", 1733100000);
        assert_eq!(name, "migrate-3f9c2e1-presync-1733100000");
        d.unnamed = false;
        d.id.name = "fixed".into();
        assert_eq!(run_name(&d, HookType::PostSync, "x", 1), "fixed");
    }

    #[test]
    fn pods_and_jobs_finish_by_their_status() {
        let none = CustomHealth::none();
        let pod = |phase: &str| {
            json!({"kind": "Pod", "status": {"phase": phase, "containerStatuses": [
            {"name": "main", "state": {"terminated": {"exitCode": 1}}}]}})
        };
        assert_eq!(finished(&pod("Running"), none), None);
        assert_eq!(
            finished(&pod("Succeeded"), none),
            Some((true, String::new()))
        );
        assert_eq!(
            finished(&pod("Failed"), none),
            Some((false, "container \"main\" failed with exit code 1".into()))
        );
        let job = json!({"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True", "message": "backoff"}]}});
        assert_eq!(finished(&job, none), Some((false, "backoff".into())));
    }

    #[test]
    fn a_custom_rule_for_a_hook_kind_decides_when_it_finished() {
        let rules = CustomHealth::from_yaml(
            "- apiVersion: batch/v1\n  kind: Job\n  current: status.?succeeded.orValue(0) > 0\n  failed: status.?failed.orValue(0) > 2\n  message: \"'failed ' + string(status.?failed.orValue(0)) + ' times'\"\n",
            "rules.yaml",
        )
        .unwrap();
        let job =
            |status: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "status": status});
        // no Complete condition, yet the rule says it succeeded (with the rule's message)
        assert_eq!(
            finished(&job(json!({"succeeded": 1})), &rules),
            Some((true, "failed 0 times".into()))
        );
        assert_eq!(
            finished(&job(json!({"failed": 1})), &rules),
            None,
            "still retrying"
        );
        assert_eq!(
            finished(&job(json!({"failed": 3})), &rules),
            Some((false, "failed 3 times".into()))
        );
        let pod = json!({"kind": "Pod", "status": {"phase": "Succeeded"}});
        assert_eq!(
            finished(&pod, &rules),
            Some((true, String::new())),
            "no rule for Pods"
        );
    }
}
