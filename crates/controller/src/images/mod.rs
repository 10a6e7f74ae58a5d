//! Image automation in the operator: registries scanned for new tags, policies that
//! pick the latest, and the Git write-back of what they picked.
//!
//! ```text
//! ImageRepository ──scan (scan.rs)──▶ tags ──ImagePolicy (select.rs)──▶ latest image
//!   ──ImageUpdate (write.rs)──▶ one commit per repository and branch ──▶ Applications
//!   of that repository and branch are compared with Git at once
//! ```
//!
//! Tags are kept in memory (a restart scans again: the controller converges from the
//! cluster, the registries and Git alone). A policy is chosen again after every scan of
//! its repository; when its choice changes, the ImageUpdates that write it are run —
//! after every scan in flight has finished, so new tags of many images that appear at
//! once end in one commit. ImageUpdates that write to the same repository and branch
//! (with the same author and signing key) share that commit.
//!
//! Only the leader scans and writes; while the emergency stop is on, nothing is
//! written (scans go on).

pub mod crd;
mod scan;
mod select;
mod write;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_engine::images::ImageRef;
use capstan_engine::images::registry::{RegistryClient, ScanOptions};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::time::Instant;

use crate::Context;
use crate::crd::Condition;
use crate::reconcile::{REFRESH_ANNOTATION, Trigger};
use crate::scheduler::{AppKey, Scheduler};
pub use crd::{ImagePolicy, ImageRepository, ImageUpdate};

/// How image automation runs.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Scan interval of ImageRepositories that set none.
    pub scan_interval: Duration,
    /// Interval of ImageUpdates that set none.
    pub update_interval: Duration,
    /// Scans running at once.
    pub scan_concurrency: usize,
    /// After a policy chose a new image, wait this long (and for scans in flight)
    /// before writing, so changes that come together share a commit.
    pub settle: Duration,
    /// The registry client's limits.
    pub registry: ScanOptions,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            scan_interval: Duration::from_secs(60),
            update_interval: Duration::from_secs(60),
            scan_concurrency: 16,
            settle: Duration::from_millis(500),
            registry: ScanOptions::default(),
        }
    }
}

/// A push an ImageUpdate made: the Applications of this repository and branch are
/// compared with Git at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Repository URL (without credentials).
    pub url: String,
    /// The branch pushed to.
    pub branch: String,
}

/// What one scan found of a repository.
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    /// The tags, after the exclusion list.
    pub tags: Arc<Vec<String>>,
    /// Digests looked up during this scan, by tag.
    pub digests: HashMap<String, String>,
}

/// The image automation of one controller.
pub(crate) struct Automation {
    pub ctx: Context,
    pub opts: ImageOptions,
    pub registry: RegistryClient,
    /// The client for `insecure` (plain HTTP, loopback) repositories.
    pub insecure_registry: RegistryClient,
    pub repos: reflector::Store<ImageRepository>,
    pub policies: reflector::Store<ImagePolicy>,
    pub updates: reflector::Store<ImageUpdate>,
    /// Per ImageRepository, its last successful scan.
    pub scanned: Mutex<HashMap<AppKey, Scanned>>,
    /// Per ImagePolicy, the image it chooses now.
    pub latest: Mutex<HashMap<AppKey, ImageRef>>,
    pub scan_queue: Scheduler,
    pub update_queue: Scheduler,
    /// Scans running now; writes wait for them.
    pub scans_in_flight: AtomicUsize,
    pub scans_done: tokio::sync::Notify,
    /// One choice of a policy at a time.
    pub choose_locks: Mutex<HashMap<AppKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Writes to one repository and branch take turns.
    pub write_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub pushed: tokio::sync::mpsc::UnboundedSender<Pushed>,
}

/// Why image automation stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The registry client could not be built.
    #[error("building the registry client")]
    Registry(#[source] capstan_engine::images::registry::RegistryError),
}

