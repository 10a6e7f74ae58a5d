//! A chart repository's `index.yaml`: the versions of each chart with their download
//! URLs and digests, as `helm repo index` writes it:
//!
//! ```yaml
//! apiVersion: v1
//! entries:
//!   app:
//!   - name: app
//!     version: 1.2.0
//!     digest: 7b0c…          # sha256 hex of the .tgz (optional)
//!     urls: [app-1.2.0.tgz]  # relative to the repository URL, or absolute
//! ```
//!
//! Only what choosing and downloading need is read; other fields are ignored.

use std::collections::BTreeMap;

use reqwest::Url;
use serde::Deserialize;

use super::{ChartError, ChartId, Download, Resolved, version};

/// A parsed `index.yaml`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<Entry>>,
}

/// One version of one chart.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    version: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
}

impl Index {
    /// Parse `body`; a large index is normal (public repositories list thousands of
    /// versions), so the node budget is raised, the alias guards kept.
    pub(super) fn parse(body: &[u8], chart: &ChartId) -> Result<Index, ChartError> {
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_nodes: 50_000_000,
                max_events: 200_000_000,
            },
        };
        let index: Option<Index> =
            serde_saphyr::from_slice_with_options(body, options).map_err(|source| {
                ChartError::Index {
                    chart: chart.clone(),
                    source: Box::new(source),
                }
            })?;
        Ok(index.unwrap_or_default())
    }

    /// The version `chart` asks for and where its archive is.
    pub(super) fn resolve(&self, chart: &ChartId, repo: &Url) -> Result<Resolved, ChartError> {
        let Some(entries) = self.entries.get(&chart.chart) else {
            let names: Vec<String> = self.entries.keys().cloned().collect();
            return Err(ChartError::ChartNotFound {
                chart: chart.clone(),
                available: list(&names),
            });
        };
        let versions: Vec<String> = entries.iter().map(|e| e.version.clone()).collect();
        let chosen = version::pick(chart, &versions)?;
        let id = chart.at(&chosen);
        let Some(entry) = entries.iter().find(|e| e.version == chosen) else {
            return Err(ChartError::NoMatchingVersion {
                chart: chart.clone(),
                available: version::summary(&versions),
            });
        };
        let digest = match entry.digest.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(sha256_hex(d).ok_or_else(|| ChartError::BadDigest {
                chart: id.clone(),
                digest: d.chars().take(200).collect(),
            })?),
        };
        let url = entry
            .urls
            .iter()
            .find_map(|u| archive_url(repo, u))
            .ok_or_else(|| ChartError::NoUrl {
                chart: id,
                urls: entry.urls.clone(),
            })?;
        Ok(Resolved {
            version: chosen,
            digest,
            from: Download::Url {
                url,
                repo: repo.clone(),
            },
        })
    }
}

/// The index's URL: `index.yaml` inside the repository URL.
pub(super) fn index_url(repo: &Url) -> Url {
    let mut url = directory(repo);
    url.set_path(&format!("{}index.yaml", url.path()));
    url
}

/// Where `url` (as listed) points: absolute `http(s)` URLs as they are, anything else
/// relative to the repository URL as a directory (Helm's `ResolveReferenceURL`).
pub(super) fn archive_url(repo: &Url, url: &str) -> Option<Url> {
    let resolved = directory(repo).join(url.trim()).ok()?;
    matches!(resolved.scheme(), "http" | "https").then_some(resolved)
}

/// The repository URL with one trailing slash, so relative URLs resolve inside it.
fn directory(repo: &Url) -> Url {
    let mut dir = repo.clone();
    let path = format!("{}/", repo.path().trim_end_matches('/'));
    dir.set_path(&path);
    dir.set_fragment(None);
    dir
}

