//! Command-line flags shared by several commands, as parsed (raw). Each command turns
//! them into the engine's options.

use std::path::PathBuf;
use std::time::Duration;

use capstan_engine::render::{ValuesKind, ValuesReference};
use clap::{Args, ValueEnum};

/// Where manifests come from: a local directory, a Git repository, or a Helm chart from a
/// chart repository or OCI registry (whose values files then come from the directory or
/// Git repository, if one is given).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// A local directory of manifests (a Kustomization or a Helm chart works too).
    #[arg(value_name = "SOURCE")]
    pub dir: Option<PathBuf>,
    /// A Git repository URL (https://, http://, ssh://, git@host:path, file://, or a local repository path).
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    pub repo: Option<String>,
    /// Branch, tag, commit SHA (full or short) or semver range over tags (`>=1.2.0 <2.0.0`). Default: the remote's HEAD.
    #[arg(long, value_name = "REV", requires = "repo")]
    pub revision: Option<String>,
    /// Path inside the repository to render.
    #[arg(long, value_name = "PATH", default_value = ".")]
    pub path: PathBuf,
    #[command(flatten)]
    pub credentials: GitCredentials,
    #[command(flatten)]
    pub chart: ChartArgs,
    /// Directory of the Git and chart caches (default ~/.cache/capstan).
    #[arg(long, env = "CAPSTAN_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub render: RenderArgs,
}

/// A Helm chart from a chart repository or an OCI registry.
#[derive(Debug, Clone, Args)]
pub struct ChartArgs {
    /// Render a chart from this Helm chart repository (https://, http://) or OCI registry
    /// (oci://host/path); values files (--values) then come from SOURCE or --repo, or
    /// are local files when neither is given.
    #[arg(long, value_name = "URL", requires = "chart")]
    pub helm_repo: Option<String>,
    /// The chart's name in --helm-repo.
    #[arg(long, value_name = "NAME", requires = "helm_repo")]
    pub chart: Option<String>,
    /// The chart's version: exact, a semver range (`>=1.2 <2`, `1.x`), or omitted for the
    /// latest release.
    #[arg(long = "version", value_name = "RANGE", requires = "helm_repo")]
    pub chart_version: Option<String>,
    /// User name for the chart repository or registry.
    #[arg(long, env = "CAPSTAN_HELM_USERNAME")]
    pub helm_username: Option<String>,
    /// Password or token for the chart repository or registry (prefer the environment
    /// variable).
    #[arg(long, env = "CAPSTAN_HELM_PASSWORD", hide_env_values = true)]
    pub helm_password: Option<String>,
    /// A PEM file of CA certificates to trust for the chart repository (a private CA).
    #[arg(long, value_name = "FILE", requires = "helm_repo")]
    pub helm_ca_file: Option<PathBuf>,
    /// Do not check the chart repository's TLS certificate.
    #[arg(long, requires = "helm_repo")]
    pub helm_insecure_skip_tls_verify: bool,
    /// Plain HTTP to an oci:// registry (loopback registries only).
    #[arg(long, requires = "helm_repo")]
    pub helm_plain_http: bool,
}

/// Credentials for a Git repository.
#[derive(Debug, Clone, Args)]
pub struct GitCredentials {
    /// User name for HTTP(S) basic auth.
    #[arg(long, env = "CAPSTAN_GIT_USERNAME")]
    pub git_username: Option<String>,
    /// Password or token for HTTP(S) (prefer the environment variable).
    #[arg(long, env = "CAPSTAN_GIT_PASSWORD", hide_env_values = true)]
    pub git_password: Option<String>,
    /// Private key file for SSH.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file pinning the SSH server's key (default: trust the first key seen,
    /// remembered in Capstan's cache, never in ~/.ssh).
    #[arg(long, value_name = "FILE", requires = "ssh_key")]
    pub ssh_known_hosts: Option<PathBuf>,
}

