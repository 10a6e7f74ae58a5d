//! Push webhooks: `POST /webhooks/{provider}` from Git forges (GitHub, GitLab, Gitea
//! and Forgejo, Gogs, Bitbucket Cloud and Server, Azure DevOps, and a generic form)
//! and registries (a generic form, Docker Hub, Harbor); `POST /api/webhook` takes the
//! forges' deliveries too, telling them apart by their headers as Argo CD does, so a
//! hook pointed at Argo CD keeps working.
//!
//! A delivery is handled in this order, and stops at the first answer:
//!
//! 1. the provider's shared secret is read from the webhook Secret (key = the
//!    provider's name); without one the route answers 404 and the log says which key
//!    of which Secret to create;
//! 2. the body is read up to the size limit (413 beyond, before it is read whole);
//! 3. the signature or token is checked in constant time (401 when missing or wrong;
//!    nothing else happens);
//! 4. the payload is read (400 when it is not the provider's JSON); a ping is
//!    answered 200 and an event Capstan does not act on 202;
//! 5. a delivery seen before (by its delivery header, or the body's digest when the
//!    provider sends none) is answered 200 and not acted on again;
//! 6. a push refreshes, at once, every Application it concerns ([`matching`]); an
//!    image push rescans the ImageRepositories of that image. Each refresh is an
//!    annotation on the object, so whichever replica leads acts on it, and the
//!    reconcile it causes is recorded with the trigger `webhook`.

pub mod event;
pub mod matching;
pub mod verify;

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use capstan_controller::crd::Application;
use capstan_controller::images::ImageRepository;
use capstan_controller::{REFRESH_ANNOTATION, WEBHOOK_REFRESH_PREFIX};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use event::{Event, Provider, Push};
use verify::Secrets;

/// The default name of the Secret, in the controller's namespace, holding the
/// webhooks' shared secrets: one key per provider (`github`, `gitlab`, `gitea`, `gogs`,
/// `bitbucket`, `azure-devops` as `user:password`, `generic`, `registry`, `dockerhub`,
/// `harbor`), and `bitbucket-hook-uuid` for Bitbucket Cloud's classic hooks.
pub const DEFAULT_SECRET: &str = "capstan-webhooks";

/// Deliveries remembered, so a redelivery is not acted on twice.
const REMEMBERED: usize = 10_000;

/// The webhook receiver.
pub struct Receiver {
    client: kube::Client,
    namespace: String,
    secret: String,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Seen {
    /// Remember `id`; false when it was already known.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }

    fn forget(&mut self, id: &str) {
        self.ids.remove(id);
        self.order.retain(|o| o != id);
    }
}

impl Receiver {
    /// A receiver reading its secrets from `secret` in `namespace`.
    pub fn new(client: kube::Client, namespace: String, secret: String) -> Self {
        Receiver {
            client,
            namespace,
            secret,
            seen: Mutex::default(),
        }
    }

    /// The secrets of `provider`, read now (so a rotated secret counts at once).
    async fn secrets(&self, provider: Provider) -> Result<Secrets, kube::Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let Some(secret) = api.get_opt(&self.secret).await? else {
            return Ok(Secrets::default());
        };
        let data = secret.data.unwrap_or_default();
        let value = |key: &str| {
            data.get(key)
                .map(|v| v.0.trim_ascii_end().to_vec())
                .filter(|v| !v.is_empty())
        };
        Ok(Secrets {
            secret: value(provider.as_str()),
            hook_uuid: if provider == Provider::Bitbucket {
                value("bitbucket-hook-uuid")
            } else {
                None
            },
        })
    }

    fn first_delivery(&self, id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
    }

    fn forget(&self, id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(id);
    }
}

/// The webhook routes, with the body limit of `state`'s options.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/webhooks/{provider}", post(by_route))
        .route("/webhooks/{provider}/{token}", post(by_route_with_token))
        .route("/api/webhook", post(by_headers))
        .layer(DefaultBodyLimit::max(state.opts.webhook_body_limit))
}

