//! Git sources over SSH with a private key file, against a real OpenSSH `sshd` on
//! loopback started and stopped by each test: fetching, resolving branches and tags,
//! checking out a path, fetching again incrementally, and a key the server does not
//! know failing fast with an error that names the repository.

use std::path::Path;
use std::time::{Duration, Instant};

use capstan_engine::source::{GitAuth, GitCache, GitError, GitSource};
use capstan_testkit::TestRepo;
use capstan_testkit::ssh::{self, SshServer};

const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n";

/// A fetch that is refused must not wait for a prompt or a timeout.
const REFUSAL_BOUND: Duration = Duration::from_secs(20);

/// A source pinning the server's host key in a known_hosts file of the test's own.
fn source(server: &SshServer, repo: &TestRepo, key: &Path) -> GitSource {
    let known_hosts = server.dir().join("client_known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", server.known_hosts_line())).unwrap();
    GitSource {
        url: server.url_for(repo.bare_path()),
        auth: GitAuth::SshKey {
            key: key.into(),
            known_hosts: Some(known_hosts),
        },
    }
}

#[test]
fn fetches_resolves_and_checks_out_over_ssh_with_a_key_file() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "app.git");
    repo.write("deploy/cm.yaml", CONFIGMAP);
    let first = repo.commit("first");
    repo.tag("v1.0.0");
    repo.write("deploy/cm.yaml", CONFIGMAP.replace("web", "web-2"));
    let second = repo.commit("second");

    let server = SshServer::start();
    let src = source(&server, &repo, server.client_key());
    assert!(src.url.starts_with("ssh://"), "{}", src.url);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path().join("git"));

    let report = cache
        .fetch(&src)
        .unwrap_or_else(|e| panic!("fetching {}: {e}\nsshd: {}", src.url, server.log()));
    assert!(report.objects > 0, "{report:?}");

    let resolve = |rev: &str| {
        cache
            .resolve(&src, rev)
            .unwrap_or_else(|e| panic!("resolving {rev:?}: {e}"))
            .id
    };
    assert_eq!(resolve("main"), second);
    assert_eq!(resolve("HEAD"), second);
    assert_eq!(resolve("v1.0.0"), first);

    let tagged = cache.resolve(&src, "v1.0.0").unwrap();
    let checkout = cache
        .checkout(&src, &tagged, Path::new("deploy"))
        .unwrap_or_else(|e| panic!("checking out deploy at v1.0.0: {e}"));
    assert_eq!(
        std::fs::read_to_string(checkout.render_dir().join("cm.yaml")).unwrap(),
        CONFIGMAP
    );
    let head = cache.resolve(&src, "main").unwrap();
    let checkout = cache.checkout(&src, &head, Path::new("deploy")).unwrap();
    assert!(
        std::fs::read_to_string(checkout.render_dir().join("cm.yaml"))
            .unwrap()
            .contains("name: web-2\n")
    );

    // A second fetch over the same server brings only what is new.
    repo.write("deploy/extra.yaml", "kind: Extra\n");
    let third = repo.commit("third");
    let again = cache.fetch(&src).unwrap();
    assert!(
        again.objects > 0 && again.objects < 10,
        "an incremental fetch carries only the new commit: {again:?}"
    );
    assert_eq!(resolve("main"), third);
    assert_eq!(resolve("v1.0.0"), first);
}

#[test]
fn a_key_the_server_does_not_know_is_refused_quickly_naming_the_url() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "app.git");
    repo.write("deploy/cm.yaml", CONFIGMAP);
    repo.commit("first");

    let server = SshServer::start();
    let keys = tempfile::tempdir().unwrap();
    let stranger = keys.path().join("stranger_ed25519");
    ssh::generate_key(&stranger);
    let src = source(&server, &repo, &stranger);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path().join("git"));

    let started = Instant::now();
    let err = cache
        .fetch(&src)
        .expect_err("a key missing from authorized_keys must be refused");
    let took = started.elapsed();
    assert!(
        took < REFUSAL_BOUND,
        "a refused key must fail fast (BatchMode), took {took:?}"
    );
    let GitError::Fetch { url, message } = &err else {
        panic!("expected a fetch error, got {err:?}");
    };
    assert_eq!(*url, src.display_url());
    assert!(
        err.to_string().contains(&src.display_url()),
        "the error names the repository: {err}"
    );
    assert!(!message.trim().is_empty(), "the error says why: {err}");
    eprintln!("refused as expected in {took:?}: {err}");
    // Nothing was fetched, so nothing resolves.
    assert!(cache.resolve(&src, "main").is_err());
}
