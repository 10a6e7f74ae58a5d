//! Fault injection (`ServerOptions::faults`, `capstan apiserver --faults`): each kind of
//! fault, seen by a real client over HTTP, and the scope that limits where faults land.

use std::time::{Duration, Instant};

use capstan_apiserver::ServerOptions;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::util::{cm, start_async, test_options};

fn with_faults(spec: &str) -> ServerOptions {
    ServerOptions {
        faults: Some(spec.parse().expect("fault spec parses")),
        ..test_options()
    }
}

/// Send a raw request; the status, the headers and the body, or the transport error.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, http::HeaderMap, String), String> {
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .expect("request");
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

fn cm_body(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

/// A client that does not retry 429/503/504 answers itself, so the test sees them.
async fn client_without_retries(server: &capstan_apiserver::ApiServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(server.kubeconfig()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn status_faults_answer_as_a_busy_server_does_and_stay_in_their_scope() {
    let (server, _) = start_async(with_faults("rate=1,status=429,resources=configmaps")).await;
    let client = client_without_retries(&server).await;
    let (code, headers, body) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
    )
    .await
    .expect("an answer");
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let status: Value = serde_json::from_str(&body).expect("a Status body");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("injected fault"),
        "{body}"
    );
    // namespaces are outside the scope, and discovery never gets faults
    for path in ["/api/v1/namespaces", "/api/v1", "/version"] {
        let (code, _, body) = send(&client, "GET", path, None).await.expect("an answer");
        assert_eq!(code, 200, "{path}: {body}");
    }
    let stats = server.fault_stats().expect("faults are on");
    assert_eq!(
        stats.requests, 1,
        "only the configmaps list is in scope: {stats}"
    );
    assert_eq!(stats.injected.get("429"), Some(&1), "{stats}");
    server.shutdown().await;
}

#[tokio::test]
async fn retrying_clients_get_through_503_and_504_with_their_own_backoff() {
    // kube-rs (as client-go) retries 429, 503 and 504 itself: at a fault rate of 0.5
    // every request still gets through
    let (server, client) = start_async(with_faults("rate=0.5,status=503|504,seed=11")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..10 {
        let name = format!("retried-{i}");
        cms.create(&PostParams::default(), &cm(&name, json!({}), json!({})))
            .await
            .expect("a retried create succeeds");
        cms.get(&name).await.expect("a retried get succeeds");
    }
    let stats = server.fault_stats().unwrap();
    assert!(stats.total() >= 5 && stats.requests > 20, "{stats}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_conflict_is_only_injected_into_writes_and_nothing_is_written() {
    let (server, client) = start_async(with_faults("rate=1,status=409")).await;
    let (code, _, body) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
    )
    .await
    .expect("an answer");
    assert_eq!(code, 200, "a read never gets a 409: {body}");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let err = cms
        .create(
            &PostParams::default(),
            &cm("one", json!({}), json!({"k": "v"})),
        )
        .await
        .expect_err("the create gets the fault");
    let (code, reason, _) = crate::util::api_error(err);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let err = cms
        .get("one")
        .await
        .expect_err("the create was not carried out");
    assert_eq!(crate::util::api_error(err).0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn a_reset_carries_the_write_out_and_loses_the_answer() {
    let (server, client) = start_async(with_faults("rate=1,reset,verbs=create")).await;
    let answer = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm_body("lost-answer")),
    )
    .await;
    assert!(answer.is_err(), "the answer is lost: {answer:?}");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stored = cms.get("lost-answer").await.expect("the write happened");
    assert_eq!(stored.data.unwrap()["k"], "v");
    assert_eq!(
        server.fault_stats().unwrap().injected.get("reset"),
        Some(&1)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn watches_are_closed_early_or_told_their_version_is_gone() {
    let (server, client) = start_async(with_faults("rate=1,watch-close=300ms,verbs=watch")).await;
    let started = Instant::now();
    let (code, _, _) = tokio::time::timeout(
        Duration::from_secs(10),
        send(
            &client,
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=60",
            None,
        ),
    )
    .await
    .expect("the watch is closed long before its 60 s timeout")
    .expect("a clean end of the stream");
    assert_eq!(code, 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    server.shutdown().await;

    let (server, client) = start_async(with_faults("rate=1,gone,verbs=watch")).await;
    let (code, _, body) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&timeoutSeconds=5",
        None,
    )
    .await
    .expect("an answer");
    assert_eq!(code, 200);
    let event: Value = serde_json::from_str(body.lines().next().expect("one event")).unwrap();
    assert_eq!(event["type"], "ERROR", "{body}");
    assert_eq!(event["object"]["code"], 410, "{body}");
    assert_eq!(event["object"]["reason"], "Expired", "{body}");
    // a watch that does not resume cannot be told its version is gone
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("seen", json!({}), json!({})))
        .await
        .unwrap();
    let (code, _, body) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        None,
    )
    .await
    .expect("an answer");
    assert_eq!(code, 200);
    assert!(
        body.contains("\"ADDED\"") && body.contains("seen"),
        "{body}"
    );
    let stats = server.fault_stats().unwrap();
    assert_eq!(
        (stats.requests, stats.injected.get("gone")),
        (2, Some(&1)),
        "{stats}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn slow_answers_still_carry_the_request_out() {
    let (server, client) = start_async(with_faults("rate=1,delay=200ms,verbs=create|get")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &cm(&format!("slow-{i}"), json!({}), json!({})),
        )
        .await
        .expect("a slow create succeeds");
        cms.get(&format!("slow-{i}"))
            .await
            .expect("a slow get succeeds");
    }
    assert_eq!(
        server.fault_stats().unwrap().injected.get("delay"),
        Some(&10)
    );
    server.shutdown().await;
}
