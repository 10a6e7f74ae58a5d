//! Capstan's pull-based operator: every `Application` kept in sync with Git.
//!
//! It uses the engine unchanged — fetch, render, plan, sync, health — and adds what
//! running continuously needs:
//!
//! - [`scheduler`]: each Application at its interval (with jitter), at once when its
//!   spec changes or a refresh or sync is asked for, with backoff after failures;
//! - [`tracker`]: watches on the managed kinds map changes back to Applications for
//!   drift detection and self-heal (with its own growing, capped delay);
//! - [`sources`]: one fetch per repository per window shared by all Applications,
//!   one extracted tree per commit, rendered output cached;
//! - [`actions`]: what a person asks for (sync, rollback, refresh, suspend, stop),
//!   shared by the CLI and the HTTP API;
//! - [`inspect`]: one Application's resource tree and the diff of one resource;
//! - [`stop`]: the emergency stop; [`leader`]: leader election; [`audit`]: the audit
//!   log; [`reconcile`]: one Application from source to status;
//! - [`notify`]: Notifications — events read from the Applications' status, sent
//!   once each to webhooks, Slack, Teams and forges' commit statuses.
//!
//! It is built from kube-runtime's `watcher` and `reflector`, not its `Controller`:
//! the kinds to watch for drift are only known once Applications have rendered (and
//! change as they do), while a `Controller`'s watches are fixed when it is built; and
//! each run needs to know what caused it (history says `automated`, `self-heal`,
//! `refresh`) and to be paced per cause — a heal after its own growing delay, a retry
//! after its backoff, the next comparison after a jittered interval — which the
//! keyed [`scheduler`] does in one place.

pub mod actions;
pub mod audit;
pub mod crd;
pub mod credentials;
pub mod health_rules;
pub mod images;
pub mod inspect;
pub mod install;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod reconcile;
pub mod scheduler;
pub mod sources;
pub mod stop;
pub mod tracker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_engine::destination::Destination;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

pub use crd::{Application, ApplicationSpec, ApplicationStatus};
pub use leader::{Election, LeaderFlag};
pub use reconcile::{REFRESH_ANNOTATION, SYNC_ANNOTATION, SyncRequest, Trigger};
pub use sources::{SourceOptions, Sources};
pub use stop::StopFlag;

use reconcile::AppMemory;
use scheduler::{AppKey, Scheduler};

/// The namespace the controller keeps its state in (inventories, the emergency stop,
/// the leader Lease, cluster-wide audit records).
pub const SYSTEM_NAMESPACE: &str = "capstan-system";

/// How a push webhook's value of [`REFRESH_ANNOTATION`] begins
/// (`webhook/PROVIDER/TIME/DELIVERY`): the reconcile it causes is recorded with the
/// trigger `webhook`.
pub const WEBHOOK_REFRESH_PREFIX: &str = "webhook/";

/// Current time, RFC 3339 with seconds.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Create a namespace if it does not exist.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    api.patch(name, &PatchParams::apply("capstan"), &Patch::Apply(&ns))
        .await?;
    Ok(())
}

