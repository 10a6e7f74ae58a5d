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

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::git::{GitAuth, GitCache, GitSource, auth_failure, is_loopback, redact, strip_userinfo};

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
        if !dir.join(".git").exists() {
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

/// What `git ls-remote` said of the branches that matter.
struct RemoteHeads {
    default_branch: Option<String>,
    heads: Vec<(String, String)>,
}

impl RemoteHeads {
    fn list(&self) -> String {
        if self.heads.is_empty() {
            return "none".into();
        }
        let mut names: Vec<&str> = self.heads.iter().map(|(b, _)| b.as_str()).collect();
        names.sort();
        names.join(", ")
    }
}

/// The outcome of a push that git ran to the end.
enum Push {
    /// Pushed.
    Done,
    /// Rejected: the branch has commits we do not (someone pushed first).
    Behind,
}

/// Runs `git` for one repository with the write path's environment.
#[derive(Clone)]
struct Runner {
    url: String,
    auth: GitAuth,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    signing: Option<SigningKey>,
}

struct RunOutput {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Runner {
    fn new(cache: &GitCache, src: &GitSource, opts: &WriteOptions) -> Result<Self, WriteError> {
        let url = src.display_url();
        // credentials in the URL are used like given ones, but never stored in the
        // work tree's config (the remote is the URL without them)
        let auth = match (&src.auth, userinfo(&src.url)) {
            (GitAuth::None, Some((username, password))) => GitAuth::Basic { username, password },
            (auth, _) => auth.clone(),
        };
        if matches!(auth, GitAuth::Basic { .. }) && url.starts_with("http://") && !is_loopback(&url)
        {
            return Err(WriteError::ClearTextCredentials { url });
        }
        let mut config: Vec<(&str, String)> = vec![
            // no helper of the user's or the system's: only the credentials given
            ("credential.helper", String::new()),
            ("core.hooksPath", "/dev/null".into()),
            ("commit.gpgSign", "false".into()),
            ("tag.gpgSign", "false".into()),
            ("core.autocrlf", "false".into()),
            ("gc.autoDetach", "false".into()),
            ("advice.detachedHead", "false".into()),
            // a stalled transfer fails instead of hanging
            ("http.lowSpeedLimit", "1000".into()),
            ("http.lowSpeedTime", "60".into()),
        ];
        let mut env: Vec<(OsString, OsString)> = vec![
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            ("GIT_ASKPASS".into(), "".into()),
            ("SSH_ASKPASS".into(), "".into()),
            ("LC_ALL".into(), "C".into()),
        ];
        if let GitAuth::Basic { username, password } = &auth {
            config.push((
                "credential.helper",
                "!f() { test \"$1\" = get || exit 0; printf 'username=%s\\npassword=%s\\n' \"$CAPSTAN_WRITE_USERNAME\" \"$CAPSTAN_WRITE_PASSWORD\"; }; f".into(),
            ));
            env.push(("CAPSTAN_WRITE_USERNAME".into(), username.into()));
            env.push(("CAPSTAN_WRITE_PASSWORD".into(), password.into()));
        }
        if let Some(cmd) = cache.ssh_command(&auth) {
            env.push(("GIT_SSH_COMMAND".into(), cmd.into()));
        }
        // the private CA the README tells users to name for fetches serves pushes too
        if let Some(ca) = std::env::var_os("SSL_CERT_FILE") {
            env.push(("GIT_SSL_CAINFO".into(), ca));
        }
        match &opts.signing {
            Some(SigningKey::Ssh { key }) => {
                config.push(("gpg.format", "ssh".into()));
                config.push(("user.signingKey", absolute(key).display().to_string()));
            }
            Some(SigningKey::OpenPgp { key, passphrase }) => {
                let (home, fingerprint) = openpgp_keyring(cache, key, passphrase.as_deref(), &url)?;
                config.push(("gpg.format", "openpgp".into()));
                config.push(("user.signingKey", fingerprint));
                env.push(("GNUPGHOME".into(), home.into()));
            }
            None => {}
        }
        env.push(("GIT_CONFIG_COUNT".into(), config.len().to_string().into()));
        for (i, (k, v)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}").into(), k.into()));
            env.push((format!("GIT_CONFIG_VALUE_{i}").into(), v.into()));
        }
        env.push(("GIT_AUTHOR_NAME".into(), opts.author.name.clone().into()));
        env.push(("GIT_AUTHOR_EMAIL".into(), opts.author.email.clone().into()));
        env.push(("GIT_COMMITTER_NAME".into(), opts.author.name.clone().into()));
        env.push((
            "GIT_COMMITTER_EMAIL".into(),
            opts.author.email.clone().into(),
        ));
        Ok(Runner {
            url,
            auth,
            env,
            timeout: opts.timeout,
            signing: opts.signing.clone(),
        })
    }

    /// Run git; fail only when it cannot be started or runs out of time.
    fn run(&self, dir: &Path, args: &[&str], stdin: Option<&str>) -> Result<RunOutput, WriteError> {
        let mut cmd = Command::new("git");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(dir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let action = format!("running git {}", args.first().unwrap_or(&""));
        let io = |e: std::io::Error| WriteError::Git {
            url: self.url.clone(),
            action: action.clone(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "the git program is not installed (it is needed to push)".into()
                }
                _ => e.to_string(),
            },
        };
        let mut child = cmd.spawn().map_err(io)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(io)?;
        }
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_thread = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let err_thread = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            if let Some(status) = child.try_wait().map_err(io)? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(WriteError::Git {
                    url: self.url.clone(),
                    action,
                    message: format!("git {} took longer than {:?}", args.join(" "), self.timeout),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
        Ok(RunOutput {
            success: status.success(),
            stdout,
            stderr: redact(&stderr, &self.auth),
        })
    }

    /// Run git and require success; `action` says what was being done to the repository.
    fn ok(
        &self,
        dir: &Path,
        args: &[&str],
        stdin: Option<&str>,
        action: &str,
    ) -> Result<String, WriteError> {
        let out = self.run(dir, args, stdin)?;
        if out.success {
            return Ok(out.stdout);
        }
        Err(WriteError::Git {
            url: self.url.clone(),
            action: action.to_string(),
            message: git_message(&out.stderr, &self.auth),
        })
    }

    /// The remote's default branch and the heads of the branches the write needs.
    fn ls_remote(&self, dir: &Path, opts: &WriteOptions) -> Result<RemoteHeads, WriteError> {
        let mut args = vec!["ls-remote", "--symref", "origin", "HEAD"];
        let wanted: Vec<String> = [Some(&opts.branch), opts.push_branch.as_ref()]
            .into_iter()
            .flatten()
            .filter(|b| !b.is_empty())
            .map(|b| format!("refs/heads/{b}"))
            .collect();
        args.extend(wanted.iter().map(String::as_str));
        if opts.branch.is_empty() {
            // the default branch is only known from the answer: ask for all heads
            args.push("refs/heads/*");
        }
        let out = self.ok(dir, &args, None, "reading the branches of")?;
        let mut remote = RemoteHeads {
            default_branch: None,
            heads: Vec::new(),
        };
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("ref: ") {
                if let Some((target, "HEAD")) = rest.split_once('\t') {
                    remote.default_branch = target.strip_prefix("refs/heads/").map(str::to_string);
                }
                continue;
            }
            if let Some((id, name)) = line.split_once('\t')
                && let Some(branch) = name.strip_prefix("refs/heads/")
            {
                remote.heads.push((branch.to_string(), id.to_string()));
            }
        }
        Ok(remote)
    }

    /// Commit what is staged; the new commit's id.
    fn commit(&self, dir: &Path, message: &str, opts: &WriteOptions) -> Result<String, WriteError> {
        let mut args = vec!["commit", "-q", "--no-verify", "-F", "-"];
        if opts.signing.is_some() {
            args.push("-S");
        }
        let out = self.run(dir, &args, Some(message))?;
        if !out.success {
            return Err(match &self.signing {
                Some(key) => WriteError::Signing {
                    url: self.url.clone(),
                    key: key.path().display().to_string(),
                    message: git_message(&out.stderr, &self.auth),
                },
                None => WriteError::Git {
                    url: self.url.clone(),
                    action: "committing to".into(),
                    message: git_message(&out.stderr, &self.auth),
                },
            });
        }
        Ok(self
            .ok(dir, &["rev-parse", "HEAD"], None, "committing to")?
            .trim()
            .to_string())
    }

    /// Push HEAD to `branch`, never forced.
    fn push(&self, dir: &Path, branch: &str) -> Result<Push, WriteError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        let out = self.run(
            dir,
            &["push", "--porcelain", "--no-verify", "origin", &refspec],
            None,
        )?;
        // porcelain: one line per ref, `<flag>\t<from>:<to>\t<summary> (<reason>)`
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!(":refs/heads/{branch}")));
        match line {
            Some(l) if out.success && !l.starts_with('!') => Ok(Push::Done),
            Some(l) if l.contains("[rejected]") => {
                if l.contains("fetch first")
                    || l.contains("non-fast-forward")
                    || l.contains("stale info")
                {
                    Ok(Push::Behind)
                } else {
                    Err(WriteError::PushRefused {
                        url: self.url.clone(),
                        branch: branch.to_string(),
                        reason: summary(l),
                    })
                }
            }
            // another push updated the branch at the same moment
            Some(l)
                if l.contains("[remote rejected]")
                    && (l.contains("failed to update ref")
                        || l.contains("cannot lock ref")
                        || l.contains("incorrect old value")) =>
            {
                Ok(Push::Behind)
            }
            Some(l) if l.contains("[remote rejected]") => Err(WriteError::PushRefused {
                url: self.url.clone(),
                branch: branch.to_string(),
                reason: with_remote_message(&summary(l), &out.stderr),
            }),
            _ if out.success => Ok(Push::Done),
            _ => Err(WriteError::Git {
                url: self.url.clone(),
                action: format!("pushing to branch {branch:?} of"),
                message: git_message(&out.stderr, &self.auth),
            }),
        }
    }
}

