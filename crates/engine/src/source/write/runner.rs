//! Running `git` for the write path: a clean environment (no system or user config,
//! no hooks, no prompts), credentials handed over through the environment, every
//! command bounded in time, and what git says turned into one clear line.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{SigningKey, WriteError, WriteOptions};
use crate::source::git::{GitAuth, GitCache, GitSource, auth_failure, is_loopback, redact};

/// What `git ls-remote` said of the branches that matter.
pub(super) struct RemoteHeads {
    pub(super) default_branch: Option<String>,
    pub(super) heads: Vec<(String, String)>,
}

impl RemoteHeads {
    pub(super) fn list(&self) -> String {
        if self.heads.is_empty() {
            return "none".into();
        }
        let mut names: Vec<&str> = self.heads.iter().map(|(b, _)| b.as_str()).collect();
        names.sort();
        names.join(", ")
    }
}

/// The outcome of a push that git ran to the end.
pub(super) enum Push {
    /// Pushed.
    Done,
    /// Rejected: the branch has commits we do not (someone pushed first).
    Behind,
}

/// Runs `git` for one repository with the write path's environment.
#[derive(Clone)]
pub(super) struct Runner {
    pub(super) url: String,
    auth: GitAuth,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    signing: Option<SigningKey>,
}

pub(super) struct RunOutput {
    pub(super) success: bool,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Runner {
    pub(super) fn new(
        cache: &GitCache,
        src: &GitSource,
        opts: &WriteOptions,
    ) -> Result<Self, WriteError> {
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
                let (home, fingerprint) =
                    super::openpgp::keyring(cache, key, passphrase.as_deref(), &url)?;
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
    pub(super) fn run(
        &self,
        dir: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<RunOutput, WriteError> {
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
    pub(super) fn ok(
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
    pub(super) fn ls_remote(
        &self,
        dir: &Path,
        opts: &WriteOptions,
    ) -> Result<RemoteHeads, WriteError> {
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
    pub(super) fn commit(
        &self,
        dir: &Path,
        message: &str,
        opts: &WriteOptions,
    ) -> Result<String, WriteError> {
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
    pub(super) fn push(&self, dir: &Path, branch: &str) -> Result<Push, WriteError> {
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
    if stderr.contains("refusing to update checked out branch") {
        return format!(
            "{reason}: the branch is checked out in that working copy, and git does not push into it; commit there yourself (`git revert`, or `capstan set-image DIR`), or use a repository that accepts pushes"
        );
    }
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

pub(super) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
