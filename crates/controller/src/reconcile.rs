//! Reconciling one Application with the engine:
//!
//! ```text
//! source (credentials, shared fetch, revision) ─▶ render (cached) ─▶ plan
//!   ─▶ decide (automated? self-heal? suspended? stopped? dependencies healthy?)
//!   ─▶ sync ─▶ health ─▶ status, history, audit, events
//! ```
//!
//! A fetch or render that fails keeps the last applied state: nothing is applied,
//! nothing is pruned, and a condition says why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_core::{Change, Health, HealthState, Outcome, Revision};
use capstan_engine::diff::IgnoreRule;
use capstan_engine::inventory::InventoryStore;
use capstan_engine::plan::{self, Plan, PlanOptions};
use capstan_engine::render::{HelmOptions, KustomizeOptions, RenderOptions, RendererKind};
use capstan_engine::source::{GitAuth, GitSource};
use capstan_engine::sync::{self, SyncOptions};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, AuditRecordSpec};
use crate::crd::{
    Application, ApplicationStatus, Condition, HealthStatus, HistoryEntry, OperationState,
    ResourceStatus, SyncStatus,
};
use crate::{Context, now};

/// The annotation asking for a sync (set by `capstan sync` and `capstan rollback`).
pub const SYNC_ANNOTATION: &str = "capstan.dev/sync";
/// The annotation asking for an immediate comparison (set by `capstan refresh`).
pub const REFRESH_ANNOTATION: &str = "capstan.dev/refresh";

/// What made a reconcile happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The periodic comparison.
    Interval,
    /// The spec changed (or the Application is new).
    Spec,
    /// A managed object changed in the cluster.
    Drift,
    /// `capstan refresh`.
    Refresh,
    /// A push webhook.
    Webhook,
    /// A retry after a failure.
    Retry,
}

impl Trigger {
    /// The name recorded in history and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Interval | Trigger::Spec | Trigger::Retry => "automated",
            Trigger::Drift => "self-heal",
            Trigger::Refresh => "refresh",
            Trigger::Webhook => "webhook",
        }
    }
}

/// A sync asked for through [`SYNC_ANNOTATION`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    /// Unique id of the request (so it runs once).
    pub id: String,
    /// Revision to sync to (default: the spec's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// `manual` or `rollback`.
    #[serde(default)]
    pub trigger: String,
    /// Who asked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    /// Prune objects that left the source (default: the automated policy's prune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// For rollbacks: the history entry rolled back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<u64>,
}

impl SyncRequest {
    /// The request on an Application, if any.
    pub fn of(app: &Application) -> Option<SyncRequest> {
        app.annotations()
            .get(SYNC_ANNOTATION)
            .and_then(|v| serde_json::from_str(v).ok())
    }
}

/// Per-Application memory of the scheduler (lost on restart; nothing depends on it
/// for correctness, only for pacing).
#[derive(Debug, Clone, Default)]
pub struct AppMemory {
    /// Consecutive failed syncs.
    pub failures: u32,
    /// Self-heal delay after the last heal (zero: none yet).
    pub heal_delay: Duration,
    /// When drift was last healed.
    pub last_heal: Option<tokio::time::Instant>,
}

impl AppMemory {
    /// How long to wait before healing drift seen `now`: the first delay, doubled for
    /// every heal that drift came back after within `2 × max` (something keeps undoing
    /// Git's state), capped at `max`; back to the first delay once drift stayed away
    /// that long. Changes that needed no heal (a status update) do not count.
    pub fn heal_delay(
        &self,
        now: tokio::time::Instant,
        first: Duration,
        max: Duration,
    ) -> Duration {
        if self.healed_recently(now, max) {
            self.heal_delay.clamp(first, max)
        } else {
            first
        }
    }

    /// Drift was healed `now`: the next heal waits longer.
    pub fn healed(&mut self, now: tokio::time::Instant, first: Duration, max: Duration) {
        self.heal_delay = if self.healed_recently(now, max) {
            (self.heal_delay.max(first) * 2).min(max)
        } else {
            first
        };
        self.last_heal = Some(now);
    }

    /// Whether the last heal was less than `2 × max` before `now`.
    fn healed_recently(&self, now: tokio::time::Instant, max: Duration) -> bool {
        self.last_heal
            .is_some_and(|t| now.saturating_duration_since(t) < max * 2)
    }
}

