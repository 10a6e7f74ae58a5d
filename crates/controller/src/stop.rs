//! The emergency stop: one switch that halts every sync at once.
//!
//! It is a ConfigMap (`capstan-emergency-stop` in the controller's namespace) so it is
//! stored in the cluster: it survives controller restarts and every replica sees it.
//! While it is on, nothing is applied or pruned, drift is still reported, and a sync in
//! progress stops before its next wave (the engine checks the flag between waves).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// Name of the ConfigMap that holds the switch.
pub const STOP_CONFIGMAP: &str = "capstan-emergency-stop";

/// The switch as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StopState {
    /// Whether syncing is stopped.
    pub stopped: bool,
    /// Why (given with `capstan stop --reason`).
    pub reason: String,
    /// Who set it.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

fn from_configmap(cm: Option<&ConfigMap>) -> StopState {
    let data = cm.and_then(|c| c.data.as_ref());
    let get = |k: &str| data.and_then(|d| d.get(k)).cloned().unwrap_or_default();
    StopState {
        stopped: get("stopped") == "true",
        reason: get("reason"),
        by: get("by"),
        at: get("at"),
    }
}

/// Read the switch.
pub async fn read(client: &kube::Client, namespace: &str) -> Result<StopState, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(from_configmap(api.get_opt(STOP_CONFIGMAP).await?.as_ref()))
}

/// Turn the switch on or off.
pub async fn set(
    client: &kube::Client,
    namespace: &str,
    stopped: bool,
    reason: &str,
    by: &str,
) -> Result<StopState, kube::Error> {
    crate::ensure_namespace(client, namespace).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let state = StopState {
        stopped,
        reason: reason.to_string(),
        by: by.to_string(),
        at: crate::now(),
    };
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": STOP_CONFIGMAP, "namespace": namespace},
        "data": {"stopped": stopped.to_string(), "reason": state.reason, "by": state.by, "at": state.at},
    });
    api.patch(
        STOP_CONFIGMAP,
        &PatchParams::apply("capstan").force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(state)
}

/// The switch as the controller sees it, kept current by a watch.
///
/// Until the ConfigMap has been read once the switch counts as on: a controller that
/// starts (or restarts) while the stop is on must not sync in the moment before it
/// has looked. [`StopFlag::known`] waits for that first read.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<Inner>);

#[derive(Default)]
struct Inner {
    stopped: AtomicBool,
    known: AtomicBool,
    read: tokio::sync::Notify,
}

impl StopFlag {
    /// Whether syncing is stopped now (also while the switch has not been read yet).
    pub fn is_stopped(&self) -> bool {
        !self.0.known.load(Ordering::SeqCst) || self.0.stopped.load(Ordering::SeqCst)
    }

    /// Set the flag (used by the watch, and by tests); the switch is then known.
    pub fn store(&self, stopped: bool) {
        self.0.stopped.store(stopped, Ordering::SeqCst);
        self.mark_known();
    }

    fn mark_known(&self) {
        if !self.0.known.swap(true, Ordering::SeqCst) {
            self.0.read.notify_waiters();
        }
    }

    /// Whether the switch has been read at least once.
    pub fn is_known(&self) -> bool {
        self.0.known.load(Ordering::SeqCst)
    }

    /// Wait until the switch has been read at least once.
    pub async fn known(&self) {
        loop {
            let notified = self.0.read.notified();
            if self.0.known.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Follow the ConfigMap: read it now, then watch it. Returns when the watch ends.
    pub async fn follow(
        self,
        client: kube::Client,
        namespace: String,
        on_change: impl Fn(bool) + Send + 'static,
    ) {
        let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={STOP_CONFIGMAP}"));
        let mut events = watcher(api, cfg).default_backoff().boxed();
        // what the current (re)list found, applied at its end
        let mut listed: Option<bool> = None;
        while let Some(ev) = events.next().await {
            let state = match ev {
                Ok(watcher::Event::Init) => {
                    listed = None;
                    None
                }
                Ok(watcher::Event::InitApply(cm)) => {
                    listed = Some(from_configmap(Some(&cm)).stopped);
                    None
                }
                // a relist that did not see the ConfigMap: the switch is off
                Ok(watcher::Event::InitDone) => Some(listed.take().unwrap_or(false)),
                Ok(watcher::Event::Apply(cm)) => Some(from_configmap(Some(&cm)).stopped),
                Ok(watcher::Event::Delete(_)) => Some(false),
                Err(e) => {
                    tracing::warn!(error = %e, "watching the emergency stop");
                    None
                }
            };
            if let Some(stopped) = state {
                let first = !self.0.known.load(Ordering::SeqCst);
                let before = self.0.stopped.swap(stopped, Ordering::SeqCst);
                self.mark_known();
                // the first read reports only a stop that is on
                if (first && stopped) || (!first && stopped != before) {
                    on_change(stopped);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_switch_counts_as_on_until_it_has_been_read() {
        let flag = StopFlag::default();
        assert!(flag.is_stopped(), "unknown is stopped");
        let waiter = tokio::spawn({
            let flag = flag.clone();
            async move { flag.known().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        flag.store(false);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("known() returns once read")
            .unwrap();
        assert!(!flag.is_stopped());
        flag.store(true);
        assert!(flag.is_stopped());
        flag.known().await;
    }
}
