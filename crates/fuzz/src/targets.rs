//! The targets: one function per parser, and the generator of its inputs.
//!
//! Each target calls the crate's own entry point the way the running program does and
//! ignores whether it answers `Ok` or `Err`: only a panic or a slow answer fails.

use std::collections::BTreeMap;

use capstan_apiserver::fieldset::FieldSet;
use capstan_apiserver::http::request::{self, Query};
use capstan_apiserver::managed::{self, Scope, Writer};
use capstan_apiserver::patch::{Patch, PatchType};
use capstan_apiserver::registry::{GroupResource, Registry, split_api_version};
use capstan_apiserver::schema::Schema;
use capstan_apiserver::selector::{FieldSelector, LabelSelector};
use capstan_apiserver::{crd, validation};
use capstan_engine::fuzzing::{self, EditedFile};
use capstan_engine::images::edit::{EditPlan, HelmTarget, ImageSetting};
use capstan_engine::images::reference::ImageRef;
use capstan_engine::render::{ValuesKind, ValuesReference};
use capstan_server::api::list::ListQuery;
use capstan_server::webhooks::event::{self, Event, Provider};
use capstan_server::webhooks::verify::{self, Secrets};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use crate::inputs::{self, YAML_BITS, lossy, mutate, mutation};

// ---------------------------------------------------------------------------------
// manifests

/// A manifest file: its text, whether it is a `.json` file, and whether the
/// destination has a namespace.
pub fn manifests_input() -> impl Strategy<Value = (String, bool, bool)> {
    any::<bool>().prop_flat_map(|json| (inputs::manifest_text(json), Just(json), any::<bool>()))
}

/// Manifests (multi-document YAML, or a JSON file): parse and normalize, as every
/// renderer's output is read.
pub fn manifests((text, json, namespaced): &(String, bool, bool)) {
    let _ = fuzzing::manifests(text, *json, if *namespaced { "default" } else { "" });
}

// ---------------------------------------------------------------------------------
// kustomization (and the manifests the image editor edits)

const IMAGE_ARGS: &[&str] = &[
    "nginx:1.26",
    "nginx=ghcr.io/acme/nginx:2",
    "nginx@sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "ghcr.io/acme/app:v2",
    "app=app:3",
    "=x:1",
    "nginx:",
    "docker.io/library/nginx:1.26",
];

/// An image edit: what the file is, its text, the images to set, policy values and
/// whether entries are added.
pub type EditInput = (
    EditedFile,
    String,
    Vec<&'static str>,
    Vec<(&'static str, &'static str)>,
    bool,
);

fn kustomization_text() -> impl Strategy<Value = String> {
    let entry = (
        select(
            &[
                "nginx",
                "app",
                "ghcr.io/acme/app",
                "",
                "docker.io/library/nginx",
            ][..],
        ),
        prop::option::of(select(&["ghcr.io/x/nginx", "", "a b"][..])),
        prop::option::of(select(&["1.25", "\"1\"", "v2", "", "[1]"][..])),
        prop::option::of(select(
            &[
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "x",
            ][..],
        )),
    )
        .prop_map(|(name, new_name, tag, digest)| {
            let mut s = format!("- name: {name}\n");
            if let Some(n) = new_name {
                s.push_str(&format!("  newName: {n}\n"));
            }
            if let Some(t) = tag {
                s.push_str(&format!("  newTag: {t}\n"));
            }
            if let Some(d) = digest {
                s.push_str(&format!("  digest: {d}\n"));
            }
            s
        });
    (
        any::<bool>(),
        vec(entry, 0..4),
        prop::option::of(Just("resources:\n- deploy.yaml\n- ../base\n")),
        vec(mutation(YAML_BITS), 0..5),
    )
        .prop_map(|(kind, entries, resources, muts)| {
            let mut t = String::new();
            if kind {
                t.push_str("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
            }
            if let Some(r) = resources {
                t.push_str(r);
            }
            if !entries.is_empty() {
                t.push_str("images:\n");
                t.push_str(&entries.concat());
            }
            lossy(mutate(t.into_bytes(), &muts))
        })
}

fn deployment_text() -> impl Strategy<Value = String> {
    (
        vec(
            (
                select(&["web", "side", ""][..]),
                select(&["nginx:1.25", "ghcr.io/acme/app:v1", "app", "\"nginx:1.25\" # {\"$imagepolicy\": \"ns:policy\"}", "[x]"][..]),
            ),
            1..3,
        ),
        vec(mutation(YAML_BITS), 0..5),
    )
        .prop_map(|(containers, muts)| {
            let mut t = String::from(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n",
            );
            for (name, image) in containers {
                t.push_str(&format!("      - name: {name}\n        image: {image}\n"));
            }
            lossy(mutate(t.into_bytes(), &muts))
        })
}

/// Inputs of [`kustomization`].
pub fn kustomization_input() -> impl Strategy<Value = EditInput> {
    (
        select(
            &[
                EditedFile::Kustomization,
                EditedFile::Manifest,
                EditedFile::KustomizeResource,
            ][..],
        ),
        prop_oneof![
            3 => kustomization_text(),
            2 => deployment_text(),
            1 => inputs::manifest_text(false),
        ],
        vec(select(IMAGE_ARGS), 0..3),
        vec(
            (
                select(&["ns:policy", "ns:other"][..]),
                select(
                    &[
                        "nginx:1.27",
                        "ghcr.io/acme/app:v9@sha256:2222222222222222222222222222222222222222222222222222222222222222",
                    ][..],
                ),
            ),
            0..2,
        ),
        any::<bool>(),
    )
}

fn plan(images: &[&str], policies: &[(&str, &str)], add: bool) -> EditPlan {
    EditPlan {
        images: images
            .iter()
            .filter_map(|a| ImageSetting::parse(a).ok())
            .collect(),
        policies: policies
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), ImageRef::parse(v).ok()?)))
            .collect::<BTreeMap<_, _>>(),
        add_kustomize_entries: add,
        dry_run: true,
        ..EditPlan::default()
    }
}

