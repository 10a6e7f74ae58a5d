//! Git sources: fetch with gix into a local cache keyed by repository URL, resolve a
//! revision, and extract a commit's tree.
//!
//! The cache holds one bare repository per URL, so each fetch after the first
//! negotiates with what is already there and transfers only new objects. Every
//! branch and tag is fetched; refs deleted upstream are removed locally, so a deleted
//! branch stops resolving.
//!
//! Revisions are a branch, a tag, a full or abbreviated commit SHA, or a semver range
//! over tags (`>=1.2.0 <2.0.0`, `~1.4`, `^2`): the highest matching tag wins
//! (`v` prefixes allowed, pre-releases only when the range asks for them).
//!
//! Authentication: HTTP(S) basic auth or a token (sent as the password), SSH with a key
//! file (the `ssh` program is run with `-i KEY -o IdentitiesOnly=yes`), and `file://`.
//! Credentials never go through git's credential helpers or a terminal prompt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use capstan_core::Revision;
use gix::bstr::ByteSlice;
use sha2::{Digest, Sha256};

use super::Checkout;

/// How to authenticate to a repository.
#[derive(Clone, Default)]
pub enum GitAuth {
    /// Anonymous (or `file://`).
    #[default]
    None,
    /// HTTP(S) basic auth; a token goes in `password` (any `username` the host accepts).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// SSH with a private key file.
    SshKey {
        /// Path of the private key.
        key: PathBuf,
        /// Known-hosts file pinning the server's key (checked strictly). Without one,
        /// the first key seen is trusted and remembered in the cache's own
        /// `known_hosts` — never in the user's `~/.ssh`.
        known_hosts: Option<PathBuf>,
    },
}

impl std::fmt::Debug for GitAuth {
    /// Never prints secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitAuth::None => f.write_str("None"),
            GitAuth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            GitAuth::SshKey { key, .. } => write!(f, "SshKey({})", key.display()),
        }
    }
}

/// A repository to fetch from.
#[derive(Debug, Clone)]
pub struct GitSource {
    /// Repository URL: `https://`, `http://`, `ssh://`, `user@host:path` or `file://`.
    pub url: String,
    /// Credentials.
    pub auth: GitAuth,
}

impl GitSource {
    /// An anonymous source.
    pub fn new(url: impl Into<String>) -> Self {
        GitSource {
            url: url.into(),
            auth: GitAuth::None,
        }
    }

    /// The URL with any userinfo removed, for messages and cache keys.
    pub fn display_url(&self) -> String {
        strip_userinfo(&self.url)
    }
}

pub(crate) fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // the authority ends at the path, the query or the fragment
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    format!("{scheme}://{host}{tail}")
}

