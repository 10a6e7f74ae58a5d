//! The Kubernetes REST protocol over HTTP: authentication ([`authn`]), routing of
//! `/api/v1/...` and `/apis/<group>/<version>/...` paths, verbs, subresources
//! (`status`, `scale`, `finalize`) and response encoding.

pub mod authn;
pub mod authz;
pub mod discovery;
pub mod protobuf;
pub mod request;
pub mod requests;
pub mod table;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::cluster::{Cluster, ListResult, WriteOutcome};
use crate::error::{ApiError, Result};
use crate::meta;
use crate::registry::ResourceDef;
use request::{Output, PatchKind, Query};

/// Shared state of the HTTP layer.
pub struct AppState {
    /// The cluster served.
    pub cluster: Arc<Cluster>,
    /// The tokens requests may carry: the admin token, ServiceAccount tokens.
    pub authn: authn::Authenticator,
    /// `host:port` clients reach the server at.
    pub server_address: String,
    /// Interval between watch bookmarks.
    pub bookmark_interval: Duration,
    /// Where resource requests are recorded, if anywhere.
    pub request_log: Option<Arc<requests::RequestLog>>,
    /// Faults to inject into resource requests, if any.
    pub faults: Option<Arc<crate::faults::Faults>>,
}

/// The router serving the whole API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// The user a request's bearer token names, if any.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Option<authn::UserInfo> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let token = value.strip_prefix("Bearer ")?;
    state.authn.authenticate(&state.cluster, token.trim())
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return (StatusCode::OK, "ok").into_response();
    }
    let user = match authenticate(&state, req.headers()) {
        None => return ApiError::unauthorized().into_response(),
        Some(user) => user,
    };
    // every authenticated user may ask what it may do (`kubectl auth can-i`)
    if req.method() == Method::POST
        && let Some(review) = path
            .strip_prefix("/apis/authorization.k8s.io/v1/")
            .filter(|r| authz::REVIEWS.contains(r))
    {
        let review = review.to_string();
        return self_review(&user, &review, req)
            .await
            .unwrap_or_else(|e| e.into_response());
    }
    if !user.is_admin() {
        return authn::forbidden(&user, req.method(), &path).into_response();
    }
    match dispatch(&state, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn self_review(user: &authn::UserInfo, review: &str, req: Request) -> Result<Response> {
    let headers = req.headers().clone();
    let bytes = request::read_body(req.into_body()).await?;
    let body = request::decode_object(&headers, &bytes)?;
    let answer = if review == "selfsubjectaccessreviews" {
        authz::access_review(user, &body)?
    } else {
        authz::rules_review(user, &body)?
    };
    Ok(json_response(StatusCode::CREATED, &answer, &[]))
}

fn json_response(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (code, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// A parsed resource path.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
    watch_path: bool,
}

fn parse_resource_path(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let mut rest = rest;
    let watch_path = rest.first() == Some(&"watch");
    if watch_path {
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        let namespace_subresource =
            group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize");
        if !namespace_subresource {
            namespace = Some(rest[1].to_string());
            rest = &rest[2..];
        }
    }
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s] => (*r, Some(*n), Some(*s)),
        _ => return None,
    };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource: resource.to_string(),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        watch_path,
    })
}