fn key_of<K: Resource>(o: &K) -> AppKey {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

/// Run image automation until the controller stops: watch the three kinds, scan,
/// choose, write. `pushed` hears of every push.
pub async fn run(
    ctx: Context,
    opts: ImageOptions,
    pushed: tokio::sync::mpsc::UnboundedSender<Pushed>,
) -> Result<(), ImageError> {
    let registry = RegistryClient::new(opts.registry.clone()).map_err(ImageError::Registry)?;
    let insecure_registry = RegistryClient::new(ScanOptions {
        insecure: true,
        ..opts.registry.clone()
    })
    .map_err(ImageError::Registry)?;
    let ns = ctx.opts.watch_namespace.clone();
    let client = ctx.client.clone();
    let (repos, repo_writer) = reflector::store();
    let (policies, policy_writer) = reflector::store();
    let (updates, update_writer) = reflector::store();
    let auto = Arc::new(Automation {
        ctx,
        opts,
        registry,
        insecure_registry,
        repos,
        policies,
        updates,
        scanned: Mutex::default(),
        latest: Mutex::default(),
        scan_queue: Scheduler::default(),
        update_queue: Scheduler::default(),
        scans_in_flight: AtomicUsize::new(0),
        scans_done: tokio::sync::Notify::new(),
        choose_locks: Mutex::default(),
        write_locks: Mutex::default(),
        pushed,
    });
    auto.ctx.stop.known().await;
    for _ in 0..auto.opts.scan_concurrency.max(1) {
        let a = auto.clone();
        a.ctx
            .tasks
            .clone()
            .spawn(async move { a.scan_worker().await });
    }
    for _ in 0..2 {
        let a = auto.clone();
        a.ctx
            .tasks
            .clone()
            .spawn(async move { a.update_worker().await });
    }
    let repo_watch = watch::<ImageRepository>(&client, &ns, repo_writer, {
        let a = auto.clone();
        move |r: &ImageRepository, changed| {
            if changed {
                a.scan_queue
                    .schedule(key_of(r), Instant::now(), Trigger::Spec);
            }
        }
    });
    let policy_watch = watch::<ImagePolicy>(&client, &ns, policy_writer, {
        let a = auto.clone();
        move |p: &ImagePolicy, changed| {
            if changed {
                let a = a.clone();
                let key = key_of(p);
                a.ctx
                    .tasks
                    .clone()
                    .spawn(async move { a.choose(&key).await });
            }
        }
    });
    let update_watch = watch::<ImageUpdate>(&client, &ns, update_writer, {
        let a = auto.clone();
        move |u: &ImageUpdate, changed| {
            if changed {
                a.update_queue
                    .schedule(key_of(u), Instant::now() + a.opts.settle, Trigger::Spec);
            }
        }
    });
    tokio::join!(repo_watch, policy_watch, update_watch);
    Ok(())
}

/// Watch one kind into `writer`; `on_change` hears every object, with whether its
/// generation or refresh annotation changed (or it is new).
async fn watch<K>(
    client: &kube::Client,
    ns: &Option<String>,
    writer: reflector::store::Writer<K>,
    on_change: impl Fn(&K, bool) + Send + 'static,
) where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut seen: HashMap<AppKey, (Option<i64>, Option<String>)> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .boxed();
    let mut listed: Vec<K> = Vec::new();
    let note = |o: &K, seen: &mut HashMap<AppKey, (Option<i64>, Option<String>)>| {
        let state = (
            o.meta().generation,
            o.annotations().get(REFRESH_ANNOTATION).cloned(),
        );
        let changed = seen.insert(key_of(o), state.clone()).as_ref() != Some(&state);
        on_change(o, changed);
    };
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(o)) => note(&o, &mut seen),
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(o)) => listed.push(o),
            Ok(watcher::Event::InitDone) => {
                for o in listed.drain(..) {
                    note(&o, &mut seen);
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                seen.remove(&key_of(&o));
            }
            Err(e) => tracing::warn!(error = %e, kind = %K::kind(&()), "watching"),
        }
    }
}

impl Automation {
    fn repo(&self, key: &AppKey) -> Option<Arc<ImageRepository>> {
        self.repos.get(&ObjectRef::new(&key.1).within(&key.0))
    }

    fn policy(&self, key: &AppKey) -> Option<Arc<ImagePolicy>> {
        self.policies.get(&ObjectRef::new(&key.1).within(&key.0))
    }

