//! End-to-end: the write-back commands as a CI pipeline or a person runs them —
//! `set-image`, `promote`, `revert`, `images select` — against a real git server
//! (`git http-backend` with receive-pack), the embedded API server and a real
//! `capstan controller`, all on loopback and started by the test.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::signing::SshSigningKey;
use capstan_testkit::{BasicAuth, GitServer, TestCluster, TestRepo};
use serde_json::Value;

const USER: &str = "ci";
const PASSWORD: &str = "s3cret-push-token";

fn capstan(args: &[&str], cache: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args(args)
        .env("CAPSTAN_CACHE_DIR", cache)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .env_remove("CAPSTAN_GIT_PASSWORD")
        .env_remove("CAPSTAN_GIT_USERNAME");
    capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

const KUSTOMIZATION: &str = "\
# production
resources:
  - ../../base
images:
  - name: web
    newName: ghcr.io/org/web   # built by CI
    newTag: \"1.4.1\"
";

const STAGING: &str = "\
resources:
  - ../../base
images:
  - name: web
    newName: ghcr.io/org/web
    newTag: \"1.5.0\"
  - name: worker
    newName: ghcr.io/org/worker
    digest: sha256:1111111111111111111111111111111111111111111111111111111111111111
";

struct Git {
    server: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Git {
    fn new(auth: bool) -> Git {
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "env.git");
        repo.write("envs/prod/kustomization.yaml", KUSTOMIZATION);
        repo.write("envs/staging/kustomization.yaml", STAGING);
        repo.write(
            "base/deploy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
        );
        repo.commit("environments");
        let server =
            GitServer::start(root.path(), auth.then(|| BasicAuth::new(USER, PASSWORD))).unwrap();
        Git {
            server,
            repo,
            _root: root,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let url = self.server.url("env.git");
        all.extend([
            "--repo",
            url.as_str(),
            "--git-username",
            USER,
            "--git-password",
            PASSWORD,
        ]);
        capstan(&all, self.cache.path())
    }

    fn remote(&self, branch: &str, path: &str) -> String {
        self.repo.git(&[
            "fetch",
            "-q",
            "origin",
            &format!("+{branch}:refs/remotes/origin/{branch}"),
        ]);
        self.repo.git(&["show", &format!("origin/{branch}:{path}")])
    }

    /// The remote branch's head, fetched now.
    fn head(&self, branch: &str) -> String {
        self.repo.git(&[
            "fetch",
            "-q",
            "origin",
            &format!("+{branch}:refs/remotes/origin/{branch}"),
        ]);
        self.repo.rev_parse(&format!("origin/{branch}"))
    }

    fn log(&self, branch: &str) -> Vec<String> {
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

#[test]
fn set_image_edits_a_directory_in_place_and_names_each_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("prod")).unwrap();
    std::fs::write(dir.path().join("prod/kustomization.yaml"), KUSTOMIZATION).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = ok(&capstan(
        &[
            "set-image",
            dir.path().to_str().unwrap(),
            "ghcr.io/org/web:1.5.0",
            "--path",
            "prod",
        ],
        cache.path(),
    ));
    assert_eq!(
        out,
        "prod/kustomization.yaml: Kustomization images[name=web].newTag: 1.4.1 -> 1.5.0\n1 field(s) changed in 1 file(s)\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("prod/kustomization.yaml")).unwrap(),
        KUSTOMIZATION.replace("\"1.4.1\"", "\"1.5.0\"")
    );
    // -o json lists file, object, field, old and new value
    let out = ok(&capstan(
        &[
            "set-image",
            dir.path().to_str().unwrap(),
            "web=ghcr.io/org/web:1.6.0",
            "--path",
            "prod",
            "-o",
            "json",
        ],
        cache.path(),
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changed"], true);
    assert_eq!(v["commit"], Value::Null);
    let c = &v["changes"][0];
    assert_eq!(
        (
            c["file"].as_str(),
            c["object"]["kind"].as_str(),
            c["field"].as_str(),
            c["old"].as_str(),
            c["new"].as_str()
        ),
        (
            Some("prod/kustomization.yaml"),
            Some("Kustomization"),
            Some("images[name=web].newTag"),
            Some("1.5.0"),
            Some("1.6.0")
        )
    );
}

#[test]
fn set_image_commits_and_pushes_and_a_second_run_commits_nothing() {
    let g = Git::new(true);
    let out = ok(&g.run(&[
        "set-image",
        "ghcr.io/org/web:1.5.0",
        "--path",
        "envs/prod",
        "--branch",
        "main",
        "--author",
        "CI Bot <ci@example.com>",
        "--message",
        "prod: web {{ tag }}",
    ]));
    let head = g.head("main");
    assert!(
        out.ends_with(&format!(
            "pushed {} to main (1 field(s) in 1 file(s))\n",
            &head[..12]
        )),
        "{out}"
    );
    assert!(
        out.starts_with(
            "envs/prod/kustomization.yaml: Kustomization images[name=web].newTag: 1.4.1 -> 1.5.0\n"
        ),
        "{out}"
    );
    assert_eq!(
        g.remote("main", "envs/prod/kustomization.yaml"),
        KUSTOMIZATION.replace("\"1.4.1\"", "\"1.5.0\"")
    );
    let who = g
        .repo
        .git(&["log", "-1", "--format=%an <%ae>|%s", "origin/main"]);
    assert_eq!(who.trim(), "CI Bot <ci@example.com>|prod: web 1.5.0");
    assert!(!out.contains(PASSWORD));

    let again = g.run(&["set-image", "ghcr.io/org/web:1.5.0", "--path", "envs/prod"]);
    let text = ok(&again);
    assert!(text.starts_with("no change: "), "{text}");
    assert_eq!(g.log("main").len(), 2, "no second commit");
}

#[test]
fn set_image_to_a_push_branch_named_by_a_template_leaves_the_base_alone() {
    let g = Git::new(true);
    let out = ok(&g.run(&[
        "set-image",
        "ghcr.io/org/web:1.5.0",
        "--path",
        "envs/prod",
        "--push-branch",
        "capstan/{{ app }}-{{ tag }}",
        "-o",
        "json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["branch"], "capstan/prod-1.5.0");
    assert_eq!(g.log("main"), ["environments"]);
    assert_eq!(
        g.remote("capstan/prod-1.5.0", "envs/prod/kustomization.yaml"),
        KUSTOMIZATION.replace("\"1.4.1\"", "\"1.5.0\"")
    );
    assert_eq!(v["commit"].as_str().unwrap(), g.head("capstan/prod-1.5.0"));
}

#[test]
fn set_image_signs_the_commit_with_an_ssh_key() {
    let g = Git::new(true);
    let keys = tempfile::tempdir().unwrap();
    let key = SshSigningKey::generate(keys.path(), "ci@example.com");
    ok(&g.run(&[
        "set-image",
        "ghcr.io/org/web:1.5.0",
        "--path",
        "envs/prod",
        "--author",
        "CI <ci@example.com>",
        "--sign-key",
        key.key().to_str().unwrap(),
    ]));
    let head = g.head("main");
    let mut verify = key.verify_command();
    verify
        .current_dir(g.repo.work_path())
        .args(["verify-commit", &head]);
    let out = capstan_testkit::process::run(verify, None, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn set_image_on_a_repository_it_may_not_push_to_fails_clearly_and_leaves_it_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let g = Git::new(true);
    // wrong credentials
    let url = g.server.url("env.git");
    let out = capstan(
        &[
            "set-image",
            "ghcr.io/org/web:1.5.0",
            "--path",
            "envs/prod",
            "--repo",
            &url,
            "--git-username",
            USER,
            "--git-password",
            "wrong-token",
        ],
        g.cache.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("authentication failed: the server refused the credentials of user \"ci\""),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("wrong-token"));
    // a protected branch
    let hook = g.repo.bare_path().join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'main is protected' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = g.run(&["set-image", "ghcr.io/org/web:1.5.0", "--path", "envs/prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("was refused: [remote rejected] (pre-receive hook declined); the server said: main is protected"), "{}", stderr(&out));
    assert_eq!(g.log("main"), ["environments"], "nothing half-done");
    assert!(
        g.repo.git(&["ls-remote", "origin"]).lines().count() == 2,
        "no branch left behind"
    );
}

#[test]
fn set_image_of_an_image_nothing_uses_is_an_error_and_commits_nothing() {
    let g = Git::new(true);
    let out = g.run(&["set-image", "ghcr.io/org/wbe:1.5.0", "--path", "envs/prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nothing under envs/prod uses ghcr.io/org/wbe"),
        "{}",
        stderr(&out)
    );
    assert_eq!(g.log("main"), ["environments"]);
}

#[test]
fn a_helm_values_key_that_does_not_exist_is_named_and_nothing_is_pushed() {
    let g = Git::new(true);
    g.repo.write(
        "charts/shop/Chart.yaml",
        "apiVersion: v2\nname: shop\nversion: 1.0.0\n",
    );
    g.repo.write(
        "charts/shop/values.yaml",
        "image:\n  repository: ghcr.io/org/web\n  tag: \"1.0\"\n",
    );
    g.repo.commit("chart");
    let out = g.run(&[
        "set-image",
        "ghcr.io/org/web:1.5.0",
        "--path",
        "charts/shop",
        "--helm-key",
        "ghcr.io/org/web=values.yaml:web.image.tag",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("charts/shop/values.yaml: the key web.image.tag does not exist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(g.log("main"), ["chart", "environments"]);
    // the right key works
    let out = ok(&g.run(&[
        "set-image",
        "ghcr.io/org/web:1.5.0",
        "--path",
        "charts/shop",
        "--helm-key",
        "ghcr.io/org/web=values.yaml:image.tag",
    ]));
    assert!(
        out.starts_with("charts/shop/values.yaml: values image.tag: 1.0 -> 1.5.0\n"),
        "{out}"
    );
    assert_eq!(
        g.remote("main", "charts/shop/values.yaml"),
        "image:\n  repository: ghcr.io/org/web\n  tag: \"1.5.0\"\n"
    );
}

#[test]
fn promote_writes_what_staging_runs_into_production_in_one_commit() {
    let g = Git::new(true);
    let out = ok(&g.run(&["promote", "--from", "envs/staging", "--to", "envs/prod"]));
    assert!(
        out.contains(
            "envs/prod/kustomization.yaml: Kustomization images[name=web].newTag: 1.4.1 -> 1.5.0\n"
        ),
        "{out}"
    );
    let prod = g.remote("main", "envs/prod/kustomization.yaml");
    assert!(
        prod.starts_with(&KUSTOMIZATION.replace("\"1.4.1\"", "\"1.5.0\"")),
        "{prod}"
    );
    let doc: Value = serde_saphyr::from_str(&prod).unwrap();
    assert_eq!(
        doc["images"][1],
        serde_json::json!({"name": "worker", "newName": "ghcr.io/org/worker", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"})
    );
    let log = g.log("main");
    assert_eq!(log.len(), 2);
    assert!(
        log[0].starts_with("Promote ghcr.io/org/web:1.5.0, ghcr.io/org/worker@sha256:"),
        "{log:?}"
    );
    // only the images asked for
    let g = Git::new(true);
    ok(&g.run(&[
        "promote",
        "--from",
        "envs/staging",
        "--to",
        "envs/prod",
        "--image",
        "worker",
    ]));
    let prod = g.remote("main", "envs/prod/kustomization.yaml");
    assert!(prod.contains("newTag: \"1.4.1\""), "{prod}");
    assert!(prod.contains("name: worker"), "{prod}");
}

#[test]
fn images_select_prints_the_tag_a_policy_would_choose() {
    let dir = tempfile::tempdir().unwrap();
    let tags = dir.path().join("tags");
    std::fs::write(
        &tags,
        "1.0.0\n1.0.1\n1.1.0-rc.1\nv1.2.0\nlatest\n\nmain-3f2a9c1-1718000000\n",
    )
    .unwrap();
    let t = tags.to_str().unwrap();
    let cache = dir.path();
    assert_eq!(
        ok(&capstan(
            &["images", "select", "--semver", "1.0.x", "--tags-file", t],
            cache
        )),
        "1.0.1\n"
    );
    assert_eq!(
        ok(&capstan(
            &["images", "select", "--semver", ">=1.0.0", "--tags-file", t],
            cache
        )),
        "v1.2.0\n"
    );
    assert_eq!(
        ok(&capstan(
            &[
                "images",
                "select",
                "--alphabetical",
                "desc",
                "--tags-file",
                t
            ],
            cache
        )),
        "1.0.0\n"
    );
    assert_eq!(
        ok(&capstan(
            &[
                "images",
                "select",
                "--numerical",
                "asc",
                "--filter",
                "^main-[a-f0-9]+-(?P<ts>[0-9]+)$",
                "--extract",
                "$ts",
                "--tags-file",
                t
            ],
            cache
        )),
        "main-3f2a9c1-1718000000\n"
    );
    let none = capstan(
        &["images", "select", "--semver", "2.x", "--tags-file", t],
        cache,
    );
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no tag"), "{}", stderr(&none));
    let bad = capstan(
        &["images", "select", "--semver", "1x", "--tags-file", t],
        cache,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("1x"), "{}", stderr(&bad));
}

// ---- revert: a real controller keeps an Application in sync while Git is reverted ----

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn controller(cluster: &TestCluster, state: &Path) -> Controller {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.arg("controller")
        // side by side with other tests: a free port for the server
        .env("CAPSTAN_LISTEN", "127.0.0.1:0")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(state.join("controller.log")).unwrap(),
        ));
    Controller(cmd.spawn().expect("capstan controller starts"))
}

fn eventually(what: &str, state: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "timed out waiting for {what}\ncontroller log:\n{}",
        std::fs::read_to_string(state.join("controller.log")).unwrap_or_default()
    );
}

fn config_map(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {value}\n"
    )
}

fn revert_env() -> (
    TestCluster,
    GitServer,
    TestRepo,
    tempfile::TempDir,
    tempfile::TempDir,
) {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "env.git");
    repo.write("apps/web/cm.yaml", config_map("blue"));
    repo.write("shared/team.yaml", "owner: team-a\n");
    repo.commit("web: blue");
    let server = GitServer::start(root.path(), None).unwrap();
    let cluster = TestCluster::start();
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n");
    (cluster, server, repo, root, tempfile::tempdir().unwrap())
}

fn app_json(cluster: &TestCluster) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "applications",
        "web",
        "-n",
        "apps",
        "-o",
        "json",
    ]))
    .unwrap()
}

fn color(cluster: &TestCluster) -> String {
    cluster.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "web",
        "-o",
        "jsonpath={.data.color}",
    ])
}

#[test]
fn revert_commits_the_old_state_and_the_controller_syncs_it_with_automated_sync_still_on() {
    let (cluster, server, repo, _root, state) = revert_env();
    let _c = controller(&cluster, state.path());
    cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: apps/web\n  destination:\n    namespace: web\n  interval: 2s\n  syncPolicy:\n    automated:\n      prune: true\n",
        server.url("env.git")
    ));
    let blue = repo.head();
    eventually("blue synced", state.path(), || {
        app_json(&cluster)["status"]["sync"]["revision"] == blue.as_str()
    });
    repo.write("apps/web/cm.yaml", config_map("green"));
    let green = repo.commit("web: green");
    eventually("green synced", state.path(), || color(&cluster) == "green");
    eventually("green in history", state.path(), || {
        app_json(&cluster)["status"]["history"][0]["revision"] == green.as_str()
    });

    let kc = cluster.kubeconfig_path().to_str().unwrap().to_string();
    let cache = tempfile::tempdir().unwrap();
    let out = ok(&capstan(
        &[
            "revert",
            "web",
            "-n",
            "apps",
            "--kubeconfig",
            &kc,
            "--author",
            "Ops <ops@example.com>",
        ],
        cache.path(),
    ));
    assert!(
        out.contains(&format!("reverted {} web: green", &green[..12])),
        "{out}"
    );
    assert!(out.trim_end().ends_with("automated sync stays on"), "{out}");
    assert_eq!(color(&cluster), "blue");
    // the revert is a real commit in Git, on top of green
    repo.git(&["fetch", "-q", "origin"]);
    let revert_commit = repo.rev_parse("origin/main");
    assert_eq!(repo.rev_parse("origin/main~1"), green);
    let msg = repo.git(&["log", "-1", "--format=%B", "origin/main"]);
    assert!(
        msg.starts_with(&format!("Revert web to {}", &blue[..12])),
        "{msg}"
    );
    assert!(msg.contains("Capstan-Revert: apps/web"), "{msg}");
    assert_eq!(
        repo.git(&["show", "origin/main:apps/web/cm.yaml"]),
        config_map("blue")
    );
    // history says revert, automated sync is still on, and the audit log has the commit
    let app = app_json(&cluster);
    assert_eq!(app["status"]["history"][0]["trigger"], "revert");
    assert_eq!(
        app["status"]["history"][0]["revision"],
        revert_commit.as_str()
    );
    assert!(app["spec"]["syncPolicy"]["automated"].is_object());
    let audit: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "auditrecords",
        "-n",
        "apps",
        "-o",
        "json",
    ]))
    .unwrap();
    let record = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["spec"]["action"] == "revert")
        .expect("a revert audit record");
    assert_eq!(record["spec"]["toRevision"], revert_commit.as_str());
    assert_eq!(
        record["spec"]["details"],
        format!("revert commit {revert_commit}")
    );
    // a later commit still syncs automatically
    repo.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    repo.write("apps/web/cm.yaml", config_map("red"));
    repo.commit("web: red");
    eventually("red synced automatically", state.path(), || {
        color(&cluster) == "red"
    });
}

