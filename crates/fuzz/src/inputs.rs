//! Input generators: random bytes, and structure-aware inputs (Kubernetes-shaped JSON
//! values written as YAML or JSON and then mutated, selectors from their grammar, JSON
//! patches, webhook payloads) that reach past the first syntax check.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

/// Keys Kubernetes objects, patches, managed fields and values files use, so that
/// generated maps hit the fields the code looks at.
pub const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "managedFields",
    "generateName",
    "resourceVersion",
    "spec",
    "status",
    "template",
    "containers",
    "initContainers",
    "image",
    "ports",
    "containerPort",
    "protocol",
    "env",
    "value",
    "replicas",
    "selector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "images",
    "newName",
    "newTag",
    "digest",
    "resources",
    "repository",
    "tag",
    "registry",
    "data",
    "items",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "f:metadata",
    "f:spec",
    "f:name",
    "k:{\"name\":\"web\"}",
    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
    "v:\"x\"",
    "i:0",
    ".",
    "fieldsV1",
    "manager",
    "operation",
    "",
];

/// Scalars that mean something somewhere (names, images, refs, YAML's special words).
pub const WORDS: &[&str] = &[
    "v1",
    "apps/v1",
    "kustomize.config.k8s.io/v1beta1",
    "kustomize.toolkit.fluxcd.io/v1",
    "Deployment",
    "ConfigMap",
    "Kustomization",
    "Namespace",
    "CustomResourceDefinition",
    "List",
    "web",
    "default",
    "nginx",
    "nginx:1.25",
    "docker.io/library/nginx:1.25@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "ghcr.io/acme/app",
    "refs/heads/main",
    "refs/tags/v1.0.0",
    "0000000000000000000000000000000000000000",
    "https://github.com/acme/app.git",
    "git@github.com:acme/app.git",
    "replace",
    "delete",
    "merge",
    "Apply",
    "Update",
    "In",
    "NotIn",
    "Exists",
    "TCP",
    "true",
    "null",
    "~",
    "0x1F",
    "1e400",
    ".inf",
    "-.nan",
    "2001-12-14t21:59:43.10-05:00",
    "{\"$imagepolicy\": \"ns:policy\"}",
    "",
    "a.b.c",
    "../../etc/passwd",
];

/// A scalar JSON value.
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => select(WORDS).prop_map(|s| Value::String(s.to_string())),
        1 => any::<String>().prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ]
}

/// A key: mostly from [`KEYS`].
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(KEYS).prop_map(str::to_string),
        1 => "[a-z$./:{}\"]{0,12}",
    ]
}

