//! Push webhooks against a controller on the embedded API server: every payload of
//! `../shared/conformance/webhooks/` (real deliveries of GitHub, GitLab, Gitea, Gogs,
//! Bitbucket Cloud and Server, Azure DevOps) accepted with its signature, refused
//! without, and mapped to the Applications it concerns — and only those.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use capstan_server::ServerOptions;
use capstan_server::webhooks::verify::sign;
use serde_json::Value;

use crate::support::Served;

fn conformance() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/webhooks")
}

fn cases() -> Value {
    let path = conformance().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (the conformance data lives beside the project)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// Capstan's route for a case's provider.
fn route(provider: &str) -> &'static str {
    match provider {
        "github" => "/webhooks/github",
        "gitlab" => "/webhooks/gitlab",
        "gitea" => "/webhooks/gitea",
        "gogs" => "/webhooks/gogs",
        "bitbucket-cloud" | "bitbucket-server" => "/webhooks/bitbucket",
        "azure-devops" => "/webhooks/azure-devops",
        other => panic!("no route for provider {other}"),
    }
}

/// The Secret key of a case's provider.
fn key(provider: &str) -> &'static str {
    route(provider).trim_start_matches("/webhooks/")
}

/// HTTP headers (or Secret keys) as name and value.
type Pairs = Vec<(String, String)>;

const OUR_SECRET: &str = "a secret of the test's own";

/// The secret a case is delivered with, and the headers that authenticate it.
fn auth(case: &Value, body: &[u8]) -> (Pairs, Pairs) {
    let provider = case["provider"].as_str().unwrap();
    let given = case["configured_secret"].as_str();
    let vectors = &case["signature_vectors_computed_here"];
    let secret = vectors["secret"]
        .as_str()
        .or(given)
        .unwrap_or(OUR_SECRET)
        .to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut secrets = vec![(key(provider).to_string(), secret.clone())];
    let has = |h: &str| {
        case["headers"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.eq_ignore_ascii_case(h))
    };
    match provider {
        "github" => {
            let sig = sign(secret.as_bytes(), body);
            if let Some(v) = vectors["X-Hub-Signature-256"].as_str() {
                assert_eq!(
                    sig, v,
                    "{}: the computed signature is the recorded one",
                    case["file"]
                );
            }
            headers.push(("X-Hub-Signature-256".into(), sig));
        }
        "gitlab" if !has("X-Gitlab-Token") => {
            headers.push(("X-Gitlab-Token".into(), secret.clone()))
        }
        "gitea" if !has("X-Gitea-Signature") => headers.push((
            "X-Gitea-Signature".into(),
            sign(secret.as_bytes(), body)[7..].to_string(),
        )),
        "gogs" if !has("X-Gogs-Signature") => headers.push((
            "X-Gogs-Signature".into(),
            sign(secret.as_bytes(), body)[7..].to_string(),
        )),
        "bitbucket-server" if !has("X-Hub-Signature") => {
            headers.push(("X-Hub-Signature".into(), sign(secret.as_bytes(), body)))
        }
        "bitbucket-cloud" => {
            // a classic hook, known by its UUID
            secrets = vec![(
                "bitbucket-hook-uuid".into(),
                case["configured_uuid"].as_str().unwrap().to_string(),
            )];
        }
        "azure-devops" => {
            use base64::Engine;
            let user_password = "capstan:s3cret";
            secrets = vec![("azure-devops".into(), user_password.into())];
            headers.push((
                "Authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(user_password)
                ),
            ));
        }
        _ => {}
    }
    (headers, secrets)
}

/// The repository URLs and the revision a case's push names (from the case's expectations).
fn expected_push(case: &Value) -> Option<(Vec<String>, String)> {
    let e = &case["expected"];
    if e["kind"] != "push" {
        return None;
    }
    let urls: Vec<String> = match (&e["repo_urls"], &e["repo_url"], &e["repo_full_name"]) {
        (Value::Array(a), _, _) => a.iter().map(|u| u.as_str().unwrap().to_string()).collect(),
        (_, Value::String(u), _) => vec![u.clone()],
        (_, _, Value::String(full)) => vec![format!("https://bitbucket.org/{full}")],
        _ => panic!("{}: no repository", case["file"]),
    };
    let revision = match e["ref"].as_str() {
        Some(r) => r
            .trim_start_matches("refs/heads/")
            .trim_start_matches("refs/tags/")
            .to_string(),
        None => e["changes"][0]["new.name"].as_str().unwrap().to_string(),
    };
    Some((urls, revision))
}

