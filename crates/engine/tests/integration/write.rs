//! The Git write path against real servers on loopback: `git http-backend` (with
//! receive-pack, behind basic auth) and `sshd`; signatures checked by `git
//! verify-commit`.

use std::path::Path;
use std::sync::{Arc, Barrier};

use capstan_engine::source::write::EditError;
use capstan_engine::source::{
    GitAuth, GitCache, GitSource, Identity, SigningKey, WorkTree, WriteError, WriteOptions, Written,
};
use capstan_testkit::signing::{OpenPgpKey, SshSigningKey};
use capstan_testkit::{BasicAuth, GitServer, SshServer, TestRepo};

const USER: &str = "ci";
const PASSWORD: &str = "s3cret-push-token";

struct Env {
    server: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "env.git");
        repo.write("apps/web/deploy.yaml", "image: web:1.0\n");
        repo.write("apps/api/deploy.yaml", "image: api:1.0\n");
        repo.commit("initial");
        let server = GitServer::start(root.path(), Some(BasicAuth::new(USER, PASSWORD))).unwrap();
        Env {
            server,
            repo,
            _root: root,
        }
    }

    fn source(&self) -> GitSource {
        GitSource {
            url: self.server.url("env.git"),
            auth: GitAuth::Basic {
                username: USER.into(),
                password: PASSWORD.into(),
            },
        }
    }

    /// What the remote's branch holds now (fetched into the test's own clone).
    fn remote_file(&self, branch: &str, path: &str) -> String {
        self.repo.git(&[
            "fetch",
            "-q",
            "origin",
            &format!("+{branch}:refs/remotes/origin/{branch}"),
        ]);
        self.repo.git(&["show", &format!("origin/{branch}:{path}")])
    }

    fn remote_log(&self, branch: &str) -> Vec<String> {
        self.repo.git(&[
            "fetch",
            "-q",
            "origin",
            &format!("+{branch}:refs/remotes/origin/{branch}"),
        ]);
        self.repo
            .git(&["log", "--format=%s", &format!("origin/{branch}")])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// An edit that sets the image line of `apps/<app>/deploy.yaml`.
fn set(
    app: &'static str,
    image: &'static str,
) -> impl FnMut(&WorkTree) -> Result<String, EditError> {
    move |tree: &WorkTree| {
        let path = tree.root().join(format!("apps/{app}/deploy.yaml"));
        std::fs::write(&path, format!("image: {image}\n"))?;
        Ok(format!("{app}: {image}"))
    }
}

fn opts(branch: &str) -> WriteOptions {
    WriteOptions {
        branch: branch.into(),
        author: Identity::parse("Capstan Bot <bot@capstan.invalid>").unwrap(),
        ..Default::default()
    }
}

#[test]
fn a_change_is_committed_with_its_author_and_message_and_pushed() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let report = cache
        .write(&env.source(), &opts("main"), set("web", "web:1.1"), |m| {
            format!("deploy {m}")
        })
        .unwrap();
    let Written::Pushed {
        commit,
        branch,
        parent,
    } = &report.written
    else {
        panic!("{:?}", report.written)
    };
    assert_eq!(branch, "main");
    assert_eq!(report.attempts, 1);
    assert_eq!(report.edit, "web: web:1.1");
    assert_eq!(
        env.remote_file("main", "apps/web/deploy.yaml"),
        "image: web:1.1\n"
    );
    let head = env.repo.rev_parse("origin/main");
    assert_eq!(&head, commit);
    assert_eq!(env.repo.rev_parse("origin/main~1"), *parent);
    let who = env.repo.git(&[
        "log",
        "-1",
        "--format=%an <%ae>|%cn <%ce>|%s",
        "origin/main",
    ]);
    assert_eq!(
        who.trim(),
        "Capstan Bot <bot@capstan.invalid>|Capstan Bot <bot@capstan.invalid>|deploy web: web:1.1"
    );
}

#[test]
fn an_edit_that_changes_nothing_makes_no_commit() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let before = env.repo.rev_parse("HEAD");
    let report = cache
        .write(&env.source(), &opts("main"), set("web", "web:1.0"), |m| {
            m.clone()
        })
        .unwrap();
    assert_eq!(
        report.written,
        Written::NoChange {
            head: before.clone()
        }
    );
    assert_eq!(env.remote_log("main"), ["initial"]);
}

