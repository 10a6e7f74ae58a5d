//! Helm charts from chart repositories and OCI registries, cached by digest.
//!
//! A [`ChartSource`] names a chart as Argo CD's `repoURL`/`chart`/`targetRevision` and
//! Flux's `HelmRepository`/`HelmChart` do:
//!
//! - `https://charts.example.com/stable` (or `http://`) is a **chart repository**: its
//!   `index.yaml` lists every chart's versions, each with the URLs of its `.tgz` (relative
//!   to the repository or absolute) and usually its sha256 `digest`;
//! - `oci://registry.example.com/charts` is a **registry** holding the chart as the OCI
//!   artifact `registry.example.com/charts/<chart>`, one tag per version (`+` written `_`),
//!   the `.tgz` being the layer of type `application/vnd.cncf.helm.chart.content.v1.tar+gzip`.
//!
//! The version is an exact version, a Masterminds range (`>=1.2 <2`, `1.x`, `~1.4`), or
//! empty for the latest that is not a prerelease — as Helm chooses (an exact version is
//! looked up as written first, then the version asked for is read as a range).
//!
//! ```text
//! index.yaml / tag list ──pick version──▶ digest ──cache hit?──▶ <cache>/charts/<sha256>/<chart>
//!  (reused 60 s)                                  └─download ─ verify sha256 ─ extract safely ─┘
//! ```
//!
//! **Cache.** [`ChartCache`] keeps every archive under its sha256
//! (`<dir>/archives/<hex>.tgz`) and its extraction beside it (`<dir>/charts/<hex>/`),
//! so a version already fetched is never downloaded again. What a repository lists
//! (its `index.yaml`, a registry's tags and the manifest of a tag) is reused for
//! [`ChartCacheOptions::index_ttl`] (60 s), like a Git fetch is reused; this reuse is keyed by the
//! repository *and the credentials*, so a chart listed for one set of credentials is
//! not handed to a caller with others (or none).
//!
//! **Integrity.** A downloaded archive must have the sha256 the index gives (when it gives
//! one) or the digest of its OCI layer; anything else is refused and not stored.
//!
//! **Extraction** (`archive`) reads the tarball entry by entry: no absolute path, no
//! `..`, no links (symlinks or hard links), no devices, every entry under one top-level
//! directory, bounded in entries and in decompressed bytes; the chart must have a
//! `Chart.yaml`.
//!
//! **Credentials** ([`HelmAuth`], given or read from a Secret by [`auth_from_secret`]) go to the repository's own origin only (not to an archive
//! URL on another host, as Helm does by default), never over plain HTTP except to
//! loopback addresses, and never into a message or `Debug` output.

mod archive;
mod http;
mod index;
mod oci;
mod secret;
mod version;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_core::Revision;
use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::images::policy::PolicyError;
pub use secret::{AuthSecretError, auth_from_secret};

use crate::images::registry::RegistryError;

/// A chart in a chart repository or an OCI registry, and the version wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSource {
    /// `https://…` or `http://…` (a chart repository serving `index.yaml`), or
    /// `oci://host[:port]/path` (a registry holding `path/<chart>`).
    pub repo_url: String,
    /// The chart's name (`ingress-nginx`).
    pub chart: String,
    /// An exact version, a Masterminds range (`>=1.2 <2`, `1.x`), or empty for the
    /// latest version that is not a prerelease.
    pub version: String,
}

impl ChartSource {
    /// `chart` at `version` from `repo_url`.
    pub fn new(
        repo_url: impl Into<String>,
        chart: impl Into<String>,
        version: impl Into<String>,
    ) -> ChartSource {
        ChartSource {
            repo_url: repo_url.into(),
            chart: chart.into(),
            version: version.into(),
        }
    }

    /// The chart as messages name it, with the version asked for.
    pub fn id(&self) -> ChartId {
        ChartId {
            repo: super::git::strip_userinfo(&self.repo_url),
            chart: self.chart.clone(),
            version: self.version.clone(),
        }
    }
}

