//! Flux setter markers: `# {"$imagepolicy": "NS:NAME"}` after any scalar sets it to
//! the policy's latest image — `NS:NAME` the whole reference (`name:tag`, or
//! `name:tag@digest` when the policy pins digests), `NS:NAME:name` the name,
//! `NS:NAME:tag` the tag, `NS:NAME:digest` the digest — as Flux's
//! image-automation-controller does (its fixtures are checked byte for byte, see
//! `tests/integration/image_edit.rs`). Markers naming a policy that is not given are left alone.

use std::collections::{BTreeMap, BTreeSet};

use rowan::ast::AstNode;
use yaml_edit::Scalar;

use super::yaml::{EditableFile, path_of};
use super::{EditError, FieldChange, object_of};
use crate::images::reference::ImageRef;

/// What a file must contain to hold a marker (quotes included, as Flux screens).
pub const TOKEN: &str = "\"$imagepolicy\"";

/// Which part of the reference a marker sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Whole,
    Name,
    Tag,
    Digest,
}

/// Set every marked scalar of `file` whose policy is in `policies`.
pub(crate) fn apply(
    file: &mut EditableFile,
    text: &str,
    policies: &BTreeMap<String, ImageRef>,
    changes: &mut Vec<FieldChange>,
    used: &mut BTreeSet<String>,
) -> Result<(), EditError> {
    if policies.is_empty() || !text.contains(TOKEN) {
        return Ok(());
    }
    let docs = file.documents();
    let mut marked = Vec::new();
    for m in markers(file, text, &docs)? {
        let Some(value) = policies.get(&m.policy) else {
            continue;
        };
        used.insert(m.policy.clone());
        let bad = |message: String| EditError::BadMarker {
            file: file.rel.clone(),
            line: m.line,
            message,
        };
        let scalar = marked_scalar(&m.token).ok_or_else(|| {
            bad(format!(
                "the marker for {} follows no value on its line",
                m.setter
            ))
        })?;
        let new = match m.part {
            Part::Whole => value.to_string(),
            Part::Name => value.name.clone(),
            Part::Tag => value.tag.clone().ok_or_else(|| {
                bad(format!("{}: the policy's image {value} has no tag", m.setter))
            })?,
            Part::Digest => value.digest.clone().ok_or_else(|| {
                bad(format!(
                    "{}: the policy's image {value} has no digest (turn on digest pinning in the ImagePolicy)",
                    m.setter
                ))
            })?,
        };
        marked.push((scalar, new, m.setter));
    }
    for (scalar, new, setter) in marked {
        let (doc, path) = path_of(scalar.syntax());
        let object = docs.get(doc).map(|(_, d)| object_of(d)).unwrap_or_default();
        if let Some(old) = file.set_scalar(doc, &scalar, &path, &new)? {
            changes.push(FieldChange {
                file: file.rel.clone(),
                object,
                field: path.to_string(),
                old,
                new,
                by: setter,
            });
        }
    }
    Ok(())
}

/// A marker comment of a file, parsed.
struct Found {
    token: rowan::SyntaxToken<yaml_edit::Lang>,
    line: usize,
    policy: String,
    part: Part,
    setter: String,
}

/// Every marker comment in the documents of `file` (whose text is `text`); one that
/// is not a marker's shape is an error naming the line.
fn markers(
    file: &EditableFile,
    text: &str,
    docs: &[(usize, yaml_edit::Document)],
) -> Result<Vec<Found>, EditError> {
    let mut out = Vec::new();
    for (_, doc) in docs {
        for token in doc
            .syntax()
            .descendants_with_tokens()
            .filter_map(|e| e.into_token())
            .filter(|t| {
                t.kind() == yaml_edit::SyntaxKind::COMMENT && t.text().contains("$imagepolicy")
            })
        {
            let start = u32::from(token.text_range().start()) as usize;
            let line = text[..start.min(text.len())].matches('\n').count() + 1;
            let (policy, part, setter) =
                parse_marker(token.text()).map_err(|message| EditError::BadMarker {
                    file: file.rel.clone(),
                    line,
                    message,
                })?;
            out.push(Found {
                token,
                line,
                policy,
                part,
                setter,
            });
        }
    }
    Ok(out)
}