/// The same repository written another way: scp-like SSH for https URLs, https for
/// the others, with `.git` and upper case — what a user's Application may say.
fn another_form(url: &str) -> String {
    match url.strip_prefix("https://") {
        Some(rest) if !rest.contains(':') => {
            let (host, path) = rest.split_once('/').unwrap();
            let path = path.strip_suffix(".git").unwrap_or(path);
            format!("git@{}:{path}.git", host.to_uppercase())
        }
        _ => url.to_string(),
    }
}

fn application(ns: &str, name: &str, repo: &str, revision: &str, path: &str) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  suspend: true\n  source:\n    repoURL: {}\n    targetRevision: {}\n    path: {}\n  destination:\n    namespace: {ns}\n---\n",
        serde_json::to_string(repo).unwrap(),
        serde_json::to_string(revision).unwrap(),
        serde_json::to_string(path).unwrap()
    )
}

/// The webhook refresh annotation of each Application in `ns`.
fn refreshes(served: &Served, ns: &str) -> std::collections::BTreeMap<String, String> {
    let out = served
        .cluster
        .kubectl_ok(&["-n", ns, "get", "applications", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| {
            let r = a["metadata"]["annotations"]["capstan.dev/refresh"].as_str()?;
            r.starts_with("webhook/").then(|| {
                (
                    a["metadata"]["name"].as_str().unwrap().to_string(),
                    r.to_string(),
                )
            })
        })
        .collect()
}

/// The Applications of `ns` refreshed since `before`.
fn refreshed_since(
    served: &Served,
    ns: &str,
    before: &std::collections::BTreeMap<String, String>,
) -> BTreeSet<String> {
    refreshes(served, ns)
        .into_iter()
        .filter(|(name, r)| before.get(name) != Some(r))
        .map(|(name, _)| name)
        .collect()
}

fn refreshed(served: &Served, ns: &str) -> BTreeSet<String> {
    refreshed_since(served, ns, &Default::default())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_conformance_payload_is_verified_parsed_and_mapped_to_its_applications() {
    let served = Served::start(Duration::from_secs(3600), ServerOptions::default());
    let cases = cases();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 17, "{} cases", cases.len());

    // per case a namespace: the Application that follows the push (its repository
    // written another way), one on another ref, one of another repository
    let mut yaml = String::new();
    for (i, case) in cases.iter().enumerate() {
        let ns = format!("case{i}");
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n"
        ));
        if let Some((urls, revision)) = expected_push(case) {
            for (j, url) in urls.iter().enumerate() {
                yaml.push_str(&application(
                    &ns,
                    &format!("follows{j}"),
                    &another_form(url),
                    &revision,
                    ".",
                ));
            }
            yaml.push_str(&application(
                &ns,
                "other-ref",
                &urls[0],
                "some-other-branch",
                ".",
            ));
            yaml.push_str(&application(
                &ns,
                "other-repo",
                &format!("{}-fork", urls[0]),
                &revision,
                ".",
            ));
        } else {
            yaml.push_str(&application(
                &ns,
                "bystander",
                "https://github.com/someone/else",
                "master",
                ".",
            ));
        }
    }
    // The new branch's push lists its one file, README.md: of the Applications below,
    // those whose path or watch paths hold it are refreshed. (Argo CD's commit event is
    // a forced push: what it overwrote is not listed, so all of that repository's
    // Applications on the branch are refreshed.)
    let new_branch = cases
        .iter()
        .position(|c| c["file"] == "github/octokit-push-with-new-branch.payload.json")
        .unwrap();
    let ns = format!("case{new_branch}");
    let repo = "https://github.com/Codertocat/Hello-World";
    yaml.push_str(&application(&ns, "elsewhere", repo, "master", "deploy/web"));
    let mut watching = application(&ns, "watching", repo, "HEAD", "deploy/web");
    watching = watching.replacen(
        "  namespace:",
        "  annotations:\n    capstan.dev/watch-paths: /docs;/README.md\n  namespace:",
        1,
    );
    yaml.push_str(&watching);
    let forced = cases
        .iter()
        .position(|c| c["file"] == "github/argocd-github-commit-event.json")
        .unwrap();
    yaml.push_str(&application(
        &format!("case{forced}"),
        "forced",
        "https://github.com/jessesuen/test-repo",
        "master",
        "deploy/web",
    ));
    served.cluster.apply(&yaml);
    served.eventually(
        "the controller's cache holds the Applications",
        Duration::from_secs(30),
        || {
            served
                .cluster
                .kubectl_ok(&["get", "applications", "-A", "-o", "name"])
                .lines()
                .count()
                >= 2 * cases.len()
        },
    );
    std::thread::sleep(Duration::from_secs(1));

    for (i, case) in cases.iter().enumerate() {
        let file = case["file"].as_str().unwrap();
        let ns = format!("case{i}");
        let body = std::fs::read(conformance().join(file)).unwrap();
        let provider = case["provider"].as_str().unwrap();
        let (auth_headers, secrets) = auth(case, &body);
        let secrets: Vec<(&str, &str)> = secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        served.webhook_secret(&secrets);
        let mut headers: Vec<(String, String)> = case["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        headers.push(("Content-Type".into(), "application/json".into()));

        let before = refreshes(&served, &ns);
        // without its signature: 401, nothing refreshed
        let unsigned: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| {
                !k.to_ascii_lowercase().contains("signature")
                    && !k.eq_ignore_ascii_case("x-gitlab-token")
                    && !k.eq_ignore_ascii_case("x-hook-uuid")
            })
            .cloned()
            .collect();
        let (code, answer) = served.post(route(provider), &unsigned, body.clone());
        assert_eq!(code, 401, "{file} without a signature: {answer}");
        // with a signature of another secret: 401
        let mut forged = unsigned.clone();
        for (k, v) in auth_headers.iter().chain(headers.iter()) {
            let lk = k.to_ascii_lowercase();
            if lk.contains("signature")
                || lk == "x-gitlab-token"
                || lk == "authorization"
                || lk == "x-hook-uuid"
            {
                let bad = if v.starts_with("sha256=") {
                    sign(b"not the secret", &body)
                } else if lk.contains("signature") {
                    sign(b"not the secret", &body)[7..].to_string()
                } else {
                    format!("{v}x")
                };
                forged.push((k.clone(), bad));
            }
        }
        let (code, answer) = served.post(route(provider), &forged, body.clone());
        assert_eq!(code, 401, "{file} with a forged signature: {answer}");
        assert_eq!(
            refreshed_since(&served, &ns, &before),
            set(&[]),
            "{file}: a refused delivery refreshes nothing"
        );

        // signed: accepted, and the push mapped
        let mut signed = headers.clone();
        signed.extend(auth_headers.iter().cloned());
        signed.push(("X-GitHub-Delivery".into(), format!("delivery-{i}")));
        let (code, answer) = served.post(route(provider), &signed, body.clone());
        let answer: Value =
            serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{file}: {answer}"));
        match case["expected"]["kind"].as_str().unwrap() {
            "ping" => {
                assert_eq!(code, 200, "{file}: {answer}");
                assert_eq!(answer["event"], "ping", "{file}");
                assert_eq!(
                    refreshed_since(&served, &ns, &before),
                    set(&[]),
                    "{file}: a ping refreshes nothing"
                );
            }
            "push" => {
                assert_eq!(code, 200, "{file}: {answer}");
                let urls = expected_push(case).unwrap().0;
                let mut want: Vec<String> =
                    (0..urls.len()).map(|j| format!("follows{j}")).collect();
                if i == new_branch {
                    want.push("watching".into());
                }
                if i == forced {
                    want.push("forced".into());
                }
                let want: BTreeSet<String> = want.into_iter().collect();
                let got: BTreeSet<String> = answer["refreshed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|a| a.as_str().unwrap().strip_prefix(&format!("{ns}/")))
                    .map(|a| a.trim_start_matches(&format!("{ns}/")).to_string())
                    .collect();
                assert_eq!(got, want, "{file}: {answer}");
                assert_eq!(
                    refreshed_since(&served, &ns, &before),
                    want,
                    "{file}: the annotations"
                );
                for u in &urls {
                    assert!(
                        answer["repository"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| r == u.as_str())
                            || provider == "bitbucket-cloud",
                        "{file}: {u} in {answer}"
                    );
                }
                if let Some(head) = case["expected"]["touched_head"].as_bool()
                    && !answer["touchedHead"].is_null()
                {
                    assert_eq!(answer["touchedHead"], head, "{file}: {answer}");
                }
            }
            other => panic!("{file}: unknown kind {other}"),
        }
    }
}

