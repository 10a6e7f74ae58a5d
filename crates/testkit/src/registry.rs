//! A real OCI registry on loopback: Debian's `docker-registry` (distribution 2.8), run
//! by the test, with anonymous, basic or bearer-token auth, and helpers to push images.
//!
//! [`RegistryServer::start`] writes a registry configuration into a temporary directory
//! (filesystem storage there, deletes enabled, `http.addr` on `127.0.0.1:<free port>`)
//! and runs `/usr/bin/docker-registry serve` until the server is dropped. The auth
//! modes are:
//!
//! - [`RegistryAuth::Anonymous`] — no `auth` section: anyone pulls and pushes.
//! - [`RegistryAuth::Basic`] — `auth.htpasswd` with a bcrypt htpasswd file holding the
//!   one user.
//! - [`RegistryAuth::Token`] — `auth.token`: the registry answers `401` with a `Bearer`
//!   challenge naming a small token server that runs in this process on loopback. It
//!   checks the basic credentials of `GET /token?service=…&scope=…` and answers with an
//!   ES256 JWT whose `x5c` header carries a self-signed certificate, the one the registry
//!   trusts as its `rootcertbundle`. Every token request is recorded
//!   ([`token_requests`](RegistryServer::token_requests)), so a test can show that a
//!   client went through the bearer flow.
//!
//! Images are pushed over the distribution API with the server's own credentials
//! (basic, or a bearer token fetched through the challenge like any client does):
//! [`push_image`](RegistryServer::push_image) uploads a config blob and one layer (an
//! uncompressed tar holding one small file), both unique to the repository and tag, and
//! puts an OCI image manifest under the tag. The same repository and tag give the same
//! digest on every run.
//!
//! Distribution 2.8 ignores `n` and `last` on `GET /v2/<name>/tags/list`: it sends every
//! tag at once, in no particular order, without a `Link` header. It does paginate
//! `GET /v2/_catalog?n=…` with `Link: </v2/_catalog?last=…&n=…>; rel="next"`.
//!
//! [`paging_front`](RegistryServer::paging_front) puts a [`PagingFront`] before the
//! registry: a real front over the real registry that forwards every request as it is
//! but answers tag lists page by page with `Link` headers, as Docker Hub and GHCR do.
//!
//! The HTTP helpers run on a thread of their own, so they may be called from inside an
//! async runtime (a `#[tokio::test]`).
//!
//! ```no_run
//! use capstan_testkit::registry::{RegistryAuth, RegistryServer};
//! let registry = RegistryServer::start(RegistryAuth::basic("alice", "s3cret"));
//! let digest = registry.push_image("team/app", "v1.2.0");
//! println!("{} is {digest}", registry.image("team/app"));
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

pub mod paging;

pub use paging::{FrontRequest, PagingFront};

/// Where Debian's `docker-registry` package installs the registry.
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
/// Where Debian's `skopeo` package installs skopeo.
pub const SKOPEO: &str = "/usr/bin/skopeo";
/// The `service` of the token auth mode: the registry's `auth.token.service`, the
/// `service` of its challenge and the `aud` of the tokens.
pub const TOKEN_SERVICE: &str = "capstan-test-registry";
/// The `iss` of the tokens, the registry's `auth.token.issuer`.
pub const TOKEN_ISSUER: &str = "capstan-testkit-token-server";
/// The realm of the registry's basic auth (and of the token server's `401`s).
pub const REALM: &str = "capstan-test";
/// How long a token is valid (`expires_in`, `exp - iat`), in seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// The media type of the manifests [`push_image`](RegistryServer::push_image) puts.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of the image config blobs.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The media type of the (uncompressed tar) layers.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// What manifests are asked for with: OCI and Docker images and indexes.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// How long the registry may take to answer `/v2/` after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How many ports are tried before giving up (another process may take a port between
/// the probe and the registry binding it).
const PORT_ATTEMPTS: usize = 8;
/// How many tags [`push_tags`](RegistryServer::push_tags) pushes at once.
pub const PUSH_WORKERS: usize = 4;
/// The bound of one HTTP request made by the helpers.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of the registry's log a failing test shows.
const LOG_TAIL_LINES: usize = 200;
/// How long the token server waits for a client's request.
const TOKEN_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may use the registry; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No auth: anyone pulls and pushes.
    Anonymous,
    /// HTTP basic auth against an htpasswd file (bcrypt) holding one user.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// Bearer tokens from the in-process token server, which requires these basic
    /// credentials.
    Token {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl RegistryAuth {
    /// [`RegistryAuth::Basic`] with `user` / `password`.
    pub fn basic(user: impl Into<String>, password: impl Into<String>) -> RegistryAuth {
        RegistryAuth::Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    /// [`RegistryAuth::Token`] with `user` / `password`.
    pub fn token(user: impl Into<String>, password: impl Into<String>) -> RegistryAuth {
        RegistryAuth::Token {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The user and password clients need, `None` when anonymous.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password } => {
                Some((user, password))
            }
        }
    }
}

/// How to start a [`RegistryServer`]: the auth mode and the registry binary.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Who may use the registry.
    pub auth: RegistryAuth,
    /// The registry program, [`DOCKER_REGISTRY`] by default.
    pub binary: PathBuf,
}

