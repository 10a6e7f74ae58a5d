//! Test repositories built with the git CLI.
//!
//! A [`TestRepo`] is a bare repository under a root directory (which a
//! [`GitServer`](crate::git::GitServer) can serve) plus a working clone in a
//! temporary directory of its own, outside that root. Changes are written in the
//! working clone; [`commit`](TestRepo::commit) commits everything and pushes the
//! current branch to the bare repository.
//!
//! Author, committer, e-mail and dates are fixed (dates advance one minute per commit),
//! and user/system git config is ignored, so the same steps give the same commit ids on
//! every run and machine.
//!
//! ```no_run
//! use capstan_testkit::repo::TestRepo;
//! let root = tempfile::tempdir().unwrap();
//! let repo = TestRepo::create(root.path(), "app.git");
//! repo.write("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\n");
//! let sha = repo.commit("first");
//! repo.tag("v1.0.0");
//! assert_eq!(repo.head(), sha);
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::process;

/// Author and committer name of test commits.
pub const AUTHOR_NAME: &str = "Capstan Test";
/// Author and committer e-mail of test commits.
pub const AUTHOR_EMAIL: &str = "test@capstan.invalid";
/// Unix time of the first test commit (2024-01-01T00:00:00Z); each later commit is one
/// minute later.
pub const FIRST_COMMIT_TIME: u64 = 1_704_067_200;

/// A `git` command with an isolated, deterministic environment: no system or user
/// config, no terminal prompts or askpass helpers, the test identity, and none of the
/// caller's `GIT_*` variables.
///
/// Use it for git commands in tests (clones through a [`GitServer`](crate::GitServer),
/// …) and run it with [`process::run`] so it is bounded in time.
pub fn git_command() -> Command {
    let mut cmd = Command::new("git");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("SSH_ASKPASS")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL)
        .env("LC_ALL", "C");
    cmd
}

/// Run `git args…` in `dir` (bounded in time) and return its output, whatever the
/// status. Panics only when `git` cannot be started.
pub fn git_in<I, S>(dir: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = git_command();
    cmd.current_dir(dir).args(args);
    process::run(cmd, None, process::DEFAULT_TIMEOUT)
}

/// A bare repository plus a working clone; see the [module documentation](self).
pub struct TestRepo {
    name: String,
    bare: PathBuf,
    work: tempfile::TempDir,
    commits: AtomicU64,
}

impl TestRepo {
    /// Create the bare repository `root/<name>` (default branch `main`) and a working
    /// clone of it in a temporary directory outside `root`. `name` may contain `/`
    /// (`org/app.git`). Panics when the repository exists or git fails.
    pub fn create(root: &Path, name: &str) -> TestRepo {
        let bare = root.join(name);
        assert!(
            !bare.exists(),
            "test repository {} already exists",
            bare.display()
        );
        std::fs::create_dir_all(&bare)
            .unwrap_or_else(|e| panic!("creating {}: {e}", bare.display()));
        let bare = bare
            .canonicalize()
            .unwrap_or_else(|e| panic!("canonicalizing {}: {e}", bare.display()));
        let work = tempfile::Builder::new()
            .prefix("capstan-testrepo-")
            .tempdir()
            .expect("tempdir for the working clone");
        let repo = TestRepo {
            name: name.to_string(),
            bare,
            work,
            commits: AtomicU64::new(0),
        };
        repo.git_at(
            &repo.bare,
            &["init", "--quiet", "--bare", "--initial-branch=main", "."],
        );
        repo.git(&["init", "--quiet", "--initial-branch=main", "."]);
        let bare = repo.bare.to_string_lossy().into_owned();
        repo.git(&["remote", "add", "origin", &bare]);
        repo
    }

    /// The name given to [`create`](Self::create) (its path below the root).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bare repository.
    pub fn bare_path(&self) -> &Path {
        &self.bare
    }

    /// The working clone.
    pub fn work_path(&self) -> &Path {
        self.work.path()
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Write `contents` to `path` (relative to the working clone), creating parent
    /// directories and replacing what was there.
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let full = self.work_file(path.as_ref());
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        if full.is_symlink() {
            let _ = std::fs::remove_file(&full);
        }
        std::fs::write(&full, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", full.display()));
    }

    /// Remove the file, symlink or directory (recursively) at `path`.
    pub fn remove(&self, path: impl AsRef<Path>) {
        let full = self.work_file(path.as_ref());
        let result = if full.is_dir() && !full.is_symlink() {
            std::fs::remove_dir_all(&full)
        } else {
            std::fs::remove_file(&full)
        };
        result.unwrap_or_else(|e| panic!("removing {}: {e}", full.display()));
    }

    /// Create a symlink at `link_path` pointing to `target` (stored as given, so it
    /// may be relative, absolute, or escape the repository), replacing what was there.
    pub fn symlink(&self, link_path: impl AsRef<Path>, target: impl AsRef<Path>) {
        let full = self.work_file(link_path.as_ref());
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        if full.is_symlink() || full.is_file() {
            let _ = std::fs::remove_file(&full);
        }
        std::os::unix::fs::symlink(target.as_ref(), &full)
            .unwrap_or_else(|e| panic!("symlinking {}: {e}", full.display()));
    }

    /// Commit every change in the working clone (empty commits allowed) and push the
    /// current branch to the bare repository (forced, so rewritten history is pushed
    /// as well). Returns the full commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        let date = format!("@{} +0000", FIRST_COMMIT_TIME + 60 * n);
        let mut cmd = git_command();
        cmd.current_dir(self.work.path())
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args([
                "-c",
                "commit.gpgsign=false",
                "commit",
                "--quiet",
                "--allow-empty",
                "--no-verify",
                "-m",
                message,
            ]);
        let out = process::run(cmd, None, process::DEFAULT_TIMEOUT);
        process::assert_success(&out, &format!("git commit -m {message:?}"));
        self.push_head();
        self.head()
    }

