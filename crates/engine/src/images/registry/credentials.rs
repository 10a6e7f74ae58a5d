//! Registry credentials, and reading them from a `kubernetes.io/dockerconfigjson`
//! Secret's `.dockerconfigjson`, the file `docker login` writes:
//!
//! ```json
//! {"auths": {"ghcr.io": {"auth": "<base64 of user:password>"},
//!            "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
//! ```
//!
//! Keys are registry hosts, optionally written as URLs (`https://host/v1/`); Docker
//! Hub's are `docker.io`, `index.docker.io`, `registry-1.docker.io` or
//! `https://index.docker.io/v1/`, all of which match an image on Docker Hub.
//!
//! No error ever holds a secret: they name the registry key and the field that is
//! wrong, never a value (the JSON is parsed untyped first, so even a type error cannot
//! echo a value).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

/// A user name and password (or token) for a registry. `Debug` never shows the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// What is wrong with a docker config. Every variant names the registry looked up;
/// none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file is not JSON.
    #[error("the docker config read for {registry} is not JSON")]
    NotJson {
        /// The registry host looked up.
        registry: String,
        /// The syntax error (line and column only).
        #[source]
        source: serde_json::Error,
    },
    /// There is no `auths` object at the top.
    #[error("the docker config read for {registry} has no \"auths\" object")]
    NoAuths {
        /// The registry host looked up.
        registry: String,
    },
    /// The entry for the registry is unusable.
    #[error("auths.{key:?} of the docker config {problem}")]
    BadEntry {
        /// The key of the entry as written (`https://index.docker.io/v1/`).
        key: String,
        /// What is wrong, e.g. `has an "auth" that is not base64`.
        problem: &'static str,
    },
}

impl Credentials {
    /// Credentials for `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The credentials for `registry_host` (as in an image reference: `ghcr.io`,
    /// `127.0.0.1:5000`, `docker.io`; see [`registry_host`](super::registry_host)) in
    /// the `.dockerconfigjson` `json`, `None` when it has no entry for that registry.
    ///
    /// An entry's `auth` (base64 of `user:password`) is used when it is there and not
    /// empty, as Docker does, else its `username` and `password`. A key spelled exactly
    /// like `registry_host` wins over one that only matches once normalized.
    pub fn from_docker_config(
        json: &[u8],
        registry_host: &str,
    ) -> Result<Option<Credentials>, CredentialsError> {
        let config: serde_json::Value =
            serde_json::from_slice(json).map_err(|source| CredentialsError::NotJson {
                registry: registry_host.to_string(),
                source,
            })?;
        let auths = config
            .get("auths")
            .and_then(|a| a.as_object())
            .ok_or_else(|| CredentialsError::NoAuths {
                registry: registry_host.to_string(),
            })?;
        let wanted = config_host(registry_host);
        let entry = auths
            .iter()
            .find(|(key, _)| key.as_str() == registry_host)
            .or_else(|| auths.iter().find(|(key, _)| config_host(key) == wanted));
        match entry {
            None => Ok(None),
            Some((key, entry)) => entry_credentials(key, entry).map(Some),
        }
    }
}

/// The credentials of one `auths` entry.
fn entry_credentials(
    key: &str,
    entry: &serde_json::Value,
) -> Result<Credentials, CredentialsError> {
    let bad = |problem| CredentialsError::BadEntry {
        key: key.to_string(),
        problem,
    };
    let entry = entry.as_object().ok_or_else(|| bad("is not an object"))?;
    let string = |field: &str, problem| match entry.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(problem)),
    };
    let auth = string("auth", "has an \"auth\" that is not a string")?;
    if let Some(auth) = auth.map(str::trim).filter(|a| !a.is_empty()) {
        let decoded = STANDARD
            .decode(auth)
            .or_else(|_| STANDARD_NO_PAD.decode(auth))
            .map_err(|_| bad("has an \"auth\" that is not base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad("has an \"auth\" that is not UTF-8 text"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad("has an \"auth\" that is not base64 of user:password"))?;
        return Ok(Credentials::new(username, password));
    }
    let username = string("username", "has a \"username\" that is not a string")?;
    let password = string("password", "has a \"password\" that is not a string")?;
    match (username, password) {
        (Some(u), Some(p)) => Ok(Credentials::new(u, p)),
        _ if entry.contains_key("identitytoken") => Err(bad(
            "holds only an \"identitytoken\" (OAuth refresh token), which is not supported",
        )),
        _ => Err(bad(
            "has neither \"auth\" nor \"username\" and \"password\"",
        )),
    }
}

/// A docker config key or registry host as one spelling: no scheme, no path, lower
/// case, Docker Hub's aliases as `docker.io`.
fn config_host(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn auth_is_base64_of_user_and_password_and_the_password_may_hold_colons() {
        let json = format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("bot:p:a:ss")
        );
        let c = Credentials::from_docker_config(json.as_bytes(), "ghcr.io")
            .unwrap()
            .unwrap();
        assert_eq!(c, Credentials::new("bot", "p:a:ss"));
        assert_eq!(
            Credentials::from_docker_config(json.as_bytes(), "quay.io").unwrap(),
            None
        );
    }

    #[test]
    fn username_and_password_fields_are_used_when_there_is_no_auth() {
        let json =
            r#"{"auths":{"127.0.0.1:5000":{"username":"alice","password":"s3cret","auth":""}}}"#;
        let c = Credentials::from_docker_config(json.as_bytes(), "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(c, Credentials::new("alice", "s3cret"));
    }

    #[test]
    fn docker_hub_keys_match_in_every_spelling() {
        for key in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            let json = format!(r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#, b64("u:p"));
            for host in [
                "docker.io",
                "index.docker.io",
                "https://index.docker.io/v1/",
            ] {
                let c = Credentials::from_docker_config(json.as_bytes(), host).unwrap();
                assert_eq!(c, Some(Credentials::new("u", "p")), "{key} for {host}");
            }
            assert_eq!(
                Credentials::from_docker_config(json.as_bytes(), "ghcr.io").unwrap(),
                None
            );
        }
    }

    #[test]
    fn an_exact_key_wins_over_a_normalized_one() {
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"docker.io":{{"auth":"{}"}}}}}}"#,
            b64("old:1"),
            b64("new:2")
        );
        let c = Credentials::from_docker_config(json.as_bytes(), "docker.io").unwrap();
        assert_eq!(c, Some(Credentials::new("new", "2")));
    }

    #[test]
    fn malformed_configs_are_named_without_the_secret() {
        let secret = "hunter2-topsecret";
        let cases: Vec<(String, &str)> = vec![
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":"{secret}!!"}}}}}}"#),
                "not base64",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64(secret)),
                "user:password",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"password":"{secret}"}}}}}}"#),
                "neither",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":["{secret}"]}}}}}}"#),
                "not a string",
            ),
            (
                format!(r#"{{"auths":{{"r.io":"{secret}"}}}}"#),
                "not an object",
            ),
            (format!(r#"{{"auths":"{secret}"}}"#), "no \"auths\""),
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":"{secret}"#),
                "not JSON",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"identitytoken":"{secret}"}}}}}}"#),
                "identitytoken",
            ),
        ];
        for (json, expected) in cases {
            let e = Credentials::from_docker_config(json.as_bytes(), "r.io").unwrap_err();
            let mut text = format!("{e} / {e:?}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(" / {s}"));
                source = s.source();
            }
            assert!(text.contains(expected), "{json}: {text}");
            assert!(!text.contains(secret), "{json}: {text}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials::new("alice", "s3cret");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