impl RegistryOptions {
    /// Options for `auth` with the Debian registry binary.
    pub fn new(auth: RegistryAuth) -> RegistryOptions {
        RegistryOptions {
            auth,
            binary: PathBuf::from(DOCKER_REGISTRY),
        }
    }

    /// Run `binary` instead of [`DOCKER_REGISTRY`].
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> RegistryOptions {
        self.binary = binary.into();
        self
    }
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The request path, `/token` for token requests.
    pub path: String,
    /// The `service` query parameter, if any.
    pub service: Option<String>,
    /// The `scope` query parameters (decoded), e.g. `repository:team/app:pull,push`.
    pub scopes: Vec<String>,
    /// The user whose basic credentials were right; `None` when there were none or
    /// they were wrong.
    pub user: Option<String>,
    /// The HTTP status sent: `200` with a token, `401` for missing or wrong credentials.
    pub status: u16,
}

/// A response of the registry's API, as [`api_get`](RegistryServer::api_get) got it.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The response headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// The first header named `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("registry answered non-JSON ({e}): {}", self.text()))
    }
}

/// A running `docker-registry` on loopback; see the [module documentation](self).
///
/// The registry process is killed when this is dropped, the token server (if any) is
/// stopped, and the temporary directory with the configuration and storage is removed.
pub struct RegistryServer {
    port: u16,
    auth: RegistryAuth,
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    token_server: Option<TokenServer>,
    /// Bearer tokens the helpers fetched, by repository (`""` for none).
    tokens: Mutex<HashMap<String, String>>,
    // Declared last: removed after the child is killed.
    dir: tempfile::TempDir,
}

impl RegistryServer {
    /// Start the registry with `auth` on `127.0.0.1:<free port>`; see
    /// [`start_with`](Self::start_with).
    pub fn start(auth: RegistryAuth) -> RegistryServer {
        RegistryServer::start_with(RegistryOptions::new(auth))
    }

    /// Start the registry as `opts` say.
    ///
    /// Returns once `GET /v2/` answers (`200`, or `401` with auth). Panics with a clear
    /// message when the registry binary is missing (install the Debian package
    /// `docker-registry`), and with the registry's log when it does not come up within
    /// 20 seconds.
    pub fn start_with(opts: RegistryOptions) -> RegistryServer {
        let RegistryOptions { auth, binary } = opts;
        assert!(
            binary.is_file(),
            "{} is missing; the registry tests need a real OCI registry and are not skipped: \
             install the Debian package docker-registry (scripts/test does)",
            binary.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("capstan-registry-")
            .tempdir()
            .expect("tempdir for the registry");
        let base = dir.path().to_path_buf();
        let storage = base.join("storage");
        std::fs::create_dir(&storage)
            .unwrap_or_else(|e| panic!("creating {}: {e}", storage.display()));

        let mut token_server = None;
        let auth_section = match &auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Basic { user, password } => {
                let htpasswd = base.join("htpasswd");
                std::fs::write(&htpasswd, htpasswd_line(user, password))
                    .unwrap_or_else(|e| panic!("writing {}: {e}", htpasswd.display()));
                format!(
                    "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                    yaml_str(REALM),
                    yaml_str(&htpasswd.display().to_string())
                )
            }
            RegistryAuth::Token { user, password } => {
                let signer = TokenSigner::generate();
                let bundle = base.join("token-signer.crt");
                std::fs::write(&bundle, &signer.cert_pem)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", bundle.display()));
                let server = TokenServer::start(user, password, signer);
                let section = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    yaml_str(&server.realm()),
                    yaml_str(TOKEN_SERVICE),
                    yaml_str(TOKEN_ISSUER),
                    yaml_str(&bundle.display().to_string())
                );
                token_server = Some(server);
                section
            }
        };

