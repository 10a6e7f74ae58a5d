//! The generator of `generated.rs`, and the test that keeps it current.
//!
//! It reads k8s-pb's source (prost's output: one struct per message, a `#[prost(..)]`
//! attribute per field) and, for every message reachable from a kind this server takes
//! as protobuf, writes a [`ToJson`](super::json::ToJson) impl with one line per field.
//! prost names a field in snake case (`clusterIPs` becomes `cluster_ips`, `hostIPC` `host_ipc`), which loses
//! the JSON name; the JSON name is taken back from k8s-openapi's schema of the same type
//! (the property whose letters and digits, case aside, are the field's). A field k8s-pb
//! has and the schema lacks (a newer Kubernetes) gets its name in lower camel case,
//! marked in the generated file.
//!
//! Regenerate after upgrading k8s-pb or k8s-openapi:
//! `CAPSTAN_REGENERATE=1 cargo nextest run -p capstan-apiserver generated_conversions_are_current`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Messages whose JSON form is not their shape: written by hand in `json.rs`.
const HAND_WRITTEN: &[&str] = &[
    "apimachinery::pkg::util::intstr::IntOrString",
    "apimachinery::pkg::api::resource::Quantity",
    "apimachinery::pkg::apis::meta::v1::Time",
    "apimachinery::pkg::apis::meta::v1::MicroTime",
    "apimachinery::pkg::apis::meta::v1::FieldsV1",
    "apimachinery::pkg::runtime::RawExtension",
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::Json",
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrArray",
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrBool",
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrStringArray",
    "api::authentication::v1::ExtraValue",
    "api::authorization::v1::ExtraValue",
];

/// Messages with a JSON form of their own that no kind taken here uses yet: reaching
/// one fails the generator, so it gets a hand-written conversion first.
const NOT_WRITTEN: &[&str] = &["apimachinery::pkg::apis::meta::v1::Duration"];

/// One field of a prost struct.
struct PbField {
    /// The Rust identifier (`r#ref` for `$ref`).
    ident: String,
    /// The `#[prost(..)]` attribute's tokens.
    attr: String,
    /// The field's type.
    ty: syn::Type,
}

/// k8s-pb's `src` folder, asked of `cargo metadata`.
fn k8s_pb_src() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "k8s-pb")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-pb is a dependency");
    Path::new(manifest).parent().expect("a folder").join("src")
}

/// Every prost message of k8s-pb, by its path in the crate (`api::core::v1::Pod`).
fn read_messages(src: &Path) -> BTreeMap<String, Vec<PbField>> {
    let mut messages = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("k8s-pb's folders") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.file_name().is_none_or(|n| n != "mod.rs") {
                continue;
            }
            let module: Vec<String> = path
                .parent()
                .and_then(|p| p.strip_prefix(src).ok())
                .expect("inside src")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let text = std::fs::read_to_string(&path).expect("k8s-pb's source");
            let file = syn::parse_file(&text).expect("k8s-pb's source parses");
            for item in file.items {
                let syn::Item::Struct(s) = item else { continue };
                let is_message = s.attrs.iter().any(|a| {
                    a.path().is_ident("derive") && quote_tokens(&a.meta).contains("Message")
                });
                if !is_message {
                    continue;
                }
                let fields = s
                    .fields
                    .iter()
                    .filter_map(|f| {
                        let attr = f.attrs.iter().find(|a| a.path().is_ident("prost"))?;
                        Some(PbField {
                            ident: f.ident.as_ref()?.to_string(),
                            attr: quote_tokens(&attr.meta),
                            ty: f.ty.clone(),
                        })
                    })
                    .collect();
                let mut full = module.clone();
                full.push(s.ident.to_string());
                messages.insert(full.join("::"), fields);
            }
        }
    }
    messages
}

/// The tokens inside an attribute's parentheses (`string , optional , tag = "1"`).
fn quote_tokens(meta: &syn::Meta) -> String {
    meta.require_list()
        .map(|l| l.tokens.to_string())
        .unwrap_or_default()
}