#[test]
fn a_push_rejected_because_someone_pushed_first_is_made_again_on_their_commit() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let mut first = true;
    let report = cache
        .write(
            &env.source(),
            &opts("main"),
            |tree: &WorkTree| {
                if first {
                    // someone else pushes while this edit is being made
                    first = false;
                    env.repo.write("apps/api/deploy.yaml", "image: api:2.0\n");
                    env.repo.commit("api: 2.0 (pushed by someone else)");
                }
                set("web", "web:1.1")(tree)
            },
            |m| format!("deploy {m}"),
        )
        .unwrap();
    assert_eq!(report.attempts, 2);
    assert!(report.written.commit().is_some());
    assert_eq!(
        env.remote_log("main"),
        [
            "deploy web: web:1.1",
            "api: 2.0 (pushed by someone else)",
            "initial"
        ]
    );
    assert_eq!(
        env.remote_file("main", "apps/api/deploy.yaml"),
        "image: api:2.0\n"
    );
    assert_eq!(
        env.remote_file("main", "apps/web/deploy.yaml"),
        "image: web:1.1\n"
    );
}

#[test]
fn when_someone_else_pushed_the_same_change_first_nothing_is_committed() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let mut first = true;
    let report = cache
        .write(
            &env.source(),
            &opts("main"),
            |tree: &WorkTree| {
                if first {
                    first = false;
                    env.repo.write("apps/web/deploy.yaml", "image: web:1.1\n");
                    env.repo.commit("web: 1.1 (another updater)");
                }
                set("web", "web:1.1")(tree)
            },
            |m| m.clone(),
        )
        .unwrap();
    assert!(
        matches!(report.written, Written::NoChange { .. }),
        "{:?}",
        report.written
    );
    assert_eq!(
        env.remote_log("main"),
        ["web: 1.1 (another updater)", "initial"]
    );
}

#[test]
fn writers_racing_on_one_branch_lose_nothing_and_duplicate_nothing() {
    let env = Env::new();
    // each writer has its own cache, as separate processes or replicas would
    let apps = ["a", "b", "c", "d", "e", "f"];
    for app in apps {
        env.repo.write(
            format!("apps/{app}/deploy.yaml"),
            format!("image: {app}:1.0\n"),
        );
    }
    env.repo.commit("six apps");
    let barrier = Arc::new(Barrier::new(apps.len()));
    let src = env.source();
    let handles: Vec<_> = apps
        .iter()
        .map(|app| {
            let (barrier, src) = (barrier.clone(), src.clone());
            let app: &'static str = app;
            std::thread::spawn(move || {
                let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
                let mut waited = false;
                cache
                    .write(
                        &src,
                        &opts("main"),
                        |tree: &WorkTree| {
                            if !waited {
                                waited = true;
                                barrier.wait();
                            }
                            let path = tree.root().join(format!("apps/{app}/deploy.yaml"));
                            std::fs::write(&path, format!("image: {app}:2.0\n"))?;
                            Ok(app.to_string())
                        },
                        |m| format!("{m}: 2.0"),
                    )
                    .unwrap()
            })
        })
        .collect();
    let reports: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(reports.iter().all(|r| r.written.commit().is_some()));
    assert!(
        reports.iter().any(|r| r.attempts > 1),
        "the writers did race"
    );
    let log = env.remote_log("main");
    assert_eq!(log.len(), apps.len() + 2, "{log:?}");
    for app in apps {
        assert_eq!(
            log.iter().filter(|s| **s == format!("{app}: 2.0")).count(),
            1,
            "{log:?}"
        );
        assert_eq!(
            env.remote_file("main", &format!("apps/{app}/deploy.yaml")),
            format!("image: {app}:2.0\n")
        );
    }
}

#[test]
fn a_push_branch_is_created_from_the_base_and_built_on_when_it_exists() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let mut o = opts("main");
    o.push_branch = Some("capstan/web-1.1".into());
    let report = cache
        .write(&env.source(), &o, set("web", "web:1.1"), |m| m.clone())
        .unwrap();
    assert!(
        matches!(&report.written, Written::Pushed { branch, .. } if branch == "capstan/web-1.1")
    );
    assert_eq!(
        env.remote_log("main"),
        ["initial"],
        "the base branch is untouched"
    );
    assert_eq!(
        env.remote_file("capstan/web-1.1", "apps/web/deploy.yaml"),
        "image: web:1.1\n"
    );
    // a second change to the same push branch goes on top of it, not over it
    o.push_branch = Some("capstan/web-1.1".into());
    cache
        .write(&env.source(), &o, set("api", "api:1.1"), |m| m.clone())
        .unwrap();
    assert_eq!(
        env.remote_log("capstan/web-1.1"),
        ["api: api:1.1", "web: web:1.1", "initial"]
    );
}