/// Kustomization files (and manifests) as the image editor reads and edits them:
/// `images:` entries set or added, setter markers, container images; and the scan of
/// the images a file pins.
pub fn kustomization((kind, text, images, policies, add): &EditInput) {
    let _ = fuzzing::edit(*kind, text, &plan(images, policies, *add));
    let _ = fuzzing::used_images(*kind, text);
}

// ---------------------------------------------------------------------------------
// Helm values

/// Inputs of [`helm_values`]: a values file, images to set, keys to write them to, and a
/// `valuesFrom` reference (key, target path) with the object's data.
pub type HelmInput = (
    String,
    Vec<&'static str>,
    Vec<&'static str>,
    ValuesFromInput,
);

/// A `valuesFrom` reference and the data of its object.
pub type ValuesFromInput = (
    bool,
    String,
    Option<String>,
    bool,
    Option<Vec<(String, Vec<u8>)>>,
);

fn values_text() -> impl Strategy<Value = String> {
    (
        select(&[
            "image:\n  repository: nginx\n  tag: \"1.25\"\n",
            "image: nginx:1.25\n",
            "image:\n  registry: docker.io\n  repository: library/nginx\n  tag: 1.25\n  digest: \"\"\n",
            "app:\n  image:\n    repository: ghcr.io/acme/app\n    tag: v1\nreplicas: 2\n",
            "sidecars:\n- image:\n    repository: nginx\n    tag: 1\n",
            "image:\n  tag: |\n    1.25\n",
            "{}\n",
            "",
        ][..]),
        vec((inputs::key(), inputs::value()), 0..3),
        vec(mutation(YAML_BITS), 0..5),
    )
        .prop_map(|(base, extra, muts)| {
            let mut t = base.to_string();
            let extra: serde_json::Map<String, Value> = extra.into_iter().collect();
            if !extra.is_empty() {
                t.push_str(&inputs::to_yaml(&Value::Object(extra)));
            }
            lossy(mutate(t.into_bytes(), &muts))
        })
}

fn values_from_input() -> impl Strategy<Value = ValuesFromInput> {
    (
        any::<bool>(),
        select(&["values.yaml", "", "other"][..]).prop_map(str::to_string),
        prop::option::of(prop_oneof![
            select(&["image.tag", "a..b", ".", "", " a . b ", "a.b.c.d.e.f"][..])
                .prop_map(str::to_string),
            any::<String>(),
        ]),
        any::<bool>(),
        prop::option::of(vec(
            (
                select(&["values.yaml", "other"][..]).prop_map(str::to_string),
                prop_oneof![values_text().prop_map(String::into_bytes), inputs::bytes(),],
            ),
            0..3,
        )),
    )
}

/// Inputs of [`helm_values`].
pub fn helm_values_input() -> impl Strategy<Value = HelmInput> {
    (
        prop_oneof![3 => values_text(), 1 => inputs::manifest_text(false)],
        vec(select(IMAGE_ARGS), 0..3),
        vec(
            select(
                &[
                    "image",
                    "image.tag",
                    "image.repository",
                    "image.digest",
                    "app.image",
                    "sidecars",
                    "missing.key",
                    "",
                    ".",
                ][..],
            ),
            0..3,
        ),
        values_from_input(),
    )
}

