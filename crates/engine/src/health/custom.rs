//! Custom health: rules written in CEL for kinds the built-in rules do not judge, or
//! judge differently than a team wants. A rule takes precedence over every built-in rule
//! for the kinds it names ([`super::assess_with`]).
//!
//! # The format
//!
//! A YAML (or JSON) list of rules, in the shape of Flux's `healthCheckExprs` (Flux 2.8),
//! so a list copied from a Flux Kustomization works unchanged:
//!
//! ```yaml
//! - apiVersion: cert-manager.io/v1      # or `group: cert-manager.io`
//!   kind: Certificate                   # `*` for every kind of the group
//!   current: status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')
//!   inProgress: status.conditions.exists(c, c.type == 'Issuing' && c.status == 'True')
//!   failed: status.conditions.exists(c, c.type == 'Ready' && c.status == 'False')
//!   # Capstan's own, both optional:
//!   suspended: self.spec.?suspend.orValue(false)
//!   message: self.status.conditions.filter(c, c.type == 'Ready').map(c, c.message).join('; ')
//! ```
//!
//! - `apiVersion` names the group; its version is not compared, so one rule covers every
//!   version of the kind. `group` says the same without a version; a group may be `*`
//!   (any) or `*.example.io` (any group under `example.io`). One of the two is required.
//! - `current` (required), `inProgress`, `failed` and `suspended` are CEL expressions
//!   giving a bool; `message` one giving a string. The object is bound as `self`, and its
//!   top-level fields (`metadata`, `spec`, `status`, …) under their own names, as Flux
//!   binds them (see `cel.rs`).
//! - Unknown fields are errors, and so is a second rule for the same group and kind in
//!   one list: a typo must not silently leave a kind to the built-in rules.
//!
//! # The verdict
//!
//! As Flux evaluates its expressions, with `suspended` in front:
//!
//! 1. `suspended` true → Suspended (before the generation check, as suspending an
//!    object changes its spec and its controller then stops reporting).
//! 2. `status.observedGeneration` differing from `metadata.generation` → Progressing.
//! 3. `inProgress` true → Progressing; `failed` true → Degraded; `current` true →
//!    Healthy, in that order.
//! 4. None of them true → Progressing.
//!
//! The message of a verdict is the `message` expression's value (for Healthy too) or,
//! without one and for any verdict but Healthy, which check decided ("in progress", "failed", "suspended", "not ready
//! yet") and what the object's conditions that are not True say
//! (`failed: Ready False: IssuerNotFound: …`). An expression that
//! fails to evaluate (a field that is absent, a value of another type) gives Unknown with
//! the error, naming the rule and the expression.
//!
//! Several rules may match an object: the most specific wins (an exact kind over `*`,
//! an exact group over a pattern), and among equally specific ones the last. So
//! [`CustomHealth::extend`] layers one set over another.

use std::sync::Arc;

use capstan_core::{Health, HealthState};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cel::{Bindings, CompileError, EvalError, Expression};
use super::{Condition, group, opt_int, sentence, text};

/// The CEL source of a rule's checks: Flux's `healthCheckExprs` fields and Capstan's
/// `suspended` and `message`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthExprs {
    /// True when the object is healthy (Flux: Current).
    pub current: String,
    /// True when the object is on its way (Flux: InProgress); tried first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// True when the object failed (Flux: Failed); tried after `in_progress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// True when the object is deliberately paused; tried before everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
    /// A string saying why (for a Healthy verdict too, when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A rule's checks, compiled.
#[derive(Debug)]
pub struct HealthChecks {
    exprs: HealthExprs,
    current: Expression,
    in_progress: Option<Expression>,
    failed: Option<Expression>,
    suspended: Option<Expression>,
    message: Option<Expression>,
}

