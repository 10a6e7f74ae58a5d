//! Git sources against real repositories: fetching through a git server on loopback
//! (smart HTTP behind basic auth) and over `file://`, resolving every kind of revision,
//! and checking out trees that must stay inside the repository.

use std::path::Path;

use capstan_engine::source::git::{CheckoutError, FetchReport};
use capstan_engine::source::{ConfineError, GitAuth, GitCache, GitError, GitSource};
use capstan_testkit::repo::{AUTHOR_EMAIL, AUTHOR_NAME, FIRST_COMMIT_TIME};
use capstan_testkit::{BasicAuth, GitServer, TestRepo};

const USER: &str = "deployer";
const PASSWORD: &str = "s3cret-pw-7f3c9e";
const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n";

/// Deterministic text that does not compress (xorshift from a fixed seed), so a pack
/// carrying it has real weight.
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdef"[(x % 16) as usize])
        })
        .collect()
}

/// A repository `app.git` served over HTTP behind basic auth, and an empty cache.
struct Served {
    repo: TestRepo,
    server: GitServer,
    cache: GitCache,
    cache_dir: tempfile::TempDir,
    _root: tempfile::TempDir,
}

impl Served {
    fn start() -> Served {
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "app.git");
        let server = GitServer::start(root.path(), Some(BasicAuth::new(USER, PASSWORD))).unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        Served {
            repo,
            server,
            cache: GitCache::new(cache_dir.path().join("git")),
            cache_dir,
            _root: root,
        }
    }

    /// The repository with the right credentials.
    fn source(&self) -> GitSource {
        self.source_with(GitAuth::Basic {
            username: USER.into(),
            password: PASSWORD.into(),
        })
    }

    fn source_with(&self, auth: GitAuth) -> GitSource {
        GitSource {
            url: self.server.url("app.git"),
            auth,
        }
    }

    fn fetch(&self) -> FetchReport {
        self.cache.fetch(&self.source()).unwrap()
    }

    /// The commit `revision` resolves to.
    fn resolve(&self, revision: &str) -> String {
        self.cache
            .resolve(&self.source(), revision)
            .unwrap_or_else(|e| panic!("resolving {revision:?}: {e}"))
            .id
    }

    fn resolve_err(&self, revision: &str) -> GitError {
        match self.cache.resolve(&self.source(), revision) {
            Ok(rev) => panic!("{revision:?} resolved to {} but should not", rev.id),
            Err(e) => e,
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
}

#[test]
fn fetching_with_the_right_credentials_resolves_the_branch_to_the_pushed_commit() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    let sha = f
        .repo
        .commit("Add the web config map\n\nThe body is not part of the summary.");

    let report = f.fetch();
    assert!(report.objects >= 4, "commit, two trees, a blob: {report:?}");
    assert!(report.bytes > 0, "{report:?}");
    let rev = f.cache.resolve(&f.source(), "main").unwrap();

    assert_eq!(rev.id, sha);
    assert_eq!(rev.requested, "main");
    assert_eq!(rev.author, format!("{AUTHOR_NAME} <{AUTHOR_EMAIL}>"));
    assert_eq!(rev.message, "Add the web config map");
    assert_eq!(rev.time, "2024-01-01T00:00:00Z");
    let time: jiff::Timestamp = rev.time.parse().expect("the time is RFC 3339");
    assert_eq!(time.as_second(), FIRST_COMMIT_TIME as i64);
    assert!(
        f.server
            .request_log()
            .iter()
            .any(|r| r.status == 200 && r.user.as_deref() == Some(USER)),
        "the server saw an authenticated request: {:?}",
        f.server.request_log()
    );
}

#[test]
fn a_wrong_password_fails_naming_the_url_and_never_the_password() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    f.repo.commit("first");
    let wrong = "not-the-pw-0d5b2a";
    let in_auth = f.source_with(GitAuth::Basic {
        username: USER.into(),
        password: wrong.into(),
    });
    let in_url = GitSource::new(
        f.server
            .url_with_credentials("app.git")
            .replace(PASSWORD, wrong),
    );

    for src in [in_auth, in_url] {
        f.server.reset_stats();
        let err = f.cache.fetch(&src).unwrap_err();

        let msg = format!("{err} / {err:?}");
        assert!(
            matches!(&err, GitError::Fetch { url, .. } if *url == f.server.url("app.git")),
            "{msg}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("fetching {}", f.server.url("app.git"))),
            "{msg}"
        );
        assert!(!msg.contains(wrong), "the password leaked: {msg}");
        let log = f.server.request_log();
        assert!(
            !log.is_empty() && log.iter().all(|r| r.status == 401),
            "the server turned every request away: {log:?}"
        );
    }
}