/// Helm values: a values file as the image editor edits it (named keys, and
/// `repository`/`tag` mappings found by search), the images it pins, and a
/// `valuesFrom` key read from a ConfigMap or Secret (a mapping, or one value put at a
/// target path).
pub fn helm_values((text, images, keys, (secret, key, target_path, optional, data)): &HelmInput) {
    let mut p = plan(images, &[], false);
    let fallback = ImageSetting::parse("nginx:1").expect("a valid setting");
    let owners: Vec<String> = p
        .images
        .iter()
        .chain(std::iter::repeat(&fallback))
        .take(keys.len())
        .map(|s| s.image.clone())
        .collect();
    p.helm = keys
        .iter()
        .zip(owners)
        .map(|(k, image)| HelmTarget {
            image,
            file: "values.yaml".into(),
            key: k.to_string(),
        })
        .collect();
    let _ = fuzzing::edit(EditedFile::HelmValues, text, &p);
    let _ = fuzzing::used_images(EditedFile::HelmValues, text);
    let r = ValuesReference {
        kind: if *secret {
            ValuesKind::Secret
        } else {
            ValuesKind::ConfigMap
        },
        name: "values".into(),
        namespace: None,
        key: key.clone(),
        target_path: target_path.clone(),
        optional: *optional,
    };
    let _ = fuzzing::values_from(&r, data.clone());
}

// ---------------------------------------------------------------------------------
// webhooks

/// Inputs of [`webhook`]: the provider, headers, body, the shared secret, Bitbucket's
/// hook UUID and Docker Hub's URL token, and whether the body is signed correctly.
pub type WebhookInput = (
    usize,
    Vec<(&'static str, String)>,
    Vec<u8>,
    Vec<u8>,
    bool,
    Option<String>,
    bool,
);

const POINTERS: &[&str] = &[
    "/ref",
    "/after",
    "/checkout_sha",
    "/deleted",
    "/repository/html_url",
    "/repository/clone_url",
    "/repository/ssh_url",
    "/repository/git_url",
    "/repository/url",
    "/repository/homepage",
    "/repository/default_branch",
    "/repository/master_branch",
    "/repository/full_name",
    "/repository/links/html/href",
    "/repository/links/clone",
    "/repository/mainbranch/name",
    "/repository/git_http_url",
    "/repository/git_ssh_url",
    "/repository/repo_name",
    "/project/web_url",
    "/project/git_http_url",
    "/project/git_ssh_url",
    "/project/default_branch",
    "/object_kind",
    "/event_name",
    "/commits",
    "/commits/0/added",
    "/commits/0/modified",
    "/commits/0/removed",
    "/commits/1/added",
    "/push/changes",
    "/push/changes/0/new/name",
    "/push/changes/0/new/type",
    "/push/changes/0/new/target/hash",
    "/push/changes/0/old/name",
    "/push/changes/0/closed",
    "/changes/0/ref/id",
    "/changes/0/refId",
    "/changes/0/toHash",
    "/changes/0/type",
    "/eventType",
    "/resource/refUpdates",
    "/resource/refUpdates/0/name",
    "/resource/refUpdates/0/newObjectId",
    "/resource/repository/remoteUrl",
    "/resource/repository/sshUrl",
    "/resource/repository/defaultBranch",
    "/repository",
    "/defaultBranch",
    "/files",
    "/ping",
    "/image",
    "/tag",
    "/push_data/tag",
    "/repository/repo_name",
    "/type",
    "/event_data/resources",
    "/event_data/resources/0/resource_url",
    "/event_data/resources/0/tag",
    "/event_data/repository/repo_full_name",
    "/resource_url",
    "/total_commits_count",
];

const HEADERS: &[&str] = &[
    "x-github-event",
    "x-gitlab-event",
    "x-gitea-event",
    "x-gogs-event",
    "x-event-key",
    "x-vss-activityid",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-capstan-signature",
    "x-gitlab-token",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gogs-signature",
    "x-hook-uuid",
    "authorization",
    "x-github-delivery",
    "x-request-uuid",
    "content-type",
];

const HEADER_VALUES: &[&str] = &[
    "push",
    "ping",
    "create",
    "delete",
    "Push Hook",
    "Tag Push Hook",
    "System Hook",
    "repo:push",
    "repo:refs_changed",
    "diagnostics:ping",
    "git.push",
    "sha256=",
    "sha256=zz",
    "Basic dXNlcjpwYXNz",
    "Basic !!",
    "Basic ",
    "",
    " ",
    "application/json",
];

/// Set `ptr` in `v`, creating objects (and arrays for numeric segments) on the way.
fn set_pointer(v: &mut Value, ptr: &str, new: Value) {
    let mut cur = v;
    let parts: Vec<&str> = ptr.split('/').skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if let Ok(idx) = part.parse::<usize>() {
            if !cur.is_array() {
                *cur = Value::Array(Vec::new());
            }
            let a = cur.as_array_mut().expect("an array");
            while a.len() <= idx {
                a.push(json!({}));
            }
            cur = &mut a[idx];
        } else {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .expect("an object")
                .entry(part.to_string())
                .or_insert(json!({}));
        }
        if last {
            *cur = new;
            return;
        }
    }
}