async fn by_route(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match Provider::parse(&provider) {
        Some(p) => receive(&state, p, &headers, body, None).await,
        None => answer(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no webhook provider {provider:?}; the providers are {}", providers())}),
        ),
    }
}

async fn by_route_with_token(
    State(state): State<AppState>,
    Path((provider, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match Provider::parse(&provider) {
        Some(p @ Provider::DockerHub) => receive(&state, p, &headers, body, Some(&token)).await,
        _ => answer(
            StatusCode::NOT_FOUND,
            json!({"error": "only /webhooks/dockerhub takes a token in its URL"}),
        ),
    }
}

async fn by_headers(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match Provider::detect(&headers) {
        Some(p) => receive(&state, p, &headers, body, None).await,
        None => {
            state.controller.metrics.webhook("unknown", "bad-request");
            answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "Unknown webhook event: no X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Gogs-Event, X-Event-Key or X-Vss-Activityid header"}),
            )
        }
    }
}

fn providers() -> String {
    Provider::ALL
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn answer(code: StatusCode, body: Value) -> Response {
    (code, Json(body)).into_response()
}

/// One delivery, from secret to refresh (see the module's documentation).
async fn receive(
    state: &AppState,
    provider: Provider,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    path_token: Option<&str>,
) -> Response {
    let metrics = &state.controller.metrics;
    let name = provider.as_str();
    let rx = &state.webhooks;
    let secrets = match rx.secrets(provider).await {
        Ok(s) if s.is_configured() => s,
        Ok(_) => {
            tracing::warn!(
                provider = name,
                secret = %format!("{}/{}", rx.namespace, rx.secret),
                "a {name} webhook arrived but no shared secret is configured: add the key {name:?} to the Secret {}/{} (`kubectl -n {} create secret generic {} --from-literal={name}=...`); until then the route answers 404",
                rx.namespace, rx.secret, rx.namespace, rx.secret
            );
            metrics.webhook(name, "not-configured");
            return answer(
                StatusCode::NOT_FOUND,
                json!({"error": format!("the {name} webhook is not configured")}),
            );
        }
        Err(e) => {
            tracing::warn!(provider = name, error = %e, "reading the webhook Secret");
            metrics.webhook(name, "error");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the webhook Secret could not be read; try again"}),
            );
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let code = e.status();
            metrics.webhook(
                name,
                if code == StatusCode::PAYLOAD_TOO_LARGE {
                    "too-large"
                } else {
                    "bad-request"
                },
            );
            return answer(
                code,
                json!({"error": format!("{} (the limit is {} bytes)", e.body_text(), state.opts.webhook_body_limit)}),
            );
        }
    };
    if let Err(refused) = verify::check(provider, &secrets, headers, &body, path_token) {
        tracing::warn!(provider = name, reason = %refused, "webhook refused");
        metrics.webhook(name, "unauthorized");
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": refused.to_string()}),
        );
    }
    let event = match event::parse(provider, headers, &body) {
        Ok(e) => e,
        Err(e) => {
            metrics.webhook(name, "bad-request");
            return answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
        }
    };
    let push = match event {
        Event::Ping => {
            metrics.webhook(name, "ping");
            return answer(StatusCode::OK, json!({"event": "ping"}));
        }
        Event::Other(what) => {
            metrics.webhook(name, "ignored");
            return answer(
                StatusCode::ACCEPTED,
                json!({"event": what, "ignored": "Capstan acts on pushes only"}),
            );
        }
        e => e,
    };
    let delivery = delivery_id(provider, headers, &body);
    if !rx.first_delivery(&delivery) {
        metrics.webhook(name, "duplicate");
        return answer(
            StatusCode::OK,
            json!({"delivery": delivery, "duplicate": true, "refreshed": []}),
        );
    }
    let done = match push {
        Event::Push(push) => refresh_applications(state, name, &delivery, &push).await,
        Event::Images(images) => rescan_images(state, name, &delivery, &images).await,
        Event::Ping | Event::Other(_) => unreachable!("answered above"),
    };
    match done {
        Ok(body) => {
            metrics.webhook(name, "accepted");
            answer(StatusCode::OK, body)
        }
        Err(e) => {
            // not remembered: the provider's redelivery is acted on
            rx.forget(&delivery);
            metrics.webhook(name, "error");
            tracing::warn!(provider = name, error = %e, "acting on a webhook");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("refreshing: {e}")}),
            )
        }
    }
}