async fn dispatch(state: &AppState, req: Request) -> Result<Response> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let registry = &state.cluster.registry;
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v, &[]));
    let get_only = req.method() == Method::GET;
    match segs.as_slice() {
        ["version"] if get_only => ok(discovery::version()),
        ["api"] if get_only => ok(discovery::core_versions(&state.server_address)),
        ["api", v] if get_only => discovery::resource_list(registry, "", v)
            .map(|l| json_response(StatusCode::OK, &l, &[]))
            .ok_or_else(|| ApiError::no_route(&path)),
        ["apis"] if get_only => ok(discovery::group_list(registry)),
        ["apis", g] if get_only => discovery::group(registry, g)
            .map(|l| json_response(StatusCode::OK, &l, &[]))
            .ok_or_else(|| ApiError::no_route(&path)),
        ["apis", g, v] if get_only => discovery::resource_list(registry, g, v)
            .map(|l| json_response(StatusCode::OK, &l, &[]))
            .ok_or_else(|| ApiError::no_route(&path)),
        ["openapi", "v3"] if get_only => ok(discovery::openapi_root(registry)),
        ["openapi", "v3", "api", v] if get_only => {
            discovery::openapi_group_version(registry, "", v)
                .map(|l| json_response(StatusCode::OK, &l, &[]))
                .ok_or_else(|| ApiError::no_route(&path))
        }
        ["openapi", "v3", "apis", g, v] if get_only => {
            discovery::openapi_group_version(registry, g, v)
                .map(|l| json_response(StatusCode::OK, &l, &[]))
                .ok_or_else(|| ApiError::no_route(&path))
        }
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] if req.method() == Method::POST => {
            if let Some(t) = parse_resource_path("authentication.k8s.io", "v1", &["tokenreviews"]) {
                record(state, &t, &req);
            }
            let headers = req.headers().clone();
            let bytes = request::read_body(req.into_body()).await?;
            let body = request::decode_object(&headers, &bytes)?;
            let review = state.authn.token_review(&state.cluster, &body)?;
            Ok(json_response(StatusCode::CREATED, &review, &[]))
        }
        [
            "api",
            "v1",
            "namespaces",
            ns,
            "serviceaccounts",
            name,
            "token",
        ] if req.method() == Method::POST => {
            let (ns, name) = (ns.to_string(), name.to_string());
            if let Some(t) = parse_resource_path("", "v1", &rest_of(&segs, 2)) {
                record(state, &t, &req);
            }
            let headers = req.headers().clone();
            let bytes = request::read_body(req.into_body()).await?;
            let body = request::decode_object(&headers, &bytes)?;
            let issued = state
                .authn
                .token_request(&state.cluster, &ns, &name, &body)?;
            Ok(json_response(StatusCode::CREATED, &issued, &[]))
        }
        ["api", v, rest @ ..] => match parse_resource_path("", v, rest) {
            Some(t) => {
                record(state, &t, &req);
                faulty_resource(state, t, req).await
            }
            None => Err(ApiError::no_route(&path)),
        },
        ["apis", g, v, rest @ ..] => match parse_resource_path(g, v, rest) {
            Some(t) => {
                record(state, &t, &req);
                faulty_resource(state, t, req).await
            }
            None => Err(ApiError::no_route(&path)),
        },
        _ => Err(ApiError::no_route(&path)),
    }
}

fn rest_of<'a>(segs: &[&'a str], from: usize) -> Vec<&'a str> {
    segs.get(from..).unwrap_or_default().to_vec()
}

fn record(state: &AppState, t: &Target, req: &Request) {
    let Some(log) = &state.request_log else {
        return;
    };
    let watch = is_watch(t, req);
    log.push(requests::RequestRecord {
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        verb: requests::verb(req.method(), t.name.is_some(), watch).to_string(),
        group: t.group.clone(),
        resource: t.resource.clone(),
        subresource: t.subresource.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    });
}

fn is_watch(t: &Target, req: &Request) -> bool {
    t.watch_path
        || req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

/// A resource request, with a fault injected when the server is told to (see
/// [`crate::faults`]).
async fn faulty_resource(state: &AppState, t: Target, req: Request) -> Result<Response> {
    use crate::faults::{Fault, FaultStatus, FaultTarget};
    let Some(faults) = &state.faults else {
        return resource(state, t, req).await;
    };
    let watch = is_watch(&t, &req);
    let resumes = watch
        && Query::parse(req.uri().query())
            .ok()
            .and_then(|q| {
                q.get("resourceVersion")
                    .map(|rv| !rv.is_empty() && rv != "0")
            })
            .unwrap_or(false);
    let fault = faults.draw(FaultTarget {
        verb: requests::verb(req.method(), t.name.is_some(), watch),
        resource: &t.resource,
        subresource: t.subresource.as_deref(),
        resumes,
    });
    const WHY: &str = "injected fault (capstan apiserver --faults)";
    match fault {
        None => resource(state, t, req).await,
        Some(Fault::Status(status)) => Err(match status {
            FaultStatus::Conflict => ApiError::conflict(
                &crate::registry::GroupResource {
                    group: t.group.clone(),
                    resource: t.resource.clone(),
                },
                t.name.as_deref().unwrap_or_default(),
                WHY,
            ),
            FaultStatus::TooManyRequests => ApiError::too_many_requests(
                format!("the server has received too many requests: {WHY}"),
                1,
            ),
            FaultStatus::Internal => ApiError::internal(WHY),
            FaultStatus::Unavailable => ApiError::unavailable(format!(
                "the server is currently unable to handle the request: {WHY}"
            )),
            FaultStatus::Timeout => ApiError::timeout(format!(
                "the server was unable to return a response in the time allotted: {WHY}"
            )),
        }),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            resource(state, t, req).await
        }
        Some(Fault::Reset) => {
            // carried out, and then the answer is lost with the connection
            let _ = resource(state, t, req).await;
            let lost = futures::stream::once(async {
                Err::<bytes::Bytes, std::io::Error>(std::io::Error::other(WHY))
            });
            Ok(Body::from_stream(lost).into_response())
        }
        Some(Fault::CloseWatch(after)) => {
            let resp = resource(state, t, req).await?;
            let (parts, body) = resp.into_parts();
            let closed = futures::StreamExt::take_until(
                body.into_data_stream(),
                Box::pin(tokio::time::sleep(after)),
            );
            Ok(Response::from_parts(parts, Body::from_stream(closed)))
        }
        Some(Fault::Gone) => Ok(watch::error_stream(ApiError::gone(format!(
            "too old resource version: {WHY}"
        )))),
    }
}

