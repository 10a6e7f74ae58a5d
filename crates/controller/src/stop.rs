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
use kube::runtime::watcher;
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
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Whether syncing is stopped now.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Set the flag (used by the watch, and by tests).
    pub fn store(&self, stopped: bool) {
        self.0.store(stopped, Ordering::SeqCst);
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
        let mut events = watcher(api, cfg).boxed();
        let mut seen_in_list = false;
        while let Some(ev) = events.next().await {
            let state = match ev {
                Ok(watcher::Event::Init) => {
                    seen_in_list = false;
                    None
                }
                Ok(watcher::Event::InitApply(cm)) => {
                    seen_in_list = true;
                    Some(from_configmap(Some(&cm)).stopped)
                }
                // a relist that did not see the ConfigMap: the switch is off
                Ok(watcher::Event::InitDone) => (!seen_in_list).then_some(false),
                Ok(watcher::Event::Apply(cm)) => Some(from_configmap(Some(&cm)).stopped),
                Ok(watcher::Event::Delete(_)) => Some(false),
                Err(e) => {
                    tracing::warn!(error = %e, "watching the emergency stop");
                    None
                }
            };
            if let Some(stopped) = state
                && stopped != self.0.swap(stopped, Ordering::SeqCst)
            {
                on_change(stopped);
            }
        }
    }
}
