//! The OCI registry on loopback (Debian's docker-registry, distribution 2.8), checked
//! with a real client: skopeo.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use capstan_testkit::process::{self, DEFAULT_TIMEOUT};
use capstan_testkit::registry::{
    self, OCI_MANIFEST, RegistryAuth, RegistryOptions, RegistryServer, TOKEN_ISSUER, TOKEN_SERVICE,
    sha256_digest,
};

/// Runs skopeo with an empty auth file of its own, so nothing the user logged in to
/// elsewhere is used.
struct Skopeo {
    dir: tempfile::TempDir,
}

impl Skopeo {
    fn new() -> Skopeo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.json"), r#"{"auths":{}}"#).unwrap();
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        Skopeo { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `skopeo --policy … <command> --authfile … --tls-verify=false [--creds …] args…`
    fn run(&self, command: &str, creds: Option<(&str, &str)>, args: &[&str]) -> Output {
        let mut cmd = Command::new(registry::skopeo());
        cmd.arg("--policy")
            .arg(self.path("policy.json"))
            .arg(command);
        if command == "copy" {
            cmd.args(["--src-tls-verify=false", "--src-authfile"]);
            cmd.arg(self.path("auth.json"));
            if let Some((u, p)) = creds {
                cmd.arg(format!("--src-creds={u}:{p}"));
            }
        } else {
            cmd.args(["--tls-verify=false", "--authfile"]);
            cmd.arg(self.path("auth.json"));
            if let Some((u, p)) = creds {
                cmd.arg(format!("--creds={u}:{p}"));
            }
        }
        cmd.args(args);
        process::run(cmd, None, DEFAULT_TIMEOUT)
    }

    fn ok(&self, command: &str, creds: Option<(&str, &str)>, args: &[&str]) -> Vec<u8> {
        let out = self.run(command, creds, args);
        process::assert_success(&out, &format!("skopeo {command} {}", args.join(" ")));
        out.stdout
    }

    fn list_tags(&self, creds: Option<(&str, &str)>, image: &str) -> Vec<String> {
        let out = self.ok("list-tags", creds, &[&format!("docker://{image}")]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let mut tags: Vec<String> = v["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        tags
    }

    fn digest(&self, creds: Option<(&str, &str)>, image: &str) -> String {
        let out = self.ok(
            "inspect",
            creds,
            &["--format", "{{.Digest}}", &format!("docker://{image}")],
        );
        String::from_utf8(out).unwrap().trim().to_string()
    }

    fn raw_manifest(&self, creds: Option<(&str, &str)>, image: &str) -> Vec<u8> {
        self.ok("inspect", creds, &["--raw", &format!("docker://{image}")])
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_lowercase()
}

fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn jwt_part(token: &str, i: usize) -> serde_json::Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn anonymous_pushes_are_listed_and_inspected_by_skopeo_with_the_digests_push_returned() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    let skopeo = Skopeo::new();
    let digests = registry.push_tags("team/app", &["v1.0.0", "v1.1.0"]);
    assert_ne!(digests[0], digests[1], "each tag has its own digest");
    assert!(
        digests
            .iter()
            .all(|d| d.starts_with("sha256:") && d.len() == 71)
    );
    assert_eq!(
        registry.tag_existing("team/app", "v1.1.0", "latest"),
        digests[1]
    );
    let image = registry.image("team/app");
    assert_eq!(image, format!("127.0.0.1:{}/team/app", registry.port()));

    assert_eq!(
        skopeo.list_tags(None, &image),
        ["latest", "v1.0.0", "v1.1.0"]
    );
    assert_eq!(registry.tags("team/app"), ["latest", "v1.0.0", "v1.1.0"]);
    let raw = skopeo.raw_manifest(None, &format!("{image}:v1.0.0"));
    assert_eq!(sha256_digest(&raw), digests[0]);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(skopeo.digest(None, &format!("{image}:v1.1.0")), digests[1]);
    assert_eq!(skopeo.digest(None, &format!("{image}:latest")), digests[1]);
    assert_eq!(
        registry.manifest_digest("team/app", "v1.0.0").as_deref(),
        Some(digests[0].as_str())
    );
    assert_eq!(registry.manifest_digest("team/app", "nope"), None);

    // The whole image is valid: skopeo checks every blob's digest as it copies.
    let dest = skopeo.path("copied");
    skopeo.ok(
        "copy",
        None,
        &[&format!("docker://{image}:v1.0.0"), &format!("dir:{dest}")],
    );
    let files = std::fs::read_dir(&dest).unwrap().count();
    assert!(
        files >= 3,
        "manifest, config and layer in {dest}: {files} files"
    );
}

#[test]
fn basic_auth_turns_skopeo_away_without_credentials_and_lets_it_in_with_them() {
    let registry = RegistryServer::start(RegistryAuth::basic("alice", "s3cret"));
    let skopeo = Skopeo::new();
    let digest = registry.push_image("app", "v1");
    let image = registry.image("app");

    let refused = skopeo.run("list-tags", None, &[&format!("docker://{image}")]);
    assert!(!refused.status.success(), "no credentials were let in");
    assert!(
        stderr(&refused).contains("unauthorized") || stderr(&refused).contains("401"),
        "{}",
        stderr(&refused)
    );
    let wrong = skopeo.run(
        "list-tags",
        Some(("alice", "wrong")),
        &[&format!("docker://{image}")],
    );
    assert!(!wrong.status.success(), "a wrong password was let in");

    let creds = registry.credentials();
    assert_eq!(creds, Some(("alice", "s3cret")));
    assert_eq!(skopeo.list_tags(creds, &image), ["v1"]);
    assert_eq!(skopeo.digest(creds, &format!("{image}:v1")), digest);

    let resp = http()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"capstan-test\""
    );
    assert!(
        registry.config().contains("htpasswd:"),
        "{}",
        registry.config()
    );
}

#[test]
fn token_auth_sends_skopeo_to_the_token_server_for_the_repository_scope() {
    let registry = RegistryServer::start(RegistryAuth::token("bob", "t0ken-pass"));
    let skopeo = Skopeo::new();
    let token_url = registry.token_url().unwrap();

    let resp = http()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"].to_str().unwrap(),
        format!("Bearer realm=\"{token_url}\",service=\"{TOKEN_SERVICE}\"")
    );

    let digest = registry.push_image("team/app", "v2");
    let pushed = registry.token_requests();
    assert!(
        pushed
            .iter()
            .any(|r| r.status == 200 && r.user.as_deref() == Some("bob")),
        "the push went through the token server: {pushed:?}"
    );

    let image = registry.image("team/app");
    let refused = skopeo.run("list-tags", None, &[&format!("docker://{image}")]);
    assert!(!refused.status.success(), "no credentials were let in");
    let wrong = skopeo.run(
        "list-tags",
        Some(("bob", "wrong")),
        &[&format!("docker://{image}")],
    );
    assert!(!wrong.status.success(), "a wrong password was let in");
    let after_refusals = registry.token_requests();
    assert!(
        after_refusals[pushed.len()..]
            .iter()
            .any(|r| r.status == 401 && r.user.is_none()),
        "skopeo asked the token server and was refused: {after_refusals:?}"
    );

    let creds = registry.credentials();
    assert_eq!(skopeo.list_tags(creds, &image), ["v2"]);
    assert_eq!(skopeo.digest(creds, &format!("{image}:v2")), digest);
    let requests = registry.token_requests();
    let granted = requests[after_refusals.len()..]
        .iter()
        .find(|r| r.status == 200)
        .unwrap_or_else(|| panic!("skopeo got no token: {requests:?}"));
    assert_eq!(granted.path, "/token");
    assert_eq!(granted.user.as_deref(), Some("bob"));
    assert_eq!(granted.service.as_deref(), Some(TOKEN_SERVICE));
    assert!(
        granted
            .scopes
            .contains(&"repository:team/app:pull".to_string()),
        "{granted:?}"
    );
}

#[test]
fn the_token_server_refuses_wrong_credentials_and_signs_tokens_the_registry_honours_per_repository()
{
    let registry = RegistryServer::start(RegistryAuth::token("bob", "t0ken-pass"));
    let digest = registry.push_image("app", "v1");
    registry.push_image("other", "v1");
    let client = http();
    let token_url = format!(
        "{}?service={TOKEN_SERVICE}&scope=repository%3Aapp%3Apull",
        registry.token_url().unwrap()
    );

    let wrong = client
        .get(&token_url)
        .basic_auth("bob", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let anonymous = client.get(&token_url).send().unwrap();
    assert_eq!(anonymous.status(), 401);

    let resp = client
        .get(&token_url)
        .basic_auth("bob", Some("t0ken-pass"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], token);
    assert_eq!(body["expires_in"], 300);

    let header = jwt_part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    let cert = STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap();
    let bundle = std::fs::read_to_string(registry.dir().join("token-signer.crt")).unwrap();
    let bundle_der = STANDARD
        .decode(
            bundle
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    assert_eq!(cert, bundle_der, "x5c is the registry's rootcertbundle");
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["iss"], TOKEN_ISSUER);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert!(
        claims["nbf"].is_u64() && claims["jti"].is_string(),
        "{claims}"
    );
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "app", "actions": ["pull"]}])
    );

    // The registry takes the token for the repository it names, and no other.
    let head = |repo: &str| {
        client
            .head(format!("{}/v2/{repo}/manifests/v1", registry.url()))
            .header("Accept", OCI_MANIFEST)
            .bearer_auth(&token)
            .send()
            .unwrap()
    };
    let ok = head("app");
    assert_eq!(ok.status(), 200, "{}", registry.log());
    assert_eq!(ok.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(head("other").status(), 401);
}

