//! Writing images into a source tree, byte for byte where nothing changes.
//!
//! One [`EditPlan`] says what to set — images (`set-image IMAGE=REF`), policy values
//! for Flux setter markers (`--policy NS:NAME=REF`), and Helm values keys — and
//! [`apply`] finds every place under a path that uses them:
//!
//! - Kustomize `images:` entries ([`kustomize`]), as `kustomize edit set image` does,
//!   adding the entry to the Kustomization at the path when none matches;
//! - Helm values files ([`helm`]): a named key, or `repository`/`tag`/`digest`
//!   mappings whose repository is the image;
//! - container and init-container images of plain manifests ([`manifest`]), in
//!   directories that are not Kustomizations (there the Kustomization's `images:`
//!   decides);
//! - Flux setter markers on any scalar ([`setters`]), compatible with Flux's
//!   image-automation-controller.
//!
//! Every file is edited losslessly ([`yaml`]): only the changed scalars change. All
//! files are edited in memory first and written only when every one succeeded, so a
//! bad file (not YAML, a Helm key that does not exist) leaves the tree untouched and
//! the error names the file and the field.

pub mod helm;
pub mod kustomize;
pub mod manifest;
pub mod setters;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::reference::{ImageRef, ReferenceError};
use crate::source::{ConfineError, confine};
use yaml::EditableFile;

/// An image to set: `IMAGE=REF` (the image as written in the manifests becomes REF,
/// name and all) or `REF` (every use of REF's repository gets REF's tag and digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSetting {
    /// The image to look for: a repository as written in manifests or a Kustomize
    /// `images[].name`.
    pub image: String,
    /// What it becomes.
    pub new: ImageRef,
    /// Whether the name is replaced as well (`IMAGE=REF` with a different name).
    pub rename: bool,
    /// Given as `IMAGE=REF`: the Kustomization at the path gets an entry for IMAGE when
    /// none matches, as `kustomize edit set image` does. A bare `REF` only changes what
    /// already uses REF's repository (an entry is added only for an image the
    /// Kustomization's own resources use), so a misspelt image is an error, not a new
    /// entry.
    pub named: bool,
}

impl ImageSetting {
    /// Parse `IMAGE=REF` or `REF`.
    pub fn parse(arg: &str) -> Result<ImageSetting, ReferenceError> {
        match arg.split_once('=') {
            Some((image, reference)) => {
                let new = ImageRef::parse(reference)?;
                if image.is_empty() {
                    return Err(ReferenceError::Malformed {
                        reference: arg.to_string(),
                    });
                }
                let rename = new.name != image;
                Ok(ImageSetting {
                    image: image.to_string(),
                    new,
                    rename,
                    named: true,
                })
            }
            None => {
                let new = ImageRef::parse(arg)?;
                Ok(ImageSetting {
                    image: new.name.clone(),
                    new,
                    rename: false,
                    named: false,
                })
            }
        }
    }

    /// Whether a name as written (`image:`, `images[].name`) is this image.
    pub fn matches(&self, name: &str) -> bool {
        name == self.image || super::reference::same_repository(name, &self.image)
    }
}

/// A Helm values key an image is written to: `image` (a mapping with `repository`,
/// `tag`, `digest`, or a whole reference string), `image.tag`, `image.repository`,
/// `image.digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmTarget {
    /// The image (matched like [`ImageSetting::image`]).
    pub image: String,
    /// The values file, relative to the edited path.
    pub file: String,
    /// The dotted key.
    pub key: String,
}

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct EditPlan {
    /// Images to set.
    pub images: Vec<ImageSetting>,
    /// Values of image policies for setter markers, by `namespace:name`.
    pub policies: BTreeMap<String, ImageRef>,
    /// Helm values keys to write images to.
    pub helm: Vec<HelmTarget>,
    /// Add a Kustomize `images:` entry to the Kustomization at the path for an image
    /// no entry matches (what `kustomize edit set image` does).
    pub add_kustomize_entries: bool,
    /// An image or policy that nothing under the path uses is an error, and nothing is
    /// written (for a person's `set-image`, where it is likely a typo); otherwise it
    /// is reported in [`EditOutcome::unused`].
    pub require_used: bool,
    /// Find what would change, write nothing.
    pub dry_run: bool,
}

