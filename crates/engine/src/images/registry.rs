//! Registries: the tags of an image repository and the manifest digest of a tag, read
//! over the OCI distribution API — what an ImageRepository scan needs.
//!
//! ```text
//! GET  /v2/<name>/tags/list?n=N          ──Link: <…>; rel="next"──▶ next page … ──▶ tags
//! HEAD /v2/<name>/manifests/<tag>        ──Docker-Content-Digest──▶ digest
//!      (GET and sha256 of the body when the header is missing)
//! GET  /v2/<name>/manifests/<ref>         ──checked sha256──▶ manifest   (artifacts)
//! GET  /v2/<name>/blobs/<digest>          ──checked sha256──▶ blob       (artifacts)
//! ```
//!
//! The last two ([`manifest`](RegistryClient::manifest), [`blob`](RegistryClient::blob))
//! pull artifacts such as Helm charts stored in a registry.
//!
//! Images are written `host[:port]/repository`; Docker Hub's short names (`nginx`,
//! `org/app`) mean `docker.io/library/nginx` and `docker.io/org/app`.
//!
//! **Authentication.** Every request goes out anonymously first. A `401` carries a
//! challenge: `Basic` is answered with the [`Credentials`] given (none given is an
//! error), `Bearer` by asking the challenge's token service for a pull token —
//! anonymously, or with the credentials as basic auth — and sending the request again
//! with it. The token lives for one call ([`tags`](RegistryClient::tags) with all its
//! pages, or [`digest`](RegistryClient::digest)). Credentials are never sent over plain
//! HTTP except to loopback addresses, and no error or log line holds a password or
//! token.
//!
//! **Pagination.** Registries that page tag lists (Docker Hub, GHCR, Harbor) send
//! `Link: </v2/<name>/tags/list?n=…&last=…>; rel="next"` while more remain. Pages are
//! followed, relative or absolute, on the same origin only, until there is no next
//! link; a next link seen before, or a page that adds no new tag, is a loop and an
//! error, and so is a repository with more than [`ScanOptions::max_tags`] tags.
//!
//! **Why oci-client and reqwest side by side.** [`oci_client::Client::auth`] does the
//! token dance (the `/v2/` challenge, the scope, the token request, both token JSON
//! spellings), so that is what it is used for. Its `list_tags` returns the parsed body
//! only, without the `Link` header that pagination needs, and its errors do not tell a
//! missing repository from a refused login; so the tag-list and manifest requests are
//! plain reqwest requests carrying the token it returned.

mod artifact;
mod call;
mod credentials;
mod headers;
mod target;

use std::collections::HashSet;
use std::time::Duration;

use oci_client::errors::OciDistributionError;
use reqwest::header::LINK;
use reqwest::{Method, Response, Url};
use sha2::{Digest, Sha256};

pub use artifact::Manifest;
pub use credentials::{Credentials, CredentialsError};

use super::reference::valid_tag;
use call::Call;
use target::Target;

/// What manifests are asked for with: OCI and Docker images and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest tag-list page read (a page of 1,000 long tags is well under 1 MiB).
const MAX_PAGE_BYTES: usize = 8 << 20;
/// The largest manifest read (distribution refuses manifests over 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// How much of an unexpected body an error shows.
const EXCERPT_BYTES: usize = 200;
/// Sent as `User-Agent`.
const USER_AGENT: &str = concat!("capstan/", env!("CARGO_PKG_VERSION"));

/// How a [`RegistryClient`] talks to registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// The bound of each HTTP request, from connecting until the body is read (token
    /// requests included). Default 30 seconds.
    pub timeout: Duration,
    /// How many tags each tag-list page asks for (`n`); registries may send fewer, or
    /// ignore it and send all. `0` counts as `1`. Default 1,000.
    pub page_size: usize,
    /// The most tags one repository may have; a scan that finds more fails with
    /// [`RegistryError::TooManyTags`] rather than growing without bound. Default 50,000.
    pub max_tags: usize,
    /// Plain HTTP instead of HTTPS. Allowed for loopback registries only (`127.0.0.0/8`,
    /// `[::1]`, `localhost`): any other host is refused with
    /// [`RegistryError::InsecureNotLoopback`] before a request is made. Default `false`.
    pub insecure: bool,
    /// PEM-encoded CA certificates trusted besides the system's (a registry with a
    /// certificate from a private CA; read from a file or a Secret). Default none.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any TLS certificate, unchecked. For test registries only. Default `false`.
    pub accept_invalid_certs: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            timeout: Duration::from_secs(30),
            page_size: 1000,
            max_tags: 50_000,
            insecure: false,
            ca_pem: None,
            accept_invalid_certs: false,
        }
    }
}