#[test]
fn missing_credentials_fail_naming_the_url() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    f.repo.commit("first");

    let err = f.cache.fetch(&f.source_with(GitAuth::None)).unwrap_err();

    let msg = err.to_string();
    assert!(matches!(err, GitError::Fetch { .. }), "{err:?}");
    assert!(
        msg.starts_with(&format!("fetching {}", f.server.url("app.git"))),
        "{msg}"
    );
    assert!(!msg.contains(PASSWORD), "{msg}");
    assert!(
        f.server.request_log().iter().any(|r| r.status == 401),
        "{:?}",
        f.server.request_log()
    );
    assert!(
        f.cache.resolve(&f.source(), "main").is_err(),
        "nothing was fetched, so nothing resolves"
    );
}

#[test]
fn a_fetch_after_one_new_commit_receives_fewer_objects_and_bytes_than_the_first() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    f.repo.write("deploy/data.txt", noise(60_000));
    for i in 0..5 {
        f.repo
            .write(format!("deploy/extra-{i}.yaml"), format!("n: {i}\n"));
    }
    f.repo.commit("first");

    let first = f.fetch();
    let first_bytes = f.server.bytes_served();
    assert!(first_bytes > 30_000, "the first fetch served {first_bytes}");

    f.repo.write(
        "deploy/configmap.yaml",
        format!("{CONFIGMAP}data:\n  a: b\n"),
    );
    let second_sha = f.repo.commit("second");
    f.server.reset_stats();
    let second = f.fetch();
    let second_bytes = f.server.bytes_served();

    assert!(
        second.objects > 0 && second.objects < first.objects,
        "first {first:?}, second {second:?}"
    );
    assert!(
        second.bytes < first.bytes,
        "first {first:?}, second {second:?}"
    );
    assert!(
        second_bytes < first_bytes / 4,
        "the server sent {second_bytes} bytes the second time, {first_bytes} the first"
    );
    assert_eq!(f.resolve("main"), second_sha);

    f.server.reset_stats();
    let third = f.fetch();
    assert_eq!(third, FetchReport::default(), "nothing new to receive");
    let third_bytes = f.server.bytes_served();
    assert!(
        third_bytes < second_bytes,
        "third fetch served {third_bytes}, second {second_bytes}: {:?}",
        f.server.request_log()
    );
    assert_eq!(f.resolve("main"), second_sha);
}

/// `main`: one ← two ← three; `feature` at two; `light` (lightweight) at one;
/// `release` (annotated) at two.
fn history(f: &Served) -> [String; 3] {
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    let one = f.repo.commit("one");
    f.repo.tag("light");
    f.repo.write("deploy/two.yaml", "two: 2\n");
    let two = f.repo.commit("two");
    f.repo
        .annotated_tag("release", "The release tag's own message");
    f.repo.branch("feature");
    f.repo.write("deploy/three.yaml", "three: 3\n");
    let three = f.repo.commit("three");
    f.fetch();
    [one, two, three]
}

#[test]
fn branches_and_lightweight_and_annotated_tags_resolve_to_their_commits() {
    let f = Served::start();
    let [one, two, three] = history(&f);

    assert_eq!(f.resolve("main"), three);
    assert_eq!(f.resolve("feature"), two);
    assert_eq!(f.resolve("light"), one);
    let release = f.cache.resolve(&f.source(), "release").unwrap();
    assert_eq!(release.id, two, "an annotated tag is peeled to its commit");
    assert_eq!(
        release.message, "two",
        "the commit's message, not the tag's"
    );
    assert_eq!(release.requested, "release");
}

#[test]
fn full_and_abbreviated_shas_resolve_to_their_commits() {
    let f = Served::start();
    let [one, two, _] = history(&f);

    assert_eq!(f.resolve(&one), one);
    assert_eq!(f.resolve(&two[..8]), two);

    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let err = f.resolve_err(unknown);
    assert!(
        matches!(&err, GitError::RevisionNotFound { revision, .. } if revision == unknown),
        "{err:?}"
    );
    assert!(err.to_string().contains(unknown), "{err}");
}

#[test]
fn head_and_ancestry_expressions_resolve_on_the_default_branch() {
    let f = Served::start();
    let [one, two, three] = history(&f);

    assert_eq!(f.resolve("HEAD"), three);
    assert_eq!(f.resolve(""), three);
    assert_eq!(f.resolve("HEAD~1"), two);
    assert_eq!(f.resolve("HEAD~2"), one);
    assert_eq!(f.resolve("main^"), two);
    assert_eq!(f.resolve("feature~1"), one);
    assert_eq!(f.resolve("release~1"), one);
    let err = f.resolve_err("HEAD~3");
    assert!(err.to_string().contains("\"HEAD~3\""), "{err}");
}