/// The object a changed field belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectId {
    /// `apiVersion`, when the document has one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `kind` (`values` for a Helm values file).
    pub kind: String,
    /// `metadata.namespace`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `metadata.name`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.kind)?;
        match (self.namespace.as_str(), self.name.as_str()) {
            ("", "") => Ok(()),
            ("", n) => write!(f, " {n}"),
            (ns, n) => write!(f, " {ns}/{n}"),
        }
    }
}

/// One field changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The file, relative to the repository.
    pub file: String,
    /// The object.
    pub object: ObjectId,
    /// The field, e.g. `spec.template.spec.containers[name=web].image`.
    pub field: String,
    /// Its value before.
    pub old: String,
    /// Its value now.
    pub new: String,
    /// What asked for it: the image, or the setter (`ns:policy:tag`).
    pub by: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
pub struct EditOutcome {
    /// Fields changed, file by file in walk order, fields in document order.
    pub changes: Vec<FieldChange>,
    /// Files written, relative to the repository.
    pub files: Vec<String>,
    /// Images and policies that no field under the path uses (nothing was set for
    /// them; a value already equal to the new one counts as used).
    pub unused: Vec<String>,
}

/// Why an edit could not be made. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// A file that is not YAML.
    #[error("{file}: not valid YAML: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A Helm values key that does not exist.
    #[error(
        "{file}: the key {field} does not exist (an image is only written to a key that is there)"
    )]
    MissingKey {
        /// The values file.
        file: String,
        /// The key.
        field: String,
    },
    /// A file named for Helm values that does not exist.
    #[error("{file}: the Helm values file does not exist")]
    MissingFile {
        /// The file.
        file: String,
    },
    /// A field that should be a single value is not.
    #[error("{file}: {field} is {found}, not a single value")]
    NotAScalar {
        /// The file.
        file: String,
        /// The field.
        field: String,
        /// What it is (`a mapping`, `a list`).
        found: &'static str,
    },
    /// A field written as a block scalar (`|`, `>`).
    #[error(
        "{file}: {field} is a block scalar (| or >); write it as a single line to let Capstan edit it"
    )]
    BlockScalar {
        /// The file.
        file: String,
        /// The field.
        field: String,
    },
    /// A Kustomization whose `images` is not a list of mappings.
    #[error("{file}: {field} must be a list of mappings with name, newName, newTag, digest")]
    BadImages {
        /// The file.
        file: String,
        /// The field.
        field: String,
    },
    /// A setter marker that is not `{"$imagepolicy": "NS:NAME[:tag|:name|:digest]"}`.
    #[error("{file}:{line}: {message}")]
    BadMarker {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that should be an image reference is not one.
    #[error("{file}: {field}")]
    BadReference {
        /// The file.
        file: String,
        /// The field.
        field: String,
        /// Why.
        #[source]
        source: ReferenceError,
    },
    /// The edited file would change beyond the planned fields (a bug, caught before
    /// anything was written).
    #[error("{file}: refusing to write: {message}")]
    Verify {
        /// The file.
        file: String,
        /// What differs.
        message: String,
    },
    /// Nothing under the path uses an image or policy of the plan.
    #[error(
        "nothing under {path} uses {}: no container image, Kustomize images entry, Helm values key or setter marker names it",
        names.join(", ")
    )]
    NotUsed {
        /// The path.
        path: String,
        /// The images and policies.
        names: Vec<String>,
    },
    /// One image pinned to two versions in the tree being read.
    #[error("{image} is pinned twice: {first}, and {second}")]
    Conflicting {
        /// The image.
        image: String,
        /// One place.
        first: String,
        /// The other.
        second: String,
    },
    /// A path or symlink that leaves the repository.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// Reading or writing a file failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A YAML file of the tree with what it is.
