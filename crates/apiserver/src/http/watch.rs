//! Watch streams: newline-delimited JSON events (`ADDED`, `MODIFIED`, `DELETED`,
//! `BOOKMARK`, `ERROR`), resumable from a resourceVersion, with selector-aware
//! transitions (an object that stops matching is reported `DELETED`), bookmarks,
//! `sendInitialEvents` (watch-list) and 410 Expired for versions too old to resume.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::request::{Output, WatchParams};
use super::table;
use crate::cluster::{Cluster, ListOptions};
use crate::error::ApiError;
use crate::meta;
use crate::registry::ResourceDef;
use crate::store::{Event, EventType};

/// What to stream and how.
pub struct WatchRequest {
    /// The resource watched.
    pub def: Arc<ResourceDef>,
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// Selectors.
    pub list: ListOptions,
    /// Watch parameters.
    pub params: WatchParams,
    /// Encoding of event objects.
    pub output: Output,
    /// How often to send bookmarks when allowed.
    pub bookmark_interval: std::time::Duration,
}

/// Start a watch; the response streams until the timeout or the client leaves.
pub fn serve(cluster: Arc<Cluster>, req: WatchRequest) -> Response {
    let gr = req.def.group_resource();
    let ns = req.namespace.clone();
    let initial_events = req.params.send_initial_events;
    let from_now = matches!(req.params.resource_version.as_deref(), None | Some("0"));
    let (initial, backlog, rx, start_rv, end_bookmark) =
        if initial_events == Some(true) || (from_now && initial_events != Some(false)) {
            let (objs, rv, rx) = cluster.store.snapshot_and_watch(&gr, ns.as_deref());
            (objs, Vec::new(), rx, rv, initial_events == Some(true))
        } else {
            let since = match req.params.resource_version.as_deref() {
                None | Some("0") => cluster.store.current_rv(),
                Some(s) => match s.parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => {
                        return ApiError::bad_request(format!("invalid resource version {s:?}"))
                            .into_response();
                    }
                },
            };
            match cluster.store.watch_from(since) {
                Ok((backlog, rx)) => (Vec::new(), backlog, rx, since, false),
                Err(e) => return error_stream(e),
            }
        };
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(run(req, initial, backlog, rx, start_rv, end_bookmark, tx));
    stream_response(ReceiverStream::new(body_rx))
}

fn stream_response(stream: ReceiverStream<Result<Bytes, Infallible>>) -> Response {
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// A watch that fails at once: 200 with a single ERROR event, as kube-apiserver does.
pub(crate) fn error_stream(err: ApiError) -> Response {
    let line = json!({"type": "ERROR", "object": err.to_status()});
    let mut resp = (StatusCode::OK, format!("{line}\n")).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// One watch event on the wire, serialized without copying the object.
#[derive(serde::Serialize)]
struct WireEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

struct Encoder<'a> {
    req: &'a WatchRequest,
    headers_sent: bool,
}

impl Encoder<'_> {
    fn event(&mut self, ty: &str, obj: &Value) -> Bytes {
        let obj = Cluster::versioned(&self.req.def, obj);
        let converted;
        let object: &Value = match self.req.output {
            Output::Json => &obj,
            Output::Metadata => {
                converted = table::partial_metadata(&obj);
                &converted
            }
            Output::Table(include) => {
                let headers = !self.headers_sent;
                self.headers_sent = true;
                let rv = json!({"resourceVersion": meta::meta_str(&obj, "resourceVersion")});
                let one = [Arc::new(obj.clone().into_owned())];
                converted = table::table(&self.req.def, &one, include, rv, headers);
                &converted
            }
        };
        let mut line = serde_json::to_vec(&WireEvent { kind: ty, object }).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.req.def.kind, "apiVersion": self.req.def.api_version(), "metadata": metadata});
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn in_scope(req: &WatchRequest, obj: &Value) -> bool {
    req.namespace
        .as_deref()
        .is_none_or(|n| meta::namespace(obj) == n)
        && req.list.matches(obj)
}

/// The event a watcher sees for a store event, if any.
fn project(req: &WatchRequest, ev: &Event) -> Option<&'static str> {
    if ev.gr != req.def.group_resource() {
        return None;
    }
    match ev.kind {
        EventType::Added => in_scope(req, &ev.object).then_some("ADDED"),
        EventType::Deleted => in_scope(req, &ev.object).then_some("DELETED"),
        EventType::Modified => {
            let now = in_scope(req, &ev.object);
            let before = ev.previous.as_ref().is_some_and(|p| in_scope(req, p));
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }
}

async fn run(
    req: WatchRequest,
    initial: Vec<Arc<Value>>,
    backlog: Vec<Arc<Event>>,
    mut rx: broadcast::Receiver<Arc<Event>>,
    start_rv: u64,
    end_bookmark: bool,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let mut enc = Encoder {
        req: &req,
        headers_sent: false,
    };
    let mut last_rv = start_rv;
    for obj in initial.iter().filter(|o| req.list.matches(o)) {
        if tx.send(Ok(enc.event("ADDED", obj))).await.is_err() {
            return;
        }
    }
    if end_bookmark && tx.send(Ok(enc.bookmark(start_rv, true))).await.is_err() {
        return;
    }
    for ev in backlog {
        last_rv = last_rv.max(ev.rv);
        if let Some(ty) = project(&req, &ev)
            && tx.send(Ok(enc.event(ty, &ev.object))).await.is_err()
        {
            return;
        }
    }
    let deadline = tokio::time::sleep(req.params.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(req.bookmark_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if let Some(ty) = project(&req, &ev)
                        && tx.send(Ok(enc.event(ty, &ev.object))).await.is_err() {
                            return;
                        }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let err = ApiError::gone("the watch fell too far behind the event stream; list again");
                    let line = json!({"type": "ERROR", "object": err.to_status()});
                    let _ = tx.send(Ok(Bytes::from(format!("{line}\n")))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if req.params.bookmarks => {
                if tx.send(Ok(enc.bookmark(last_rv, false))).await.is_err() {
                    return;
                }
            }
            _ = &mut deadline => return,
            _ = tx.closed() => return,
        }
    }
}