#[test]
fn an_empty_revision_and_head_follow_a_default_branch_other_than_main() {
    let f = Served::start();
    let [_, _, three] = history(&f);
    f.repo.git(&["checkout", "--quiet", "-b", "trunk"]);
    f.repo.write("trunk.txt", "only on trunk");
    let trunk = f.repo.commit("trunk only");
    assert_ne!(trunk, three);
    let bare = f.repo.bare_path().to_path_buf();
    capstan_testkit::repo::git_in(&bare, ["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    f.fetch();
    assert_eq!(f.resolve(""), trunk, "the remote's HEAD names trunk");
    assert_eq!(f.resolve("HEAD"), trunk);
    assert_eq!(f.resolve("main"), three);
}

#[test]
fn semver_ranges_choose_the_highest_matching_tag_with_or_without_a_v() {
    let f = Served::start();
    let mut tagged = std::collections::HashMap::new();
    for tag in [
        "1.0.0",
        "v1.2.0",
        "v1.4.2",
        "1.4.7",
        "v1.5.0",
        "v2.0.0",
        "3.1.0",
        "v3.2.0-rc.1",
        "latest",
    ] {
        f.repo.write("version.txt", tag);
        tagged.insert(tag, f.repo.commit(&format!("release {tag}")));
        f.repo.tag(tag);
    }
    f.fetch();

    assert_eq!(f.resolve(">=1.2.0 <2.0.0"), tagged["v1.5.0"]);
    assert_eq!(f.resolve("~1.4"), tagged["1.4.7"]);
    assert_eq!(
        f.resolve("^1 || ^3"),
        tagged["3.1.0"],
        "the pre-release v3.2.0-rc.1 is not chosen"
    );
    assert_eq!(f.resolve("^2"), tagged["v2.0.0"]);
    let rev = f.cache.resolve(&f.source(), "~1.4").unwrap();
    assert_eq!(rev.requested, "~1.4");
    assert_eq!(rev.message, "release 1.4.7");
}

#[test]
fn a_range_matching_no_tag_fails_listing_the_tags() {
    let f = Served::start();
    f.repo.commit("one");
    f.repo.tag("v1.0.0");
    f.repo.commit("two");
    f.repo.tag("2.0.0");
    f.fetch();

    let err = f.resolve_err(">=3.0.0 <4.0.0");

    let msg = err.to_string();
    assert!(matches!(err, GitError::RevisionNotFound { .. }), "{err:?}");
    assert!(msg.contains("\">=3.0.0 <4.0.0\""), "{msg}");
    assert!(msg.contains(&f.server.url("app.git")), "{msg}");
    assert!(msg.contains("2.0.0, v1.0.0"), "{msg}");
}

#[test]
fn an_unknown_name_fails_listing_the_branches_and_tags() {
    let f = Served::start();
    history(&f);

    let err = f.resolve_err("no-such-branch");

    let msg = err.to_string();
    assert!(matches!(err, GitError::RevisionNotFound { .. }), "{err:?}");
    assert!(msg.contains("\"no-such-branch\""), "{msg}");
    assert!(msg.contains(&f.server.url("app.git")), "{msg}");
    assert!(msg.contains("branches: feature, main"), "{msg}");
    assert!(msg.contains("tags: light, release"), "{msg}");
}

#[test]
fn a_branch_or_tag_deleted_upstream_stops_resolving_after_the_next_fetch() {
    let f = Served::start();
    let [one, two, three] = history(&f);
    assert_eq!(f.resolve("feature"), two);
    assert_eq!(f.resolve("light"), one);

    f.repo.delete_branch("feature");
    f.repo
        .git(&["push", "--quiet", "origin", "--delete", "refs/tags/light"]);
    assert_eq!(
        f.resolve("feature"),
        two,
        "until the next fetch the cache still has it"
    );
    f.fetch();

    let branch = f.resolve_err("feature").to_string();
    assert!(branch.contains("\"feature\""), "{branch}");
    assert!(
        branch.contains("(branches: main; tags: release)"),
        "{branch}"
    );
    let tag = f.resolve_err("light").to_string();
    assert!(tag.contains("\"light\""), "{tag}");
    assert_eq!(f.resolve("main"), three);
}

#[test]
fn checkout_writes_the_tree_as_it_was_at_the_revision() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", "version: 1\n");
    f.repo.write("deploy/old.yaml", "old: true\n");
    f.repo.write("docs/readme.md", "not deployed\n");
    f.repo.commit("one");
    f.repo.write("deploy/configmap.yaml", "version: 2\n");
    f.repo.remove("deploy/old.yaml");
    f.repo.write("deploy/nested/new.yaml", "new: true\n");
    f.repo.commit("two");
    f.fetch();

    let old = f.cache.resolve(&f.source(), "HEAD~1").unwrap();
    let checkout = f
        .cache
        .checkout(&f.source(), &old, Path::new("deploy"))
        .unwrap();
    assert_eq!(checkout.revision, old);
    assert_eq!(checkout.path, Path::new("deploy"));
    let dir = checkout.render_dir();
    assert_eq!(read(&dir, "configmap.yaml"), "version: 1\n");
    assert_eq!(read(&dir, "old.yaml"), "old: true\n");
    assert!(!dir.join("nested").exists());

    let new = f.cache.resolve(&f.source(), "main").unwrap();
    let latest = f
        .cache
        .checkout(&f.source(), &new, Path::new("deploy"))
        .unwrap();
    let dir = latest.render_dir();
    assert_eq!(read(&dir, "configmap.yaml"), "version: 2\n");
    assert_eq!(read(&dir, "nested/new.yaml"), "new: true\n");
    assert!(!dir.join("old.yaml").exists());
    assert_eq!(read(latest.root(), "docs/readme.md"), "not deployed\n");

    let root = checkout.root().to_path_buf();
    drop(checkout);
    assert!(!root.exists(), "a checkout's temporary tree goes with it");
}

#[test]
fn a_committed_symlink_escaping_the_repository_fails_the_checkout_naming_the_link() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    f.repo.symlink("deploy/evil.yaml", "../../../etc/passwd");
    f.repo.write("other/configmap.yaml", CONFIGMAP);
    f.repo.commit("an escaping link");
    f.fetch();
    let rev = f.cache.resolve(&f.source(), "main").unwrap();

    let err = f
        .cache
        .checkout(&f.source(), &rev, Path::new("deploy"))
        .unwrap_err();

    assert!(
        matches!(
            &err,
            CheckoutError::Confine(ConfineError::SymlinkEscapes { link, target })
                if link == "deploy/evil.yaml" && target == "../../../etc/passwd"
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("deploy/evil.yaml"), "{err}");
    let err = f
        .cache
        .checkout(&f.source(), &rev, Path::new("."))
        .unwrap_err();
    assert!(err.to_string().contains("deploy/evil.yaml"), "{err}");
    let other = f
        .cache
        .checkout(&f.source(), &rev, Path::new("other"))
        .unwrap();
    assert_eq!(read(&other.render_dir(), "configmap.yaml"), CONFIGMAP);
}

#[test]
fn an_absolute_symlink_fails_the_checkout_naming_the_link() {
    let f = Served::start();
    f.repo.symlink("deploy/passwd.yaml", "/etc/passwd");
    f.repo.commit("an absolute link");
    f.fetch();
    let rev = f.cache.resolve(&f.source(), "main").unwrap();

    let err = f
        .cache
        .checkout(&f.source(), &rev, Path::new("deploy"))
        .unwrap_err();

    assert!(
        matches!(
            &err,
            CheckoutError::Confine(ConfineError::SymlinkEscapes { link, .. })
                if link == "deploy/passwd.yaml"
        ),
        "{err:?}"
    );
}

#[test]
fn a_symlink_that_stays_inside_the_repository_is_checked_out() {
    let f = Served::start();
    f.repo.write("shared/common.yaml", "common: true\n");
    f.repo.write("deploy/base/configmap.yaml", CONFIGMAP);
    f.repo.symlink("deploy/alias.yaml", "base/configmap.yaml");
    f.repo
        .symlink("deploy/common.yaml", "../shared/common.yaml");
    f.repo.commit("links inside");
    f.fetch();
    let rev = f.cache.resolve(&f.source(), "main").unwrap();

    let checkout = f
        .cache
        .checkout(&f.source(), &rev, Path::new("deploy"))
        .unwrap();

    let dir = checkout.render_dir();
    assert!(dir.join("alias.yaml").is_symlink());
    assert_eq!(read(&dir, "alias.yaml"), CONFIGMAP);
    assert_eq!(read(&dir, "common.yaml"), "common: true\n");
}

#[test]
fn a_path_climbing_out_of_the_repository_is_refused() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    f.repo.commit("one");
    f.fetch();
    let rev = f.cache.resolve(&f.source(), "main").unwrap();

    for path in ["../outside", "deploy/../../outside", "/etc"] {
        let err = f
            .cache
            .checkout(&f.source(), &rev, Path::new(path))
            .unwrap_err();
        assert!(
            matches!(&err, CheckoutError::Confine(ConfineError::Escapes { path: p }) if p == path),
            "{path}: {err:?}"
        );
        assert!(err.to_string().contains(path), "{err}");
    }
    let err = f
        .cache
        .checkout(&f.source(), &rev, Path::new("missing"))
        .unwrap_err();
    assert!(
        matches!(&err, CheckoutError::Confine(ConfineError::NotFound { path }) if path == "missing"),
        "{err:?}"
    );
    f.cache
        .checkout(&f.source(), &rev, Path::new("deploy/../deploy"))
        .expect("`..` that stays inside is fine");
}