pub(crate) struct Candidate {
    /// Where it is read from and written to (a symlink's target).
    pub(crate) real: PathBuf,
    /// Relative to the repository root, for messages.
    pub(crate) rel: String,
    /// Its directory relative to the edited path is a Kustomization directory.
    in_kustomize_dir: bool,
    /// It is the Kustomization at the edited path itself.
    top_kustomization: bool,
    /// Its name says Helm values (`values*.yaml`).
    values_file: bool,
}

/// Apply `plan` to the YAML files under `root/path`: edit in memory, check, then
/// write the files that changed. `root` is the repository (nothing outside it is read
/// or written).
pub fn apply(root: &Path, path: &Path, plan: &EditPlan) -> Result<EditOutcome, EditError> {
    let base = confine::check_tree(root, path)?;
    let candidates = discover(root, &base)?;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut outcome = EditOutcome::default();
    let mut writes: Vec<(PathBuf, String)> = Vec::new();
    let screen = Screen::new(plan);
    let helm_files: BTreeSet<PathBuf> = plan
        .helm
        .iter()
        .map(|t| confine::join(&base, Path::new(&t.file)))
        .collect::<Result<_, _>>()?;
    for t in &plan.helm {
        let p = confine::join(&base, Path::new(&t.file))?;
        if !p.is_file() {
            return Err(EditError::MissingFile {
                file: rel_of(root, &p),
            });
        }
    }
    // the Kustomization at the path comes last: whether it gets new entries depends on
    // what its resources use
    let mut candidates = candidates;
    candidates.sort_by_key(|c| c.top_kustomization);
    let mut resource_uses: BTreeSet<String> = BTreeSet::new();
    for c in &candidates {
        let text = std::fs::read_to_string(&c.real).map_err(|source| EditError::Io {
            path: c.rel.clone(),
            source,
        })?;
        let explicit_helm = helm_files.contains(&c.real);
        if !explicit_helm && !c.top_kustomization && !screen.may_use(&text) {
            continue;
        }
        let role = FileRole {
            helm_targets: (c.values_file || explicit_helm).then(|| {
                plan.helm
                    .iter()
                    .filter(|t| confine::join(&base, Path::new(&t.file)).is_ok_and(|p| p == c.real))
                    .collect()
            }),
            in_kustomize_dir: c.in_kustomize_dir,
            top_kustomization: c.top_kustomization,
        };
        let mut changes = Vec::new();
        let mut found = Found {
            changes: &mut changes,
            used: &mut used,
            resource_uses: &mut resource_uses,
        };
        if let Some(new) = edit_text(&c.rel, &text, &role, plan, &mut found)? {
            outcome.files.push(c.rel.clone());
            writes.push((c.real.clone(), new));
        }
        outcome.changes.extend(changes);
    }
    for s in &plan.images {
        if !used.contains(&s.image) {
            outcome.unused.push(s.image.clone());
        }
    }
    for p in plan.policies.keys() {
        if !used.contains(p) {
            outcome.unused.push(p.clone());
        }
    }
    if plan.require_used && !outcome.unused.is_empty() {
        return Err(EditError::NotUsed {
            path: match rel_of(root, &base) {
                p if p.is_empty() => ".".to_string(),
                p => p,
            },
            names: outcome.unused,
        });
    }
    if plan.dry_run {
        return Ok(outcome);
    }
    for (path, text) in writes {
        write_keeping_mode(&path, &text).map_err(|source| EditError::Io {
            path: rel_of(root, &path),
            source,
        })?;
    }
    Ok(outcome)
}

/// What a file is to an edit.
pub(crate) struct FileRole<'a> {
    /// A Helm values file, with the plan's keys that name it (`None`: not values).
    pub(crate) helm_targets: Option<Vec<&'a HelmTarget>>,
    /// Its directory is a Kustomization directory (its images are the Kustomization's).
    pub(crate) in_kustomize_dir: bool,
    /// It is the Kustomization at the edited path itself.
    pub(crate) top_kustomization: bool,
}

