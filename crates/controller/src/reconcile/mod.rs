//! Reconciling one Application with the engine:
//!
//! ```text
//! spec ─▶ source (credentials, shared fetch, revision) ─▶ render (cached) ─▶ plan
//!   ─▶ decide (automated? self-heal? suspended? stopped? dependencies healthy?)
//!   ─▶ sync ─▶ assess (health, conditions) ─▶ status, history, audit, events
//! ```
//!
//! [`run`] reads like that chain: one function per stage, each returning its output
//! or a [`StageFailure`] (the condition reason and message), which one place
//! ([`Pass::failed`]) turns into status and backoff. A fetch or render that fails
//! keeps the last applied state: nothing is applied, nothing is pruned, and a
//! condition says why.

mod assess;
mod composite;
mod finalize;
mod memory;
mod operation;
mod request;
mod spec;
mod status;

use std::sync::Arc;
use std::time::Duration;

use capstan_core::{Outcome, Revision};
use capstan_engine::destination::Destination;
use capstan_engine::health::CustomHealth;
use capstan_engine::inventory::InventoryStore;
use capstan_engine::plan::{self, Plan, PlanOptions};
use capstan_engine::render::DesiredObject;
use capstan_engine::source::GitSource;
use kube::api::Api;
use kube::{Resource, ResourceExt};

pub use finalize::{DELETE_HOOKS_FINALIZER, DELETE_RESOURCES_FINALIZER, finalize};
pub use memory::AppMemory;
pub use request::{REFRESH_ANNOTATION, SYNC_ANNOTATION, SyncRequest, Trigger};
pub use spec::{destination_namespace, interval, source_render_options};

use crate::crd::{Application, ApplicationStatus, Condition, SyncStatus};
use crate::{Context, now};
use status::{condition, merge_conditions};

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

/// Reconcile one Application: run the stages, then write the status unless a
/// periodic pass found nothing new.
pub async fn reconcile(
    app: Arc<Application>,
    trigger: Trigger,
    ctx: &Context,
    memory: &mut AppMemory,
) -> Next {
    let mut report = run(&app, trigger, ctx, memory).await;
    status::note_suspension(&app, &mut report.status, ctx).await;
    let next = Next {
        after: report.next,
        synced: report.synced,
        kinds: status::managed_kinds(&report.status),
    };
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
        return next;
    }
    crate::apply_status(&ctx.client, app.as_ref(), &report.status).await;
    next
}

/// Status to write, and facts for the scheduler.
struct Report {
    status: ApplicationStatus,
    next: Duration,
    synced: bool,
}

/// A stage that could not finish: the condition reason and message. Nothing after
/// it runs; the status keeps what was last applied.
#[derive(Debug)]
pub(crate) struct StageFailure {
    /// CamelCase reason (`FetchFailed`, `RenderFailed`, …).
    reason: &'static str,
    /// What went wrong, naming the object, file or repository.
    message: String,
    /// Retried with backoff (a spec the controller cannot act on waits for a new one).
    retry: bool,
}

impl StageFailure {
    /// The condition reason (`FetchFailed`, `RenderFailed`, …).
    pub(crate) fn reason(&self) -> &'static str {
        self.reason
    }

    /// What went wrong.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    fn retry(reason: &'static str, cause: impl std::fmt::Display) -> Self {
        StageFailure {
            reason,
            message: cause.to_string(),
            retry: true,
        }
    }
}

/// Whether to sync, and if not, why not.
enum Decision {
    /// Nothing asks for a sync (in sync, or automated sync is off).
    Compare,
    /// A sync runs.
    Sync,
    /// A sync is wanted but may not run now.
    Blocked {
        /// Condition reason.
        reason: &'static str,
        /// Why.
        message: String,
    },
}

/// The desired set planned against the cluster.
struct Planned {
    dest: Destination,
    plan: Plan,
    opts: PlanOptions,
}

/// One reconcile of one Application: what every stage reads.
struct Pass<'a> {
    app: &'a Application,
    trigger: Trigger,
    ctx: &'a Context,
    namespace: String,
    name: String,
    /// `namespace/name`, for logs and audit.
    key: String,
    /// `namespace.name`, the inventory's key.
    inventory_key: String,
    generation: Option<i64>,
    old: ApplicationStatus,
    request: Option<SyncRequest>,
    status: ApplicationStatus,
    /// The custom health rules that judge the Application's objects and hooks.
    health: Arc<CustomHealth>,
    /// Why the cluster's health rules could not be used, when they could not.
    health_rules_problem: Option<String>,
}