/// Write the whole `status` of `obj` by server-side apply as the controller's field
/// manager: fields the controller no longer sets (a cleared message, a resolved
/// condition) are removed, which a merge patch would leave behind. A failure is
/// logged; the next reconcile writes again.
pub(crate) async fn apply_status<K>(client: &kube::Client, obj: &K, status: &impl serde::Serialize)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Err(e) = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply("capstan-controller").force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::warn!(kind = %K::kind(&()), object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()), error = %e, "writing status");
    }
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Namespace of the controller's own state (default [`SYSTEM_NAMESPACE`]).
    pub namespace: String,
    /// Only manage Applications in this namespace (default: all namespaces).
    pub watch_namespace: Option<String>,
    /// Interval of Applications that set none.
    pub default_interval: Duration,
    /// Reconciles running at once.
    pub concurrency: usize,
    /// Requests in flight within one reconcile.
    pub requests_per_app: usize,
    /// History entries kept per Application.
    pub history_limit: usize,
    /// Failed syncs retried before the Application is marked Stalled.
    pub retry_limit: u32,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// First delay before healing drift; doubles while drift keeps coming back.
    pub heal_delay: Duration,
    /// Longest delay before healing drift.
    pub max_heal_delay: Duration,
    /// Limit of the health wait between sync waves.
    pub wave_timeout: Duration,
    /// This replica's identity (audit records, leader election).
    pub identity: String,
    /// Where the Git cache and credentials live.
    pub state_dir: PathBuf,
    /// Fetch sharing and render caching.
    pub sources: SourceOptions,
    /// Leader election; `None` runs as the only replica.
    pub election: Option<Election>,
    /// Image automation (ImageRepository, ImagePolicy, ImageUpdate).
    pub images: images::ImageOptions,
    /// Delivery of Notifications.
    pub notify: notify::NotifyOptions,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "capstan".into());
        ControllerOptions {
            namespace: SYSTEM_NAMESPACE.into(),
            watch_namespace: None,
            default_interval: Duration::from_secs(120),
            concurrency: 8,
            requests_per_app: 8,
            history_limit: 10,
            retry_limit: 5,
            max_backoff: Duration::from_secs(180),
            heal_delay: Duration::from_secs(2),
            max_heal_delay: Duration::from_secs(60),
            wave_timeout: Duration::from_secs(300),
            identity: format!("{host}-{}", std::process::id()),
            state_dir: std::env::temp_dir().join("capstan-controller"),
            sources: SourceOptions::default(),
            election: None,
            images: images::ImageOptions::default(),
            notify: notify::NotifyOptions::default(),
        }
    }
}

/// Everything a reconcile needs.
#[derive(Clone)]
pub struct Context {
    /// The cluster the controller runs against.
    pub client: kube::Client,
    /// The destination (shared discovery).
    pub dest: Destination,
    /// Shared sources.
    pub sources: Arc<Sources>,
    /// The emergency stop.
    pub stop: StopFlag,
    /// Leadership.
    pub leader: LeaderFlag,
    /// Options.
    pub opts: ControllerOptions,
    /// The cluster-wide custom health rules (the `capstan-health` ConfigMap).
    pub health_rules: health_rules::ClusterHealthRules,
    /// Helm charts from chart repositories and registries, by digest.
    pub charts: Arc<capstan_engine::source::ChartCache>,
    /// The process's Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The destination's `.Capabilities`, reused for a minute.
    pub caps: Arc<tokio::sync::Mutex<Option<(Instant, capstan_engine::destination::Capabilities)>>>,
    /// Every background task the controller starts (workers, watches, deliveries).
    pub tasks: Tasks,
}

/// The controller's background tasks. They are aborted together when the controller's
/// future ends or is dropped (a stopping `capstan up`, a test), so nothing it started
/// goes on calling an API server that is gone; [`Tasks::stop`] also waits until each
/// has ended.
#[derive(Clone, Default)]
pub struct Tasks(Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Tasks {
    /// Run `task` on the runtime as one of the controller's.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::spawn(async move {
            let _ = task.await;
        });
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|h| !h.is_finished());
        all.push(handle);
    }

    /// Abort every task still running.
    pub fn abort_all(&self) {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for h in all.iter() {
            h.abort();
        }
    }

    /// Abort every task and wait until each has ended (a task in the middle of a step
    /// ends when that step yields).
    pub async fn stop(&self) {
        self.abort_all();
        let all = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        for h in all {
            let _ = h.await;
        }
    }

    /// How many are running.
    pub fn running(&self) -> usize {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter(|h| !h.is_finished()).count()
    }
}

/// Aborts the controller's tasks when dropped.
struct AbortOnDrop(Tasks);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

/// A reconcile finished: what the Application looks like now (for progress output).
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// `namespace/name`.
    pub key: String,
    /// The status written.
    pub status: ApplicationStatus,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The Application watch ended.
    #[error("the watch on Applications ended")]
    WatchEnded,
}

/// What the watch last saw of an Application: generation, refresh and sync annotations.
type Seen = (Option<i64>, Option<String>, Option<String>);

