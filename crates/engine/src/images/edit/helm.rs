//! Helm values files.
//!
//! A named key says where an image goes, by its last part: `….tag` gets the tag,
//! `….repository` the name, `….digest` the digest; any other key gets the whole
//! reference when it holds a single value, or — when it is a mapping, the Helm
//! convention `image: {repository, tag, digest}` — its `tag` (and `repository` when
//! the image is renamed, `digest` when the mapping has one). A key that does not exist
//! is an error: values are never invented.
//!
//! Without a named key, values files (`values*.yaml`) are searched for that
//! convention: a mapping whose `repository` (joined to a `registry` beside it, when
//! there is one) is the image and that has a `tag`; and keys named `image` whose value
//! is a reference to the image.

use std::collections::BTreeSet;

use yaml_edit::{Mapping, Scalar, YamlNode};

use super::yaml::{EditableFile, FieldPath, kind_name};
use super::{EditError, FieldChange, HelmTarget, ImageSetting, ObjectId};
use crate::images::reference::ImageRef;

/// Write the images of `targets` to their keys, and the other images wherever the
/// values use them.
pub(crate) fn apply(
    file: &mut EditableFile,
    images: &[ImageSetting],
    targets: &[&HelmTarget],
    changes: &mut Vec<FieldChange>,
    used: &mut BTreeSet<String>,
) -> Result<(), EditError> {
    let Some((index, doc)) = file.documents().into_iter().next() else {
        return Ok(());
    };
    let Some(root) = doc.as_mapping() else {
        return Ok(());
    };
    let object = ObjectId {
        kind: "values".into(),
        ..Default::default()
    };
    let mut ctx = Ctx {
        file,
        doc: index,
        object,
        changes,
    };
    for target in targets {
        let Some(setting) = images.iter().find(|s| s.matches(&target.image)) else {
            continue;
        };
        ctx.named(&root, target, setting)?;
        used.insert(setting.image.clone());
    }
    for setting in images {
        if targets.iter().any(|t| setting.matches(&t.image)) {
            continue;
        }
        if ctx.search(
            &YamlNode::Mapping(root.clone()),
            &FieldPath::default(),
            setting,
        )? {
            used.insert(setting.image.clone());
        }
    }
    Ok(())
}

struct Ctx<'a> {
    file: &'a mut EditableFile,
    doc: usize,
    object: ObjectId,
    changes: &'a mut Vec<FieldChange>,
}

