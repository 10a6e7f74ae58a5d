//! The controllers a cluster needs for its API to behave: the garbage collector
//! (ownerReferences with background, foreground and orphan propagation), namespace
//! deletion, CRD cleanup, and the optional workload simulation.
//!
//! Each runs as a task fed by the store's event stream. When a task falls behind the
//! stream it re-scans everything (a resync), so no change is ever missed.

mod crd_cleanup;
mod gc;
mod namespace;
pub mod simulate;

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::cluster::Cluster;
use crate::store::Event;

/// The field manager the built-in controllers write as.
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// Run the lifecycle controllers (GC, namespaces, CRD cleanup) until the store closes.
pub async fn run_lifecycle(cluster: Arc<Cluster>) {
    let mut rx = cluster.store.subscribe();
    resync(&cluster);
    loop {
        match rx.recv().await {
            Ok(event) => handle(&cluster, &event),
            Err(RecvError::Lagged(_)) => resync(&cluster),
            Err(RecvError::Closed) => return,
        }
    }
}

fn handle(cluster: &Cluster, event: &Event) {
    gc::on_event(cluster, event);
    namespace::on_event(cluster, event);
    crd_cleanup::on_event(cluster, event);
}

/// Re-examine every object, as if each had just changed.
fn resync(cluster: &Cluster) {
    gc::resync(cluster);
    namespace::resync(cluster);
    crd_cleanup::resync(cluster);
}

/// Log a failed controller write; the next event or resync retries it.
fn log_err<T>(what: &str, res: crate::error::Result<T>) {
    if let Err(e) = res
        && !e.is_not_found()
        && !e.is_conflict()
    {
        tracing::warn!(error = %e, "{what} failed");
    }
}