/// What went wrong with a Git source. Every variant names the repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// Opening or creating the cache repository failed.
    #[error("preparing the cache for {url} at {path}")]
    Cache {
        /// Repository URL.
        url: String,
        /// Cache directory.
        path: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Credentials would travel in clear text.
    #[error(
        "refusing to send credentials to {url} over plain http; use https (plain http is allowed to loopback addresses only)"
    )]
    ClearTextCredentials {
        /// Repository URL.
        url: String,
    },
    /// Fetching failed (network, authentication, protocol).
    #[error("fetching {url}: {message}")]
    Fetch {
        /// Repository URL.
        url: String,
        /// What failed, with the underlying chain.
        message: String,
    },
    /// The revision names nothing in the repository.
    #[error("revision {revision:?} not found in {url}: {hint}")]
    RevisionNotFound {
        /// Repository URL.
        url: String,
        /// What was asked for.
        revision: String,
        /// Branches and tags that exist, to help.
        hint: String,
    },
    /// A semver range that does not parse.
    #[error("revision {revision:?} for {url} is not a valid semver range")]
    BadRange {
        /// Repository URL.
        url: String,
        /// The range.
        revision: String,
        /// Cause.
        #[source]
        source: semver::Error,
    },
    /// An abbreviated SHA matching several objects.
    #[error("revision {revision:?} is ambiguous in {url}")]
    Ambiguous {
        /// Repository URL.
        url: String,
        /// The abbreviation.
        revision: String,
    },
    /// Reading an object from the cache failed.
    #[error("reading {what} of {url}")]
    Read {
        /// Repository URL.
        url: String,
        /// What was being read (`commit abc…`, `tree of …`).
        what: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing the extracted tree failed.
    #[error("extracting {path} of {url}")]
    Extract {
        /// Repository URL.
        url: String,
        /// The file being written.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// How much a fetch transferred.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Objects received in the pack (0 when nothing was new).
    pub objects: u64,
    /// Bytes of the received pack.
    pub bytes: u64,
}

/// Bare repositories cached per URL under one directory.
#[derive(Debug)]
pub struct GitCache {
    root: PathBuf,
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl GitCache {
    /// A cache under `root` (created when first used).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        GitCache {
            root: root.into(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// `$CAPSTAN_CACHE_DIR/git`, else `$XDG_CACHE_HOME/capstan/git`, else `~/.cache/capstan/git`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("CAPSTAN_CACHE_DIR") {
            return PathBuf::from(d).join("git");
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(d).join("capstan/git");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        home.join(".cache/capstan/git")
    }

    /// Where the bare repository of `url` lives.
    pub fn repo_dir(&self, src: &GitSource) -> PathBuf {
        let clean = src.display_url();
        let digest = hex::encode(&Sha256::digest(clean.as_bytes())[..8]);
        let slug: String = clean
            .rsplit('/')
            .next()
            .unwrap_or("repo")
            .trim_end_matches(".git")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        self.root.join(format!("{slug}-{digest}.git"))
    }

    /// The `ssh` command line for an SSH key: only that key, no prompts, and the
    /// server's key checked against the given known_hosts (strictly) or the cache's own
    /// (first key seen trusted).
    pub(crate) fn ssh_command(&self, auth: &GitAuth) -> Option<String> {
        let GitAuth::SshKey { key, known_hosts } = auth else {
            return None;
        };
        let (file, checking) = match known_hosts {
            Some(f) => (f.clone(), "yes"),
            None => (self.root.join("known_hosts"), "accept-new"),
        };
        Some(format!(
            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=30 -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking={checking}",
            shell_quote(&key.display().to_string()),
            shell_quote(&file.display().to_string()),
        ))
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn lock_for(&self, dir: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(dir.to_path_buf()).or_default().clone()
    }

    fn open(&self, src: &GitSource) -> Result<gix::Repository, GitError> {
        let dir = self.repo_dir(src);
        let cache_err = |e: Box<dyn std::error::Error + Send + Sync>| GitError::Cache {
            url: src.display_url(),
            path: dir.display().to_string(),
            source: e,
        };
        let repo = if dir.join("HEAD").exists() {
            gix::open(&dir).map_err(|e| cache_err(Box::new(e)))?
        } else {
            std::fs::create_dir_all(&dir).map_err(|e| cache_err(Box::new(e)))?;
            gix::init_bare(&dir).map_err(|e| cache_err(Box::new(e)))?
        };
        Ok(repo)
    }

    /// Fetch every branch and tag of the repository into the cache.
    pub fn fetch(&self, src: &GitSource) -> Result<FetchReport, GitError> {
        let dir = self.repo_dir(src);
        let lock = self.lock_for(&dir);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let has_credentials =
            matches!(src.auth, GitAuth::Basic { .. }) || src.display_url() != src.url;
        if has_credentials && src.url.starts_with("http://") && !is_loopback(&src.url) {
            return Err(GitError::ClearTextCredentials {
                url: src.display_url(),
            });
        }
        // HTTPS (reqwest/rustls) needs the process-wide provider; the binary installs
        // it, a library caller may not have.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let repo = self.open(src)?;
        let url = src.display_url();
        let fetch_err = |e: &dyn std::error::Error| GitError::Fetch {
            url: url.clone(),
            message: redact(&describe(e, &src.auth), &src.auth),
        };
        let mut repo = repo;
        if let Some(cmd) = self.ssh_command(&src.auth) {
            let mut cfg = repo.config_snapshot_mut();
            cfg.set_raw_value("core.sshCommand", cmd.as_str())
                .map_err(|e| fetch_err(&e))?;
            cfg.commit().map_err(|e| fetch_err(&e))?;
        }
        let remote = repo
            .remote_at(src.url.as_str())
            .map_err(|e| fetch_err(&e))?
            .with_refspecs(
                [
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                    // the remote's default branch, so an empty revision or HEAD follows it
                    "+HEAD:refs/remotes/origin/HEAD",
                ],
                gix::remote::Direction::Fetch,
            )
            .map_err(|e| fetch_err(&e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        let conn = remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| fetch_err(&e))?;
        let auth = src.auth.clone();
        let conn = conn.with_credentials(move |action| match (action, &auth) {
            (gix::credentials::helper::Action::Get(ctx), GitAuth::Basic { username, password }) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: username.clone(),
                        password: password.clone(),
                        oauth_refresh_token: None,
                    },
                    next: ctx.into(),
                }))
            }
            (gix::credentials::helper::Action::Get(_), GitAuth::SshKey { key, .. }) => {
                Err(gix::error::Error::from_error(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("the SSH server refused the key {}", key.display()),
                )))
            }
            // No helpers, no prompts: without credentials the fetch fails clearly.
            _ => Ok(None),
        });
        let interrupt = AtomicBool::new(false);
        let outcome = conn
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| fetch_err(&e))?
            .receive(gix::progress::Discard, &interrupt)
            .map_err(|e| fetch_err(&e))?;

        let mut remote_head: Option<String> = None;
        let mut remote_names: Vec<String> = Vec::new();
        for r in &outcome.ref_map.remote_refs {
            match r {
                gix::protocol::handshake::Ref::Symbolic {
                    full_ref_name,
                    target,
                    ..
                } if full_ref_name == "HEAD" => {
                    remote_head = Some(target.to_str_lossy().into_owned());
                }
                other => {
                    let (name, _, _) = other.unpack();
                    remote_names.push(name.to_str_lossy().into_owned());
                }
            }
        }
        if let Some(head) = remote_head {
            let _ = std::fs::write(dir.join("CAPSTAN_REMOTE_HEAD"), head);
        }
        prune_stale_refs(&repo, &remote_names);

        let report = match &outcome.status {
            gix::remote::fetch::Status::Change {
                write_pack_bundle, ..
            } => FetchReport {
                objects: write_pack_bundle.index.num_objects as u64,
                bytes: write_pack_bundle
                    .data_path
                    .as_ref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .unwrap_or(0),
            },
            _ => FetchReport::default(),
        };
        Ok(report)
    }

    /// Resolve a revision (branch, tag, SHA, abbreviated SHA, semver range; empty or
    /// `HEAD` for the remote's default branch) in the cached repository.
    pub fn resolve(&self, src: &GitSource, revision: &str) -> Result<Revision, GitError> {
        let repo = self.open(src)?;
        let url = src.display_url();
        let id = resolve_id(&repo, &self.repo_dir(src), &url, revision.trim())?;
        let read_err = |e: &dyn std::error::Error| GitError::Read {
            url: url.clone(),
            what: format!("commit {id}"),
            source: e.to_string().into(),
        };
        let commit = repo.find_commit(id).map_err(|e| read_err(&e))?;
        let author = commit.author().map_err(|e| read_err(&e))?;
        let time = commit.time().map_err(|e| read_err(&e))?;
        let message = commit.message_raw_sloppy().to_str_lossy();
        let summary = message.lines().next().unwrap_or("").trim().to_string();
        let when = jiff::Timestamp::from_second(time.seconds)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        Ok(Revision {
            id: id.to_string(),
            requested: revision.to_string(),
            author: format!(
                "{} <{}>",
                author.name.to_str_lossy(),
                author.email.to_str_lossy()
            ),
            message: summary,
            time: when,
        })
    }

    /// Write the tree of `revision` into a temporary directory and return the checkout
    /// of `path` inside it (symlinks that escape the repository are refused).
    pub fn checkout(
        &self,
        src: &GitSource,
        revision: &Revision,
        path: &Path,
    ) -> Result<Checkout, CheckoutError> {
        let repo = self.open(src)?;
        let url = src.display_url();
        let dir = tempfile::Builder::new()
            .prefix("capstan-checkout-")
            .tempdir()
            .map_err(|source| GitError::Extract {
                url: url.clone(),
                path: "<tempdir>".into(),
                source,
            })?;
        let id = gix::ObjectId::from_hex(revision.id.as_bytes()).map_err(|e| GitError::Read {
            url: url.clone(),
            what: format!("commit {}", revision.id),
            source: e.to_string().into(),
        })?;
        let read_err = |what: String, e: &dyn std::fmt::Display| GitError::Read {
            url: url.clone(),
            what,
            source: e.to_string().into(),
        };
        let commit = repo
            .find_commit(id)
            .map_err(|e| read_err(format!("commit {id}"), &e))?;
        let tree_id = commit
            .tree_id()
            .map_err(|e| read_err(format!("tree of {id}"), &e))?;
        extract(&repo, tree_id.detach(), dir.path(), dir.path(), &url)?;
        super::confine::check_tree(dir.path(), path)?;
        Ok(Checkout::temporary(
            dir,
            path.to_path_buf(),
            revision.clone(),
        ))
    }
}

