//! Notifications: events of Applications sent to webhooks, Slack, Teams and Git
//! forges' commit statuses, each once.
//!
//! ```text
//! Applications, ImageUpdates, the emergency stop ──(triggers.rs: events from state)──▶
//!   events keyed (Application uid, trigger, revision)
//!   ──not in the Notification's record (ledger.rs), not from before it existed──▶
//!   delivery queue (retries with backoff, a timeout per request, bounded slots)
//!   ──(deliver.rs: the body of each destination)──▶ receiver
//!   ──▶ the record in the Notification's status
//! ```
//!
//! Events are read from what the cluster stores — the Applications' history, sync,
//! health and operation, ImageUpdates' last push, the emergency stop's ConfigMap —
//! never from callbacks of the reconcile, so nothing is lost when the controller
//! restarts or another replica takes over: the new one reads the same state and the
//! same record. Only the leader sends.
//!
//! Delivery never holds up a reconcile: it runs in its own tasks, each request bounded
//! by a timeout, at most [`NotifyOptions::concurrency`] at once; a hanging receiver
//! holds one slot until its timeout, never another destination. A failed attempt is
//! retried after 1 s, 2 s, 4 s … (capped) until [`NotifyOptions::attempts`]; then the
//! event is recorded as `Failed` and the `Delivered` condition says why.
//!
//! Each event is recorded once it is sent. The one window left is a crash (or loss of
//! leadership) after the receiver answered and before the record was written: that
//! event is sent again — at least once, never lost. Webhook receivers can drop such
//! a repeat by its `X-Capstan-Delivery` id, which is the same on every attempt and
//! after restarts; a forge's commit status is simply set again to the same state.

pub mod crd;
pub mod deliver;
pub mod ledger;
pub mod triggers;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::Context;
use crate::crd::{Application, Condition};
use crate::images::ImageUpdate;
use crate::stop::StopState;
use crd::{Delivery, SecretKeyRef, SentRecord};
pub use crd::{
    DestinationSpec, DestinationType, Notification, NotificationSpec, NotificationStatus,
    TriggerName,
};
use deliver::{DeliverError, Sender, Target};
use ledger::{Key, Ledger};
use triggers::Event;

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Limit of one request (connect and answer).
    pub timeout: Duration,
    /// Attempts per event and destination before it is recorded as failed.
    pub attempts: u32,
    /// Delay after the first failed attempt; doubles after each.
    pub first_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Requests in flight at once, over all destinations.
    pub concurrency: usize,
    /// Entries of the record kept per Application (and per Notification).
    pub per_application: usize,
    /// How often state is looked at again without a change seen.
    pub resync: Duration,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            timeout: Duration::from_secs(10),
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            concurrency: 16,
            per_application: 30,
            resync: Duration::from_secs(1),
        }
    }
}

/// Why notifications stopped.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client of notifications")]
    Client(#[source] reqwest::Error),
}

/// What the runner keeps of one Notification between writes of its status.
#[derive(Debug, Clone, Default)]
struct State {
    ledger: Ledger,
    last_delivery: Option<Delivery>,
    delivered: Option<Condition>,
    ready: Option<Condition>,
    /// The status in the cluster lags behind this.
    dirty: bool,
}

