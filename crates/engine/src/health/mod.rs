//! Health assessment: how healthy a live object is, judged from its own status.
//!
//! One module per kind holds that kind's rule, found by the group of the object's
//! `apiVersion` and its `kind` in one dispatch table (`RULES`), the way Argo CD and
//! kstatus judge objects:
//!
//! | kind | module |
//! | --- | --- |
//! | `apps` Deployment, StatefulSet, DaemonSet, ReplicaSet | `deployment.rs`, `statefulset.rs`, `daemonset.rs`, `replicaset.rs` |
//! | core Pod, PersistentVolumeClaim, Service, Namespace | `pod.rs`, `pvc.rs`, `service.rs`, `namespace.rs` |
//! | `batch` Job, CronJob | `job.rs`, `cronjob.rs` |
//! | `networking.k8s.io` Ingress | `ingress.rs` |
//! | `autoscaling` HorizontalPodAutoscaler | `hpa.rs` |
//! | `apiregistration.k8s.io` APIService | `apiservice.rs` |
//! | `apiextensions.k8s.io` CustomResourceDefinition | `crd.rs` |
//! | `argoproj.io` Workflow | `workflow.rs` |
//! | cert-manager, Argo Rollouts, Flux, external-secrets, Crossplane | `builtin.yaml` (CEL rules, `builtin.rs`) |
//! | everything else, custom resources included | `conditions.rs` (the kstatus conventions) |
//!
//! Custom rules written in CEL ([`CustomHealth`], `custom.rs` and `cel.rs`) take
//! precedence over all of these for the kinds they name: [`assess_with`].
//!
//! Before any rule, an object with `metadata.deletionTimestamp` is Progressing: it is
//! pending deletion and waits for its finalizers. Pods and Namespaces are the exception
//! and say so in their own words ("pod is terminating", "namespace is terminating").
//!
//! Rules only read the object: they never fail. A field that is absent or of another
//! type counts as zero (or as "not said"), so an object the controller has not reported
//! on yet is judged Progressing rather than being an error. [`assess`] never returns
//! Missing: an absent object is the caller's to report.

mod apiservice;
mod builtin;
mod cel;
mod conditions;
mod crd;
mod cronjob;
mod custom;
mod daemonset;
mod deployment;
mod hpa;
mod ingress;
mod job;
mod namespace;
mod pod;
mod pvc;
mod replicaset;
mod service;
mod statefulset;
mod workflow;

use capstan_core::{Health, HealthState};
use serde_json::Value;

pub use cel::CompileError;
pub use custom::{
    CustomHealth, CustomHealthError, HealthChecks, HealthExprs, HealthRule, HealthRuleSpec,
};

/// The health of a live object (a Kubernetes object as JSON), by the built-in rules.
///
/// Never Missing: the caller knows whether the object exists.
pub fn assess(obj: &Value) -> Health {
    assess_with(obj, CustomHealth::none())
}

/// The health of a live object, where the `custom` rules take precedence over the
/// built-in ones for the kinds they name. In order:
///
/// 1. `metadata.deletionTimestamp` → Progressing (Pods and Namespaces say so themselves).
/// 2. A rule of `custom` for the object's group and kind.
/// 3. The built-in rule for the kind (the `RULES` table).
/// 4. The built-in rules for popular custom resources (cert-manager, Argo Rollouts, Flux,
///    external-secrets, Crossplane: `builtin.yaml`, in the same format as `custom`).
/// 5. The kstatus conventions (`conditions.rs`).
pub fn assess_with(obj: &Value, custom: &CustomHealth) -> Health {
    let (group, kind) = (group(obj), text(obj, "/kind").unwrap_or_default());
    let rule = rule_for(group, kind);
    if !rule.is_some_and(|rule| rule.judges_deletion)
        && let Some(health) = being_deleted(obj)
    {
        return health;
    }
    if let Some(health) = custom.assess(obj) {
        return health;
    }
    match rule {
        Some(rule) => (rule.check)(obj),
        None => builtin::popular_crds()
            .assess(obj)
            .unwrap_or_else(|| conditions::assess(obj)),
    }
}