#[test]
fn file_urls_fetch_resolve_and_check_out_without_a_server() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "org/app.git");
    repo.write("deploy/configmap.yaml", CONFIGMAP);
    let sha = repo.commit("over file://");
    repo.tag("v1.0.0");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path());
    let src = GitSource::new(repo.file_url());

    let first = cache.fetch(&src).unwrap();
    let rev = cache.resolve(&src, "^1").unwrap();
    let checkout = cache.checkout(&src, &rev, Path::new("deploy")).unwrap();

    assert!(first.objects > 0, "{first:?}");
    assert_eq!(rev.id, sha);
    assert_eq!(rev.message, "over file://");
    assert_eq!(read(&checkout.render_dir(), "configmap.yaml"), CONFIGMAP);
    assert_eq!(cache.fetch(&src).unwrap().objects, 0);

    let missing = GitSource::new(format!("file://{}/missing.git", root.path().display()));
    let err = cache.fetch(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.git"), "{err}");
}

#[test]
fn two_caches_over_one_directory_share_the_repository_of_a_url() {
    let f = Served::start();
    f.repo.write("deploy/configmap.yaml", CONFIGMAP);
    f.repo.write("deploy/data.txt", noise(40_000));
    let sha = f.repo.commit("one");
    let first = f.fetch();
    let first_bytes = f.server.bytes_served();
    assert!(first.objects > 0);

    let again = GitCache::new(f.cache_dir.path().join("git"));
    assert_eq!(again.repo_dir(&f.source()), f.cache.repo_dir(&f.source()));
    assert_eq!(
        again.resolve(&f.source(), "main").unwrap().id,
        sha,
        "resolves from the shared repository before any fetch of its own"
    );
    f.server.reset_stats();
    let second = again.fetch(&f.source()).unwrap();

    assert_eq!(second.objects, 0, "{second:?}");
    assert!(f.server.bytes_served() < first_bytes / 4);
    assert_ne!(
        again.repo_dir(&GitSource::new(f.server.url("other.git"))),
        again.repo_dir(&f.source()),
        "another URL has a repository of its own"
    );
    assert_eq!(
        again.repo_dir(&GitSource::new(f.server.url_with_credentials("app.git"))),
        again.repo_dir(&f.source()),
        "credentials in the URL are not part of the key"
    );
}

