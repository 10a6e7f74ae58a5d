//! Pulling an artifact's parts: a manifest by tag or digest, and a blob by digest, each
//! read with a bound and checked against its sha256 — what pulling a Helm chart stored
//! as an OCI artifact needs (the manifest names the chart layer, the blob is the
//! `.tgz`).
//!
//! ```text
//! GET /v2/<name>/manifests/<tag|digest>   ──sha256 of the body──▶ Manifest
//! GET /v2/<name>/blobs/<digest>           ──sha256 must equal the digest──▶ bytes
//! ```
//!
//! Blob requests may be redirected (registries hand blobs to object storage); reqwest
//! follows the redirect and drops the `Authorization` header when it leaves the
//! registry's origin.

use reqwest::Method;
use sha2::{Digest, Sha256};

use super::call::Call;
use super::target::Target;
use super::{
    Credentials, MAX_MANIFEST_BYTES, RegistryClient, RegistryError, excerpt, is_sha256_digest,
};
use crate::images::reference::valid_tag;

/// A manifest as the registry sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `sha256:…` of the body (the registry's `Docker-Content-Digest`, checked).
    pub digest: String,
    /// The `Content-Type` the registry sent, if any.
    pub media_type: Option<String>,
    /// The manifest, as bytes (JSON).
    pub body: Vec<u8>,
}

impl RegistryClient {
    /// The manifest of `image` (`host[:port]/repository`) at `reference`, a tag or a
    /// `sha256:` digest, asked for with `accept` (e.g. [`MANIFEST_ACCEPT`](super::MANIFEST_ACCEPT)).
    ///
    /// The body is at most 4 MiB. Its sha256 is the digest returned; a registry whose
    /// `Docker-Content-Digest` says otherwise, or a manifest fetched by digest whose body
    /// has another one, is a [`RegistryError::DigestMismatch`].
    pub async fn manifest(
        &self,
        image: &str,
        reference: &str,
        accept: &str,
        creds: Option<&Credentials>,
    ) -> Result<Manifest, RegistryError> {
        let target = Target::parse(image, self.options.insecure)?;
        let by_digest = is_sha256_digest(reference);
        if !by_digest && !valid_tag(reference) {
            return Err(RegistryError::InvalidTag {
                image: target.image.clone(),
                tag: reference.to_string(),
            });
        }
        let mut call = Call::new(self, &target, creds);
        let url = target.url(&format!("v2/{}/manifests/{reference}", target.repository))?;
        let resp = call.send(Method::GET, &url, accept).await?;
        let not_found = |image| RegistryError::TagNotFound {
            image,
            tag: reference.to_string(),
        };
        let resp = call.check(resp, &Method::GET, &url, not_found).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        };
        let announced = header("docker-content-digest");
        let media_type = header("content-type");
        let body = call.body(resp, &url, MAX_MANIFEST_BYTES).await?;
        let digest = sha256_of(&body);
        let expected = if by_digest {
            Some(reference.to_string())
        } else {
            announced.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(RegistryError::DigestMismatch {
                image: target.image.clone(),
                reference: reference.to_string(),
                expected: excerpt(expected.as_bytes()),
                actual: digest,
            });
        }
        Ok(Manifest {
            digest,
            media_type,
            body,
        })
    }

    /// The blob `digest` (`sha256:…`) of `image`, at most `limit` bytes, checked: a body
    /// whose sha256 is another is a [`RegistryError::DigestMismatch`] and is not returned.
    pub async fn blob(
        &self,
        image: &str,
        digest: &str,
        limit: usize,
        creds: Option<&Credentials>,
    ) -> Result<Vec<u8>, RegistryError> {
        let target = Target::parse(image, self.options.insecure)?;
        if !is_sha256_digest(digest) {
            return Err(RegistryError::BadDigest {
                image: target.image.clone(),
                tag: "<blob>".into(),
                digest: excerpt(digest.as_bytes()),
            });
        }
        let mut call = Call::new(self, &target, creds);
        let url = target.url(&format!("v2/{}/blobs/{digest}", target.repository))?;
        let resp = call.send(Method::GET, &url, "*/*").await?;
        let not_found = |image| RegistryError::BlobNotFound {
            image,
            digest: digest.to_string(),
        };
        let resp = call.check(resp, &Method::GET, &url, not_found).await?;
        let body = call.body(resp, &url, limit).await?;
        let actual = sha256_of(&body);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                image: target.image.clone(),
                reference: digest.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }
}

/// `sha256:<hex>` of `data`.
fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}
