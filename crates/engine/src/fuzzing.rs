//! The engine's parsers of repository and cluster text, reachable without a checkout
//! or a cluster, for the generative tests of `crates/fuzz`. Not a stable API: each
//! function is the part of a stage that reads untrusted text, called exactly as the
//! stage calls it.

use std::collections::BTreeSet;

use crate::images::edit::{self, EditError, EditPlan, FieldChange, UsedImage};
use crate::render::{DesiredObject, RenderError, Scopes, ValuesDoc, ValuesFromError};
use crate::render::{ValuesReference, directory, normalize};

/// A manifest file's text (`json`: a `.json` file, else multi-document YAML) parsed
/// and normalized for the destination `namespace`, as the directory renderer does with
/// each file and the Kustomize and Helm renderers with their output.
pub fn manifests(
    text: &str,
    json: bool,
    namespace: &str,
) -> Result<Vec<DesiredObject>, RenderError> {
    let raw = directory::parse_manifest(text, "fuzz.yaml", json)?;
    normalize::normalize(raw, namespace, &Scopes::default())
}

/// What a file is to an image edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditedFile {
    /// `kustomization.yaml` at the edited path (entries may be added).
    Kustomization,
    /// A Helm values file (`values.yaml`), every key of the plan naming it.
    HelmValues,
    /// A plain manifest outside any Kustomization.
    Manifest,
    /// A resource of a Kustomization (only read for the images it uses).
    KustomizeResource,
}

impl EditedFile {
    fn rel(self) -> &'static str {
        match self {
            EditedFile::Kustomization => "kustomization.yaml",
            EditedFile::HelmValues => "values.yaml",
            EditedFile::Manifest | EditedFile::KustomizeResource => "deploy.yaml",
        }
    }
}

/// Edit one file's `text` as `plan` says (the setter markers, then the Kustomize
/// `images:`, the Helm values keys or the container images): its new text, or `None`
/// when nothing changed — the per-file step of [`edit::apply`].
pub fn edit(kind: EditedFile, text: &str, plan: &EditPlan) -> Result<Option<String>, EditError> {
    let role = edit::FileRole {
        helm_targets: (kind == EditedFile::HelmValues).then(|| plan.helm.iter().collect()),
        in_kustomize_dir: kind == EditedFile::KustomizeResource,
        top_kustomization: kind == EditedFile::Kustomization,
    };
    let mut changes: Vec<FieldChange> = Vec::new();
    let mut used = BTreeSet::new();
    let mut resource_uses = BTreeSet::new();
    let mut found = edit::Found {
        changes: &mut changes,
        used: &mut used,
        resource_uses: &mut resource_uses,
    };
    edit::edit_text(kind.rel(), text, &role, plan, &mut found)
}

/// The images one file's `text` pins — the per-file step of [`edit::used_images`].
pub fn used_images(kind: EditedFile, text: &str) -> Result<Vec<UsedImage>, EditError> {
    edit::used_in_text(
        kind.rel(),
        text,
        kind == EditedFile::HelmValues,
        kind == EditedFile::KustomizeResource,
    )
}

/// The Helm values document of a `valuesFrom` reference from the ConfigMap's or
/// Secret's `data` (`None`: the object is missing), as
/// [`values_from`](crate::render::values_from()) reads it after the GET.
pub fn values_from(
    r: &ValuesReference,
    data: Option<Vec<(String, Vec<u8>)>>,
) -> Result<Option<ValuesDoc>, ValuesFromError> {
    crate::render::values_from::document(r, "ConfigMap fuzz/values", data)
}