/// What `app` renders to now — at the revision a pending sync request or the spec
/// names, from the shared fetch and render cache — with the destination and the plan
/// options a sync would use. Nothing is applied (for the API's diff of one object).
pub(crate) async fn desired(
    app: &Application,
    ctx: &Context,
) -> Result<(Revision, Arc<Vec<DesiredObject>>, Destination, PlanOptions), StageFailure> {
    let pass = Pass::new(app, Trigger::Interval, ctx);
    pass.check_spec()?;
    let (revision, desired) = pass.source_and_render().await?;
    let dest = ctx.dest.with_namespace(spec::destination_namespace(app));
    let opts = spec::plan_options(app, ctx.opts.requests_per_app);
    Ok((revision, desired, dest, opts))
}

/// Reconcile one Application: the stages in order, or the first that failed.
async fn run(app: &Application, trigger: Trigger, ctx: &Context, memory: &mut AppMemory) -> Report {
    let mut pass = Pass::new(app, trigger, ctx);
    match pass.stages(memory).await {
        Ok(report) => report,
        Err(failure) => pass.failed(failure, memory),
    }
}

impl<'a> Pass<'a> {
    fn new(app: &'a Application, trigger: Trigger, ctx: &'a Context) -> Self {
        let namespace = app.namespace().unwrap_or_default();
        let name = app.name_any();
        let old = app.status.clone().unwrap_or_default();
        let status = ApplicationStatus {
            observed_generation: app.meta().generation,
            reconciled_at: Some(now()),
            conditions: Vec::new(),
            ..old.clone()
        };
        Pass {
            app,
            trigger,
            ctx,
            key: format!("{namespace}/{name}"),
            inventory_key: format!("{namespace}.{name}"),
            namespace,
            name,
            generation: app.meta().generation,
            request: SyncRequest::pending(app),
            old,
            status,
            health: Arc::default(),
            health_rules_problem: None,
        }
    }

    async fn stages(&mut self, memory: &mut AppMemory) -> Result<Report, StageFailure> {
        self.check_spec()?;
        self.health_rules().await?;
        let (revision, desired) = self.source_and_render().await?;
        self.keep_delete_hooks(&desired).await;
        let planned = self.plan(&desired).await?;
        let decision = self.decide(&planned.plan, &revision).await;
        let synced = match decision {
            Decision::Sync => Some(self.sync(&planned, &desired, &revision, memory).await),
            _ => None,
        };
        Ok(self
            .assess(planned, &desired, &revision, decision, synced, memory)
            .await)
    }

    /// The revision of the last successful sync.
    fn last_synced(&self) -> Option<String> {
        self.old
            .operation_state
            .as_ref()
            .filter(|o| o.phase == "Succeeded")
            .map(|o| o.revision.clone())
    }

    /// Stage 0: a spec the controller cannot act on waits for a new spec; nothing is done.
    fn check_spec(&self) -> Result<(), StageFailure> {
        let mut invalid = spec::invalid_durations(self.app);
        if let Err(e) = spec::sync_option_set(self.app) {
            invalid.push(e);
        }
        invalid.extend(spec::unsupported(self.app));
        if invalid.is_empty() {
            return Ok(());
        }
        Err(StageFailure {
            reason: "InvalidSpec",
            message: invalid.join("; "),
            retry: false,
        })
    }

    /// Stage 0 too: the custom health rules — the Application's own, which must compile
    /// (else the spec is invalid), over the cluster's `capstan-health` ConfigMap, which
    /// a bad rule does not stop: the Application is then judged without them and a
    /// `HealthRulesInvalid` condition says why.
    async fn health_rules(&mut self) -> Result<(), StageFailure> {
        let own = crate::health_rules::application_rules(self.app).map_err(|e| StageFailure {
            reason: "InvalidSpec",
            message: error_chain(&e),
            retry: false,
        })?;
        let cluster = match self
            .ctx
            .health_rules
            .load(&self.ctx.client, &self.ctx.opts.namespace)
            .await
        {
            Ok(rules) => rules,
            Err(problem) => {
                tracing::warn!(app = %self.key, %problem, "custom health rules not used");
                self.health_rules_problem = Some(problem);
                Arc::default()
            }
        };
        self.health = crate::health_rules::combined(&cluster, own);
        Ok(())
    }

