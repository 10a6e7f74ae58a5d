//! The `Application` custom resource (`capstan.dev/v1alpha1`): what to deliver
//! (source), where (destination), how (sync policy), and its observed state.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a duration field of the spec accepts: whole numbers with a unit, as in
/// `500ms`, `30s`, `2m`, `1h30m`.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// One unit of delivery: a source rendered and kept in sync with a destination.
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    status = "ApplicationStatus",
    shortname = "app",
    shortname = "apps",
    category = "capstan",
    printcolumn(name = "Sync", type_ = "string", json_path = ".status.sync.status"),
    printcolumn(name = "Health", type_ = "string", json_path = ".status.health.status"),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.sync.shortRevision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// Where the manifests come from (one source; see `sources` for several).
    #[serde(default)]
    pub source: SourceSpec,
    /// Several sources whose objects make one Application (Argo CD's multi-source):
    /// when set, `source` is left empty. A source with a `ref` lends its files to the
    /// others (`$ref/path/values.yaml` in `helm.valueFiles`) and renders nothing itself,
    /// unless it also has a `path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSpec>,
    /// Where they go.
    #[serde(default)]
    pub destination: DestinationSpec,
    /// How syncing happens.
    #[serde(default)]
    pub sync_policy: SyncPolicy,
    /// Fields to ignore when comparing (and leave alone when applying).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<IgnoreDifference>,
    /// Stop syncing this Application (drift is still reported).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// How often to compare with Git, e.g. `2m` (default), `30s`, `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Applications (in the same namespace) that must be Healthy before this one syncs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Custom health rules in CEL for kinds of this Application's objects and hooks, in
    /// the shape of Flux's `healthCheckExprs`. They take precedence over the built-in
    /// rules, and over equally specific rules of the `capstan-health` ConfigMap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
}

/// A custom health rule: which kind it judges and the CEL expressions that judge it
/// (see docs/health.md). The object is bound as `self` and by its top-level fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `group/version` of the kind (`cert-manager.io/v1`); the version is not compared.
    /// Give this or `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The group (`""` for the core group), `*`, or `*.example.io`. Give this or
    /// `apiVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind, or `*` for every kind of the group.
    pub kind: String,
    /// CEL, a bool: the object is healthy.
    pub current: String,
    /// CEL, a bool: the object is on its way (tried first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// CEL, a bool: the object failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// CEL, a bool: the object is deliberately paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
    /// CEL, a string: why, for any verdict but Healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<&HealthCheck> for capstan_engine::health::HealthRuleSpec {
    fn from(c: &HealthCheck) -> Self {
        capstan_engine::health::HealthRuleSpec {
            api_version: c.api_version.clone(),
            group: c.group.clone(),
            kind: c.kind.clone(),
            current: c.current.clone(),
            in_progress: c.in_progress.clone(),
            failed: c.failed.clone(),
            suspended: c.suspended.clone(),
            message: c.message.clone(),
        }
    }
}

/// A Git source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// Repository URL (https://, http:// on loopback, ssh://, git@host:path, file://).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Branch, tag, commit SHA or semver range over tags; empty for the remote's HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Path inside the repository (default `.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Helm chart's name when `repoURL` is a Helm repository (`https://…` serving
    /// `index.yaml`) or an OCI registry (`oci://host/path`); `targetRevision` is then the
    /// chart version or a semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// The name other sources use for this one's files (`$NAME/...`), in multi-source.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    /// A Secret in the Application's namespace with `username` and `password` (or
    /// `token`), or `sshPrivateKey` (and optionally `knownHosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Directory renderer options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectorySpec>,
    /// Kustomize renderer options (forces Kustomize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeSpec>,
    /// Helm renderer options (forces Helm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSpec>,
}

/// Options of the directory renderer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySpec {
    /// Globs a file must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs of files to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// How `*.jsonnet` files are evaluated (Argo CD's `directory.jsonnet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonnet: Option<JsonnetSpec>,
}

/// Jsonnet settings of a directory source, with Argo CD's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonnetSpec {
    /// External variables, read with `std.extVar`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ext_vars: Vec<JsonnetVarSpec>,
    /// Top-level arguments, passed when a file evaluates to a function.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlas: Vec<JsonnetVarSpec>,
    /// Library directories searched by imports, relative to the repository root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libs: Vec<String>,
}

/// One external variable or top-level argument.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JsonnetVarSpec {
    /// The name.
    pub name: String,
    /// A string, or Jsonnet code when `code` is true.
    pub value: String,
    /// Whether `value` is Jsonnet code rather than a string.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub code: bool,
}

/// Options of the Kustomize renderer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSpec {
    /// Extra arguments for `kustomize build`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_options: Vec<String>,
}

