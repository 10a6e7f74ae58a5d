//! Kustomize `images:` entries, set as `kustomize edit set image` sets them.
//!
//! An entry is the image's when its `name` or its `newName` is the image. The entry
//! then says what the setting says: `newName` when the image is renamed, `newTag` and
//! `digest` as the new reference has them — a `digest` the new reference does not
//! have is removed (it would keep pinning the old image), and so is a `newTag` when
//! only a digest is set, as kustomize does. When no entry matches and the
//! Kustomization is the one at the edited path, an entry is added.

use std::collections::BTreeSet;

use yaml_edit::{Mapping, Scalar};

use super::yaml::{EditableFile, FieldPath, kind_name};
use super::{EditError, FieldChange, ImageSetting, object_of};

/// Whether a document is a Kustomization: its `kind`, or its file's name when it
/// has no `kind` (kustomization files often leave it out). Flux's
/// `kustomize.toolkit.fluxcd.io` Kustomization is another thing and is not one.
fn is_kustomization(file: &str, doc: &yaml_edit::Document) -> bool {
    let object = object_of(doc);
    if object
        .api_version
        .starts_with("kustomize.toolkit.fluxcd.io")
    {
        return false;
    }
    let name = file.rsplit('/').next().unwrap_or(file);
    object.kind == "Kustomization"
        || object.kind.is_empty()
            && matches!(
                name,
                "kustomization.yaml" | "kustomization.yml" | "Kustomization"
            )
}

/// Set `images` in the Kustomizations of `file`, adding an entry for those of
/// `addable` no entry matches; returns whether it holds one.
pub(crate) fn apply(
    file: &mut EditableFile,
    images: &[ImageSetting],
    addable: &[&ImageSetting],
    changes: &mut Vec<FieldChange>,
    used: &mut BTreeSet<String>,
) -> Result<bool, EditError> {
    let mut found = false;
    for (index, doc) in file.documents() {
        if !is_kustomization(&file.rel, &doc) {
            continue;
        }
        found = true;
        let Some(root) = doc.as_mapping() else {
            continue;
        };
        let mut object = object_of(&doc);
        if object.kind.is_empty() {
            object.kind = "Kustomization".into();
        }
        let list_path = FieldPath::default().key("images");
        let entries = match root.get("images") {
            None => None,
            Some(node) => {
                Some(
                    node.as_sequence()
                        .cloned()
                        .ok_or_else(|| EditError::BadImages {
                            file: file.rel.clone(),
                            field: format!("images (it is {})", kind_name(&node)),
                        })?,
                )
            }
        };
        for setting in images {
            let mut matched = false;
            if let Some(seq) = &entries {
                for (i, item) in seq.values().enumerate() {
                    let entry = item
                        .as_mapping()
                        .cloned()
                        .ok_or_else(|| EditError::BadImages {
                            file: file.rel.clone(),
                            field: format!("images[{i}]"),
                        })?;
                    let text = |k: &str| {
                        entry
                            .get(k)
                            .and_then(|n| n.as_scalar().map(Scalar::as_string))
                    };
                    let name = text("name").unwrap_or_default();
                    let is_it = setting.matches(&name)
                        || text("newName").is_some_and(|n| setting.matches(&n));
                    if !is_it {
                        continue;
                    }
                    matched = true;
                    let path = list_path.index(i, Some(name.clone()));
                    let rel = file.rel.clone();
                    let mut record = |field: &str, old: Option<String>, new: &str| {
                        if let Some(old) = old {
                            changes.push(FieldChange {
                                file: rel.clone(),
                                object: object.clone(),
                                field: path.key(field).to_string(),
                                old,
                                new: new.to_string(),
                                by: setting.image.clone(),
                            });
                        }
                    };
                    let new = &setting.new;
                    if setting.rename || entry.get("newName").is_some() && new.name != name {
                        let old = file.put(index, &entry, &path, "newName", &new.name)?;
                        record("newName", old, &new.name);
                    }
                    match &new.tag {
                        Some(tag) => {
                            let old = file.put(index, &entry, &path, "newTag", tag)?;
                            record("newTag", old, tag);
                        }
                        None if new.digest.is_some() => {
                            let old = file.remove(index, &entry, &path, "newTag");
                            record("newTag", old, "");
                        }
                        None => {}
                    }
                    match &new.digest {
                        Some(digest) => {
                            let old = file.put(index, &entry, &path, "digest", digest)?;
                            record("digest", old, digest);
                        }
                        None => {
                            let old = file.remove(index, &entry, &path, "digest");
                            record("digest", old, "");
                        }
                    }
                }
            }
            if matched {
                used.insert(setting.image.clone());
            } else if addable.iter().any(|a| a.image == setting.image) {
                add_entry(
                    file,
                    index,
                    &root,
                    entries.as_ref(),
                    setting,
                    &object,
                    changes,
                );
                used.insert(setting.image.clone());
            }
        }
    }
    Ok(found)
}

/// Add `{name, newName, newTag, digest}` for an image no entry matched.
fn add_entry(
    file: &mut EditableFile,
    doc: usize,
    root: &Mapping,
    entries: Option<&yaml_edit::Sequence>,
    setting: &ImageSetting,
    object: &super::ObjectId,
    changes: &mut Vec<FieldChange>,
) {
    let new = &setting.new;
    let mut item: Vec<(&str, String)> = vec![("name", setting.image.clone())];
    if new.name != setting.image {
        item.push(("newName", new.name.clone()));
    }
    if let Some(t) = &new.tag {
        item.push(("newTag", t.clone()));
    }
    if let Some(d) = &new.digest {
        item.push(("digest", d.clone()));
    }
    let list_path = FieldPath::default().key("images");
    let index = match entries {
        Some(seq) => {
            let n = seq.len();
            file.append_item(doc, seq, &list_path, &item);
            n
        }
        None => {
            file.insert_list(doc, root, &FieldPath::default(), "images", &item);
            0
        }
    };
    let path = list_path.index(index, Some(setting.image.clone()));
    for (k, v) in item.iter().skip(1) {
        changes.push(FieldChange {
            file: file.rel.clone(),
            object: object.clone(),
            field: path.key(k).to_string(),
            old: String::new(),
            new: v.clone(),
            by: setting.image.clone(),
        });
    }
}

/// The pinned entries of the Kustomizations in `file`; whether it holds one.
pub(crate) fn used(file: &EditableFile, out: &mut Vec<super::UsedImage>) -> bool {
    let mut found = false;
    for (_, doc) in file.documents() {
        if !is_kustomization(&file.rel, &doc) {
            continue;
        }
        found = true;
        let Some(seq) = doc.as_mapping().and_then(|m| m.get_sequence("images")) else {
            continue;
        };
        for (i, item) in seq.values().enumerate() {
            let Some(entry) = item.as_mapping() else {
                continue;
            };
            let text = |k: &str| {
                entry
                    .get(k)
                    .and_then(|n| n.as_scalar().map(Scalar::as_string))
                    .filter(|v| !v.is_empty())
            };
            let Some(name) = text("name") else { continue };
            let (tag, digest) = (text("newTag"), text("digest"));
            if tag.is_none() && digest.is_none() {
                continue;
            }
            let reference = crate::images::ImageRef {
                name: text("newName").unwrap_or_else(|| name.clone()),
                tag,
                digest,
            };
            out.push(super::UsedImage {
                field: FieldPath::default()
                    .key("images")
                    .index(i, Some(name.clone()))
                    .to_string(),
                image: name,
                reference: reference.to_string(),
                file: file.rel.clone(),
            });
        }
    }
    found
}