/// `reason`, and what the server's hooks said (`remote: …` lines), if anything.
fn with_remote_message(reason: &str, stderr: &str) -> String {
    let said: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if said.is_empty() {
        reason.to_string()
    } else {
        format!("{reason}; the server said: {}", said.join(" "))
    }
}

/// The reason part of a porcelain push line.
fn summary(line: &str) -> String {
    line.rsplit('\t').next().unwrap_or(line).trim().to_string()
}

/// What git said, on one line, the useful words first; authentication failures
/// explained.
fn git_message(stderr: &str, auth: &GitAuth) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect();
    let all = lines.join("; ");
    let lower = all.to_ascii_lowercase();
    if lower.contains("authentication failed")
        || lower.contains("could not read username")
        || lower.contains("returned error: 401")
        || lower.contains("permission denied (publickey")
    {
        return auth_failure(auth);
    }
    if lower.contains("returned error: 403") {
        return format!(
            "permission denied: the server does not let these credentials push ({all})"
        );
    }
    if all.is_empty() {
        "git failed without a message".into()
    } else {
        all
    }
}

/// `user:password` from a URL's userinfo (percent-decoded), if both are there.
fn userinfo(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let (info, _) = authority.rsplit_once('@')?;
    let (user, password) = info.split_once(':')?;
    Some((percent_decode(user), percent_decode(password)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// A keyring of its own for an OpenPGP signing key (imported once), and the key's
/// fingerprint. A passphrase is handed to gpg through a file only its owner can read.
fn openpgp_keyring(
    cache: &GitCache,
    key: &Path,
    passphrase: Option<&str>,
    url: &str,
) -> Result<(PathBuf, String), WriteError> {
    use sha2::Digest;
    let signing_err = |message: String| WriteError::Signing {
        url: url.to_string(),
        key: key.display().to_string(),
        message,
    };
    let armored = std::fs::read(key).map_err(|e| signing_err(format!("reading the key: {e}")))?;
    let digest = hex::encode(&sha2::Sha256::digest(&armored)[..8]);
    let home = cache.root().join("gnupg").join(digest);
    let marker = home.join("capstan-fingerprint");
    if let Ok(fpr) = std::fs::read_to_string(&marker) {
        return Ok((home, fpr.trim().to_string()));
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&home)
            .map_err(|e| signing_err(format!("creating its keyring: {e}")))?;
    }
    let mut conf = String::from("batch\nno-tty\npinentry-mode loopback\n");
    if let Some(p) = passphrase {
        let file = home.join("passphrase");
        write_private_file(&file, p).map_err(|e| signing_err(format!("{e}")))?;
        conf.push_str(&format!("passphrase-file {}\n", file.display()));
    }
    std::fs::write(home.join("gpg.conf"), conf)
        .map_err(|e| signing_err(format!("writing gpg.conf: {e}")))?;
    std::fs::write(home.join("gpg-agent.conf"), "allow-loopback-pinentry\n")
        .map_err(|e| signing_err(format!("writing gpg-agent.conf: {e}")))?;
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    signing_err("gpg is not installed (it signs OpenPGP commits)".into())
                }
                _ => signing_err(e.to_string()),
            })
    };
    let import = gpg(&["--import", &absolute(key).display().to_string()])?;
    if !import.status.success() {
        return Err(signing_err(format!(
            "importing the key: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        )));
    }
    let list = gpg(&["--with-colons", "--list-secret-keys"])?;
    let text = String::from_utf8_lossy(&list.stdout);
    let fingerprint = text
        .lines()
        .skip_while(|l| !l.starts_with("sec:"))
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|rest| rest.split(':').find(|f| f.len() >= 40))
        .map(str::to_string)
        .ok_or_else(|| signing_err("the file holds no OpenPGP secret key".into()))?;
    std::fs::write(&marker, &fingerprint)
        .map_err(|e| signing_err(format!("writing its keyring: {e}")))?;
    Ok((home, fingerprint))
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

    #[test]
    fn credentials_in_a_url_are_taken_out_and_decoded() {
        assert_eq!(
            userinfo("https://ci:s%40cret@git.example.com/env.git"),
            Some(("ci".into(), "s@cret".into()))
        );
        assert_eq!(userinfo("https://git.example.com/env.git"), None);
        assert_eq!(userinfo("git@host:org/env.git"), None);
    }

    #[test]
    fn authentication_failures_are_explained_without_the_password() {
        let auth = GitAuth::Basic {
            username: "ci".into(),
            password: "tok".into(),
        };
        let m = git_message(
            "remote: bad\nfatal: Authentication failed for 'http://127.0.0.1/x.git/'\n",
            &auth,
        );
        assert_eq!(
            m,
            "authentication failed: the server refused the credentials of user \"ci\""
        );
        let m = git_message(
            "error: RPC failed; HTTP 403 curl 22 The requested URL returned error: 403\n",
            &auth,
        );
        assert!(m.starts_with("permission denied"), "{m}");
    }
}
