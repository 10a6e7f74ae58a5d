//! An embedded Kubernetes-compatible API server.
//!
//! Capstan needs a Kubernetes API to deliver to, and the machines it is built and
//! tried on often have no cluster. This crate is a small API server in the spirit of
//! kwok and kine: the REST protocol the real `kubectl` and kube-rs speak (discovery,
//! OpenAPI v3, CRUD, watch, strategic/merge/JSON patch and server-side apply with
//! managed fields), CRDs with schema validation, namespaces, finalizers and
//! ownerReference garbage collection, persisted in SQLite, with simulated workload
//! status. Nothing runs: there is no kubelet.
//!
//! ```no_run
//! # async fn demo() -> Result<(), capstan_apiserver::StartError> {
//! use capstan_apiserver::{ApiServer, ServerOptions};
//! let server = ApiServer::start(ServerOptions::default()).await?;
//! println!("{}", server.url());
//! std::fs::write("kubeconfig", server.kubeconfig()).unwrap();
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Layers, bottom up: [`registry`] (what is served), [`store`] (objects, SQLite,
//! events), [`schema`]/[`fieldset`]/[`managed`]/[`patch`] (merging and field
//! ownership), [`validation`]/[`defaults`]/[`crd`] (what a valid object is),
//! [`cluster`] (the verbs), [`controllers`] (GC, namespaces, CRD cleanup, simulation),
//! [`http`] (the REST protocol).

pub mod cluster;
pub mod controllers;
pub mod crd;
pub mod defaults;
pub mod error;
pub mod faults;
pub mod fieldset;
pub mod http;
pub mod managed;
pub mod meta;
pub mod patch;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod store;
pub mod tls;
pub mod validation;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;

pub use cluster::Cluster;
pub use controllers::simulate::{DURATION_ANNOTATION, FAIL_ANNOTATION, SimulationOptions};
pub use error::ApiError;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory for the SQLite database and TLS material; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Where to write a kubeconfig for the server, if anywhere.
    pub kubeconfig: Option<PathBuf>,
    /// Workload simulation; `None` turns it off.
    pub simulation: Option<SimulationOptions>,
    /// How many past events are kept for watches to resume from.
    pub history_limit: usize,
    /// Interval between watch bookmarks (when a client allows them).
    pub bookmark_interval: Duration,
    /// Record every resource request here (off by default).
    pub request_log: Option<Arc<http::requests::RequestLog>>,
    /// Inject faults into resource requests (off by default; see [`faults`]).
    pub faults: Option<faults::FaultPlan>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            kubeconfig: None,
            simulation: Some(SimulationOptions::default()),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(10),
            request_log: None,
            faults: None,
        }
    }
}

/// Failure to start the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("opening the object store")]
    Store(#[from] store::StoreError),
    /// TLS material could not be created or loaded.
    #[error("setting up TLS")]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating the default namespaces failed.
    #[error("creating the default namespaces")]
    Bootstrap(#[source] ApiError),
}

/// A running server.
pub struct ApiServer {
    addr: SocketAddr,
    url: String,
    kubeconfig: String,
    cluster: Arc<Cluster>,
    handle: axum_server::Handle<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    faults: Option<Arc<faults::Faults>>,
}

/// Namespaces every cluster has.
const DEFAULT_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

impl ApiServer {
    /// Open the store, bind, write the kubeconfig and start serving.
    pub async fn start(opts: ServerOptions) -> Result<ApiServer, StartError> {
        // One process-wide rustls provider (ring), shared with kube's client.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let store = match &opts.data_dir {
            Some(dir) => store::Store::open(dir, opts.history_limit)?,
            None => store::Store::in_memory(opts.history_limit),
        };
        let cluster = Cluster::new(store);
        bootstrap(&cluster).map_err(StartError::Bootstrap)?;

        let listener =
            std::net::TcpListener::bind(opts.listen).map_err(|source| StartError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: opts.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| StartError::Bind { addr, source })?;
        let identity = tls::identity(opts.data_dir.as_deref(), addr)?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        let server_address = format!("{host}:{}", addr.port());
        let url = format!("https://{server_address}");
        let kubeconfig = tls::kubeconfig(&url, &identity.ca_pem, &identity.token);
        if let Some(path) = &opts.kubeconfig {
            tls::write_kubeconfig(path, &kubeconfig)?;
        }

        let faults = opts
            .faults
            .clone()
            .map(|plan| Arc::new(faults::Faults::new(plan)));
        let state = Arc::new(http::AppState {
            cluster: cluster.clone(),
            authn: http::authn::Authenticator::new(&identity.token),
            server_address,
            bookmark_interval: opts.bookmark_interval,
            request_log: opts.request_log.clone(),
            faults: faults.clone(),
        });
        let app = http::router(state);
        let handle = axum_server::Handle::new();
        let config =
            axum_server::tls_rustls::RustlsConfig::from_config(identity.server_config.clone());
        let server = axum_server::from_tcp_rustls(listener, config)
            .map_err(|source| StartError::Bind { addr, source })?
            .handle(handle.clone());
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "API server stopped");
            }
        })];
        tasks.push(tokio::spawn(controllers::run_lifecycle(cluster.clone())));
        if let Some(sim) = opts.simulation.clone() {
            tasks.push(tokio::spawn(controllers::simulate::run(
                cluster.clone(),
                sim,
            )));
        }
        Ok(ApiServer {
            addr,
            url,
            kubeconfig,
            cluster,
            handle,
            tasks,
            faults,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig (YAML) with the server's CA and token.
    pub fn kubeconfig(&self) -> &str {
        &self.kubeconfig
    }

    /// The cluster behind the server (for in-process use).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The faults injected so far, when [`ServerOptions::faults`] is set.
    pub fn fault_stats(&self) -> Option<faults::FaultStats> {
        self.faults.as_ref().map(|f| f.stats())
    }

    /// Stop serving and stop the controllers.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

fn bootstrap(cluster: &Cluster) -> Result<(), ApiError> {
    let def = cluster
        .registry
        .get("", "v1", "namespaces")
        .expect("namespaces are built in");
    for ns in DEFAULT_NAMESPACES {
        if cluster.store.get(&def.group_resource(), "", ns).is_some() {
            continue;
        }
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match cluster.create(
            &def,
            "",
            obj,
            &cluster::WriteOptions::internal("kube-apiserver"),
        ) {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
