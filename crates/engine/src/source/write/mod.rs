//! The write side of Git sources: check out a branch, edit, commit, push — the one
//! path that `set-image`, `promote`, `revert` and image automation all take.
//!
//! ```text
//! ls-remote ─▶ fetch what is new ─▶ reset the work tree to the branch head ─▶ edit
//!   ─▶ nothing changed? done, no commit ─▶ commit (author, message, signature)
//!   ─▶ push ─▶ rejected as not a fast-forward? start again on the new head
//! ```
//!
//! Why the `git` command line and not gix: gix fetches (the read side uses it) but
//! cannot push, and the `git` CLI is what every Git host is tested against — smart
//! HTTP, SSH, signing with `ssh-keygen` or `gpg` — and what Argo CD's repo-server
//! runs too. Every command runs with a clean environment (no system or user config,
//! no hooks, no prompts), bounded in time, with credentials handed over through the
//! environment (never the command line, never a file in the work tree).
//!
//! Safety rules this module keeps (DESIGN.md invariant 9):
//! - a push is never forced: a rejected push means someone else pushed, so the edit is
//!   made again on top of their commit (a bounded number of times), and when their
//!   commit already holds the edit nothing is committed at all — nothing lost, nothing
//!   duplicated;
//! - nothing changed means no commit;
//! - a failed push leaves the remote as it was; the local commit is thrown away on the
//!   next write, which starts from the remote's head again.

mod openpgp;
mod runner;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::git::{GitCache, GitSource, strip_userinfo};
use runner::{Push, Runner};

/// Who a commit is by: `Name <email>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

impl Identity {
    /// Capstan's own identity, the default author of write-backs.
    pub fn capstan() -> Self {
        Identity {
            name: "Capstan".into(),
            email: "capstan@users.noreply.capstan.dev".into(),
        }
    }

    /// Parse `Name <email>`.
    pub fn parse(s: &str) -> Result<Self, WriteError> {
        let bad = || WriteError::BadIdentity {
            value: s.to_string(),
        };
        let (name, rest) = s.split_once('<').ok_or_else(bad)?;
        let email = rest.strip_suffix('>').ok_or_else(bad)?.trim();
        let name = name.trim();
        if name.is_empty() || email.is_empty() || email.contains(['<', '>', '\n']) {
            return Err(bad());
        }
        Ok(Identity {
            name: name.to_string(),
            email: email.to_string(),
        })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// A key commits are signed with (`git verify-commit` accepts the result).
#[derive(Clone)]
pub enum SigningKey {
    /// An SSH private key file (git's `gpg.format=ssh`, signed by `ssh-keygen -Y sign`).
    Ssh {
        /// The private key file (mode 0600, as `ssh-keygen` insists).
        key: PathBuf,
    },
    /// An armored OpenPGP secret key file, signed by `gpg` in a keyring of its own.
    OpenPgp {
        /// The armored secret key (`gpg --export-secret-keys --armor`).
        key: PathBuf,
        /// Its passphrase, if it has one.
        passphrase: Option<String>,
    },
}

impl std::fmt::Debug for SigningKey {
    /// Never prints the passphrase.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKey::Ssh { key } => write!(f, "Ssh({})", key.display()),
            SigningKey::OpenPgp { key, .. } => write!(f, "OpenPgp({})", key.display()),
        }
    }
}

impl SigningKey {
    /// The key file.
    pub fn path(&self) -> &Path {
        match self {
            SigningKey::Ssh { key } | SigningKey::OpenPgp { key, .. } => key,
        }
    }
}