/// What editing files finds, across files.
pub(crate) struct Found<'a> {
    /// Fields changed in this file.
    pub(crate) changes: &'a mut Vec<FieldChange>,
    /// Images and policies used so far.
    pub(crate) used: &'a mut BTreeSet<String>,
    /// Images the resources of the Kustomization at the path use.
    pub(crate) resource_uses: &'a mut BTreeSet<String>,
}

/// Edit one file's `text` in memory as `plan` says: its new text, or `None` when
/// nothing changed.
pub(crate) fn edit_text(
    rel: &str,
    text: &str,
    role: &FileRole<'_>,
    plan: &EditPlan,
    found: &mut Found<'_>,
) -> Result<Option<String>, EditError> {
    let mut file = EditableFile::parse(rel, text)?;
    setters::apply(&mut file, text, &plan.policies, found.changes, found.used)?;
    if let Some(targets) = &role.helm_targets {
        helm::apply(&mut file, &plan.images, targets, found.changes, found.used)?;
    } else {
        let addable: Vec<&ImageSetting> = if role.top_kustomization && plan.add_kustomize_entries {
            plan.images
                .iter()
                .filter(|s| s.named || found.resource_uses.contains(&s.image))
                .collect()
        } else {
            Vec::new()
        };
        let kustomization =
            kustomize::apply(&mut file, &plan.images, &addable, found.changes, found.used)?;
        if !kustomization && !role.in_kustomize_dir {
            manifest::apply(&mut file, &plan.images, found.changes, found.used)?;
        } else if !kustomization {
            // a resource of a Kustomization: its images are the Kustomization's to set
            found
                .resource_uses
                .extend(manifest::uses(&file, &plan.images));
        }
    }
    file.finish()
}

/// The images one file's `text` pins (see [`used_images`]).
pub(crate) fn used_in_text(
    rel: &str,
    text: &str,
    values_file: bool,
    in_kustomize_dir: bool,
) -> Result<Vec<UsedImage>, EditError> {
    let file = EditableFile::parse(rel, text)?;
    let mut found = Vec::new();
    if values_file {
        helm::used(&file, &mut found);
    } else if !kustomize::used(&file, &mut found) && !in_kustomize_dir {
        manifest::used(&file, &mut found);
    }
    Ok(found)
}

/// A cheap look at a file's bytes: could it use anything the plan sets?
struct Screen {
    needles: Vec<String>,
}

impl Screen {
    fn new(plan: &EditPlan) -> Self {
        let mut needles: Vec<String> = plan
            .images
            .iter()
            .map(|s| last_component(&s.image).to_string())
            .collect();
        if !plan.policies.is_empty() {
            needles.push(setters::TOKEN.to_string());
        }
        Screen { needles }
    }

    fn may_use(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }
}

/// The last path component of a repository name: every spelling of the repository
/// contains it (`nginx` and `docker.io/library/nginx`).
fn last_component(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Whether a file name is one Capstan edits: `*.yaml`, `*.yml`, `Kustomization`.
fn is_yaml_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name == "Kustomization"
}