struct Shared {
    ctx: Context,
    scheduler: Scheduler,
    store: reflector::Store<Application>,
    memory: Mutex<HashMap<AppKey, AppMemory>>,
    seen: Mutex<HashMap<AppKey, Seen>>,
    tracker: tracker::Tracker,
    drift_tx: tokio::sync::mpsc::UnboundedSender<tracker::Touched>,
    reconciled: Option<tokio::sync::mpsc::UnboundedSender<Reconciled>>,
}

fn jittered(d: Duration) -> Duration {
    let spread = d.as_millis() as u64 / 10;
    if spread == 0 {
        return d;
    }
    let delta = rand::rng().random_range(0..=spread * 2);
    Duration::from_millis(d.as_millis() as u64 - spread + delta)
}

/// What the HTTP server, `capstan up` and tests see of a running controller: its
/// cache of Applications, the emergency stop, leadership and metrics.
#[derive(Clone)]
pub struct Handle {
    /// The cluster the controller runs against.
    pub client: kube::Client,
    /// Namespace of the controller's own state.
    pub namespace: String,
    /// The Applications the controller manages, from its watch.
    pub applications: reflector::Store<Application>,
    /// The emergency stop as the controller last read it.
    pub stop: StopFlag,
    /// Whether this replica leads.
    pub leader: LeaderFlag,
    /// The process's metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// What reconciles use (shared sources and render cache, discovery), for
    /// [`Handle::tree`] and [`Handle::resource`].
    ctx: Context,
}

impl Handle {
    /// `app`'s resources with the live objects they own; see [`inspect::tree`].
    pub async fn tree(
        &self,
        app: &Application,
    ) -> Result<Vec<inspect::TreeNode>, inspect::InspectError> {
        inspect::tree(app, &self.ctx).await
    }

    /// One resource of `app`: live, desired, diff; see [`inspect::resource`].
    pub async fn resource(
        &self,
        app: &Application,
        id: &capstan_core::ObjectRef,
    ) -> Result<inspect::ResourceView, inspect::InspectError> {
        inspect::resource(app, id, &self.ctx).await
    }

    /// The controller's background tasks (to stop them all: [`Tasks::stop`]).
    pub fn tasks(&self) -> Tasks {
        self.ctx.tasks.clone()
    }

    /// Ready to serve: the Applications have been listed and the emergency stop read.
    pub fn is_ready(&self) -> bool {
        self.stop.is_known() && self.applications_listed()
    }

    /// The Application cache holds the first complete list.
    pub fn applications_listed(&self) -> bool {
        use futures::FutureExt;
        self.applications
            .wait_until_ready()
            .now_or_never()
            .is_some()
    }
}

/// Run the controller until its watch ends. `reconciled` receives every status written.
pub async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    reconciled: Option<tokio::sync::mpsc::UnboundedSender<Reconciled>>,
) -> Result<(), ControllerError> {
    let (_, running) = start(client, opts, reconciled);
    running.await
}

/// Build a controller: its [`Handle`] at once, and the future that runs it until its
/// watch ends (nothing happens until that future is polled). Its metrics are its
/// own; see [`start_with_metrics`] to count the client's requests too.
pub fn start(
    client: kube::Client,
    opts: ControllerOptions,
    reconciled: Option<tokio::sync::mpsc::UnboundedSender<Reconciled>>,
) -> (
    Handle,
    impl std::future::Future<Output = Result<(), ControllerError>>,
) {
    start_with_metrics(client, opts, Arc::default(), reconciled)
}