#[test]
fn a_gitlab_system_hook_with_a_push_is_a_push_and_argo_cds_route_tells_providers_apart() {
    let served = Served::start(Duration::from_secs(3600), ServerOptions::default());
    served.webhook_secret(&[("gitlab", "tok"), ("github", OUR_SECRET)]);
    served.cluster.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: g\n---\n{}",
        application(
            "g",
            "app",
            "https://gitlab.com/group/name.git",
            "master",
            "."
        )
    ));
    std::thread::sleep(Duration::from_secs(2));
    let body = std::fs::read(conformance().join("gitlab/argocd-gitlab-event.json")).unwrap();
    let headers = |event: &str| {
        vec![
            ("X-Gitlab-Event".to_string(), event.to_string()),
            ("X-Gitlab-Token".to_string(), "tok".to_string()),
        ]
    };
    // Argo CD's one route, the provider told by its headers
    let (code, answer) = served.post("/api/webhook", &headers("System Hook"), body.clone());
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["refreshed"],
        serde_json::json!(["g/app"]),
        "{answer}"
    );

    // the generic cases of the conformance set
    for g in cases()["generic"].as_array().unwrap() {
        let case = g["case"].as_str().unwrap();
        let headers: Vec<(String, String)> = g["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        match case {
            "unknown provider" => {
                let (code, answer) = served.post("/api/webhook", &headers, Vec::new());
                assert_eq!(code, 400, "{case}: {answer}");
                assert!(answer.contains("Unknown webhook event"), "{answer}");
            }
            "empty body" => {
                let mut h = headers.clone();
                h.push((
                    "X-Hub-Signature-256".into(),
                    sign(OUR_SECRET.as_bytes(), b""),
                ));
                let (code, answer) = served.post("/webhooks/github", &h, Vec::new());
                assert_eq!(code, 400, "{case}: {answer}");
            }
            "GET method" => {
                assert_eq!(served.get("/webhooks/github").0, 405, "{case}");
                assert_eq!(served.get("/api/webhook").0, 405, "{case}");
            }
            "GitHub docs HMAC vector" => {
                assert_eq!(
                    sign(
                        g["secret"].as_str().unwrap().as_bytes(),
                        g["payload"].as_str().unwrap().as_bytes()
                    ),
                    g["X-Hub-Signature-256"].as_str().unwrap()
                );
            }
            other => panic!("unknown generic case {other}"),
        }
    }
}

