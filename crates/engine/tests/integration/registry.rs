//! The registry client against a real registry: Debian's `docker-registry` on loopback
//! (anonymous, basic and bearer-token auth), the testkit's paging front over it for
//! Docker Hub-style pages, and a small HTTP receiver started by the test for answers
//! no real registry gives (a tag list that is not JSON, pages that loop, a manifest
//! without a digest header).

use std::error::Error as _;
use std::time::Duration;

use capstan_engine::images::registry::{Credentials, RegistryClient, RegistryError, ScanOptions};
use capstan_testkit::registry::{RegistryAuth, RegistryServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "image-bot";
const PASSWORD: &str = "pw-5e1f0c77-never-shown";

/// A client for loopback registries (plain HTTP).
fn client() -> RegistryClient {
    RegistryClient::new(ScanOptions {
        insecure: true,
        timeout: Duration::from_secs(20),
        ..ScanOptions::default()
    })
    .expect("a registry client")
}

fn creds(password: &str) -> Credentials {
    Credentials::new(USER, password)
}

/// The error and every cause under it, `{}` and `{:?}`, as one text.
fn whole(e: &RegistryError) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" | {s}"));
        source = s.source();
    }
    text
}

fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

#[tokio::test]
async fn anonymous_tags_and_digests_are_what_was_pushed() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    let pushed = registry.push_tags("team/app", &["v1.0.0", "v1.1.0", "v2.0.0"]);
    let alias = registry.tag_existing("team/app", "v1.1.0", "stable");
    let c = client();
    let image = registry.image("team/app");

    let tags = c.tags(&image, None).await.unwrap();
    assert_eq!(sorted(tags), ["stable", "v1.0.0", "v1.1.0", "v2.0.0"]);
    for (tag, digest) in ["v1.0.0", "v1.1.0", "v2.0.0"].iter().zip(&pushed) {
        assert_eq!(&c.digest(&image, tag, None).await.unwrap(), digest, "{tag}");
    }
    assert_eq!(c.digest(&image, "stable", None).await.unwrap(), alias);
    assert_eq!(alias, pushed[1]);
}

#[tokio::test]
async fn a_missing_repository_or_tag_is_named() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    registry.push_image("team/app", "v1");
    let c = client();
    let missing = registry.image("team/nothing-here");
    let e = c.tags(&missing, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::RepositoryNotFound { .. }), "{e}");
    assert!(e.to_string().contains(&missing), "{e}");

    let image = registry.image("team/app");
    let e = c.digest(&image, "v9", None).await.unwrap_err();
    assert!(matches!(e, RegistryError::TagNotFound { .. }), "{e}");
    assert!(e.to_string().contains(&format!("{image}:v9")), "{e}");
    let e = c.digest(&image, "../v1", None).await.unwrap_err();
    assert!(matches!(e, RegistryError::InvalidTag { .. }), "{e}");
}

#[tokio::test]
async fn basic_auth_works_with_credentials_and_says_so_without() {
    let registry = RegistryServer::start(RegistryAuth::basic(USER, PASSWORD));
    let digest = registry.push_image("team/app", "v1");
    let c = client();
    let image = registry.image("team/app");

    let tags = c.tags(&image, Some(&creds(PASSWORD))).await.unwrap();
    assert_eq!(tags, ["v1"]);
    assert_eq!(
        c.digest(&image, "v1", Some(&creds(PASSWORD)))
            .await
            .unwrap(),
        digest
    );

    let e = c.tags(&image, None).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::AuthenticationRequired { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains(&image) && e.to_string().contains("none were given"),
        "{e}"
    );
    let e = c.digest(&image, "v1", None).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::AuthenticationRequired { .. }),
        "{e}"
    );
}

#[tokio::test]
async fn a_refused_password_never_appears_in_the_error() {
    let wrong = "wrong-9d2b7a41-secret";
    for auth in [
        RegistryAuth::basic(USER, PASSWORD),
        RegistryAuth::token(USER, PASSWORD),
    ] {
        let registry = RegistryServer::start(auth.clone());
        registry.push_image("team/app", "v1");
        let c = client();
        let image = registry.image("team/app");
        for e in [
            c.tags(&image, Some(&creds(wrong))).await.unwrap_err(),
            c.digest(&image, "v1", Some(&creds(wrong)))
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(e, RegistryError::AuthenticationFailed { .. }),
                "{auth:?}: {e}"
            );
            let text = whole(&e);
            assert!(text.contains(&image) && text.contains(USER), "{text}");
            assert!(
                !text.contains(wrong),
                "{auth:?}: the password leaked: {text}"
            );
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }
}