impl GitCache {
    /// The paths (files and links, `/`-separated, from the repository root) whose
    /// content or mode differs between the trees of two commits, or that exist in one
    /// only — `git diff --name-only FROM TO`, sorted. Subtrees with the same id are
    /// not read.
    pub fn changed_paths(
        &self,
        src: &GitSource,
        from: &Revision,
        to: &Revision,
    ) -> Result<Vec<String>, GitError> {
        let repo = self.open(src)?;
        let url = src.display_url();
        let tree_of = |rev: &Revision| -> Result<gix::ObjectId, GitError> {
            let read_err = |e: &dyn std::fmt::Display| GitError::Read {
                url: url.clone(),
                what: format!("commit {}", rev.id),
                source: e.to_string().into(),
            };
            let id = gix::ObjectId::from_hex(rev.id.as_bytes()).map_err(|e| read_err(&e))?;
            let commit = repo.find_commit(id).map_err(|e| read_err(&e))?;
            Ok(commit.tree_id().map_err(|e| read_err(&e))?.detach())
        };
        let (a, b) = (tree_of(from)?, tree_of(to)?);
        let mut out = Vec::new();
        diff_trees(&repo, Some(a), Some(b), "", &url, &mut out)?;
        out.sort();
        Ok(out)
    }
}

