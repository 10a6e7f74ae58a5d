//! The requests of one registry call and the one challenge they answer: anonymous
//! first; on a `401`, basic credentials for a `Basic` challenge or a bearer token from
//! the token service of a `Bearer` one (through oci-client), then the same request
//! again. Statuses become [`RegistryError`]s here, and bodies are read with a bound.

use std::collections::HashMap;

use base64::Engine as _;
use oci_client::RegistryOperation;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};

use super::target::{Target, host_port, is_loopback_url, oci_reference};
use super::{Credentials, RegistryClient, RegistryError, excerpt, first_bytes, headers};

/// The requests of one call: the same authorization for all of them, found through
/// the first challenge.
pub(super) struct Call<'a> {
    client: &'a RegistryClient,
    target: &'a Target,
    creds: Option<&'a Credentials>,
    /// The `Authorization` value to send (a secret: never shown).
    authorization: Option<HeaderValue>,
    /// Whether a challenge was answered already (only one is, per call).
    challenged: bool,
}

impl<'a> Call<'a> {
    pub(super) fn new(
        client: &'a RegistryClient,
        target: &'a Target,
        creds: Option<&'a Credentials>,
    ) -> Call<'a> {
        Call {
            client,
            target,
            creds,
            authorization: None,
            challenged: false,
        }
    }

    /// Send a request; on the first `401`, answer its challenge and send it again.
    pub(super) async fn send(
        &mut self,
        method: Method,
        url: &Url,
        accept: &str,
    ) -> Result<Response, RegistryError> {
        let resp = self.send_once(method.clone(), url, accept).await?;
        if resp.status() != StatusCode::UNAUTHORIZED || self.challenged {
            return Ok(resp);
        }
        self.challenged = true;
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(headers::challenge);
        self.authorization = Some(self.authorize(challenge).await?);
        self.send_once(method, url, accept).await
    }

    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        accept: &str,
    ) -> Result<Response, RegistryError> {
        let mut req = self
            .client
            .http
            .request(method, url.clone())
            .header(ACCEPT, accept);
        if let Some(auth) = &self.authorization {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        req.send().await.map_err(|source| self.unreachable(source))
    }

    /// The `Authorization` that answers `challenge` (scheme and parameters).
    async fn authorize(
        &self,
        challenge: Option<(String, HashMap<String, String>)>,
    ) -> Result<HeaderValue, RegistryError> {
        let image = || self.target.image.clone();
        let refused = || match self.creds {
            Some(c) => RegistryError::AuthenticationFailed {
                image: image(),
                username: c.username.clone(),
            },
            None => RegistryError::AuthenticationRequired { image: image() },
        };
        let basic = || -> Result<HeaderValue, RegistryError> {
            let creds = self.creds.ok_or_else(refused)?;
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", creds.username, creds.password));
            secret_header(&format!("Basic {encoded}")).ok_or_else(refused)
        };
        let realm = match &challenge {
            Some((scheme, params)) if scheme == "bearer" => params.get("realm").cloned(),
            _ => return basic(),
        };
        let Some(realm) = realm else {
            return Err(refused());
        };
        let clear_text = Url::parse(&realm)
            .map(|url| url.scheme() == "http" && !is_loopback_url(&url))
            .unwrap_or(false);
        if self.creds.is_some() && clear_text {
            return Err(RegistryError::ClearTextCredentials {
                image: image(),
                realm,
            });
        }
        let auth = match self.creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let reference = oci_reference(&self.target.registry, &self.target.repository);
        let timeout = self.client.options.timeout;
        let token = tokio::time::timeout(
            timeout,
            self.client
                .oci
                .auth(&reference, &auth, RegistryOperation::Pull),
        )
        .await
        .map_err(|_| RegistryError::TokenTimeout {
            image: image(),
            realm: realm.clone(),
            timeout,
        })?;
        match token {
            Ok(Some(token)) => secret_header(&format!("Bearer {token}")).ok_or_else(refused),
            // The registry's `/v2/` did not ask for a token after all.
            Ok(None) => basic(),
            Err(OciDistributionError::AuthenticationFailure(_)) => Err(refused()),
            // The registry's `/v2/` or the token service did not answer: the error's
            // URL says which.
            Err(OciDistributionError::RequestError(source)) => Err(RegistryError::Unreachable {
                registry: source
                    .url()
                    .map(host_port)
                    .unwrap_or_else(|| self.target.api_host()),
                image: image(),
                source,
            }),
            Err(source) => Err(RegistryError::Token {
                image: image(),
                realm,
                source,
            }),
        }
    }

    /// `resp` when it is a success; else the error its status means, `not_found` for a
    /// `404`.
    pub(super) async fn check(
        &self,
        resp: Response,
        method: &Method,
        url: &Url,
        not_found: impl FnOnce(String) -> RegistryError,
    ) -> Result<Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let image = self.target.image.clone();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => match self.creds {
                Some(c) => RegistryError::AuthenticationFailed {
                    image,
                    username: c.username.clone(),
                },
                None => RegistryError::AuthenticationRequired { image },
            },
            StatusCode::NOT_FOUND => not_found(image),
            _ => RegistryError::Status {
                image,
                request: format!("{method} {}", url.path()),
                status: status.as_u16(),
                excerpt: excerpt(&first_bytes(resp).await),
            },
        })
    }

    /// The body of `resp`, at most `limit` bytes.
    pub(super) async fn body(
        &self,
        mut resp: Response,
        url: &Url,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            image: self.target.image.clone(),
            request: format!("GET {}", url.path()),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn unreachable(&self, source: reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.target.api_host(),
            image: self.target.image.clone(),
            source,
        }
    }
}

/// A header value marked sensitive (hyper then never shows it), `None` when the
/// credentials hold characters a header cannot carry.
fn secret_header(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}