/// How to commit and push.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The branch to start from; empty for the remote's default branch.
    pub branch: String,
    /// Push to this branch instead of `branch` (a pull-request flow). When it does not
    /// exist it is created from `branch`; when it does, the edit is made on top of it.
    pub push_branch: Option<String>,
    /// Author and committer of the commit.
    pub author: Identity,
    /// Sign the commit with this key.
    pub signing: Option<SigningKey>,
    /// Push attempts before giving up while others keep pushing first (default 8).
    pub attempts: u32,
    /// Time limit of each `git` command (default 2 minutes).
    pub timeout: Duration,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            branch: String::new(),
            push_branch: None,
            author: Identity::capstan(),
            signing: None,
            attempts: 8,
            timeout: Duration::from_secs(120),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The edit changed nothing (or someone else's commit already held it): no commit.
    NoChange {
        /// The head the edit was tried on.
        head: String,
    },
    /// A commit was pushed.
    Pushed {
        /// The commit.
        commit: String,
        /// The branch it was pushed to.
        branch: String,
        /// The commit it was made on (the branch's head at the time).
        parent: String,
    },
}

impl Written {
    /// The pushed commit, if any.
    pub fn commit(&self) -> Option<&str> {
        match self {
            Written::Pushed { commit, .. } => Some(commit),
            Written::NoChange { .. } => None,
        }
    }
}

/// The result of a write: what happened, what the edit reported (from the attempt
/// that counted), and how many attempts it took.
#[derive(Debug, Clone)]
pub struct WriteReport<T> {
    /// Pushed, or nothing to do.
    pub written: Written,
    /// The edit's own report (e.g. the list of changed fields).
    pub edit: T,
    /// Attempts made (more than 1 when others pushed first).
    pub attempts: u32,
}