/// How one kind of object is judged: a group (pattern), a kind (or `*`) and the checks.
/// Cloning it shares the compiled checks.
#[derive(Debug, Clone)]
pub struct HealthRule {
    /// The group (`""` for the core group), `*` for any, or `*.example.io` for any group
    /// under `example.io`.
    pub group: String,
    /// The kind, or `*` for any kind of the group.
    pub kind: String,
    /// The compiled checks.
    pub checks: Arc<HealthChecks>,
}

/// A set of custom rules, looked up by group and kind. Cloning it shares the compiled
/// rules.
///
/// ```
/// use capstan_core::HealthState;
/// use capstan_engine::health::{CustomHealth, assess_with};
///
/// let rules = CustomHealth::from_yaml(
///     "- apiVersion: example.com/v1\n  kind: Widget\n  current: status.phase == 'Running'\n",
///     "rules.yaml",
/// )?;
/// let widget = serde_json::json!({
///     "apiVersion": "example.com/v1", "kind": "Widget", "status": {"phase": "Running"}
/// });
/// assert_eq!(assess_with(&widget, &rules).state, HealthState::Healthy);
/// # Ok::<(), capstan_engine::health::CustomHealthError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct CustomHealth {
    rules: Vec<HealthRule>,
}

/// A custom rule that could not be read or compiled.
#[derive(Debug, thiserror::Error)]
pub enum CustomHealthError {
    /// The text is not a YAML (or JSON) list of rules.
    #[error("{origin}: {message}")]
    Parse {
        /// Where the text came from (a file, `ConfigMap capstan-health`, …).
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A rule names its kind or group wrongly, or repeats another rule.
    #[error("{rule}: {problem}")]
    InvalidRule {
        /// The rule: its origin and number, group and kind.
        rule: String,
        /// What is wrong.
        problem: String,
    },
    /// An expression of a rule is not valid CEL.
    #[error("{rule}: the {field} expression does not compile: {expression}")]
    Compile {
        /// The rule: its origin and number, group and kind.
        rule: String,
        /// The field holding the expression (`current`, `inProgress`, …).
        field: &'static str,
        /// The expression.
        expression: String,
        /// Why it does not compile.
        #[source]
        source: CompileError,
    },
}

/// One rule as written, before it is compiled: an entry of a YAML list of rules, of a
/// ConfigMap's key, or of an Application's `spec.healthChecks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthRuleSpec {
    /// `group/version` (`cert-manager.io/v1`, `v1`): names the group, the version is
    /// not compared. Give this or `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The group (`""` for the core group), `*`, or `*.example.io`. Give this or
    /// `apiVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind, or `*` for every kind of the group.
    pub kind: String,
    /// True when the object is healthy (required).
    pub current: String,
    /// True when the object is on its way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// True when the object failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// True when the object is deliberately paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
    /// A string saying why (for a Healthy verdict too, when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

static NONE: CustomHealth = CustomHealth { rules: Vec::new() };

impl CustomHealth {
    /// The empty set: every object is judged by the built-in rules.
    pub fn none() -> &'static CustomHealth {
        &NONE
    }

    /// A set of rules; among equally specific ones, later rules win.
    pub fn new(rules: Vec<HealthRule>) -> CustomHealth {
        CustomHealth { rules }
    }

    /// Reads a YAML (or JSON) list of rules (the format is in the module docs); `origin`
    /// names the text in errors. Every expression is compiled here, once.
    pub fn from_yaml(text: &str, origin: &str) -> Result<CustomHealth, CustomHealthError> {
        let specs: Option<Vec<HealthRuleSpec>> =
            serde_saphyr::from_str(text).map_err(|e| CustomHealthError::Parse {
                origin: origin.to_string(),
                message: super::yaml_error(&e),
            })?;
        CustomHealth::from_specs(specs.unwrap_or_default(), origin, |i| {
            format!("rule {}", i + 1)
        })
    }

