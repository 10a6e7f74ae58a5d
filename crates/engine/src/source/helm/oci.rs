//! Charts stored in OCI registries (`oci://host/path` + chart = the artifact
//! `host/path/chart`), as `helm push` writes them: one tag per version (`+` is not
//! allowed in tags, so `1.2.3+build` is the tag `1.2.3_build`), a manifest whose config
//! is `application/vnd.cncf.helm.config.v1+json` and whose chart layer is the `.tgz`.
//!
//! An exact version is pulled by its tag without listing; a range lists the tags (the
//! engine's [`RegistryClient`]: auth challenges, pages) and picks among them.

use reqwest::Url;
use serde::Deserialize;

use crate::images::registry::{Credentials, RegistryClient, ScanOptions};

use super::{ChartCacheOptions, ChartError, ChartId, HelmAuth, index, version};

/// The media type of a chart's layer.
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The layer type charts pushed by Helm before 3.8 have; still read, as Helm does.
const LEGACY_CHART_LAYER: &str = "application/tar+gzip";
/// The media type of a chart's config.
pub const CHART_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// What chart manifests are asked for with.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

/// The chart layer a manifest names.
#[derive(Debug, Clone)]
pub(super) struct ChartLayer {
    /// Its sha256, hex.
    pub(super) hex: String,
}

/// `host[:port]/path/chart` for `oci://host[:port]/path`, `None` when the URL has a
/// query, a fragment or no host.
pub(super) fn image(url: &Url, chart: &str) -> Option<String> {
    if url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let path = url.path().trim_matches('/');
    Some(match path {
        "" => format!("{authority}/{chart}"),
        path => format!("{authority}/{path}/{chart}"),
    })
}

/// The tag of an exact version (SemVer, optionally with a `v`), `None` for a range.
pub(super) fn exact_tag(version: &str) -> Option<String> {
    let v = version.trim();
    semver::Version::parse(v.strip_prefix('v').unwrap_or(v))
        .ok()
        .map(|_| v.replace('+', "_"))
}

/// The version a tag stands for.
pub(super) fn version_of_tag(tag: &str) -> String {
    tag.replace('_', "+")
}

/// The tag of the version `chart` asks for among `versions` (tags read as versions).
pub(super) fn pick(chart: &ChartId, versions: &[String]) -> Result<String, ChartError> {
    version::pick(chart, versions).map(|v| v.replace('+', "_"))
}

