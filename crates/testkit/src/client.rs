//! A plain HTTP client for tests that talk to Capstan's server (probes, API, webhooks).

/// A blocking reqwest client; installs the process's one crypto provider (ring) first,
/// which reqwest needs even for plain HTTP.
pub fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

/// GET `url`: the status and body, or `None` while nothing answers.
pub fn get(url: &str) -> Option<(u16, String)> {
    let r = http().get(url).send().ok()?;
    Some((r.status().as_u16(), r.text().unwrap_or_default()))
}

/// An async reqwest client that follows no redirects (so a test sees the 303 of a
/// form); installs the crypto provider first, as [`http`] does.
pub fn http_async() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}