type TreeEntries = std::collections::BTreeMap<String, (gix::objs::tree::EntryMode, gix::ObjectId)>;

fn tree_entries(
    repo: &gix::Repository,
    id: Option<gix::ObjectId>,
    url: &str,
) -> Result<TreeEntries, GitError> {
    let Some(id) = id else {
        return Ok(TreeEntries::new());
    };
    let read_err = |e: &dyn std::fmt::Display| GitError::Read {
        url: url.to_string(),
        what: format!("tree {id}"),
        source: e.to_string().into(),
    };
    let tree = repo.find_tree(id).map_err(|e| read_err(&e))?;
    Ok(tree
        .decode()
        .map_err(|e| read_err(&e))?
        .entries
        .iter()
        .map(|e| {
            (
                e.filename.to_str_lossy().into_owned(),
                (e.mode, e.oid.to_owned()),
            )
        })
        .collect())
}

/// Append the paths that differ between two trees (either may be absent).
fn diff_trees(
    repo: &gix::Repository,
    a: Option<gix::ObjectId>,
    b: Option<gix::ObjectId>,
    prefix: &str,
    url: &str,
    out: &mut Vec<String>,
) -> Result<(), GitError> {
    if a == b {
        return Ok(());
    }
    let (ea, eb) = (tree_entries(repo, a, url)?, tree_entries(repo, b, url)?);
    let names: std::collections::BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
    for name in names {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let (x, y) = (ea.get(name), eb.get(name));
        if x == y {
            continue;
        }
        let tree = |e: Option<&(gix::objs::tree::EntryMode, gix::ObjectId)>| {
            e.filter(|(m, _)| m.is_tree()).map(|(_, id)| *id)
        };
        let file = |e: Option<&(gix::objs::tree::EntryMode, gix::ObjectId)>| {
            e.is_some_and(|(m, _)| !m.is_tree())
        };
        let (ta, tb) = (tree(x), tree(y));
        if ta.is_some() || tb.is_some() {
            diff_trees(repo, ta, tb, &path, url, out)?;
        }
        if file(x) || file(y) {
            out.push(path);
        }
    }
    Ok(())
}