impl GitCredentials {
    /// Whether any credential was given.
    pub fn given(&self) -> bool {
        self.git_password.is_some() || self.ssh_key.is_some()
    }
}

/// How a write-back's commit is made.
#[derive(Debug, Clone, Args)]
pub struct CommitArgs {
    /// The commit message, a template (see the command's help for its variables).
    #[arg(long, value_name = "TEMPLATE")]
    pub message: Option<String>,
    /// Author and committer of the commit, `Name <email>`.
    #[arg(long, value_name = "NAME <EMAIL>", env = "CAPSTAN_GIT_AUTHOR")]
    pub author: Option<String>,
    /// Sign the commit with this key: an SSH private key, or an armored OpenPGP secret
    /// key (`gpg --export-secret-keys --armor`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Passphrase of the OpenPGP signing key.
    #[arg(
        long,
        env = "CAPSTAN_SIGN_PASSPHRASE",
        hide_env_values = true,
        requires = "sign_key"
    )]
    pub sign_passphrase: Option<String>,
    #[command(flatten)]
    pub credentials: GitCredentials,
    /// Directory of the Git cache (default ~/.cache/capstan/git).
    #[arg(long, env = "CAPSTAN_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Where a write-back goes and how its commit is made (`set-image`, `promote`).
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Commit to this repository and push (https://, ssh://, git@host:path, file://, or a
    /// local repository path) instead of editing a directory in place.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// The branch to start from and push to (default: the remote's default branch).
    #[arg(long, value_name = "BRANCH", requires = "repo")]
    pub branch: Option<String>,
    /// Push to this branch instead, created from --branch when it does not exist (for
    /// a pull request); a template, e.g. `capstan/{{ image }}-{{ tag }}`.
    #[arg(long, value_name = "TEMPLATE", requires = "repo")]
    pub push_branch: Option<String>,
    #[command(flatten)]
    pub commit: CommitArgs,
}

/// How to reach an image registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// User name for the registry.
    #[arg(long, env = "CAPSTAN_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,
    /// Password or token for the registry (prefer the environment variable).
    #[arg(long, env = "CAPSTAN_REGISTRY_PASSWORD", hide_env_values = true)]
    pub registry_password: Option<String>,
    /// A Docker config file with the registry's credentials (`~/.docker/config.json`, or a
    /// Secret's `.dockerconfigjson`).
    #[arg(long, value_name = "FILE", conflicts_with = "registry_password")]
    pub docker_config: Option<PathBuf>,
    /// Plain HTTP instead of HTTPS (registries on loopback only).
    #[arg(long)]
    pub insecure: bool,
}

