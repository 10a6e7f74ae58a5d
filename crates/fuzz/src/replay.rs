//! Replaying kept inputs: a file of `regressions/<target>/` is given to its target.
//!
//! The file holds the target's main input as it arrives — the text of a manifest,
//! Kustomization or values file, a selector, a webhook or request body, a query
//! string — and the rest of the input is fixed here (every provider for a webhook,
//! every content type for a body). Patches and managed fields are stored as a JSON
//! object naming each part (see [`replay`]).

use std::time::{Duration, Instant};

use capstan_apiserver::patch::PatchType;
use capstan_engine::fuzzing::EditedFile;
use capstan_server::webhooks::event::Provider;
use serde_json::Value;

use crate::targets;

/// The targets a regressions directory may be named after.
pub const TARGETS: &[&str] = &[
    "manifests",
    "kustomization",
    "helm_values",
    "webhook",
    "label_selector",
    "field_selector",
    "request_body",
    "request_query",
    "patch",
    "managed_fields",
];

/// Give `bytes` (the file `name`) to `target`; the time it took. Panics for a target
/// not in [`TARGETS`], or a patch or managed-fields file that is not the JSON object
/// they are stored as: `{"doc", "type": "json"|"merge"|"strategic", "patch", "schema"}`
/// and `{"entries", "live", "config", "manager", "force", "status", "schema"}`.
pub fn replay(target: &str, name: &str, bytes: &[u8]) -> Duration {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let started = Instant::now();
    match target {
        "manifests" => {
            for namespaced in [true, false] {
                targets::manifests(&(text.clone(), name.ends_with(".json"), namespaced));
            }
        }
        "kustomization" => {
            for kind in [
                EditedFile::Kustomization,
                EditedFile::Manifest,
                EditedFile::KustomizeResource,
            ] {
                targets::kustomization(&(
                    kind,
                    text.clone(),
                    vec!["nginx:1.26", "app=ghcr.io/acme/app:2"],
                    vec![("ns:policy", "nginx:1.27")],
                    true,
                ));
            }
        }
        "helm_values" => targets::helm_values(&(
            text.clone(),
            vec!["nginx:1.26"],
            vec!["image", "image.tag"],
            (
                false,
                "values.yaml".into(),
                None,
                false,
                Some(vec![("values.yaml".into(), bytes.to_vec())]),
            ),
        )),
        "webhook" => {
            let headers = vec![
                ("x-github-event", "push".to_string()),
                ("x-gitlab-event", "Push Hook".to_string()),
                ("x-gitea-event", "push".to_string()),
                ("x-gogs-event", "push".to_string()),
                ("x-event-key", "repo:push".to_string()),
            ];
            for p in 0..Provider::ALL.len() {
                targets::webhook(&(
                    p,
                    headers.clone(),
                    bytes.to_vec(),
                    b"secret".to_vec(),
                    false,
                    None,
                    true,
                ));
            }
        }
        "label_selector" => {
            targets::label_selector(&(text, Value::Null, serde_json::json!({})));
        }
        "field_selector" => {
            for resource in [("", "pods"), ("", "events"), ("batch", "jobs")] {
                targets::field_selector(&(text.clone(), resource, serde_json::json!({})));
            }
        }
        "request_body" => {
            for ct in ["application/json", "application/yaml"] {
                targets::request_body(&(ct, bytes.to_vec()));
            }
        }
        "request_query" => targets::request_query(&(text, Vec::new())),
        "patch" => {
            let v: Value = serde_json::from_slice(bytes).expect("a patch regression is JSON");
            let kind = match v["type"].as_str() {
                Some("json") => PatchType::Json,
                Some("merge") => PatchType::Merge,
                _ => PatchType::Strategic,
            };
            targets::patch(&(
                v["doc"].clone(),
                kind,
                v["patch"].clone(),
                v["schema"].as_u64().unwrap_or(0) as usize,
            ));
        }
        "managed_fields" => {
            let v: Value =
                serde_json::from_slice(bytes).expect("a managed-fields regression is JSON");
            let manager = match v["manager"].as_str() {
                Some("kubectl") => "kubectl",
                Some("other") => "other",
                _ => "capstan",
            };
            targets::managed_fields(&(
                v["entries"].as_array().cloned().unwrap_or_default(),
                v["live"].clone(),
                v["config"].clone(),
                manager,
                v["force"].as_bool().unwrap_or(false),
                v["status"].as_bool().unwrap_or(false),
                v["schema"].as_u64().unwrap_or(0) as usize,
            ));
        }
        other => panic!("no fuzz target {other:?} (regressions/{other}/{name})"),
    }
    started.elapsed()
}