/// A list on the wire, serialized without copying its items.
#[derive(serde::Serialize)]
struct WireList<'a> {
    kind: &'a str,
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    metadata: Value,
    items: Vec<&'a Value>,
}

fn list_response(def: &ResourceDef, page: &ListResult, output: Output) -> Response {
    match output {
        Output::Table(include) => {
            return json_response(StatusCode::OK, &list_view(def, page, Some(include)), &[]);
        }
        Output::Metadata => return json_response(StatusCode::OK, &list_view(def, page, None), &[]),
        Output::Json => {}
    }
    let list = WireList {
        kind: &def.list_kind(),
        api_version: &def.api_version(),
        metadata: list_meta(page),
        items: page.items.iter().map(|o| o.as_ref()).collect(),
    };
    let bytes = serde_json::to_vec(&list).unwrap_or_default();
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn list_meta(page: &ListResult) -> Value {
    let mut list_meta = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(c) = &page.continue_token {
        list_meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        list_meta["remainingItemCount"] = json!(r);
    }
    list_meta
}

/// Table and metadata-only views of a list (plain JSON lists are written by [`list_response`]).
fn list_view(def: &ResourceDef, page: &ListResult, include: Option<table::IncludeObject>) -> Value {
    match include {
        Some(include) => table::table(def, &page.items, include, list_meta(page), true),
        None => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta(page),
            "items": page.items.iter().map(|o| table::partial_metadata(o)).collect::<Vec<_>>(),
        }),
    }
}

fn object_body(def: &ResourceDef, obj: &Value, output: Output) -> Value {
    match output {
        Output::Json => obj.clone(),
        Output::Metadata => table::partial_metadata(obj),
        Output::Table(include) => table::table(
            def,
            &[Arc::new(obj.clone())],
            include,
            json!({"resourceVersion": meta::meta_str(obj, "resourceVersion")}),
            true,
        ),
    }
}

fn write_response(def: &ResourceDef, out: WriteOutcome, output: Output) -> Response {
    let code = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(code, &object_body(def, &out.object, output), &out.warnings)
}