struct Runner {
    ctx: Context,
    opts: NotifyOptions,
    http: reqwest::Client,
    apps: reflector::Store<Application>,
    notifications: reflector::Store<Notification>,
    updates: reflector::Store<ImageUpdate>,
    slots: tokio::sync::Semaphore,
    /// Per Notification uid.
    states: Mutex<HashMap<String, State>>,
    /// Deliveries queued or running: (Notification uid, key).
    inflight: Mutex<HashSet<(String, Key)>>,
    /// One status write per Notification at a time.
    write_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    changed: tokio::sync::Notify,
    stop: Mutex<Option<(StopState, tokio::time::Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run notifications until the controller stops. `apps` is the controller's cache of
/// Applications.
pub async fn run(ctx: Context, apps: reflector::Store<Application>) -> Result<(), NotifyError> {
    let opts = ctx.opts.notify.clone();
    let http = deliver::client(opts.timeout).map_err(NotifyError::Client)?;
    let (notifications, n_writer) = reflector::store();
    let (updates, u_writer) = reflector::store();
    let runner = Arc::new(Runner {
        slots: tokio::sync::Semaphore::new(opts.concurrency.max(1)),
        ctx,
        opts,
        http,
        apps,
        notifications,
        updates,
        states: Mutex::default(),
        inflight: Mutex::default(),
        write_locks: Mutex::default(),
        changed: tokio::sync::Notify::new(),
        stop: Mutex::default(),
    });
    let ns = runner.ctx.opts.watch_namespace.clone();
    let client = runner.ctx.client.clone();
    let watch_n = follow::<Notification>(&client, &ns, n_writer, runner.clone());
    let watch_u = follow::<ImageUpdate>(&client, &ns, u_writer, runner.clone());
    let evaluate = runner.clone().evaluate_loop();
    tokio::join!(watch_n, watch_u, evaluate);
    Ok(())
}

/// Keep `writer` current from a watch of `K`, waking the runner on every change.
async fn follow<K>(
    client: &kube::Client,
    ns: &Option<String>,
    writer: reflector::store::Writer<K>,
    runner: Arc<Runner>,
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
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(_) => runner.changed.notify_one(),
            Err(e) => tracing::warn!(error = %e, kind = %K::kind(&()), "watching"),
        }
    }
}

/// The name of destination `i`: its own, or its type.
fn destination_name(d: &DestinationSpec) -> String {
    d.name
        .clone()
        .unwrap_or_else(|| d.type_.as_str().to_string())
}

/// What is wrong with a spec, each problem naming its field.
fn problems(spec: &NotificationSpec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.triggers.is_empty() {
        out.push("spec.triggers: at least one trigger is needed".to_string());
    }
    if spec.destinations.is_empty() {
        out.push("spec.destinations: at least one destination is needed".to_string());
    }
    for (i, p) in spec.selector.names.iter().enumerate() {
        if let Err(e) = globset::Glob::new(p) {
            out.push(format!("spec.selector.names[{i}]: {e}"));
        }
    }
    let mut names = HashSet::new();
    for (i, d) in spec.destinations.iter().enumerate() {
        let field = format!("spec.destinations[{i}]");
        let name = destination_name(d);
        if !names.insert(name.clone()) {
            out.push(format!(
                "{field}: a second destination named {name:?}; give each a distinct name"
            ));
        }
        if d.type_.is_forge() {
            if d.token_secret_ref.is_none() {
                out.push(format!(
                    "{field}.tokenSecretRef: {} needs a token",
                    d.type_.as_str()
                ));
            }
            if d.type_ == DestinationType::Gitea && d.url.is_none() {
                out.push(format!(
                    "{field}.url: gitea needs its API base URL (https://HOST/api/v1)"
                ));
            }
            if let Some(u) = &d.url
                && !(u.starts_with("https://") || u.starts_with("http://"))
            {
                out.push(format!("{field}.url: not an http(s) URL"));
            }
            if d.url_secret_ref.is_some() {
                out.push(format!(
                    "{field}.urlSecretRef: {} takes url (its API base) and tokenSecretRef",
                    d.type_.as_str()
                ));
            }
        } else {
            if d.url_secret_ref.is_none() {
                out.push(format!(
                    "{field}.urlSecretRef: {} needs the Secret key holding its URL",
                    d.type_.as_str()
                ));
            }
            if d.url.is_some() {
                out.push(format!(
                    "{field}.url: a {} URL is a credential; put it in a Secret and use urlSecretRef",
                    d.type_.as_str()
                ));
            }
        }
        if d.hmac_secret_ref.is_some() && d.type_ != DestinationType::Webhook {
            out.push(format!("{field}.hmacSecretRef: only a webhook is signed"));
        }
    }
    out
}

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: None,
        observed_generation: None,
    }
}

