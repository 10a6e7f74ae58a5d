//! Turning HTTP requests into API calls: query parameters, content negotiation,
//! body decoding (JSON, YAML, or protobuf for the built-in kinds) and the
//! write/list/delete options they carry.

use std::collections::HashMap;

use axum::body::Body;
use http::HeaderMap;
use serde_json::Value;

use super::table::IncludeObject;
use crate::cluster::{DeleteOptions, ListOptions, Propagation, WriteOptions};
use crate::error::{ApiError, Result};
use crate::patch::PatchType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::validation::FieldValidation;

/// Largest request body accepted (kube-apiserver's limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Query parameters; repeated keys keep every value.
#[derive(Debug, Default)]
pub struct Query {
    values: HashMap<String, Vec<String>>,
}

impl Query {
    /// Parse a URL query string.
    pub fn parse(raw: Option<&str>) -> Result<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            values.entry(k).or_default().push(v);
        }
        Ok(Query { values })
    }

    /// The first value of a parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of a parameter.
    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A numeric parameter; malformed is a 400.
    pub fn number(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {s:?} is not a number"))
            }),
        }
    }

    /// Whether `dryRun=All` is set; any other dryRun value is a 400.
    pub fn dry_run(&self) -> Result<bool> {
        let mut dry = false;
        for v in self.all("dryRun") {
            match v.as_str() {
                "All" => dry = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value {other:?}: supported values: \"All\""
                    )));
                }
            }
        }
        Ok(dry)
    }

    /// Label and field selectors, limit and continue.
    pub fn list_options(&self, group: &str, plural: &str) -> Result<ListOptions> {
        Ok(ListOptions {
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or(""), group, plural)?,
            limit: self.number("limit")?.map(|n| n as usize),
            continue_token: self
                .get("continue")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
        })
    }

    /// Options of a write; the manager defaults to the User-Agent's product name.
    pub fn write_options(&self, headers: &HeaderMap) -> Result<WriteOptions> {
        let manager = match self.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => manager_from_user_agent(headers),
        };
        if manager.len() > 128 {
            return Err(ApiError::bad_request(
                "fieldManager must be at most 128 characters",
            ));
        }
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_manager: manager,
            field_validation: FieldValidation::parse(self.get("fieldValidation").unwrap_or(""))?,
            force: self.flag("force"),
        })
    }

    /// Options of a delete from the query (the body may add to them).
    pub fn delete_options(&self) -> Result<DeleteOptions> {
        let mut opts = DeleteOptions {
            dry_run: self.dry_run()?,
            ..Default::default()
        };
        if let Some(p) = self.get("propagationPolicy").filter(|p| !p.is_empty()) {
            opts.propagation = Some(Propagation::parse(p)?);
        }
        Ok(opts)
    }
}

/// The explicit manager for apply requests only (apply has no User-Agent default).
pub fn apply_manager(q: &Query) -> String {
    q.get("fieldManager").unwrap_or("").to_string()
}

fn manager_from_user_agent(headers: &HeaderMap) -> String {
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let product = ua.split('/').next().unwrap_or("").trim();
    if product.is_empty() {
        "unknown".to_string()
    } else {
        product.chars().take(128).collect()
    }
}

/// How a response is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object(s) as JSON.
    Json,
    /// A `meta.k8s.io/v1 Table`.
    Table(IncludeObject),
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// Pick the response encoding from `Accept`; 406 when nothing acceptable is offered.
pub fn negotiate(headers: &HeaderMap, q: &Query) -> Result<Output> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        let json_like = matches!(
            media,
            "application/json" | "*/*" | "application/*" | "application/yaml"
        );
        if !json_like {
            continue;
        }
        match params.get("as").copied() {
            None => return Ok(Output::Json),
            Some("Table") if params.get("g").copied() == Some("meta.k8s.io") => {
                return Ok(Output::Table(IncludeObject::parse(
                    q.get("includeObject").unwrap_or(""),
                )));
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if params.get("g").copied() == Some("meta.k8s.io") =>
            {
                return Ok(Output::Metadata);
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;g=meta.k8s.io;v=v1 (got {accept:?})"
    )))
}

/// The media type of the request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// What a PATCH body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// A non-apply patch.
    Patch(PatchType),
    /// Server-side apply.
    Apply,
}

/// The patch kind of a PATCH request's content type; 415 otherwise.
pub fn patch_kind(headers: &HeaderMap) -> Result<PatchKind> {
    match content_type(headers).as_str() {
        "application/json-patch+json" => Ok(PatchKind::Patch(PatchType::Json)),
        "application/merge-patch+json" => Ok(PatchKind::Patch(PatchType::Merge)),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Patch(PatchType::Strategic)),
        "application/apply-patch+yaml" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(
            other,
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
                "application/strategic-merge-patch+json",
            ],
        )),
    }
}