/// The message a field's type holds (inside `Option`, `Vec`, `Box`, `BTreeMap`'s
/// value), as a path in k8s-pb, resolved from the module `module`.
fn message_of(ty: &syn::Type, module: &[&str]) -> Option<String> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if matches!(
        last.ident.to_string().as_str(),
        "Option" | "Vec" | "Box" | "BTreeMap"
    ) {
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        let syn::GenericArgument::Type(inner) = args.args.last()? else {
            return None;
        };
        return message_of(inner, module);
    }
    let mut path: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    let segs: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    for (i, seg) in segs.iter().enumerate() {
        if seg == "super" {
            path.pop();
        } else {
            path.extend(segs[i..].iter().cloned());
            break;
        }
    }
    Some(path.join("::"))
}

/// Letters and digits, lower case: how a prost field and a JSON property are matched.
fn letters(s: &str) -> String {
    s.trim_start_matches("r#")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn lower_camel(ident: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in ident.trim_start_matches("r#").chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a message held by a field the parent's schema does not name is embedded:
/// most of its fields are the parent's properties.
fn is_inlined(fields: &[PbField], parent: &serde_json::Map<String, Value>) -> bool {
    let matching = fields
        .iter()
        .filter(|f| parent.keys().any(|p| letters(p) == letters(&f.ident)))
        .count();
    !fields.is_empty() && matching * 2 > fields.len()
}

/// Fail when the schema says a field is a scalar or a list where k8s-pb has a message
/// with no hand-written conversion: that message's JSON is not its shape (a Go type with
/// a marshaller of its own, or a named slice), and needs a conversion in `json.rs`.
fn check_shape(
    path: &str,
    field: &str,
    message: &str,
    attr: &str,
    schema: &Value,
    definitions: &BTreeMap<String, Value>,
) {
    if HAND_WRITTEN.contains(&message) {
        return;
    }
    let resolve = |s: &Value| -> Value {
        match s["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                let key = name
                    .trim_start_matches("io.k8s.")
                    .replace('-', "_")
                    .replace('.', "::")
                    .to_ascii_lowercase();
                definitions.get(&key).cloned().unwrap_or_default()
            }
            None => s.clone(),
        }
    };
    let schema = resolve(schema);
    let element = if attr.contains("btree_map") {
        resolve(&schema["additionalProperties"])
    } else if attr.contains("repeated") {
        resolve(&schema["items"])
    } else {
        schema
    };
    let ty = element["type"].as_str().unwrap_or("object");
    assert!(
        ty == "object",
        "{path}.{field}: the schema says {ty}, k8s-pb has the message {message}: give it a hand-written conversion in json.rs"
    );
}

macro_rules! roots {
    ($gen:ident, { $( ($g:literal, $k:literal) => $($seg:ident)::+ ),* $(,)? }) => {
        vec![ $( {
            $gen.subschema_for::<k8s_openapi::$($seg)::+>();
            stringify!($($seg)::+).split_whitespace().collect::<String>()
        } ),* ]
    };
}

/// The text of `generated.rs`.
fn generate() -> String {
    let src = k8s_pb_src();
    let messages = read_messages(&src);
    let mut schemas = schemars::generate::SchemaSettings::openapi3().into_generator();
    let roots: Vec<String> = protobuf_kinds!(roots, schemas);
    // a definition by the k8s-pb path it belongs to: `io.k8s.api.core.v1.Pod` is
    // `api::core::v1::Pod`, `io.k8s.apiextensions-apiserver…JSONSchemaProps` is
    // `apiextensions_apiserver::…::JsonSchemaProps`
    let definitions: BTreeMap<String, Value> = schemas
        .definitions()
        .iter()
        .map(|(name, schema)| {
            let path = name
                .trim_start_matches("io.k8s.")
                .replace('-', "_")
                .replace('.', "::");
            (path.to_ascii_lowercase(), schema.clone())
        })
        .collect();

    let version = src
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! @generated by `codegen.rs` from {version} and k8s-openapi's schemas: do not edit.\n\
         //! The JSON form of every k8s-pb message reachable from a kind taken as protobuf.\n\
         //! Regenerate: `CAPSTAN_REGENERATE=1 cargo nextest run -p capstan-apiserver \
         generated_conversions_are_current`.\n\n\
         use serde_json::Value;\n\n\
         use super::json::{{Fields, ToJson}};"
    );
    let mut seen: BTreeSet<String> = roots.iter().cloned().collect();
    let mut queue: VecDeque<String> = roots.into_iter().collect();
    // the properties of a message without a definition of its own, from the message it
    // is inlined in (`VolumeSource` in `Volume`)
    let mut inherited: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut bodies = BTreeMap::new();
    while let Some(path) = queue.pop_front() {
        assert!(
            !NOT_WRITTEN.contains(&path.as_str()),
            "{path} is reached: give it a hand-written conversion in json.rs"
        );
        let fields = messages
            .get(&path)
            .unwrap_or_else(|| panic!("k8s-pb has no message {path}"));
        let module: Vec<&str> = path.split("::").collect();
        let module = &module[..module.len() - 1];
        let properties = definitions
            .get(&path.to_ascii_lowercase())
            .and_then(|d| d["properties"].as_object())
            .or_else(|| inherited.get(&path))
            .cloned()
            .unwrap_or_default();
        let mut body = format!(
            "\nimpl ToJson for k8s_pb::{path} {{\n    fn to_json(&self) -> Value {{\n        Fields::default()\n"
        );
        for f in fields {
            let message = (f.attr.starts_with("message") || f.attr.contains("\"string, message\""))
                .then(|| message_of(&f.ty, module))
                .flatten();
            if let Some(m) = &message
                && seen.insert(m.clone())
            {
                queue.push_back(m.clone());
            }
            let matching: Vec<(&String, &Value)> = properties
                .iter()
                .filter(|(p, _)| letters(p) == letters(&f.ident))
                .collect();
            let method = if f.attr.starts_with("bytes") {
                "bytes"
            } else if f.attr.contains("\"string, bytes\"") {
                "bytes_map"
            } else {
                "field"
            };
            match matching.as_slice() {
                [(name, schema)] => {
                    if let Some(m) = &message {
                        check_shape(&path, &f.ident, m, &f.attr, schema, &definitions);
                    }
                    let _ = writeln!(body, "            .{method}({name:?}, &self.{})", f.ident);
                }
                [] if message.as_ref().is_some_and(|m| {
                    is_inlined(&messages[m], &properties) && !HAND_WRITTEN.contains(&m.as_str())
                }) =>
                {
                    // a Go struct embedded with `json:",inline"`: its fields are the parent's
                    let m = message.clone().unwrap_or_default();
                    inherited.entry(m).or_default().extend(properties.clone());
                    let _ = writeln!(body, "            .inline(&self.{})", f.ident);
                }
                [] => {
                    let _ = writeln!(
                        body,
                        "            .{method}({:?}, &self.{}) // not in k8s-openapi's schema: the name is the field's",
                        lower_camel(&f.ident),
                        f.ident
                    );
                }
                many => panic!("{path}.{}: several properties match: {many:?}", f.ident),
            }
        }
        body.push_str("            .into_value()\n    }\n}\n");
        if !HAND_WRITTEN.contains(&path.as_str()) {
            bodies.insert(path, body);
        }
    }
    for body in bodies.values() {
        out.push_str(body);
    }
    out
}

#[test]
fn generated_conversions_are_current() {
    let code = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/protobuf/generated.rs");
    if std::env::var_os("CAPSTAN_REGENERATE").is_some() {
        std::fs::write(&path, &code).expect("write generated.rs");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == code,
        "src/http/protobuf/generated.rs is not what k8s-pb and k8s-openapi give now: \
         regenerate it (CAPSTAN_REGENERATE=1 cargo nextest run -p capstan-apiserver \
         generated_conversions_are_current) and review the diff"
    );
}
