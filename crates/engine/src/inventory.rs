//! The inventory: the objects an Application last applied, kept in the cluster so
//! any process (another CI job, the controller after a restart) prunes correctly.
//!
//! It is a ConfigMap `capstan-inventory-<application>` in the `capstan-system`
//! namespace (configurable) holding one line per object:
//! `apiVersion kind namespace name` (namespace `-` when cluster-scoped). Pruning
//! deletes only what is listed here — never what merely carries a label.

use std::collections::BTreeMap;

use capstan_core::ObjectRef;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// One object the Application applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InventoryEntry {
    /// Its identity.
    pub id: ObjectRef,
    /// The apiVersion it was applied with (to address it later).
    pub api_version: String,
}

/// The set of objects an Application applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    entries: BTreeMap<ObjectRef, String>,
}

/// A failure to read or write an inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The Kubernetes API failed.
    #[error("{action} the inventory of application {app} ({namespace}/{name})")]
    Api {
        /// Reading or writing.
        action: &'static str,
        /// The Application.
        app: String,
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// The stored inventory is corrupt.
    #[error("inventory of application {app}, line {line}: {message}")]
    Corrupt {
        /// The Application.
        app: String,
        /// Line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Inventory {
    /// Add (or update) an entry.
    pub fn insert(&mut self, id: ObjectRef, api_version: impl Into<String>) {
        self.entries.insert(id, api_version.into());
    }

    /// Remove an entry.
    pub fn remove(&mut self, id: &ObjectRef) {
        self.entries.remove(id);
    }

    /// Whether an object is listed.
    pub fn contains(&self, id: &ObjectRef) -> bool {
        self.entries.contains_key(id)
    }

    /// All entries, ordered.
    pub fn entries(&self) -> impl Iterator<Item = InventoryEntry> + '_ {
        self.entries.iter().map(|(id, v)| InventoryEntry {
            id: id.clone(),
            api_version: v.clone(),
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Everything in `self` or `other`.
    pub fn union(&self, other: &Inventory) -> Inventory {
        let mut entries = self.entries.clone();
        entries.extend(other.entries.clone());
        Inventory { entries }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        for (id, v) in &self.entries {
            out.push_str(&format!(
                "{v} {} {} {}\n",
                id.kind,
                id.namespace.as_deref().unwrap_or("-"),
                id.name
            ));
        }
        out
    }

    fn decode(app: &str, text: &str) -> Result<Inventory, InventoryError> {
        let mut inv = Inventory::default();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [api_version, kind, ns, name] = parts.as_slice() else {
                return Err(InventoryError::Corrupt {
                    app: app.to_string(),
                    line: i + 1,
                    message: format!("expected `apiVersion kind namespace name`, got {line:?}"),
                });
            };
            let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
            let ns = (*ns != "-").then_some(*ns);
            inv.insert(ObjectRef::new(group, kind, ns, name), *api_version);
        }
        Ok(inv)
    }
}

/// Where inventories are kept.
#[derive(Clone)]
pub struct InventoryStore {
    client: kube::Client,
    namespace: String,
}

/// The default namespace for inventories.
pub const INVENTORY_NAMESPACE: &str = "capstan-system";

impl InventoryStore {
    /// Inventories in `namespace` (use [`INVENTORY_NAMESPACE`] unless told otherwise).
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        InventoryStore {
            client,
            namespace: namespace.into(),
        }
    }

    fn name(app: &str) -> String {
        format!("capstan-inventory-{app}")
    }

    fn err(
        &self,
        action: &'static str,
        app: &str,
    ) -> impl FnOnce(kube::Error) -> InventoryError + '_ {
        let app = app.to_string();
        move |source| InventoryError::Api {
            action,
            name: Self::name(&app),
            app,
            namespace: self.namespace.clone(),
            source: Box::new(source),
        }
    }

    /// The inventory of `app` (empty when it has none yet).
    pub async fn load(&self, app: &str) -> Result<Inventory, InventoryError> {
        Ok(self
            .load_stored(app)
            .await?
            .map(|(inventory, _)| inventory)
            .unwrap_or_default())
    }

    /// The inventory of `app` and the revision it was saved with, if one is stored.
    pub async fn load_stored(
        &self,
        app: &str,
    ) -> Result<Option<(Inventory, String)>, InventoryError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let Some(cm) = api
            .get_opt(&Self::name(app))
            .await
            .map_err(self.err("reading", app))?
        else {
            return Ok(None);
        };
        let data = cm.data.unwrap_or_default();
        let text = data.get("objects").map(String::as_str).unwrap_or_default();
        let revision = data.get("revision").cloned().unwrap_or_default();
        Ok(Some((Inventory::decode(app, text)?, revision)))
    }

    /// Delete the inventory of `app` (gone already is fine).
    pub async fn delete(&self, app: &str) -> Result<(), InventoryError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        match api
            .delete(&Self::name(app), &kube::api::DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(self.err("deleting", app)(e)),
        }
    }

    /// Replace the inventory of `app`, recording the revision it was applied from.
    pub async fn save(
        &self,
        app: &str,
        inventory: &Inventory,
        revision: &str,
    ) -> Result<(), InventoryError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": Self::name(app),
                "namespace": self.namespace,
                "labels": {"capstan.dev/inventory-of": app},
            },
            "data": {"objects": inventory.encode(), "revision": revision},
        });
        let params = PatchParams::apply(capstan_core::FIELD_MANAGER).force();
        match api
            .patch(&Self::name(app), &params, &Patch::Apply(&cm))
            .await
        {
            Ok(_) => return Ok(()),
            // the first inventory in a cluster: its namespace is made on the way
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(self.err("writing", app)(e)),
        }
        let ns_api: Api<Namespace> = Api::all(self.client.clone());
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}});
        ns_api
            .patch(
                &self.namespace,
                &PatchParams::apply(capstan_core::FIELD_MANAGER),
                &Patch::Apply(&ns),
            )
            .await
            .map_err(self.err("creating the namespace of", app))?;
        api.patch(&Self::name(app), &params, &Patch::Apply(&cm))
            .await
            .map_err(self.err("writing", app))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_corruption_is_named() {
        let mut inv = Inventory::default();
        inv.insert(
            ObjectRef::new("apps", "Deployment", Some("prod"), "web"),
            "apps/v1",
        );
        inv.insert(ObjectRef::new("", "Namespace", None, "prod"), "v1");
        let text = inv.encode();
        assert_eq!(text, "v1 Namespace - prod\napps/v1 Deployment prod web\n");
        assert_eq!(Inventory::decode("a", &text).unwrap(), inv);
        let err = Inventory::decode("a", "v1 ConfigMap\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "inventory of application a, line 1: expected `apiVersion kind namespace name`, got \"v1 ConfigMap\""
        );
    }
}