#[tokio::test]
async fn token_auth_asks_the_token_service_for_a_pull_scope() {
    let registry = RegistryServer::start(RegistryAuth::token(USER, PASSWORD));
    let digest = registry.push_image("team/app", "v1");
    let before = registry.token_requests().len();
    let c = client();
    let image = registry.image("team/app");

    assert_eq!(
        c.tags(&image, Some(&creds(PASSWORD))).await.unwrap(),
        ["v1"]
    );
    assert_eq!(
        c.digest(&image, "v1", Some(&creds(PASSWORD)))
            .await
            .unwrap(),
        digest
    );
    let asked = &registry.token_requests()[before..];
    assert_eq!(asked.len(), 2, "one token per call: {asked:?}");
    for request in asked {
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(request.user.as_deref(), Some(USER), "{request:?}");
        assert_eq!(request.scopes, ["repository:team/app:pull"], "{request:?}");
        assert_eq!(
            request.service.as_deref(),
            Some(capstan_testkit::registry::TOKEN_SERVICE)
        );
    }

    let e = c.tags(&image, None).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::AuthenticationRequired { .. }),
        "{e}"
    );
}

#[tokio::test]
async fn two_hundred_fifty_tags_come_back_through_three_pages() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    let tags: Vec<String> = (0..250).map(|i| format!("1.0.{i}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    registry.push_tags("team/paged", &refs);
    let front = registry.paging_front(100);
    let c = client();

    let got = c.tags(&front.image("team/paged"), None).await.unwrap();
    assert_eq!(got.len(), 250);
    assert_eq!(sorted(got.clone()), sorted(tags.clone()));
    assert_eq!(
        front.pages_served("team/paged"),
        3,
        "{:#?}",
        front.requests()
    );
    let pages: Vec<Option<usize>> = front.requests().iter().map(|r| r.page).collect();
    assert_eq!(pages, [Some(100), Some(100), Some(50)]);
    // Without the front, distribution 2.8 sends everything at once.
    assert_eq!(
        c.tags(&registry.image("team/paged"), None)
            .await
            .unwrap()
            .len(),
        250
    );
}

#[tokio::test]
async fn basic_and_token_auth_work_through_the_paging_front() {
    for auth in [
        RegistryAuth::basic(USER, PASSWORD),
        RegistryAuth::token(USER, PASSWORD),
    ] {
        let registry = RegistryServer::start(auth.clone());
        let digests = registry.push_tags("team/app", &["a", "b", "c", "d", "e"]);
        let front = registry.paging_front(2);
        let c = client();
        let image = front.image("team/app");

        let tags = c.tags(&image, Some(&creds(PASSWORD))).await.unwrap();
        assert_eq!(tags, ["a", "b", "c", "d", "e"], "{auth:?}");
        assert_eq!(front.pages_served("team/app"), 3, "{auth:?}");
        let d = c.digest(&image, "c", Some(&creds(PASSWORD))).await.unwrap();
        assert_eq!(d, digests[2], "{auth:?}");
        let e = c.tags(&image, None).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::AuthenticationRequired { .. }),
            "{auth:?}: {e}"
        );
        let schemes: Vec<Option<String>> = front
            .requests()
            .iter()
            .filter(|r| r.page.is_some())
            .map(|r| r.auth_scheme.clone())
            .collect();
        let expected = match auth {
            RegistryAuth::Token { .. } => "Bearer",
            _ => "Basic",
        };
        assert!(
            schemes.iter().all(|s| s.as_deref() == Some(expected)),
            "{auth:?}: {schemes:?}"
        );
    }
}

#[tokio::test]
async fn a_registry_that_is_down_is_unreachable_by_name() {
    let mut registry = RegistryServer::start(RegistryAuth::Anonymous);
    registry.push_image("team/app", "v1");
    registry.stop();
    let c = client();
    let image = registry.image("team/app");
    for e in [
        c.tags(&image, None).await.unwrap_err(),
        c.digest(&image, "v1", None).await.unwrap_err(),
    ] {
        assert!(matches!(e, RegistryError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&registry.host()), "{e}");
        assert!(e.to_string().contains("unreachable"), "{e}");
    }
}

#[tokio::test]
async fn plain_http_to_a_host_that_is_not_loopback_is_refused_before_any_request() {
    let c = RegistryClient::new(ScanOptions {
        insecure: true,
        // Were a request made, it would fail differently (no network here) or hang.
        timeout: Duration::from_millis(1),
        ..ScanOptions::default()
    })
    .unwrap();
    for image in [
        "registry.example.com/team/app",
        "10.1.2.3:5000/app",
        "nginx",
    ] {
        let e = c.tags(image, Some(&creds(PASSWORD))).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::InsecureNotLoopback { .. }),
            "{e}"
        );
        assert!(e.to_string().contains(image), "{e}");
        let e = c.digest(image, "v1", None).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::InsecureNotLoopback { .. }),
            "{e}"
        );
    }
}

#[tokio::test]
async fn credentials_are_not_sent_to_a_plain_http_token_service_elsewhere() {
    let server = Receiver::start().await;
    let c = client();
    let image = server.image("bearer-elsewhere");
    let e = c.tags(&image, Some(&creds(PASSWORD))).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::ClearTextCredentials { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("http://auth.invalid/token"), "{e}");
    assert!(!whole(&e).contains(PASSWORD), "{e}");
}

