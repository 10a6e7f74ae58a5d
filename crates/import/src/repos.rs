//! Repositories: rewriting their URLs (`--repo-map`) and reading their files where a
//! local copy is known (`--repo-dir`, a local `repoURL`), for ApplicationSet Git
//! generators and for checks of an Application's path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use capstan_engine::source::{Checkout, GitCache, GitSource};

/// A URL as compared with another: no trailing `/` or `.git`, scheme and host in
/// lower case, `git@host:path` read as `ssh://git@host/path`.
pub fn normalize_url(url: &str) -> String {
    let mut u = url.trim().trim_end_matches('/').to_string();
    if let Some(stripped) = u.strip_suffix(".git") {
        u = stripped.to_string();
    }
    if !u.contains("://")
        && let Some((user_host, path)) = u.split_once(':')
        && user_host.contains('@')
        && !path.starts_with('/')
    {
        u = format!("ssh://{user_host}/{path}");
    }
    match u.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            format!(
                "{}://{}{}",
                scheme.to_lowercase(),
                authority.to_lowercase(),
                path
            )
        }
        None => u,
    }
}

/// A local directory, when `url` names one (`file://…` or an absolute path).
pub fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(url);
    p.is_absolute().then(|| p.to_path_buf())
}

/// URL rewrites and local copies of repositories.
#[derive(Debug, Clone, Default)]
pub struct RepoMap {
    /// `(from, to)`: a source whose URL is `from` (compared normalized) gets `to`.
    pub rewrites: Vec<(String, String)>,
    /// `(url, dir)`: the files of `url` are in `dir`, a Git repository (working copy or
    /// bare) or a plain directory.
    pub dirs: Vec<(String, PathBuf)>,
}

impl RepoMap {
    /// The URL to write for a source's `url`.
    pub fn rewrite(&self, url: &str) -> String {
        let n = normalize_url(url);
        self.rewrites
            .iter()
            .find(|(from, _)| normalize_url(from) == n)
            .map(|(_, to)| to.clone())
            .unwrap_or_else(|| url.to_string())
    }

    /// Where the files of `url` can be read: a `dirs` entry, else a rewrite to a local
    /// path, else `url` itself when it is local.
    pub fn local_dir(&self, url: &str) -> Option<PathBuf> {
        let n = normalize_url(url);
        if let Some((_, dir)) = self.dirs.iter().find(|(u, _)| normalize_url(u) == n) {
            return Some(dir.clone());
        }
        local_path(&self.rewrite(url)).or_else(|| local_path(url))
    }
}

/// A tree read from a local copy.
enum Tree {
    /// A plain directory (no revision to check out).
    Plain(PathBuf),
    /// A commit of a Git repository, extracted.
    Git(Checkout),
}

/// Trees of repositories at revisions, read once each.
pub(crate) struct Repos<'a> {
    map: &'a RepoMap,
    cache: Option<(tempfile::TempDir, GitCache)>,
    trees: HashMap<(String, String), Result<Tree, String>>,
}

/// The files of a repository at a revision.
pub(crate) struct TreeView<'t> {
    /// Its root on disk.
    pub root: &'t Path,
    /// The commit, when it is a Git repository.
    pub commit: Option<&'t str>,
}

impl<'a> Repos<'a> {
    pub fn new(map: &'a RepoMap) -> Repos<'a> {
        Repos {
            map,
            cache: None,
            trees: HashMap::new(),
        }
    }

    /// The tree of `url` at `revision` (branch, tag, commit, semver range; empty or
    /// `HEAD` for the default branch): `None` when no local copy is known, an error
    /// message when it cannot be read.
    pub fn tree(&mut self, url: &str, revision: &str) -> Option<Result<TreeView<'_>, String>> {
        let dir = self.map.local_dir(url)?;
        let key = (dir.display().to_string(), revision.to_string());
        if !self.trees.contains_key(&key) {
            let tree = self.read(&dir, revision);
            self.trees.insert(key.clone(), tree);
        }
        Some(match &self.trees[&key] {
            Ok(Tree::Plain(root)) => Ok(TreeView { root, commit: None }),
            Ok(Tree::Git(c)) => Ok(TreeView {
                root: c.root(),
                commit: Some(c.revision.id.as_str()),
            }),
            Err(e) => Err(e.clone()),
        })
    }

    fn read(&mut self, dir: &Path, revision: &str) -> Result<Tree, String> {
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        let is_git = dir.join(".git").exists()
            || (dir.join("HEAD").is_file() && dir.join("objects").is_dir());
        if !is_git {
            return Ok(Tree::Plain(dir.to_path_buf()));
        }
        if self.cache.is_none() {
            let tmp = tempfile::Builder::new()
                .prefix("capstan-import-")
                .tempdir()
                .map_err(|e| format!("creating a temporary directory: {e}"))?;
            let cache = GitCache::new(tmp.path().join("git"));
            self.cache = Some((tmp, cache));
        }
        let (_, cache) = self.cache.as_ref().expect("set above");
        let abs = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let src = GitSource::new(format!("file://{}", abs.display()));
        cache.fetch(&src).map_err(|e| error_chain(&e))?;
        let rev = if revision == "HEAD" { "" } else { revision };
        let resolved = cache.resolve(&src, rev).map_err(|e| error_chain(&e))?;
        let checkout = cache
            .checkout(&src, &resolved, Path::new("."))
            .map_err(|e| error_chain(&e))?;
        Ok(Tree::Git(checkout))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_without_dot_git_slashes_or_case() {
        assert_eq!(
            normalize_url("https://GitHub.com/argoproj/argocd-example-apps.git/"),
            "https://github.com/argoproj/argocd-example-apps"
        );
        assert_eq!(
            normalize_url("git@github.com:fluxcd/flux2.git"),
            "ssh://git@github.com/fluxcd/flux2"
        );
        let map = RepoMap {
            rewrites: vec![(
                "https://github.com/argoproj/argocd-example-apps".into(),
                "http://127.0.0.1:1/x.git".into(),
            )],
            dirs: vec![],
        };
        assert_eq!(
            map.rewrite("https://github.com/argoproj/argocd-example-apps.git"),
            "http://127.0.0.1:1/x.git"
        );
        assert_eq!(
            map.rewrite("https://example.com/other"),
            "https://example.com/other"
        );
        assert_eq!(map.local_dir("https://example.com/other"), None);
        assert_eq!(map.local_dir("/srv/repo"), Some(PathBuf::from("/srv/repo")));
    }
}
