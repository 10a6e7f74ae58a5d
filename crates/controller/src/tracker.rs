//! Drift detection from watches: one watch per kind the Applications manage, on
//! objects carrying the Application label, mapping each change back to its
//! Application(s).
//!
//! Changes Capstan wrote itself (its field manager's apply is the newest entry of the
//! object's managedFields) are ignored; anything else — an edit with kubectl, a
//! deletion, a status update that may change health — schedules the Application.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use capstan_core::APPLICATION_LABEL;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};

/// A change to a managed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The Application label's value.
    pub application: String,
    /// Whether the object was deleted.
    pub deleted: bool,
}

/// The kinds being watched.
#[derive(Clone, Default)]
pub struct Tracker {
    watched: Arc<Mutex<HashSet<(String, String)>>>,
}

/// Whether the newest managedFields entry of an object is `manager`'s apply of the
/// main resource (a write Capstan made itself).
pub fn written_by(obj: &DynamicObject, manager: &str) -> bool {
    obj.metadata
        .managed_fields
        .as_ref()
        .and_then(|fields| fields.iter().max_by_key(|f| f.time.as_ref().map(|t| t.0)))
        .is_some_and(|f| {
            f.manager.as_deref() == Some(manager)
                && f.operation.as_deref() == Some("Apply")
                && f.subresource.as_deref().unwrap_or("").is_empty()
        })
}

impl Tracker {
    /// Watch `kind` (once) and send every relevant change to `tx`.
    pub fn ensure(
        &self,
        tasks: &crate::Tasks,
        client: &kube::Client,
        ar: ApiResource,
        manager: String,
        tx: tokio::sync::mpsc::UnboundedSender<Touched>,
    ) {
        let key = (ar.api_version.clone(), ar.kind.clone());
        if !self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
        {
            return;
        }
        tracing::debug!(kind = %ar.kind, api_version = %ar.api_version, "watching for drift");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        tasks.spawn(async move {
            let cfg = watcher::Config::default().labels(APPLICATION_LABEL);
            // backed off: a watch that fails (the API server is gone) must not spin
            let mut events = watcher(api, cfg).default_backoff().boxed();
            while let Some(ev) = events.next().await {
                let (obj, deleted) = match ev {
                    // Objects listed when the watch (re)starts count too: a change made
                    // while the watch was down is found at once, not at the next interval.
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                    Ok(watcher::Event::Delete(o)) => (o, true),
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(kind = %ar.kind, error = %e, "drift watch");
                        continue;
                    }
                };
                if !deleted && written_by(&obj, &manager) {
                    continue;
                }
                let Some(app) = obj
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(APPLICATION_LABEL))
                    .cloned()
                else {
                    continue;
                };
                tracing::debug!(kind = %ar.kind, name = %obj.metadata.name.as_deref().unwrap_or(""), application = %app, deleted, "drift");
                if tx
                    .send(Touched {
                        application: app,
                        deleted,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    /// How many kinds are watched.
    pub fn len(&self) -> usize {
        self.watched.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no kind is watched yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