#[test]
fn a_revert_that_conflicts_is_named_and_nothing_is_pushed() {
    let (cluster, server, repo, _root, state) = revert_env();
    let blue = repo.head();
    // one commit changes the app and a shared file; a later one changes the shared file again
    repo.write("apps/web/cm.yaml", config_map("green"));
    repo.write("shared/team.yaml", "owner: team-b\n");
    let both = repo.commit("web: green, team-b");
    repo.write("shared/team.yaml", "owner: team-c\n");
    repo.commit("team-c");
    let kc = cluster.kubeconfig_path().to_str().unwrap().to_string();
    let cache = tempfile::tempdir().unwrap();
    ok(&capstan(&["install", "--kubeconfig", &kc], cache.path()));
    cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: apps/web\n  destination:\n    namespace: web\n",
        server.url("env.git")
    ));
    let before = repo.rev_parse("HEAD");
    let out = capstan(
        &[
            "revert",
            "web",
            "-n",
            "apps",
            "--kubeconfig",
            &kc,
            "--to",
            &blue,
            "--no-wait",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("reverting {} (web: green, team-b) conflicts with a later change in shared/team.yaml; nothing was committed or pushed", &both[..12])),
        "{err}"
    );
    repo.git(&["fetch", "-q", "origin"]);
    assert_eq!(repo.rev_parse("origin/main"), before);
    drop(state);
}
