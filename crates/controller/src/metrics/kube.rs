//! `capstan_kube_requests_total{verb,code}`: every request of the controller's kube
//! client, counted by a tower layer on the client's service stack.
//!
//! The layer wraps the whole stack kube-rs builds from a kubeconfig (TLS, auth, base
//! URL, retries), so it sees each request as the client sends it and its final
//! response — against the embedded API server and a real cluster alike. The verb is
//! Kubernetes' own (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
//! `deletecollection`), read from the method and the path as kube-apiserver reads it
//! for `apiserver_request_total`; the code is the response status, or `<error>` when
//! no response came (connection refused, timeout), as client-go's
//! `rest_client_requests_total` spells it. A watch is counted when its response
//! starts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::Metrics;

/// A Kubernetes API verb.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Verb {
    /// GET of one object, a subresource, discovery or `/version`.
    Get,
    /// GET of a collection.
    List,
    /// GET with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
    /// Any other method.
    Other,
}

impl Verb {
    /// The verb as kube-apiserver names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Other => "other",
        }
    }

    /// The verb of a request: its method, and for GET and DELETE whether the path
    /// names one object or a collection.
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Verb {
        match *method {
            Method::GET if is_watch(query) => Verb::Watch,
            Method::GET if names_collection(path) => Verb::List,
            Method::GET => Verb::Get,
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE if names_collection(path) => Verb::DeleteCollection,
            Method::DELETE => Verb::Delete,
            _ => Verb::Other,
        }
    }
}

fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1" || kv == "watch")
    })
}

/// Whether a resource path names a collection (`/api/v1/namespaces/NS/configmaps`,
/// `/apis/G/V/RESOURCE`) rather than one object, a subresource or a discovery
/// document. Namespaces are the one resource whose objects have subresources that
/// look like a namespaced collection (`/namespaces/NAME/status`, `…/finalize`).
fn names_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return false,
    };
    match rest {
        [] => false,
        ["namespaces"] => true,
        ["namespaces", _name] => false,
        ["namespaces", _name, "status" | "finalize"] => false,
        ["namespaces", _ns, _resource] => true,
        ["namespaces", _ns, _resource, ..] => false,
        [_resource] => true,
        _ => false,
    }
}

/// A response code, or none (`<error>`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct Code(pub Option<u16>);

impl EncodeLabelValue for Verb {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        match self.0 {
            Some(code) => write!(encoder, "{code}"),
            None => encoder.write_str("<error>"),
        }
    }
}

/// The labels of `capstan_kube_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeLabels {
    /// The Kubernetes verb.
    pub verb: Verb,
    /// The response status.
    pub code: Code,
}

/// The layer that counts requests; from [`Metrics::kube_layer`].
#[derive(Debug, Clone)]
pub struct CountRequestsLayer {
    counts: Family<KubeLabels, Counter>,
}

impl CountRequestsLayer {
    pub(super) fn new(counts: Family<KubeLabels, Counter>) -> Self {
        CountRequestsLayer { counts }
    }
}

impl<S> tower_layer::Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> CountRequests<S> {
        CountRequests {
            inner,
            counts: self.counts.clone(),
        }
    }
}

/// A service that counts the requests it passes on; see [`CountRequestsLayer`].
#[derive(Debug, Clone)]
pub struct CountRequests<S> {
    inner: S,
    counts: Family<KubeLabels, Counter>,
}

impl<S, B, RB> tower_service::Service<Request<B>> for CountRequests<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verb = Verb::of(req.method(), req.uri().path(), req.uri().query());
        let counts = self.counts.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await;
            let code = Code(response.as_ref().ok().map(|r| r.status().as_u16()));
            counts.get_or_create(&KubeLabels { verb, code }).inc();
            response
        })
    }
}

/// A kube client for `config` whose every request is counted in `metrics`: the
/// client kube-rs builds from a kubeconfig, with [`Metrics::kube_layer`] around it and
/// transient failures retried ([`capstan_engine::retry`]).
pub fn counted_client(
    config: kube::Config,
    metrics: &Metrics,
) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&metrics.kube_layer())
        // outside the counting: each attempt is counted with its own code
        .with_layer(&capstan_engine::retry::RetryTransientLayer)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_read_from_the_method_and_the_path_as_kube_apiserver_reads_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/apps/configmaps",
                None,
                "list",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/apps/configmaps/web",
                None,
                "get",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/apps/configmaps",
                Some("watch=true&resourceVersion=5"),
                "watch",
            ),
            (
                Method::GET,
                "/apis/capstan.dev/v1alpha1/applications",
                Some("limit=500"),
                "list",
            ),
            (
                Method::GET,
                "/apis/capstan.dev/v1alpha1/namespaces/apps/applications/web",
                None,
                "get",
            ),
            (Method::GET, "/api/v1/namespaces", None, "list"),
            (Method::GET, "/api/v1/namespaces/apps", None, "get"),
            (Method::GET, "/api/v1/nodes", None, "list"),
            (Method::GET, "/api/v1/nodes/n1", None, "get"),
            (Method::GET, "/apis/apps/v1", None, "get"),
            (Method::GET, "/api", None, "get"),
            (Method::GET, "/version", None, "get"),
            (
                Method::POST,
                "/api/v1/namespaces/apps/events",
                None,
                "create",
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/apps/finalize",
                None,
                "update",
            ),
            (
                Method::PATCH,
                "/apis/capstan.dev/v1alpha1/namespaces/apps/applications/web/status",
                Some("fieldManager=capstan-controller&force=true"),
                "patch",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/apps/configmaps/web",
                None,
                "delete",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/apps/configmaps",
                Some("labelSelector=a%3Db"),
                "deletecollection",
            ),
            (Method::HEAD, "/api/v1", None, "other"),
        ];
        for (method, path, query, verb) in cases {
            assert_eq!(
                Verb::of(&method, path, query).as_str(),
                verb,
                "{method} {path}?{query:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_layer_counts_each_request_by_verb_and_code_and_errors_without_a_code() {
        use tower_layer::Layer;
        use tower_service::Service;

        let metrics = Metrics::default();
        let mut svc = metrics
            .kube_layer()
            .layer(tower_service_fn(|req: Request<()>| async move {
                match req.uri().path() {
                    "/api/v1/namespaces/apps/configmaps/missing" => {
                        Ok(Response::builder().status(404).body(()).unwrap())
                    }
                    "/refused" => Err("connection refused"),
                    _ => Ok(Response::new(())),
                }
            }));
        for uri in [
            "/api/v1/namespaces/apps/configmaps",
            "/api/v1/namespaces/apps/configmaps",
            "/api/v1/namespaces/apps/configmaps/missing",
            "/refused",
        ] {
            let _ = svc.call(Request::get(uri).body(()).unwrap()).await;
        }
        let text = metrics.encode();
        for line in [
            "capstan_kube_requests_total{verb=\"list\",code=\"200\"} 2",
            "capstan_kube_requests_total{verb=\"get\",code=\"404\"} 1",
            "capstan_kube_requests_total{verb=\"get\",code=\"<error>\"} 1",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    /// A service from a closure (tower's `service_fn`, without depending on tower).
    fn tower_service_fn<F>(f: F) -> FnService<F> {
        FnService(f)
    }

    struct FnService<F>(F);

    impl<F, Fut, Req, Resp> tower_service::Service<Req> for FnService<F>
    where
        F: FnMut(Req) -> Fut,
        Fut: Future<Output = Result<Resp, &'static str>>,
    {
        type Response = Resp;
        type Error = &'static str;
        type Future = Fut;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Req) -> Fut {
            (self.0)(req)
        }
    }
}