/// Failure to produce a checkout: Git, or a path that leaves the repository.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Reading or writing the tree.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A path or symlink escapes the repository.
    #[error(transparent)]
    Confine(#[from] super::ConfineError),
}

/// A fetch error as one line: every cause in the chain, the useful words first.
fn describe(e: &dyn std::error::Error, auth: &GitAuth) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        let text = text
            .strip_prefix("Message { message: \"")
            .and_then(|t| {
                t.split("\", class")
                    .next()
                    .or_else(|| t.strip_suffix("\" }"))
            })
            .map(str::to_string)
            .unwrap_or(text);
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    let all = parts.join(": ");
    if all.contains("No credentials were returned")
        || all.contains("401")
        || all.contains("Unauthenticated")
    {
        return auth_failure(auth);
    }
    all
}

/// What a refused login means, for the credentials that were given.
pub(crate) fn auth_failure(auth: &GitAuth) -> String {
    match auth {
        GitAuth::None => {
            "authentication required: the server asks for credentials and none were given".into()
        }
        GitAuth::Basic { username, .. } => format!(
            "authentication failed: the server refused the credentials of user {username:?}"
        ),
        GitAuth::SshKey { key, .. } => format!(
            "authentication failed: the SSH server refused the key {}",
            key.display()
        ),
    }
}

/// Whether an http(s) URL points at this machine.
pub(crate) fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    // the authority ends at the path, the query or the fragment: in
    // `http://evil.example?@127.0.0.1/` the host is evil.example
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub(crate) fn redact(message: &str, auth: &GitAuth) -> String {
    match auth {
        GitAuth::Basic { password, .. } if !password.is_empty() => {
            message.replace(password.as_str(), "***")
        }
        _ => message.to_string(),
    }
}

/// Remove local remote-tracking branches and tags that the remote no longer has.
fn prune_stale_refs(repo: &gix::Repository, remote_names: &[String]) {
    let Ok(platform) = repo.references() else {
        return;
    };
    let Ok(all) = platform.all() else { return };
    let mut stale = Vec::new();
    for r in all.flatten() {
        let name = r.name().as_bstr().to_str_lossy().into_owned();
        if name == "refs/remotes/origin/HEAD" {
            continue;
        }
        let upstream = if let Some(branch) = name.strip_prefix("refs/remotes/origin/") {
            format!("refs/heads/{branch}")
        } else if name.starts_with("refs/tags/") {
            name.clone()
        } else {
            continue;
        };
        if !remote_names.contains(&upstream) {
            stale.push(r.detach());
        }
    }
    for r in stale {
        let _ = repo.edit_reference(gix::refs::transaction::RefEdit {
            change: gix::refs::transaction::Change::Delete {
                expected: gix::refs::transaction::PreviousValue::Any,
                log: gix::refs::transaction::RefLog::AndReference,
            },
            name: r.name,
            deref: false,
        });
    }
}

fn is_semver_range(rev: &str) -> bool {
    let starts_like_range = rev.chars().next().is_some_and(|c| {
        matches!(c, '<' | '>' | '=' | '~' | '^' | '*' | 'x' | 'X') || c.is_ascii_digit()
    });
    let has_range_syntax = rev
        .chars()
        .any(|c| matches!(c, '<' | '>' | '=' | '~' | '^' | '*' | ',' | ' ' | '|'))
        || rev.ends_with(".x")
        || rev == "x";
    starts_like_range && has_range_syntax
}