fn webhook_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => inputs::bytes(),
        5 => (vec((select(POINTERS), inputs::value()), 0..10), vec(mutation(&["{", "}", "\"", ",", "[", "]", "\\u", "null", "1e999", "\u{0}"]), 0..3))
            .prop_map(|(fields, muts)| {
                let mut v = json!({});
                for (p, x) in fields {
                    set_pointer(&mut v, p, x);
                }
                mutate(v.to_string().into_bytes(), &muts)
            }),
    ]
}

/// Inputs of [`webhook`].
pub fn webhook_input() -> impl Strategy<Value = WebhookInput> {
    (
        0..Provider::ALL.len(),
        vec(
            (
                select(HEADERS),
                prop_oneof![
                    4 => select(HEADER_VALUES).prop_map(str::to_string),
                    1 => "[ -~]{0,80}",
                    1 => any::<String>(),
                ],
            ),
            0..5,
        ),
        webhook_body(),
        vec(any::<u8>(), 0..16),
        any::<bool>(),
        prop::option::of("[ -~]{0,16}"),
        any::<bool>(),
    )
}

/// Webhook deliveries: the signature or token check of every provider (HMAC-SHA256
/// headers, tokens, Basic auth, the URL token), then the payload of every provider
/// (forges' pushes and pings, registries' image pushes), then what a push says.
pub fn webhook((provider, headers, body, secret, uuid, token, sign): &WebhookInput) {
    let provider = Provider::ALL[*provider];
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.append(HeaderName::from_static(name), v);
        }
    }
    if *sign {
        // a correct signature under every header name that carries one
        let sig = verify::sign(secret, body);
        let bare = sig.trim_start_matches("sha256=").to_string();
        for (name, v) in [
            ("x-hub-signature-256", &sig),
            ("x-hub-signature", &sig),
            ("x-capstan-signature", &sig),
            ("x-gitea-signature", &bare),
            ("x-gogs-signature", &bare),
        ] {
            map.insert(
                name,
                HeaderValue::from_str(v).expect("hex is a header value"),
            );
        }
    }
    let secrets = Secrets {
        secret: Some(secret.clone()),
        hook_uuid: uuid.then(|| b"{uuid}".to_vec()),
    };
    let _ = verify::check(provider, &secrets, &map, body, token.as_deref());
    let _ = Provider::detect(&map);
    if let Ok(Event::Push(push)) = event::parse(provider, &map, body) {
        let _ = push.touches_head();
        let _ = push.revisions();
    }
}

// ---------------------------------------------------------------------------------
// selectors

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&["app", "tier", "app.kubernetes.io/name", "example.com/x", "a-b_c.d", "UP", "x/"][..]).prop_map(str::to_string),
        1 => "[a-zA-Z0-9./_-]{0,70}",
        1 => any::<String>(),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&["web", "", "a.b", "-x", "x-", "v1_2"][..]).prop_map(str::to_string),
        1 => "[a-zA-Z0-9._-]{0,70}",
        1 => any::<String>(),
    ]
}

fn requirement() -> impl Strategy<Value = String> {
    let ws = || select(&["", " ", "  ", "\t"][..]);
    prop_oneof![
        (
            label_key(),
            ws(),
            select(&["=", "==", "!="][..]),
            ws(),
            label_value()
        )
            .prop_map(|(k, w, op, w2, v)| format!("{k}{w}{op}{w2}{v}")),
        (
            label_key(),
            ws(),
            select(&["in", "notin", "In", "exists", ""][..]),
            ws(),
            vec(label_value(), 0..4),
            any::<bool>()
        )
            .prop_map(|(k, w, op, w2, vs, close)| {
                format!(
                    "{k}{w}{op}{w2}({}{}",
                    vs.join(","),
                    if close { ")" } else { "" }
                )
            }),
        label_key(),
        label_key().prop_map(|k| format!("!{k}")),
    ]
}