/// How to render.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// Renderer: directory, kustomize or helm (default: detected as Argo CD does).
    #[arg(long)]
    pub renderer: Option<String>,
    /// Directory renderer: only files matching these globs.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Directory renderer: leave out files matching these globs.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Helm: release name (default: the chart directory's name).
    #[arg(long, value_name = "NAME")]
    pub release_name: Option<String>,
    /// Helm: a values file inside the repository (repeatable); with --helm-repo and no
    /// repository, a local file.
    #[arg(long = "values", value_name = "FILE")]
    pub values_files: Vec<String>,
    /// Helm: values from a ConfigMap or Secret of the cluster, `configmap/NAME[:KEY]` or
    /// `secret/NAME[:KEY]` (KEY defaults to values.yaml; `NAMESPACE/` in front for
    /// another namespace than --namespace), applied after --values in the order given
    /// (repeatable; needs the cluster).
    #[arg(long = "values-from", value_name = "[NS/]KIND/NAME[:KEY]", value_parser = values_reference)]
    pub values_from: Vec<ValuesReference>,
    /// Helm: an inline value, `key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Path of the helm binary.
    #[arg(long, env = "CAPSTAN_HELM", value_name = "PATH")]
    pub helm: Option<String>,
    /// Path of the kustomize binary (default: kustomize, else `kubectl kustomize`).
    #[arg(long, value_name = "PATH")]
    pub kustomize: Option<String>,
    /// Jsonnet: a top-level argument as a string, `NAME=VALUE` (repeatable).
    #[arg(long, alias = "jsonnet-tla-str", value_name = "NAME=VALUE", value_parser = name_value)]
    pub jsonnet_tla: Vec<(String, String)>,
    /// Jsonnet: a top-level argument as Jsonnet code, `NAME=CODE` (repeatable).
    #[arg(long, value_name = "NAME=CODE", value_parser = name_value)]
    pub jsonnet_tla_code: Vec<(String, String)>,
    /// Jsonnet: an external variable (`std.extVar`) as a string, `NAME=VALUE` (repeatable).
    #[arg(long, alias = "jsonnet-ext-var-str", value_name = "NAME=VALUE", value_parser = name_value)]
    pub jsonnet_ext_str: Vec<(String, String)>,
    /// Jsonnet: an external variable as Jsonnet code, `NAME=CODE` (repeatable).
    #[arg(long, alias = "jsonnet-ext-var-code", value_name = "NAME=CODE", value_parser = name_value)]
    pub jsonnet_ext_code: Vec<(String, String)>,
    /// Jsonnet: a library directory searched by imports, relative to the repository root
    /// (repeatable).
    #[arg(long, alias = "jsonnet-libs", value_name = "PATH")]
    pub jsonnet_lib: Vec<String>,
    /// Time limit for a renderer (an external one, or evaluating Jsonnet).
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub render_timeout: Duration,
}

/// `NAME=VALUE` split at the first `=`; the name may not be empty.
fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// `[NS/]configmap/NAME[:KEY]` or `[NS/]secret/NAME[:KEY]`.
pub fn values_reference(s: &str) -> Result<ValuesReference, String> {
    let (object, key) = match s.split_once(':') {
        Some((object, key)) if !key.is_empty() => (object, Some(key)),
        Some(_) => return Err(format!("{s:?}: the key after ':' is empty")),
        None => (s, None),
    };
    let parts: Vec<&str> = object.split('/').collect();
    let (namespace, kind, name) = match parts.as_slice() {
        [kind, name] => (None, *kind, *name),
        [ns, kind, name] if !ns.is_empty() => (Some(ns.to_string()), *kind, *name),
        _ => return Err(format!("{s:?} is not [NAMESPACE/]KIND/NAME[:KEY]")),
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "configmap" | "cm" => ValuesKind::ConfigMap,
        "secret" => ValuesKind::Secret,
        _ => {
            return Err(format!(
                "{s:?}: the kind is configmap or secret, not {kind:?}"
            ));
        }
    };
    if name.is_empty() {
        return Err(format!("{s:?}: the name is empty"));
    }
    let mut r = ValuesReference::new(kind, name);
    r.namespace = namespace;
    if let Some(key) = key {
        r.key = key.to_string();
    }
    Ok(r)
}

/// How to reach the cluster.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people (coloured on a terminal).
    Text,
    /// For scripts.
    Json,
    /// YAML (render only).
    Yaml,
    /// For pull-request comments (diff only).
    Markdown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_names_a_kind_a_name_and_optionally_a_namespace_and_a_key() {
        let r = values_reference("configmap/web").unwrap();
        assert_eq!(
            (r.kind, r.name.as_str(), r.namespace, r.key.as_str()),
            (ValuesKind::ConfigMap, "web", None, "values.yaml")
        );
        let r = values_reference("prod/Secret/web-secrets:prod.yaml").unwrap();
        assert_eq!(
            (
                r.kind,
                r.name.as_str(),
                r.namespace.as_deref(),
                r.key.as_str()
            ),
            (ValuesKind::Secret, "web-secrets", Some("prod"), "prod.yaml")
        );
        for bad in [
            "web",
            "deployment/web",
            "configmap/",
            "configmap/web:",
            "a/b/c/d",
        ] {
            assert!(values_reference(bad).is_err(), "{bad}");
        }
    }
}