#[test]
fn tags_list_of_distribution_2_8_ignores_n_and_sends_all_105_tags_without_a_link_header() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    let tags: Vec<String> = (0..105).map(|i| format!("1.0.{i}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let digests = registry.push_tags("many", &tag_refs);
    assert_eq!(digests.len(), 105);

    let page = registry.api_get("/v2/many/tags/list?n=10");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.header("link"), None, "{:?}", page.headers);
    let listed = page.json()["tags"].as_array().unwrap().len();
    assert_eq!(listed, 105, "every tag in one response");
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(registry.tags("many"), sorted);
}

#[test]
fn the_catalog_is_paginated_with_n_and_a_link_header_to_the_next_page() {
    let registry = RegistryServer::start(RegistryAuth::basic("alice", "s3cret"));
    let repos: Vec<String> = (0..12).map(|i| format!("repo-{i:02}")).collect();
    for repo in &repos {
        registry.push_image(repo, "v1");
    }

    let first = registry.api_get("/v2/_catalog?n=5");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("link"),
        Some("</v2/_catalog?last=repo-04&n=5>; rel=\"next\""),
        "{:?}",
        first.headers
    );

    let mut seen = Vec::new();
    let mut next = Some("/v2/_catalog?n=5".to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages <= 10, "the catalog never ends");
        let page = registry.api_get(&path);
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        for r in page.json()["repositories"].as_array().unwrap() {
            seen.push(r.as_str().unwrap().to_string());
        }
        next = page.header("link").map(|link| {
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            link.split(['<', '>']).nth(1).unwrap().to_string()
        });
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, repos);
}