/// A label selector from the grammar (`k=v`, `k in (a,b)`, `!k`, …), mutated.
pub fn label_selector_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        6 => (
            vec(requirement(), 0..5),
            vec(mutation(&["(", ")", ",", "!", "=", " ", "in", "notin", "\u{0}", "é", "/"]), 0..3),
        )
            .prop_map(|(reqs, muts)| lossy(mutate(reqs.join(",").into_bytes(), &muts))),
    ]
}

fn labelled_object() -> impl Strategy<Value = Value> {
    (vec((label_key(), label_value()), 0..4), inputs::value()).prop_map(|(labels, rest)| {
        let labels: serde_json::Map<String, Value> = labels
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        json!({"metadata": {"name": "web", "namespace": "default", "labels": labels}, "spec": rest})
    })
}

/// Inputs of [`label_selector`]: the selector, a `metav1.LabelSelector` object and an
/// object to match.
pub type LabelInput = (String, Value, Value);

/// Inputs of [`label_selector`].
pub fn label_selector_input() -> impl Strategy<Value = LabelInput> {
    let expression = (
        label_key(),
        select(&["In", "NotIn", "Exists", "DoesNotExist", "Gt", ""][..]),
        prop::option::of(vec(label_value(), 0..3)),
    )
        .prop_map(|(k, op, vs)| {
            let mut e = json!({"key": k, "operator": op});
            if let Some(vs) = vs {
                e["values"] = json!(vs);
            }
            e
        });
    let selector_object = prop_oneof![
        3 => (vec((label_key(), label_value()), 0..3), vec(expression, 0..3)).prop_map(|(ml, me)| {
            let ml: serde_json::Map<String, Value> = ml.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            json!({"matchLabels": ml, "matchExpressions": me})
        }),
        1 => inputs::value(),
    ];
    (label_selector_text(), selector_object, labelled_object())
}

/// Label selectors: the API server's `labelSelector` parameter and
/// `matchLabels`/`matchExpressions` objects, matched against an object; and the
/// Capstan API's `label` filter.
pub fn label_selector((text, object, target): &LabelInput) {
    if let Ok(s) = LabelSelector::parse(text) {
        let _ = s.matches(target);
    }
    if let Ok(s) = LabelSelector::from_object(object) {
        let _ = s.matches(target);
    }
    let _ = ListQuery::parse(&[("label".to_string(), text.clone())]);
}

/// Inputs of [`field_selector`]: the selector, the resource (group, plural) and an
/// object to match.
pub type FieldInput = (String, (&'static str, &'static str), Value);

/// Inputs of [`field_selector`].
pub fn field_selector_input() -> impl Strategy<Value = FieldInput> {
    let field = select(
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "status.phase",
            "involvedObject.kind",
            "type",
            "reason",
            "status.successful",
            "a.b",
            "",
            "metadata.",
        ][..],
    );
    let term = (
        field,
        select(&["=", "==", "!=", "", "!", "=="][..]),
        select(&[" ", ""][..]),
        label_value(),
    )
        .prop_map(|(f, op, w, v)| format!("{w}{f}{w}{op}{w}{v}"));
    let text = prop_oneof![
        1 => any::<String>(),
        5 => (vec(term, 0..4), vec(mutation(&["=", "!", ",", " ", ".", "\u{0}"]), 0..3))
            .prop_map(|(terms, muts)| lossy(mutate(terms.join(",").into_bytes(), &muts))),
    ];
    (
        text,
        select(
            &[
                ("", "pods"),
                ("", "events"),
                ("", "secrets"),
                ("", "namespaces"),
                ("batch", "jobs"),
                ("apps", "deployments"),
                ("", ""),
            ][..],
        ),
        prop_oneof![labelled_object(), inputs::value()],
    )
}

/// Field selectors: the API server's `fieldSelector` parameter for a resource, matched
/// against an object.
pub fn field_selector((text, (group, plural), target): &FieldInput) {
    if let Ok(s) = FieldSelector::parse(text, group, plural) {
        let _ = s.required_name();
        let _ = s.matches(target);
    }
}

// ---------------------------------------------------------------------------------
// API server request bodies

