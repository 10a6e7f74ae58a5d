//! From source flags to a checkout (or a fetched chart) and a desired set.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use capstan_core::Revision;
use capstan_engine::destination::{Capabilities, Destination};
use capstan_engine::render::{
    self, ChartDir, DesiredObject, HelmOptions, JsonnetOptions, JsonnetVar, KustomizeOptions,
    RenderOptions, Scopes, ValuesDoc,
};
use capstan_engine::source::{
    ChartCache, ChartSource, Checkout, FetchedChart, GitAuth, GitCache, GitSource, HelmAuth, local,
};

use crate::args::{ChartArgs, GitCredentials, RenderArgs, SourceArgs};

/// What the source flags name, fetched: a tree to render, or a chart from a chart
/// repository (with the tree its values files come from, when there is one).
pub struct Fetched {
    /// The revision the desired set comes from: the tree's, or the chart's digest.
    pub revision: Revision,
    tree: Option<Checkout>,
    chart: Option<FetchedChart>,
}

impl Fetched {
    /// The source in one line, for people: the commit (with its author and message) or
    /// directory digest, or `chart NAME VERSION (sha256:…)`.
    pub fn describe(&self) -> String {
        match &self.chart {
            Some(chart) => format!(
                "{} ({})",
                self.revision.message,
                &chart.digest[..chart.digest.len().min(19)]
            ),
            None => crate::print::revision_line(&self.revision),
        }
    }
}

/// What the destination cluster tells a render: Helm's `.Capabilities` and the values
/// of `--values-from`.
pub struct FromCluster {
    /// The cluster's API versions and Kubernetes version.
    pub caps: Capabilities,
    /// The `--values-from` documents, in order.
    pub values: Vec<ValuesDoc>,
}

/// Read what a render for `dest` needs from it.
pub async fn from_cluster(dest: &Destination, args: &RenderArgs) -> anyhow::Result<FromCluster> {
    let caps = dest.capabilities().await?;
    let values = render::values_from(dest.client(), &dest.namespace, &args.values_from).await?;
    Ok(FromCluster { caps, values })
}

/// The render options the flags ask for; what the destination says (when there is
/// one) becomes Helm's `.Capabilities` and `--values-from` values.
pub fn render_options(
    args: &RenderArgs,
    namespace: &str,
    cluster: Option<&FromCluster>,
) -> anyhow::Result<RenderOptions> {
    if cluster.is_none() && !args.values_from.is_empty() {
        bail!(
            "--values-from reads ConfigMaps and Secrets of a cluster: give --kubeconfig or --context"
        );
    }
    let caps = cluster.map(|c| &c.caps);
    let renderer = match &args.renderer {
        Some(r) => Some(r.parse().map_err(anyhow::Error::msg)?),
        None => None,
    };
    Ok(RenderOptions {
        renderer,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        kustomize: KustomizeOptions {
            binary: args.kustomize.clone(),
            timeout: args.render_timeout,
            ..Default::default()
        },
        helm: HelmOptions {
            binary: args.helm.clone(),
            release_name: args.release_name.clone(),
            namespace: Some(namespace.to_string()),
            values_files: args.values_files.clone(),
            set: args.set.clone(),
            values_from: cluster.map(|c| c.values.clone()).unwrap_or_default(),
            values: None,
            timeout: args.render_timeout,
            api_versions: caps.map(|c| c.api_versions.clone()).unwrap_or_default(),
            kube_version: caps.and_then(|c| c.kube_version.clone()),
        },
        jsonnet: JsonnetOptions {
            tlas: jsonnet_vars(&args.jsonnet_tla, &args.jsonnet_tla_code),
            ext_vars: jsonnet_vars(&args.jsonnet_ext_str, &args.jsonnet_ext_code),
            libs: args.jsonnet_lib.clone(),
            timeout: args.render_timeout,
            ..Default::default()
        },
    })
}

/// Jsonnet variables from the string flags and the code flags.
fn jsonnet_vars(strings: &[(String, String)], code: &[(String, String)]) -> Vec<JsonnetVar> {
    let var = |code: bool| {
        move |(name, value): &(String, String)| JsonnetVar {
            name: name.clone(),
            value: value.clone(),
            code,
        }
    };
    strings
        .iter()
        .map(var(false))
        .chain(code.iter().map(var(true)))
        .collect()
}

/// The chart the flags name, with its credentials, if any.
pub fn chart_source(args: &ChartArgs) -> anyhow::Result<Option<(ChartSource, HelmAuth)>> {
    let (Some(repo), Some(chart)) = (&args.helm_repo, &args.chart) else {
        return Ok(None);
    };
    let basic = match (&args.helm_username, &args.helm_password) {
        (user, Some(password)) => Some((user.clone().unwrap_or_default(), password.clone())),
        (Some(_), None) => bail!(
            "--helm-username needs a password or token (--helm-password or CAPSTAN_HELM_PASSWORD)"
        ),
        (None, None) => None,
    };
    let src = ChartSource::new(repo, chart, args.chart_version.clone().unwrap_or_default());
    let ca_pem = match &args.helm_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?,
        ),
        None => None,
    };
    let auth = HelmAuth {
        basic,
        ca_pem,
        insecure_skip_tls: args.helm_insecure_skip_tls_verify,
        plain_http: args.helm_plain_http,
    };
    Ok(Some((src, auth)))
}