/// Whether an Application is selected.
fn selects(n: &Notification, app: &Application) -> bool {
    if app.namespace() != n.namespace() || app.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let sel = &n.spec.selector;
    let name = app.name_any();
    let named = sel.names.is_empty()
        || sel.names.iter().any(|p| {
            globset::Glob::new(p)
                .map(|g| g.compile_matcher().is_match(&name))
                .unwrap_or(false)
        });
    let labels = app.labels();
    named
        && sel
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
}

/// A Notification's creation, to the second: events before it are not sent.
fn created(n: &Notification) -> Option<jiff::Timestamp> {
    n.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn happened_before(event: &Event, created: Option<jiff::Timestamp>) -> bool {
    match (event.time, created) {
        // stored times have whole seconds
        (Some(e), Some(c)) => e.as_second() < c.as_second(),
        _ => false,
    }
}

impl Runner {
    async fn evaluate_loop(self: Arc<Self>) {
        // the first look waits for complete caches: a restarted controller must know
        // its record before it decides anything is new
        self.ctx.stop.known().await;
        self.apps.wait_until_ready().await.ok();
        self.notifications.wait_until_ready().await.ok();
        self.updates.wait_until_ready().await.ok();
        loop {
            if self.ctx.leader.is_leader() {
                self.refresh_stop().await;
                self.evaluate();
                self.write_dirty().await;
            }
            let _ = tokio::time::timeout(self.opts.resync, self.changed.notified()).await;
            // let a burst of changes settle into one look
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The emergency stop's state while it is on (read again every 10 s).
    async fn refresh_stop(&self) {
        if !self.ctx.stop.is_stopped() {
            *lock(&self.stop) = None;
            return;
        }
        let fresh = lock(&self.stop)
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < Duration::from_secs(10));
        if fresh {
            return;
        }
        match crate::stop::read(&self.ctx.client, &self.ctx.opts.namespace).await {
            Ok(s) => *lock(&self.stop) = Some((s, tokio::time::Instant::now())),
            Err(e) => tracing::warn!(error = %e, "reading the emergency stop for notifications"),
        }
    }

    /// One look at everything: new events are queued for delivery.
    fn evaluate(self: &Arc<Self>) {
        let apps = self.apps.state();
        let updates = self.updates.state();
        let live: HashSet<String> = apps.iter().filter_map(|a| a.uid()).collect();
        let stop = lock(&self.stop)
            .as_ref()
            .and_then(|(s, _)| triggers::stop_event(s));
        let notifications = self.notifications.state();
        let known: HashSet<String> = notifications.iter().filter_map(|n| n.uid()).collect();
        lock(&self.states).retain(|uid, _| known.contains(uid));
        for n in notifications {
            let Some(uid) = n.uid() else { continue };
            self.seed(&uid, &n, &live);
            let problems = problems(&n.spec);
            let ready = if !problems.is_empty() {
                condition("Ready", false, "InvalidSpec", problems.join("; "))
            } else if n.spec.suspend {
                condition(
                    "Ready",
                    true,
                    "Suspended",
                    "spec.suspend is set: nothing is sent".into(),
                )
            } else {
                let selected = apps.iter().filter(|a| selects(&n, a)).count();
                condition(
                    "Ready",
                    true,
                    "Watching",
                    format!("{selected} Application(s) selected"),
                )
            };
            self.set_ready(&uid, ready);
            if !problems.is_empty() || n.spec.suspend || n.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let mut events: Vec<Event> = Vec::new();
            for app in apps.iter().filter(|a| selects(&n, a)) {
                events.extend(triggers::application_events(app));
                events.extend(triggers::image_events(app, &updates));
            }
            events.extend(stop.clone());
            let created = created(&n);
            for e in events {
                if !n.spec.triggers.contains(&e.trigger) || happened_before(&e, created) {
                    continue;
                }
                for (index, d) in n.spec.destinations.iter().enumerate() {
                    if d.type_.is_forge() && e.app.is_none() {
                        continue;
                    }
                    self.queue(&n, &uid, index, d, &e);
                }
            }
        }
    }

    /// Take the Notification's status into its state (the first time, and what
    /// another writer added since).
    fn seed(&self, uid: &str, n: &Notification, live: &HashSet<String>) {
        let mut states = lock(&self.states);
        let status = n.status.clone().unwrap_or_default();
        let state = states.entry(uid.to_string()).or_insert_with(|| State {
            ledger: Ledger::new(Vec::new(), self.opts.per_application),
            last_delivery: status.last_delivery.clone(),
            delivered: status
                .conditions
                .iter()
                .find(|c| c.type_ == "Delivered")
                .cloned(),
            ready: None,
            dirty: false,
        });
        state.ledger.merge(&status.sent);
        let before = state.ledger.records().len();
        state.ledger.retain_applications(live);
        if state.ledger.records().len() != before {
            state.dirty = true;
        }
    }

    fn set_ready(&self, uid: &str, ready: Condition) {
        let mut states = lock(&self.states);
        if let Some(s) = states.get_mut(uid) {
            let same = s.ready.as_ref().is_some_and(|r| {
                r.status == ready.status && r.reason == ready.reason && r.message == ready.message
            });
            if !same {
                s.ready = Some(ready);
                s.dirty = true;
            }
        }
    }

    /// Queue the delivery of `event` to destination `index`, unless it was handled or
    /// is under way.
    fn queue(
        self: &Arc<Self>,
        n: &Arc<Notification>,
        uid: &str,
        index: usize,
        d: &DestinationSpec,
        event: &Event,
    ) {
        let key = Key {
            uid: if event.uid().is_empty() {
                "*".into()
            } else {
                event.uid().to_string()
            },
            trigger: event.trigger,
            revision: event.revision.clone(),
            destination: destination_name(d),
        };
        {
            let states = lock(&self.states);
            let Some(state) = states.get(uid) else { return };
            let ledger = &state.ledger;
            if ledger.contains(&key)
                || ledger.forgotten(event.uid(), event.time, ledger.is_full(event.uid()))
            {
                return;
            }
            // checked and marked under the states lock: a record is written under it
            // too, so a delivery is never queued twice
            if !lock(&self.inflight).insert((uid.to_string(), key.clone())) {
                return;
            }
        }
        let runner = self.clone();
        let (n, uid, event) = (n.clone(), uid.to_string(), event.clone());
        self.ctx
            .tasks
            .spawn(async move { runner.deliver(n, uid, index, event, key).await });
    }

    /// Deliver one event to one destination: attempts with backoff, then the record.
    async fn deliver(
        self: Arc<Self>,
        n: Arc<Notification>,
        uid: String,
        index: usize,
        event: Event,
        key: Key,
    ) {
        let notification = format!("{}/{}", n.namespace().unwrap_or_default(), n.name_any());
        let mut delay = self.opts.first_backoff;
        let mut attempts = 0u32;
        let outcome = loop {
            attempts += 1;
            // a Notification deleted or changed meanwhile, or leadership lost: the
            // event is left to whoever sees it next
            let current = self
                .notifications
                .state()
                .into_iter()
                .find(|c| c.uid().as_deref() == Some(uid.as_str()));
            let dest = current.as_ref().and_then(|c| {
                c.spec
                    .destinations
                    .get(index)
                    .filter(|d| destination_name(d) == key.destination)
                    .cloned()
            });
            let (Some(current), Some(dest)) = (current, dest) else {
                lock(&self.inflight).remove(&(uid, key));
                return;
            };
            if !self.ctx.leader.is_leader() || current.spec.suspend {
                lock(&self.inflight).remove(&(uid, key));
                return;
            }
            let result = {
                let _slot = self.slots.acquire().await;
                self.attempt(&current, index, &dest, &event, &key).await
            };
            match result {
                Ok(status) => break Ok(status),
                Err(e) if attempts >= self.opts.attempts.max(1) => break Err(e),
                Err(e) => {
                    tracing::warn!(%notification, application = %event.application(), trigger = %event.trigger, destination = %key.destination, attempt = attempts, error = %crate::reconcile::error_chain(&e), "notification not delivered; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.opts.max_backoff);
                }
            }
        };
        self.record(&n, &uid, &event, key, attempts, outcome).await;
    }

    /// One attempt: the destination's secrets, its request, the answer.
    async fn attempt(
        &self,
        n: &Notification,
        index: usize,
        d: &DestinationSpec,
        event: &Event,
        key: &Key,
    ) -> Result<u16, DeliverError> {
        let target = self.target(n, index, d).await?;
        let sender = Sender {
            notification: format!("{}/{}", n.namespace().unwrap_or_default(), n.name_any()),
            delivery_id: key.delivery_id(&n.uid().unwrap_or_default()),
        };
        match deliver::request(&target, event, &sender)? {
            Some(req) => deliver::send(&self.http, &target.name, req).await,
            None => Ok(0),
        }
    }

    /// A destination with its Secrets read.
    async fn target(
        &self,
        n: &Notification,
        index: usize,
        d: &DestinationSpec,
    ) -> Result<Target, DeliverError> {
        let field = |f: &str| format!("spec.destinations[{index}].{f}");
        let ns = n.namespace().unwrap_or_default();
        let read = |r: Option<&SecretKeyRef>, f: &'static str| {
            let (field, ns) = (field(f), ns.clone());
            let r = r.cloned();
            async move {
                match r {
                    None => Ok(None),
                    Some(r) => secret_value(&self.ctx.client, &ns, &r, &field)
                        .await
                        .map(Some),
                }
            }
        };
        let text = |v: Vec<u8>, f: &'static str| {
            String::from_utf8(v)
                .map(|s| s.trim().to_string())
                .map_err(|_| DeliverError::Secret {
                    field: field(f),
                    problem: "the value is not UTF-8".into(),
                })
        };
        let url = match (
            d.type_,
            read(d.url_secret_ref.as_ref(), "urlSecretRef").await?,
        ) {
            (_, Some(v)) => text(v, "urlSecretRef")?,
            (DestinationType::Github, None) => d
                .url
                .clone()
                .unwrap_or_else(|| "https://api.github.com".into()),
            (DestinationType::Gitlab, None) => d
                .url
                .clone()
                .unwrap_or_else(|| "https://gitlab.com/api/v4".into()),
            (_, None) => d.url.clone().unwrap_or_default(),
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            let f = if d.type_.is_forge() {
                "url"
            } else {
                "urlSecretRef"
            };
            return Err(DeliverError::InvalidUrl { field: field(f) });
        }
        let token = match read(d.token_secret_ref.as_ref(), "tokenSecretRef").await? {
            Some(v) => Some(text(v, "tokenSecretRef")?),
            None => None,
        };
        let hmac = read(d.hmac_secret_ref.as_ref(), "hmacSecretRef")
            .await?
            .map(|v| v.trim_ascii().to_vec());
        Ok(Target {
            name: destination_name(d),
            type_: d.type_,
            url,
            token,
            hmac,
            repository: d.repository.clone(),
        })
    }

    /// Record a finished delivery, then write the status.
    async fn record(
        &self,
        n: &Notification,
        uid: &str,
        event: &Event,
        key: Key,
        attempts: u32,
        outcome: Result<u16, DeliverError>,
    ) {
        let notification = format!("{}/{}", n.namespace().unwrap_or_default(), n.name_any());
        let time = crate::now();
        let (result, message) = match &outcome {
            Ok(0) => ("Sent", String::new()),
            Ok(code) => ("Sent", format!("answered {code}")),
            Err(e) => ("Failed", crate::reconcile::error_chain(e)),
        };
        match &outcome {
            Ok(_) => {
                tracing::info!(%notification, application = %event.application(), trigger = %event.trigger, revision = %event.revision, destination = %key.destination, attempts, "notification sent")
            }
            Err(_) => {
                tracing::warn!(%notification, application = %event.application(), trigger = %event.trigger, revision = %event.revision, destination = %key.destination, attempts, error = %message, "notification not delivered; giving up")
            }
        }
        {
            let mut states = lock(&self.states);
            if let Some(state) = states.get_mut(uid) {
                state.ledger.insert(SentRecord {
                    application: event.application(),
                    uid: event.uid().to_string(),
                    trigger: event.trigger,
                    revision: event.revision.clone(),
                    destination: key.destination.clone(),
                    result: result.into(),
                    time: time.clone(),
                });
                state.last_delivery = Some(Delivery {
                    application: event.application(),
                    trigger: event.trigger.as_str().into(),
                    revision: event.revision.clone(),
                    destination: key.destination.clone(),
                    result: result.into(),
                    attempts,
                    time,
                    message: message.clone(),
                });
                let delivered = match &outcome {
                    Ok(_) => condition("Delivered", true, "Delivered", String::new()),
                    Err(_) => condition(
                        "Delivered",
                        false,
                        "DeliveryFailed",
                        format!(
                            "{} of {} to {} failed after {attempts} attempt(s): {message}",
                            event.trigger,
                            event.application(),
                            key.destination
                        ),
                    ),
                };
                // a success clears an earlier failure only for the same destination
                let keep_failure = outcome.is_ok()
                    && state.delivered.as_ref().is_some_and(|c| {
                        c.status == "False"
                            && !c.message.contains(&format!(" to {} ", key.destination))
                    });
                if !keep_failure {
                    state.delivered = Some(delivered);
                }
                state.dirty = true;
            }
            lock(&self.inflight).remove(&(uid.to_string(), key));
        }
        self.write_status(n, uid).await;
    }

    /// Write the status of every Notification whose state is ahead of it.
    async fn write_dirty(&self) {
        let dirty: Vec<String> = lock(&self.states)
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in dirty {
            if let Some(n) = self
                .notifications
                .state()
                .into_iter()
                .find(|n| n.uid().as_deref() == Some(uid.as_str()))
            {
                self.write_status(&n, &uid).await;
            }
        }
    }

    /// Write the Notification's status from its state (one write at a time per
    /// Notification, each with everything recorded so far).
    async fn write_status(&self, n: &Notification, uid: &str) {
        let write_lock = lock(&self.write_locks)
            .entry(uid.to_string())
            .or_default()
            .clone();
        let _turn = write_lock.lock().await;
        let status = {
            let mut states = lock(&self.states);
            let Some(state) = states.get_mut(uid) else {
                return;
            };
            if !state.dirty {
                return;
            }
            state.dirty = false;
            let old = n.status.clone().unwrap_or_default();
            let mut conditions: Vec<Condition> = [state.ready.clone(), state.delivered.clone()]
                .into_iter()
                .flatten()
                .collect();
            // the transition time holds while the status does
            for c in conditions.iter_mut() {
                c.observed_generation = n.meta().generation;
                c.last_transition_time = old
                    .conditions
                    .iter()
                    .find(|o| o.type_ == c.type_ && o.status == c.status)
                    .and_then(|o| o.last_transition_time.clone())
                    .or_else(|| Some(crate::now()));
            }
            NotificationStatus {
                observed_generation: n.meta().generation,
                conditions,
                last_delivery: state.last_delivery.clone(),
                sent: state.ledger.records().to_vec(),
            }
        };
        let api: Api<Notification> =
            Api::namespaced(self.ctx.client.clone(), &n.namespace().unwrap_or_default());
        let patch = json!({
            "apiVersion": Notification::api_version(&()),
            "kind": Notification::kind(&()),
            "status": status,
        });
        if let Err(e) = api
            .patch_status(
                &n.name_any(),
                &PatchParams::apply("capstan-controller").force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            tracing::warn!(notification = %format!("{}/{}", n.namespace().unwrap_or_default(), n.name_any()), error = %e, "writing status");
            if let Some(s) = lock(&self.states).get_mut(uid) {
                s.dirty = true;
            }
        }
    }
}

/// The bytes of a Secret's key; errors name the field, Secret and key.
async fn secret_value(
    client: &kube::Client,
    namespace: &str,
    r: &SecretKeyRef,
    field: &str,
) -> Result<Vec<u8>, DeliverError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let problem = |problem: String| DeliverError::Secret {
        field: field.to_string(),
        problem,
    };
    let secret = api
        .get_opt(&r.name)
        .await
        .map_err(|e| problem(format!("reading Secret {namespace}/{}: {e}", r.name)))?
        .ok_or_else(|| problem(format!("Secret {namespace}/{} not found", r.name)))?;
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(&r.key)) {
        return Ok(v.0.clone());
    }
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(&r.key)) {
        return Ok(v.as_bytes().to_vec());
    }
    Err(problem(format!(
        "Secret {namespace}/{} has no key {:?}",
        r.name, r.key
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> NotificationSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn spec_problems_name_their_fields() {
        let s = spec(
            "triggers: []\ndestinations:\n- type: slack\n  url: https://hooks.slack.com/x\n- type: gitea\n- type: slack\n  urlSecretRef: {name: s, key: url}\nselector:\n  names: ['[']\n",
        );
        let p = problems(&s).join("\n");
        for want in [
            "spec.triggers:",
            "spec.destinations[0].urlSecretRef:",
            "spec.destinations[0].url: a slack URL is a credential",
            "spec.destinations[1].tokenSecretRef:",
            "spec.destinations[1].url: gitea needs",
            "spec.destinations[2]: a second destination named \"slack\"",
            "spec.selector.names[0]:",
        ] {
            assert!(p.contains(want), "{want} in\n{p}");
        }
        // the URL given in the spec is not repeated
        assert!(!p.contains("hooks.slack.com"), "{p}");
        let ok = spec(
            "triggers: [on-deployed]\ndestinations:\n- type: webhook\n  urlSecretRef: {name: s, key: url}\n  hmacSecretRef: {name: s, key: hmac}\n- type: github\n  tokenSecretRef: {name: s, key: token}\n",
        );
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
    }

    #[test]
    fn the_selector_matches_names_by_glob_and_labels() {
        let mut n = Notification::new(
            "n",
            spec(
                "triggers: [on-deployed]\ndestinations: []\nselector:\n  names: ['web-*']\n  matchLabels: {team: a}\n",
            ),
        );
        n.metadata.namespace = Some("apps".into());
        let app = |name: &str, team: &str, ns: &str| {
            let mut a = Application::new(name, Default::default());
            a.metadata.namespace = Some(ns.into());
            a.metadata.labels = Some([("team".to_string(), team.to_string())].into());
            a
        };
        assert!(selects(&n, &app("web-1", "a", "apps")));
        assert!(!selects(&n, &app("web-1", "b", "apps")));
        assert!(!selects(&n, &app("api", "a", "apps")));
        assert!(
            !selects(&n, &app("web-1", "a", "other")),
            "own namespace only"
        );
        n.spec.selector = Default::default();
        assert!(selects(&n, &app("api", "b", "apps")));
    }
}