/// Inputs of [`request_body`]: the content type and the body.
pub type BodyInput = (&'static str, Vec<u8>);

fn crd_body() -> impl Strategy<Value = Value> {
    (
        select(&["widgets.example.com", "widgets", "", "Widgets.example.com"][..]),
        select(&["Namespaced", "Cluster", "", "x"][..]),
        vec(
            (
                select(&["v1", "v1beta1", "", "V1"][..]),
                any::<bool>(),
                any::<bool>(),
                prop::option::of(inputs::value()),
            ),
            0..3,
        ),
        inputs::value(),
    )
        .prop_map(|(name, scope, versions, extra)| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|(v, served, storage, schema)| {
                    let mut o = json!({"name": v, "served": served, "storage": storage});
                    if let Some(s) = schema {
                        o["schema"] = json!({"openAPIV3Schema": s});
                    }
                    o
                })
                .collect();
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {
                    "group": "example.com",
                    "scope": scope,
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": versions,
                    "x": extra,
                },
            })
        })
}

/// Inputs of [`request_body`].
pub fn request_body_input() -> impl Strategy<Value = BodyInput> {
    let content_type = select(
        &[
            "application/json",
            "application/yaml",
            "",
            "text/yaml",
            "application/vnd.kubernetes.protobuf",
            "application/json; charset=utf-8",
            "x/y",
        ][..],
    );
    let body = prop_oneof![
        1 => inputs::bytes(),
        2 => inputs::manifest_text(false).prop_map(String::into_bytes),
        2 => inputs::manifest_text(true).prop_map(String::into_bytes),
        2 => (prop_oneof![inputs::object(), crd_body()], vec(mutation(&["{", "}", "\"", ",", "\\u", "null", "1e999"]), 0..2))
            .prop_map(|(v, muts)| mutate(v.to_string().into_bytes(), &muts)),
    ];
    (content_type, body)
}

