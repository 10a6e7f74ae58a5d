//! Reading a chart repository over HTTP(S): `index.yaml` and archives, each with a
//! bound on its size and time, basic credentials sent to the repository's own origin
//! only.

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{StatusCode, Url};

use super::{ChartCacheOptions, ChartError, ChartId, HelmAuth, index};

/// Sent as `User-Agent`.
const USER_AGENT: &str = concat!("capstan/", env!("CARGO_PKG_VERSION"));

/// An HTTP client for one chart, with its credentials.
pub(super) struct Client {
    chart: ChartId,
    http: reqwest::Client,
    /// `Basic …`, marked sensitive (a secret: never shown).
    authorization: Option<HeaderValue>,
    username: Option<String>,
    max_index: u64,
    max_archive: u64,
}

impl Client {
    pub(super) fn new(
        chart: &ChartId,
        auth: &HelmAuth,
        options: &ChartCacheOptions,
    ) -> Result<Client, ChartError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(USER_AGENT)
            .danger_accept_invalid_certs(auth.insecure_skip_tls);
        if let Some(pem) = &auth.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|source| {
                ChartError::Client {
                    chart: chart.clone(),
                    source,
                }
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|source| ChartError::Client {
            chart: chart.clone(),
            source,
        })?;
        let authorization = auth.basic.as_ref().and_then(|(user, password)| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Ok(Client {
            chart: chart.clone(),
            http,
            authorization,
            username: auth.username().map(str::to_string),
            max_index: options.max_index_bytes as u64,
            max_archive: options.max_archive_bytes as u64,
        })
    }

    /// The repository's `index.yaml`.
    pub(super) async fn index(&self, repo: &Url) -> Result<Vec<u8>, ChartError> {
        let url = index::index_url(repo);
        self.get(&url, repo, self.max_index).await
    }

    /// An archive listed by the repository at `repo` (credentials go to its origin only).
    pub(super) async fn archive(&self, url: &Url, repo: &Url) -> Result<Vec<u8>, ChartError> {
        self.get(url, repo, self.max_archive).await
    }

    /// `GET url`, with the credentials when `url` is on the origin of `repo`.
    async fn get(&self, url: &Url, repo: &Url, limit: u64) -> Result<Vec<u8>, ChartError> {
        let shown = url.as_str().to_string();
        let mut req = self.http.get(url.clone());
        let same_origin = url.origin() == repo.origin();
        if let Some(auth) = self.authorization.as_ref().filter(|_| same_origin) {
            if url.scheme() == "http" && !super::super::git::is_loopback(url.as_str()) {
                return Err(ChartError::ClearTextCredentials {
                    chart: self.chart.clone(),
                });
            }
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let unreachable = |source| ChartError::Unreachable {
            chart: self.chart.clone(),
            url: shown.clone(),
            source,
        };
        let mut resp = req.send().await.map_err(unreachable)?;
        self.check(resp.status(), &shown, same_origin)?;
        let too_large = || ChartError::TooLarge {
            chart: self.chart.clone(),
            url: shown.clone(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The error a status that is not success means.
    fn check(
        &self,
        status: StatusCode,
        url: &str,
        sent_credentials: bool,
    ) -> Result<(), ChartError> {
        if status.is_success() {
            return Ok(());
        }
        let chart = self.chart.clone();
        let url = url.to_string();
        Err(match (status, self.username.as_ref()) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some(user)) if sent_credentials => {
                ChartError::AuthenticationFailed {
                    chart,
                    url,
                    username: user.clone(),
                }
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
                ChartError::AuthenticationRequired { chart, url }
            }
            _ => ChartError::Status {
                chart,
                url,
                status: status.as_u16(),
            },
        })
    }
}