#[test]
fn a_commit_signed_with_an_ssh_key_verifies() {
    let env = Env::new();
    let keys = tempfile::tempdir().unwrap();
    let key = SshSigningKey::generate(keys.path(), "bot@capstan.invalid");
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let mut o = opts("main");
    o.signing = Some(SigningKey::Ssh {
        key: key.key().to_path_buf(),
    });
    let report = cache
        .write(&env.source(), &o, set("web", "web:1.1"), |m| m.clone())
        .unwrap();
    let commit = report.written.commit().unwrap().to_string();
    env.remote_log("main");
    let mut verify = key.verify_command();
    verify
        .current_dir(env.repo.work_path())
        .args(["verify-commit", &commit]);
    let out = capstan_testkit::process::run(verify, None, std::time::Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Good \"git\" signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_commit_signed_with_an_openpgp_key_with_a_passphrase_verifies() {
    let env = Env::new();
    let keys = tempfile::tempdir().unwrap();
    let key = OpenPgpKey::generate(keys.path(), Some("correct horse"));
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path());
    let mut o = opts("main");
    o.signing = Some(SigningKey::OpenPgp {
        key: key.armored().to_path_buf(),
        passphrase: Some("correct horse".into()),
    });
    let report = cache
        .write(&env.source(), &o, set("web", "web:1.1"), |m| m.clone())
        .unwrap();
    let commit = report.written.commit().unwrap().to_string();
    env.remote_log("main");
    let mut verify = key.verify_command();
    verify
        .current_dir(env.repo.work_path())
        .args(["verify-commit", "--raw", &commit]);
    let out = capstan_testkit::process::run(verify, None, std::time::Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("VALIDSIG {}", key.fingerprint())),
        "{err}"
    );
    // a wrong passphrase is a signing error naming the key, and nothing is pushed
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    o.signing = Some(SigningKey::OpenPgp {
        key: key.armored().to_path_buf(),
        passphrase: Some("wrong".into()),
    });
    let err = cache
        .write(&env.source(), &o, set("web", "web:1.2"), |m| m.clone())
        .unwrap_err();
    assert!(matches!(err, WriteError::Signing { .. }), "{err}");
    assert!(err.to_string().contains("signing.asc"), "{err}");
    assert_eq!(
        env.remote_file("main", "apps/web/deploy.yaml"),
        "image: web:1.1\n"
    );
    drop(cache_dir);
}

#[test]
fn a_repository_that_refuses_pushes_is_a_clear_error_and_stays_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    // a protected branch: the server's pre-receive hook declines every push
    let hook = env.repo.bare_path().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'main is protected: open a pull request' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let err = cache
        .write(&env.source(), &opts("main"), set("web", "web:1.1"), |m| {
            m.clone()
        })
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "pushing to branch \"main\" of {} was refused: [remote rejected] (pre-receive hook declined); the server said: main is protected: open a pull request",
            env.server.url("env.git")
        )
    );
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(env.remote_log("main"), ["initial"]);
    // and a later write, once pushing is allowed, starts from the remote again
    std::fs::remove_file(&hook).unwrap();
    let report = cache
        .write(&env.source(), &opts("main"), set("api", "api:1.1"), |m| {
            m.clone()
        })
        .unwrap();
    assert!(report.written.commit().is_some());
    assert_eq!(
        env.remote_log("main"),
        ["api: api:1.1", "initial"],
        "the refused commit is gone"
    );
}

#[test]
fn wrong_credentials_are_named_without_the_password() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let mut src = env.source();
    src.auth = GitAuth::Basic {
        username: USER.into(),
        password: "not-the-token".into(),
    };
    let err = cache
        .write(&src, &opts("main"), set("web", "web:1.1"), |m| m.clone())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("authentication failed: the server refused the credentials of user \"ci\""),
        "{text}"
    );
    assert!(!text.contains("not-the-token"), "{text}");
}

#[test]
fn an_edit_that_fails_commits_nothing() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let err = cache
        .write(
            &env.source(),
            &opts("main"),
            |tree: &WorkTree| -> Result<(), EditError> {
                std::fs::write(tree.root().join("apps/web/deploy.yaml"), "half-done\n")?;
                Err("values.yaml: the key image.tag does not exist".into())
            },
            |_| String::new(),
        )
        .unwrap_err();
    assert!(matches!(err, WriteError::Edit { .. }));
    assert_eq!(
        format!("{err}: {}", std::error::Error::source(&err).unwrap()),
        format!(
            "editing {}: values.yaml: the key image.tag does not exist",
            env.server.url("env.git")
        )
    );
    assert_eq!(env.remote_log("main"), ["initial"]);
    // the half-done file does not leak into the next write
    let report = cache
        .write(&env.source(), &opts("main"), set("api", "api:1.1"), |m| {
            m.clone()
        })
        .unwrap();
    assert!(report.written.commit().is_some());
    assert_eq!(
        env.remote_file("main", "apps/web/deploy.yaml"),
        "image: web:1.0\n"
    );
}

