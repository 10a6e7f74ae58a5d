//! The image automation CRDs (`capstan.dev/v1alpha1`), shaped so Flux users recognise
//! them: an [`ImageRepository`] is scanned for tags, an [`ImagePolicy`] picks the
//! latest, an [`ImageUpdate`] writes what the policies chose into a Git repository.

use std::collections::BTreeMap;

use capstan_engine::images::policy::{OrderChoice, PolicyChoice, SemverChoice};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{Condition, DURATION_PATTERN};

/// The tags Flux leaves out by default: cosign signatures.
pub const DEFAULT_EXCLUSION: &str = "^.*\\.sig$";

/// A registry repository scanned for tags.
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "ImageRepository",
    namespaced,
    status = "ImageRepositoryStatus",
    shortname = "imagerepo",
    category = "capstan",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(
        name = "Tags",
        type_ = "integer",
        json_path = ".status.lastScanResult.tagCount"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Last scan",
        type_ = "string",
        json_path = ".status.lastScanResult.scanTime"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositorySpec {
    /// The image repository, `host/path` (Docker Hub names such as `nginx` work too).
    pub image: String,
    /// How often to scan, e.g. `1m` (default), `30s`, `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret (in this namespace) with the
    /// registry's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    /// Plain HTTP instead of HTTPS — allowed only for a registry on loopback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Regular expressions of tags to leave out (default `^.*\.sig$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_list: Option<Vec<String>>,
    /// Stop scanning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// A reference to an object in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalRef {
    /// Its name.
    pub name: String,
}

/// What the last scan found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanResult {
    /// How many tags (after the exclusion list).
    pub tag_count: u64,
    /// A few of the newest-looking tags (the last in byte order), for people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_tags: Vec<String>,
    /// When the scan finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_time: Option<String>,
}

/// What the controller observed of an ImageRepository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositoryStatus {
    /// The spec generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last successful scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_result: Option<ScanResult>,
    /// The image with Docker's defaults made explicit (`docker.io/library/nginx`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical_image_name: String,
}

/// A rule that picks one tag of an ImageRepository.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "ImagePolicy",
    namespaced,
    status = "ImagePolicyStatus",
    shortname = "imagepol",
    category = "capstan",
    printcolumn(name = "Latest", type_ = "string", json_path = ".status.latestRef.tag"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicySpec {
    /// The ImageRepository (in this namespace) whose tags are chosen from.
    pub image_repository_ref: LocalRef,
    /// Which tags count, and what of them is ranked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<FilterTags>,
    /// The rule: exactly one of `semver`, `alphabetical`, `numerical`.
    pub policy: PolicySpec,
    /// Pin the chosen tag's digest too (`image:tag@sha256:…`): `Never` (default) or
    /// `Always` (the digest is looked up at every scan, so a moved tag is noticed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_reflection_policy: Option<DigestReflection>,
}

/// Flux's `policy`: exactly one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicySpec {
    /// The highest version in a semver range (Masterminds syntax: `1.2.x`, `~1.2`,
    /// `^0.3`, `>=1.0 <2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemverPolicy>,
    /// Byte-wise order: `asc` (default) picks the last tag, `desc` the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<OrderPolicy>,
    /// Every tag as a number: `asc` (default) picks the largest, `desc` the smallest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<OrderPolicy>,
}

/// `semver: {range}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SemverPolicy {
    /// The range.
    pub range: String,
}

/// `alphabetical: {order}`, `numerical: {order}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPolicy {
    /// `asc` or `desc`.
    #[serde(default)]
    pub order: String,
}

impl PolicySpec {
    /// The engine's form of the rule.
    pub fn choice(&self) -> PolicyChoice {
        PolicyChoice {
            semver: self.semver.as_ref().map(|s| SemverChoice {
                range: s.range.clone(),
            }),
            alphabetical: self.alphabetical.as_ref().map(|o| OrderChoice {
                order: o.order.clone(),
            }),
            numerical: self.numerical.as_ref().map(|o| OrderChoice {
                order: o.order.clone(),
            }),
        }
    }
}

/// Whether the latest image carries its digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DigestReflection {
    /// Only the tag.
    #[default]
    Never,
    /// The tag and its digest, looked up at every scan.
    Always,
}

/// Flux's `filterTags`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FilterTags {
    /// A regular expression a tag must contain a match of.
    #[serde(default)]
    pub pattern: String,
    /// What of the match the policy ranks (`$1`, `$name`).
    #[serde(default)]
    pub extract: String,
}

/// An image reference, split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRefStatus {
    /// The repository.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// The digest, when the policy pins digests.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