/// The Git source the flags name, if any.
pub fn git_source(args: &SourceArgs) -> anyhow::Result<Option<GitSource>> {
    match &args.repo {
        None => Ok(None),
        Some(repo) => Ok(Some(repository(repo, &args.credentials)?)),
    }
}

/// The repository `repo` (a URL or a local path) with the credentials the flags give.
pub fn repository(repo: &str, creds: &GitCredentials) -> anyhow::Result<GitSource> {
    let url = if repo.contains("://") || (repo.contains('@') && repo.contains(':')) {
        repo.to_string()
    } else {
        let path = Path::new(repo);
        let abs = path.canonicalize().with_context(|| {
            format!("repository {repo:?} is neither a URL nor an existing path")
        })?;
        format!("file://{}", abs.display())
    };
    let auth = match (&creds.ssh_key, &creds.git_username, &creds.git_password) {
        (Some(key), _, _) => GitAuth::SshKey {
            key: key.clone(),
            known_hosts: creds.ssh_known_hosts.clone(),
        },
        (None, user, Some(password)) => GitAuth::Basic {
            username: user.clone().unwrap_or_else(|| "git".into()),
            password: password.clone(),
        },
        (None, Some(_), None) => bail!(
            "--git-username needs a password or token (--git-password or CAPSTAN_GIT_PASSWORD)"
        ),
        (None, None, None) => GitAuth::None,
    };
    Ok(GitSource { url, auth })
}

/// The Git cache under `dir` (or the default one).
pub fn cache(dir: Option<&Path>) -> GitCache {
    GitCache::new(
        dir.map(|d| d.join("git"))
            .unwrap_or_else(GitCache::default_dir),
    )
}

/// Fetch what the flags name: the chart of --helm-repo, and the tree (for a
/// repository, checked out at `revision` or the flags' revision).
pub async fn checkout(args: &SourceArgs, revision: Option<&str>) -> anyhow::Result<Fetched> {
    let tree = tree(args, revision).await?;
    let Some((src, auth)) = chart_source(&args.chart)? else {
        let tree = tree.context("give a SOURCE directory, --repo URL or --helm-repo URL")?;
        return Ok(Fetched {
            revision: tree.revision.clone(),
            tree: Some(tree),
            chart: None,
        });
    };
    let cache = ChartCache::new(
        args.cache_dir
            .as_ref()
            .map(|d| d.join("charts"))
            .unwrap_or_else(ChartCache::default_dir),
    );
    let chart = cache.fetch(&src, &auth).await?;
    let mut revision = chart.revision(&src.version);
    if let Some(values) = tree.as_ref().filter(|t| !t.revision.author.is_empty()) {
        revision.message = format!(
            "{}, values at {}",
            revision.message,
            values.revision.short()
        );
    }
    Ok(Fetched {
        revision,
        tree,
        chart: Some(chart),
    })
}

/// The local directory or Git checkout the flags name, if any.
async fn tree(args: &SourceArgs, revision: Option<&str>) -> anyhow::Result<Option<Checkout>> {
    match git_source(args)? {
        None => {
            let Some(dir) = args.dir.clone() else {
                return Ok(None);
            };
            let mut checkout =
                local::open(&dir).with_context(|| format!("reading {}", dir.display()))?;
            checkout.path = args.path.clone();
            Ok(Some(checkout))
        }
        Some(src) => {
            let cache = cache(args.cache_dir.as_deref());
            let rev = revision
                .map(str::to_string)
                .or_else(|| args.revision.clone())
                .unwrap_or_default();
            let path = args.path.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<Checkout> {
                cache.fetch(&src)?;
                let revision = cache.resolve(&src, &rev)?;
                Ok(cache.checkout(&src, &revision, &path)?)
            })
            .await
            .context("the fetch task panicked")?
            .map(Some)
        }
    }
}

/// Render what was fetched into the desired set.
pub async fn render(
    fetched: &Fetched,
    args: &RenderArgs,
    namespace: &str,
    scopes: &Scopes,
    cluster: Option<&FromCluster>,
) -> anyhow::Result<Vec<DesiredObject>> {
    let mut opts = render_options(args, namespace, cluster)?;
    match (&fetched.chart, &fetched.tree) {
        (None, Some(tree)) => Ok(render::render(tree, &opts, namespace, scopes).await?),
        (None, None) => bail!("nothing to render"),
        (Some(chart), tree) => {
            let values_root = match tree {
                Some(tree) => tree.root().to_path_buf(),
                None => {
                    // No repository: the values files are the user's own local files,
                    // as with `helm template -f`.
                    opts.helm.values_files = local_values(&opts.helm.values_files)?;
                    PathBuf::from("/")
                }
            };
            let dir = ChartDir {
                dir: chart.dir.clone(),
                label: format!("chart {} {}", chart.name, chart.version),
                values_root: Some(values_root),
            };
            Ok(render::render_chart(&dir, &opts.helm, namespace, scopes).await?)
        }
    }
}

/// Local values files as paths below `/` (absolute, without the leading slash).
fn local_values(files: &[String]) -> anyhow::Result<Vec<String>> {
    files
        .iter()
        .map(|f| {
            let abs = std::path::absolute(f).with_context(|| format!("values file {f:?}"))?;
            Ok(abs.strip_prefix("/").unwrap_or(&abs).display().to_string())
        })
        .collect()
}