#[test]
fn stop_makes_the_registry_unreachable_and_restart_brings_back_the_same_images() {
    let mut registry = RegistryServer::start(RegistryAuth::token("bob", "pw"));
    let digest = registry.push_image("app", "v1");
    let port = registry.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(registry.is_running());

    registry.stop();
    assert!(!registry.is_running());
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "127.0.0.1:{port} still accepts connections"
    );
    assert!(
        http()
            .get(format!("{}/v2/", registry.url()))
            .send()
            .is_err(),
        "/v2/ still answers"
    );

    registry.restart();
    assert_eq!(registry.port(), port);
    assert_eq!(
        registry.manifest_digest("app", "v1").as_deref(),
        Some(digest.as_str())
    );
    assert!(registry.log().matches("listening on").count() >= 2);
}

#[test]
fn deleting_a_tag_keeps_its_manifest_and_deleting_the_manifest_drops_every_tag_of_it() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    let digest = registry.push_image("app", "v1");
    assert_eq!(registry.tag_existing("app", "v1", "stable"), digest);
    assert_eq!(registry.tags("app"), ["stable", "v1"]);

    registry.delete_tag("app", "stable");
    assert_eq!(registry.tags("app"), ["v1"]);
    assert_eq!(
        registry.manifest_digest("app", &digest).as_deref(),
        Some(digest.as_str())
    );

    assert_eq!(registry.tag_existing("app", "v1", "again"), digest);
    registry.delete_manifest("app", &digest);
    assert_eq!(registry.manifest_digest("app", &digest), None);
    assert_eq!(registry.manifest_digest("app", "v1"), None);
    assert_eq!(registry.tags("app"), Vec::<String>::new());
}