    /// Stage 1: the repository, with credentials from the Application's Secret.
    async fn source(&self) -> Result<GitSource, StageFailure> {
        let auth = crate::credentials::git_auth(
            &self.ctx.client,
            &self.namespace,
            self.app.spec.source.credentials_secret.as_deref(),
            &self.ctx.opts.state_dir,
        )
        .await
        .map_err(|e| StageFailure::retry("CredentialsFailed", error_chain(&e)))?;
        Ok(GitSource {
            url: self.app.spec.source.repo_url.clone(),
            auth,
        })
    }

    /// Stage 2: fetch (shared with every Application of the repository) and resolve the
    /// revision a request or the spec asks for.
    async fn fetch(&self, src: &GitSource) -> Result<Revision, StageFailure> {
        let wanted = self
            .request
            .as_ref()
            .map(|r| r.revision.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| self.app.spec.source.target_revision.clone())
            .unwrap_or_default();
        let forced = self.request.is_some()
            || matches!(
                self.trigger,
                Trigger::Refresh | Trigger::Webhook | Trigger::ImageUpdate
            );
        self.ctx
            .sources
            .fetch(src, forced)
            .await
            .map_err(|e| StageFailure::retry("FetchFailed", e))?;
        self.ctx
            .sources
            .resolve(src, &wanted)
            .await
            .map_err(|e| StageFailure::retry("RevisionNotFound", e))
    }

    /// Stage 3: render the revision (cached by commit, path and options).
    async fn render(
        &self,
        src: &GitSource,
        revision: &Revision,
    ) -> Result<Arc<Vec<DesiredObject>>, StageFailure> {
        let dest_ns = spec::destination_namespace(self.app);
        let scopes = self
            .ctx
            .dest
            .with_namespace(&dest_ns)
            .scopes()
            .await
            .map_err(|e| StageFailure::retry("ClusterUnreachable", e))?;
        let path = self
            .app
            .spec
            .source
            .path
            .clone()
            .unwrap_or_else(|| ".".into());
        let mut opts = spec::render_options(self.app, &dest_ns);
        let caps = self.capabilities().await?;
        opts.helm.api_versions = caps.api_versions;
        opts.helm.kube_version = caps.kube_version;
        self.ctx
            .sources
            .desired(src, revision, &path, &opts, &dest_ns, &scopes)
            .await
            .map_err(|e| StageFailure::retry("RenderFailed", e))
    }

    /// Stage 4: plan the desired set against the cluster and the last inventory.
    async fn plan(&self, desired: &[DesiredObject]) -> Result<Planned, StageFailure> {
        let dest = self
            .ctx
            .dest
            .with_namespace(spec::destination_namespace(self.app));
        let opts = spec::plan_options(self.app, self.ctx.opts.requests_per_app);
        let previous = self
            .inventory()
            .load(&self.inventory_key)
            .await
            .map_err(|e| StageFailure::retry("InventoryFailed", e))?;
        let plan = plan::plan(&dest, desired, &previous, &opts)
            .await
            .map_err(|e| StageFailure::retry("PlanFailed", e))?;
        Ok(Planned { dest, plan, opts })
    }

    /// An Application whose source has PreDelete or PostDelete hooks gets the
    /// finalizer that runs them when it is deleted (as Argo CD adds its own), unless it
    /// has [`DELETE_RESOURCES_FINALIZER`], which runs them too.
    async fn keep_delete_hooks(&self, desired: &[DesiredObject]) {
        let has = |f: &str| self.app.finalizers().iter().any(|x| x == f);
        if finalize::delete_hooks(desired).is_empty()
            || has(DELETE_RESOURCES_FINALIZER)
            || has(DELETE_HOOKS_FINALIZER)
        {
            return;
        }
        if let Err(e) = finalize::add_finalizer(self.app, DELETE_HOOKS_FINALIZER, self.ctx).await {
            tracing::warn!(app = %self.key, error = %e, "adding the delete-hooks finalizer");
        }
    }

