//! Logging in with a token, and the CSRF protection of every form.
//!
//! The UI takes the API's tokens (a static token of `capstan-api-tokens`, or any token
//! the cluster authenticates) and checks each request exactly as the API does; the
//! token is kept in the cookie [`COOKIE`] (`HttpOnly`, `SameSite=Strict`, `Secure`
//! behind HTTPS), so no script can read it. A request may also carry `Authorization:
//! Bearer` instead (for scripts and benchmarks).
//!
//! Every state-changing request is a POST form holding the session's CSRF token
//! ([`Session::csrf`], derived from the session token by SHA-256, so it is the same on
//! every replica and worthless without the cookie) and, when the browser says where it
//! comes from (`Origin`, `Referer`, `Sec-Fetch-Site`), coming from this origin.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{UiError, page};
use crate::AppState;
use crate::api::{ApiError, Role, User};

/// The session cookie.
pub const COOKIE: &str = "capstan_session";

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, with the role bound to them.
    pub user: User,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// Whether the user has `role`.
    pub fn can(&self, role: Role) -> bool {
        self.user.role.is_some_and(|r| r >= role)
    }

    /// 403 unless the user has `role` to do `what`.
    pub fn require(&self, role: Role, what: &str) -> Result<(), UiError> {
        if self.can(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(&self.user.name, role, what).into())
        }
    }

    /// The session of the request: its cookie's (or bearer) token, authenticated as the
    /// API does. No token, or one that stopped working: to the login page.
    pub async fn of(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Session, UiError> {
        let next = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let Some(token) = token_of(headers) else {
            return Err(UiError::Login { next });
        };
        match state.api.authenticate_token(state, &token).await {
            Ok(user) => Ok(Session {
                user,
                csrf: csrf_for(&token),
            }),
            Err(e) if e.code == 401 => Err(UiError::Login { next }),
            Err(e) => Err(e.into()),
        }
    }

    /// Check a form's CSRF token and where it comes from.
    pub fn check(&self, headers: &HeaderMap, csrf: &str) -> Result<(), UiError> {
        if !same_origin(headers) {
            return Err(ApiError::forbidden_message(
                "the form was sent from another site (Origin, Referer or Sec-Fetch-Site); nothing was done",
            )
            .into());
        }
        if !bool::from(self.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
            return Err(ApiError::forbidden_message(
                "the form's CSRF token is missing or is not this session's (reload the page and try again); nothing was done",
            )
            .into());
        }
        Ok(())
    }
}

/// The CSRF token of the session of `token`.
pub fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"capstan-ui-csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| {
            form_urlencoded::parse(format!("t={v}").as_bytes())
                .next()
                .map(|(_, t)| t.into_owned())
                .unwrap_or_default()
        })
        .filter(|t| !t.is_empty())
}

/// The request's token: the session cookie, or `Authorization: Bearer`.
pub fn token_of(headers: &HeaderMap) -> Option<String> {
    cookie_token(headers).or_else(|| {
        headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    })
}

/// Whether what the browser says of the request's origin is this server.
fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return false;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority_of = |url: &str| {
        url.split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or("").to_string())
    };
    for h in [header::ORIGIN, header::REFERER] {
        if let Some(v) = headers.get(&h).and_then(|v| v.to_str().ok()) {
            return authority_of(v).is_some_and(|a| a.eq_ignore_ascii_case(host));
        }
    }
    true
}

/// Only paths of this server are returned to after logging in.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

/// The query of the login page.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// `GET /login`.
pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    login_form(StatusCode::OK, safe_next(&q.next), None)
}

fn login_form(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = page::bare(
        "Log in",
        html! {
            section.login {
                h1 { "Log in to Capstan" }
                p { "Paste an API token: a static token of the Secret "
                    code { "capstan-api-tokens" }
                    ", or any token the cluster authenticates (a ServiceAccount token from "
                    code { "kubectl create token" } ", or the token of the kubeconfig "
                    code { "capstan up" } " writes)." }
                @if let Some(e) = error {
                    p.error role="alert" { (e) }
                }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    button type="submit" { "Log in" }
                }
            }
        },
    );
    super::html_response(status, body)
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: check the token as the API would and keep it in the cookie.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(&f.next).to_string();
    if !same_origin(&headers) {
        return login_form(
            StatusCode::FORBIDDEN,
            &next,
            Some("The login form was sent from another site."),
        );
    }
    let token = f.token.trim();
    if token.is_empty() {
        return login_form(StatusCode::BAD_REQUEST, &next, Some("The token is empty."));
    }
    match state.api.authenticate_token(&state, token).await {
        Ok(user) if user.role.is_none() => login_form(
            StatusCode::FORBIDDEN,
            &next,
            Some(&format!(
                "The token is {}'s, but no role is bound to that user or its groups in the ConfigMap {}/{} (key policy.yaml).",
                user.name, state.controller.namespace, state.opts.api.rbac_configmap
            )),
        ),
        Ok(_) => {
            let secure = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https"));
            let value: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
            let cookie = format!(
                "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{}",
                if secure { "; Secure" } else { "" }
            );
            let mut r = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) if e.code == 401 => login_form(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("The token is neither a Capstan API token nor one the cluster authenticates."),
        ),
        Err(e) => login_form(
            StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &next,
            Some(&e.message),
        ),
    }
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// `POST /logout`: forget the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<LogoutForm>,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    session.check(&headers, &f.csrf)?;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("capstan_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_comes_from_the_cookie_percent_decoded_or_the_bearer_header() {
        let h = headers(&[("cookie", "a=b; capstan_session=t%3Bx%2B1; c=d")]);
        assert_eq!(token_of(&h).as_deref(), Some("t;x+1"));
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(token_of(&h).as_deref(), Some("abc"));
        assert_eq!(token_of(&headers(&[("cookie", "capstan_session=")])), None);
    }

    #[test]
    fn forms_from_another_origin_are_refused() {
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(same_origin(&ok));
        let bad = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!same_origin(&bad));
        let bad = headers(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://evil.example/x"),
        ]);
        assert!(!same_origin(&bad));
        let bad = headers(&[("host", "a"), ("sec-fetch-site", "cross-site")]);
        assert!(!same_origin(&bad));
        assert!(same_origin(&headers(&[("host", "a")])));
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_next("/applications/a/b?x=1"), "/applications/a/b?x=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", ""] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_are_stable() {
        assert_eq!(csrf_for("a"), csrf_for("a"));
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(csrf_for("a").len(), 32);
    }
}