/// Every tag of `image`, as versions.
pub(super) async fn tags(
    chart: &ChartId,
    image: &str,
    auth: &HelmAuth,
    options: &ChartCacheOptions,
) -> Result<Vec<String>, ChartError> {
    let registry = client(chart, auth, options)?;
    let tags = registry
        .tags(image, credentials(auth).as_ref())
        .await
        .map_err(|source| ChartError::Registry {
            chart: chart.clone(),
            source: Box::new(source),
        })?;
    Ok(tags.iter().map(|t| version_of_tag(t)).collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    size: u64,
}

/// The chart layer of `image:tag`.
pub(super) async fn chart_layer(
    chart: &ChartId,
    image: &str,
    tag: &str,
    auth: &HelmAuth,
    options: &ChartCacheOptions,
) -> Result<ChartLayer, ChartError> {
    let id = chart.at(&version_of_tag(tag));
    let registry = client(&id, auth, options)?;
    let manifest = registry
        .manifest(image, tag, ACCEPT, credentials(auth).as_ref())
        .await
        .map_err(|source| ChartError::Registry {
            chart: id.clone(),
            source: Box::new(source),
        })?;
    layer_of(&id, &manifest.body, options)
}

/// The chart layer a manifest names, checked.
fn layer_of(
    chart: &ChartId,
    manifest: &[u8],
    options: &ChartCacheOptions,
) -> Result<ChartLayer, ChartError> {
    let not_a_chart = |reason: String| ChartError::NotAChart {
        chart: chart.clone(),
        reason,
    };
    let doc: ManifestDoc = serde_json::from_slice(manifest)
        .map_err(|e| not_a_chart(format!("the manifest is not an OCI image manifest ({e})")))?;
    let config = doc.config.map(|c| c.media_type).unwrap_or_default();
    if config != CHART_CONFIG {
        return Err(not_a_chart(format!(
            "the manifest's config is {config:?}, not {CHART_CONFIG}"
        )));
    }
    let layers: Vec<&Descriptor> = doc
        .layers
        .iter()
        .filter(|l| l.media_type == CHART_LAYER || l.media_type == LEGACY_CHART_LAYER)
        .collect();
    let [layer] = layers.as_slice() else {
        return Err(not_a_chart(format!(
            "the manifest has {} layers of type {CHART_LAYER}, not one",
            layers.len()
        )));
    };
    if layer.size > options.max_archive_bytes as u64 {
        return Err(ChartError::TooLarge {
            chart: chart.clone(),
            url: layer.digest.clone(),
            limit: options.max_archive_bytes as u64,
        });
    }
    let hex = layer
        .digest
        .strip_prefix("sha256:")
        .and_then(index::sha256_hex)
        .ok_or_else(|| ChartError::BadDigest {
            chart: chart.clone(),
            digest: layer.digest.chars().take(200).collect(),
        })?;
    Ok(ChartLayer { hex })
}

/// The chart layer `sha256:<hex>` of `image`, verified by the registry client.
pub(super) async fn blob(
    chart: &ChartId,
    image: &str,
    hex: &str,
    auth: &HelmAuth,
    options: &ChartCacheOptions,
) -> Result<Vec<u8>, ChartError> {
    let registry = client(chart, auth, options)?;
    registry
        .blob(
            image,
            &format!("sha256:{hex}"),
            options.max_archive_bytes,
            credentials(auth).as_ref(),
        )
        .await
        .map_err(|source| ChartError::Registry {
            chart: chart.clone(),
            source: Box::new(source),
        })
}

fn client(
    chart: &ChartId,
    auth: &HelmAuth,
    options: &ChartCacheOptions,
) -> Result<RegistryClient, ChartError> {
    RegistryClient::new(ScanOptions {
        timeout: options.timeout,
        insecure: auth.plain_http,
        ca_pem: auth.ca_pem.clone(),
        accept_invalid_certs: auth.insecure_skip_tls,
        ..ScanOptions::default()
    })
    .map_err(|source| ChartError::Registry {
        chart: chart.clone(),
        source: Box::new(source),
    })
}

fn credentials(auth: &HelmAuth) -> Option<Credentials> {
    auth.basic
        .as_ref()
        .map(|(user, password)| Credentials::new(user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ChartId {
        ChartId {
            repo: "oci://r.example/charts".into(),
            chart: "app".into(),
            version: "1.0.0".into(),
        }
    }

    #[test]
    fn versions_with_build_metadata_are_tags_with_underscores() {
        assert_eq!(exact_tag("1.2.3+build.5").as_deref(), Some("1.2.3_build.5"));
        assert_eq!(exact_tag("v1.2.3").as_deref(), Some("v1.2.3"));
        assert_eq!(exact_tag("1.x"), None);
        assert_eq!(exact_tag(">=1.2 <2"), None);
        assert_eq!(exact_tag(""), None);
        assert_eq!(version_of_tag("1.2.3_build.5"), "1.2.3+build.5");
        let versions = vec!["1.0.0".to_string(), "1.1.0+b1".to_string(), "latest".into()];
        let mut chart = id();
        chart.version = "1.x".into();
        assert_eq!(pick(&chart, &versions).unwrap(), "1.1.0_b1");
    }

    #[test]
    fn only_a_manifest_with_helm_config_and_one_chart_layer_is_a_chart() {
        let o = ChartCacheOptions::default();
        let hex = "ab".repeat(32);
        let chart = |config: &str, layers: &str| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"{config}","digest":"sha256:{hex}","size":1}},"layers":[{layers}]}}"#
            )
        };
        let layer = |t: &str| format!(r#"{{"mediaType":"{t}","digest":"sha256:{hex}","size":10}}"#);
        let ok = chart(CHART_CONFIG, &layer(CHART_LAYER));
        assert_eq!(layer_of(&id(), ok.as_bytes(), &o).unwrap().hex, hex);
        let legacy = chart(CHART_CONFIG, &layer(LEGACY_CHART_LAYER));
        assert!(layer_of(&id(), legacy.as_bytes(), &o).is_ok());
        let image = chart(
            "application/vnd.oci.image.config.v1+json",
            &layer("application/vnd.oci.image.layer.v1.tar"),
        );
        let e = layer_of(&id(), image.as_bytes(), &o).unwrap_err();
        assert!(
            e.to_string()
                .contains("not application/vnd.cncf.helm.config.v1+json"),
            "{e}"
        );
        let none = chart(CHART_CONFIG, "");
        assert!(matches!(
            layer_of(&id(), none.as_bytes(), &o),
            Err(ChartError::NotAChart { .. })
        ));
        assert!(layer_of(&id(), b"<html>", &o).is_err());
    }

    #[test]
    fn oci_urls_name_the_artifact_of_the_chart() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            image(&u("oci://ghcr.io/org/charts"), "app").unwrap(),
            "ghcr.io/org/charts/app"
        );
        assert_eq!(
            image(&u("oci://127.0.0.1:5000/"), "app").unwrap(),
            "127.0.0.1:5000/app"
        );
        assert_eq!(image(&u("oci://h/x?y"), "app"), None);
    }
}