/// The API server's request bodies: decoded by content type (JSON, or YAML), then the
/// checks a create runs on the object: metadata, the built-in kinds' typed decoding
/// and rules, a CRD's validation and the resources it defines, a custom resource's
/// schema, defaults and pruning.
pub fn request_body((content_type, body): &BodyInput) {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    let Ok(obj) = request::decode_object(&headers, body) else {
        return;
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let registry = registry();
    if let Some(def) = registry.by_kind(api_version, kind) {
        let _ = validation::validate_metadata(&def, &obj);
        let _ = validation::validate_builtin(&def, &obj, None);
        let _ = validation::validate_builtin(&def, &obj, Some(&obj));
    }
    let (group, _) = split_api_version(api_version);
    let _ = validation::decode_builtin(group, kind, &obj);
    if kind == "CustomResourceDefinition" {
        let _ = crd::validate(&obj, None);
        let _ = crd::validate(&obj, Some(&obj));
        let _ = crd::established_status(&obj);
        let _ = crd::storage_version(&obj);
        for def in crd::resource_defs(&obj) {
            if let Some(schema) = def.custom_schema() {
                let mut o = obj.clone();
                crd::apply_defaults(schema, &mut o);
                let _ = crd::prune(schema, &mut o);
                crd::drop_nulls(schema, &mut o);
                let _ = crd::validate_object(schema, &o);
            }
        }
    } else if let Some(schema) = obj.pointer("/spec/x") {
        // a generated schema against the object itself
        let mut o = obj.clone();
        crd::apply_defaults(schema, &mut o);
        let _ = crd::prune(schema, &mut o);
        let _ = crd::validate_object(schema, &o);
    }
}

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

/// Inputs of [`request_query`]: the query string and header values.
pub type QueryInput = (String, Vec<(&'static str, String)>);

/// Inputs of [`request_query`].
pub fn request_query_input() -> impl Strategy<Value = QueryInput> {
    let param = (
        select(&["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "watch", "timeoutSeconds", "dryRun", "fieldManager", "fieldValidation", "force", "propagationPolicy", "gracePeriodSeconds", "sendInitialEvents", "allowWatchBookmarks", "includeObject", "x"][..]),
        prop_oneof![
            3 => select(&["", "All", "true", "1", "0", "-1", "18446744073709551616", "Strict", "Warn", "Ignore", "Foreground", "Orphan", "Background", "NotOlderThan", "Exact", "app%3Dweb", "%", "%zz", "a+b", "kubectl", "Object"][..]).prop_map(str::to_string),
            1 => "[ -~]{0,20}",
        ],
    )
        .prop_map(|(k, v)| format!("{k}={v}"));
    let query = prop_oneof![
        1 => any::<String>(),
        4 => vec(param, 0..5).prop_map(|ps| ps.join("&")),
    ];
    let header = (
        select(&["accept", "content-type", "user-agent"][..]),
        prop_oneof![
            3 => select(&["application/json;as=Table;v=v1;g=meta.k8s.io", "application/json", "application/vnd.kubernetes.protobuf", "*/*", "application/yaml", "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml", "kubectl/v1.32 (linux)", "", ";;;", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"][..]).prop_map(str::to_string),
            1 => "[ -~]{0,60}",
        ],
    );
    (query, vec(header, 0..3))
}

/// The API server's request parameters: the query string, list, write, delete and
/// watch options, content negotiation (`Accept`) and the patch type.
pub fn request_query((query, headers): &QueryInput) {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.append(HeaderName::from_static(name), v);
        }
    }
    let _ = request::patch_kind(&map);
    let _ = request::content_type(&map);
    let Ok(q) = Query::parse(Some(query.as_str())) else {
        return;
    };
    let _ = q.list_options("", "pods");
    let _ = q.list_options("apps", "deployments");
    let _ = q.write_options(&map);
    let _ = q.delete_options();
    let _ = request::WatchParams::from_query(&q);
    let _ = request::negotiate(&map, &q);
    let _ = request::apply_manager(&q);
}

// ---------------------------------------------------------------------------------
// patches

/// Inputs of [`patch`]: the stored object, the patch type, the patch, and the schema.
pub type PatchInput = (Value, PatchType, Value, usize);

fn json_patch_ops() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        4 => vec(prop_oneof![inputs::key(), select(&["0", "1", "-", "~0", "~1", "00", "18446744073709551616"][..]).prop_map(str::to_string)], 0..5)
            .prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect::<String>()),
        1 => "[ -~]{0,20}",
    ];
    let op = (
        select(&["add", "remove", "replace", "move", "copy", "test", "x"][..]),
        path.clone(),
        prop::option::of(path),
        prop::option::of(inputs::value()),
    )
        .prop_map(|(op, path, from, value)| {
            let mut o = json!({"op": op, "path": path});
            if let Some(f) = from {
                o["from"] = json!(f);
            }
            if let Some(v) = value {
                o["value"] = v;
            }
            o
        });
    vec(op, 0..6).prop_map(Value::Array)
}

fn strategic_patch() -> impl Strategy<Value = Value> {
    let container = (
        prop::option::of(select(&["web", "side", ""][..])),
        prop::option::of(select(&["replace", "delete", "merge", "x"][..])),
        prop::option::of(inputs::value()),
    )
        .prop_map(|(name, directive, image)| {
            let mut c = json!({});
            if let Some(n) = name {
                c["name"] = json!(n);
            }
            if let Some(d) = directive {
                c["$patch"] = json!(d);
            }
            if let Some(i) = image {
                c["image"] = i;
            }
            c
        });
    (
        vec(container, 0..4),
        prop::option::of(vec(inputs::value(), 0..3)),
        prop::option::of(inputs::value()),
        prop::option::of(inputs::value()),
        inputs::value(),
    )
        .prop_map(|(containers, order, retain, delete_from, extra)| {
            let mut spec = json!({"template": {"spec": {"containers": containers}}});
            if let Some(o) = order {
                spec["template"]["spec"]["$setElementOrder/containers"] = Value::Array(o);
            }
            if let Some(r) = retain {
                spec["$retainKeys"] = r;
            }
            let mut p = json!({"spec": spec, "x": extra});
            if let Some(d) = delete_from {
                p["metadata"] = json!({"$deleteFromPrimitiveList/finalizers": d});
            }
            p
        })
}

fn stored_object() -> impl Strategy<Value = Value> {
    (
        inputs::object(),
        vec((select(&["web", "side", "x"][..]), inputs::scalar()), 0..3),
        prop::option::of(vec(inputs::scalar(), 0..3)),
    )
        .prop_map(|(mut o, containers, finalizers)| {
            let cs: Vec<Value> = containers
                .into_iter()
                .map(|(n, i)| json!({"name": n, "image": i, "ports": [{"containerPort": 80}]}))
                .collect();
            if let Some(m) = o.as_object_mut() {
                m.insert(
                    "spec".into(),
                    json!({"template": {"spec": {"containers": cs}}}),
                );
            }
            if let Some(f) = finalizers
                && let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.insert("finalizers".into(), Value::Array(f));
            }
            o
        })
}

/// Inputs of [`patch`].
pub fn patch_input() -> impl Strategy<Value = PatchInput> {
    (
        stored_object(),
        select(&[PatchType::Json, PatchType::Merge, PatchType::Strategic][..]),
        prop_oneof![
            2 => json_patch_ops(),
            2 => strategic_patch(),
            1 => inputs::value(),
        ],
        0..4usize,
    )
}

fn schema_for(i: usize, custom: &Value) -> Schema<'_> {
    match i {
        0 => Schema::Builtin {
            group: "apps",
            kind: "Deployment",
        },
        1 => Schema::Builtin {
            group: "",
            kind: "Pod",
        },
        2 => Schema::Custom(None),
        _ => Schema::Custom(Some(custom)),
    }
}