    /// Compiles rules as written; errors name `origin` and the rule's place in it, as
    /// `item` says it (`rule 2`, `spec.healthChecks[1]`). A second rule for the same
    /// group and kind is an error.
    pub fn from_specs(
        specs: impl IntoIterator<Item = HealthRuleSpec>,
        origin: &str,
        item: impl Fn(usize) -> String,
    ) -> Result<CustomHealth, CustomHealthError> {
        let mut rules: Vec<HealthRule> = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let place = format!("{origin}: {}", item(i));
            let rule = HealthRule::from_spec(spec, &place)?;
            if let Some(earlier) = rules
                .iter()
                .position(|r| r.group == rule.group && r.kind == rule.kind)
            {
                return Err(CustomHealthError::InvalidRule {
                    rule: format!("{place} ({})", rule.name()),
                    problem: format!("repeats {}", item(earlier)),
                });
            }
            rules.push(rule);
        }
        Ok(CustomHealth { rules })
    }

    /// Reads the rules of a ConfigMap: every key of its `data` holds a list of rules (as
    /// [`CustomHealth::from_yaml`] reads it), taken in the order of the keys, so a later
    /// key's rule wins over an equally specific one of an earlier key. Errors name the
    /// ConfigMap and the key. `binaryData` is refused rather than ignored.
    pub fn from_config_map(cm: &ConfigMap) -> Result<CustomHealth, CustomHealthError> {
        let name = format!(
            "ConfigMap {}/{}",
            cm.metadata.namespace.as_deref().unwrap_or_default(),
            cm.metadata.name.as_deref().unwrap_or_default()
        );
        if let Some(key) = cm.binary_data.iter().flat_map(|b| b.keys()).next() {
            return Err(CustomHealthError::Parse {
                origin: format!("{name}, key {key}"),
                message: "health rules are text: put them under data, not binaryData".to_string(),
            });
        }
        let mut rules = CustomHealth::default();
        for (key, text) in cm.data.iter().flatten() {
            rules.extend(CustomHealth::from_yaml(
                text,
                &format!("{name}, key {key}"),
            )?);
        }
        Ok(rules)
    }

    /// Adds `other`'s rules after these, so they win over equally specific ones here.
    pub fn extend(&mut self, other: CustomHealth) {
        self.rules.extend(other.rules);
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[HealthRule] {
        &self.rules
    }

    /// Whether the set has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that judges a group (`""` for the core group) and kind, if any: the most
    /// specific, and among equally specific ones the last.
    pub fn rule_for(&self, group: &str, kind: &str) -> Option<&HealthRule> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.matches(group, kind))
            .max_by_key(|(i, rule)| (rule.specificity(), *i))
            .map(|(_, rule)| rule)
    }

    /// The health of an object by the rule for its group and kind; `None` when no rule
    /// of this set judges it.
    pub fn assess(&self, obj: &Value) -> Option<Health> {
        let kind = text(obj, "/kind").unwrap_or_default();
        self.rule_for(group(obj), kind).map(|rule| rule.assess(obj))
    }
}

impl HealthRule {
    /// Compiles a rule for a group (or pattern) and a kind (or `*`).
    pub fn new(
        group: &str,
        kind: &str,
        exprs: HealthExprs,
    ) -> Result<HealthRule, CustomHealthError> {
        let name = name(group, kind);
        validate(group, kind).map_err(|problem| CustomHealthError::InvalidRule {
            rule: name.clone(),
            problem,
        })?;
        Ok(HealthRule {
            group: group.to_string(),
            kind: kind.to_string(),
            checks: Arc::new(HealthChecks::compile(exprs, &name)?),
        })
    }

    /// `Certificate.cert-manager.io`, `Pod`: the kind and group, as kubectl names them.
    pub fn name(&self) -> String {
        name(&self.group, &self.kind)
    }

