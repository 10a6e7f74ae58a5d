//! `capstan health -f FILE`: the binary judges the objects of a file, with the built-in
//! rules and a file of custom CEL rules, and refuses files it cannot read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

const OBJECTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec: {replicas: 2}
status: {observedGeneration: 0, replicas: 2, updatedReplicas: 2, availableReplicas: 2}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: shop-tls, namespace: shop}
status:
  conditions:
    - {type: Ready, status: "False", reason: Failed, message: issuer not found}
---
# an empty document is skipped
---
apiVersion: v1
kind: List
items:
  - apiVersion: example.com/v1
    kind: Widget
    metadata: {name: gizmo}
    status: {phase: Broken}
"#;

const RULES: &str = r#"
- apiVersion: example.com/v1
  kind: Widget
  current: status.phase == 'Running'
  failed: status.phase == 'Broken'
  message: "'widget is ' + status.phase"
"#;

fn capstan(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.current_dir(dir).args(args).env("NO_COLOR", "1");
    capstan_testkit::process::run(cmd, None, Duration::from_secs(60))
}

/// The engine's health fixtures: objects as `kubectl get -o yaml` prints them.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/src/health/testdata")
        .join(name)
}

/// Asserts that the run failed with exit code 2 and an error (not a panic) containing
/// `fragment`.
#[track_caller]
fn assert_refused(out: &Output, fragment: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(fragment), "expected {fragment:?} in:\n{err}");
}

fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("objects.yaml"), OBJECTS).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn health_prints_one_verdict_per_object_and_exits_zero_whatever_they_are() {
    let dir = files();
    let out = capstan(
        dir.path(),
        &["health", "-f", "objects.yaml", "--rules", "rules.yaml"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Deployment default/web: Healthy\n\
         Certificate shop/shop-tls: Degraded: failed: Ready False: Failed: issuer not found\n\
         Widget gizmo: Degraded: widget is Broken\n"
    );
}

#[test]
fn health_without_custom_rules_judges_an_unknown_kind_by_its_conditions() {
    let dir = files();
    let out = capstan(dir.path(), &["health", "-f", "objects.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Widget gizmo: Unknown: no health rule for Widget\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn health_as_json_lists_identity_status_and_message() {
    let dir = files();
    let out = capstan(
        dir.path(),
        &[
            "health",
            "-f",
            "objects.yaml",
            "--rules",
            "rules.yaml",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("the output is JSON");
    assert_eq!(
        list[2],
        serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget", "namespace": null,
                           "name": "gizmo", "status": "Degraded", "message": "widget is Broken"})
    );
    assert_eq!(list[0]["status"], "Healthy");
    assert_eq!(list.as_array().map(Vec::len), Some(3));
}

#[test]
fn health_refuses_an_invalid_document_naming_the_file_and_document() {
    let dir = files();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n- just\n- a list\n",
    )
    .unwrap();
    let out = capstan(dir.path(), &["health", "-f", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.yaml: document 2, item 1: not a Kubernetes object"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        dir.path().join("broken.yaml"),
        "kind: ConfigMap\nmetadata: {name: a\n",
    )
    .unwrap();
    let out = capstan(dir.path(), &["health", "-f", "broken.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.yaml: "), "{}", stderr(&out));

    let out = capstan(dir.path(), &["health", "-f", "missing.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("reading missing.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn health_refuses_rules_that_do_not_compile_naming_the_rule_and_expression() {
    let dir = files();
    std::fs::write(
        dir.path().join("bad-rules.yaml"),
        "- apiVersion: example.com/v1\n  kind: Widget\n  current: status.(\n",
    )
    .unwrap();
    let out = capstan(
        dir.path(),
        &["health", "-f", "objects.yaml", "--rules", "bad-rules.yaml"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad-rules.yaml: rule 1 (Widget.example.com): the current expression does not compile: status.("),
        "{}",
        stderr(&out)
    );
}

#[test]
fn health_judges_a_real_object_file_with_its_verdict_and_message() {
    let dir = files();
    let deployment = fixture("deployment-progress-deadline-exceeded.yaml");
    let file = deployment.to_str().unwrap();
    let out = capstan(dir.path(), &["health", "-f", file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Deployment shop/web: Degraded: progress deadline exceeded: ReplicaSet \"web-7d4b9c\" \
         has timed out progressing.\n"
    );

    let out = capstan(dir.path(), &["health", "-f", file, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("the output is JSON");
    assert_eq!(
        list,
        serde_json::json!([{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop",
                            "name": "web", "status": "Degraded",
                            "message": "progress deadline exceeded: ReplicaSet \"web-7d4b9c\" has timed out progressing."}])
    );
}

#[test]
fn health_reads_objects_from_standard_input() {
    let dir = files();
    let text =
        std::fs::read_to_string(fixture("pod-restart-on-failure-image-pull-backoff.yaml")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.current_dir(dir.path())
        .args(["health", "-f", "-", "-o", "json"])
        .env("NO_COLOR", "1");
    let out = capstan_testkit::process::run(cmd, Some(text.as_bytes()), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("the output is JSON");
    assert_eq!(list[0]["name"], "migrate-q8w2v");
    assert_eq!(list[0]["status"], "Progressing");
}

#[test]
fn health_refuses_a_bad_object_naming_the_file_document_and_field() {
    let dir = files();
    let cases = [
        (
            "kind-number.yaml",
            "apiVersion: v1\nkind: 5\nmetadata: {name: a}\n",
            "kind-number.yaml: document 1: field kind is a number, not a string",
        ),
        (
            "no-api-version.yaml",
            "apiVersion: v1\nkind: ConfigMap\n---\nkind: Pod\nmetadata: {name: a}\n",
            "no-api-version.yaml: document 2: field apiVersion is missing",
        ),
        (
            "items-not-a-list.yaml",
            "apiVersion: v1\nkind: List\nitems: {a: 1}\n",
            "items-not-a-list.yaml: document 1: field items of the List is a mapping, not a list",
        ),
        (
            "bad-item.yaml",
            "apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Pod}\n  - {apiVersion: v1}\n",
            "bad-item.yaml: document 1, item 2: field kind is missing",
        ),
        (
            "repeated-key.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n",
            "repeated-key.yaml: line 5 column 3: duplicate mapping key: name\n",
        ),
        (
            "unclosed.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a\n",
            "unclosed.yaml: line 3 column 11: unclosed bracket",
        ),
    ];
    for (name, text, fragment) in cases {
        std::fs::write(dir.path().join(name), text).unwrap();
        let out = capstan(dir.path(), &["health", "-f", name]);
        assert_refused(&out, fragment);
    }
}
