//! The web UI, served at `/` by the same router, on the same API code and the same
//! authentication (see `docs/ui.md`).
//!
//! Pages are HTML rendered on the server ([`maud`] escapes everything interpolated, so
//! names, annotations, commit and condition messages from a repository or the cluster
//! are text, never markup); one small script (`/ui/app.js`, no build step) keeps the
//! page's live part current by polling it with `If-None-Match` once a second, and the
//! server answers `304` when nothing changed. Every filter, sort and page is done on
//! the server over the controller's cache, so a page costs the same at 10,000
//! Applications as at 100.
//!
//! - [`session`]: log in with an API token (kept in an `HttpOnly`, `SameSite=Strict`
//!   cookie), CSRF tokens for every form that changes something;
//! - [`page`]: the frame of every page (navigation, the emergency-stop banner, the
//!   live region), badges;
//! - [`list`]: the Application list; [`app`]: one Application and one resource;
//!   [`fleet`]: the audit log and image automation; [`actions`]: the forms that act.
//!
//! Every response carries a Content-Security-Policy that allows scripts, styles and
//! connections only from this origin and no inline script at all.

pub mod actions;
pub mod app;
pub mod fleet;
pub mod list;
pub mod page;
pub mod session;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::ApiError;
pub use session::Session;

/// The header the live script sends; the answer is then only the live region.
pub const LIVE_HEADER: &str = "x-capstan-live";

/// The policy every UI answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How often the live region is polled.
pub const POLL: Duration = Duration::from_secs(1);

/// The UI's routes (merged at the root of the server's router).
pub fn routes() -> Router<AppState> {
    let app = "/applications/{namespace}/{name}";
    Router::new()
        .route("/", get(list::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/ui/app.css", get(css))
        .route("/ui/app.js", get(js))
        .route(app, get(app::page))
        .route(&format!("{app}/resource"), get(app::resource_page))
        .route(&format!("{app}/{{action}}"), post(actions::application))
        .route("/audit", get(fleet::audit))
        .route("/images", get(fleet::images))
        .route("/emergency-stop", post(actions::emergency_stop))
        .layer(axum::middleware::map_response(secure))
}

/// The headers of every UI answer.
async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// An HTML answer.
pub fn html_response(status: StatusCode, body: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into_string(),
    )
        .into_response()
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum UiError {
    /// Not logged in (or the token stopped working): to the login page, then back.
    Login {
        /// Where to return to.
        next: String,
    },
    /// An error page with the API's status and message.
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Api(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login { next } => {
                let q = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &next)
                    .finish();
                Redirect::to(&format!("/login?{q}")).into_response()
            }
            UiError::Api(e) => {
                let status =
                    StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = page::bare(
                    &format!("{} {}", e.code, e.reason),
                    html! {
                        section.error-page {
                            h1 { (e.code) " " (e.reason) }
                            p.message { (e.message) }
                            @if let Some(role) = e.required_role {
                                p { "This needs the role " code { (role) } "." }
                            }
                            p { a href="/" { "Back to the Applications" } }
                        }
                    },
                );
                html_response(status, body)
            }
        }
    }
}

/// A page: what stays put and what the live script replaces.
pub struct View {
    /// The document's title.
    pub title: String,
    /// Which navigation entry is current.
    pub nav: page::Nav,
    /// Above the live region, never replaced (filter forms, action forms).
    pub fixed: Markup,
    /// The live region, replaced when it changes.
    pub live: Markup,
    /// Whether the live region is polled.
    pub poll: bool,
    /// The live region's version, when the handler knows it cheaply; otherwise the
    /// hash of its HTML.
    pub etag: Option<String>,
}

/// Whether the request is the live script's.
pub fn is_live(headers: &HeaderMap) -> bool {
    headers.contains_key(LIVE_HEADER)
}

/// `W/"…"` of `parts`.
pub fn etag_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("W/\"{}\"", hex::encode(&h.finalize()[..12]))
}

/// `304` when the live script already has `etag`.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> Option<Response> {
    let theirs = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    if !is_live(headers) || theirs != etag {
        return None;
    }
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    r.headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(etag).ok()?);
    Some(r)
}

/// Answer `view`: the whole document, or only its live region for the live script
/// (`304` when unchanged).
pub fn respond(headers: &HeaderMap, session: &Session, banner: Markup, view: View) -> Response {
    let live = html! { (banner) (view.live) }.into_string();
    let etag = view
        .etag
        .clone()
        .unwrap_or_else(|| etag_of(&[&live, &session.user.name]));
    if is_live(headers) {
        if let Some(r) = not_modified(headers, &etag) {
            return r;
        }
        let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], live).into_response();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    html_response(
        StatusCode::OK,
        page::document(session, &view, maud::PreEscaped(live), &etag),
    )
}