/// `# {"$imagepolicy": "ns:name[:part]"}` → (`ns:name`, part, the setter as written).
fn parse_marker(comment: &str) -> Result<(String, Part, String), String> {
    let body = comment.trim_start_matches('#').trim();
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(body).map_err(|_| {
            format!(
                "{body:?} is not a setter marker: write {{\"$imagepolicy\": \"NAMESPACE:POLICY\"}}"
            )
        })?;
    let setter = map
        .get("$imagepolicy")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            format!("{body:?}: \"$imagepolicy\" must name a policy as \"NAMESPACE:POLICY\"")
        })?;
    let parts: Vec<&str> = setter.split(':').collect();
    let (policy, part) = match parts.as_slice() {
        [ns, name] => (format!("{ns}:{name}"), Part::Whole),
        [ns, name, "name"] => (format!("{ns}:{name}"), Part::Name),
        [ns, name, "tag"] => (format!("{ns}:{name}"), Part::Tag),
        [ns, name, "digest"] => (format!("{ns}:{name}"), Part::Digest),
        _ => {
            return Err(format!(
                "{setter:?} is not NAMESPACE:POLICY, optionally followed by :name, :tag or :digest"
            ));
        }
    };
    if policy.split(':').any(str::is_empty) {
        return Err(format!("{setter:?} is not NAMESPACE:POLICY"));
    }
    Ok((policy, part, setter.to_string()))
}

/// The scalar a marker comment sits after, on the same line.
fn marked_scalar(token: &rowan::SyntaxToken<yaml_edit::Lang>) -> Option<Scalar> {
    use yaml_edit::SyntaxKind as K;
    let mut cur = token.prev_sibling_or_token();
    while let Some(el) = cur {
        match &el {
            rowan::NodeOrToken::Token(t) if t.kind() == K::WHITESPACE => {}
            rowan::NodeOrToken::Token(_) => return None,
            rowan::NodeOrToken::Node(n) => {
                return match n.kind() {
                    K::SCALAR => Scalar::cast(n.clone()),
                    K::VALUE | K::KEY => n.children().find_map(Scalar::cast),
                    _ => None,
                };
            }
        }
        cur = el.prev_sibling_or_token();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_a_policy_and_a_part() {
        let (p, part, s) =
            parse_marker(r#"# {"$imagepolicy": "automation-ns:policy:tag"}"#).unwrap();
        assert_eq!(
            (p.as_str(), part, s.as_str()),
            (
                "automation-ns:policy",
                Part::Tag,
                "automation-ns:policy:tag"
            )
        );
        let (_, part, _) = parse_marker(r#"# {"$imagepolicy": "ns:web"}"#).unwrap();
        assert_eq!(part, Part::Whole);
        for bad in [
            r#"# {"$imagepolicy": "web"}"#,
            r#"# {"$imagepolicy": "ns:web:label"}"#,
            r#"# $imagepolicy ns:web"#,
            r#"# {"$imagepolicy": 3}"#,
        ] {
            assert!(parse_marker(bad).is_err(), "{bad}");
        }
    }
}

/// A setter marker found in a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Marker {
    /// The file, relative to the repository.
    pub file: String,
    /// Its line.
    pub line: usize,
    /// The setter as written (`ns:policy:tag`).
    pub setter: String,
}

/// Every setter marker under `root/path` (files without the token are not parsed;
/// dangling symlinks are skipped, as Flux's reader does).
pub fn scan(root: &std::path::Path, path: &std::path::Path) -> Result<Vec<Marker>, EditError> {
    let base = crate::source::confine::check_tree(root, path)?;
    let mut out = Vec::new();
    for c in super::discover(root, &base)? {
        let text = std::fs::read_to_string(&c.real).map_err(|source| EditError::Io {
            path: c.rel.clone(),
            source,
        })?;
        if !text.contains(TOKEN) {
            continue;
        }
        let file = EditableFile::parse(&c.rel, &text)?;
        let docs = file.documents();
        for m in markers(&file, &text, &docs)? {
            out.push(Marker {
                file: c.rel.clone(),
                line: m.line,
                setter: m.setter,
            });
        }
    }
    Ok(out)
}
