//! The API semantics, independent of HTTP: every verb (get, list, create, update,
//! patch, apply, delete) over the [`Store`], with defaulting, validation, field
//! ownership, generation, finalizers and version conversion.
//!
//! The HTTP handlers and the built-in controllers (garbage collector, namespace and
//! CRD cleanup, workload simulation) both call this layer, so every write, whoever
//! makes it, goes through the same checks and records its field manager.

mod delete;
mod read;
mod write;

use std::net::Ipv4Addr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

pub use delete::{DeleteOptions, Preconditions, Propagation};
pub use read::{ListOptions, ListResult};
pub use write::{WriteOptions, WriteOutcome};

use crate::registry::{Registry, ResourceDef};
use crate::store::Store;

/// Registry + store: the whole state of the embedded cluster.
pub struct Cluster {
    /// Served resources.
    pub registry: Registry,
    /// Stored objects.
    pub store: Store,
    ips: Mutex<Allocator>,
}

#[derive(Default)]
struct Allocator {
    next_ip: u32,
    next_node_port: i64,
}

impl Cluster {
    /// A cluster over `store`; CRDs already in the store are served again.
    pub fn new(store: Store) -> Arc<Self> {
        let cluster = Arc::new(Cluster {
            registry: Registry::new(),
            store,
            ips: Mutex::new(Allocator::default()),
        });
        cluster.serve_stored_crds();
        cluster
    }

    fn serve_stored_crds(&self) {
        let crds = self
            .registry
            .get("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        if let Some(def) = crds {
            let (items, _) = self.store.list(&def.group_resource(), None);
            for crd in items {
                self.registry.serve_custom(crate::crd::resource_defs(&crd));
            }
        }
    }

    /// Allocate a ClusterIP in 10.96.0.0/12 that no Service uses yet.
    ///
    /// Reads through the write transaction: the store lock is already held.
    fn allocate_cluster_ip(&self, txn: &crate::store::Txn<'_>) -> String {
        let used: std::collections::HashSet<String> = {
            let svcs = txn.list(&crate::registry::GroupResource::new("", "services"), None);
            svcs.iter()
                .filter_map(|s| {
                    s.pointer("/spec/clusterIP")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        };
        let mut a = self.ips.lock();
        loop {
            a.next_ip = a.next_ip.wrapping_add(1) % (1 << 20);
            let n = a.next_ip.max(2);
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + n).to_string();
            if !used.contains(&ip) {
                return ip;
            }
        }
    }

    fn allocate_node_port(&self) -> i64 {
        let mut a = self.ips.lock();
        a.next_node_port = (a.next_node_port + 1) % 2768;
        30000 + a.next_node_port
    }

    /// Rewrite `apiVersion` for the version a client asked for (CRDs convert with strategy None).
    pub fn to_version(def: &ResourceDef, obj: &Value) -> Value {
        Cluster::versioned(def, obj).into_owned()
    }

    /// Like [`Cluster::to_version`], borrowing when no conversion is needed (the hot
    /// path of lists and watches).
    pub fn versioned<'a>(def: &ResourceDef, obj: &'a Value) -> std::borrow::Cow<'a, Value> {
        let wanted = def.api_version();
        if obj.get("apiVersion").and_then(Value::as_str) == Some(wanted.as_str()) {
            std::borrow::Cow::Borrowed(obj)
        } else {
            let mut out = obj.clone();
            out["apiVersion"] = Value::String(wanted);
            std::borrow::Cow::Owned(out)
        }
    }
}