/// [`start`] with metrics made beforehand — those that `client` counts its requests
/// in ([`metrics::kube::counted_client`]). The metrics' Application and emergency
/// stop gauges follow this controller's cache and stop flag.
pub fn start_with_metrics(
    client: kube::Client,
    opts: ControllerOptions,
    metrics: Arc<metrics::Metrics>,
    reconciled: Option<tokio::sync::mpsc::UnboundedSender<Reconciled>>,
) -> (
    Handle,
    impl std::future::Future<Output = Result<(), ControllerError>>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ctx = Context {
        client: client.clone(),
        dest: Destination::new(client.clone(), "default"),
        sources: Arc::new(
            Sources::new(opts.state_dir.join("git"), opts.sources.clone())
                .with_metrics(metrics.clone()),
        ),
        stop: StopFlag::default(),
        leader: match &opts.election {
            None => LeaderFlag::always(),
            Some(_) => LeaderFlag::default(),
        },
        charts: Arc::new(capstan_engine::source::ChartCache::new(
            opts.state_dir.join("charts"),
        )),
        caps: Default::default(),
        metrics,
        opts: opts.clone(),
        health_rules: health_rules::ClusterHealthRules::default(),
        tasks: Tasks::default(),
    };
    let (store, writer) = reflector::store();
    ctx.metrics.follow_fleet(store.clone(), ctx.stop.clone());
    let handle = Handle {
        client: client.clone(),
        namespace: opts.namespace.clone(),
        applications: store.clone(),
        stop: ctx.stop.clone(),
        leader: ctx.leader.clone(),
        metrics: ctx.metrics.clone(),
        ctx: ctx.clone(),
    };
    (handle, running(ctx, store, writer, reconciled))
}

async fn running(
    ctx: Context,
    store: reflector::Store<Application>,
    writer: reflector::store::Writer<Application>,
    reconciled: Option<tokio::sync::mpsc::UnboundedSender<Reconciled>>,
) -> Result<(), ControllerError> {
    let client = ctx.client.clone();
    let opts = ctx.opts.clone();
    let tasks = ctx.tasks.clone();
    let _abort = AbortOnDrop(tasks.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    tasks.spawn(
        ctx.stop
            .clone()
            .follow(client.clone(), opts.namespace.clone(), move |stopped| {
                tracing::warn!(stopped, "emergency stop changed");
                let _ = stop_tx.send(stopped);
            }),
    );
    if let Some(election) = opts.election.clone() {
        tasks.spawn(leader::run(
            client.clone(),
            election,
            ctx.leader.clone(),
            |leading| {
                tracing::info!(leading, "leadership changed");
            },
        ));
    }

    let api: Api<Application> = match &opts.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (drift_tx, mut drift_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        ctx,
        scheduler: Scheduler::default(),
        store,
        memory: Mutex::default(),
        seen: Mutex::default(),
        tracker: tracker::Tracker::default(),
        drift_tx,
        reconciled,
    });

    // No reconcile before the emergency stop has been read: a controller started while
    // the stop is on must not apply anything in the moment before it looks.
    shared.ctx.stop.known().await;
    for _ in 0..opts.concurrency.max(1) {
        let shared = shared.clone();
        tasks.spawn(async move { worker(shared).await });
    }
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            while let Some(stopped) = stop_rx.recv().await {
                if !stopped {
                    on_stop_lifted(&shared);
                }
            }
        });
    }
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            while let Some(t) = drift_rx.recv().await {
                on_drift(&shared, t);
            }
        });
    }

    // image automation: a push wakes the Applications of that repository and branch
    let (pushed_tx, mut pushed_rx) = tokio::sync::mpsc::unbounded_channel::<images::Pushed>();
    {
        let ctx = shared.ctx.clone();
        let images = opts.images.clone();
        tasks.spawn(async move {
            if let Err(e) = images::run(ctx, images, pushed_tx).await {
                tracing::error!(error = %e, "image automation stopped");
            }
        });
        let shared = shared.clone();
        tasks.spawn(async move {
            while let Some(p) = pushed_rx.recv().await {
                on_pushed(&shared, &p);
            }
        });
    }

    tasks.spawn(notifications(shared.ctx.clone(), shared.store.clone()));

    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .boxed();
    // The reflector's cache takes the listed Applications only when the list is
    // complete (`InitDone`), so they are scheduled then, not as they arrive.
    let mut listed: Vec<Application> = Vec::new();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(app)) => on_app(&shared, &app),
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(app)) => listed.push(app),
            Ok(watcher::Event::InitDone) => {
                for app in listed.drain(..) {
                    on_app(&shared, &app);
                }
            }
            Ok(watcher::Event::Delete(app)) => {
                let key = (app.namespace().unwrap_or_default(), app.name_any());
                shared.ctx.metrics.forget_application(&key.0, &key.1);
                shared.scheduler.remove(&key);
                shared
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            }
            Err(e) => tracing::warn!(error = %e, "watching Applications"),
        }
    }
    Err(ControllerError::WatchEnded)
}

