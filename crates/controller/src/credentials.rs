//! Repository credentials from a Secret, for fetching and for write-back alike.
//!
//! A credentials Secret holds `username` and `password` (or `token`) for HTTPS, or
//! `sshPrivateKey` (and optionally `knownHosts`) for SSH — the keys Argo CD's
//! repository Secrets use. SSH keys are written to files (mode 0600) under the
//! controller's state directory, because `ssh` reads keys from files.

use std::path::Path;

use capstan_engine::source::GitAuth;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// Why a credentials Secret could not be used. Every variant names the Secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading the Secret failed.
    #[error("reading credentials Secret {namespace}/{name}")]
    Read {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The Secret does not exist.
    #[error("credentials Secret {namespace}/{name} does not exist")]
    Missing {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
    },
    /// The Secret has none of the keys Capstan reads.
    #[error("credentials Secret {namespace}/{name} has neither password, token nor sshPrivateKey")]
    NoCredentials {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
    },
    /// Writing the SSH key or known_hosts file failed.
    #[error("writing {what} of credentials Secret {namespace}/{name}")]
    Write {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// `the SSH key` or `known_hosts`.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The credentials in Secret `namespace/name` (none when `name` is `None`). SSH keys
/// go to `state_dir/ssh/`.
pub async fn git_auth(
    client: &kube::Client,
    namespace: &str,
    name: Option<&str>,
    state_dir: &Path,
) -> Result<GitAuth, CredentialsError> {
    let Some(name) = name else {
        return Ok(GitAuth::None);
    };
    let (ns, n) = (namespace.to_string(), name.to_string());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| CredentialsError::Read {
            namespace: ns.clone(),
            name: n.clone(),
            source,
        })?
        .ok_or_else(|| CredentialsError::Missing {
            namespace: ns.clone(),
            name: n.clone(),
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let write_err = |what: &'static str| {
        let (ns, n) = (ns.clone(), n.clone());
        move |source| CredentialsError::Write {
            namespace: ns,
            name: n,
            what,
            source,
        }
    };
    if let Some(key) = text("sshPrivateKey") {
        let dir = state_dir.join("ssh");
        std::fs::create_dir_all(&dir).map_err(write_err("the SSH key"))?;
        let path = dir.join(format!("{namespace}.{name}.key"));
        write_private(&path, &key).map_err(write_err("the SSH key"))?;
        let known_hosts = match text("knownHosts") {
            Some(kh) => {
                let p = dir.join(format!("{namespace}.{name}.known_hosts"));
                std::fs::write(&p, kh).map_err(write_err("known_hosts"))?;
                Some(p)
            }
            None => None,
        };
        return Ok(GitAuth::SshKey {
            key: path,
            known_hosts,
        });
    }
    let password = text("password").or_else(|| text("token")).ok_or_else(|| {
        CredentialsError::NoCredentials {
            namespace: ns.clone(),
            name: n.clone(),
        }
    })?;
    Ok(GitAuth::Basic {
        username: text("username").unwrap_or_else(|| "git".into()),
        password,
    })
}

/// Write `contents` to a file only its owner can read.
pub use capstan_engine::source::write::write_private_file as write_private;