/// A YAML reader's error as one line for a user: `line 5 column 3: duplicate mapping
/// key: name`, without the reader's own prefix and its advice on its options.
fn yaml_error(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    let line = line.trim_start_matches("error: ");
    line.split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(line)
        .to_string()
}

/// One built-in rule: the kind it judges and the function that judges it.
#[derive(Debug, Clone, Copy)]
struct Rule {
    /// The groups the kind is served from (`""` for the core group).
    groups: &'static [&'static str],
    /// The kind.
    kind: &'static str,
    /// Judges an object of the kind.
    check: fn(&Value) -> Health,
    /// Whether `check` judges an object that is being deleted itself.
    judges_deletion: bool,
}

/// A rule that leaves objects being deleted to the common check.
const fn rule(
    groups: &'static [&'static str],
    kind: &'static str,
    check: fn(&Value) -> Health,
) -> Rule {
    Rule {
        groups,
        kind,
        check,
        judges_deletion: false,
    }
}

/// The dispatch table: every kind with a built-in rule, by group and kind. Every other
/// kind goes to the rules for popular custom resources, then to the kstatus conventions.
const RULES: &[Rule] = &[
    rule(&["apps", "extensions"], "Deployment", deployment::assess),
    rule(&["apps"], "StatefulSet", statefulset::assess),
    rule(&["apps", "extensions"], "DaemonSet", daemonset::assess),
    rule(&["apps", "extensions"], "ReplicaSet", replicaset::assess),
    Rule {
        judges_deletion: true,
        ..rule(&[""], "Pod", pod::assess)
    },
    rule(&["batch"], "Job", job::assess),
    rule(&["batch"], "CronJob", cronjob::assess),
    rule(&[""], "PersistentVolumeClaim", pvc::assess),
    rule(&[""], "Service", service::assess),
    rule(
        &["networking.k8s.io", "extensions"],
        "Ingress",
        ingress::assess,
    ),
    Rule {
        judges_deletion: true,
        ..rule(&[""], "Namespace", namespace::assess)
    },
    rule(&["autoscaling"], "HorizontalPodAutoscaler", hpa::assess),
    rule(
        &["apiregistration.k8s.io"],
        "APIService",
        apiservice::assess,
    ),
    rule(
        &["apiextensions.k8s.io"],
        "CustomResourceDefinition",
        crd::assess,
    ),
    rule(&["argoproj.io"], "Workflow", workflow::assess),
];

/// The built-in rule for a group (`""` for the core group) and a kind, if there is one.
fn rule_for(group: &str, kind: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|rule| rule.kind == kind && rule.groups.contains(&group))
}

/// Progressing when `metadata.deletionTimestamp` is set, naming the finalizers waited on.
fn being_deleted(obj: &Value) -> Option<Health> {
    text(obj, "/metadata/deletionTimestamp")?;
    let finalizers: Vec<&str> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|all| all.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let message = if finalizers.is_empty() {
        "pending deletion".to_string()
    } else {
        format!(
            "pending deletion, waiting for finalizers: {}",
            finalizers.join(", ")
        )
    };
    Some(Health::new(HealthState::Progressing, message))
}

/// Progressing when a workload controller has not yet observed the latest spec
/// (`metadata.generation` > `status.observedGeneration`, an absent field counting as 0).
fn rollout_not_observed(obj: &Value) -> Option<Health> {
    let generation = int(obj, "/metadata/generation");
    let observed = int(obj, "/status/observedGeneration");
    (generation > observed).then(|| {
        Health::new(
            HealthState::Progressing,
            format!(
                "waiting for the rollout to be observed (generation {generation}, observed {observed})"
            ),
        )
    })
}

/// Progressing, for a reason.
fn progressing(message: impl Into<String>) -> Health {
    Health::new(HealthState::Progressing, message)
}