/// Rewrite a rev-parse expression (`HEAD~1`, `main^`, `v1.2.0~2`) so its base names the
/// fetched refs of the cache: branches live under `refs/remotes/origin/`.
fn rewrite_expression(repo: &gix::Repository, dir: &Path, rev: &str) -> Option<String> {
    let split = rev.find(['~', '^', '@', ':'])?;
    let (base, rest) = rev.split_at(split);
    let base_ref = if base == "HEAD" || base.is_empty() {
        let head = std::fs::read_to_string(dir.join("CAPSTAN_REMOTE_HEAD")).unwrap_or_default();
        format!(
            "refs/remotes/origin/{}",
            head.trim().strip_prefix("refs/heads/").unwrap_or("main")
        )
    } else if repo
        .try_find_reference(format!("refs/remotes/origin/{base}").as_str())
        .ok()
        .flatten()
        .is_some()
    {
        format!("refs/remotes/origin/{base}")
    } else if repo
        .try_find_reference(format!("refs/tags/{base}").as_str())
        .ok()
        .flatten()
        .is_some()
    {
        format!("refs/tags/{base}")
    } else {
        base.to_string()
    };
    Some(format!("{base_ref}{rest}"))
}

fn resolve_id(
    repo: &gix::Repository,
    dir: &Path,
    url: &str,
    rev: &str,
) -> Result<gix::ObjectId, GitError> {
    let not_found = |rev: &str| GitError::RevisionNotFound {
        url: url.to_string(),
        revision: rev.to_string(),
        hint: hint(repo),
    };
    let peel = |name: &str| -> Option<gix::ObjectId> {
        let mut r = repo.try_find_reference(name).ok()??;
        let id = r.peel_to_id().ok()?;
        let obj = repo.find_object(id).ok()?;
        let commit = obj.peel_to_commit().ok()?;
        Some(commit.id)
    };
    if rev.is_empty() || rev == "HEAD" {
        let head = std::fs::read_to_string(dir.join("CAPSTAN_REMOTE_HEAD")).unwrap_or_default();
        let branch = head.trim().strip_prefix("refs/heads/").unwrap_or("main");
        return peel(&format!("refs/remotes/origin/{branch}")).ok_or_else(|| not_found("HEAD"));
    }
    if is_semver_range(rev) {
        return resolve_range(repo, url, rev);
    }
    if let Some(id) = peel(&format!("refs/remotes/origin/{rev}")) {
        return Ok(id);
    }
    if let Some(id) = peel(&format!("refs/tags/{rev}")) {
        return Ok(id);
    }
    if let Some(expr) = rewrite_expression(repo, dir, rev) {
        return repo
            .rev_parse_single(expr.as_str())
            .ok()
            .and_then(|id| repo.find_object(id).ok())
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id)
            .ok_or_else(|| not_found(rev));
    }
    if (4..=40).contains(&rev.len()) && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        if rev.len() == 40 {
            let id = gix::ObjectId::from_hex(rev.as_bytes()).map_err(|_| not_found(rev))?;
            return repo
                .find_object(id)
                .ok()
                .and_then(|o| o.peel_to_commit().ok())
                .map(|c| c.id)
                .ok_or_else(|| not_found(rev));
        }
        return match repo.rev_parse_single(rev) {
            Ok(id) => repo
                .find_object(id)
                .ok()
                .and_then(|o| o.peel_to_commit().ok())
                .map(|c| c.id)
                .ok_or_else(|| not_found(rev)),
            Err(e) if e.to_string().contains("ambiguous") => Err(GitError::Ambiguous {
                url: url.to_string(),
                revision: rev.to_string(),
            }),
            Err(_) => Err(not_found(rev)),
        };
    }
    Err(not_found(rev))
}

fn tag_names(repo: &gix::Repository) -> Vec<String> {
    let Ok(platform) = repo.references() else {
        return Vec::new();
    };
    let Ok(tags) = platform.prefixed(b"refs/tags/".as_bstr()) else {
        return Vec::new();
    };
    tags.flatten()
        .map(|r| r.name().shorten().to_str_lossy().into_owned())
        .collect()
}

fn branch_names(repo: &gix::Repository) -> Vec<String> {
    let Ok(platform) = repo.references() else {
        return Vec::new();
    };
    let Ok(refs) = platform.prefixed(b"refs/remotes/origin/".as_bstr()) else {
        return Vec::new();
    };
    refs.flatten()
        .filter_map(|r| {
            r.name()
                .as_bstr()
                .to_str_lossy()
                .strip_prefix("refs/remotes/origin/")
                .filter(|b| *b != "HEAD")
                .map(str::to_string)
        })
        .collect()
}