/// Options of the Helm renderer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmSpec {
    /// Release name (default: the Application's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files inside the repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// Values as a YAML document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Values as an object (Argo CD's `valuesObject`; merged over `values`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub values_object: Option<serde_json::Value>,
    /// Values from ConfigMaps and Secrets in the Application's namespace, in order
    /// (after the values files, before `values` and `parameters`), as Flux's
    /// `HelmRelease.spec.valuesFrom`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<ValuesReference>,
    /// Single values, as `--set name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<HelmParameter>,
}

/// Values held in a ConfigMap or a Secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesReference {
    /// `ConfigMap` or `Secret`.
    pub kind: String,
    /// Its name, in the Application's namespace.
    pub name: String,
    /// The key holding a YAML document of values (default `values.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_key: Option<String>,
    /// Put the key's value at this dotted path instead of merging a document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    /// A missing object or key is not an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// One `--set` value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelmParameter {
    /// Dotted name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// Where objects go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationSpec {
    /// Namespace for namespaced objects that name none (default: the Application's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// How and when to sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync automatically; absent means a sync happens only when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<Automated>,
    /// Retries of failed syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Allow an empty render (with prune on, it deletes everything the Application applied).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
    /// Create the destination namespace when it is missing (as `CreateNamespace=true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_namespace: bool,
    /// Labels and annotations kept on the namespace `createNamespace` creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_namespace_metadata: Option<ManagedNamespaceMetadata>,
    /// Sync options as Argo CD spells them (`CreateNamespace=true`, `Prune=false`,
    /// `ServerSideApply=false`, `Replace=true`, …); objects may override them with the
    /// `capstan.dev/sync-options` annotation. An unknown option is an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
}

/// Metadata of a namespace the Application creates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedNamespaceMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Automated sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Automated {
    /// Delete objects that left the source.
    #[serde(default)]
    pub prune: bool,
    /// Undo changes made to managed objects in the cluster.
    #[serde(default)]
    pub self_heal: bool,
}

/// Retries of failed syncs, with exponential backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// How many retries before giving up until the next change (default 5).
    #[serde(default = "default_retry_limit")]
    pub limit: u32,
    /// First delay, e.g. `5s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub backoff_duration: Option<String>,
    /// Multiplier per retry (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_factor: Option<u32>,
    /// Longest delay, e.g. `3m` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub backoff_max_duration: Option<String>,
}

fn default_retry_limit() -> u32 {
    5
}

/// Fields to ignore on some objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreDifference {
    /// API group (empty for core); absent matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
    /// Name; absent matches every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace; absent matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// RFC 6901 pointers, e.g. `/spec/replicas`.
    pub json_pointers: Vec<String>,
}

/// What the controller observed and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// The generation of the spec last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Synced, Healthy, Stalled, and others, as Kubernetes conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether the cluster matches Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// Rolled-up health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// Each managed object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// The last (or current) sync operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// Past syncs, newest first (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// When the controller last wrote this status: at every change, sync and refresh.
    /// A periodic comparison that finds nothing new does not write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human message.
    #[serde(default)]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Sync status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `Synced`, `OutOfSync` or `Unknown`.
    pub status: String,
    /// The commit compared against.
    #[serde(default)]
    pub revision: String,
    /// Its first 7 characters, for `kubectl get`.
    #[serde(default)]
    pub short_revision: String,
}

/// Health status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub status: String,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One managed object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// apiVersion it is applied with.
    #[serde(default)]
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Synced`, `OutOfSync` (with `requiresPruning` when it left Git).
    pub status: String,
    /// Its health, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// It left Git and waits to be pruned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_pruning: bool,
}

/// A sync operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    /// `Running`, `Succeeded`, `Failed` or `Stopped`.
    pub phase: String,
    /// What happened.
    #[serde(default)]
    pub message: String,
    /// The revision synced.
    #[serde(default)]
    pub revision: String,
    /// The Application's generation (its spec) the sync ran for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// What started it.
    #[serde(default)]
    pub trigger: String,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How many objects each outcome had (`created: 3`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub summary: BTreeMap<String, u32>,
    /// The hooks the sync ran, in the order they started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookStatus>,
}

/// One hook run of a sync (or of a deletion).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookStatus {
    /// Kind of the hook's object.
    pub kind: String,
    /// Its name (generated for hooks with `generateName`).
    pub name: String,
    /// Its namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `PreSync`, `Sync`, `PostSync`, `SyncFail`, `PreDelete` or `PostDelete`.
    pub hook_type: String,
    /// `Running`, `Succeeded`, `Failed` or `Terminated`.
    pub phase: String,
    /// What it said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One past sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Increasing id, for `capstan rollback APP ID`.
    pub id: u64,
    /// Commit SHA.
    pub revision: String,
    /// Commit author.
    #[serde(default)]
    pub author: String,
    /// First line of the commit message.
    #[serde(default)]
    pub message: String,
    /// When the sync finished.
    pub deployed_at: String,
    /// `automated`, `manual`, `webhook`, `rollback`, `self-heal`.
    pub trigger: String,
    /// `Succeeded`, `Failed` or `Stopped`.
    pub result: String,
}