        let config = base.join("config.yml");
        let log = base.join("registry.log");
        let mut server = RegistryServer {
            port: 0,
            auth,
            binary,
            config,
            log,
            child: None,
            token_server,
            tokens: Mutex::new(HashMap::new()),
            dir,
        };
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            server.port = port;
            std::fs::write(
                &server.config,
                registry_config(&storage, port, &auth_section),
            )
            .unwrap_or_else(|e| panic!("writing {}: {e}", server.config.display()));
            // The log of an attempt that lost its port is not kept.
            std::fs::write(&server.log, "")
                .unwrap_or_else(|e| panic!("writing {}: {e}", server.log.display()));
            let mut child = server.spawn();
            match wait_ready(&mut child, port, &server.log) {
                Ok(()) => {
                    server.child = Some(child);
                    return server;
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = server.log();
                    assert!(
                        lost_port(&log),
                        "docker-registry on 127.0.0.1:{port} did not come up: {why}\nconfig.yml:\n{}\nregistry log:\n{log}",
                        std::fs::read_to_string(&server.config).unwrap_or_default()
                    );
                }
            }
        }
        panic!(
            "docker-registry could not bind a free port on 127.0.0.1 in {PORT_ATTEMPTS} attempts; log:\n{}",
            server.log()
        );
    }

    fn spawn(&self) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log.display()));
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // REGISTRY_* variables override the configuration file.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(name);
            }
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()))
    }

    /// The port on `127.0.0.1` the registry listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the registry host in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<repo>`, the image reference without tag or digest.
    pub fn image(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{}", self.port, repo.trim_matches('/'))
    }

    /// A [`PagingFront`] over this registry on a port of its own, answering tag lists in
    /// pages of at most `page_size` tags; images through it are
    /// [`PagingFront::image`]. It keeps forwarding to the same port across a
    /// [`restart`](Self::restart).
    pub fn paging_front(&self, page_size: usize) -> PagingFront {
        PagingFront::start(SocketAddr::from(([127, 0, 0, 1], self.port)), page_size)
    }

    /// The auth mode the registry was started with.
    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    /// The user and password clients need, `None` when anonymous.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.credentials()
    }

    /// The token server's endpoint, `http://127.0.0.1:TPORT/token` (the `realm` of the
    /// registry's challenge), in the token auth mode.
    pub fn token_url(&self) -> Option<String> {
        self.token_server.as_ref().map(TokenServer::realm)
    }

    /// Every request the token server answered so far, oldest first (empty unless the
    /// auth mode is [`RegistryAuth::Token`]).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.token_server
            .as_ref()
            .map(|t| lock(&t.shared.requests).clone())
            .unwrap_or_default()
    }

    /// The directory holding `config.yml`, `registry.log`, the storage and the auth
    /// files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's configuration file.
    pub fn config(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    /// What the registry logged so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the registry process is running (not [stopped](Self::stop), not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kill the registry now (the token server keeps running), e.g. to test a registry
    /// that is down. Storage is kept: [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the registry again on the same port with the same configuration and
    /// storage (stopping it first if it runs). Panics with the log when it does not
    /// come up, e.g. because another process took the port meanwhile.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = self.spawn();
        if let Err(why) = wait_ready(&mut child, self.port, &self.log) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "docker-registry did not come back on 127.0.0.1:{}: {why}\nregistry log:\n{}",
                self.port,
                self.log()
            );
        }
        self.child = Some(child);
    }

    /// Push a small image as `repo:tag` and return its manifest digest (`sha256:…`).
    ///
    /// The image has an OCI config and one uncompressed tar layer holding
    /// `capstan-image.txt`, both naming `repo` and `tag`, so each repository and tag
    /// has its own digest, the same on every run. Panics with the registry's answer
    /// when a request fails.
    pub fn push_image(&self, repo: &str, tag: &str) -> String {
        self.with_client(|c| self.push_one(c, repo, tag))
    }

    /// [`push_image`](Self::push_image) for each of `tags`, returning their digests in
    /// the same order.
    ///
    /// Up to [`PUSH_WORKERS`] tags are pushed at once.
    pub fn push_tags(&self, repo: &str, tags: &[&str]) -> Vec<String> {
        let chunk = tags.len().div_ceil(PUSH_WORKERS).max(1);
        thread::scope(|s| {
            let workers: Vec<_> = tags
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        self.with_client(|c| {
                            part.iter()
                                .map(|t| self.push_one(c, repo, t))
                                .collect::<Vec<_>>()
                        })
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// Put the manifest of `repo:from_tag` under `to_tag` as well (the same bytes, so
    /// the same digest, which is returned). Panics when `from_tag` does not exist.
    pub fn tag_existing(&self, repo: &str, from_tag: &str, to_tag: &str) -> String {
        self.with_client(|c| {
            let url = self.api_url(&format!("/v2/{repo}/manifests/{from_tag}"));
            let resp = self.send(c, Some(repo), |c| {
                c.get(&url).header("Accept", MANIFEST_ACCEPT)
            });
            let resp = expect_status(resp, &[StatusCode::OK], &format!("GET {url}"));
            let media_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(OCI_MANIFEST)
                .to_string();
            let bytes = resp.bytes().map(|b| b.to_vec()).unwrap_or_else(|e| {
                panic!("reading the manifest of {repo}:{from_tag}: {e}");
            });
            self.put_manifest(c, repo, to_tag, &media_type, &bytes)
        })
    }

    /// The digest of `repo:reference` (a tag or digest) as the registry answers a
    /// `HEAD` of the manifest, `None` when it is not there.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        self.with_client(|c| {
            let url = self.api_url(&format!("/v2/{repo}/manifests/{reference}"));
            let resp = self.send(c, Some(repo), |c| {
                c.head(&url).header("Accept", MANIFEST_ACCEPT)
            });
            match resp.status() {
                StatusCode::NOT_FOUND => None,
                StatusCode::OK => Some(
                    header(&resp, "docker-content-digest")
                        .unwrap_or_else(|| panic!("HEAD {url} answered without a digest")),
                ),
                _ => {
                    expect_status(resp, &[StatusCode::OK], &format!("HEAD {url}"));
                    None
                }
            }
        })
    }

    /// The tags of `repo`, sorted (empty when the repository does not exist).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let resp = self.api_get(&format!("/v2/{repo}/tags/list"));
        if resp.status == 404 {
            return Vec::new();
        }
        assert_eq!(resp.status, 200, "tags of {repo}: {}", resp.text());
        let mut tags: Vec<String> = resp.json()["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Delete the manifest `digest` of `repo` (`DELETE /v2/<repo>/manifests/<digest>`);
    /// the registry drops the tags pointing to it too. Panics unless it answers `202`.
    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        self.with_client(|c| {
            let url = self.api_url(&format!("/v2/{repo}/manifests/{digest}"));
            let resp = self.send(c, Some(repo), |c| c.delete(&url));
            expect_status(resp, &[StatusCode::ACCEPTED], &format!("DELETE {url}"));
        })
    }

    /// Delete the tag `tag` of `repo`, keeping its manifest (and other tags of it).
    ///
    /// Distribution 2.8 has no API for this (`DELETE /v2/<repo>/manifests/<tag>` is
    /// refused with `DIGEST_INVALID`), so the tag's link is removed from the storage
    /// directory, `…/repositories/<repo>/_manifests/tags/<tag>`; the registry runs
    /// without a cache and sees it at once. Panics when the tag does not exist.
    pub fn delete_tag(&self, repo: &str, tag: &str) {
        assert!(
            !tag.is_empty()
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !tag.starts_with(['.', '-']),
            "not a tag: {tag:?}"
        );
        assert!(
            repo.split('/')
                .all(|part| !part.is_empty() && part != "." && part != ".."),
            "not a repository name: {repo:?}"
        );
        let tag_dir = self
            .dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag);
        assert!(
            tag_dir.is_dir(),
            "{repo}:{tag} is not in the registry's storage ({})",
            tag_dir.display()
        );
        std::fs::remove_dir_all(&tag_dir)
            .unwrap_or_else(|e| panic!("removing {}: {e}", tag_dir.display()));
    }

    /// `GET` `path_and_query` (e.g. `/v2/_catalog?n=10`) on the registry with the
    /// server's credentials (basic, or a bearer token fetched through the challenge) and
    /// return the response as it came, whatever its status. Panics when the registry
    /// cannot be reached.
    pub fn api_get(&self, path_and_query: &str) -> ApiResponse {
        let repo = repo_of_path(path_and_query);
        self.with_client(|c| {
            let url = self.api_url(path_and_query);
            let resp = self.send(c, repo.as_deref(), |c| c.get(&url));
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = resp
                .bytes()
                .map(|b| b.to_vec())
                .unwrap_or_else(|e| panic!("reading GET {url}: {e}"));
            ApiResponse {
                status,
                headers,
                body,
            }
        })
    }

    fn api_url(&self, path_and_query: &str) -> String {
        format!("{}/{}", self.url(), path_and_query.trim_start_matches('/'))
    }

    /// Run `f` with a fresh blocking client on a thread of its own: a blocking reqwest
    /// client must not be used (or dropped) on an async runtime's thread.
    fn with_client<T: Send>(&self, f: impl FnOnce(&Client) -> T + Send) -> T {
        thread::scope(|s| {
            let worker = s.spawn(|| {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = Client::builder()
                    .timeout(HTTP_TIMEOUT)
                    .no_proxy()
                    .build()
                    .expect("a blocking HTTP client");
                f(&client)
            });
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Send the request `build` makes with the server's credentials: basic auth, or a
    /// bearer token — the one cached for `repo`, else (on a `401` with a `Bearer`
    /// challenge) one fetched from the challenge's realm, and the request sent again.
    fn send(
        &self,
        client: &Client,
        repo: Option<&str>,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Response {
        let key = repo.unwrap_or("").to_string();
        let with_auth = |token: Option<&str>| -> Response {
            let mut req = build(client);
            match (&self.auth, token) {
                (RegistryAuth::Basic { user, password }, _) => {
                    req = req.basic_auth(user, Some(password));
                }
                (RegistryAuth::Token { .. }, Some(t)) => req = req.bearer_auth(t),
                _ => {}
            }
            req.send()
                .unwrap_or_else(|e| panic!("registry at {} unreachable: {e}", self.url()))
        };
        let RegistryAuth::Token { user, password } = &self.auth else {
            return with_auth(None);
        };
        let cached = lock(&self.tokens).get(&key).cloned();
        let resp = with_auth(cached.as_deref());
        if resp.status() != StatusCode::UNAUTHORIZED {
            return resp;
        }
        let Some(challenge) = header(&resp, "www-authenticate") else {
            return resp;
        };
        let params = parse_challenge(&challenge)
            .unwrap_or_else(|| panic!("the registry's challenge is not Bearer: {challenge}"));
        let realm = params
            .get("realm")
            .unwrap_or_else(|| panic!("the registry's challenge has no realm: {challenge}"));
        let mut query = Vec::new();
        if let Some(service) = params.get("service") {
            query.push(format!("service={}", encode_query(service)));
        }
        if let Some(scope) = params.get("scope") {
            query.push(format!("scope={}", encode_query(scope)));
        }
        if let Some(repo) = repo {
            let scope = format!("repository:{repo}:pull,push,delete");
            query.push(format!("scope={}", encode_query(&scope)));
        }
        let token_url = format!("{realm}?{}", query.join("&"));
        let token_resp = client
            .get(&token_url)
            .basic_auth(user, Some(password))
            .send()
            .unwrap_or_else(|e| panic!("token server {realm} unreachable: {e}"));
        let token_resp = expect_status(token_resp, &[StatusCode::OK], &format!("GET {token_url}"));
        let body: serde_json::Value = token_resp
            .bytes()
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| panic!("token server at {realm} answered no JSON"));
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .unwrap_or_else(|| panic!("token server answered no token: {body}"))
            .to_string();
        lock(&self.tokens).insert(key, token.clone());
        with_auth(Some(&token))
    }

    fn push_one(&self, client: &Client, repo: &str, tag: &str) -> String {
        let image = TestImage::new(repo, tag);
        self.upload_blob(client, repo, &image.config);
        self.upload_blob(client, repo, &image.layer);
        let digest = self.put_manifest(client, repo, tag, OCI_MANIFEST, &image.manifest);
        assert_eq!(
            digest,
            sha256_digest(&image.manifest),
            "the registry's digest of {repo}:{tag}"
        );
        digest
    }

    /// Upload `blob` to `repo` unless it is there: `POST /v2/<repo>/blobs/uploads/`, then
    /// `PUT <location>&digest=…` with the whole blob.
    fn upload_blob(&self, client: &Client, repo: &str, blob: &[u8]) {
        let digest = sha256_digest(blob);
        let blob_url = self.api_url(&format!("/v2/{repo}/blobs/{digest}"));
        if self
            .send(client, Some(repo), |c| c.head(&blob_url))
            .status()
            == StatusCode::OK
        {
            return;
        }
        let start_url = self.api_url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.send(client, Some(repo), |c| {
            c.post(&start_url).header("Content-Length", "0")
        });
        let resp = expect_status(resp, &[StatusCode::ACCEPTED], &format!("POST {start_url}"));
        let location = header(&resp, "location")
            .unwrap_or_else(|| panic!("POST {start_url} answered without a Location"));
        let location = if location.starts_with('/') {
            format!("{}{location}", self.url())
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={}", encode_query(&digest));
        let resp = self.send(client, Some(repo), |c| {
            c.put(&put_url)
                .header("Content-Type", "application/octet-stream")
                .body(blob.to_vec())
        });
        let resp = expect_status(resp, &[StatusCode::CREATED], &format!("PUT {put_url}"));
        if let Some(got) = header(&resp, "docker-content-digest") {
            assert_eq!(got, digest, "the registry's digest of a blob of {repo}");
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest the registry answers.
    fn put_manifest(
        &self,
        client: &Client,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> String {
        let url = self.api_url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.send(client, Some(repo), |c| {
            c.put(&url)
                .header("Content-Type", media_type)
                .body(manifest.to_vec())
        });
        let resp = expect_status(resp, &[StatusCode::CREATED], &format!("PUT {url}"));
        header(&resp, "docker-content-digest").unwrap_or_else(|| sha256_digest(manifest))
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
        self.token_server.take();
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            if !tail.trim().is_empty() {
                eprintln!(
                    "[capstan-testkit] docker-registry on 127.0.0.1:{} logged (last {} of {} lines):\n{tail}",
                    self.port,
                    LOG_TAIL_LINES.min(lines.len()),
                    lines.len()
                );
            }
        }
    }
}

/// skopeo, for tests that check the registry with a real client. Panics with a clear
/// message when it is missing: tests never skip without it.
pub fn skopeo() -> PathBuf {
    let path = Path::new(SKOPEO);
    assert!(
        path.is_file(),
        "{SKOPEO} is missing; the registry tests check images with a real client and are \
         not skipped: install the Debian package skopeo (scripts/test does)"
    );
    path.to_path_buf()
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Return `resp` if its status is one of `ok`, else panic with `what`, the status and
/// the body.
fn expect_status(resp: Response, ok: &[StatusCode], what: &str) -> Response {
    if ok.contains(&resp.status()) {
        return resp;
    }
    let status = resp.status();
    let challenge = header(&resp, "www-authenticate");
    let body = resp.text().unwrap_or_default();
    panic!(
        "{what}: {status}{}\n{body}",
        challenge
            .map(|c| format!(" (WWW-Authenticate: {c})"))
            .unwrap_or_default()
    );
}

/// The repository a `/v2/<name>/(tags|manifests|blobs)/…` path is about.
fn repo_of_path(path_and_query: &str) -> Option<String> {
    let path = path_and_query.split('?').next()?.trim_start_matches('/');
    let rest = path.strip_prefix("v2/")?;
    ["/tags/", "/manifests/", "/blobs/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .map(|i| rest[..i].to_string())
}

/// The parameters of a `Bearer` challenge (`Bearer realm="…",service="…",scope="…"`).
fn parse_challenge(challenge: &str) -> Option<HashMap<String, String>> {
    let (scheme, rest) = challenge.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(name.trim().to_ascii_lowercase(), value);
    }
    Some(params)
}

/// Percent-encode a query value (everything but unreserved characters).
fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode a query component (`%XX` and `+`).
fn decode_query(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A YAML scalar for `s`: a JSON string, which YAML reads as a double-quoted scalar.
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `user:<bcrypt hash>` — the htpasswd line distribution's `auth.htpasswd` reads.
fn htpasswd_line(user: &str, password: &str) -> String {
    assert!(
        !user.is_empty() && !user.contains(':') && !user.contains('\n'),
        "an htpasswd user name cannot be empty or hold ':' or a newline: {user:?}"
    );
    // The lowest cost: this guards test data, and every check costs a bcrypt run.
    let hash = bcrypt::hash_with_result(password, 4)
        .expect("bcrypt hash")
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}\n")
}

fn registry_config(storage: &Path, port: u16, auth_section: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: capstan-testkit-not-secret\n\
         {auth_section}",
        storage = yaml_str(&storage.display().to_string()),
    )
}

/// A port on 127.0.0.1 that was free a moment ago (bound with port 0 and released).
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

fn lost_port(log: &str) -> bool {
    log.contains("address already in use")
}

/// Wait until the registry (`child`) logged that it listens on `port` and `GET /v2/`
/// answers `200` or `401` there.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let listening = format!("listening on 127.0.0.1:{port}");
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("nothing logged yet");
    // Only what this run logs counts: a restart appends to the same file.
    let log_offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let mut seen_listening = false;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry exited with {status}"));
        }
        if !seen_listening && let Ok(mut f) = File::open(log) {
            let mut text = String::new();
            if f.seek(io::SeekFrom::Start(log_offset)).is_ok()
                && f.read_to_string(&mut text).is_ok()
            {
                seen_listening = text.contains(&listening);
            }
        }
        if seen_listening {
            match probe_v2(port) {
                Ok(200 | 401) => return Ok(()),
                Ok(status) => last = format!("GET /v2/ answered {status}"),
                Err(e) => last = format!("GET /v2/: {e}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "127.0.0.1:{port} did not answer GET /v2/ within {READY_TIMEOUT:?} ({last})"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /v2/` over a plain socket; the status code.
fn probe_v2(port: u16) -> io::Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP status line: {line:?}")))
}

/// The blobs and manifest of the image `push_image` pushes as `repo:tag`.
struct TestImage {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl TestImage {
    fn new(repo: &str, tag: &str) -> TestImage {
        const CREATED: &str = "2024-01-01T00:00:00Z";
        let layer = tar_one_file(
            "capstan-image.txt",
            format!("capstan test image {repo}:{tag}\n").as_bytes(),
        );
        let layer_digest = sha256_digest(&layer);
        let config = serde_json::json!({
            "created": CREATED,
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Labels": {
                    "dev.capstan.test.repository": repo,
                    "dev.capstan.test.tag": tag,
                }
            },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created": CREATED, "created_by": "capstan-testkit" }],
        })
        .to_string()
        .into_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256_digest(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": OCI_LAYER,
                "digest": layer_digest,
                "size": layer.len(),
            }],
        })
        .to_string()
        .into_bytes();
        TestImage {
            config,
            layer,
            manifest,
        }
    }
}

/// A ustar archive holding one regular file `name` (mode 0644, mtime 0) with `data`.
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100, "tar name too long: {name}");
    let mut header = [0u8; 512];
    let mut put = |offset: usize, value: &[u8]| {
        header[offset..offset + value.len()].copy_from_slice(value);
    };
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", data.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0);
    out
}