async fn resource(state: &AppState, t: Target, req: Request) -> Result<Response> {
    let cluster = state.cluster.clone();
    let def = cluster
        .registry
        .get(&t.group, &t.version, &t.resource)
        .ok_or_else(|| {
            ApiError::no_route(&format!(
                "{}{}",
                t.resource,
                if t.group.is_empty() {
                    String::new()
                } else {
                    format!(".{}", t.group)
                }
            ))
        })?;
    if !def.namespaced && t.namespace.is_some() {
        return Err(ApiError::no_route(&format!(
            "{} is not namespaced",
            def.plural
        )));
    }
    let (parts, body) = req.into_parts();
    let q = Query::parse(parts.uri.query())?;
    let output = request::negotiate(&parts.headers, &q)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let method = parts.method.clone();

    if let Some(sub) = t.subresource.as_deref() {
        let name = t.name.as_deref().unwrap_or_default();
        return subresource(
            state,
            &def,
            &ns,
            name,
            sub,
            method,
            &parts.headers,
            &q,
            body,
            output,
        )
        .await;
    }

    let is_watch = t.watch_path || q.flag("watch");
    match (method, t.name.as_deref()) {
        (Method::GET, None) if is_watch => {
            let list = q.list_options(&def.group, &def.plural)?;
            Ok(watch::serve(
                cluster,
                watch::WatchRequest {
                    def: def.clone(),
                    namespace: t.namespace.clone(),
                    list,
                    params: request::WatchParams::from_query(&q)?,
                    output,
                    bookmark_interval: state.bookmark_interval,
                },
            ))
        }
        (Method::GET, Some(name)) if is_watch => {
            let mut list = q.list_options(&def.group, &def.plural)?;
            list.fields = crate::selector::FieldSelector::parse(
                &format!("metadata.name={name}"),
                &def.group,
                &def.plural,
            )?;
            Ok(watch::serve(
                cluster,
                watch::WatchRequest {
                    def: def.clone(),
                    namespace: t.namespace.clone(),
                    list,
                    params: request::WatchParams::from_query(&q)?,
                    output,
                    bookmark_interval: state.bookmark_interval,
                },
            ))
        }
        (Method::GET, None) => {
            let list = q.list_options(&def.group, &def.plural)?;
            let page = cluster.list(&def, t.namespace.as_deref(), &list)?;
            Ok(list_response(&def, &page, output))
        }
        (Method::GET, Some(name)) => {
            let obj = cluster.get(&def, &ns, name)?;
            Ok(json_response(
                StatusCode::OK,
                &object_body(&def, &obj, output),
                &[],
            ))
        }
        (Method::POST, None) => {
            if def.namespaced && t.namespace.is_none() {
                return Err(ApiError::no_route(
                    "a namespaced resource must be created in a namespace",
                ));
            }
            let opts = q.write_options(&parts.headers)?;
            let bytes = request::read_body(body).await?;
            let obj = request::decode_object(&parts.headers, &bytes)?;
            Ok(write_response(
                &def,
                cluster.create(&def, &ns, obj, &opts)?,
                output,
            ))
        }
        (Method::PUT, Some(name)) => {
            let opts = q.write_options(&parts.headers)?;
            let bytes = request::read_body(body).await?;
            let obj = request::decode_object(&parts.headers, &bytes)?;
            Ok(write_response(
                &def,
                cluster.update(&def, &ns, name, obj, false, &opts)?,
                output,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let kind = request::patch_kind(&parts.headers)?;
            let bytes = request::read_body(body).await?;
            patch(
                &cluster,
                &def,
                &ns,
                name,
                kind,
                &bytes,
                false,
                &q,
                &parts.headers,
                output,
            )
        }
        (Method::DELETE, Some(name)) => {
            let bytes = request::read_body(body).await?;
            let mut opts = q.delete_options()?;
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                opts = opts.merge_body(&request::decode(&bytes, false)?)?;
            }
            let deleted = cluster.delete(&def, &ns, name, &opts)?;
            Ok(json_response(
                StatusCode::OK,
                &object_body(&def, &deleted.object, output),
                &[],
            ))
        }
        (Method::DELETE, None) => {
            let bytes = request::read_body(body).await?;
            let mut opts = q.delete_options()?;
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                opts = opts.merge_body(&request::decode(&bytes, false)?)?;
            }
            let list = q.list_options(&def.group, &def.plural)?;
            let deleted = cluster.delete_collection(&def, t.namespace.as_deref(), &list, &opts)?;
            let items: Vec<Value> = deleted.into_iter().map(|d| d.object).collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": {}, "items": items}),
                &[],
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn patch(
    cluster: &Cluster,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    kind: PatchKind,
    bytes: &[u8],
    status: bool,
    q: &Query,
    headers: &HeaderMap,
    output: Output,
) -> Result<Response> {
    let out = match kind {
        PatchKind::Apply => {
            let mut opts = q.write_options(headers)?;
            opts.field_manager = request::apply_manager(q);
            let config = request::decode(bytes, true)?;
            cluster.apply(def, ns, name, config, status, &opts)?
        }
        PatchKind::Patch(pt) => {
            let opts = q.write_options(headers)?;
            let body = request::decode(bytes, false)?;
            cluster.patch(
                def,
                ns,
                name,
                crate::patch::Patch {
                    kind: pt,
                    body: &body,
                },
                status,
                &opts,
            )?
        }
    };
    Ok(write_response(def, out, output))
}

#[allow(clippy::too_many_arguments)]
async fn subresource(
    state: &AppState,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    sub: &str,
    method: Method,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
    output: Output,
) -> Result<Response> {
    let cluster = &state.cluster;
    match sub {
        "status" if def.status_subresource => match method {
            Method::GET => {
                let obj = cluster.get(def, ns, name)?;
                Ok(json_response(
                    StatusCode::OK,
                    &object_body(def, &obj, output),
                    &[],
                ))
            }
            Method::PUT => {
                let opts = q.write_options(headers)?;
                let bytes = request::read_body(body).await?;
                let obj = request::decode_object(headers, &bytes)?;
                Ok(write_response(
                    def,
                    cluster.update(def, ns, name, obj, true, &opts)?,
                    output,
                ))
            }
            Method::PATCH => {
                let kind = request::patch_kind(headers)?;
                let bytes = request::read_body(body).await?;
                patch(
                    cluster, def, ns, name, kind, &bytes, true, q, headers, output,
                )
            }
            m => Err(ApiError::method_not_allowed(format!(
                "{m} is not allowed on {}/status",
                def.plural
            ))),
        },
        "scale" if discovery::has_scale(def) => {
            scale(cluster, def, ns, name, method, headers, q, body).await
        }
        "finalize"
            if def.group.is_empty() && def.plural == "namespaces" && method == Method::PUT =>
        {
            let opts = q.write_options(headers)?;
            let bytes = request::read_body(body).await?;
            let obj = request::decode_object(headers, &bytes)?;
            let finalizers = obj
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let out = cluster.update_with(def, "", name, false, &opts, |cur| {
                let mut new = cur.clone();
                new["spec"]["finalizers"] = finalizers;
                Some(new)
            })?;
            let obj = match out {
                Some(o) => o.object,
                None => cluster.get(def, "", name).unwrap_or(Value::Null),
            };
            Ok(json_response(StatusCode::OK, &obj, &[]))
        }
        _ => Err(ApiError::no_route(&format!("{}/{sub}", def.plural))),
    }
}

fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let m = meta::metadata(obj).cloned().unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

#[allow(clippy::too_many_arguments)]
async fn scale(
    cluster: &Cluster,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    method: Method,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> Result<Response> {
    if method == Method::GET {
        return Ok(json_response(
            StatusCode::OK,
            &scale_of(&cluster.get(def, ns, name)?),
            &[],
        ));
    }
    let opts = q.write_options(headers)?;
    let bytes = request::read_body(body).await?;
    let current = scale_of(&cluster.get(def, ns, name)?);
    let wanted = match method {
        Method::PUT => request::decode_object(headers, &bytes)?,
        Method::PATCH => {
            let b = request::decode(&bytes, true)?;
            match request::patch_kind(headers)? {
                PatchKind::Patch(crate::patch::PatchType::Json) => {
                    crate::patch::json_patch(&current, &b)
                }
                PatchKind::Patch(_) | PatchKind::Apply => crate::patch::merge_patch(&current, &b),
            }
            .map_err(ApiError::bad_request)?
        }
        m => {
            return Err(ApiError::method_not_allowed(format!(
                "{m} is not allowed on {}/scale",
                def.plural
            )));
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("spec.replicas is required in a Scale"))?;
    let precondition = meta::meta_str(&wanted, "resourceVersion").to_string();
    let gr = def.group_resource();
    let out = cluster.update_with(def, ns, name, false, &opts, |cur| {
        if !precondition.is_empty() && precondition != meta::meta_str(cur, "resourceVersion") {
            return None;
        }
        let mut new = cur.clone();
        new["spec"]["replicas"] = json!(replicas);
        Some(new)
    })?;
    let obj = cluster.get(def, ns, name)?;
    if out.is_none()
        && !precondition.is_empty()
        && precondition != meta::meta_str(&obj, "resourceVersion")
    {
        return Err(ApiError::stale(&gr, name));
    }
    Ok(json_response(StatusCode::OK, &scale_of(&obj), &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_namespaces_and_subresources() {
        let t =
            parse_resource_path("", "v1", &["namespaces", "prod", "configmaps", "web"]).unwrap();
        assert_eq!(
            (
                t.namespace.as_deref(),
                t.resource.as_str(),
                t.name.as_deref()
            ),
            (Some("prod"), "configmaps", Some("web"))
        );
        let t = parse_resource_path("", "v1", &["namespaces", "prod", "status"]).unwrap();
        assert_eq!(
            (
                t.namespace,
                t.resource.as_str(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            (None, "namespaces", Some("prod"), Some("status"))
        );
        let t = parse_resource_path("apps", "v1", &["watch", "namespaces", "a", "deployments"])
            .unwrap();
        assert!(t.watch_path);
        assert!(parse_resource_path("", "v1", &["a", "b", "c", "d"]).is_none());
    }
}