#[test]
fn a_branch_that_does_not_exist_is_named_with_those_that_do() {
    let env = Env::new();
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let err = cache
        .write(
            &env.source(),
            &opts("release"),
            set("web", "web:1.1"),
            |m| m.clone(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "branch \"release\" does not exist in {} (branches: main)",
            env.server.url("env.git")
        )
    );
    // the default branch is the remote's HEAD when none is given
    let report = cache
        .write(&env.source(), &opts(""), set("web", "web:1.1"), |m| {
            m.clone()
        })
        .unwrap();
    assert!(matches!(&report.written, Written::Pushed { branch, .. } if branch == "main"));
}

#[test]
fn writes_go_over_ssh_with_a_key_and_a_pinned_host_key() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "env.git");
    repo.write("apps/web/deploy.yaml", "image: web:1.0\n");
    repo.commit("initial");
    let ssh = SshServer::start();
    let known = root.path().join("known_hosts");
    std::fs::write(&known, ssh.known_hosts_line() + "\n").unwrap();
    let src = GitSource {
        url: ssh.url_for(repo.bare_path()),
        auth: GitAuth::SshKey {
            key: ssh.client_key().to_path_buf(),
            known_hosts: Some(known),
        },
    };
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let report = cache
        .write(&src, &opts("main"), set("web", "web:1.1"), |m| m.clone())
        .unwrap();
    let commit = report.written.commit().unwrap();
    let out = capstan_testkit::repo::git_in(repo.bare_path(), ["rev-parse", "main"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), commit);
}

#[test]
fn credentials_over_plain_http_to_another_host_are_refused_before_anything_runs() {
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let src = GitSource {
        url: "http://git.example.com/env.git".into(),
        auth: GitAuth::Basic {
            username: "u".into(),
            password: "p".into(),
        },
    };
    let err = cache
        .write(&src, &opts("main"), set("web", "web:1.1"), |m| m.clone())
        .unwrap_err();
    assert!(
        matches!(err, WriteError::ClearTextCredentials { .. }),
        "{err}"
    );
    assert!(!Path::new(&cache.work_dir(&src)).exists());
}

#[test]
fn a_working_copy_with_the_branch_checked_out_is_named_as_the_reason() {
    let env = Env::new();
    // the test's own clone is a working copy with main checked out
    let src = GitSource::new(format!("file://{}", env.repo.work_path().display()));
    let cache = GitCache::new(tempfile::tempdir().unwrap().keep());
    let err = cache
        .write(&src, &opts("main"), set("web", "web:1.1"), |m| m.clone())
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "the branch is checked out in that working copy, and git does not push into it"
        ),
        "{err}"
    );
}

#[test]
fn a_write_killed_half_way_leaves_nothing_that_blocks_the_next() {
    let env = Env::new();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path());
    cache
        .write(&env.source(), &opts("main"), set("web", "web:1.1"), |m| {
            m.clone()
        })
        .unwrap();
    let work = cache.work_dir(&env.source());
    // what a process killed inside `git add` leaves: an index lock and a dirty tree
    std::fs::write(work.join(".git/index.lock"), "").unwrap();
    std::fs::write(work.join("apps/web/deploy.yaml"), "half written").unwrap();
    std::fs::write(work.join("stray.yaml"), "x: 1\n").unwrap();
    let report = cache
        .write(&env.source(), &opts("main"), set("api", "api:1.1"), |m| {
            m.clone()
        })
        .unwrap();
    assert!(report.written.commit().is_some());
    assert_eq!(
        env.remote_file("main", "apps/web/deploy.yaml"),
        "image: web:1.1\n"
    );
    assert_eq!(
        env.remote_file("main", "apps/api/deploy.yaml"),
        "image: api:1.1\n"
    );
    // a work tree that is not a repository any more is made again
    std::fs::remove_dir_all(work.join(".git/objects")).unwrap();
    let report = cache
        .write(&env.source(), &opts("main"), set("web", "web:1.2"), |m| {
            m.clone()
        })
        .unwrap();
    assert!(report.written.commit().is_some());
    assert_eq!(
        env.remote_file("main", "apps/web/deploy.yaml"),
        "image: web:1.2\n"
    );
}
