//! The JSON API, versioned under `/api/v1` (documented in `docs/api.md`).
//!
//! Every route needs a bearer token ([`auth`]) and a role: `viewer` reads, `operator`
//! acts on Applications, `admin` pulls the emergency stop. Reads come from the
//! controller's cache of Applications ([`list`], [`app`]); actions ([`actions`])
//! annotate or patch objects through `capstan_controller::actions`, the code the CLI
//! uses, naming the authenticated user so the audit log does too.

pub mod actions;
pub mod app;
pub mod auth;
pub mod error;
pub mod list;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

pub use auth::{Role, User};
pub use error::ApiError;

use crate::AppState;

/// Where the API finds its tokens and role bindings.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The Secret (in the controller's namespace) of static tokens: key = user name,
    /// value = token. Default `capstan-api-tokens`.
    pub tokens_secret: String,
    /// The ConfigMap (in the controller's namespace) binding users and groups to
    /// roles (key `policy.yaml`, see [`auth::Policy`]). Default `capstan-rbac`.
    pub rbac_configmap: String,
    /// How long the tokens Secret and the RBAC ConfigMap are reused before they are
    /// read again (default 2 s): a revoked token or binding stops working within it.
    pub config_ttl: Duration,
    /// How long a successful TokenReview is reused, keyed by the token's hash
    /// (default 30 s).
    pub review_ttl: Duration,
    /// Whether `/metrics` needs a `viewer` token (default: it does; `capstan controller
    /// --open-metrics` serves it to anyone who reaches the port).
    pub metrics_auth: bool,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            tokens_secret: "capstan-api-tokens".into(),
            rbac_configmap: "capstan-rbac".into(),
            config_ttl: Duration::from_secs(2),
            review_ttl: Duration::from_secs(30),
            metrics_auth: true,
        }
    }
}

/// The routes under `/api/v1`.
pub fn routes() -> Router<AppState> {
    let app = "/applications/{namespace}/{name}";
    Router::new()
        .route("/whoami", get(app::whoami))
        .route("/applications", get(list::list))
        .route(app, get(app::get))
        .route(&format!("{app}/resource"), get(app::resource))
        .route(&format!("{app}/history"), get(app::history))
        .route(&format!("{app}/audit"), get(app::app_audit))
        .route(&format!("{app}/events"), get(app::events))
        .route(&format!("{app}/refresh"), post(actions::refresh))
        .route(&format!("{app}/sync"), post(actions::sync))
        .route(&format!("{app}/rollback"), post(actions::rollback))
        .route(&format!("{app}/suspend"), post(actions::suspend))
        .route(&format!("{app}/resume"), post(actions::resume))
        .route("/audit", get(app::audit))
        .route(
            "/emergency-stop",
            get(actions::stop_state)
                .post(actions::stop)
                .delete(actions::lift_stop),
        )
        .fallback(error::no_route)
}
