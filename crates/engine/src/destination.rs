//! The cluster a desired set is delivered to: a kube client, what it serves (from
//! discovery, refreshed when new kinds appear), and the default namespace.

use std::sync::Arc;

use capstan_core::ObjectRef;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::discovery::{ApiCapabilities, Discovery, Scope};
use tokio::sync::RwLock;

use crate::render::Scopes;

/// What Helm's `.Capabilities` says of a cluster, from its discovery and `/version`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Every served `group/version` (`v1`, `apps/v1`) and `group/version/Kind`
    /// (`v1/Pod`, `apps/v1/Deployment`), sorted: `.Capabilities.APIVersions`, as Helm
    /// lists a live cluster's.
    pub api_versions: Vec<String>,
    /// The cluster's `gitVersion` (`v1.31.2`): `.Capabilities.KubeVersion`.
    pub kube_version: Option<String>,
}

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
    /// `/version` could not be read.
    #[error("reading the version of the cluster")]
    Version(#[source] Box<kube::Error>),
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

    /// What Helm's `.Capabilities` should say when rendering for this cluster: its API
    /// versions from the cached discovery and its version from `/version`.
    pub async fn capabilities(&self) -> Result<Capabilities, DestinationError> {
        let discovery = self.discovery().await?;
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| DestinationError::Version(Box::new(e)))?;
        Ok(Capabilities {
            api_versions: api_versions(&discovery),
            kube_version: Some(info.git_version).filter(|v| !v.is_empty()),
        })
    }

    /// Kind scopes as the cluster serves them (for rendering), from the cached discovery.
    pub async fn scopes(&self) -> Result<Scopes, DestinationError> {
        Ok(Scopes::from_discovery(&*self.discovery().await?))
    }
}

/// `group/version` and `group/version/Kind` of everything `discovery` found, sorted.
fn api_versions(discovery: &Discovery) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for group in discovery.groups() {
        for version in group.versions() {
            let gv = match group.name() {
                "" => version.to_string(),
                name => format!("{name}/{version}"),
            };
            for (resource, _) in group.versioned_resources(version) {
                out.insert(format!("{gv}/{}", resource.kind));
            }
            out.insert(gv);
        }
    }
    out.into_iter().collect()
}