/// What went wrong reading a registry. Every variant names the image (or registry); none
/// holds a password or token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image is not `host[:port]/repository`.
    #[error("{image:?} is not an image repository: {reason}")]
    InvalidImage {
        /// What was given.
        image: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The tag is not one a registry allows.
    #[error("{tag:?} is not a valid tag (asked of {image})")]
    InvalidTag {
        /// The image.
        image: String,
        /// What was given.
        tag: String,
    },
    /// Plain HTTP was asked for a registry that is not on this machine.
    #[error(
        "refusing plain HTTP to {host} for {image}: insecure registries are allowed on loopback addresses only"
    )]
    InsecureNotLoopback {
        /// The image.
        image: String,
        /// Its registry host.
        host: String,
    },
    /// The token service of a challenge is plain HTTP elsewhere than loopback.
    #[error(
        "refusing to send the credentials for {image} to the token service {realm} over plain http (allowed to loopback addresses only)"
    )]
    ClearTextCredentials {
        /// The image.
        image: String,
        /// The token service (`realm` of the challenge).
        realm: String,
    },
    /// The HTTP client could not be built (TLS setup, CA certificates that are not PEM).
    #[error("building the registry HTTP client")]
    Client {
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry (or its token service) did not answer: refused, reset, TLS failure,
    /// timed out.
    #[error("registry {registry} is unreachable (reading {image})")]
    Unreachable {
        /// The host that did not answer.
        registry: String,
        /// The image.
        image: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The token service did not answer within [`ScanOptions::timeout`].
    #[error("the token service {realm} did not answer within {timeout:?} (reading {image})")]
    TokenTimeout {
        /// The image.
        image: String,
        /// The token service.
        realm: String,
        /// The bound.
        timeout: Duration,
    },
    /// The token service answered something that is not a token.
    #[error("getting a token for {image} from {realm}")]
    Token {
        /// The image.
        image: String,
        /// The token service.
        realm: String,
        /// Cause.
        #[source]
        source: OciDistributionError,
    },
    /// `401`/`403` without credentials.
    #[error("the registry requires credentials for {image} and none were given")]
    AuthenticationRequired {
        /// The image.
        image: String,
    },
    /// `401`/`403` with credentials (from the registry or its token service).
    #[error("the registry refused the credentials of user {username:?} for {image}")]
    AuthenticationFailed {
        /// The image.
        image: String,
        /// The user whose credentials were refused.
        username: String,
    },
    /// `404` for the tag list.
    #[error("repository {image} does not exist")]
    RepositoryNotFound {
        /// The image.
        image: String,
    },
    /// `404` for a manifest.
    #[error("{image}:{tag} does not exist (no such tag, or no such repository)")]
    TagNotFound {
        /// The image.
        image: String,
        /// The tag.
        tag: String,
    },
    /// `404` for a blob.
    #[error("blob {digest} of {image} does not exist")]
    BlobNotFound {
        /// The image.
        image: String,
        /// The blob's digest.
        digest: String,
    },
    /// A manifest or blob whose sha256 is not the one it was asked for (or announced
    /// with): it is not used.
    #[error("{image}@{reference}: the content's digest is {actual}, expected {expected}")]
    DigestMismatch {
        /// The image.
        image: String,
        /// The tag or digest asked for.
        reference: String,
        /// The digest asked for, or the one the registry announced.
        expected: String,
        /// The sha256 of what was received.
        actual: String,
    },
    /// Any other status that is not success.
    #[error("{image}: {request} answered HTTP {status}: {excerpt:?}")]
    Status {
        /// The image.
        image: String,
        /// `GET /v2/…` (path only).
        request: String,
        /// The status.
        status: u16,
        /// The start of the body (at most 200 bytes).
        excerpt: String,
    },
    /// The tag list is not JSON.
    #[error("{image}: the tag list is not JSON (body starts {excerpt:?})")]
    TagListNotJson {
        /// The image.
        image: String,
        /// The start of the body (at most 200 bytes).
        excerpt: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The tag list is JSON but not `{"name": …, "tags": [strings]}`.
    #[error("{image}: the tag list {problem} (body starts {excerpt:?})")]
    TagListShape {
        /// The image.
        image: String,
        /// What is wrong: `is not a JSON object`, `has no "tags"`, `has "tags" that is
        /// not a list of strings`.
        problem: &'static str,
        /// The start of the body (at most 200 bytes).
        excerpt: String,
    },
    /// A body larger than the client reads.
    #[error("{image}: the answer to {request} is larger than {limit} bytes")]
    TooLarge {
        /// The image.
        image: String,
        /// `GET /v2/…` (path only).
        request: String,
        /// The bound.
        limit: usize,
    },
    /// More tags than [`ScanOptions::max_tags`].
    #[error("{image} has more than {limit} tags (ScanOptions::max_tags)")]
    TooManyTags {
        /// The image.
        image: String,
        /// The bound.
        limit: usize,
    },
    /// The tag-list pages go round in a circle.
    #[error("{image}: the tag list pages loop ({why}, at {link})")]
    PaginationLoop {
        /// The image.
        image: String,
        /// The next link that closes the loop.
        link: String,
        /// `the next link was followed before` or `a page added no new tag`.
        why: &'static str,
    },
    /// A next link that cannot be followed.
    #[error("{image}: cannot follow the tag list's next link {link:?}: {reason}")]
    BadNextLink {
        /// The image.
        image: String,
        /// The link as sent.
        link: String,
        /// Why: not a URL, or another origin.
        reason: &'static str,
    },
    /// A digest that is not `sha256:<64 hex digits>`.
    #[error("{image}:{tag}: the registry's digest {digest:?} is not sha256:<64 hex digits>")]
    BadDigest {
        /// The image.
        image: String,
        /// The tag.
        tag: String,
        /// What the registry sent (at most 200 bytes).
        digest: String,
    },
}

/// The registry host whose credentials an image needs, as a docker config keys it:
/// `docker.io` for Docker Hub names (`nginx`, `index.docker.io/org/app`), else the host
/// as written, lower case (`ghcr.io`, `127.0.0.1:5000`).
pub fn registry_host(image: &str) -> Result<String, RegistryError> {
    Target::parse(image, false).map(|t| t.registry)
}

/// Reads tags and digests from OCI registries; see the [module documentation](self).
/// One client serves any number of registries and calls at once.
pub struct RegistryClient {
    options: ScanOptions,
    http: reqwest::Client,
    oci: oci_client::Client,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with `options` (installs the process's ring crypto provider if none is).
    pub fn new(options: ScanOptions) -> Result<RegistryClient, RegistryError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_pem = options.ca_pem.clone();
        let mut http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(USER_AGENT)
            .danger_accept_invalid_certs(options.accept_invalid_certs);
        if let Some(pem) = &ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RegistryError::Client { source: e.into() })?;
            http = http.tls_certs_merge(certs);
        }
        let http = http
            .build()
            .map_err(|e| RegistryError::Client { source: e.into() })?;
        let protocol = if options.insecure {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        };
        let oci = oci_client::Client::try_from(oci_client::client::ClientConfig {
            protocol,
            read_timeout: Some(options.timeout),
            connect_timeout: Some(options.timeout),
            user_agent: USER_AGENT,
            accept_invalid_certificates: options.accept_invalid_certs,
            extra_root_certificates: ca_pem
                .into_iter()
                .map(|data| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data,
                })
                .collect(),
            ..Default::default()
        })
        .map_err(|e| RegistryError::Client { source: e.into() })?;
        Ok(RegistryClient { options, http, oci })
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ScanOptions {
        &self.options
    }

    /// Every tag of `image` (`host[:port]/repository`), in the order the registry sent
    /// them, each once, following `Link` pages to the end.
    pub async fn tags(
        &self,
        image: &str,
        creds: Option<&Credentials>,
    ) -> Result<Vec<String>, RegistryError> {
        let target = Target::parse(image, self.options.insecure)?;
        let mut call = Call::new(self, &target, creds);
        let first = format!(
            "v2/{}/tags/list?n={}",
            target.repository,
            self.options.page_size.max(1)
        );
        let mut url = target.url(&first)?;
        let mut followed: HashSet<Url> = HashSet::from([url.clone()]);
        let mut seen: HashSet<String> = HashSet::new();
        let mut tags: Vec<String> = Vec::new();
        let mut pages = 0usize;
        loop {
            let resp = call.send(Method::GET, &url, "application/json").await?;
            let resp = call
                .check(resp, &Method::GET, &url, |image| {
                    RegistryError::RepositoryNotFound { image }
                })
                .await?;
            let next = headers::next_link(
                resp.headers()
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            let body = call.body(resp, &url, MAX_PAGE_BYTES).await?;
            pages += 1;
            let before = tags.len();
            for tag in parse_tag_list(&target.image, &body)? {
                if seen.insert(tag.clone()) {
                    tags.push(tag);
                }
            }
            if tags.len() > self.options.max_tags {
                return Err(RegistryError::TooManyTags {
                    image: target.image.clone(),
                    limit: self.options.max_tags,
                });
            }
            let Some(link) = next else { break };
            let next_url = target.follow(&url, &link)?;
            let why = if tags.len() == before {
                Some("a page added no new tag")
            } else if !followed.insert(next_url.clone()) {
                Some("the next link was followed before")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(RegistryError::PaginationLoop {
                    image: target.image.clone(),
                    link,
                    why,
                });
            }
            url = next_url;
        }
        tracing::debug!(image = %target.image, pages, tags = tags.len(), "listed tags");
        Ok(tags)
    }

    /// The manifest digest (`sha256:…`) of `image:tag`: the `Docker-Content-Digest` of
    /// a `HEAD` of the manifest, or, when the registry sends none, the sha256 of the
    /// manifest a `GET` returns. OCI and Docker images and indexes are accepted, so a
    /// multi-platform tag gives its index's digest.
    pub async fn digest(
        &self,
        image: &str,
        tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let target = Target::parse(image, self.options.insecure)?;
        if !valid_tag(tag) {
            return Err(RegistryError::InvalidTag {
                image: target.image.clone(),
                tag: tag.to_string(),
            });
        }
        let mut call = Call::new(self, &target, creds);
        let url = target.url(&format!("v2/{}/manifests/{tag}", target.repository))?;
        let not_found = |image| RegistryError::TagNotFound {
            image,
            tag: tag.to_string(),
        };
        let resp = call.send(Method::HEAD, &url, MANIFEST_ACCEPT).await?;
        let resp = call.check(resp, &Method::HEAD, &url, not_found).await?;
        let digest = match resp.headers().get("docker-content-digest") {
            Some(value) => String::from_utf8_lossy(value.as_bytes()).trim().to_string(),
            None => {
                let resp = call.send(Method::GET, &url, MANIFEST_ACCEPT).await?;
                let resp = call.check(resp, &Method::GET, &url, not_found).await?;
                let body = call.body(resp, &url, MAX_MANIFEST_BYTES).await?;
                format!("sha256:{}", hex::encode(Sha256::digest(&body)))
            }
        };
        if !is_sha256_digest(&digest) {
            return Err(RegistryError::BadDigest {
                image: target.image.clone(),
                tag: tag.to_string(),
                digest: excerpt(digest.as_bytes()),
            });
        }
        Ok(digest)
    }
}

/// The tags of one tag-list page: `{"name": …, "tags": [strings]}` (`"tags": null`
/// counts as none, as some registries send for an empty repository).
fn parse_tag_list(image: &str, body: &[u8]) -> Result<Vec<String>, RegistryError> {
    let shape = |problem| RegistryError::TagListShape {
        image: image.to_string(),
        problem,
        excerpt: excerpt(body),
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|source| RegistryError::TagListNotJson {
            image: image.to_string(),
            excerpt: excerpt(body),
            source,
        })?;
    let object = value
        .as_object()
        .ok_or_else(|| shape("is not a JSON object"))?;
    match object.get("tags") {
        None => Err(shape("has no \"tags\"")),
        Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| shape("has \"tags\" that is not a list of strings")),
        Some(_) => Err(shape("has \"tags\" that is not a list of strings")),
    }
}