#[tokio::test]
async fn a_tag_list_that_is_not_json_is_a_clear_error() {
    let server = Receiver::start().await;
    let c = client();
    let image = server.image("html");
    let e = c.tags(&image, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::TagListNotJson { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(&image) && text.contains("not JSON"), "{text}");
    assert!(text.contains("<html>"), "the body's start is shown: {text}");
    assert!(
        !text.contains(&"x".repeat(300)),
        "at most 200 bytes: {text}"
    );

    for (repo, problem) in [
        ("no-tags", "has no \"tags\""),
        ("numbers", "not a list of strings"),
    ] {
        let e = c.tags(&server.image(repo), None).await.unwrap_err();
        assert!(matches!(e, RegistryError::TagListShape { .. }), "{e}");
        assert!(e.to_string().contains(problem), "{e}");
    }
}

#[tokio::test]
async fn pages_that_loop_are_an_error_not_a_hang() {
    let server = Receiver::start().await;
    let c = client();
    let e = c.tags(&server.image("self-link"), None).await.unwrap_err();
    assert!(matches!(e, RegistryError::PaginationLoop { .. }), "{e}");
    assert!(e.to_string().contains("followed before"), "{e}");
    let e = c.tags(&server.image("same-page"), None).await.unwrap_err();
    assert!(matches!(e, RegistryError::PaginationLoop { .. }), "{e}");
    assert!(e.to_string().contains("no new tag"), "{e}");
    let e = c.tags(&server.image("elsewhere"), None).await.unwrap_err();
    assert!(matches!(e, RegistryError::BadNextLink { .. }), "{e}");
}

#[tokio::test]
async fn more_tags_than_the_cap_is_an_error() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    registry.push_tags("team/app", &["a", "b", "c", "d"]);
    let front = registry.paging_front(2);
    let c = RegistryClient::new(ScanOptions {
        insecure: true,
        max_tags: 3,
        ..ScanOptions::default()
    })
    .unwrap();
    let e = c.tags(&front.image("team/app"), None).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::TooManyTags { limit: 3, .. }),
        "{e}"
    );
    assert_eq!(front.pages_served("team/app"), 2);
}

#[tokio::test]
async fn a_manifest_without_a_digest_header_is_hashed() {
    let server = Receiver::start().await;
    let c = client();
    let digest = c
        .digest(&server.image("no-header"), "v1", None)
        .await
        .unwrap();
    let expected = format!("sha256:{}", hex_sha256(Receiver::MANIFEST.as_bytes()));
    assert_eq!(digest, expected);
    let e = c
        .digest(&server.image("bad-digest"), "v1", None)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::BadDigest { .. }), "{e}");
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HTTP receiver on loopback, run by the test on its runtime, answering by the
/// repository in the path: answers a broken registry would give.
struct Receiver {
    addr: std::net::SocketAddr,
}

impl Receiver {
    const MANIFEST: &'static str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;

    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(answer(stream));
            }
        });
        Receiver { addr }
    }

    fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }
}

async fn answer(mut stream: tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("");
    let repo = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    let other = format!(
        "<{}>; rel=\"next\"",
        "http://registry.invalid/v2/elsewhere/tags/list"
    );
    let same = format!("<{target}&again=1>; rel=\"next\"");
    let self_link = format!("<{target}>; rel=\"next\"");
    let html = format!("<html><body>{}</body></html>", "x".repeat(1000));
    let (body, headers): (&str, Vec<String>) = match repo {
        "html" => (&html, vec!["Content-Type: text/html".into()]),
        "no-tags" => (r#"{"name":"no-tags"}"#, vec![]),
        "numbers" => (r#"{"name":"numbers","tags":[1,2]}"#, vec![]),
        "self-link" => (
            r#"{"name":"self-link","tags":["a"]}"#,
            vec![format!("Link: {self_link}")],
        ),
        "same-page" => (
            r#"{"name":"same-page","tags":["a"]}"#,
            vec![format!("Link: {same}")],
        ),
        "elsewhere" => (
            r#"{"name":"elsewhere","tags":["a"]}"#,
            vec![format!("Link: {other}")],
        ),
        "no-header" => (Receiver::MANIFEST, vec![]),
        "bearer-elsewhere" => (
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            vec![
                r#"WWW-Authenticate: Bearer realm="http://auth.invalid/token",service="x""#.into(),
            ],
        ),
        "bad-digest" => (
            Receiver::MANIFEST,
            vec!["Docker-Content-Digest: md5:0123".into()],
        ),
        _ => (r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#, vec![]),
    };
    let status = if repo.is_empty() || body.contains("NAME_UNKNOWN") {
        "404 Not Found"
    } else if body.contains("UNAUTHORIZED") {
        "401 Unauthorized"
    } else {
        "200 OK"
    };
    let mut response = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        response.push_str(&h);
        response.push_str("\r\n");
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    if method != "HEAD" {
        response.push_str(body);
    }
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