    /// Create the lightweight tag `name` at HEAD and push it (moving it if it exists).
    pub fn tag(&self, name: &str) {
        self.git(&["tag", "--force", name]);
        self.git(&[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("refs/tags/{name}"),
        ]);
    }

    /// Create the annotated tag `name` at HEAD with `message` and push it.
    pub fn annotated_tag(&self, name: &str, message: &str) {
        let n = self.commits.load(Ordering::SeqCst);
        let date = format!("@{} +0000", FIRST_COMMIT_TIME + 60 * n);
        let mut cmd = git_command();
        cmd.current_dir(self.work.path())
            .env("GIT_COMMITTER_DATE", &date)
            .args([
                "-c",
                "tag.gpgsign=false",
                "tag",
                "--force",
                "-a",
                name,
                "-m",
                message,
            ]);
        let out = process::run(cmd, None, process::DEFAULT_TIMEOUT);
        process::assert_success(&out, &format!("git tag -a {name}"));
        self.git(&[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("refs/tags/{name}"),
        ]);
    }

    /// Create the branch `name` at HEAD (moving it if it exists) and push it; the
    /// current branch does not change (use [`checkout`](Self::checkout)).
    pub fn branch(&self, name: &str) {
        self.git(&["branch", "--force", name]);
        self.git(&[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("refs/heads/{name}"),
        ]);
    }

    /// Switch the working clone to `name` (a branch; or a tag or commit, which
    /// detaches HEAD — commits made then are not pushed).
    pub fn checkout(&self, name: &str) {
        self.git(&["checkout", "--quiet", name]);
    }

    /// Delete the branch `name` locally and in the bare repository.
    pub fn delete_branch(&self, name: &str) {
        self.git(&["branch", "--quiet", "-D", name]);
        self.git(&[
            "push",
            "--quiet",
            "origin",
            "--delete",
            &format!("refs/heads/{name}"),
        ]);
    }

    /// The full id of HEAD in the working clone.
    pub fn head(&self) -> String {
        self.rev_parse("HEAD")
    }

    /// The full object id `rev` resolves to (peeled to a commit).
    pub fn rev_parse(&self, rev: &str) -> String {
        self.git(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
            .trim()
            .to_string()
    }

    /// Run `git args…` in the working clone; it must succeed. Returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_at(self.work.path(), args)
    }

    fn git_at(&self, dir: &Path, args: &[&str]) -> String {
        let out = git_in(dir, args);
        process::assert_success(&out, &format!("git {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn push_head(&self) {
        let out = git_in(
            self.work.path(),
            ["symbolic-ref", "--quiet", "--short", "HEAD"],
        );
        if !out.status.success() {
            return; // detached HEAD: nothing to push to
        }
        let branch = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.git(&[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ]);
    }

    fn work_file(&self, path: &Path) -> PathBuf {
        assert!(
            path.is_relative(),
            "test repository paths are relative: {}",
            path.display()
        );
        self.work.path().join(path)
    }
}

/// Copy a directory tree (symlinks as symlinks, files writable): a fixture made into a
/// repository of its own.
pub fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let dest = to.join(entry.file_name());
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else if meta.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_deterministic_and_pushed() {
        let shas: Vec<(String, String)> = (0..2)
            .map(|_| {
                let root = tempfile::tempdir().unwrap();
                let repo = TestRepo::create(root.path(), "org/app.git");
                repo.write("a/b.yaml", "x: 1\n");
                repo.symlink("link", "a/b.yaml");
                let first = repo.commit("first");
                repo.remove("a");
                repo.write("c.txt", "c");
                let second = repo.commit("second");
                assert_ne!(first, second);
                repo.tag("v1");
                repo.annotated_tag("v1-annotated", "release");
                repo.branch("feature");
                repo.checkout("feature");
                let third = repo.commit("empty on feature");
                let bare = git_in(
                    repo.bare_path(),
                    [
                        "rev-parse",
                        "main",
                        "feature",
                        "v1^{commit}",
                        "v1-annotated^{commit}",
                    ],
                );
                assert!(bare.status.success());
                assert_eq!(
                    String::from_utf8_lossy(&bare.stdout)
                        .lines()
                        .collect::<Vec<_>>(),
                    [&second, &third, &second, &second]
                );
                let tree = git_in(repo.bare_path(), ["ls-tree", "-r", "main~1"]);
                let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
                assert!(tree.contains("120000 blob"), "{tree}");
                assert!(repo.file_url().starts_with("file:///"));
                (first, third)
            })
            .collect();
        assert_eq!(shas[0], shas[1]);
    }
}