    /// Whether the rule judges objects of a group and kind.
    pub fn matches(&self, group: &str, kind: &str) -> bool {
        let group_matches = match self.group.as_str() {
            "*" => true,
            pattern => match pattern.strip_prefix('*') {
                Some(suffix) => group.ends_with(suffix) && group.len() > suffix.len(),
                None => pattern == group,
            },
        };
        group_matches && (self.kind == "*" || self.kind == kind)
    }

    /// The health of an object by this rule (see the module docs for the order).
    pub fn assess(&self, obj: &Value) -> Health {
        let object = Bindings::new(obj);
        match self.verdict(obj, &object) {
            // a Healthy verdict says something only when the rule has a message
            Ok((HealthState::Healthy, _)) => match &self.checks.message {
                Some(_) => Health::new(HealthState::Healthy, self.message("", obj, &object)),
                None => Health::healthy(),
            },
            Ok((state, phrase)) => Health::new(state, self.message(phrase, obj, &object)),
            Err(health) => health,
        }
    }

    /// The state, with a phrase saying which check gave it; `Err` for a health decided
    /// otherwise (a stale status, a check that failed to evaluate).
    fn verdict(
        &self,
        obj: &Value,
        object: &Bindings,
    ) -> Result<(HealthState, &'static str), Health> {
        let checks = &self.checks;
        let holds = |expr: &Option<Expression>, field: &str| match expr {
            Some(expr) => self.check(expr, field, object),
            None => Ok(false),
        };
        if holds(&checks.suspended, "suspended")? {
            return Ok((HealthState::Suspended, "suspended"));
        }
        if let Some(stale) = not_observed(obj) {
            return Err(stale);
        }
        if holds(&checks.in_progress, "inProgress")? {
            return Ok((HealthState::Progressing, "in progress"));
        }
        if holds(&checks.failed, "failed")? {
            return Ok((HealthState::Degraded, "failed"));
        }
        if self.check(&checks.current, "current", object)? {
            return Ok((HealthState::Healthy, ""));
        }
        Ok((HealthState::Progressing, "not ready yet"))
    }

    /// One check's value; Unknown, naming the rule and the expression, when it fails.
    fn check(&self, expr: &Expression, field: &str, object: &Bindings) -> Result<bool, Health> {
        expr.boolean(object)
            .map_err(|e| self.evaluation_failed(expr, field, &e))
    }

    /// The `message` expression's value or, without one, the phrase and the conditions
    /// that are not True.
    fn message(&self, phrase: &str, obj: &Value, object: &Bindings) -> String {
        match &self.checks.message {
            Some(expr) => expr.string(object).unwrap_or_else(|e| {
                format!(
                    "health rule {}: the message expression failed: {e}",
                    self.name()
                )
            }),
            None => sentence(&[phrase, &conditions_not_true(obj)]),
        }
    }

    fn evaluation_failed(&self, expr: &Expression, field: &str, e: &EvalError) -> Health {
        Health::new(
            HealthState::Unknown,
            format!(
                "health rule {}: the {field} expression {:?} failed: {e}",
                self.name(),
                expr.source()
            ),
        )
    }

    /// 1, 2 or 3 for how exactly the rule names a kind and group; 0 for `*` and `*`.
    fn specificity(&self) -> u8 {
        u8::from(self.kind != "*") * 2 + u8::from(!self.group.starts_with('*'))
    }

    fn from_spec(spec: HealthRuleSpec, place: &str) -> Result<HealthRule, CustomHealthError> {
        let invalid = |problem: &str| CustomHealthError::InvalidRule {
            rule: format!("{place} ({})", spec.kind),
            problem: problem.to_string(),
        };
        let group = match (&spec.api_version, &spec.group) {
            (Some(_), Some(_)) => return Err(invalid("give apiVersion or group, not both")),
            (None, None) => return Err(invalid("apiVersion (or group) is required")),
            (Some(api_version), None) => api_version
                .rsplit_once('/')
                .map_or("", |(group, _version)| group)
                .to_string(),
            (None, Some(group)) => group.clone(),
        };
        let exprs = HealthExprs {
            current: spec.current,
            in_progress: spec.in_progress,
            failed: spec.failed,
            suspended: spec.suspended,
            message: spec.message,
        };
        HealthRule::new(&group, &spec.kind, exprs).map_err(|e| e.in_place(place))
    }
}

