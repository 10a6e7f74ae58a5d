//! Plain manifests: the `image` of every container, init container and ephemeral
//! container whose repository is the image — in any object (Deployments, CronJobs,
//! Pods, custom resources with pod templates), wherever its `containers` lists are.

use std::collections::BTreeSet;

use yaml_edit::{Scalar, YamlNode};

use super::helm::written;
use super::yaml::{EditableFile, FieldPath, item_name};
use super::{EditError, FieldChange, ImageSetting, ObjectId, UsedImage, object_of};
use crate::images::reference::ImageRef;

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// A container's image in a file: its document, object, value and path.
struct ContainerImage {
    doc: usize,
    object: ObjectId,
    scalar: Scalar,
    path: FieldPath,
    image: ImageRef,
}

/// Every container image of the objects in `file` that reads as a reference.
fn container_images(file: &EditableFile) -> Vec<ContainerImage> {
    let mut out = Vec::new();
    for (doc, d) in file.documents() {
        let object = object_of(&d);
        if object.kind.is_empty() {
            continue;
        }
        let Some(root) = d.as_mapping() else {
            continue;
        };
        let mut found = Vec::new();
        containers(
            &YamlNode::Mapping(root.clone()),
            &FieldPath::default(),
            &mut found,
        );
        for (scalar, path) in found {
            if let Ok(image) = ImageRef::parse(&scalar.as_string()) {
                out.push(ContainerImage {
                    doc,
                    object: object.clone(),
                    scalar,
                    path,
                    image,
                });
            }
        }
    }
    out
}

/// Set `images` in the objects of `file`.
pub(crate) fn apply(
    file: &mut EditableFile,
    images: &[ImageSetting],
    changes: &mut Vec<FieldChange>,
    used: &mut BTreeSet<String>,
) -> Result<(), EditError> {
    for c in container_images(file) {
        for setting in images.iter().filter(|s| s.matches(&c.image.name)) {
            used.insert(setting.image.clone());
            let value = written(Some(&c.image), setting).to_string();
            if let Some(old) = file.set_scalar(c.doc, &c.scalar, &c.path, &value)? {
                changes.push(FieldChange {
                    file: file.rel.clone(),
                    object: c.object.clone(),
                    field: c.path.to_string(),
                    old,
                    new: value,
                    by: setting.image.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The images of `images` that container images in `file` use (nothing is edited).
pub(crate) fn uses(file: &EditableFile, images: &[ImageSetting]) -> Vec<String> {
    container_images(file)
        .iter()
        .flat_map(|c| {
            images
                .iter()
                .filter(|s| s.matches(&c.image.name))
                .map(|s| s.image.clone())
        })
        .collect()
}

/// The container images of `file` pinned to a tag or digest.
pub(crate) fn used(file: &EditableFile, out: &mut Vec<UsedImage>) {
    for c in container_images(file) {
        if c.image.tag.is_none() && c.image.digest.is_none() {
            continue;
        }
        out.push(UsedImage {
            image: c.image.name.clone(),
            reference: c.image.to_string(),
            file: file.rel.clone(),
            field: c.path.to_string(),
        });
    }
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
