//! A record of the resource requests the server handled — who (User-Agent), which
//! verb, on what — like the request part of kube-apiserver's audit log. Off unless
//! [`crate::ServerOptions::request_log`] is set; tests use it to check that an RBAC
//! policy allows everything a client really does.

use std::sync::Mutex;

/// One resource request, in RBAC terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestRecord {
    /// The client's `User-Agent` header (empty without one).
    pub user_agent: String,
    /// The RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource (`status`, `scale`, …), if any.
    pub subresource: Option<String>,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Object name, for requests on one object.
    pub name: Option<String>,
}

/// The recorded requests.
#[derive(Debug, Default)]
pub struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
}

impl RequestLog {
    /// Every request recorded so far, in arrival order.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn push(&self, record: RequestRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }
}

/// The RBAC verb of a request, as kube-apiserver's request-info resolver names it.
pub(crate) fn verb(method: &http::Method, has_name: bool, watch: bool) -> &'static str {
    use http::Method;
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if has_name => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}
