//! Chart repository credentials from a Secret, with the keys Argo CD's repository
//! Secrets and Flux's `secretRef`/`certSecretRef` use:
//!
//! | key | meaning |
//! | --- | --- |
//! | `username`, `password` | HTTP basic auth (or the registry's token service) |
//! | `ca.crt` (or `caFile`) | PEM CA certificates of a private CA |
//! | `insecure` | `"true"`: do not check the TLS certificate |
//!
//! A Secret with none of these keys is an error (a misspelt key is not silently read as
//! "no credentials"); no value ever appears in an error.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::HelmAuth;

/// Why a Secret could not be used as chart repository credentials. Every variant names
/// the Secret; none holds a value from it.
#[derive(Debug, thiserror::Error)]
pub enum AuthSecretError {
    /// Reading the Secret failed.
    #[error("reading the chart repository Secret {namespace}/{name}")]
    Read {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// The Secret does not exist.
    #[error("the chart repository Secret {namespace}/{name} does not exist")]
    Missing {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// `username` without `password`.
    #[error("the chart repository Secret {namespace}/{name} has a username but no password")]
    NoPassword {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// None of the keys Capstan reads.
    #[error(
        "the chart repository Secret {namespace}/{name} has none of username, password, ca.crt, caFile, insecure (keys: {keys})"
    )]
    NoCredentials {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The keys it has.
        keys: String,
    },
}

impl HelmAuth {
    /// The credentials a Secret holds: `username` and `password` (basic auth),
    /// `ca.crt` or `caFile` (PEM CA certificates), `insecure: "true"` (no TLS check);
    /// `plain_http` is left `false`. `data` wins over `stringData` for a key in both.
    pub fn from_secret(secret: &Secret) -> Result<HelmAuth, AuthSecretError> {
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let value = |key: &str| -> Option<Vec<u8>> {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|s| s.clone().into_bytes())
                })
        };
        let text = |key: &str| value(key).map(|b| String::from_utf8_lossy(&b).trim().to_string());
        let username = text("username");
        let password = value("password").map(|b| String::from_utf8_lossy(&b).into_owned());
        let ca_pem = value("ca.crt").or_else(|| value("caFile"));
        let insecure = text("insecure");
        if username.is_none() && password.is_none() && ca_pem.is_none() && insecure.is_none() {
            let mut keys: Vec<&str> = secret
                .data
                .iter()
                .flat_map(|d| d.keys())
                .chain(secret.string_data.iter().flat_map(|d| d.keys()))
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            keys.dedup();
            return Err(AuthSecretError::NoCredentials {
                namespace,
                name,
                keys: if keys.is_empty() {
                    "none".into()
                } else {
                    keys.join(", ")
                },
            });
        }
        let basic = match (username, password) {
            (user, Some(password)) => Some((user.unwrap_or_default(), password)),
            (Some(_), None) => return Err(AuthSecretError::NoPassword { namespace, name }),
            (None, None) => None,
        };
        Ok(HelmAuth {
            basic,
            ca_pem,
            insecure_skip_tls: insecure.is_some_and(|v| v.eq_ignore_ascii_case("true")),
            plain_http: false,
        })
    }
}

/// The credentials in Secret `namespace/name`, read through `client`.
pub async fn auth_from_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<HelmAuth, AuthSecretError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| AuthSecretError::Read {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        })?
        .ok_or_else(|| AuthSecretError::Missing {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })?;
    HelmAuth::from_secret(&secret)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("ci".into());
        s.metadata.name = Some("charts".into());
        let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        s.data = Some(
            map(data)
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        );
        s.string_data = Some(map(string_data));
        s
    }

    #[test]
    fn basic_auth_a_ca_and_insecure_are_read_from_their_keys() {
        let auth = HelmAuth::from_secret(&secret(
            &[
                ("username", "alice\n"),
                ("password", "s3cret"),
                ("ca.crt", "PEM"),
            ],
            &[("insecure", "true")],
        ))
        .unwrap();
        assert_eq!(auth.basic, Some(("alice".into(), "s3cret".into())));
        assert_eq!(auth.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert!(auth.insecure_skip_tls && !auth.plain_http);
        let ca_only = HelmAuth::from_secret(&secret(&[("caFile", "PEM")], &[])).unwrap();
        assert_eq!((ca_only.basic, ca_only.ca_pem.is_some()), (None, true));
    }

    #[test]
    fn a_secret_without_the_keys_or_without_a_password_is_an_error_without_values() {
        let e = HelmAuth::from_secret(&secret(&[("user", "alice"), ("pass", "hunter2")], &[]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the chart repository Secret ci/charts has none of username, password, ca.crt, \
             caFile, insecure (keys: pass, user)"
        );
        let e = HelmAuth::from_secret(&secret(&[("username", "alice")], &[])).unwrap_err();
        assert!(matches!(e, AuthSecretError::NoPassword { .. }), "{e}");
        assert!(!format!("{e:?}").contains("alice"));
    }
}