/// How to reach a chart repository or registry. `Debug` never shows the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HelmAuth {
    /// User name and password (or token) for HTTP basic auth, or for the registry's
    /// token service.
    pub basic: Option<(String, String)>,
    /// PEM-encoded CA certificates trusted besides the system's (a private CA), as
    /// read from a file or from a Secret's `ca.crt`.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any TLS certificate, unchecked (Helm's `--insecure-skip-tls-verify`).
    pub insecure_skip_tls: bool,
    /// OCI only: plain HTTP to the registry (Helm's `--plain-http`); loopback
    /// registries only. Chart repositories say `http://` in their URL instead.
    pub plain_http: bool,
}

impl fmt::Debug for HelmAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelmAuth")
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .field(
                "ca_pem",
                &self
                    .ca_pem
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .field("insecure_skip_tls", &self.insecure_skip_tls)
            .field("plain_http", &self.plain_http)
            .finish()
    }
}

impl HelmAuth {
    /// The user name, for messages.
    fn username(&self) -> Option<&str> {
        self.basic.as_ref().map(|(user, _)| user.as_str())
    }

    /// A digest of everything that decides what the repository shows: reuse of a
    /// listing is keyed by it.
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        if let Some((user, password)) = &self.basic {
            h.update([1]);
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
        }
        h.update([0]);
        if let Some(ca) = &self.ca_pem {
            h.update([1]);
            h.update(ca);
        }
        h.update([self.insecure_skip_tls as u8, self.plain_http as u8]);
        hex::encode(&h.finalize()[..16])
    }
}

/// Limits and reuse of a [`ChartCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartCacheOptions {
    /// How long a repository's `index.yaml`, a registry's tag list and a tag's manifest
    /// are reused before they are fetched again. `0` fetches them every time. Default 60 s.
    pub index_ttl: Duration,
    /// The bound of each HTTP request, from connecting until the body is read.
    /// Default 60 s.
    pub timeout: Duration,
    /// The largest `index.yaml` read. Default 64 MiB (large public repositories serve
    /// tens of MiB).
    pub max_index_bytes: usize,
    /// The largest chart archive downloaded. Default 32 MiB.
    pub max_archive_bytes: usize,
    /// The most bytes an archive may decompress to (headers included). Default 100 MiB,
    /// Helm's own bound.
    pub max_extracted_bytes: u64,
    /// The most entries an archive may hold. Default 10,000.
    pub max_entries: usize,
}

impl Default for ChartCacheOptions {
    fn default() -> Self {
        ChartCacheOptions {
            index_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            max_index_bytes: 64 << 20,
            max_archive_bytes: 32 << 20,
            max_extracted_bytes: 100 << 20,
            max_entries: 10_000,
        }
    }
}

/// A chart on disk, ready for `helm template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedChart {
    /// The chart's name, from its `Chart.yaml`.
    pub name: String,
    /// The version chosen.
    pub version: String,
    /// `sha256:<hex>` of the chart archive.
    pub digest: String,
    /// The extracted chart (holds `Chart.yaml`), inside the cache: read it, never write.
    pub dir: PathBuf,
}

impl FetchedChart {
    /// The revision a desired set rendered from this chart came from: the archive's
    /// digest, with what was asked for and `name version` as its message.
    pub fn revision(&self, requested: &str) -> Revision {
        Revision {
            id: self.digest.clone(),
            requested: requested.to_string(),
            author: String::new(),
            message: format!("chart {} {}", self.name, self.version),
            time: String::new(),
        }
    }
}

/// A chart as errors name it: `chart app 1.2.3 from https://charts.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartId {
    /// The repository URL (without credentials).
    pub repo: String,
    /// The chart.
    pub chart: String,
    /// The version: as asked for until one is chosen, then the one chosen.
    pub version: String,
}

