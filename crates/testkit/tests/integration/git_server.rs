//! The git server on loopback, driven by the real git CLI.

use std::path::Path;
use std::process::Output;

use capstan_testkit::git::{BasicAuth, GitServer};
use capstan_testkit::process::{self, DEFAULT_TIMEOUT};
use capstan_testkit::repo::{TestRepo, git_command};

fn git(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = git_command();
    cmd.current_dir(dir).args(args);
    process::run(cmd, None, DEFAULT_TIMEOUT)
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    process::assert_success(&out, &format!("git {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic text that does not compress, so a clone carries real weight.
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

fn setup(auth: Option<BasicAuth>) -> (tempfile::TempDir, TestRepo, GitServer) {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "app.git");
    repo.write("deploy/configmap.yaml", "apiVersion: v1\nkind: ConfigMap\n");
    repo.write("data.txt", noise(50_000));
    repo.commit("first");
    let server = GitServer::start(root.path(), auth).unwrap();
    (root, repo, server)
}

#[test]
fn clone_with_credentials_and_protocol_v2() {
    let (_root, repo, server) = setup(Some(BasicAuth::new("alice", "s3cret/+")));
    let dest = tempfile::tempdir().unwrap();
    let url = server.url_with_credentials("app.git");
    assert!(
        url.starts_with("http://alice:s3cret%2F%2B@127.0.0.1:"),
        "{url}"
    );
    git_ok(
        dest.path(),
        &[
            "-c",
            "protocol.version=2",
            "clone",
            "--quiet",
            &url,
            "clone",
        ],
    );
    let head = git_ok(&dest.path().join("clone"), &["rev-parse", "HEAD"]);
    assert_eq!(head.trim(), repo.head());
    assert_eq!(
        std::fs::read_to_string(dest.path().join("clone/deploy/configmap.yaml")).unwrap(),
        "apiVersion: v1\nkind: ConfigMap\n"
    );

    let log = server.request_log();
    assert_eq!(server.requests(), log.len() as u64);
    // curl asks without credentials first, then with them.
    assert!(log.iter().any(|r| r.status == 401), "{log:#?}");
    let ok: Vec<_> = log.iter().filter(|r| r.status == 200).collect();
    assert!(
        ok.iter()
            .any(|r| r.method == "POST" && r.path == "/app.git/git-upload-pack"),
        "{log:#?}"
    );
    assert!(
        ok.iter().all(|r| r.user.as_deref() == Some("alice")
            && r.git_protocol.as_deref() == Some("version=2")),
        "{log:#?}"
    );
    // Protocol v2 needs more than one POST (ls-refs, then fetch).
    assert!(
        ok.iter().filter(|r| r.method == "POST").count() >= 2,
        "{log:#?}"
    );
}

#[test]
fn clone_without_or_with_wrong_credentials_gets_401() {
    let (_root, _repo, server) = setup(Some(BasicAuth::new("alice", "s3cret")));
    let dest = tempfile::tempdir().unwrap();

    let out = git(
        dest.path(),
        &["clone", "--quiet", &server.url("app.git"), "a"],
    );
    assert!(!out.status.success());
    assert!(!dest.path().join("a").exists());
    let log = server.request_log();
    assert!(!log.is_empty());
    assert!(log.iter().all(|r| r.status == 401), "{log:#?}");

    let wrong = server
        .url_with_credentials("app.git")
        .replace("s3cret", "wrong");
    let out = git(dest.path(), &["clone", "--quiet", &wrong, "b"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    assert!(server.request_log().iter().all(|r| r.status == 401));

    // Raw HTTP: the challenge names the realm.
    let resp = raw_request(
        &server,
        "GET /app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 401 "), "{resp}");
    assert!(
        resp.contains("WWW-Authenticate: Basic realm=\"capstan-test\""),
        "{resp}"
    );
}

#[test]
fn incremental_fetch_serves_fewer_bytes_than_clone() {
    for version in ["0", "2"] {
        let (_root, repo, server) = setup(None);
        let dest = tempfile::tempdir().unwrap();
        let clone = dest.path().join("clone");
        git_ok(
            dest.path(),
            &[
                "-c",
                &format!("protocol.version={version}"),
                "clone",
                "--quiet",
                &server.url("app.git"),
                "clone",
            ],
        );
        let clone_bytes = server.bytes_served();
        assert!(clone_bytes > 20_000, "clone served {clone_bytes} bytes");

        repo.write(
            "deploy/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\n# 2\n",
        );
        let second = repo.commit("second");
        server.reset_stats();
        git_ok(
            &clone,
            &[
                "-c",
                &format!("protocol.version={version}"),
                "fetch",
                "--quiet",
                "origin",
            ],
        );
        let fetch_bytes = server.bytes_served();
        assert!(
            fetch_bytes > 0 && fetch_bytes < clone_bytes,
            "protocol v{version}: fetch {fetch_bytes} bytes, clone {clone_bytes}"
        );
        let fetched = git_ok(&clone, &["rev-parse", "origin/main"]);
        assert_eq!(fetched.trim(), second);
    }
}

#[test]
fn push_over_http_and_gzip_and_chunked_requests() {
    let (_root, repo, server) = setup(Some(BasicAuth::new("bob", "pw")));
    let dest = tempfile::tempdir().unwrap();
    let url = server.url_with_credentials("app.git");
    git_ok(dest.path(), &["clone", "--quiet", &url, "clone"]);
    let clone = dest.path().join("clone");
    std::fs::write(clone.join("new.txt"), "y".repeat(100_000)).unwrap();
    git_ok(&clone, &["add", "new.txt"]);
    git_ok(&clone, &["commit", "--quiet", "-m", "from http"]);
    // A tiny post buffer makes git send the pack with Transfer-Encoding: chunked.
    git_ok(
        &clone,
        &[
            "-c",
            "http.postBuffer=1024",
            "push",
            "--quiet",
            "origin",
            "main",
        ],
    );
    let pushed = git_ok(&clone, &["rev-parse", "HEAD"]);
    let out = git(repo.bare_path(), &["rev-parse", "main"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pushed.trim());
    let log = server.request_log();
    assert!(
        log.iter()
            .any(|r| r.path == "/app.git/git-receive-pack" && r.status == 200 && r.chunked_request),
        "{log:#?}"
    );

    // Many refs make the v0 fetch negotiation request large enough to be gzipped.
    for i in 0..300 {
        repo.git(&["tag", &format!("t{i}")]);
    }
    repo.git(&["push", "--quiet", "origin", "--tags"]);
    let other = tempfile::tempdir().unwrap();
    git_ok(
        other.path(),
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "--quiet",
            "--mirror",
            &url,
            "m",
        ],
    );
    git_ok(
        &clone,
        &[
            "-c",
            "protocol.version=0",
            "fetch",
            "--quiet",
            "--tags",
            "origin",
        ],
    );
}

#[test]
fn missing_repository_is_404_and_server_stops_on_drop() {
    let (_root, _repo, server) = setup(None);
    let resp = raw_request(
        &server,
        "GET /nope.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
    let resp = raw_request(
        &server,
        "GET /../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");

    // An idle keep-alive connection must not keep the server from stopping.
    let idle = std::net::TcpStream::connect(server.addr()).unwrap();
    let addr = server.addr();
    let start = std::time::Instant::now();
    drop(server);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    drop(idle);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

fn raw_request(server: &GitServer, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
