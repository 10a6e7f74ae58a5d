//! Plain manifests: the `image` of every container, init container and ephemeral
//! container whose repository is the image — in any object (Deployments, CronJobs,
//! Pods, custom resources with pod templates), wherever its `containers` lists are.

use std::collections::BTreeSet;

use yaml_edit::{Scalar, YamlNode};

use super::helm::written;
use super::yaml::{EditableFile, FieldPath, item_name};
use super::{EditError, FieldChange, ImageSetting, ObjectId, object_of};
use crate::images::reference::ImageRef;

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Set `images` in the objects of `file`.
pub(crate) fn apply(
    file: &mut EditableFile,
    images: &[ImageSetting],
    changes: &mut Vec<FieldChange>,
    used: &mut BTreeSet<String>,
) -> Result<(), EditError> {
    for (index, doc) in file.documents() {
        let object = object_of(&doc);
        if object.kind.is_empty() {
            continue;
        }
        let Some(root) = doc.as_mapping() else {
            continue;
        };
        let mut found = Vec::new();
        containers(
            &YamlNode::Mapping(root.clone()),
            &FieldPath::default(),
            &mut found,
        );
        for (scalar, path) in found {
            let Ok(current) = ImageRef::parse(&scalar.as_string()) else {
                continue;
            };
            for setting in images.iter().filter(|s| s.matches(&current.name)) {
                used.insert(setting.image.clone());
                let value = written(Some(&current), setting).to_string();
                record(
                    file, index, &scalar, &path, &value, &object, setting, changes,
                )?;
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record(
    file: &mut EditableFile,
    doc: usize,
    scalar: &Scalar,
    path: &FieldPath,
    value: &str,
    object: &ObjectId,
    setting: &ImageSetting,
    changes: &mut Vec<FieldChange>,
) -> Result<(), EditError> {
    if let Some(old) = file.set_scalar(doc, scalar, path, value)? {
        changes.push(FieldChange {
            file: file.rel.clone(),
            object: object.clone(),
            field: path.to_string(),
            old,
            new: value.to_string(),
            by: setting.image.clone(),
        });
    }
    Ok(())
}

/// The `image` scalars of every container list under `node`.
fn containers(node: &YamlNode, path: &FieldPath, out: &mut Vec<(Scalar, FieldPath)>) {
    match node {
        YamlNode::Mapping(m) => {
            for (k, v) in m.iter() {
                let Some(key) = k.as_scalar().map(Scalar::as_string) else {
                    continue;
                };
                let child = path.key(&key);
                if CONTAINER_LISTS.contains(&key.as_str())
                    && let YamlNode::Sequence(seq) = &v
                {
                    for (i, item) in seq.values().enumerate() {
                        let at = child.index(i, item_name(&item));
                        if let Some(image) = item.as_mapping().and_then(|c| c.get("image"))
                            && let YamlNode::Scalar(s) = image
                        {
                            out.push((s, at.key("image")));
                        }
                    }
                    continue;
                }
                containers(&v, &child, out);
            }
        }
        YamlNode::Sequence(seq) => {
            for (i, item) in seq.values().enumerate() {
                containers(&item, &path.index(i, item_name(&item)), out);
            }
        }
        _ => {}
    }
}

/// The container images of the objects in `file`.
pub(crate) fn used(file: &EditableFile, out: &mut Vec<super::UsedImage>) {
    for (_, doc) in file.documents() {
        if object_of(&doc).kind.is_empty() {
            continue;
        }
        let Some(root) = doc.as_mapping() else {
            continue;
        };
        let mut found = Vec::new();
        containers(
            &YamlNode::Mapping(root.clone()),
            &FieldPath::default(),
            &mut found,
        );
        for (scalar, path) in found {
            let Ok(r) = ImageRef::parse(&scalar.as_string()) else {
                continue;
            };
            if r.tag.is_none() && r.digest.is_none() {
                continue;
            }
            out.push(super::UsedImage {
                image: r.name.clone(),
                reference: r.to_string(),
                file: file.rel.clone(),
                field: path.to_string(),
            });
        }
    }
}

/// The images of `images` that container images in `file` use (nothing is edited).
pub(crate) fn uses(file: &EditableFile, images: &[ImageSetting]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, doc) in file.documents() {
        if object_of(&doc).kind.is_empty() {
            continue;
        }
        let Some(root) = doc.as_mapping() else {
            continue;
        };
        let mut found = Vec::new();
        containers(
            &YamlNode::Mapping(root.clone()),
            &FieldPath::default(),
            &mut found,
        );
        for (scalar, _) in found {
            if let Ok(current) = ImageRef::parse(&scalar.as_string()) {
                out.extend(
                    images
                        .iter()
                        .filter(|s| s.matches(&current.name))
                        .map(|s| s.image.clone()),
                );
            }
        }
    }
    out
}