fn custom_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "template": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "containers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object"}},
                }}}},
                "x": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "tags": {"type": "array", "x-kubernetes-list-type": "set"},
            }},
        },
    })
}

/// Patches: JSON patch, merge patch and strategic merge patch (with kubectl's
/// directives) applied to a stored object under a built-in or custom schema.
pub fn patch((doc, kind, body, schema): &PatchInput) {
    let custom = custom_schema();
    let p = Patch { kind: *kind, body };
    let _ = p.apply_to(doc, &schema_for(*schema, &custom));
}

// ---------------------------------------------------------------------------------
// server-side apply and managed fields

/// Inputs of [`managed_fields`]: the live object's managedFields entries, the live
/// object, the applied configuration, the manager, force, status scope, the schema.
pub type ManagedInput = (Vec<Value>, Value, Value, &'static str, bool, bool, usize);

fn fields_v1() -> impl Strategy<Value = Value> {
    let leaf_key = prop_oneof![
        4 => select(&["f:metadata", "f:spec", "f:name", "f:labels", "f:template", "f:containers", "f:image", "f:finalizers", "k:{\"name\":\"web\"}", "k:{\"name\":\"side\"}", "k:{\"containerPort\":80,\"protocol\":\"TCP\"}", "v:\"x\"", "i:0", ".", "k:", "k:{", "v:", "i:-1", "i:99999999999999999999", "z:x", "f"][..]).prop_map(str::to_string),
        1 => "[fkvi]:[ -~]{0,12}",
    ];
    prop_oneof![Just(json!({})), Just(json!(null)), Just(json!("x"))].prop_recursive(
        5,
        40,
        5,
        move |inner| {
            vec((leaf_key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect()))
        },
    )
}

/// Inputs of [`managed_fields`].
pub fn managed_fields_input() -> impl Strategy<Value = ManagedInput> {
    let entry = (
        select(&["kubectl", "capstan", "other", ""][..]),
        select(&["Apply", "Update", "x"][..]),
        prop::option::of(select(&["status", ""][..])),
        prop_oneof![5 => fields_v1(), 1 => inputs::value()],
    )
        .prop_map(|(m, op, sub, f)| {
            let mut e = json!({"manager": m, "operation": op, "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": f});
            if let Some(s) = sub {
                e["subresource"] = json!(s);
            }
            e
        });
    (
        vec(entry, 0..4),
        prop_oneof![3 => stored_object(), 1 => inputs::value()],
        prop_oneof![3 => stored_object(), 1 => strategic_patch(), 1 => inputs::value()],
        select(&["capstan", "kubectl", "other"][..]),
        any::<bool>(),
        any::<bool>(),
        0..4usize,
    )
}

/// Managed fields and server-side apply: `metadata.managedFields` sent by a client or
/// stored (FieldsV1 decoded), an apply merged into the live object with conflicts and
/// removals, and an ordinary write's ownership.
pub fn managed_fields((entries, live, config, manager, force, status, schema): &ManagedInput) {
    let custom = custom_schema();
    for e in entries {
        if let Some(f) = e.get("fieldsV1")
            && let Ok(set) = FieldSet::from_fields_v1(f)
        {
            let _ = set.paths();
            let _ = FieldSet::from_fields_v1(&set.to_fields_v1());
        }
    }
    let mut live = live.clone();
    if let Some(o) = live.as_object_mut() {
        let meta = o.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert("managedFields".into(), Value::Array(entries.clone()));
        }
    }
    let w = Writer {
        manager,
        api_version: "apps/v1",
        scope: if *status {
            Scope::Status
        } else {
            Scope::Main {
                status_subresource: true,
            }
        },
        schema: schema_for(*schema, &custom),
    };
    let gr = GroupResource::new("apps", "deployments");
    let now = "2026-01-01T00:00:00Z";
    let _ = managed::apply(Some(&live), config, &w, *force, (&gr, "web"), now);
    let _ = managed::apply(None, config, &w, *force, (&gr, "web"), now);
    let mut new = config.clone();
    managed::track_update(Some(&live), &mut new, &w, now);
    let mut new = config.clone();
    managed::track_update(None, &mut new, &w, now);
}