impl ImageRefStatus {
    /// The reference as one string.
    pub fn reference(&self) -> capstan_engine::images::ImageRef {
        capstan_engine::images::ImageRef {
            name: self.name.clone(),
            tag: (!self.tag.is_empty()).then(|| self.tag.clone()),
            digest: (!self.digest.is_empty()).then(|| self.digest.clone()),
        }
    }
}

/// What the controller observed of an ImagePolicy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyStatus {
    /// The spec generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The image the policy chooses now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<ImageRefStatus>,
    /// The image it chose before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_ref: Option<ImageRefStatus>,
}

/// The Git write-back of what ImagePolicies chose.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "ImageUpdate",
    namespaced,
    status = "ImageUpdateStatus",
    category = "capstan",
    printcolumn(
        name = "Last commit",
        type_ = "string",
        json_path = ".status.lastPushCommit"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateSpec {
    /// The repository to write to.
    pub git: GitWriteSpec,
    /// What to update, and how.
    #[serde(default)]
    pub update: UpdateSpec,
    /// The ImagePolicies (in this namespace) to write; default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// How often to compare the policies with Git, e.g. `1m` (default). A policy that
    /// chooses a new image is written at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Stop writing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// Where and how to commit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitWriteSpec {
    /// Repository URL (https://, http:// on loopback, ssh://, git@host:path, file://).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// A Secret (in this namespace) with `username` and `password` (or `token`), or
    /// `sshPrivateKey` (and `knownHosts`) — as for Applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// The branch to check out (default: the remote's default branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Push to this branch instead (created from `branch`); a template, e.g.
    /// `capstan/{{ update }}-{{ tags | join("-") }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_branch: Option<String>,
    /// The commit's author and message.
    #[serde(default)]
    pub commit: CommitSpec,
}

/// The commit a write-back makes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitSpec {
    /// Author and committer (default: Capstan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
    /// The message, a Jinja template over `update`, `changes` (file, object, field,
    /// old, new, by), `files`, `policies` (name → new image) and `images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template: Option<String>,
    /// A Secret (in this namespace) with the signing key: `git.asc` (an armored OpenPGP
    /// key, with `passphrase` when it has one) or `ssh-privatekey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKeyRef>,
}

/// A commit's author.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Author {
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: String,
}

/// Where the signing key is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyRef {
    /// The Secret.
    pub secret_ref: LocalRef,
}

/// What to update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSpec {
    /// The path in the repository (default `.`).
    #[serde(default = "default_path")]
    pub path: String,
    /// `Setters` (default, as Flux): only fields with a setter marker
    /// (`# {"$imagepolicy": "NS:NAME"}`) change. `Images`: every use of each policy's
    /// image changes too — container images, Kustomize `images:` entries, Helm values.
    #[serde(default)]
    pub strategy: Strategy,
    /// Helm values keys to write policies' images to (with `Images`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helm: Vec<HelmKey>,
}

fn default_path() -> String {
    ".".into()
}

impl Default for UpdateSpec {
    fn default() -> Self {
        UpdateSpec {
            path: default_path(),
            strategy: Strategy::default(),
            helm: Vec::new(),
        }
    }
}

/// How fields are found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Strategy {
    /// Fields marked with a setter marker.
    #[default]
    Setters,
    /// Marked fields, and every use of the policies' images.
    Images,
}

/// A Helm values key a policy's image goes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelmKey {
    /// The ImagePolicy.
    pub policy: String,
    /// The values file, relative to `update.path`.
    pub file: String,
    /// The key (`image`, `image.tag`, …).
    pub key: String,
}

/// One image written to Git.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WrittenImage {
    /// The ImagePolicy.
    pub policy: String,
    /// The image written (`name:tag[@digest]`).
    pub image: String,
    /// The commit that wrote it.
    pub commit: String,
    /// When.
    pub time: String,
}

/// An image the update does not write, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeldBack {
    /// The ImagePolicy.
    pub policy: String,
    /// The image it chooses.
    pub image: String,
    /// Why it is not written.
    pub reason: String,
}

/// What the controller observed of an ImageUpdate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateStatus {
    /// The spec generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the update last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<String>,
    /// The last commit pushed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_push_commit: String,
    /// When it was pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_time: Option<String>,
    /// The image last written for each policy. A policy whose latest image is the one
    /// written here, while Git no longer says it (a `capstan revert`, a rollback by a
    /// commit), is held back until the policy chooses another image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub written: BTreeMap<String, WrittenImage>,
    /// Images not written, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<HeldBack>,
}