fn hint(repo: &gix::Repository) -> String {
    let mut branches = branch_names(repo);
    let mut tags = tag_names(repo);
    branches.sort();
    tags.sort();
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else if v.len() > 10 {
            format!("{}, … ({} in all)", v[..10].join(", "), v.len())
        } else {
            v.join(", ")
        }
    };
    format!(
        "no branch, tag or commit of that name (branches: {}; tags: {})",
        list(branches),
        list(tags)
    )
}

/// Parse a range as Flux and Helm users write it (Masterminds/npm style): comparators
/// separated by spaces or commas (`>=1.2.0 <2.0.0`), alternatives by `||`.
pub fn parse_range(range: &str) -> Result<Vec<semver::VersionReq>, semver::Error> {
    range
        .split("||")
        .map(|alt| {
            let mut comparators: Vec<String> = Vec::new();
            let mut pending_op = String::new();
            for token in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
                if token
                    .chars()
                    .all(|c| matches!(c, '<' | '>' | '=' | '~' | '^'))
                {
                    pending_op.push_str(token);
                } else {
                    comparators.push(format!("{pending_op}{token}"));
                    pending_op.clear();
                }
            }
            semver::VersionReq::parse(&comparators.join(", "))
        })
        .collect()
}

fn resolve_range(repo: &gix::Repository, url: &str, rev: &str) -> Result<gix::ObjectId, GitError> {
    let reqs = parse_range(rev).map_err(|source| GitError::BadRange {
        url: url.to_string(),
        revision: rev.to_string(),
        source,
    })?;
    let best = tag_names(repo)
        .into_iter()
        .filter_map(|t| {
            let v = semver::Version::parse(t.strip_prefix('v').unwrap_or(&t)).ok()?;
            reqs.iter().any(|r| r.matches(&v)).then_some((v, t))
        })
        .max_by(|a, b| a.0.cmp(&b.0));
    let Some((_, tag)) = best else {
        return Err(GitError::RevisionNotFound {
            url: url.to_string(),
            revision: rev.to_string(),
            hint: format!("no tag matches the range (tags: {})", {
                let mut t = tag_names(repo);
                t.sort();
                if t.is_empty() {
                    "none".to_string()
                } else {
                    t.join(", ")
                }
            }),
        });
    };
    let mut r = repo
        .find_reference(format!("refs/tags/{tag}").as_str())
        .map_err(|e| GitError::Read {
            url: url.to_string(),
            what: format!("tag {tag}"),
            source: e.to_string().into(),
        })?;
    let id = r.peel_to_id().map_err(|e| GitError::Read {
        url: url.to_string(),
        what: format!("tag {tag}"),
        source: e.to_string().into(),
    })?;
    let commit = repo
        .find_object(id)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| GitError::Read {
            url: url.to_string(),
            what: format!("tag {tag}"),
            source: e.to_string().into(),
        })?;
    Ok(commit.id)
}