/// Whether `status.loadBalancer.ingress` lists at least one address (Services, Ingresses).
fn has_load_balancer_address(obj: &Value) -> bool {
    obj.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|addresses| !addresses.is_empty())
}

/// The group of the object's `apiVersion` (`apps/v1` → `apps`, `v1` → the core group `""`).
fn group(obj: &Value) -> &str {
    text(obj, "/apiVersion")
        .and_then(|api_version| api_version.split_once('/'))
        .map_or("", |(group, _version)| group)
}

/// The string at a JSON pointer, if there is one.
fn text<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// The integer at a JSON pointer, if there is one.
fn opt_int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// The integer at a JSON pointer; an absent field counts as 0.
fn int(obj: &Value, pointer: &str) -> i64 {
    opt_int(obj, pointer).unwrap_or(0)
}

/// The boolean at a JSON pointer; an absent field counts as false.
fn flag(obj: &Value, pointer: &str) -> bool {
    obj.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `n` followed by `noun`, made plural unless `n` is 1 ("1 replica", "2 replicas").
fn count(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The non-blank parts, trimmed and joined by ": " ("FailedCreate: pods … forbidden").
fn sentence(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|part| part.trim())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConditionStatus {
    True,
    False,
    /// `"Unknown"`, or anything that is neither `"True"` nor `"False"`.
    Unknown,
}

impl ConditionStatus {
    /// `True`, `False` or `Unknown`.
    fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// One entry of `status.conditions`.
#[derive(Debug, Clone, Copy)]
struct Condition<'a> {
    /// The condition's `type`.
    kind: &'a str,
    status: ConditionStatus,
    reason: &'a str,
    message: &'a str,
    /// The generation the condition was computed for, when the controller says.
    observed_generation: Option<i64>,
}

impl Condition<'_> {
    fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    fn is_false(&self) -> bool {
        self.status == ConditionStatus::False
    }

    /// The reason and the message, as one sentence.
    fn explanation(&self) -> String {
        sentence(&[self.reason, self.message])
    }
}

/// The condition of a type in `status.conditions`, if the object has one.
fn condition<'a>(obj: &'a Value, kind: &str) -> Option<Condition<'a>> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .map(Condition::from_value)
}

impl<'a> Condition<'a> {
    /// Reads one entry of a conditions list; absent or mistyped fields are empty.
    fn from_value(found: &'a Value) -> Condition<'a> {
        let field = |name: &str| found.get(name).and_then(Value::as_str).unwrap_or_default();
        Condition {
            kind: field("type"),
            status: match field("status") {
                "True" => ConditionStatus::True,
                "False" => ConditionStatus::False,
                _ => ConditionStatus::Unknown,
            },
            reason: field("reason"),
            message: field("message"),
            observed_generation: found.get("observedGeneration").and_then(Value::as_i64),
        }
    }
}

#[cfg(test)]
mod test_support {
    use capstan_core::{Health, HealthState};
    use serde_json::Value;

    /// Parses a YAML fixture and assesses it through [`super::assess`], dispatch included.
    pub(super) fn assess_fixture(yaml: &str) -> Health {
        let obj: Value = serde_saphyr::from_str(yaml).expect("the fixture is valid YAML");
        super::assess(&obj)
    }

    /// Asserts that a fixture is judged `state` with a message containing `fragment`.
    #[track_caller]
    pub(super) fn assert_health(yaml: &str, state: HealthState, fragment: &str) {
        let health = assess_fixture(yaml);
        assert_eq!(health.state, state, "judged {health:?}");
        assert!(
            health.message.contains(fragment),
            "expected the message to mention {fragment:?}, judged {health:?}"
        );
    }

    /// Asserts that a fixture is judged Healthy, with no message.
    #[track_caller]
    pub(super) fn assert_healthy(yaml: &str) {
        assert_eq!(assess_fixture(yaml), Health::healthy());
    }
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;

    use super::rule_for;
    use super::test_support::{assert_health, assess_fixture};

    fn rule_kind(group: &str, kind: &str) -> Option<&'static str> {
        rule_for(group, kind).map(|rule| rule.kind)
    }