/// A Kubernetes-shaped JSON value, up to a few levels deep.
pub fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object with `apiVersion`, `kind` and `metadata`, and generated fields beside.
pub fn object() -> impl Strategy<Value = Value> {
    (
        select(&["v1", "apps/v1", "batch/v1", "example.com/v1", "", "/"][..]),
        select(
            &[
                "ConfigMap",
                "Deployment",
                "Pod",
                "Job",
                "Namespace",
                "Widget",
                "List",
            ][..],
        ),
        select(&["web", "", "a.b", "-x", "UPPER"][..]),
        prop::option::of(select(&["default", "", "kube-system", "x/y"][..])),
        vec((key(), value()), 0..5),
    )
        .prop_map(|(api, kind, name, ns, rest)| {
            let mut metadata = Map::new();
            metadata.insert("name".into(), name.into());
            if let Some(ns) = ns {
                metadata.insert("namespace".into(), ns.into());
            }
            let mut m = Map::new();
            m.insert("apiVersion".into(), api.into());
            m.insert("kind".into(), kind.into());
            m.insert("metadata".into(), Value::Object(metadata));
            for (k, v) in rest {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

/// Write `v` as block YAML (strings quoted only when they must be, in a few styles).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    write_yaml(v, 0, &mut out);
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@'));
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn yaml_key(k: &str) -> String {
    yaml_scalar(&Value::String(k.to_string()))
}

fn write_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                match v {
                    Value::Object(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", yaml_key(k)));
                        write_yaml(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", yaml_key(k)));
                        write_yaml(v, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{}: {}\n", yaml_key(k), flow(v))),
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match item {
                    Value::Object(c) if !c.is_empty() => {
                        let mut inner = String::new();
                        write_yaml(item, indent + 2, &mut inner);
                        // `- ` takes the place of the first line's indentation
                        out.push_str(&format!(
                            "{pad}- {}",
                            &inner[(indent + 2).min(inner.len())..]
                        ));
                    }
                    Value::Array(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        write_yaml(item, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", flow(item))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", flow(other))),
    }
}

fn flow(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(_) | Value::Array(_) => v.to_string(),
        s => yaml_scalar(s),
    }
}

/// Pieces of YAML syntax a mutation inserts.
pub const YAML_BITS: &[&str] = &[
    "---\n",
    "...\n",
    "%YAML 1.2\n---\n",
    "%TAG ! tag:example.com,2000:\n",
    "&a ",
    "*a",
    "&b [*a, *a, *a, *a]",
    "<<: *a\n",
    "!!str ",
    "!!binary ",
    "!!map ",
    "!custom ",
    "? ",
    ": ",
    "- ",
    "|-\n  ",
    ">\n  ",
    "|2+\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "\\",
    "\\u0000",
    "\\x",
    "#",
    " # comment\n",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u{feff}",
    "\u{0}",
    "\u{85}",
    "\u{2028}",
    "é",
    "  ",
    "        ",
    "~",
    "null",
    "1e400",
    "-",
    "$imagepolicy",
    "# {\"$imagepolicy\": \"ns:policy\"}",
    "# {\"$imagepolicy\": \"ns:policy:tag\"}",
    "# {\"$imagepolicy\": ",
    "images:\n- name: nginx\n  newTag: \"1\"\n",
    "image: nginx:1.25\n",
];

/// One edit of a text.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Insert a piece of syntax at a position.
    Insert(usize, &'static str),
    /// Delete a range (position, length).
    Delete(usize, usize),
    /// Copy a range (position, length) to another position.
    Duplicate(usize, usize, usize),
    /// Replace one byte.
    Byte(usize, u8),
    /// Cut the text at a position.
    Truncate(usize),
}

/// A mutation; positions are taken modulo the text's length.
pub fn mutation(bits: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), select(bits)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        2 => (any::<usize>(), 1..16usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (any::<usize>(), 1..64usize, any::<usize>()).prop_map(|(p, n, to)| Mutation::Duplicate(p, n, to)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Byte(p, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Apply mutations to bytes.
pub fn mutate(mut text: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = text.len();
        let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
        match *m {
            Mutation::Insert(p, bit) => {
                let p = at(p);
                text.splice(p..p, bit.bytes());
            }
            Mutation::Delete(p, n) => {
                let p = at(p);
                let end = (p + n).min(len);
                text.drain(p..end);
            }
            Mutation::Duplicate(p, n, to) => {
                let p = at(p);
                let end = (p + n).min(len);
                let piece: Vec<u8> = text[p..end].to_vec();
                let to = at(to);
                text.splice(to..to, piece);
            }
            Mutation::Byte(p, b) => {
                if len > 0 {
                    text[p % len] = b;
                }
            }
            Mutation::Truncate(p) => text.truncate(at(p)),
        }
    }
    text
}

/// Bytes as text, the way a reader of a UTF-8 file would get them (invalid bytes
/// replaced), so mutated inputs stay strings.
pub fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Random bytes, mostly short.
pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 0..1024),
    ]
}

/// Multi-document YAML (or JSON when `json`) of generated objects, mutated.
pub fn documents(json: bool) -> impl Strategy<Value = String> {
    (
        vec(prop_oneof![3 => object(), 1 => value()], 1..4),
        vec(mutation(YAML_BITS), 0..6),
        any::<bool>(),
    )
        .prop_map(move |(docs, muts, separators_first)| {
            let text = if json {
                docs.first().map(Value::to_string).unwrap_or_default()
            } else {
                let mut t = String::new();
                for (i, d) in docs.iter().enumerate() {
                    if i > 0 || separators_first {
                        t.push_str("---\n");
                    }
                    t.push_str(&to_yaml(d));
                }
                t
            };
            lossy(mutate(text.into_bytes(), &muts))
        })
}

/// Deeply nested text: flow sequences and mappings, block mappings and sequences,
/// aliases of aliases (the shapes that exhaust a recursive parser's stack or a
/// document's node budget), up to a few thousand levels.
pub fn nested() -> impl Strategy<Value = String> {
    (0..6usize, 1..4000usize, any::<bool>()).prop_map(|(style, depth, close)| {
        let (open, shut) = match style {
            0 => ("[".repeat(depth), "]".repeat(depth)),
            1 => ("{\"a\":".repeat(depth), format!("1{}", "}".repeat(depth))),
            2 => ("{a: ".repeat(depth), format!("1{}", "}".repeat(depth))),
            3 => (
                (0..depth.min(400))
                    .map(|i| format!("{}a:\n", " ".repeat(i)))
                    .collect(),
                format!("{}1\n", " ".repeat(depth.min(400))),
            ),
            4 => ("- ".repeat(depth), "1\n".to_string()),
            _ => {
                // a: &a0 [x, x] / b: &a1 [*a0, *a0] ... (a billion laughs)
                let mut t = String::from("a0: &a0 [x, x, x, x, x, x, x, x]\n");
                for i in 1..depth.min(40) {
                    let p = i - 1;
                    t.push_str(&format!(
                        "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
                    ));
                }
                (t, String::new())
            }
        };
        if close { open + &shut } else { open }
    })
}

/// Text for a YAML or JSON parser: random bytes (as text), pieces of syntax, deep
/// nesting, or mutated documents.
pub fn manifest_text(json: bool) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => bytes().prop_map(lossy),
        1 => vec(select(YAML_BITS), 0..24).prop_map(|bits| bits.concat()),
        1 => nested(),
        8 => documents(json),
    ]
}