/// What the scheduler should do next.
#[derive(Debug, Clone)]
pub struct Next {
    /// Reconcile again after this long.
    pub after: Duration,
    /// Whether this reconcile ran a sync.
    pub synced: bool,
    /// The kinds (apiVersion, kind) the Application manages now, to watch for drift.
    pub kinds: std::collections::BTreeSet<(String, String)>,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: generation,
    }
}

/// Keep `lastTransitionTime` when a condition's status did not change.
fn merge_conditions(old: &[Condition], new: Vec<Condition>) -> Vec<Condition> {
    let t = now();
    new.into_iter()
        .map(|mut c| {
            c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
                Some(o) if o.status == c.status => {
                    o.last_transition_time.clone().or_else(|| Some(t.clone()))
                }
                _ => Some(t.clone()),
            };
            c
        })
        .collect()
}

/// A duration of the spec (`30s`, `2m`, `1h30m`, `500ms`).
fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// The spec's durations that do not parse, as `field: "value"` messages. The CRD's
/// schema already rejects them; this guards against a CRD installed without it.
fn invalid_durations(app: &Application) -> Vec<String> {
    let retry = app.spec.sync_policy.retry.as_ref();
    [
        ("spec.interval", app.spec.interval.as_deref()),
        (
            "spec.syncPolicy.retry.backoffDuration",
            retry.and_then(|r| r.backoff_duration.as_deref()),
        ),
        (
            "spec.syncPolicy.retry.backoffMaxDuration",
            retry.and_then(|r| r.backoff_max_duration.as_deref()),
        ),
    ]
    .into_iter()
    .filter_map(|(field, v)| {
        let v = v?;
        parse_duration(v)
            .is_none()
            .then(|| format!("{field}: {v:?} is not a duration (e.g. 30s, 2m, 1h30m)"))
    })
    .collect()
}

/// The Application's interval (default from the controller options).
pub fn interval(app: &Application, default: Duration) -> Duration {
    app.spec
        .interval
        .as_deref()
        .and_then(parse_duration)
        .unwrap_or(default)
        .max(Duration::from_secs(1))
}

fn render_options(app: &Application, namespace: &str) -> RenderOptions {
    let src = &app.spec.source;
    let mut opts = RenderOptions::default();
    if let Some(d) = &src.directory {
        opts.renderer = Some(RendererKind::Directory);
        opts.include = d.include.clone();
        opts.exclude = d.exclude.clone();
    }
    if let Some(k) = &src.kustomize {
        opts.renderer = Some(RendererKind::Kustomize);
        opts.kustomize = KustomizeOptions {
            args: k.build_options.clone(),
            ..Default::default()
        };
    }
    if let Some(h) = &src.helm {
        opts.renderer = Some(RendererKind::Helm);
        opts.helm = HelmOptions {
            release_name: Some(h.release_name.clone().unwrap_or_else(|| app.name_any())),
            namespace: Some(namespace.to_string()),
            values_files: h.value_files.clone(),
            values: h.values.clone(),
            set: h
                .parameters
                .iter()
                .map(|p| format!("{}={}", p.name, p.value))
                .collect(),
            ..Default::default()
        };
    }
    opts
}