impl ChartId {
    fn at(&self, version: &str) -> ChartId {
        ChartId {
            version: version.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for ChartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version.as_str() {
            "" => write!(f, "chart {} from {}", self.chart, self.repo),
            v => write!(f, "chart {} {v} from {}", self.chart, self.repo),
        }
    }
}

/// What went wrong fetching a chart. Every variant names the chart, its repository and
/// the version; none holds a password.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The repository URL is not `https://`, `http://` or `oci://host/path`.
    #[error("{chart}: invalid repository URL: {reason}")]
    InvalidRepository {
        /// The chart.
        chart: ChartId,
        /// What is wrong.
        reason: &'static str,
    },
    /// Credentials would travel in clear text.
    #[error(
        "{chart}: refusing to send credentials over plain http; use https (plain http is allowed to loopback addresses only)"
    )]
    ClearTextCredentials {
        /// The chart.
        chart: ChartId,
    },
    /// The HTTP client could not be built (CA certificates that are not PEM, TLS setup).
    #[error("{chart}: setting up the HTTP client")]
    Client {
        /// The chart.
        chart: ChartId,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The repository did not answer (refused, reset, TLS failure, timed out).
    #[error("{chart}: {url} is unreachable")]
    Unreachable {
        /// The chart.
        chart: ChartId,
        /// The URL requested.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// `401`/`403` without credentials.
    #[error("{chart}: {url} requires credentials and none were given")]
    AuthenticationRequired {
        /// The chart.
        chart: ChartId,
        /// The URL requested.
        url: String,
    },
    /// `401`/`403` with credentials.
    #[error("{chart}: {url} refused the credentials of user {username:?}")]
    AuthenticationFailed {
        /// The chart.
        chart: ChartId,
        /// The URL requested.
        url: String,
        /// The user.
        username: String,
    },
    /// Any other status that is not success (`404` included).
    #[error("{chart}: {url} answered HTTP {status}")]
    Status {
        /// The chart.
        chart: ChartId,
        /// The URL requested.
        url: String,
        /// The status.
        status: u16,
    },
    /// A body larger than the bound.
    #[error("{chart}: {url} is larger than {limit} bytes")]
    TooLarge {
        /// The chart.
        chart: ChartId,
        /// The URL requested.
        url: String,
        /// The bound.
        limit: u64,
    },
    /// `index.yaml` is not a chart repository index.
    #[error("{chart}: the repository's index.yaml does not parse")]
    Index {
        /// The chart.
        chart: ChartId,
        /// The parser's complaint (line and column).
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The index lists no chart of that name.
    #[error("{chart}: the repository has no such chart (charts: {available})")]
    ChartNotFound {
        /// The chart.
        chart: ChartId,
        /// A few of the charts it has.
        available: String,
    },
    /// The version asked for is neither a listed version nor a valid range.
    #[error("{chart}: the version is not a listed version nor a valid semver range")]
    InvalidVersion {
        /// The chart.
        chart: ChartId,
        /// Why the range does not parse.
        #[source]
        source: Box<PolicyError>,
    },
    /// No version matches.
    #[error("{chart}: no version matches (versions: {available})")]
    NoMatchingVersion {
        /// The chart, with the version asked for.
        chart: ChartId,
        /// A few of the versions that exist, highest first.
        available: String,
    },
    /// The index entry of the version has no usable download URL.
    #[error("{chart}: the index gives no download URL (urls: {urls:?})")]
    NoUrl {
        /// The chart.
        chart: ChartId,
        /// The URLs as listed.
        urls: Vec<String>,
    },
    /// A digest (in the index, or of an OCI layer) that is not sha256 hex.
    #[error("{chart}: the digest {digest:?} is not sha256:<64 hex digits>")]
    BadDigest {
        /// The chart.
        chart: ChartId,
        /// As given (at most 200 bytes).
        digest: String,
    },
    /// The archive downloaded is not the one the index or manifest names.
    #[error("{chart}: the archive's sha256 is {actual}, the repository says {expected}")]
    DigestMismatch {
        /// The chart.
        chart: ChartId,
        /// The digest the repository gives.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// Reading the registry failed.
    #[error("{chart}: reading the registry")]
    Registry {
        /// The chart.
        chart: ChartId,
        /// Cause.
        #[source]
        source: Box<RegistryError>,
    },
    /// The OCI artifact is not a Helm chart.
    #[error("{chart}: not a Helm chart: {reason}")]
    NotAChart {
        /// The chart.
        chart: ChartId,
        /// Why (the manifest's config or layers).
        reason: String,
    },
    /// The archive is not gzip-compressed tar, or breaks off.
    #[error("{chart}: the archive is not a readable .tgz")]
    Archive {
        /// The chart.
        chart: ChartId,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An archive entry that would land outside the chart or is not a plain file.
    #[error("{chart}: the archive entry {entry:?} {reason}; refusing the chart")]
    UnsafeEntry {
        /// The chart.
        chart: ChartId,
        /// The entry's path as written in the archive.
        entry: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The archive decompresses to more than a bound.
    #[error("{chart}: the archive holds more than {limit} {what}")]
    ArchiveTooLarge {
        /// The chart.
        chart: ChartId,
        /// `bytes` or `entries`.
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// The archive has no `Chart.yaml` in its top directory.
    #[error("{chart}: the archive has no Chart.yaml at its top")]
    NoChartYaml {
        /// The chart.
        chart: ChartId,
    },
    /// `Chart.yaml` does not parse or has no name.
    #[error("{chart}: its Chart.yaml is invalid")]
    ChartYaml {
        /// The chart.
        chart: ChartId,
        /// The parser's complaint.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// Reading or writing the cache failed.
    #[error("{chart}: writing the chart cache at {path}")]
    Cache {
        /// The chart.
        chart: ChartId,
        /// The file or directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A chart version chosen, and where its archive comes from.
#[derive(Debug)]
struct Resolved {
    /// The version.
    version: String,
    /// The archive's sha256 hex, when the repository says it beforehand.
    digest: Option<String>,
    /// Where to download it.
    from: Download,
}

#[derive(Debug)]
enum Download {
    /// An archive URL of the chart repository `repo`.
    Url {
        /// The archive.
        url: Url,
        /// The repository (credentials go to its origin only).
        repo: Url,
    },
    /// The blob of `image` with the resolved digest (of a registry).
    Blob {
        /// `host[:port]/path/chart`.
        image: String,
    },
}

/// Listings reused for a while: key → (when fetched, value).
struct Reuse<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> Reuse<V> {
    fn new() -> Self {
        Reuse {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str, ttl: Duration) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(3600));
        entries.insert(key, (Instant::now(), value));
    }
}

/// Chart archives kept by digest under one directory; see the [module documentation](self).
pub struct ChartCache {
    root: PathBuf,
    options: ChartCacheOptions,
    indexes: Reuse<Arc<index::Index>>,
    tags: Reuse<Arc<Vec<String>>>,
    manifests: Reuse<oci::ChartLayer>,
}

impl fmt::Debug for ChartCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChartCache")
            .field("root", &self.root)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ChartCache {
    /// A cache under `root` (created when first used) with the default options.
    pub fn new(root: impl Into<PathBuf>) -> ChartCache {
        ChartCache::with_options(root, ChartCacheOptions::default())
    }

    /// A cache under `root` with `options`.
    pub fn with_options(root: impl Into<PathBuf>, options: ChartCacheOptions) -> ChartCache {
        ChartCache {
            root: root.into(),
            options,
            indexes: Reuse::new(),
            tags: Reuse::new(),
            manifests: Reuse::new(),
        }
    }

    /// `$CAPSTAN_CACHE_DIR/charts`, else `$XDG_CACHE_HOME/capstan/charts`, else
    /// `~/.cache/capstan/charts`.
    pub fn default_dir() -> PathBuf {
        super::git::GitCache::default_dir().with_file_name("charts")
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options the cache was made with.
    pub fn options(&self) -> &ChartCacheOptions {
        &self.options
    }

    /// Choose the version of `src`, download its archive unless the cache has it (by
    /// digest), verify and extract it; the chart on disk.
    pub async fn fetch(
        &self,
        src: &ChartSource,
        auth: &HelmAuth,
    ) -> Result<FetchedChart, ChartError> {
        let id = src.id();
        let resolved = match Repository::parse(src, auth)? {
            Repository::Http(url) => self.resolve_http(&id, &url, auth).await?,
            Repository::Oci(image) => self.resolve_oci(&id, &image, auth).await?,
        };
        let id = id.at(&resolved.version);
        if let Some(hex) = resolved.digest.clone() {
            let (root, options, chart) = (self.root.clone(), self.options.clone(), id.clone());
            let hit = blocking(&id, move || archive::cached(&root, &hex, &options, &chart)).await?;
            if let Some(found) = hit {
                return Ok(found.into_fetched(
                    &resolved.version,
                    resolved.digest.as_deref().unwrap_or_default(),
                ));
            }
        }
        let bytes = self.download(&id, &resolved, auth).await?;
        let (root, options, chart) = (self.root.clone(), self.options.clone(), id.clone());
        let expected = resolved.digest.clone();
        let stored = blocking(&id, move || {
            archive::store(&root, &bytes, expected.as_deref(), &options, &chart)
        })
        .await?;
        Ok(stored.chart.into_fetched(&resolved.version, &stored.hex))
    }

    /// The archive of a resolved version, from the repository or registry.
    async fn download(
        &self,
        id: &ChartId,
        resolved: &Resolved,
        auth: &HelmAuth,
    ) -> Result<Vec<u8>, ChartError> {
        match &resolved.from {
            Download::Url { url, repo } => self.http_client(id, auth)?.archive(url, repo).await,
            Download::Blob { image } => {
                let hex = resolved.digest.as_deref().unwrap_or_default();
                oci::blob(id, image, hex, auth, &self.options).await
            }
        }
    }

    fn http_client(&self, id: &ChartId, auth: &HelmAuth) -> Result<http::Client, ChartError> {
        http::Client::new(id, auth, &self.options)
    }

    /// Pick the version from the repository's index (reused for the TTL).
    async fn resolve_http(
        &self,
        id: &ChartId,
        repo: &Url,
        auth: &HelmAuth,
    ) -> Result<Resolved, ChartError> {
        let key = format!("{repo}\n{}", auth.fingerprint());
        let index = match self.indexes.get(&key, self.options.index_ttl) {
            Some(index) => index,
            None => {
                let client = self.http_client(id, auth)?;
                let body = client.index(repo).await?;
                let index = Arc::new(index::Index::parse(&body, id)?);
                self.indexes.put(key, index.clone());
                index
            }
        };
        index.resolve(id, repo)
    }

    /// Pick the version from the registry's tags (reused for the TTL) and read its
    /// manifest for the chart layer's digest.
    async fn resolve_oci(
        &self,
        id: &ChartId,
        image: &str,
        auth: &HelmAuth,
    ) -> Result<Resolved, ChartError> {
        let fingerprint = auth.fingerprint();
        let tag = match oci::exact_tag(&id.version) {
            Some(tag) => tag,
            None => {
                let key = format!("{image}\n{fingerprint}");
                let tags = match self.tags.get(&key, self.options.index_ttl) {
                    Some(tags) => tags,
                    None => {
                        let tags = Arc::new(oci::tags(id, image, auth, &self.options).await?);
                        self.tags.put(key, tags.clone());
                        tags
                    }
                };
                oci::pick(id, &tags)?
            }
        };
        let key = format!("{image}:{tag}\n{fingerprint}");
        let layer = match self.manifests.get(&key, self.options.index_ttl) {
            Some(layer) => layer,
            None => {
                let layer = oci::chart_layer(id, image, &tag, auth, &self.options).await?;
                self.manifests.put(key, layer.clone());
                layer
            }
        };
        Ok(Resolved {
            version: oci::version_of_tag(&tag),
            digest: Some(layer.hex),
            from: Download::Blob {
                image: image.to_string(),
            },
        })
    }
}

/// Run cache work (hashing, extraction, file system) off the async threads.
async fn blocking<T: Send + 'static>(
    chart: &ChartId,
    work: impl FnOnce() -> Result<T, ChartError> + Send + 'static,
) -> Result<T, ChartError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ChartError::Cache {
            chart: chart.clone(),
            path: "<cache task>".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Where a chart source points, checked.
enum Repository {
    /// A chart repository's base URL.
    Http(Url),
    /// `host[:port]/path/chart`.
    Oci(String),
}

impl Repository {
    fn parse(src: &ChartSource, auth: &HelmAuth) -> Result<Repository, ChartError> {
        let id = src.id();
        let invalid = |reason| ChartError::InvalidRepository {
            chart: id.clone(),
            reason,
        };
        if src.chart.is_empty()
            || !src
                .chart
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            || src.chart.starts_with('.')
        {
            return Err(invalid(
                "the chart name must be letters, digits, '-', '_' or '.'",
            ));
        }
        let url = Url::parse(src.repo_url.trim()).map_err(|_| invalid("not a URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials in the URL are not supported; give them as a user name and password",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL has no host"));
        }
        match url.scheme() {
            "https" | "http" => {
                if url.scheme() == "http"
                    && auth.basic.is_some()
                    && !super::git::is_loopback(url.as_str())
                {
                    return Err(ChartError::ClearTextCredentials { chart: id });
                }
                Ok(Repository::Http(url))
            }
            "oci" => oci::image(&url, &src.chart)
                .map(Repository::Oci)
                .ok_or_else(|| invalid("oci:// URLs are oci://host[:port]/path, without query")),
            _ => Err(invalid("the scheme is not https, http or oci")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let auth = HelmAuth {
            basic: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        };
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn listings_are_keyed_by_the_credentials() {
        let none = HelmAuth::default();
        let alice = HelmAuth {
            basic: Some(("alice".into(), "a".into())),
            ..Default::default()
        };
        let other = HelmAuth {
            basic: Some(("alice".into(), "b".into())),
            ..Default::default()
        };
        assert_ne!(none.fingerprint(), alice.fingerprint());
        assert_ne!(alice.fingerprint(), other.fingerprint());
        assert_eq!(alice.fingerprint(), alice.clone().fingerprint());
    }

    #[test]
    fn repository_urls_are_checked_before_any_request() {
        let parse = |url: &str, auth: &HelmAuth| {
            Repository::parse(&ChartSource::new(url, "app", "1.x"), auth).map(|r| match r {
                Repository::Http(u) => u.to_string(),
                Repository::Oci(i) => i,
            })
        };
        let none = HelmAuth::default();
        assert_eq!(
            parse("oci://ghcr.io/org/charts/", &none).unwrap(),
            "ghcr.io/org/charts/app"
        );
        assert_eq!(
            parse("oci://127.0.0.1:5000", &none).unwrap(),
            "127.0.0.1:5000/app"
        );
        assert_eq!(
            parse("https://charts.example.com/stable", &none).unwrap(),
            "https://charts.example.com/stable"
        );
        let creds = HelmAuth {
            basic: Some(("u".into(), "p".into())),
            ..Default::default()
        };
        let e = parse("http://charts.example.com", &creds).unwrap_err();
        assert!(matches!(e, ChartError::ClearTextCredentials { .. }), "{e}");
        parse("http://127.0.0.1:8080/charts", &creds).unwrap();
        for bad in [
            "ftp://charts.example.com",
            "charts.example.com",
            "https://u:hunter2@charts.example.com",
            "oci://ghcr.io/org?x=1",
        ] {
            let e = parse(bad, &none).unwrap_err();
            assert!(
                matches!(e, ChartError::InvalidRepository { .. }),
                "{bad}: {e}"
            );
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let e = Repository::parse(&ChartSource::new("https://h", "../x", ""), &none);
        assert!(matches!(e, Err(ChartError::InvalidRepository { .. })));
    }

    #[test]
    fn errors_name_the_chart_its_version_and_repository() {
        let id = ChartSource::new("https://charts.example.com", "app", ">=1.2 <2").id();
        let e = ChartError::NoMatchingVersion {
            chart: id,
            available: "1.1.0, 1.0.0".into(),
        };
        assert_eq!(
            e.to_string(),
            "chart app >=1.2 <2 from https://charts.example.com: no version matches (versions: 1.1.0, 1.0.0)"
        );
    }
}
