//! From source flags to a checkout and a desired set.

use std::path::Path;

use anyhow::{Context, bail};
use capstan_engine::render::{
    self, DesiredObject, HelmOptions, JsonnetOptions, JsonnetVar, KustomizeOptions, RenderOptions,
    Scopes,
};
use capstan_engine::source::{Checkout, GitAuth, GitCache, GitSource, local};

use crate::args::{GitCredentials, RenderArgs, SourceArgs};

/// The render options the flags ask for.
pub fn render_options(args: &RenderArgs, namespace: &str) -> anyhow::Result<RenderOptions> {
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
            values: None,
            timeout: args.render_timeout,
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

/// Fetch (for a repository) and check out `revision` (or the flags' revision).
pub async fn checkout(args: &SourceArgs, revision: Option<&str>) -> anyhow::Result<Checkout> {
    match git_source(args)? {
        None => {
            let dir = args
                .dir
                .clone()
                .context("give a SOURCE directory or --repo URL")?;
            let mut checkout =
                local::open(&dir).with_context(|| format!("reading {}", dir.display()))?;
            checkout.path = args.path.clone();
            Ok(checkout)
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
        }
    }
}

/// Render a checkout into the desired set.
pub async fn render(
    checkout: &Checkout,
    args: &RenderArgs,
    namespace: &str,
    scopes: &Scopes,
) -> anyhow::Result<Vec<DesiredObject>> {
    let opts = render_options(args, namespace)?;
    Ok(render::render(checkout, &opts, namespace, scopes).await?)
}