/// The delivery's id: the provider's delivery header, or the body's digest.
fn delivery_id(provider: Provider, headers: &HeaderMap, body: &[u8]) -> String {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let id = header(provider.delivery_header()).or_else(|| match provider {
        Provider::Bitbucket => header("x-request-id"),
        _ => None,
    });
    match id {
        Some(id) => format!("{}:{id}", provider.as_str()),
        None => format!(
            "{}:sha256:{}",
            provider.as_str(),
            hex::encode(Sha256::digest(body))
        ),
    }
}

fn refresh_value(provider: &str, delivery: &str) -> String {
    format!(
        "{WEBHOOK_REFRESH_PREFIX}{provider}/{}/{}",
        capstan_controller::now(),
        delivery.rsplit(':').next().unwrap_or(delivery)
    )
}

async fn annotate<K>(api: Api<K>, name: String, value: String) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {REFRESH_ANNOTATION: value}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Refresh every Application `push` concerns; the body of the answer.
async fn refresh_applications(
    state: &AppState,
    provider: &str,
    delivery: &str,
    push: &Push,
) -> Result<Value, kube::Error> {
    let apps = state.controller.applications.state();
    let mut concerned = Vec::new();
    for app in &apps {
        if matching::concerns(app, push).is_ok() {
            concerned.push((app.namespace().unwrap_or_default(), app.name_any()));
        }
    }
    let value = refresh_value(provider, delivery);
    let client = state.controller.client.clone();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(concerned.iter().cloned())
        .map(|(ns, name)| {
            let api: Api<Application> = Api::namespaced(client.clone(), &ns);
            annotate(api, name, value.clone())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(()) => {}
            // deleted since the cache saw it
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(
        provider,
        repository = %push.repo_urls.first().map(String::as_str).unwrap_or(""),
        revisions = ?push.revisions(),
        refreshed = concerned.len(),
        "push webhook"
    );
    Ok(json!({
        "event": "push",
        "delivery": delivery,
        "repository": push.repo_urls,
        "revisions": push.revisions(),
        "touchedHead": push.touches_head(),
        "changedFiles": push.changed_files.as_ref().map(|f| f.len()),
        "refreshed": concerned.iter().map(|(ns, n)| format!("{ns}/{n}")).collect::<Vec<_>>(),
    }))
}

/// Rescan every ImageRepository of the images pushed; the body of the answer.
async fn rescan_images(
    state: &AppState,
    provider: &str,
    delivery: &str,
    images: &[event::ImagePush],
) -> Result<Value, kube::Error> {
    let api: Api<ImageRepository> = Api::all(state.controller.client.clone());
    let repos = api.list(&Default::default()).await?;
    let value = refresh_value(provider, delivery);
    let mut rescanned = Vec::new();
    for r in repos {
        if images
            .iter()
            .any(|i| capstan_engine::images::reference::same_repository(&r.spec.image, &i.image))
        {
            let ns = r.namespace().unwrap_or_default();
            let api: Api<ImageRepository> = Api::namespaced(state.controller.client.clone(), &ns);
            annotate(api, r.name_any(), value.clone()).await?;
            rescanned.push(format!("{ns}/{}", r.name_any()));
        }
    }
    tracing::info!(provider, images = ?images.iter().map(|i| &i.image).collect::<Vec<_>>(), rescanned = rescanned.len(), "registry webhook");
    Ok(json!({
        "event": "image-push",
        "delivery": delivery,
        "images": images.iter().map(|i| json!({"image": i.image, "tag": i.tag})).collect::<Vec<_>>(),
        "rescanned": rescanned,
    }))
}