/// The key that signs the tokens and its self-signed certificate (the registry's
/// `rootcertbundle`).
struct TokenSigner {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl TokenSigner {
    fn generate() -> TokenSigner {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("an ECDSA P-256 key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "capstan-testkit token signer");
        let cert = params.self_signed(&key).expect("a self-signed certificate");
        let signer = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("ring reads rcgen's PKCS#8 key");
        TokenSigner {
            key: signer,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        }
    }

    /// A compact JWS (ES256) of `claims` with the certificate in `x5c`.
    fn sign(&self, claims: &serde_json::Value, rng: &SystemRandom) -> String {
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // FIXED signing: r || s, 32 bytes each, as JWS wants (not ASN.1).
        let signature = self
            .key
            .sign(rng, input.as_bytes())
            .expect("an ES256 signature");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// The token server: HTTP/1.1 on `127.0.0.1:<free port>`, one request per connection.
struct TokenServer {
    addr: SocketAddr,
    shared: Arc<TokenShared>,
    accept: Option<JoinHandle<()>>,
}

struct TokenShared {
    user: String,
    password: String,
    signer: TokenSigner,
    rng: SystemRandom,
    stop: AtomicBool,
    requests: Mutex<Vec<TokenRequest>>,
}

impl TokenServer {
    fn start(user: &str, password: &str, signer: TokenSigner) -> TokenServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .unwrap_or_else(|e| panic!("binding the token server to 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().expect("the token server's address");
        let shared = Arc::new(TokenShared {
            user: user.to_string(),
            password: password.to_string(),
            signer,
            rng: SystemRandom::new(),
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("registry-token-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if shared.stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let shared = shared.clone();
                        let _ = thread::Builder::new()
                            .name("registry-token-conn".into())
                            .spawn(move || {
                                let _ = serve_token(&shared, stream);
                            });
                    }
                })
                .expect("a token server thread")
        };
        TokenServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        if let Ok(s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Answer one request: `GET /token?…` with the right basic credentials gets a token,
/// wrong or missing ones a `401`, anything else a `404`.
fn serve_token(shared: &TokenShared, mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(TOKEN_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(TOKEN_IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    (&mut reader).take(16 << 10).read_line(&mut request_line)?;
    let mut authorization = None;
    for _ in 0..200 {
        let mut line = String::new();
        if (&mut reader).take(16 << 10).read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut service = None;
    let mut scopes = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode_query(name).as_str() {
            "service" => service = Some(decode_query(value)),
            "scope" => scopes.extend(decode_query(value).split(' ').map(str::to_string)),
            _ => {}
        }
    }
    scopes.retain(|s| !s.is_empty());
    let user = authorization
        .as_deref()
        .and_then(|a| check_basic(a, &shared.user, &shared.password));

    let (status, body, challenge) = if method != "GET" || path != "/token" {
        (404, serde_json::json!({"error": "not found"}), false)
    } else if user.is_none() {
        (
            401,
            serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "wrong or missing credentials"}]}),
            true,
        )
    } else {
        let token = issue_token(shared, &shared.user, service.as_deref(), &scopes);
        (
            200,
            serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECS,
            }),
            false,
        )
    };
    // Recorded before the answer: a client that has its token sees the record.
    lock(&shared.requests).push(TokenRequest {
        path: path.to_string(),
        service,
        scopes,
        user,
        status,
    });
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if challenge {
        head.push_str(&format!("WWW-Authenticate: Basic realm=\"{REALM}\"\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// The user of `authorization` (`Basic base64(user:password)`) if it is `user` with
/// `password`.
fn check_basic(authorization: &str, user: &str, password: &str) -> Option<String> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    (u == user && p == password).then(|| u.to_string())
}

/// A token for `subject` granting every action of every `scope` asked for
/// (`type:name:action,action`), for `service`.
fn issue_token(
    shared: &TokenShared,
    subject: &str,
    service: Option<&str>,
    scopes: &[String],
) -> String {
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut jti = [0u8; 16];
    shared.rng.fill(&mut jti).expect("random bytes");
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER,
        "sub": subject,
        "aud": service.unwrap_or(TOKEN_SERVICE),
        "exp": now + TOKEN_LIFETIME_SECS,
        "nbf": now,
        "iat": now,
        "jti": hex(&jti),
        "access": access,
    });
    shared.signer.sign(&claims, &shared.rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_keep_commas_inside_quotes() {
        let p = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "svc");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn query_values_round_trip() {
        let s = "repository:team/app:pull,push";
        assert_eq!(encode_query(s), "repository%3Ateam%2Fapp%3Apull%2Cpush");
        assert_eq!(decode_query(&encode_query(s)), s);
        assert_eq!(decode_query("a+b%2"), "a b%2");
    }

    #[test]
    fn the_repository_of_an_api_path() {
        assert_eq!(
            repo_of_path("/v2/team/app/tags/list?n=10").as_deref(),
            Some("team/app")
        );
        assert_eq!(repo_of_path("/v2/a/manifests/v1").as_deref(), Some("a"));
        assert_eq!(repo_of_path("/v2/_catalog?n=10"), None);
    }

    #[test]
    fn tar_of_one_file_has_a_valid_header_and_padding() {
        let t = tar_one_file("f.txt", b"hello\n");
        assert_eq!(t.len(), 512 + 512 + 1024);
        assert_eq!(&t[257..263], b"ustar\0");
        assert_eq!(&t[512..518], b"hello\n");
        let mut h = t[..512].to_vec();
        let stored = String::from_utf8_lossy(&h[148..154]).to_string();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(&stored, 8).unwrap(), sum);
    }

    #[test]
    fn each_repository_and_tag_has_its_own_manifest() {
        let a = TestImage::new("app", "v1");
        let b = TestImage::new("app", "v2");
        let c = TestImage::new("other", "v1");
        assert_ne!(sha256_digest(&a.manifest), sha256_digest(&b.manifest));
        assert_ne!(sha256_digest(&a.manifest), sha256_digest(&c.manifest));
        assert_eq!(
            sha256_digest(&a.manifest),
            sha256_digest(&TestImage::new("app", "v1").manifest)
        );
    }

    #[test]
    fn htpasswd_lines_are_bcrypt_2y() {
        let line = htpasswd_line("alice", "s3cret");
        let (user, hash) = line.trim_end().split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
    }

    #[test]
    fn tokens_are_es256_with_the_certificate_in_x5c() {
        let signer = TokenSigner::generate();
        let rng = SystemRandom::new();
        let token = signer.sign(&serde_json::json!({"sub": "alice"}), &rng);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(
            STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap(),
            signer.cert_der
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 64);
        use ring::signature::KeyPair as _;
        let public = signer.key.public_key().as_ref().to_vec();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }
}
