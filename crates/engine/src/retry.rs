//! Transient API failures, retried where they happen.
//!
//! A busy or restarting API server answers some requests with `500`, `502`, `503`,
//! `504` or `429`, or drops the connection. kube-rs retries `429`/`503`/`504` (with
//! `Retry-After`) itself; [`RetryTransientLayer`] goes further for requests that can be
//! sent twice without harm — reads, `PUT`, `PATCH` and `DELETE` (a second `PUT` with a
//! stale resourceVersion gets a `409`, a second `DELETE` a `404`, both of which callers
//! already handle) — so one failed request does not fail a whole sync of a thousand
//! objects and wait for the next reconcile. `POST` (create) is never repeated: a create
//! whose answer was lost may have happened, and a `generateName` object would be
//! created twice.
//!
//! A server-side apply (`PATCH` with `application/apply-patch+yaml`) answered `409` is
//! retried too: Capstan applies with `force`, so a `409` there is a server in trouble,
//! not a field conflict.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use tower_layer::Layer;
use tower_service::Service;

/// How many times a request is sent again after a transient failure.
pub const RETRIES: u32 = 4;

/// The first wait between attempts; it doubles after each (100, 200, 400, 800 ms),
/// each with up to half of it added at random.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Wraps a kube client's service so transient failures of idempotent requests are
/// retried: `kube::client::ClientBuilder::try_from(config)?.with_layer(&RetryTransientLayer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryTransientLayer;

impl<S> Layer<S> for RetryTransientLayer {
    type Service = RetryTransient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryTransient {
            inner: Arc::new(Mutex::new(inner)),
        }
    }
}

/// The service [`RetryTransientLayer`] makes. The inner service is shared (kube-rs's
/// is not `Clone`); it is locked only to poll it ready and start a call, never while
/// an answer is awaited.
#[derive(Debug)]
pub struct RetryTransient<S> {
    inner: Arc<Mutex<S>>,
}

impl<S> Clone for RetryTransient<S> {
    fn clone(&self) -> Self {
        RetryTransient {
            inner: self.inner.clone(),
        }
    }
}

fn lock<S>(inner: &Mutex<S>) -> MutexGuard<'_, S> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn repeatable(req: &Request<Body>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn is_apply(req: &Request<Body>) -> bool {
    req.method() == Method::PATCH
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"))
}

fn transient_status(status: StatusCode, apply: bool) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504) || (apply && status.as_u16() == 409)
}

fn copy(req: &Request<Body>) -> Option<Request<Body>> {
    let body = req.body().try_clone()?;
    let mut copy = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .version(req.version())
        .body(body)
        .ok()?;
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.pow(attempt);
    let jitter = rand::random_range(0..=base.as_millis() as u64 / 2);
    base + Duration::from_millis(jitter)
}

impl<S, B> Service<Request<Body>> for RetryTransient<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display + Send,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        lock(&self.inner).poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !repeatable(&req) {
            return Box::pin(lock(&self.inner).call(req));
        }
        let Some(mut spare) = copy(&req) else {
            // a streaming body cannot be sent twice
            return Box::pin(lock(&self.inner).call(req));
        };
        let apply = is_apply(&req);
        let first = lock(&self.inner).call(req);
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut attempt = 0;
            let mut result = first.await;
            loop {
                let why = match &result {
                    Ok(resp) if transient_status(resp.status(), apply) => resp.status().to_string(),
                    Ok(_) => return result,
                    Err(e) => e.to_string(),
                };
                if attempt == RETRIES {
                    return result;
                }
                let wait = backoff(attempt);
                tracing::debug!(
                    method = %spare.method(),
                    uri = %spare.uri(),
                    %why,
                    attempt = attempt + 1,
                    wait_ms = wait.as_millis() as u64,
                    "retrying a transient API failure"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
                let Some(next) = copy(&spare) else {
                    return result;
                };
                let this = std::mem::replace(&mut spare, next);
                std::future::poll_fn(|cx| lock(&inner).poll_ready(cx)).await?;
                let next = lock(&inner).call(this);
                result = next.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, content_type: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/x/configmaps/y");
        if let Some(ct) = content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        b.body(Body::from(b"{}".to_vec())).unwrap()
    }

    #[test]
    fn only_requests_that_can_be_sent_twice_are_retried() {
        assert!(repeatable(&req(Method::GET, None)));
        assert!(repeatable(&req(Method::PATCH, None)));
        assert!(repeatable(&req(Method::DELETE, None)));
        assert!(
            !repeatable(&req(Method::POST, None)),
            "a create may have happened"
        );
    }

    #[test]
    fn a_conflict_is_transient_only_for_a_forced_apply() {
        let apply = req(Method::PATCH, Some("application/apply-patch+yaml"));
        let merge = req(Method::PATCH, Some("application/merge-patch+json"));
        assert!(transient_status(StatusCode::CONFLICT, is_apply(&apply)));
        assert!(!transient_status(StatusCode::CONFLICT, is_apply(&merge)));
        assert!(transient_status(StatusCode::INTERNAL_SERVER_ERROR, false));
        assert!(!transient_status(StatusCode::NOT_FOUND, false));
        assert!(!transient_status(StatusCode::UNPROCESSABLE_ENTITY, true));
    }

    #[test]
    fn the_backoff_doubles_with_jitter() {
        for attempt in 0..RETRIES {
            let base = FIRST_BACKOFF * 2u32.pow(attempt);
            let wait = backoff(attempt);
            assert!(
                wait >= base && wait <= base + base / 2,
                "{attempt}: {wait:?}"
            );
        }
    }
}