impl HealthChecks {
    /// The source the checks were compiled from.
    pub fn exprs(&self) -> &HealthExprs {
        &self.exprs
    }

    fn compile(exprs: HealthExprs, rule: &str) -> Result<HealthChecks, CustomHealthError> {
        let compile = |field: &'static str, source: &str| {
            Expression::compile(source).map_err(|source_error| CustomHealthError::Compile {
                rule: rule.to_string(),
                field,
                expression: source.to_string(),
                source: source_error,
            })
        };
        let optional = |field: &'static str, source: &Option<String>| {
            source
                .as_deref()
                .map(|source| compile(field, source))
                .transpose()
        };
        Ok(HealthChecks {
            current: compile("current", &exprs.current)?,
            in_progress: optional("inProgress", &exprs.in_progress)?,
            failed: optional("failed", &exprs.failed)?,
            suspended: optional("suspended", &exprs.suspended)?,
            message: optional("message", &exprs.message)?,
            exprs,
        })
    }
}

impl CustomHealthError {
    /// The same error, with the rule's place in its list in front of its name.
    fn in_place(self, place: &str) -> CustomHealthError {
        let placed = |rule: String| format!("{place} ({rule})");
        match self {
            CustomHealthError::InvalidRule { rule, problem } => CustomHealthError::InvalidRule {
                rule: placed(rule),
                problem,
            },
            CustomHealthError::Compile {
                rule,
                field,
                expression,
                source,
            } => CustomHealthError::Compile {
                rule: placed(rule),
                field,
                expression,
                source,
            },
            parse @ CustomHealthError::Parse { .. } => parse,
        }
    }
}