fn is_kustomization_name(name: &str) -> bool {
    matches!(
        name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

/// Every YAML file under `base`, in a stable order: hidden directories and Helm
/// chart templates (not YAML) left out, dangling symlinks skipped (as Flux does),
/// symlinks that leave the repository refused, other symlinks read through.
pub(crate) fn discover(root: &Path, base: &Path) -> Result<Vec<Candidate>, EditError> {
    let root_real = root.canonicalize().map_err(|source| EditError::Io {
        path: ".".into(),
        source,
    })?;
    let mut out = Vec::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    walk(&root_real, root, base, base, &mut out, &mut seen)?;
    Ok(out)
}

fn walk(
    root_real: &Path,
    root: &Path,
    base: &Path,
    dir: &Path,
    out: &mut Vec<Candidate>,
    seen: &mut BTreeSet<PathBuf>,
) -> Result<(), EditError> {
    let io = |p: &Path, source| EditError::Io {
        path: rel_of(root, p),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let is_chart = names.iter().any(|n| n == "Chart.yaml");
    let kustomize_dir = names.iter().any(|n| is_kustomization_name(n));
    for (entry, name) in entries.iter().zip(&names) {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if name.starts_with('.') {
            continue;
        }
        if meta.is_dir() {
            if is_chart && name == "templates" {
                continue;
            }
            walk(root_real, root, base, &path, out, seen)?;
            continue;
        }
        if !is_yaml_name(name) {
            continue;
        }
        let real = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
            match path.canonicalize() {
                // dangling: skipped, as Flux's reader does
                Err(_) => continue,
                Ok(r) if !r.starts_with(root_real) => {
                    return Err(ConfineError::SymlinkEscapes {
                        link: rel_of(root, &path),
                        target: target.display().to_string(),
                    }
                    .into());
                }
                Ok(r) if r.is_dir() => continue,
                Ok(r) => r,
            }
        } else {
            path.canonicalize().map_err(|e| io(&path, e))?
        };
        if !seen.insert(real.clone()) {
            continue;
        }
        out.push(Candidate {
            rel: rel_of(root, &path),
            real,
            in_kustomize_dir: kustomize_dir,
            top_kustomization: dir == base && is_kustomization_name(name),
            values_file: name.starts_with("values")
                && (name.ends_with(".yaml") || name.ends_with(".yml")),
        });
    }
    Ok(())
}

/// Write `text` to `path`, keeping the file's permissions.
fn write_keeping_mode(path: &Path, text: &str) -> std::io::Result<()> {
    let perms = std::fs::metadata(path)?.permissions();
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, perms)
}

/// The object a document is, from its `apiVersion`, `kind` and `metadata`.
pub(crate) fn object_of(doc: &yaml_edit::Document) -> ObjectId {
    let Some(m) = doc.as_mapping() else {
        return ObjectId::default();
    };
    let text = |m: &yaml_edit::Mapping, k: &str| {
        m.get(k)
            .and_then(|n| n.as_scalar().map(yaml_edit::Scalar::as_string))
            .unwrap_or_default()
    };
    let meta = m.get_mapping("metadata");
    ObjectId {
        api_version: text(&m, "apiVersion"),
        kind: text(&m, "kind"),
        namespace: meta
            .as_ref()
            .map(|x| text(x, "namespace"))
            .unwrap_or_default(),
        name: meta.as_ref().map(|x| text(x, "name")).unwrap_or_default(),
    }
}

/// An image a tree uses, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsedImage {
    /// How it is named where it is used: a Kustomize entry's `name`, or the repository
    /// of a container image or Helm values mapping.
    pub image: String,
    /// What it resolves to there (name, tag, digest).
    pub reference: String,
    /// The file and field.
    pub file: String,
    /// The field.
    pub field: String,
}

/// The images `root/path` pins to a tag or digest, one per image: Kustomize
/// `images:` entries with a `newTag` or `digest`, Helm values `repository`/`tag`
/// mappings, and container images of plain manifests (what [`apply`] would edit).
/// Two different versions of one image are an error naming both places.
pub fn used_images(root: &Path, path: &Path) -> Result<Vec<UsedImage>, EditError> {
    let base = confine::check_tree(root, path)?;
    let mut out: Vec<UsedImage> = Vec::new();
    for c in discover(root, &base)? {
        let text = std::fs::read_to_string(&c.real).map_err(|source| EditError::Io {
            path: c.rel.clone(),
            source,
        })?;
        let found = used_in_text(&c.rel, &text, c.values_file, c.in_kustomize_dir)?;
        for u in found {
            if let Some(other) = out.iter().find(|o| o.image == u.image) {
                if other.reference != u.reference {
                    return Err(EditError::Conflicting {
                        image: u.image,
                        first: format!("{} in {} {}", other.reference, other.file, other.field),
                        second: format!("{} in {} {}", u.reference, u.file, u.field),
                    });
                }
                continue;
            }
            out.push(u);
        }
    }
    Ok(out)
}