#[test]
fn without_a_secret_a_route_is_404_an_unknown_event_is_202_and_a_redelivery_is_not_acted_on() {
    let served = Served::start(
        Duration::from_secs(3600),
        ServerOptions {
            webhook_body_limit: 64 * 1024,
            // read back without a token below
            api: capstan_server::api::ApiOptions {
                metrics_auth: false,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    served.cluster.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: r\n---\n{}",
        application(
            "r",
            "app",
            "https://github.com/jessesuen/test-repo",
            "master",
            "."
        )
    ));
    std::thread::sleep(Duration::from_secs(2));
    let body = std::fs::read(conformance().join("github/argocd-github-commit-event.json")).unwrap();
    let push = |delivery: &str, secret: &str| {
        vec![
            ("X-GitHub-Event".to_string(), "push".to_string()),
            ("X-GitHub-Delivery".to_string(), delivery.to_string()),
            (
                "X-Hub-Signature-256".to_string(),
                sign(secret.as_bytes(), &body),
            ),
        ]
    };
    // no Secret at all, then a Secret without this provider's key: 404
    let (code, answer) = served.post("/webhooks/github", &push("d1", OUR_SECRET), body.clone());
    assert_eq!(code, 404, "{answer}");
    served.webhook_secret(&[("gitlab", "only gitlab")]);
    assert_eq!(
        served
            .post("/webhooks/github", &push("d1", OUR_SECRET), body.clone())
            .0,
        404
    );
    assert_eq!(
        served.post("/webhooks/nosuchforge", &[], body.clone()).0,
        404
    );
    served.webhook_secret(&[("github", OUR_SECRET)]);

    // an event Capstan does not act on: 202
    let mut issues = push("d0", OUR_SECRET);
    issues[0].1 = "issues".into();
    let (code, answer) = served.post("/webhooks/github", &issues, body.clone());
    assert_eq!(code, 202, "{answer}");
    assert!(refreshed(&served, "r").is_empty());

    // the push, then its redelivery (same delivery id): acted on once
    let (code, answer) = served.post("/webhooks/github", &push("d1", OUR_SECRET), body.clone());
    assert_eq!(code, 200, "{answer}");
    let first = served.cluster.kubectl_ok(&[
        "-n",
        "r",
        "get",
        "application",
        "app",
        "-o",
        "jsonpath={.metadata.annotations.capstan\\.dev/refresh}",
    ]);
    assert!(first.starts_with("webhook/github/"), "{first}");
    std::thread::sleep(Duration::from_millis(1100));
    let (code, answer) = served.post("/webhooks/github", &push("d1", OUR_SECRET), body.clone());
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["duplicate"],
        true,
        "{answer}"
    );
    let again = served.cluster.kubectl_ok(&[
        "-n",
        "r",
        "get",
        "application",
        "app",
        "-o",
        "jsonpath={.metadata.annotations.capstan\\.dev/refresh}",
    ]);
    assert_eq!(first, again, "a redelivery changes nothing");
    // a new delivery is acted on
    let (code, _) = served.post("/webhooks/github", &push("d2", OUR_SECRET), body.clone());
    assert_eq!(code, 200);
    let third = served.cluster.kubectl_ok(&[
        "-n",
        "r",
        "get",
        "application",
        "app",
        "-o",
        "jsonpath={.metadata.annotations.capstan\\.dev/refresh}",
    ]);
    assert_ne!(first, third);

    // a body over the limit is refused before it is read whole
    let big = vec![b' '; 65 * 1024];
    let (code, answer) = served.post("/webhooks/github", &push("d3", OUR_SECRET), big);
    assert_eq!(code, 413, "{answer}");

    // the metrics count each answer
    let (_, metrics) = served.get("/metrics");
    for line in [
        r#"capstan_webhook_requests_total{provider="github",result="not-configured"} 2"#,
        r#"capstan_webhook_requests_total{provider="github",result="accepted"} 2"#,
        r#"capstan_webhook_requests_total{provider="github",result="duplicate"} 1"#,
        r#"capstan_webhook_requests_total{provider="github",result="ignored"} 1"#,
        r#"capstan_webhook_requests_total{provider="github",result="too-large"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[test]
fn registry_webhooks_rescan_the_image_repositories_of_the_pushed_image() {
    let served = Served::start(Duration::from_secs(3600), ServerOptions::default());
    served.webhook_secret(&[
        ("registry", "reg-secret"),
        ("dockerhub", "hub-token-123"),
        ("harbor", "Bearer harbor-auth"),
    ]);
    let repo = |name: &str, image: &str| {
        format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: ImageRepository\nmetadata:\n  name: {name}\n  namespace: imgs\nspec:\n  image: {image}\n  interval: 1h\n  suspend: true\n---\n"
        )
    };
    served.cluster.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: imgs\n---\n{}{}{}{}",
        repo("own", "registry.example.com/team/app"),
        repo("hub", "nginx"),
        repo("harbor", "harbor.example.com/library/web"),
        repo("other", "registry.example.com/team/other"),
    ));
    let rescanned = || -> BTreeSet<String> {
        let out =
            served
                .cluster
                .kubectl_ok(&["-n", "imgs", "get", "imagerepositories", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["metadata"]["annotations"]["capstan.dev/refresh"].is_null())
            .map(|r| r["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };

    // Capstan's own form, signed
    let body = br#"{"image": "registry.example.com/team/app", "tag": "1.2.3"}"#.to_vec();
    let signed = vec![(
        "X-Capstan-Signature".to_string(),
        sign(b"reg-secret", &body),
    )];
    assert_eq!(served.post("/webhooks/registry", &[], body.clone()).0, 401);
    let (code, answer) = served.post("/webhooks/registry", &signed, body);
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("imgs/own"), "{answer}");
    assert_eq!(rescanned(), set(&["own"]));

    // Docker Hub cannot sign: the token is the URL's last segment
    let hub = br#"{"push_data": {"tag": "1.27", "pusher": "someone"}, "repository": {"repo_name": "library/nginx", "namespace": "library", "name": "nginx"}, "callback_url": "https://registry.hub.docker.com/u/library/nginx/hook/1/"}"#.to_vec();
    assert_eq!(served.post("/webhooks/dockerhub", &[], hub.clone()).0, 401);
    assert_eq!(
        served
            .post("/webhooks/dockerhub/wrong-token", &[], hub.clone())
            .0,
        401
    );
    let (code, answer) = served.post("/webhooks/dockerhub/hub-token-123", &[], hub);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(rescanned(), set(&["own", "hub"]));

    // Harbor sends the configured Authorization value
    let harbor = br#"{"type": "PUSH_ARTIFACT", "occur_at": 1700000000, "operator": "admin", "event_data": {"resources": [{"digest": "sha256:abc", "tag": "v2", "resource_url": "harbor.example.com/library/web:v2"}], "repository": {"name": "web", "namespace": "library", "repo_full_name": "library/web", "repo_type": "private"}}}"#.to_vec();
    let auth = |v: &str| vec![("Authorization".to_string(), v.to_string())];
    assert_eq!(
        served
            .post("/webhooks/harbor", &auth("Bearer nope"), harbor.clone())
            .0,
        401
    );
    let (code, answer) = served.post("/webhooks/harbor", &auth("Bearer harbor-auth"), harbor);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(rescanned(), set(&["own", "hub", "harbor"]));
}