/// `Kind.group`, or `Kind` for the core group.
fn name(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// Why a group and kind cannot name a rule, if they cannot.
fn validate(group: &str, kind: &str) -> Result<(), String> {
    if kind.is_empty() || kind.contains(['/', '.', ' ']) {
        return Err(format!("kind {kind:?} is not a kind (nor `*`)"));
    }
    let plain = group.strip_prefix("*.").unwrap_or(group);
    let valid_group = group == "*"
        || plain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_group || (group.starts_with("*.") && plain.is_empty()) {
        return Err(format!(
            "group {group:?} is not a group, `*` or `*.example.io`"
        ));
    }
    Ok(())
}

/// `Ready False: Creating: …; Synced Unknown`: what the conditions that are not True say.
fn conditions_not_true(obj: &Value) -> String {
    let all = obj.pointer("/status/conditions").and_then(Value::as_array);
    all.into_iter()
        .flatten()
        .map(Condition::from_value)
        .filter(|c| !c.is_true() && !c.kind.is_empty())
        .map(|c| {
            sentence(&[
                &format!("{} {}", c.kind, c.status.as_str()),
                c.reason,
                c.message,
            ])
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Progressing when `status.observedGeneration` is there and differs from
/// `metadata.generation`: the rest of the status is stale.
fn not_observed(obj: &Value) -> Option<Health> {
    let observed = opt_int(obj, "/status/observedGeneration")?;
    let generation = opt_int(obj, "/metadata/generation")?;
    (observed != generation).then(|| {
        Health::new(
            HealthState::Progressing,
            format!("waiting for the controller to observe generation {generation} (observed {observed})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;
    use serde_json::{Value, json};

    use super::{CustomHealth, CustomHealthError, HealthExprs, HealthRule, HealthRuleSpec};
    use crate::health::assess_with;

    const WIDGETS: &str = r#"
- apiVersion: example.com/v1
  kind: Widget
  current: status.phase == 'Running'
  inProgress: status.phase == 'Pending'
  failed: status.phase == 'Broken'
  message: "'widget is ' + status.phase"
"#;

    fn widget(phase: &str) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
               "status": {"phase": phase}})
    }

    fn rules(yaml: &str) -> CustomHealth {
        CustomHealth::from_yaml(yaml, "capstan-health").expect("the rules compile")
    }

    #[test]
    fn a_rule_in_flux_shape_judges_its_kind_by_its_expressions() {
        let custom = rules(WIDGETS);
        let judged = |phase| assess_with(&widget(phase), &custom);
        assert_eq!(judged("Running").state, HealthState::Healthy);
        assert_eq!(judged("Pending").message, "widget is Pending");
        assert_eq!(judged("Pending").state, HealthState::Progressing);
        assert_eq!(judged("Broken").state, HealthState::Degraded);
        assert_eq!(
            judged("Sleeping").state,
            HealthState::Progressing,
            "none true: Progressing, as in Flux"
        );
    }

    #[test]
    fn a_custom_rule_takes_precedence_over_the_built_in_rule_for_its_kind() {
        let custom = rules("- apiVersion: apps/v1\n  kind: Deployment\n  current: 'true'\n");
        let rolling_out = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                                 "spec": {"replicas": 3}, "status": {"updatedReplicas": 1}});
        assert_eq!(
            crate::health::assess(&rolling_out).state,
            HealthState::Progressing
        );
        assert_eq!(
            assess_with(&rolling_out, &custom).state,
            HealthState::Healthy
        );
    }

    #[test]
    fn a_custom_rule_takes_precedence_over_a_built_in_crd_rule() {
        let custom = rules("- group: cert-manager.io\n  kind: Certificate\n  current: 'true'\n");
        let failing = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"},
                             "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        assert_eq!(crate::health::assess(&failing).state, HealthState::Degraded);
        assert_eq!(assess_with(&failing, &custom).state, HealthState::Healthy);
    }

    #[test]
    fn the_most_specific_rule_wins_and_a_later_set_wins_among_equals() {
        let mut custom = rules(
            "- group: '*.example.com'\n  kind: '*'\n  current: 'false'\n- group: ops.example.com\n  kind: Widget\n  current: 'true'\n",
        );
        assert_eq!(
            custom
                .rule_for("ops.example.com", "Widget")
                .map(HealthRule::name)
                .as_deref(),
            Some("Widget.ops.example.com")
        );
        assert_eq!(
            custom
                .rule_for("ops.example.com", "Gadget")
                .map(|r| r.group.as_str()),
            Some("*.example.com")
        );
        assert!(
            custom.rule_for("example.com", "Widget").is_none(),
            "*.example.com is for groups under it"
        );
        custom.extend(rules("- group: ops.example.com\n  kind: Widget\n  current: 'false'\n  message: \"'overridden'\"\n"));
        let obj = json!({"apiVersion": "ops.example.com/v1", "kind": "Widget"});
        assert_eq!(
            custom.assess(&obj).map(|h| h.message),
            Some("overridden".to_string())
        );
    }

    #[test]
    fn a_stale_status_is_progressing_before_any_expression_is_tried() {
        let custom = rules(WIDGETS);
        let mut obj = widget("Running");
        obj["metadata"]["generation"] = json!(3);
        obj["status"]["observedGeneration"] = json!(2);
        let health = assess_with(&obj, &custom);
        assert_eq!(health.state, HealthState::Progressing);
        assert_eq!(
            health.message,
            "waiting for the controller to observe generation 3 (observed 2)"
        );
    }

    #[test]
    fn an_expression_that_fails_to_evaluate_gives_unknown_naming_rule_and_expression() {
        let custom = rules(WIDGETS);
        let obj =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let health = assess_with(&obj, &custom);
        assert_eq!(health.state, HealthState::Unknown);
        assert!(
            health.message.starts_with("health rule Widget.example.com: the inProgress expression \"status.phase == 'Pending'\" failed:"),
            "{health:?}"
        );
        let not_a_bool = rules("- apiVersion: v1\n  kind: ConfigMap\n  current: metadata.name\n");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}});
        assert!(
            assess_with(&cm, &not_a_bool)
                .message
                .ends_with("failed: gave a string, not a bool")
        );
    }

    #[test]
    fn a_compile_error_names_the_origin_the_rule_and_the_expression() {
        let err = CustomHealth::from_yaml(
            "- apiVersion: v1\n  kind: Pod\n  current: 'true'\n- apiVersion: example.com/v1\n  kind: Widget\n  current: 'true'\n  failed: status.(\n",
            "ConfigMap argocd/capstan-health",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                CustomHealthError::Compile {
                    field: "failed",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "ConfigMap argocd/capstan-health: rule 2 (Widget.example.com): the failed expression does not compile: status.("
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "the parser's error is kept as the source"
        );
    }

    #[test]
    fn malformed_rule_lists_are_errors_naming_the_origin_and_rule() {
        let cases = [
            (
                "- kind: Widget\n  current: 'true'\n",
                "rules.yaml: rule 1 (Widget): apiVersion (or group) is required",
            ),
            (
                "- apiVersion: a/v1\n  group: a\n  kind: W\n  current: 'true'\n",
                "rules.yaml: rule 1 (W): give apiVersion or group, not both",
            ),
            (
                "- apiVersion: a/v1\n  kind: W\n  curent: 'true'\n",
                "rules.yaml: ",
            ),
            (
                "- apiVersion: a/v1\n  kind: W\n  inProgress: 'true'\n",
                "rules.yaml: ",
            ),
            (
                "- apiVersion: a/v1\n  kind: W\n  current: 'true'\n- group: a\n  kind: W\n  current: 'false'\n",
                "rules.yaml: rule 2 (W.a): repeats rule 1",
            ),
            (
                "- group: 'not a group'\n  kind: W\n  current: 'true'\n",
                "rules.yaml: rule 1 (W.not a group): group \"not a group\"",
            ),
            (
                "- apiVersion: a/v1\n  kind: a/W\n  current: 'true'\n",
                "rules.yaml: rule 1 (a/W.a): kind \"a/W\"",
            ),
            ("kind: Widget\n", "rules.yaml: "),
            ("- [1, 2]\n", "rules.yaml: "),
            (
                "- apiVersion: a/v1\n  kind: W\n  current: 'x ? y'\n",
                "rules.yaml: rule 1 (W.a): the current expression does not compile",
            ),
            ("{{{{", "rules.yaml: "),
        ];
        for (yaml, start) in cases {
            match CustomHealth::from_yaml(yaml, "rules.yaml") {
                Ok(rules) => panic!("{yaml:?} was accepted: {rules:?}"),
                Err(err) => assert!(err.to_string().starts_with(start), "{yaml:?}: {err}"),
            }
        }
    }

    #[test]
    fn an_empty_text_has_no_rules() {
        for text in ["", "# nothing yet\n", "[]"] {
            assert!(rules(text).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn rules_built_in_code_compile_the_same_way() {
        let exprs = HealthExprs {
            current: "self.status.ready".to_string(),
            suspended: Some("self.spec.paused".to_string()),
            ..HealthExprs::default()
        };
        let rule = HealthRule::new("example.com", "Widget", exprs.clone()).unwrap();
        assert_eq!(rule.checks.exprs(), &exprs);
        let paused =
            json!({"kind": "Widget", "spec": {"paused": true}, "status": {"ready": false}});
        assert_eq!(rule.assess(&paused).state, HealthState::Suspended);
        let bad = HealthExprs {
            current: "(".to_string(),
            ..HealthExprs::default()
        };
        assert!(HealthRule::new("example.com", "Widget", bad).is_err());
    }

    fn config_map(data: &[(&str, &str)]) -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "capstan-health", "namespace": "capstan-system"},
            "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap()
    }

    #[test]
    fn rules_from_a_config_map_judge_their_kinds_and_a_later_key_wins() {
        let cm = config_map(&[
            ("widgets.yaml", WIDGETS),
            (
                "zz-override.yaml",
                "- group: example.com\n  kind: Widget\n  current: 'false'\n  message: \"'overridden'\"\n",
            ),
        ]);
        let custom = CustomHealth::from_config_map(&cm).expect("the rules compile");
        assert_eq!(custom.rules().len(), 2);
        let health = assess_with(&widget("Running"), &custom);
        assert_eq!(
            (health.state, health.message.as_str()),
            (HealthState::Progressing, "overridden")
        );
        let only_widgets = CustomHealth::from_config_map(&config_map(&[("widgets.yaml", WIDGETS)]))
            .expect("the rules compile");
        assert_eq!(
            assess_with(&widget("Broken"), &only_widgets).message,
            "widget is Broken"
        );
        let empty =
            serde_json::from_value(json!({"metadata": {"name": "capstan-health"}})).unwrap();
        assert!(CustomHealth::from_config_map(&empty).unwrap().is_empty());
    }

    #[test]
    fn a_bad_expression_in_a_config_map_names_the_config_map_key_rule_and_expression() {
        let cm = config_map(&[
            ("a.yaml", WIDGETS),
            (
                "b.yaml",
                "- apiVersion: v1\n  kind: Pod\n  current: 'true'\n- apiVersion: example.com/v1\n  kind: Gadget\n  current: status.(\n",
            ),
        ]);
        let err = CustomHealth::from_config_map(&cm).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap capstan-system/capstan-health, key b.yaml: rule 2 (Gadget.example.com): \
             the current expression does not compile: status.("
        );
        let not_yaml = config_map(&[("rules", "- apiVersion: v1\n  kind: Pod\n  curent: x\n")]);
        assert!(
            CustomHealth::from_config_map(&not_yaml)
                .unwrap_err()
                .to_string()
                .starts_with("ConfigMap capstan-system/capstan-health, key rules: "),
        );
        let binary: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "capstan-health", "namespace": "capstan-system"},
            "binaryData": {"rules.yaml": "LSBraW5kOiBQb2QK"},
        }))
        .unwrap();
        assert_eq!(
            CustomHealth::from_config_map(&binary)
                .unwrap_err()
                .to_string(),
            "ConfigMap capstan-system/capstan-health, key rules.yaml: health rules are text: \
             put them under data, not binaryData"
        );
    }

    #[test]
    fn rules_given_as_specs_name_their_place_as_the_caller_says() {
        let spec = |kind: &str, current: &str| HealthRuleSpec {
            group: Some("example.com".to_string()),
            kind: kind.to_string(),
            current: current.to_string(),
            ..HealthRuleSpec::default()
        };
        let place = |i| format!("spec.healthChecks[{i}]");
        let custom = CustomHealth::from_specs(
            [spec("Widget", "status.phase == 'Running'")],
            "Application shop/web",
            place,
        )
        .unwrap();
        assert_eq!(
            assess_with(&widget("Running"), &custom).state,
            HealthState::Healthy
        );
        let err = CustomHealth::from_specs(
            [spec("Widget", "true"), spec("Gadget", "status.(")],
            "Application shop/web",
            place,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Application shop/web: spec.healthChecks[1] (Gadget.example.com): the current \
             expression does not compile: status.("
        );
        let err = CustomHealth::from_specs(
            [spec("Widget", "true"), spec("Widget", "false")],
            "Application shop/web",
            place,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Application shop/web: spec.healthChecks[1] (Widget.example.com): repeats \
             spec.healthChecks[0]"
        );
    }

    #[test]
    fn custom_health_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<CustomHealth>();
    }
}