/// The Git source of an Application, with credentials from its Secret.
async fn git_source(app: &Application, ctx: &Context) -> Result<GitSource, String> {
    let src = &app.spec.source;
    let auth = match &src.credentials_secret {
        None => GitAuth::None,
        Some(name) => {
            let ns = app.namespace().unwrap_or_default();
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(|e| format!("reading credentials Secret {ns}/{name}: {e}"))?
                .ok_or_else(|| format!("credentials Secret {ns}/{name} does not exist"))?;
            let data = secret.data.unwrap_or_default();
            let text = |k: &str| {
                data.get(k)
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            };
            if let Some(key) = text("sshPrivateKey") {
                let dir = ctx.opts.state_dir.join("ssh");
                std::fs::create_dir_all(&dir).map_err(|e| format!("writing the SSH key: {e}"))?;
                let path = dir.join(format!("{ns}.{name}.key"));
                write_private(&path, &key).map_err(|e| format!("writing the SSH key: {e}"))?;
                let known_hosts = match text("knownHosts") {
                    Some(kh) => {
                        let p = dir.join(format!("{ns}.{name}.known_hosts"));
                        std::fs::write(&p, kh).map_err(|e| format!("writing known_hosts: {e}"))?;
                        Some(p)
                    }
                    None => None,
                };
                GitAuth::SshKey {
                    key: path,
                    known_hosts,
                }
            } else {
                let password = text("password").or_else(|| text("token")).ok_or_else(|| {
                    format!("credentials Secret {ns}/{name} has neither password, token nor sshPrivateKey")
                })?;
                GitAuth::Basic {
                    username: text("username").unwrap_or_else(|| "git".into()),
                    password,
                }
            }
        }
    };
    Ok(GitSource {
        url: src.repo_url.clone(),
        auth,
    })
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// Status to write, and facts for the scheduler.
struct Report {
    status: ApplicationStatus,
    next: Duration,
    synced: bool,
}

/// Reconcile one Application.
pub async fn reconcile(
    app: Arc<Application>,
    trigger: Trigger,
    ctx: &Context,
    memory: &mut AppMemory,
) -> Next {
    let mut report = run(&app, trigger, ctx, memory).await;
    let ns = app.namespace().unwrap_or_default();
    note_suspension(&app, &mut report.status, ctx).await;
    // A periodic pass that found nothing new writes nothing: one status write per
    // Application per interval would be most of the load a steady fleet puts on the
    // API server (and wake every watcher of Applications). `reconciledAt` is then the
    // time of the last write; a requested refresh always writes it.
    let unchanged = app.status.as_ref().is_some_and(|old| {
        old.reconciled_at.is_some()
            && ApplicationStatus {
                reconciled_at: old.reconciled_at.clone(),
                ..report.status.clone()
            } == *old
    });
    if unchanged && matches!(trigger, Trigger::Interval | Trigger::Drift) {
        return Next {
            after: report.next,
            synced: report.synced,
            kinds: managed_kinds(&report.status),
        };
    }
    let api: Api<Application> = Api::namespaced(ctx.client.clone(), &ns);
    // Server-side apply of the whole status: fields the controller no longer sets
    // (a cleared message, a resolved condition) are removed, which a merge patch
    // would leave behind.
    let patch = json!({"apiVersion": "capstan.dev/v1alpha1", "kind": "Application", "status": report.status});
    if let Err(e) = api
        .patch_status(
            &app.name_any(),
            &PatchParams::apply("capstan-controller").force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::warn!(app = %format!("{ns}/{}", app.name_any()), error = %e, "writing status");
    }
    Next {
        after: report.next,
        synced: report.synced,
        kinds: managed_kinds(&report.status),
    }
}

/// Keep the `Suspended` condition in step with `spec.suspend`, and audit each change
/// of it the controller sees — whoever made it: `capstan suspend`, `kubectl edit`, a
/// GitOps repository of Applications. The actor is the field manager that set
/// `spec.suspend` (`capstan:alice`, `kubectl-edit`, …).
async fn note_suspension(app: &Application, status: &mut ApplicationStatus, ctx: &Context) {
    let old = app
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let before = old
        .iter()
        .find(|c| c.type_ == "Suspended")
        .map(|c| c.status == "True");
    let suspended = app.spec.suspend;
    let generation = app.meta().generation;
    let cond = if suspended {
        condition(
            "Suspended",
            true,
            "Suspended",
            "spec.suspend is set: nothing is synced, drift is still reported",
            generation,
        )
    } else {
        condition("Suspended", false, "NotSuspended", "", generation)
    };
    status.conditions.retain(|c| c.type_ != "Suspended");
    status.conditions.extend(merge_conditions(old, vec![cond]));
    if before.is_none_or(|b| b == suspended) {
        return;
    }
    let ns = app.namespace().unwrap_or_default();
    let record = AuditRecordSpec {
        time: audit::record_time(),
        application: format!("{ns}/{}", app.name_any()),
        action: if suspended { "suspend" } else { "unsuspend" }.into(),
        trigger: "manual".into(),
        actor: suspend_manager(app).unwrap_or_else(|| "unknown".into()),
        details: format!("observed by {}", ctx.opts.identity),
        ..Default::default()
    };
    if let Err(e) = audit::append(&ctx.client, &ns, record, Some(app.object_ref(&()))).await {
        tracing::warn!(app = %format!("{ns}/{}", app.name_any()), error = %e, "writing the audit record");
    }
}

/// The field manager that owns `spec.suspend`, if any.
fn suspend_manager(app: &Application) -> Option<String> {
    app.meta()
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|m| m.subresource.as_deref().unwrap_or("").is_empty())
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:suspend"))
                .is_some()
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

fn managed_kinds(status: &ApplicationStatus) -> std::collections::BTreeSet<(String, String)> {
    status
        .resources
        .iter()
        .map(|r| (r.version.clone(), r.kind.clone()))
        .collect()
}

/// The namespace an Application's namespaced objects go to by default.
fn destination_namespace(app: &Application) -> String {
    app.spec
        .destination
        .namespace
        .clone()
        .unwrap_or_else(|| app.namespace().unwrap_or_default())
}

/// Sync options every controller sync shares: the Application's inventory in the
/// controller's namespace, the wave timeout, and a stop signal raised by the emergency
/// stop or by losing leadership.
fn sync_options(name: &str, inventory_key: &str, ctx: &Context) -> SyncOptions {
    let mut opts = SyncOptions::new(name);
    opts.inventory_key = Some(inventory_key.to_string());
    opts.inventory_namespace = ctx.opts.namespace.clone();
    opts.timeout = ctx.opts.wave_timeout;
    let stop = ctx.stop.clone();
    let leader = ctx.leader.clone();
    opts.stop = Some(Arc::new(move || stop.is_stopped() || !leader.is_leader()));
    opts
}

/// How many objects each outcome had, without the zeros.
fn change_summary(report: &sync::SyncReport) -> BTreeMap<String, u32> {
    report
        .changes
        .outcome_counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(verb, n)| (verb.to_string(), n as u32))
        .collect()
}

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
    let summary = change_summary(&report);
    let record = AuditRecordSpec {
        time: audit::record_time(),
        application: key.clone(),
        action: "delete".into(),
        trigger: "deletion".into(),
        actor: ctx.opts.identity.clone(),
        from_revision: last,
        summary,
        result: "Succeeded".into(),
        ..Default::default()
    };
    if let Err(e) = audit::append(&ctx.client, &ns, record, Some(app.object_ref(&()))).await {
        tracing::warn!(app = %key, error = %e, "writing the audit record");
    }
    // Remove exactly our finalizer; the test fails (and we retry) if the list moved.
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = match serde_json::from_value(json!([
        {"op": "test", "path": path, "value": DELETE_RESOURCES_FINALIZER},
        {"op": "remove", "path": path},
    ])) {
        Ok(p) => p,
        Err(_) => return Some(Duration::from_secs(10)),
    };
    let api: Api<Application> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => {
            tracing::warn!(app = %key, error = %e, "removing the finalizer");
            Some(Duration::from_secs(2))
        }
    }
}