/// The first bytes of an error answer's body (enough for an excerpt; a failed read
/// leaves it shorter).
async fn first_bytes(mut resp: Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < EXCERPT_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body
}

/// The first 200 bytes of `body` as text (lossy), for messages.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]).into_owned()
}

/// `sha256:` and 64 lower-case hex digits.
fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_must_be_an_object_with_a_list_of_strings() {
        let tags = parse_tag_list("r/app", br#"{"name":"app","tags":["b","a"]}"#).unwrap();
        assert_eq!(tags, ["b", "a"]);
        assert!(
            parse_tag_list("r/app", br#"{"name":"app","tags":null}"#)
                .unwrap()
                .is_empty()
        );
        let cases: [(&[u8], &str); 5] = [
            (b"<html>hello</html>", "not JSON"),
            (br#"["a"]"#, "not a JSON object"),
            (br#"{"name":"app"}"#, "no \"tags\""),
            (br#"{"tags":[1,2]}"#, "not a list of strings"),
            (br#"{"tags":"a"}"#, "not a list of strings"),
        ];
        for (body, expected) in cases {
            let e = parse_tag_list("r/app", body).unwrap_err().to_string();
            assert!(e.contains(expected) && e.contains("r/app"), "{e}");
        }
        let long = format!("<p>{}</p>", "x".repeat(1000));
        let e = parse_tag_list("r/app", long.as_bytes()).unwrap_err();
        let RegistryError::TagListNotJson { excerpt, .. } = e else {
            panic!("{e}");
        };
        assert_eq!(excerpt.len(), EXCERPT_BYTES);
    }

    #[test]
    fn digests_are_sha256_with_64_hex_digits() {
        assert!(is_sha256_digest(&format!("sha256:{}", "0a".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0A".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha512:{}", "0a".repeat(64))));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(!is_sha256_digest(""));
    }

    #[test]
    fn default_options_are_documented_values() {
        let o = ScanOptions::default();
        assert_eq!(
            (o.timeout, o.page_size, o.max_tags, o.insecure),
            (Duration::from_secs(30), 1000, 50_000, false)
        );
        assert_eq!((o.ca_pem, o.accept_invalid_certs), (None, false));
    }
}