/// A digest as an index writes it (`<hex>` or `sha256:<hex>`) as lower-case hex.
pub(super) fn sha256_hex(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A few of `names`: `a, b, c and 12 more`, or `none`.
fn list(names: &[String]) -> String {
    match names.len() {
        0 => "none".into(),
        n if n <= 10 => names.join(", "),
        n => format!("{} and {} more", names[..10].join(", "), n - 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(chart: &str, version: &str) -> ChartId {
        ChartId {
            repo: "https://charts.example.com/stable".into(),
            chart: chart.into(),
            version: version.into(),
        }
    }

    const INDEX: &str = "apiVersion: v1\nentries:\n  app:\n  - name: app\n    version: 1.2.0\n    digest: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n    urls: [app-1.2.0.tgz]\n  - name: app\n    version: 1.10.0\n    urls: ['https://cdn.example.com/app-1.10.0.tgz']\n    created: 2026-01-01T00:00:00Z\n  db:\n  - version: 0.1.0\n    urls: []\ngenerated: 2026-01-01T00:00:00Z\n";

    #[test]
    fn the_index_gives_the_version_its_digest_and_url() {
        let repo = Url::parse("https://charts.example.com/stable").unwrap();
        let index = Index::parse(INDEX.as_bytes(), &id("app", "")).unwrap();
        let r = index.resolve(&id("app", "1.2.0"), &repo).unwrap();
        assert_eq!(r.version, "1.2.0");
        assert_eq!(r.digest.as_deref(), Some("a".repeat(64).as_str()));
        let Download::Url { url, .. } = r.from else {
            panic!()
        };
        assert_eq!(
            url.as_str(),
            "https://charts.example.com/stable/app-1.2.0.tgz"
        );
        let r = index.resolve(&id("app", "1.x"), &repo).unwrap();
        assert_eq!((r.version.as_str(), r.digest), ("1.10.0", None));
        let Download::Url { url, .. } = r.from else {
            panic!()
        };
        assert_eq!(url.host_str(), Some("cdn.example.com"));
    }

    #[test]
    fn a_missing_chart_or_url_is_named() {
        let repo = Url::parse("https://charts.example.com/stable/").unwrap();
        let index = Index::parse(INDEX.as_bytes(), &id("x", "")).unwrap();
        let e = index.resolve(&id("web", ""), &repo).unwrap_err();
        assert!(
            e.to_string().ends_with("no such chart (charts: app, db)"),
            "{e}"
        );
        let e = index.resolve(&id("db", ""), &repo).unwrap_err();
        assert!(matches!(e, ChartError::NoUrl { .. }), "{e}");
        assert!(e.to_string().starts_with("chart db 0.1.0 from"), "{e}");
        let e = Index::parse(b"entries: [", &id("x", "")).unwrap_err();
        assert!(matches!(e, ChartError::Index { .. }), "{e}");
        assert!(
            Index::parse(b"", &id("x", "")).is_ok(),
            "an empty index lists nothing"
        );
    }

    #[test]
    fn relative_urls_resolve_inside_the_repository() {
        let repo = Url::parse("https://h.example/charts?token=1").unwrap();
        assert_eq!(
            index_url(&repo).as_str(),
            "https://h.example/charts/index.yaml?token=1"
        );
        let root = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            index_url(&root).as_str(),
            "http://127.0.0.1:8080/index.yaml"
        );
        assert_eq!(
            archive_url(&root, "app-1.0.0.tgz").unwrap().as_str(),
            "http://127.0.0.1:8080/app-1.0.0.tgz"
        );
        assert_eq!(
            archive_url(&repo, "/other/app.tgz").unwrap().as_str(),
            "https://h.example/other/app.tgz"
        );
        assert!(archive_url(&repo, "file:///etc/passwd").is_none());
        assert!(archive_url(&repo, "oci://x/y").is_none());
    }

    #[test]
    fn digests_are_sha256_hex_with_or_without_a_prefix() {
        let hex = "0f".repeat(32);
        assert_eq!(sha256_hex(&hex).as_deref(), Some(hex.as_str()));
        assert_eq!(
            sha256_hex(&format!("sha256:{hex}")).as_deref(),
            Some(hex.as_str())
        );
        assert_eq!(sha256_hex("sha512:abc"), None);
        assert_eq!(sha256_hex(&"g".repeat(64)), None);
    }
}