    fn update(&self, key: &AppKey) -> Option<Arc<ImageUpdate>> {
        self.updates.get(&ObjectRef::new(&key.1).within(&key.0))
    }

    async fn scan_worker(self: Arc<Self>) {
        loop {
            let (key, _trigger) = self.scan_queue.next().await;
            let Some(repo) = self.repo(&key) else {
                self.scan_queue.release(key);
                continue;
            };
            if !self.ctx.leader.is_leader() {
                self.scan_queue.done(
                    key,
                    Instant::now() + Duration::from_secs(2),
                    Trigger::Interval,
                );
                continue;
            }
            self.scans_in_flight.fetch_add(1, Ordering::SeqCst);
            let next = self.scan(&key, &repo).await;
            if self.scans_in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.scans_done.notify_waiters();
            }
            // the policies of this repository choose again from what it found
            let policies: Vec<AppKey> = self
                .policies
                .state()
                .iter()
                .filter(|p| {
                    p.namespace().as_deref() == Some(key.0.as_str())
                        && p.spec.image_repository_ref.name == key.1
                })
                .map(|p| key_of(p.as_ref()))
                .collect();
            for p in policies {
                self.choose(&p).await;
            }
            self.scan_queue
                .done(key, Instant::now() + next, Trigger::Interval);
        }
    }

    /// Wait until no scan is running (at most `limit`).
    async fn scans_settled(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.scans_done.notified();
            if self.scans_in_flight.load(Ordering::SeqCst) == 0 || Instant::now() >= deadline {
                return;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// The ImageUpdates that write `policy`.
    fn updates_of(&self, policy: &AppKey) -> Vec<AppKey> {
        self.updates
            .state()
            .iter()
            .filter(|u| {
                u.namespace().as_deref() == Some(policy.0.as_str())
                    && (u.spec.policies.is_empty() || u.spec.policies.contains(&policy.1))
            })
            .map(|u| key_of(u.as_ref()))
            .collect()
    }

    async fn update_worker(self: Arc<Self>) {
        loop {
            let (key, _trigger) = self.update_queue.next().await;
            let Some(update) = self.update(&key) else {
                self.update_queue.release(key);
                continue;
            };
            if !self.ctx.leader.is_leader() {
                self.update_queue.done(
                    key,
                    Instant::now() + Duration::from_secs(2),
                    Trigger::Interval,
                );
                continue;
            }
            // new tags of many images come in many scans: write once they are in
            self.scans_settled(Duration::from_secs(30)).await;
            let (next, group) = self.write_group(&key, &update).await;
            for member in group.iter().filter(|m| **m != key) {
                // ran with this one: their next run is at their interval
                self.update_queue.remove(member);
                if let Some(u) = self.update(member) {
                    self.update_queue.schedule(
                        member.clone(),
                        Instant::now()
                            + interval(u.spec.interval.as_deref(), self.opts.update_interval),
                        Trigger::Interval,
                    );
                }
            }
            self.update_queue
                .done(key, Instant::now() + next, Trigger::Interval);
        }
    }
}

/// A `Ready` condition.
pub(crate) fn ready(ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: None,
    }
}

/// `conditions` with `c` in place of its type, keeping the transition time when the
/// status did not change.
pub(crate) fn merge(conditions: &[Condition], mut c: Condition) -> Vec<Condition> {
    let old = conditions.iter().find(|o| o.type_ == c.type_);
    c.last_transition_time = match old {
        Some(o) if o.status == c.status => o
            .last_transition_time
            .clone()
            .or_else(|| Some(crate::now())),
        _ => Some(crate::now()),
    };
    let mut out: Vec<Condition> = conditions
        .iter()
        .filter(|o| o.type_ != c.type_)
        .cloned()
        .collect();
    out.insert(0, c);
    out
}

/// A spec's interval, or `default`.
pub(crate) fn interval(spec: Option<&str>, default: Duration) -> Duration {
    spec.and_then(|s| humantime::parse_duration(s.trim()).ok())
        .unwrap_or(default)
        .max(Duration::from_secs(1))
}

/// The ImageUpdates a set of policies' changes concern.
pub(crate) fn dedup(keys: impl IntoIterator<Item = AppKey>) -> Vec<AppKey> {
    keys.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}