#[test]
#[should_panic(expected = "install the Debian package docker-registry (scripts/test does)")]
fn a_missing_registry_binary_is_a_panic_naming_the_package_to_install() {
    let missing = Path::new("/nonexistent/docker-registry");
    RegistryServer::start_with(RegistryOptions::new(RegistryAuth::Anonymous).binary(missing));
}

#[test]
fn the_helpers_work_from_inside_an_async_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let registry = RegistryServer::start(RegistryAuth::token("bob", "pw"));
        let digest = registry.push_image("app", "v1");
        assert_eq!(
            registry.manifest_digest("app", "v1").as_deref(),
            Some(digest.as_str())
        );
        drop(registry);
    });
}

#[test]
fn the_paging_front_answers_sorted_pages_honouring_n_and_last_with_a_link_to_the_next() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    registry.push_tags("team/app", &["e", "c", "a", "d", "b"]);
    let front = registry.paging_front(2);
    let get = |path: &str| http().get(format!("{}{path}", front.url())).send().unwrap();
    let tags = |resp: reqwest::blocking::Response| -> (Option<String>, Vec<String>) {
        assert_eq!(resp.status(), 200);
        let link = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
        assert_eq!(body["name"], "team/app");
        let tags = body["tags"].as_array().unwrap();
        (
            link,
            tags.iter().map(|t| t.as_str().unwrap().into()).collect(),
        )
    };

    let (link, page) = tags(get("/v2/team/app/tags/list"));
    assert_eq!(page, ["a", "b"]);
    assert_eq!(
        link.as_deref(),
        Some("</v2/team/app/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let (link, page) = tags(get("/v2/team/app/tags/list?n=2&last=b"));
    assert_eq!((link.is_some(), page), (true, vec!["c".into(), "d".into()]));
    let (link, page) = tags(get("/v2/team/app/tags/list?n=2&last=d"));
    assert_eq!((link, page), (None, vec!["e".to_string()]));
    // `n` below the page size is honoured, above it capped.
    assert_eq!(tags(get("/v2/team/app/tags/list?n=1")).1, ["a"]);
    assert_eq!(
        tags(get("/v2/team/app/tags/list?n=50&last=a")).1,
        ["b", "c"]
    );

    // Everything else goes through unchanged.
    let missing = get("/v2/team/nothing/tags/list");
    assert_eq!(missing.status(), 404);
    let manifest = http()
        .get(format!("{}/v2/team/app/manifests/c", front.url()))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.headers()["docker-content-digest"]
            .to_str()
            .unwrap(),
        registry.manifest_digest("team/app", "c").unwrap()
    );
    assert_eq!(front.pages_served("team/app"), 5);
    let last = front.requests().pop().unwrap();
    assert_eq!(
        (
            last.method.as_str(),
            last.target.as_str(),
            last.status,
            last.page
        ),
        ("GET", "/v2/team/app/manifests/c", 200, None)
    );
}

#[test]
fn skopeo_reads_every_page_through_the_paging_front_with_basic_auth() {
    let registry = RegistryServer::start(RegistryAuth::basic("alice", "s3cret"));
    let tags: Vec<String> = (0..25).map(|i| format!("1.0.{i}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let digests = registry.push_tags("app", &refs);
    let front = registry.paging_front(10);
    let skopeo = Skopeo::new();

    // The registry's challenge reaches the client unchanged.
    let resp = http()
        .get(format!("{}/v2/app/tags/list", front.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"capstan-test\""
    );

    let creds = registry.credentials();
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(skopeo.list_tags(creds, &front.image("app")), sorted);
    assert_eq!(front.pages_served("app"), 3, "{:#?}", front.requests());
    assert_eq!(
        skopeo.digest(creds, &format!("{}:1.0.7", front.image("app"))),
        digests[7]
    );
}