fn backoff(failures: u32, default_max: Duration, app: &Application) -> Duration {
    let retry = app.spec.sync_policy.retry.as_ref();
    let base = retry
        .and_then(|r| r.backoff_duration.as_deref())
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(5));
    let factor = retry.and_then(|r| r.backoff_factor).unwrap_or(2).max(1);
    let max = retry
        .and_then(|r| r.backoff_max_duration.as_deref())
        .and_then(parse_duration)
        .unwrap_or(default_max);
    let mut d = base;
    for _ in 1..failures {
        d = (d * factor).min(max);
    }
    d.min(max)
}

async fn run(app: &Application, trigger: Trigger, ctx: &Context, memory: &mut AppMemory) -> Report {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let key = format!("{ns}/{name}");
    let generation = app.meta().generation;
    let old = app.status.clone().unwrap_or_default();
    let request = SyncRequest::of(app).filter(|r| {
        old.operation_state
            .as_ref()
            .is_none_or(|o| !o.message.contains(&format!("request {}", r.id)))
    });
    let mut status = ApplicationStatus {
        observed_generation: generation,
        history: old.history.clone(),
        operation_state: old.operation_state.clone(),
        resources: old.resources.clone(),
        health: old.health.clone(),
        sync: old.sync.clone(),
        reconciled_at: Some(now()),
        conditions: Vec::new(),
    };
    let interval = interval(app, ctx.opts.default_interval);
    let fail =
        |status: &mut ApplicationStatus, reason: &str, message: String, memory: &mut AppMemory| {
            memory.failures += 1;
            status.sync = Some(SyncStatus {
                status: "Unknown".into(),
                ..old.sync.clone().unwrap_or_default()
            });
            status.conditions = merge_conditions(
                &old.conditions,
                vec![
                    condition("Ready", false, reason, message.clone(), generation),
                    Condition {
                        status: "Unknown".into(),
                        ..condition("Synced", false, reason, message.clone(), generation)
                    },
                    condition("Stalled", false, "Retrying", "", generation),
                ]
                .into_iter()
                // what was last seen of the objects' health still holds
                .chain(
                    old.conditions
                        .iter()
                        .find(|c| c.type_ == "Healthy")
                        .cloned(),
                )
                .collect(),
            );
            tracing::warn!(app = %key, reason, %message, "reconcile failed");
        };

    // 0. A spec the controller cannot act on waits for a new spec, nothing is done
    let invalid = invalid_durations(app);
    if !invalid.is_empty() {
        let message = invalid.join("; ");
        tracing::warn!(app = %key, %message, "invalid spec");
        status.conditions = merge_conditions(
            &old.conditions,
            vec![
                condition("Ready", false, "InvalidSpec", message.clone(), generation),
                condition("Stalled", true, "InvalidSpec", message, generation),
            ],
        );
        return Report {
            next: ctx.opts.default_interval,
            status,
            synced: false,
        };
    }

    // 1. Source
    let src = match git_source(app, ctx).await {
        Ok(s) => s,
        Err(message) => {
            fail(&mut status, "CredentialsFailed", message, memory);
            return Report {
                next: backoff(memory.failures, ctx.opts.max_backoff, app),
                status,
                synced: false,
            };
        }
    };
    let wanted = request
        .as_ref()
        .map(|r| r.revision.clone())
        .filter(|r| !r.is_empty())
        .or_else(|| app.spec.source.target_revision.clone())
        .unwrap_or_default();
    let forced = request.is_some() || trigger == Trigger::Refresh || trigger == Trigger::Webhook;
    if let Err(e) = ctx.sources.fetch(&src, forced).await {
        fail(&mut status, "FetchFailed", e.to_string(), memory);
        return Report {
            next: backoff(memory.failures, ctx.opts.max_backoff, app),
            status,
            synced: false,
        };
    }
    let revision = match ctx.sources.resolve(&src, &wanted).await {
        Ok(r) => r,
        Err(e) => {
            fail(&mut status, "RevisionNotFound", e.to_string(), memory);
            return Report {
                next: backoff(memory.failures, ctx.opts.max_backoff, app),
                status,
                synced: false,
            };
        }
    };

    // 2. Render
    let dest_ns = destination_namespace(app);
    let dest = ctx.dest.with_namespace(&dest_ns);
    let scopes = match dest.scopes().await {
        Ok(s) => s,
        Err(e) => {
            fail(&mut status, "ClusterUnreachable", e.to_string(), memory);
            return Report {
                next: backoff(memory.failures, ctx.opts.max_backoff, app),
                status,
                synced: false,
            };
        }
    };
    let path = app.spec.source.path.clone().unwrap_or_else(|| ".".into());
    let desired = match ctx
        .sources
        .desired(
            &src,
            &revision,
            &path,
            &render_options(app, &dest_ns),
            &dest_ns,
            &scopes,
        )
        .await
    {
        Ok(d) => d,
        Err(e) => {
            fail(&mut status, "RenderFailed", e.to_string(), memory);
            return Report {
                next: backoff(memory.failures, ctx.opts.max_backoff, app),
                status,
                synced: false,
            };
        }
    };

    // 3. Plan
    let mut plan_opts = PlanOptions::new(&name);
    plan_opts.dry_run_creates = false;
    // Git is the source of truth: fields another manager took over (a `kubectl edit`)
    // are taken back, as Flux's kustomize-controller does, instead of failing on the
    // conflict forever.
    plan_opts.force_conflicts = true;
    plan_opts.concurrency = ctx.opts.requests_per_app;
    plan_opts.ignore_differences = app
        .spec
        .ignore_differences
        .iter()
        .map(|i| IgnoreRule {
            group: i.group.clone(),
            kind: i.kind.clone(),
            name: i.name.clone(),
            namespace: i.namespace.clone(),
            json_pointers: i.json_pointers.clone(),
        })
        .collect();
    let inventory_key = format!("{ns}.{name}");
    let store = InventoryStore::new(ctx.client.clone(), &ctx.opts.namespace);
    let previous = match store.load(&inventory_key).await {
        Ok(i) => i,
        Err(e) => {
            fail(&mut status, "InventoryFailed", e.to_string(), memory);
            return Report {
                next: backoff(memory.failures, ctx.opts.max_backoff, app),
                status,
                synced: false,
            };
        }
    };
    let plan = match plan::plan(&dest, &desired, &previous, &plan_opts).await {
        Ok(p) => p,
        Err(e) => {
            fail(&mut status, "PlanFailed", e.to_string(), memory);
            return Report {
                next: backoff(memory.failures, ctx.opts.max_backoff, app),
                status,
                synced: false,
            };
        }
    };
    let drift = plan.has_drift();

    // 4. Decide
    let policy = &app.spec.sync_policy;
    let last_success = old
        .operation_state
        .as_ref()
        .filter(|o| o.phase == "Succeeded");
    let last_synced = last_success.map(|o| o.revision.clone());
    let automated = policy.automated.as_ref();
    // Automated sync applies what is new — a commit, or a changed spec (another path,
    // other renderer options) at the same commit; undoing edits in the cluster
    // without either is self-heal's job.
    let new_revision = last_synced.as_deref() != Some(revision.id.as_str());
    let new_spec = last_success.is_some_and(|o| o.generation != generation);
    let auto_wants = automated.is_some_and(|a| drift && (new_revision || new_spec || a.self_heal));
    let wants = request.is_some() || auto_wants;
    let mut blocked: Option<(&str, String)> = None;
    if wants {
        if ctx.stop.is_stopped() {
            blocked = Some((
                "EmergencyStop",
                "the emergency stop is on: nothing is applied or pruned".into(),
            ));
        } else if app.spec.suspend {
            blocked = Some(("Suspended", "the Application is suspended".into()));
        } else if let Some(waiting) = unready_dependencies(app, ctx).await {
            blocked = Some(("WaitingForDependencies", waiting));
        }
    }

    let mut next = interval;
    let mut synced_report = None;
    if wants && blocked.is_none() {
        let mut opts = sync_options(&name, &inventory_key, ctx);
        opts.plan = plan_opts.clone();
        opts.prune = request
            .as_ref()
            .and_then(|r| r.prune)
            .unwrap_or_else(|| automated.is_some_and(|a| a.prune));
        opts.allow_empty = policy.allow_empty;
        let trigger_name = request
            .as_ref()
            .map(|r| r.trigger.clone())
            .unwrap_or_else(|| trigger.as_str().to_string());
        let started = now();
        let report = sync::sync(&dest, desired.as_ref().clone(), &revision, &opts).await;
        let phase = match &report.error {
            None => "Succeeded",
            Some(sync::SyncError::Stopped { .. }) => "Stopped",
            Some(_) => "Failed",
        };
        let summary = change_summary(&report);
        let mut message = match &report.error {
            None => format!("synced to {}", revision.short()),
            Some(e) => e.to_string(),
        };
        if let Some(r) = &request {
            message.push_str(&format!(" (request {})", r.id));
        }
        let from_revision = last_synced.clone().unwrap_or_default();
        status.operation_state = Some(OperationState {
            phase: phase.into(),
            message: message.clone(),
            revision: revision.id.clone(),
            generation,
            trigger: trigger_name.clone(),
            started_at: Some(started),
            finished_at: Some(now()),
            summary: summary.clone(),
        });
        push_history(
            &mut status.history,
            &revision,
            &trigger_name,
            phase,
            ctx.opts.history_limit,
        );
        let action = if trigger_name == "rollback" {
            "rollback"
        } else {
            "sync"
        };
        let record = AuditRecordSpec {
            time: audit::record_time(),
            application: key.clone(),
            action: action.into(),
            trigger: trigger_name.clone(),
            actor: request
                .as_ref()
                .map(|r| r.by.clone())
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| ctx.opts.identity.clone()),
            from_revision,
            to_revision: revision.id.clone(),
            author: revision.author.clone(),
            message: revision.message.clone(),
            summary,
            result: phase.into(),
            details: report
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        };
        if let Err(e) = audit::append(&ctx.client, &ns, record, Some(app.object_ref(&()))).await {
            tracing::warn!(app = %key, error = %e, "writing the audit record");
        }
        if phase == "Failed" {
            tracing::warn!(app = %key, %message, "sync failed");
            memory.failures += 1;
        } else {
            memory.failures = 0;
        }
        synced_report = Some(report);
        if request.is_some() {
            clear_request(app, ctx).await;
        }
    }

    // 5. Status: what is (re-read after a sync), health, conditions
    let current_plan = match &synced_report {
        Some(_) => plan::plan(
            &dest,
            &desired,
            &store.load(&inventory_key).await.unwrap_or_default(),
            &plan_opts,
        )
        .await
        .ok(),
        None => None,
    };
    let plan_now: &Plan = current_plan.as_ref().unwrap_or(&plan);
    let (resources, health) = resources_and_health(plan_now);
    let out_of_sync = plan_now.has_drift();
    status.resources = resources;
    status.health = Some(HealthStatus {
        status: health.state.to_string(),
        message: health.message.clone(),
    });
    status.sync = Some(SyncStatus {
        status: if out_of_sync { "OutOfSync" } else { "Synced" }.into(),
        revision: revision.id.clone(),
        short_revision: revision.id.chars().take(7).collect(),
    });
    let sync_failed = synced_report
        .as_ref()
        .and_then(|r| r.error.as_ref())
        .map(|e| e.to_string());
    let retry_limit = policy
        .retry
        .as_ref()
        .map(|r| r.limit)
        .unwrap_or(ctx.opts.retry_limit);
    let stalled = sync_failed.is_some() && memory.failures > retry_limit;
    let drift_count = plan_now
        .objects
        .iter()
        .filter(|o| o.change.is_drift())
        .count()
        + plan_now
            .prune
            .iter()
            .filter(|p| p.exists && !p.keep)
            .count();
    let synced_cond = if out_of_sync {
        condition(
            "Synced",
            false,
            "OutOfSync",
            format!("{drift_count} object(s) differ from {}", revision.short()),
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
    let healthy_cond = condition(
        "Healthy",
        health.state.is_ready(),
        health.state.as_str(),
        health.message.clone(),
        generation,
    );
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
        healthy_cond,
        condition(
            "Stalled",
            stalled,
            if stalled {
                "RetriesExhausted"
            } else {
                "NotStalled"
            },
            if stalled {
                format!(
                    "sync failed {} times; waiting for a new revision or spec",
                    memory.failures
                )
            } else {
                String::new()
            },
            generation,
        ),
    ];
    if automated.is_none() {
        let rolled_back = status
            .operation_state
            .as_ref()
            .filter(|o| o.trigger == "rollback")
            .map(|o| o.revision.chars().take(7).collect::<String>());
        conditions.push(condition(
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
            generation,
        ));
    }
    status.conditions = merge_conditions(&old.conditions, conditions);
    if sync_failed.is_none() && blocked.is_none() {
        memory.failures = 0;
    }

    if sync_failed.is_some() && !stalled {
        next = backoff(memory.failures, ctx.opts.max_backoff, app);
    } else if blocked
        .as_ref()
        .is_some_and(|(r, _)| *r == "WaitingForDependencies")
    {
        next = Duration::from_secs(3);
    } else if health.state == HealthState::Progressing
        || health.state == HealthState::Missing && synced_report.is_some()
    {
        next = Duration::from_secs(2).min(interval);
    }
    Report {
        status,
        next,
        synced: synced_report.is_some(),
    }
}