impl Ctx<'_> {
    fn record(&mut self, path: &FieldPath, old: Option<String>, new: &str, by: &str) {
        if let Some(old) = old {
            self.changes.push(FieldChange {
                file: self.file.rel.clone(),
                object: self.object.clone(),
                field: path.to_string(),
                old,
                new: new.to_string(),
                by: by.to_string(),
            });
        }
    }

    fn set(
        &mut self,
        scalar: &Scalar,
        path: &FieldPath,
        value: &str,
        by: &str,
    ) -> Result<(), EditError> {
        let old = self.file.set_scalar(self.doc, scalar, path, value)?;
        self.record(path, old, value, by);
        Ok(())
    }

    /// A named key.
    fn named(
        &mut self,
        root: &Mapping,
        target: &HelmTarget,
        setting: &ImageSetting,
    ) -> Result<(), EditError> {
        let missing = || EditError::MissingKey {
            file: self.file.rel.clone(),
            field: target.key.clone(),
        };
        let parts: Vec<&str> = target.key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(missing());
        }
        let mut node = YamlNode::Mapping(root.clone());
        let mut path = FieldPath::default();
        for part in &parts {
            let next = node
                .as_mapping()
                .and_then(|m| m.get(*part))
                .ok_or_else(missing)?;
            path = path.key(part);
            node = next;
        }
        let new = &setting.new;
        let by = setting.image.as_str();
        let last = *parts.last().unwrap_or(&"");
        let scalar_at = |node: &YamlNode, path: &FieldPath| {
            node.as_scalar()
                .cloned()
                .ok_or_else(|| EditError::NotAScalar {
                    file: target.file.clone(),
                    field: path.to_string(),
                    found: kind_name(node),
                })
        };
        match (last, &node) {
            ("tag", _) => {
                let value = new.tag.clone().ok_or_else(|| no_part(target, new, "tag"))?;
                let s = scalar_at(&node, &path)?;
                self.set(&s, &path, &value, by)
            }
            ("repository", _) => {
                let s = scalar_at(&node, &path)?;
                self.set(&s, &path, &new.name, by)
            }
            ("digest", _) => {
                let s = scalar_at(&node, &path)?;
                self.set(&s, &path, new.digest.as_deref().unwrap_or(""), by)
            }
            (_, YamlNode::Mapping(m)) => self.convention(m, &path, setting, true),
            (_, YamlNode::Scalar(s)) => {
                let current = ImageRef::parse(&s.as_string()).ok();
                let value = written(current.as_ref(), setting);
                self.set(s, &path, &value.to_string(), by)
            }
            _ => Err(EditError::NotAScalar {
                file: self.file.rel.clone(),
                field: path.to_string(),
                found: kind_name(&node),
            }),
        }
    }

    /// `{repository, tag, digest}` at `path`; `strict`: a named key, where a missing
    /// `tag` is an error.
    fn convention(
        &mut self,
        m: &Mapping,
        path: &FieldPath,
        setting: &ImageSetting,
        strict: bool,
    ) -> Result<(), EditError> {
        let new = &setting.new;
        let by = setting.image.as_str();
        if setting.rename
            && let Some(YamlNode::Scalar(s)) = m.get("repository")
        {
            self.set(&s, &path.key("repository"), &new.name, by)?;
        }
        match (m.get("tag"), &new.tag) {
            (Some(YamlNode::Scalar(s)), Some(tag)) => self.set(&s, &path.key("tag"), tag, by)?,
            (Some(YamlNode::Scalar(s)), None) => self.set(&s, &path.key("tag"), "", by)?,
            (None, Some(_)) if strict => {
                return Err(EditError::MissingKey {
                    file: self.file.rel.clone(),
                    field: path.key("tag").to_string(),
                });
            }
            (Some(other), _) => {
                return Err(EditError::NotAScalar {
                    file: self.file.rel.clone(),
                    field: path.key("tag").to_string(),
                    found: kind_name(&other),
                });
            }
            _ => {}
        }
        match (m.get("digest"), &new.digest) {
            (Some(YamlNode::Scalar(s)), d) => {
                self.set(&s, &path.key("digest"), d.as_deref().unwrap_or(""), by)?
            }
            (None, Some(_)) => {
                return Err(EditError::MissingKey {
                    file: self.file.rel.clone(),
                    field: path.key("digest").to_string(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Every place in `node` that uses the image; whether there was one.
    fn search(
        &mut self,
        node: &YamlNode,
        path: &FieldPath,
        setting: &ImageSetting,
    ) -> Result<bool, EditError> {
        let mut found = false;
        match node {
            YamlNode::Mapping(m) => {
                let text = |k: &str| m.get(k).and_then(|n| n.as_scalar().map(Scalar::as_string));
                if let Some(repository) = text("repository")
                    && m.get("tag").is_some()
                {
                    let full = match text("registry").filter(|r| !r.is_empty()) {
                        Some(registry) => format!("{registry}/{repository}"),
                        None => repository.clone(),
                    };
                    if setting.matches(&full) || setting.matches(&repository) {
                        self.convention(m, path, &setting_without_rename(setting), false)?;
                        return Ok(true);
                    }
                }
                for (k, v) in m.iter() {
                    let Some(key) = k.as_scalar().map(Scalar::as_string) else {
                        continue;
                    };
                    let child = path.key(&key);
                    if key == "image"
                        && let YamlNode::Scalar(s) = &v
                        && let Ok(current) = ImageRef::parse(&s.as_string())
                        && setting.matches(&current.name)
                    {
                        let value = written(Some(&current), setting).to_string();
                        self.set(s, &child, &value, &setting.image)?;
                        found = true;
                        continue;
                    }
                    found |= self.search(&v, &child, setting)?;
                }
            }
            YamlNode::Sequence(seq) => {
                for (i, item) in seq.values().enumerate() {
                    let name = super::yaml::item_name(&item);
                    found |= self.search(&item, &path.index(i, name), setting)?;
                }
            }
            _ => {}
        }
        Ok(found)
    }
}

/// Found by its repository: the repository stays as written.
fn setting_without_rename(s: &ImageSetting) -> ImageSetting {
    ImageSetting {
        rename: false,
        ..s.clone()
    }
}

/// The reference `current` becomes: its name unless the image is renamed, the new
/// tag and digest.
pub(crate) fn written(current: Option<&ImageRef>, setting: &ImageSetting) -> ImageRef {
    let name = match current {
        Some(c) if !setting.rename => c.name.clone(),
        _ => setting.new.name.clone(),
    };
    ImageRef {
        name,
        tag: setting.new.tag.clone(),
        digest: setting.new.digest.clone(),
    }
}

fn no_part(target: &HelmTarget, new: &ImageRef, part: &str) -> EditError {
    EditError::BadReference {
        file: target.file.clone(),
        field: target.key.clone(),
        source: crate::images::reference::ReferenceError::Malformed {
            reference: format!("{new} (has no {part} for {})", target.key),
        },
    }
}

/// The `repository`/`tag` mappings and `image` references of a values file.
pub(crate) fn used(file: &EditableFile, out: &mut Vec<super::UsedImage>) {
    let Some((_, doc)) = file.documents().into_iter().next() else {
        return;
    };
    let Some(root) = doc.as_mapping() else {
        return;
    };
    collect(
        &YamlNode::Mapping(root.clone()),
        &FieldPath::default(),
        &file.rel,
        out,
    );
}

fn collect(node: &YamlNode, path: &FieldPath, file: &str, out: &mut Vec<super::UsedImage>) {
    match node {
        YamlNode::Mapping(m) => {
            let text = |k: &str| {
                m.get(k)
                    .and_then(|n| n.as_scalar().map(Scalar::as_string))
                    .filter(|v| !v.is_empty())
            };
            if let (Some(repository), tag) = (text("repository"), text("tag"))
                && (tag.is_some() || text("digest").is_some())
            {
                let name = match text("registry") {
                    Some(registry) => format!("{registry}/{repository}"),
                    None => repository,
                };
                let r = ImageRef {
                    name: name.clone(),
                    tag,
                    digest: text("digest"),
                };
                out.push(super::UsedImage {
                    image: name,
                    reference: r.to_string(),
                    file: file.to_string(),
                    field: path.to_string(),
                });
                return;
            }
            for (k, v) in m.iter() {
                let Some(key) = k.as_scalar().map(Scalar::as_string) else {
                    continue;
                };
                let child = path.key(&key);
                if key == "image"
                    && let YamlNode::Scalar(s) = &v
                    && let Ok(r) = ImageRef::parse(&s.as_string())
                    && (r.tag.is_some() || r.digest.is_some())
                {
                    out.push(super::UsedImage {
                        image: r.name.clone(),
                        reference: r.to_string(),
                        file: file.to_string(),
                        field: child.to_string(),
                    });
                    continue;
                }
                collect(&v, &child, file, out);
            }
        }
        YamlNode::Sequence(seq) => {
            for (i, item) in seq.values().enumerate() {
                let name = super::yaml::item_name(&item);
                collect(&item, &path.index(i, name), file, out);
            }
        }
        _ => {}
    }
}