fn extract(
    repo: &gix::Repository,
    tree: gix::ObjectId,
    dest: &Path,
    root: &Path,
    url: &str,
) -> Result<(), GitError> {
    let read_err = |e: &dyn std::fmt::Display| GitError::Read {
        url: url.to_string(),
        what: format!("tree {tree}"),
        source: e.to_string().into(),
    };
    let write_err = |path: &Path, source| GitError::Extract {
        url: url.to_string(),
        path: path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string(),
        source,
    };
    let tree = repo.find_tree(tree).map_err(|e| read_err(&e))?;
    let entries: Vec<(gix::objs::tree::EntryMode, String, gix::ObjectId)> = tree
        .decode()
        .map_err(|e| read_err(&e))?
        .entries
        .iter()
        .map(|e| {
            (
                e.mode,
                e.filename.to_str_lossy().into_owned(),
                e.oid.to_owned(),
            )
        })
        .collect();
    for (mode, name, oid) in entries {
        if name.contains('/') || name == ".." || name == "." || name == ".git" {
            continue;
        }
        let path = dest.join(&name);
        if mode.is_tree() {
            std::fs::create_dir_all(&path).map_err(|e| write_err(&path, e))?;
            extract(repo, oid, &path, root, url)?;
        } else if mode.is_link() {
            let blob = repo.find_blob(oid).map_err(|e| read_err(&e))?;
            let target = blob.data.to_str_lossy().into_owned();
            std::os::unix::fs::symlink(&target, &path).map_err(|e| write_err(&path, e))?;
        } else if mode.is_blob() {
            let blob = repo.find_blob(oid).map_err(|e| read_err(&e))?;
            std::fs::write(&path, &blob.data).map_err(|e| write_err(&path, e))?;
            if mode.is_executable() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            }
        }
        // Submodules (commit entries) are not fetched; they render as nothing.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_never_reaches_messages_or_cache_keys() {
        assert_eq!(
            strip_userinfo("https://user:tok@example.com/org/app.git"),
            "https://example.com/org/app.git"
        );
        assert_eq!(strip_userinfo("file:///srv/app.git"), "file:///srv/app.git");
        assert_eq!(
            strip_userinfo("http://evil.example?@127.0.0.1/x"),
            "http://evil.example?@127.0.0.1/x",
            "a @ in the query is not userinfo"
        );
        assert_eq!(strip_userinfo("https://u:p@host"), "https://host");
        let a =
            GitCache::new("/c").repo_dir(&GitSource::new("https://u:p@example.com/org/app.git"));
        let b = GitCache::new("/c").repo_dir(&GitSource::new("https://example.com/org/app.git"));
        assert_eq!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("app-"));
        let auth = GitAuth::Basic {
            username: "u".into(),
            password: "s3cret".into(),
        };
        assert_eq!(format!("{auth:?}"), "Basic(u, ***)");
        assert_eq!(redact("bad password s3cret", &auth), "bad password ***");
    }

    #[test]
    fn clear_text_credentials_only_to_loopback() {
        assert!(is_loopback("http://127.0.0.1:8080/app.git"));
        assert!(is_loopback("http://u:p@localhost/app.git"));
        assert!(is_loopback("http://[::1]:99/x"));
        assert!(!is_loopback("http://git.example.com/app.git"));
        assert!(!is_loopback("http://evil.example?@127.0.0.1/app.git"));
        assert!(!is_loopback("http://evil.example#@127.0.0.1/app.git"));
        let cache = GitCache::new(tempfile::tempdir().unwrap().path());
        let src = GitSource {
            url: "http://git.example.com/app.git".into(),
            auth: GitAuth::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        };
        let err = cache.fetch(&src).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "refusing to send credentials to http://git.example.com/app.git over plain http"
            ),
            "{err}"
        );
        let in_url = GitSource::new("http://u:token@git.example.com/app.git");
        let err = cache.fetch(&in_url).unwrap_err();
        assert!(
            err.to_string().starts_with("refusing to send credentials"),
            "{err}"
        );
        assert!(!err.to_string().contains("token"), "{err}");
    }

    #[test]
    fn ranges_in_masterminds_style() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let m = |r: &str, ver: &str| parse_range(r).unwrap().iter().any(|q| q.matches(&v(ver)));
        assert!(m(">=1.2.0 <2.0.0", "1.9.3"));
        assert!(!m(">=1.2.0 <2.0.0", "2.0.0"));
        assert!(m(">= 1.2.0, < 2.0.0", "1.2.0"));
        assert!(m("~1.4", "1.4.7"));
        assert!(!m("~1.4", "1.5.0"));
        assert!(m("^1 || ^3", "3.1.0"));
        assert!(
            !m(">=1.0.0", "1.1.0-rc.1"),
            "pre-releases only when asked for"
        );
        assert!(parse_range(">=banana").is_err());
    }

    #[test]
    fn semver_ranges_are_told_apart_from_names() {
        assert!(is_semver_range(">=1.2.0 <2.0.0"));
        assert!(is_semver_range("~1.4"));
        assert!(is_semver_range("^2"));
        assert!(is_semver_range("1.x"));
        assert!(!is_semver_range("v1.2.0"));
        assert!(!is_semver_range("HEAD~1"));
        assert!(!is_semver_range("main^"));
        assert!(is_semver_range("1.2 || 2.x"));
        assert!(!is_semver_range("main"));
        assert!(!is_semver_range("release/1.2"));
    }
}