fn push_history(
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

async fn clear_request(app: &Application, ctx: &Context) {
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {SYNC_ANNOTATION: null}}});
    if let Err(e) = api
        .patch(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(error = %e, "clearing the sync request");
    }
}

/// Names of dependencies that are not Healthy (in the same namespace), as a message.
async fn unready_dependencies(app: &Application, ctx: &Context) -> Option<String> {
    if app.spec.depends_on.is_empty() {
        return None;
    }
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let mut waiting = Vec::new();
    for dep in &app.spec.depends_on {
        let ready = match api.get_opt(dep).await {
            Ok(Some(d)) => d.status.as_ref().is_some_and(|s| {
                s.health.as_ref().is_some_and(|h| h.status == "Healthy")
                    && s.sync.as_ref().is_some_and(|x| x.status == "Synced")
            }),
            _ => false,
        };
        if !ready {
            waiting.push(dep.clone());
        }
    }
    (!waiting.is_empty()).then(|| {
        format!(
            "waiting for {} to be synced and healthy",
            waiting.join(", ")
        )
    })
}

fn resources_and_health(plan: &Plan) -> (Vec<ResourceStatus>, Health) {
    let mut resources = Vec::new();
    let mut healths = Vec::new();
    for o in &plan.objects {
        let h = match &o.live {
            Some(live) => capstan_engine::health::assess(live),
            None => Health::new(HealthState::Missing, "not in the cluster"),
        };
        healths.push(h.clone());
        resources.push(ResourceStatus {
            group: o.desired.id.group.clone(),
            version: o.desired.api_version().to_string(),
            kind: o.desired.id.kind.clone(),
            namespace: o.desired.id.namespace.clone().unwrap_or_default(),
            name: o.desired.id.name.clone(),
            status: if matches!(o.change, Change::Unchanged) && o.error.is_none() {
                "Synced"
            } else {
                "OutOfSync"
            }
            .into(),
            health: Some(HealthStatus {
                status: h.state.to_string(),
                message: h.message,
            }),
            requires_pruning: false,
        });
    }
    for p in plan.prune.iter().filter(|p| p.exists && !p.keep) {
        resources.push(ResourceStatus {
            group: p.entry.id.group.clone(),
            version: p.entry.api_version.clone(),
            kind: p.entry.id.kind.clone(),
            namespace: p.entry.id.namespace.clone().unwrap_or_default(),
            name: p.entry.id.name.clone(),
            status: "OutOfSync".into(),
            health: None,
            requires_pruning: true,
        });
    }
    (resources, Health::worst(&healths))
}

