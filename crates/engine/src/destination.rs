//! The cluster a desired set is delivered to: a kube client, what it serves (from
//! discovery, refreshed when new kinds appear), and the default namespace.

use std::sync::Arc;

use capstan_core::ObjectRef;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::discovery::{ApiCapabilities, Discovery, Scope};
use tokio::sync::RwLock;

use crate::render::Scopes;

/// A destination cluster.
#[derive(Clone)]
pub struct Destination {
    client: kube::Client,
    discovery: Arc<RwLock<Option<Arc<Discovery>>>>,
    /// Namespace for namespaced objects that name none.
    pub namespace: String,
}

/// A failure to talk to the destination.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// Discovery failed.
    #[error("discovering the API of the cluster")]
    Discovery(#[source] Box<kube::Error>),
    /// The cluster serves no such kind.
    #[error("the cluster serves no {kind} in {api_version} (is its CRD installed?)")]
    UnknownKind {
        /// apiVersion asked for.
        api_version: String,
        /// Kind asked for.
        kind: String,
    },
}

impl Destination {
    /// A destination reached through `client`, defaulting namespaces to `namespace`.
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        let namespace = namespace.into();
        Destination {
            client,
            discovery: Arc::new(RwLock::new(None)),
            namespace: if namespace.is_empty() {
                "default".into()
            } else {
                namespace
            },
        }
    }

    /// The same cluster (and discovery) with another default namespace.
    pub fn with_namespace(&self, namespace: impl Into<String>) -> Self {
        let namespace = namespace.into();
        Destination {
            client: self.client.clone(),
            discovery: self.discovery.clone(),
            namespace: if namespace.is_empty() {
                "default".into()
            } else {
                namespace
            },
        }
    }
    /// The kube client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    async fn discovery(&self) -> Result<Arc<Discovery>, DestinationError> {
        if let Some(d) = self.discovery.read().await.clone() {
            return Ok(d);
        }
        self.refresh().await
    }

    /// Run discovery again (after CRDs were created).
    pub async fn refresh(&self) -> Result<Arc<Discovery>, DestinationError> {
        let d = Arc::new(
            Discovery::new(self.client.clone())
                .run()
                .await
                .map_err(|e| DestinationError::Discovery(Box::new(e)))?,
        );
        *self.discovery.write().await = Some(d.clone());
        Ok(d)
    }

    /// The resource serving `kind` in `api_version`, refreshing discovery once on a miss.
    pub async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), DestinationError> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        if let Some(found) = self.discovery().await?.resolve_gvk(&gvk) {
            return Ok(found);
        }
        self.refresh()
            .await?
            .resolve_gvk(&gvk)
            .ok_or_else(|| DestinationError::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })
    }

    /// Whether `api_version`/`kind` is served, without refreshing.
    pub async fn serves(&self, api_version: &str, kind: &str) -> bool {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        self.discovery()
            .await
            .map(|d| d.resolve_gvk(&gvk).is_some())
            .unwrap_or(false)
    }

    /// An API handle for objects of `ar` in `namespace` (ignored for cluster-scoped kinds).
    pub fn api(
        &self,
        ar: &ApiResource,
        caps: &ApiCapabilities,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        match (caps.scope == Scope::Namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            (true, None) => Api::default_namespaced_with(self.client.clone(), ar),
            (false, _) => Api::all_with(self.client.clone(), ar),
        }
    }

    /// An API handle for one object.
    pub async fn api_for(
        &self,
        api_version: &str,
        id: &ObjectRef,
    ) -> Result<Api<DynamicObject>, DestinationError> {
        let (ar, caps) = self.resource(api_version, &id.kind).await?;
        Ok(self.api(&ar, &caps, id.namespace.as_deref()))
    }

    /// Kind scopes as the cluster serves them (for rendering), from the cached discovery.
    pub async fn scopes(&self) -> Result<Scopes, DestinationError> {
        Ok(Scopes::from_discovery(&*self.discovery().await?))
    }
}