/// Notifications, until the controller stops.
async fn notifications(ctx: Context, store: reflector::Store<Application>) {
    if let Err(e) = notify::run(ctx, store).await {
        tracing::error!(error = %crate::reconcile::error_chain(&e), "notifications stopped");
    }
}

/// A new or changed Application: schedule it when its spec, refresh or sync request changed.
fn on_app(shared: &Shared, app: &Application) {
    let key: AppKey = (app.namespace().unwrap_or_default(), app.name_any());
    let generation = app.meta().generation;
    let refresh = app.annotations().get(REFRESH_ANNOTATION).cloned();
    let sync = app.annotations().get(SYNC_ANNOTATION).cloned();
    let mut seen = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
    let before = seen.insert(key.clone(), (generation, refresh.clone(), sync.clone()));
    let trigger = match before {
        _ if app.metadata.deletion_timestamp.is_some() => Some(Trigger::Spec),
        None => Some(Trigger::Spec),
        Some((g, r, s)) => {
            if g != generation || (s != sync && sync.is_some()) {
                Some(Trigger::Spec)
            } else if r != refresh && refresh.is_some() {
                // a push webhook names itself in the refresh it asks for
                if refresh
                    .as_deref()
                    .is_some_and(|r| r.starts_with(WEBHOOK_REFRESH_PREFIX))
                {
                    Some(Trigger::Webhook)
                } else {
                    Some(Trigger::Refresh)
                }
            } else {
                None
            }
        }
    };
    drop(seen);
    if let Some(t) = trigger {
        shared.scheduler.schedule(key, Instant::now(), t);
    }
}

/// An ImageUpdate pushed: compare the Applications of that repository and branch now.
fn on_pushed(shared: &Shared, pushed: &images::Pushed) {
    for app in shared.store.state() {
        let src = &app.spec.source;
        let same_repo =
            capstan_engine::source::GitSource::new(&src.repo_url).display_url() == pushed.url;
        let rev = src.target_revision.as_deref().unwrap_or("");
        if same_repo && (rev == pushed.branch || rev.is_empty() || rev == "HEAD") {
            let key: AppKey = (app.namespace().unwrap_or_default(), app.name_any());
            shared
                .scheduler
                .schedule(key, Instant::now(), Trigger::ImageUpdate);
        }
    }
}

/// A managed object changed: schedule its Application(s) after the heal delay.
/// The emergency stop was lifted: the Applications whose sync it held (their Ready
/// condition says so) are reconciled now, not at their next interval, so a held sync
/// request or automated sync runs at once.
fn on_stop_lifted(shared: &Shared) {
    let mut held = 0usize;
    for app in shared.store.state() {
        let blocked = app.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "EmergencyStop")
        });
        if blocked {
            held += 1;
            let key: AppKey = (app.namespace().unwrap_or_default(), app.name_any());
            shared
                .scheduler
                .schedule(key, Instant::now(), Trigger::Retry);
        }
    }
    tracing::info!(held, "emergency stop lifted: the syncs it held run now");
}

fn on_drift(shared: &Shared, t: tracker::Touched) {
    let memory = shared.memory.lock().unwrap_or_else(|p| p.into_inner());
    for app in shared.store.state() {
        if app.name_any() != t.application {
            continue;
        }
        let key: AppKey = (app.namespace().unwrap_or_default(), app.name_any());
        let (first, max) = (shared.ctx.opts.heal_delay, shared.ctx.opts.max_heal_delay);
        let delay = memory
            .get(&key)
            .map_or(first, |m| m.heal_delay(Instant::now(), first, max));
        shared
            .scheduler
            .schedule(key, Instant::now() + delay, Trigger::Drift);
    }
}

