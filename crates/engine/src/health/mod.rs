//! Health assessment: how healthy a live object is, judged from its own status.
//!
//! One module per kind holds that kind's rule, dispatched by the group of the object's
//! `apiVersion` and its `kind`, the way Argo CD and kstatus judge objects:
//!
//! | kind | module |
//! | --- | --- |
//! | `apps` Deployment, StatefulSet, DaemonSet, ReplicaSet | `deployment.rs`, `statefulset.rs`, `daemonset.rs`, `replicaset.rs` |
//! | core Pod, PersistentVolumeClaim, Service, Namespace | `pod.rs`, `pvc.rs`, `service.rs`, `namespace.rs` |
//! | `batch` Job, CronJob | `job.rs`, `cronjob.rs` |
//! | `networking.k8s.io` Ingress | `ingress.rs` |
//! | `apiextensions.k8s.io` CustomResourceDefinition | `crd.rs` |
//! | everything else, custom resources included | `conditions.rs` (the kstatus conventions) |
//!
//! Before any rule, an object with `metadata.deletionTimestamp` is Progressing: it is
//! being deleted and waits for its finalizers. Pods and Namespaces are the exception and
//! say so in their own words ("pod is terminating", "namespace is terminating").
//!
//! Rules only read the object: they never fail. A field that is absent counts as zero
//! (or as "not said"), so an object the controller has not reported on yet is judged
//! Progressing rather than being an error. [`assess`] never returns Missing: an absent
//! object is the caller's to report.

mod conditions;
mod crd;
mod cronjob;
mod daemonset;
mod deployment;
mod ingress;
mod job;
mod namespace;
mod pod;
mod pvc;
mod replicaset;
mod service;
mod statefulset;

use capstan_core::{Health, HealthState};
use serde_json::Value;

/// The health of a live object (a Kubernetes object as JSON).
///
/// Never Missing: the caller knows whether the object exists.
pub fn assess(obj: &Value) -> Health {
    let rule = Rule::for_kind(group(obj), text(obj, "/kind").unwrap_or_default());
    if !rule.judges_deletion()
        && let Some(health) = being_deleted(obj)
    {
        return health;
    }
    rule.assess(obj)
}

/// The rule that judges one kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Pod,
    Job,
    CronJob,
    PersistentVolumeClaim,
    Service,
    Ingress,
    Namespace,
    CustomResourceDefinition,
    /// The generic kstatus conventions (`Ready`, `Stalled`, `Reconciling`).
    Conditions,
}

impl Rule {
    /// The rule for a group (`""` for the core group) and a kind.
    fn for_kind(group: &str, kind: &str) -> Rule {
        match (group, kind) {
            ("apps" | "extensions", "Deployment") => Rule::Deployment,
            ("apps", "StatefulSet") => Rule::StatefulSet,
            ("apps" | "extensions", "DaemonSet") => Rule::DaemonSet,
            ("apps" | "extensions", "ReplicaSet") => Rule::ReplicaSet,
            ("", "Pod") => Rule::Pod,
            ("batch", "Job") => Rule::Job,
            ("batch", "CronJob") => Rule::CronJob,
            ("", "PersistentVolumeClaim") => Rule::PersistentVolumeClaim,
            ("", "Service") => Rule::Service,
            ("networking.k8s.io" | "extensions", "Ingress") => Rule::Ingress,
            ("", "Namespace") => Rule::Namespace,
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Rule::CustomResourceDefinition,
            _ => Rule::Conditions,
        }
    }

    /// Whether the rule itself judges an object that is being deleted.
    fn judges_deletion(self) -> bool {
        matches!(self, Rule::Pod | Rule::Namespace)
    }

    /// Applies the rule.
    fn assess(self, obj: &Value) -> Health {
        match self {
            Rule::Deployment => deployment::assess(obj),
            Rule::StatefulSet => statefulset::assess(obj),
            Rule::DaemonSet => daemonset::assess(obj),
            Rule::ReplicaSet => replicaset::assess(obj),
            Rule::Pod => pod::assess(obj),
            Rule::Job => job::assess(obj),
            Rule::CronJob => cronjob::assess(obj),
            Rule::PersistentVolumeClaim => pvc::assess(obj),
            Rule::Service => service::assess(obj),
            Rule::Ingress => ingress::assess(obj),
            Rule::Namespace => namespace::assess(obj),
            Rule::CustomResourceDefinition => crd::assess(obj),
            Rule::Conditions => conditions::assess(obj),
        }
    }
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
        "being deleted".to_string()
    } else {
        format!(
            "being deleted, waiting for finalizers: {}",
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

/// One entry of `status.conditions`.
#[derive(Debug, Clone, Copy)]
struct Condition<'a> {
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
    let found = obj
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))?;
    let field = |name: &str| found.get(name).and_then(Value::as_str).unwrap_or_default();
    Some(Condition {
        status: match field("status") {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        },
        reason: field("reason"),
        message: field("message"),
        observed_generation: found.get("observedGeneration").and_then(Value::as_i64),
    })
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

    use super::Rule;
    use super::test_support::{assert_health, assess_fixture};

    #[test]
    fn kinds_are_dispatched_by_group_and_kind() {
        assert_eq!(Rule::for_kind("apps", "Deployment"), Rule::Deployment);
        assert_eq!(Rule::for_kind("", "Pod"), Rule::Pod);
        assert_eq!(
            Rule::for_kind("networking.k8s.io", "Ingress"),
            Rule::Ingress
        );
        assert_eq!(
            Rule::for_kind("apiextensions.k8s.io", "CustomResourceDefinition"),
            Rule::CustomResourceDefinition
        );
    }

    #[test]
    fn a_kind_borrowed_by_another_group_is_judged_by_its_conditions() {
        assert_eq!(
            Rule::for_kind("example.com", "Deployment"),
            Rule::Conditions
        );
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
            "being deleted, waiting for finalizers: example.com/cleanup",
        );
    }

    #[test]
    fn an_object_without_kind_or_status_is_healthy_by_being_present() {
        assert_eq!(
            assess_fixture("metadata: {name: odd}\n").state,
            HealthState::Healthy
        );
    }
}
