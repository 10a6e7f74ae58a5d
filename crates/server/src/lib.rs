//! Capstan's HTTP face, served from the controller process by one axum router:
//!
//! - `/healthz` (the process answers) and `/readyz` (the Applications are listed and
//!   the emergency stop read; the body says whether this replica leads);
//! - `/metrics`: the controller's Prometheus metrics, for `viewer` tokens (open to
//!   all when [`api::ApiOptions::metrics_auth`] is off);
//! - `/webhooks/{provider}`: signed push webhooks from Git forges and registries,
//!   which refresh the Applications (or scan the ImageRepositories) they name;
//! - `/api/v1/...`: the authenticated JSON API (see `docs/api.md`);
//! - `/`: the web UI on the same API code and tokens (see [`ui`], `docs/ui.md`).
//!
//! Nothing here reconciles: a webhook or an API action annotates the Application, and
//! whichever replica leads acts on it, exactly as for the CLI.

pub mod api;
pub mod probes;
pub mod ui;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use capstan_controller::Handle;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen (`capstan controller --listen`, default `0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// Largest webhook body read, in bytes (default 1 MiB); a longer one is refused
    /// with 413 before it is read whole.
    pub webhook_body_limit: usize,
    /// The Secret (in the controller's namespace) holding the webhooks' shared secrets,
    /// one key per provider (see [`webhooks`]).
    pub webhook_secret: String,
    /// The API's tokens, role bindings and caches (see [`api`]).
    pub api: api::ApiOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            webhook_body_limit: 1024 * 1024,
            webhook_secret: webhooks::DEFAULT_SECRET.into(),
            api: api::ApiOptions::default(),
        }
    }
}

/// What every route can reach.
#[derive(Clone)]
pub struct AppState {
    /// The running controller.
    pub controller: Handle,
    /// The options.
    pub opts: Arc<ServerOptions>,
    /// The webhook receiver's state (secrets, deliveries seen).
    pub webhooks: Arc<webhooks::Receiver>,
    /// The API's authentication caches.
    pub api: Arc<api::auth::Authenticator>,
    /// The emergency stop as the UI's banner last read it.
    pub ui_stop: Arc<ui::page::StopCache>,
}

impl AppState {
    /// The state of a server for `controller`.
    pub fn new(controller: Handle, opts: ServerOptions) -> Self {
        let webhooks = Arc::new(webhooks::Receiver::new(
            controller.client.clone(),
            controller.namespace.clone(),
            opts.webhook_secret.clone(),
        ));
        AppState {
            controller,
            opts: Arc::new(opts),
            webhooks,
            api: Arc::default(),
            ui_stop: Arc::default(),
        }
    }
}

/// The one router of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(metrics))
        .merge(webhooks::routes(&state))
        .nest("/api/v1", api::routes())
        .merge(ui::routes())
        .with_state(state)
}

async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if state.opts.api.metrics_auth
        && let Err(e) =
            api::auth::require(&state, &headers, api::Role::Viewer, "read the metrics").await
    {
        return e.into_response();
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.controller.metrics.encode(),
    )
        .into_response()
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken or not ours.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound server, not yet serving: its address is known (a port of 0 picks one).
pub struct Bound {
    listener: tokio::net::TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Bind `addr`.
pub async fn bind(addr: SocketAddr) -> Result<Bound, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(Bound { listener, addr })
}

impl Bound {
    /// Serve until `shutdown` completes, then finish the requests in flight.
    pub async fn serve(
        self,
        state: AppState,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
    }
}