    /// What deleting the Application needs of its source: the revision the spec names,
    /// rendered, and the destination.
    pub(super) async fn for_deletion(
        &mut self,
    ) -> Result<(Arc<Vec<DesiredObject>>, Revision), StageFailure> {
        self.check_spec()?;
        let (revision, desired) = self.source_and_render().await?;
        Ok((desired, revision))
    }

    /// Stages 1–3: the source (one Git path, or a chart, values from the cluster,
    /// several sources), its revision, the desired set.
    async fn source_and_render(&self) -> Result<(Revision, Arc<Vec<DesiredObject>>), StageFailure> {
        if spec::is_composite(self.app) {
            return self.composite().await;
        }
        let src = self.source().await?;
        let revision = self.fetch(&src).await?;
        let desired = self.render(&src, &revision).await?;
        Ok((revision, desired))
    }

    fn inventory(&self) -> InventoryStore {
        InventoryStore::new(self.ctx.client.clone(), &self.ctx.opts.namespace)
    }

    /// Stage 5: sync or not. Automated sync applies what is new — a commit, or a changed
    /// spec (another path, other renderer options) at the same commit; undoing edits
    /// in the cluster without either is self-heal's job.
    async fn decide(&self, plan: &Plan, revision: &Revision) -> Decision {
        let last_success = self
            .old
            .operation_state
            .as_ref()
            .filter(|o| o.phase == "Succeeded");
        let new_revision = last_success.map(|o| o.revision.as_str()) != Some(revision.id.as_str());
        let new_spec = last_success.is_some_and(|o| o.generation != self.generation);
        let drift = plan.has_drift();
        let auto_wants = self
            .app
            .spec
            .sync_policy
            .automated
            .as_ref()
            .is_some_and(|a| drift && (new_revision || new_spec || a.self_heal));
        if self.request.is_none() && !auto_wants {
            return Decision::Compare;
        }
        if self.ctx.stop.is_stopped() {
            return Decision::Blocked {
                reason: "EmergencyStop",
                message: "the emergency stop is on: nothing is applied or pruned".into(),
            };
        }
        if self.app.spec.suspend {
            return Decision::Blocked {
                reason: "Suspended",
                message: "the Application is suspended".into(),
            };
        }
        if let Some(waiting) = self.unready_dependencies().await {
            return Decision::Blocked {
                reason: "WaitingForDependencies",
                message: waiting,
            };
        }
        Decision::Sync
    }

    /// Names of dependencies that are not Healthy and Synced (in the same namespace).
    async fn unready_dependencies(&self) -> Option<String> {
        if self.app.spec.depends_on.is_empty() {
            return None;
        }
        let api: Api<Application> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let mut waiting = Vec::new();
        for dep in &self.app.spec.depends_on {
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

    /// The one place a failed stage becomes status: `Ready=False` with the stage's
    /// reason, `Synced=Unknown`, the last health kept, and a retry after backoff — or,
    /// for a spec the controller cannot act on, `Stalled` until the spec changes.
    fn failed(mut self, failure: StageFailure, memory: &mut AppMemory) -> Report {
        let StageFailure {
            reason,
            message,
            retry,
        } = failure;
        let generation = self.generation;
        if !retry {
            tracing::warn!(app = %self.key, %message, "invalid spec");
            self.status.conditions = merge_conditions(
                &self.old.conditions,
                vec![
                    condition("Ready", false, reason, message.clone(), generation),
                    condition("Stalled", true, reason, message, generation),
                ],
            );
            return Report {
                status: self.status,
                next: self.ctx.opts.default_interval,
                synced: false,
            };
        }
        memory.failures += 1;
        self.status.sync = Some(SyncStatus {
            status: "Unknown".into(),
            ..self.old.sync.clone().unwrap_or_default()
        });
        let conditions = vec![
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
            self.old
                .conditions
                .iter()
                .find(|c| c.type_ == "Healthy")
                .cloned(),
        )
        .collect();
        self.status.conditions = merge_conditions(&self.old.conditions, conditions);
        tracing::warn!(app = %self.key, reason, %message, "reconcile failed");
        Report {
            status: self.status,
            next: spec::backoff(memory.failures, self.ctx.opts.max_backoff, self.app),
            synced: false,
        }
    }
}

/// An error and its causes on one line (`a: b: c`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text
}

/// Whether an outcome is a failure (for counting).
pub fn failed(o: &Outcome) -> bool {
    matches!(o, Outcome::Failed { .. })
}