#[test]
fn changed_paths_are_what_git_diff_name_only_lists() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "diff.git");
    repo.write("apps/web/deploy.yaml", CONFIGMAP);
    repo.write("apps/web/values.yaml", "a: 1\n");
    repo.write("apps/db/cm.yaml", CONFIGMAP);
    repo.write("base/common.yaml", CONFIGMAP);
    repo.write("old/gone.yaml", CONFIGMAP);
    repo.write("README.md", "x\n");
    let first = repo.commit("first");
    repo.write("apps/web/values.yaml", "a: 2\n");
    repo.remove("old");
    repo.write("apps/new/cm.yaml", CONFIGMAP);
    repo.remove("base");
    repo.write("base", "now a file\n");
    let second = repo.commit("second");

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path());
    let src = GitSource::new(repo.file_url());
    cache.fetch(&src).unwrap();
    let (a, b) = (
        cache.resolve(&src, &first).unwrap(),
        cache.resolve(&src, &second).unwrap(),
    );
    let changed = cache.changed_paths(&src, &a, &b).unwrap();
    let git = repo.git(&["diff", "--no-renames", "--name-only", &first, &second]);
    let mut expected: Vec<&str> = git.lines().collect();
    expected.sort();
    assert_eq!(changed, expected);
    assert_eq!(
        changed,
        [
            "apps/new/cm.yaml",
            "apps/web/values.yaml",
            "base",
            "base/common.yaml",
            "old/gone.yaml"
        ]
    );
    assert!(cache.changed_paths(&src, &b, &b).unwrap().is_empty());
}