/// Whether an outcome is a failure (for counting).
pub fn failed(o: &Outcome) -> bool {
    matches!(o, Outcome::Failed { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ApplicationSpec, RetryPolicy, SourceSpec};

    fn app(spec: ApplicationSpec) -> Application {
        Application::new("web", spec)
    }

    fn with_retry(retry: RetryPolicy) -> Application {
        let mut spec = ApplicationSpec::default();
        spec.sync_policy.retry = Some(retry);
        app(spec)
    }

    #[test]
    fn durations_parse_like_the_crd_pattern_says_and_bad_ones_are_named() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        let pattern = regex::Regex::new(crate::crd::DURATION_PATTERN).unwrap();
        for ok in ["30s", "2m", "1h30m", "500ms", "1h0m10s"] {
            assert!(pattern.is_match(ok), "{ok}");
            assert!(parse_duration(ok).is_some(), "{ok}");
        }
        for bad in ["2x", "soon", "", "-1s", "1.5h"] {
            assert!(!pattern.is_match(bad), "{bad}");
        }

        let mut spec = ApplicationSpec {
            interval: Some("2x".into()),
            source: SourceSpec::default(),
            ..Default::default()
        };
        spec.sync_policy.retry = Some(RetryPolicy {
            limit: 1,
            backoff_duration: Some("5s".into()),
            backoff_factor: None,
            backoff_max_duration: Some("forever".into()),
        });
        let invalid = invalid_durations(&app(spec));
        assert_eq!(
            invalid,
            vec![
                r#"spec.interval: "2x" is not a duration (e.g. 30s, 2m, 1h30m)"#.to_string(),
                r#"spec.syncPolicy.retry.backoffMaxDuration: "forever" is not a duration (e.g. 30s, 2m, 1h30m)"#.to_string(),
            ]
        );
        assert!(invalid_durations(&app(ApplicationSpec::default())).is_empty());
    }

    #[test]
    fn the_interval_defaults_and_is_at_least_a_second() {
        let default = Duration::from_secs(120);
        assert_eq!(interval(&app(ApplicationSpec::default()), default), default);
        let every = |s: &str| {
            interval(
                &app(ApplicationSpec {
                    interval: Some(s.into()),
                    ..Default::default()
                }),
                default,
            )
        };
        assert_eq!(every("10s"), Duration::from_secs(10));
        assert_eq!(every("10ms"), Duration::from_secs(1));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let cap = Duration::from_secs(180);
        let defaults = app(ApplicationSpec::default());
        let delays: Vec<u64> = (1..=9)
            .map(|n| backoff(n, cap, &defaults).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 180, 180, 180]);

        let custom = with_retry(RetryPolicy {
            limit: 3,
            backoff_duration: Some("1s".into()),
            backoff_factor: Some(3),
            backoff_max_duration: Some("20s".into()),
        });
        let delays: Vec<u64> = (1..=5)
            .map(|n| backoff(n, cap, &custom).as_secs())
            .collect();
        assert_eq!(delays, [1, 3, 9, 20, 20]);
    }

    #[test]
    fn the_heal_delay_grows_while_healed_drift_comes_back_and_resets_when_it_stays_away() {
        let (first, max) = (Duration::from_secs(2), Duration::from_secs(60));
        let t0 = tokio::time::Instant::now();
        let mut m = AppMemory::default();
        assert_eq!(m.heal_delay(t0, first, max), first, "never healed");
        let mut now = t0;
        let mut seen = Vec::new();
        for _ in 0..7 {
            m.healed(now, first, max);
            now += Duration::from_secs(1);
            seen.push(m.heal_delay(now, first, max).as_secs());
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 60, 60]);
        // quiet for twice the cap: the next drift is healed at the first delay again
        let later = now + max * 2;
        assert_eq!(m.heal_delay(later, first, max), first);
        m.healed(later, first, max);
        assert_eq!(m.heal_delay(later, first, max), first);
    }

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

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let old = vec![Condition {
            last_transition_time: Some("2026-01-01T00:00:00Z".into()),
            ..condition("Ready", true, "Ready", "", Some(1))
        }];
        let same = merge_conditions(&old, vec![condition("Ready", true, "Ready", "x", Some(2))]);
        assert_eq!(
            same[0].last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        let flipped = merge_conditions(
            &old,
            vec![condition("Ready", false, "SyncFailed", "", Some(2))],
        );
        assert_ne!(
            flipped[0].last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }
}