/// An edit's failure, as the edit reports it (it names the file and field).
pub type EditError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong writing to a repository. Every variant names the repository.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An author that is not `Name <email>`.
    #[error("{value:?} is not an identity of the form \"Name <email>\"")]
    BadIdentity {
        /// What was given.
        value: String,
    },
    /// A branch name git does not accept.
    #[error("{branch:?} is not a valid branch name")]
    BadBranch {
        /// The name.
        branch: String,
    },
    /// Credentials would travel in clear text.
    #[error(
        "refusing to send credentials to {url} over plain http; use https (plain http is allowed to loopback addresses only)"
    )]
    ClearTextCredentials {
        /// Repository URL.
        url: String,
    },
    /// The branch to start from does not exist.
    #[error("branch {branch:?} does not exist in {url} (branches: {existing})")]
    BranchNotFound {
        /// Repository URL.
        url: String,
        /// The branch.
        branch: String,
        /// The branches that do.
        existing: String,
    },
    /// A `git` command failed.
    #[error("{action} {url}: {message}")]
    Git {
        /// Repository URL.
        url: String,
        /// What was being done (`fetching`, `pushing to branch main of`, …).
        action: String,
        /// What git said (credentials removed).
        message: String,
    },
    /// The remote refused the push for a reason other than a newer head (a hook, a
    /// protected branch, missing permission).
    #[error("pushing to branch {branch:?} of {url} was refused: {reason}")]
    PushRefused {
        /// Repository URL.
        url: String,
        /// The branch.
        branch: String,
        /// The remote's reason.
        reason: String,
    },
    /// Others kept pushing first; every attempt was rejected.
    #[error(
        "pushing to branch {branch:?} of {url}: rejected {attempts} times because others pushed first; nothing was pushed"
    )]
    Contended {
        /// Repository URL.
        url: String,
        /// The branch.
        branch: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The edit failed; nothing was committed.
    #[error("editing {url}")]
    Edit {
        /// Repository URL.
        url: String,
        /// The edit's error (naming the file and field).
        #[source]
        source: EditError,
    },
    /// Signing the commit failed.
    #[error("signing the commit for {url} with {key}: {message}")]
    Signing {
        /// Repository URL.
        url: String,
        /// The key file.
        key: String,
        /// What failed.
        message: String,
    },
    /// The local work tree could not be prepared.
    #[error("preparing the work tree of {url} at {path}")]
    Io {
        /// Repository URL.
        url: String,
        /// The directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A work tree checked out at a branch head, handed to an edit. Paths the edit reads
/// and writes are relative to [`root`](Self::root); [`git`](Self::git) runs further
/// git commands in it (`revert` uses it).
pub struct WorkTree {
    root: PathBuf,
    runner: Runner,
    head: String,
    branch: String,
}

impl WorkTree {
    /// The top of the work tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The commit the work tree was checked out at.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The branch it was checked out from.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Run `git ARGS` in the work tree; its standard output on success.
    pub fn git(&self, args: &[&str]) -> Result<String, WriteError> {
        self.runner.ok(&self.root, args, None, "running git in")
    }

    /// Run `git ARGS` in the work tree, whatever its exit status: (success, stdout,
    /// stderr).
    pub fn git_status(&self, args: &[&str]) -> Result<(bool, String, String), WriteError> {
        let out = self.runner.run(&self.root, args, None)?;
        Ok((out.success, out.stdout, out.stderr))
    }
}

impl GitCache {
    /// Where the work tree of `src` lives (next to its bare cache repository).
    pub fn work_dir(&self, src: &GitSource) -> PathBuf {
        self.repo_dir(src).with_extension("work")
    }

    /// Check out `opts.branch`, run `edit` on the work tree, and commit and push what
    /// it changed (see the [module documentation](self)). `message` makes the commit
    /// message from the edit's report. Concurrent writes to one repository from this
    /// process, or from other processes sharing the cache directory, take turns.
    pub fn write<T>(
        &self,
        src: &GitSource,
        opts: &WriteOptions,
        mut edit: impl FnMut(&WorkTree) -> Result<T, EditError>,
        message: impl Fn(&T) -> String,
    ) -> Result<WriteReport<T>, WriteError> {
        let url = src.display_url();
        let runner = Runner::new(self, src, opts)?;
        for b in [Some(&opts.branch), opts.push_branch.as_ref()]
            .into_iter()
            .flatten()
            .filter(|b| !b.is_empty())
        {
            check_branch_name(b)?;
        }
        let dir = self.work_dir(src);
        let io_err = |source| WriteError::Io {
            url: url.clone(),
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(self.root()).map_err(io_err)?;
        let lock = self.lock_for(&dir);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let lock_file = std::fs::File::create(dir.with_extension("work.lock")).map_err(io_err)?;
        lock_file.lock().map_err(io_err)?;
        // A process killed in the middle of a git command leaves its lock files behind,
        // and would block every later write: the file lock above means no git runs here
        // now, so they are stale.
        for stale in ["index.lock", "HEAD.lock", "config.lock"] {
            let _ = std::fs::remove_file(dir.join(".git").join(stale));
        }
        let usable = dir.join(".git").exists()
            && runner.run(&dir, &["rev-parse", "--git-dir"], None)?.success;
        if !usable {
            // missing or broken (a crash while cloning): start again
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(io_err)?;
            runner.ok(&dir, &["init", "-q"], None, "initialising a work tree for")?;
            runner.ok(
                &dir,
                &["remote", "add", "origin", &url],
                None,
                "initialising a work tree for",
            )?;
        } else {
            // the URL may have changed credentials only; keep what is stored clean
            runner.ok(
                &dir,
                &["remote", "set-url", "origin", &url],
                None,
                "initialising a work tree for",
            )?;
        }

        let attempts = opts.attempts.max(1);
        for attempt in 1..=attempts {
            let (tree, push_to) = self.prepare(&runner, &dir, opts)?;
            let report = edit(&tree).map_err(|source| WriteError::Edit {
                url: url.clone(),
                source,
            })?;
            runner.ok(&dir, &["add", "-A"], None, "staging the edit in")?;
            let staged = runner.run(&dir, &["diff", "--cached", "--quiet"], None)?;
            if staged.success {
                return Ok(WriteReport {
                    written: Written::NoChange { head: tree.head },
                    edit: report,
                    attempts: attempt,
                });
            }
            let commit = runner.commit(&dir, &message(&report), opts)?;
            match runner.push(&dir, &push_to)? {
                Push::Done => {
                    return Ok(WriteReport {
                        written: Written::Pushed {
                            commit,
                            branch: push_to,
                            parent: tree.head,
                        },
                        edit: report,
                        attempts: attempt,
                    });
                }
                Push::Behind => {
                    tracing::debug!(%url, attempt, "push rejected: the branch moved; editing its new head");
                    // others are pushing too: spread the retries out a little
                    std::thread::sleep(Duration::from_millis(
                        20 * u64::from(attempt) + rand_jitter(),
                    ));
                }
            }
        }
        Err(WriteError::Contended {
            url,
            branch: opts
                .push_branch
                .clone()
                .unwrap_or_else(|| opts.branch.clone()),
            attempts,
        })
    }

    /// Fetch the heads the write starts from and reset the work tree to one of them.
    fn prepare(
        &self,
        runner: &Runner,
        dir: &Path,
        opts: &WriteOptions,
    ) -> Result<(WorkTree, String), WriteError> {
        let remote = runner.ls_remote(dir, opts)?;
        let base = if opts.branch.is_empty() {
            remote
                .default_branch
                .clone()
                .ok_or_else(|| WriteError::BranchNotFound {
                    url: runner.url.clone(),
                    branch: "HEAD".into(),
                    existing: remote.list(),
                })?
        } else {
            opts.branch.clone()
        };
        let Some(base_head) = remote
            .heads
            .iter()
            .find(|(b, _)| *b == base)
            .map(|(_, id)| id.clone())
        else {
            // name the branches there are, to help
            let all = runner.ls_remote(
                dir,
                &WriteOptions {
                    branch: String::new(),
                    push_branch: None,
                    ..opts.clone()
                },
            )?;
            return Err(WriteError::BranchNotFound {
                url: runner.url.clone(),
                branch: base,
                existing: all.list(),
            });
        };
        let push_to = opts.push_branch.clone().unwrap_or_else(|| base.clone());
        // an existing push branch is built on; a new one starts at the base
        let (start_branch, start) = match remote.heads.iter().find(|(b, _)| *b == push_to) {
            Some((b, id)) => (b.clone(), id.clone()),
            None => (base.clone(), base_head),
        };
        let have = runner.run(
            dir,
            &["cat-file", "-e", &format!("{start}^{{commit}}")],
            None,
        )?;
        if !have.success {
            let refspec = format!("+refs/heads/{start_branch}:refs/remotes/origin/{start_branch}");
            runner.ok(
                dir,
                &["fetch", "-q", "--no-tags", "origin", &refspec],
                None,
                "fetching",
            )?;
        }
        runner.ok(
            dir,
            &["checkout", "-q", "-f", "-B", "capstan-write", &start],
            None,
            "checking out",
        )?;
        runner.ok(
            dir,
            &["clean", "-q", "-ffdx"],
            None,
            "cleaning the work tree of",
        )?;
        let tree = WorkTree {
            root: dir.to_path_buf(),
            runner: runner.clone(),
            head: start,
            branch: start_branch,
        };
        Ok((tree, push_to))
    }
}

fn rand_jitter() -> u64 {
    // the low bits of the clock are jitter enough to keep two racing writers apart
    u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_micros())
            .unwrap_or(0)
            % 50,
    )
}

fn check_branch_name(branch: &str) -> Result<(), WriteError> {
    let bad = branch.is_empty()
        || branch.starts_with(['-', '/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c));
    if bad {
        return Err(WriteError::BadBranch {
            branch: branch.to_string(),
        });
    }
    Ok(())
}

/// Write `contents` to a file only its owner can read (keys, passphrases).
pub fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// The URL of `src` for messages (no credentials).
pub fn display(src: &GitSource) -> String {
    strip_userinfo(&src.url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_name_and_email() {
        let id = Identity::parse("Flux Bot <bot@example.com>").unwrap();
        assert_eq!(id.name, "Flux Bot");
        assert_eq!(id.email, "bot@example.com");
        assert_eq!(id.to_string(), "Flux Bot <bot@example.com>");
        for bad in [
            "bot@example.com",
            "<bot@example.com>",
            "Bot <>",
            "Bot <a",
            "",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branch_names_git_refuses_are_refused_before_any_git_runs() {
        for ok in ["main", "capstan/web-1.2.3", "release-1.x"] {
            assert!(check_branch_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "x.lock", "a:b", "a~1", "refs/@{x", "/a", "a/",
        ] {
            assert!(check_branch_name(bad).is_err(), "{bad}");
        }
    }
}