/// Read the body, refusing more than [`MAX_BODY`] bytes with 413.
///
/// An oversized body is still read (and discarded, up to [`DRAIN_LIMIT`]) before the
/// 413 is sent, so the client receives the answer instead of a reset connection.
pub async fn read_body(body: Body) -> Result<bytes::Bytes> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total > DRAIN_LIMIT {
                break;
            }
            if total <= MAX_BODY {
                buf.extend_from_slice(&data);
            }
        }
    }
    if total > MAX_BODY {
        return Err(ApiError::too_large(MAX_BODY));
    }
    Ok(buf.freeze())
}

/// How much of an oversized body is drained before the connection is given up.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Decode a body as JSON, or as YAML when it is not JSON (apply and `application/yaml`).
pub fn decode(bytes: &[u8], yaml_allowed: bool) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            if !yaml_allowed {
                return Err(ApiError::bad_request(format!(
                    "the request body is not valid JSON: {json_err}"
                )));
            }
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
            // the default alias limits let a 250-byte body expand to a million events
            // (a YAML bomb, a tenth of a second or more and a large allocation before
            // it is refused); request bodies written by people or kubectl need few
            let options = serde_saphyr::options! {
                budget: serde_saphyr::budget! {
                    max_recorded_anchor_events: 10_000,
                },
                alias_limits: serde_saphyr::alias_limits! {
                    max_total_replayed_events: 10_000,
                },
            };
            serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })
        }
    }
}

/// Decode a POST/PUT body according to its content type: JSON, YAML, or protobuf for
/// the built-in kinds (see [`super::protobuf`]); 415 for other types.
pub fn decode_object(headers: &HeaderMap, bytes: &[u8]) -> Result<Value> {
    match content_type(headers).as_str() {
        "application/json" | "" => decode(bytes, false),
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode(bytes, true),
        super::protobuf::CONTENT_TYPE => super::protobuf::decode(bytes),
        other => Err(ApiError::unsupported_media_type(
            other,
            &[
                "application/json",
                "application/yaml",
                super::protobuf::CONTENT_TYPE,
            ],
        )),
    }
}

/// Options of a `watch` request.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// `resourceVersion` to start after (`None`/`0`: from the current state).
    pub resource_version: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds` (default 30 minutes).
    pub timeout: std::time::Duration,
}

impl WatchParams {
    /// From the query.
    pub fn from_query(q: &Query) -> Result<Self> {
        Ok(WatchParams {
            resource_version: q
                .get("resourceVersion")
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            send_initial_events: q.get("sendInitialEvents").map(|v| v == "true" || v == "1"),
            bookmarks: q.flag("allowWatchBookmarks"),
            timeout: std::time::Duration::from_secs(
                q.number("timeoutSeconds")?
                    .unwrap_or(1800)
                    .clamp(1, 24 * 3600),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn kubectl_get_negotiates_a_table() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert_eq!(
            negotiate(&h, &Query::default()).unwrap(),
            Output::Table(IncludeObject::Metadata)
        );
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        assert_eq!(negotiate(&h, &Query::default()).unwrap_err().code, 406);
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf, application/json"),
        );
        assert_eq!(negotiate(&h, &Query::default()).unwrap(), Output::Json);
    }

    #[test]
    fn yaml_bodies_decode_and_broken_ones_are_bad_requests() {
        let v = decode(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
            true,
        )
        .unwrap();
        assert_eq!(v["metadata"]["name"], "x");
        assert_eq!(decode(b"{not json", false).unwrap_err().code, 400);
        assert_eq!(decode(b"a: [unclosed", true).unwrap_err().code, 400);
    }

    #[test]
    fn a_yaml_bomb_body_is_a_bad_request() {
        // found by crates/fuzz: 250 bytes that expand to 8^6 scalars
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{p}"); 8].join(", ")
            ));
        }
        let started = std::time::Instant::now();
        assert_eq!(decode(text.as_bytes(), true).unwrap_err().code, 400);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // shared blocks still decode
        let v = decode(b"base: &b {a: 1}\nx: *b\ny: {<<: *b, c: 2}\n", true).unwrap();
        assert_eq!(v["y"]["a"], 1);
    }

    #[test]
    fn manager_defaults_to_user_agent_product() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static("kubectl/v1.32.4 (linux/amd64) kubernetes/abc"),
        );
        let q = Query::parse(Some("dryRun=All&fieldValidation=Strict")).unwrap();
        let w = q.write_options(&h).unwrap();
        assert_eq!(w.field_manager, "kubectl");
        assert!(w.dry_run);
        assert_eq!(w.field_validation, FieldValidation::Strict);
        assert_eq!(
            Query::parse(Some("dryRun=Some"))
                .unwrap()
                .dry_run()
                .unwrap_err()
                .code,
            400
        );
    }
}