    #[test]
    fn kinds_are_dispatched_by_group_and_kind() {
        assert_eq!(rule_kind("apps", "Deployment"), Some("Deployment"));
        assert_eq!(rule_kind("", "Pod"), Some("Pod"));
        assert_eq!(rule_kind("networking.k8s.io", "Ingress"), Some("Ingress"));
        assert_eq!(
            rule_kind("autoscaling", "HorizontalPodAutoscaler"),
            Some("HorizontalPodAutoscaler")
        );
        assert_eq!(
            rule_kind("apiextensions.k8s.io", "CustomResourceDefinition"),
            Some("CustomResourceDefinition")
        );
    }

    #[test]
    fn every_kind_appears_once_in_the_dispatch_table() {
        for (i, rule) in super::RULES.iter().enumerate() {
            for group in rule.groups {
                let first = super::RULES
                    .iter()
                    .position(|other| other.kind == rule.kind && other.groups.contains(group));
                assert_eq!(first, Some(i), "{group}/{} is listed twice", rule.kind);
            }
        }
    }

    #[test]
    fn a_kind_borrowed_by_another_group_is_judged_by_its_conditions() {
        assert_eq!(rule_kind("example.com", "Deployment"), None);
        assert_health(
            include_str!("testdata/custom-resource-named-deployment.yaml"),
            HealthState::Degraded,
            "no capacity left in pool",
        );
    }

    #[test]
    fn an_object_being_deleted_is_progressing_and_names_its_finalizers() {
        assert_health(
            include_str!("testdata/deployment-being-deleted.yaml"),
            HealthState::Progressing,
            "pending deletion, waiting for finalizers: example.com/cleanup",
        );
    }

    #[test]
    fn an_object_without_kind_or_status_is_healthy_by_being_present() {
        assert_eq!(
            assess_fixture("metadata: {name: odd}\n").state,
            HealthState::Healthy
        );
    }

    #[test]
    fn malformed_objects_of_every_kind_get_a_verdict_without_panicking() {
        use serde_json::json;
        let kinds = super::RULES
            .iter()
            .flat_map(|rule| rule.groups.iter().map(|group| (*group, rule.kind)))
            .chain([
                ("cert-manager.io", "Certificate"),
                ("argoproj.io", "Rollout"),
                ("helm.toolkit.fluxcd.io", "HelmRelease"),
                ("source.toolkit.fluxcd.io", "HelmRepository"),
                ("s3.aws.upbound.io", "Bucket"),
                ("example.com", "Widget"),
            ]);
        let bodies = [
            json!({"status": "Running"}),
            json!({"status": {"conditions": "Ready"}}),
            json!({"status": {"conditions": [1, null, {"type": 5, "status": true}, {"type": "Ready"}]}}),
            json!({"status": {"phase": 7, "observedGeneration": "x", "replicas": -1}}),
            json!({"spec": [], "status": []}),
            json!({"metadata": {"generation": 1e300, "annotations": {
                "autoscaling.alpha.kubernetes.io/conditions": "{\"not\": \"a list\"}",
                "argocd.argoproj.io/ignore-restart-policy": 1}}}),
            json!({"metadata": "x", "spec": {"suspend": "yes", "paused": 1, "type": ["oci"]}}),
            json!({"status": {"containerStatuses": [{"state": {"waiting": {"reason": 1}}}, "x"]}}),
        ];
        for (group, kind) in kinds {
            let api_version = if group.is_empty() {
                "v1".to_string()
            } else {
                format!("{group}/v1")
            };
            for body in &bodies {
                let mut obj = body.clone();
                obj["apiVersion"] = json!(api_version);
                obj["kind"] = json!(kind);
                let _ = super::assess(&obj);
            }
        }
        for odd in [
            json!(null),
            json!(1),
            json!("Pod"),
            json!([{"kind": "Pod"}]),
            json!({"kind": 5, "apiVersion": []}),
        ] {
            let _ = super::assess(&odd);
        }
    }
}
