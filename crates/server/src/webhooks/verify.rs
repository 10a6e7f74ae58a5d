//! Is a delivery from whom it says: each provider's signature or token checked
//! against the shared secret, in constant time.

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::event::Provider;

/// The secrets of one provider, from the webhook Secret.
#[derive(Clone, Default)]
pub struct Secrets {
    /// The shared secret (HMAC key, GitLab token, Basic credentials `user:password`
    /// for Azure DevOps, the URL token of Docker Hub, the Authorization value of Harbor).
    pub secret: Option<Vec<u8>>,
    /// Bitbucket Cloud's classic hooks: the hook's UUID (`X-Hook-UUID`).
    pub hook_uuid: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the values
        f.debug_struct("Secrets")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("hook_uuid", &self.hook_uuid.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Secrets {
    /// Whether anything is configured to check a delivery against.
    pub fn is_configured(&self) -> bool {
        self.secret.is_some() || self.hook_uuid.is_some()
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No signature (or token) header.
    #[error("no {0} header")]
    Missing(&'static str),
    /// The signature or token does not match.
    #[error("the {0} header does not match the shared secret")]
    Mismatch(&'static str),
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// HMAC-SHA256 of `body` under `key`, compared with the hex `given` in constant time.
fn hmac_matches(key: &[u8], body: &[u8], given: &str) -> bool {
    let Ok(given) = hex::decode(given.trim()) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Check a delivery of `provider` (`path_token` is the token in the URL, Docker Hub's).
pub fn check(
    provider: Provider,
    secrets: &Secrets,
    headers: &HeaderMap,
    body: &[u8],
    path_token: Option<&str>,
) -> Result<(), Refused> {
    let hmac_header = |name: &'static str, prefix: &str, key: &[u8]| -> Result<(), Refused> {
        let v = header(headers, name).ok_or(Refused::Missing(name))?;
        let hexed = v.strip_prefix(prefix).ok_or(Refused::Mismatch(name))?;
        if hmac_matches(key, body, hexed) {
            Ok(())
        } else {
            Err(Refused::Mismatch(name))
        }
    };
    let key = secrets.secret.as_deref();
    match provider {
        Provider::GitHub | Provider::Generic | Provider::Registry => {
            let name = if provider == Provider::GitHub {
                "x-hub-signature-256"
            } else {
                "x-capstan-signature"
            };
            hmac_header(name, "sha256=", key.unwrap_or_default())
        }
        Provider::GitLab => {
            let v = header(headers, "x-gitlab-token").ok_or(Refused::Missing("x-gitlab-token"))?;
            if equal(v.as_bytes(), key.unwrap_or_default()) {
                Ok(())
            } else {
                Err(Refused::Mismatch("x-gitlab-token"))
            }
        }
        Provider::Gitea => {
            // Forgejo names it X-Forgejo-Signature; Gitea also sends X-Hub-Signature-256
            let key = key.unwrap_or_default();
            if headers.contains_key("x-gitea-signature") {
                hmac_header("x-gitea-signature", "", key)
            } else if headers.contains_key("x-forgejo-signature") {
                hmac_header("x-forgejo-signature", "", key)
            } else {
                hmac_header("x-hub-signature-256", "sha256=", key).map_err(|e| match e {
                    Refused::Missing(_) => Refused::Missing("x-gitea-signature"),
                    e => e,
                })
            }
        }
        Provider::Gogs => hmac_header("x-gogs-signature", "", key.unwrap_or_default()),
        Provider::Bitbucket => {
            // Server always signs; Cloud signs when the hook has a secret, and classic
            // Cloud hooks are known by their UUID.
            if headers.contains_key("x-hub-signature") || secrets.hook_uuid.is_none() {
                return hmac_header("x-hub-signature", "sha256=", key.unwrap_or_default());
            }
            let uuid = secrets.hook_uuid.as_deref().unwrap_or_default();
            let v = header(headers, "x-hook-uuid").ok_or(Refused::Missing("x-hook-uuid"))?;
            if equal(v.as_bytes(), uuid) {
                Ok(())
            } else {
                Err(Refused::Mismatch("x-hook-uuid"))
            }
        }
        Provider::AzureDevOps => {
            use base64::Engine;
            let v = header(headers, "authorization").ok_or(Refused::Missing("authorization"))?;
            let given = v
                .strip_prefix("Basic ")
                .and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .ok()
                })
                .ok_or(Refused::Mismatch("authorization"))?;
            if equal(&given, key.unwrap_or_default()) {
                Ok(())
            } else {
                Err(Refused::Mismatch("authorization"))
            }
        }
        Provider::DockerHub => {
            // Docker Hub cannot sign: the secret is the last segment of the URL
            let t = path_token.ok_or(Refused::Missing("URL token"))?;
            if equal(t.as_bytes(), key.unwrap_or_default()) {
                Ok(())
            } else {
                Err(Refused::Mismatch("URL token"))
            }
        }
        Provider::Harbor => {
            // Harbor sends the hook's configured "Auth Header" value as Authorization
            let v = header(headers, "authorization").ok_or(Refused::Missing("authorization"))?;
            if equal(v.as_bytes(), key.unwrap_or_default()) {
                Ok(())
            } else {
                Err(Refused::Mismatch("authorization"))
            }
        }
    }
}

/// The `sha256=<hex>` signature of `body` under `key`, as GitHub and Capstan's own
/// forms send it (and as notifications sign their bodies).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_vector_verifies() {
        // docs.github.com, "Validating webhook deliveries"
        let key = b"It's a Secret to Everybody";
        let sig = sign(key, b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", sig.parse().unwrap());
        let s = Secrets {
            secret: Some(key.to_vec()),
            hook_uuid: None,
        };
        assert_eq!(
            check(Provider::GitHub, &s, &h, b"Hello, World!", None),
            Ok(())
        );
        assert_eq!(
            check(Provider::GitHub, &s, &h, b"Hello, World?", None),
            Err(Refused::Mismatch("x-hub-signature-256"))
        );
        assert_eq!(
            check(
                Provider::GitHub,
                &s,
                &HeaderMap::new(),
                b"Hello, World!",
                None
            ),
            Err(Refused::Missing("x-hub-signature-256"))
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secrets {
            secret: Some(b"hunter2".to_vec()),
            hook_uuid: None,
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