async fn worker(shared: Arc<Shared>) {
    loop {
        let (key, trigger) = shared.scheduler.next().await;
        if !shared.ctx.leader.is_leader() {
            shared
                .scheduler
                .done(key, Instant::now() + Duration::from_secs(1), trigger);
            continue;
        }
        let Some(app) = shared.store.get(&ObjectRef::new(&key.1).within(&key.0)) else {
            // deleted (Applications are only scheduled once the cache holds them)
            shared.scheduler.release(key);
            continue;
        };
        if app.metadata.deletion_timestamp.is_some() {
            match reconcile::finalize(&app, &shared.ctx).await {
                Some(after) => shared
                    .scheduler
                    .done(key, Instant::now() + after, Trigger::Spec),
                None => shared.scheduler.release(key),
            }
            continue;
        }
        let mut memory = {
            let mut m = shared.memory.lock().unwrap_or_else(|p| p.into_inner());
            m.remove(&key).unwrap_or_default()
        };
        tracing::debug!(app = %format!("{}/{}", key.0, key.1), trigger = trigger.as_str(), "reconciling");
        let started = Instant::now();
        let next = reconcile::reconcile(app.clone(), trigger, &shared.ctx, &mut memory).await;
        shared.ctx.metrics.reconciled(started.elapsed());
        tracing::debug!(app = %format!("{}/{}", key.0, key.1), next = ?next.after, "reconciled");
        // the self-heal delay grows while healed drift keeps coming back
        if trigger == Trigger::Drift && next.synced {
            memory.healed(
                Instant::now(),
                shared.ctx.opts.heal_delay,
                shared.ctx.opts.max_heal_delay,
            );
        }
        shared
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), memory);
        watch_managed_kinds(&shared, &next.kinds).await;
        let after = if next.after >= reconcile::interval(&app, shared.ctx.opts.default_interval) {
            jittered(next.after)
        } else {
            next.after
        };
        shared
            .scheduler
            .done(key.clone(), Instant::now() + after, Trigger::Interval);
        if let Some(tx) = &shared.reconciled {
            let api: Api<Application> = Api::namespaced(shared.ctx.client.clone(), &key.0);
            if let Ok(Some(fresh)) = api.get_opt(&key.1).await {
                let _ = tx.send(Reconciled {
                    key: format!("{}/{}", key.0, key.1),
                    status: fresh.status.unwrap_or_default(),
                });
            }
        }
    }
}

/// Watch the kinds an Application manages for drift (each kind once).
async fn watch_managed_kinds(
    shared: &Shared,
    kinds: &std::collections::BTreeSet<(String, String)>,
) {
    for (api_version, kind) in kinds {
        if let Ok((ar, _)) = shared.ctx.dest.resource(api_version, kind).await {
            shared
                .ctx
                .tracker_ensure(&shared.tracker, ar, shared.drift_tx.clone());
        }
    }
}

impl Context {
    /// Helm's `.Capabilities` of the destination: its discovery (cached) and version,
    /// asked for at most once a minute.
    pub async fn capabilities(
        &self,
    ) -> Result<
        capstan_engine::destination::Capabilities,
        capstan_engine::destination::DestinationError,
    > {
        let mut cached = self.caps.lock().await;
        if let Some((at, caps)) = cached.as_ref()
            && at.elapsed() < Duration::from_secs(60)
        {
            return Ok(caps.clone());
        }
        let caps = self.dest.capabilities().await?;
        *cached = Some((Instant::now(), caps.clone()));
        Ok(caps)
    }

    fn tracker_ensure(
        &self,
        tracker: &tracker::Tracker,
        ar: kube::api::ApiResource,
        tx: tokio::sync::mpsc::UnboundedSender<tracker::Touched>,
    ) {
        tracker.ensure(
            &self.tasks,
            &self.client,
            ar,
            capstan_core::FIELD_MANAGER.to_string(),
            tx,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_jittered_by_at_most_a_tenth() {
        let d = Duration::from_secs(120);
        let runs: Vec<Duration> = (0..500).map(|_| jittered(d)).collect();
        assert!(
            runs.iter()
                .all(|r| *r >= Duration::from_secs(108) && *r <= Duration::from_secs(132)),
            "{runs:?}"
        );
        // spread out, so a fleet created at once does not stay in lockstep
        let distinct: std::collections::HashSet<_> = runs.iter().collect();
        assert!(distinct.len() > 100, "{} distinct", distinct.len());
        assert_eq!(jittered(Duration::from_millis(5)), Duration::from_millis(5));
    }
}
