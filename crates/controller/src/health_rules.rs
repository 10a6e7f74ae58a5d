//! Custom health rules, as the controller finds them: the ConfigMap
//! [`HEALTH_RULES_CONFIG_MAP`] in the controller's namespace (for every Application) and
//! an Application's `spec.healthChecks` (for that Application only). Both are lists of
//! CEL rules in the shape of Flux's `healthCheckExprs` (see docs/health.md); the
//! Application's win over equally specific rules of the ConfigMap, and both win over
//! the built-in rules for their kinds.

use std::sync::{Arc, Mutex};

use capstan_engine::health::{CustomHealth, CustomHealthError, HealthRuleSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;

use crate::crd::Application;

/// The ConfigMap of cluster-wide health rules: each key of its `data` holds a list.
pub const HEALTH_RULES_CONFIG_MAP: &str = "capstan-health";

/// The rules of one Application's `spec.healthChecks`; an error names the Application,
/// the entry (`spec.healthChecks[1]`), the rule and the expression.
pub fn application_rules(app: &Application) -> Result<CustomHealth, CustomHealthError> {
    let origin = format!(
        "Application {}/{}",
        app.namespace().unwrap_or_default(),
        app.name_any()
    );
    CustomHealth::from_specs(
        app.spec.health_checks.iter().map(HealthRuleSpec::from),
        &origin,
        |i| format!("spec.healthChecks[{i}]"),
    )
}

/// The ConfigMap's rules, compiled once per version of the ConfigMap and shared by
/// every reconcile.
#[derive(Debug, Clone, Default)]
pub struct ClusterHealthRules {
    /// The `resourceVersion` last compiled, and what came of it.
    compiled: Arc<Mutex<Option<(String, Compiled)>>>,
}

/// The ConfigMap's rules, or why they could not be read.
type Compiled = Result<Arc<CustomHealth>, String>;

impl ClusterHealthRules {
    /// The rules of the ConfigMap in `namespace` (none when there is no ConfigMap), or
    /// an error naming the ConfigMap, the key, the rule and the expression.
    pub async fn load(&self, client: &kube::Client, namespace: &str) -> Compiled {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let cm = match api.get_opt(HEALTH_RULES_CONFIG_MAP).await {
            Ok(Some(cm)) => cm,
            Ok(None) => return Ok(Arc::default()),
            Err(e) => {
                return Err(format!(
                    "reading ConfigMap {namespace}/{HEALTH_RULES_CONFIG_MAP}: {e}"
                ));
            }
        };
        let version = cm.resource_version().unwrap_or_default();
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, rules)) = compiled.as_ref()
            && *seen == version
            && !version.is_empty()
        {
            return rules.clone();
        }
        let rules = CustomHealth::from_config_map(&cm)
            .map(Arc::new)
            .map_err(|e| crate::reconcile::error_chain(&e));
        *compiled = Some((version, rules.clone()));
        rules
    }
}

/// The rules that judge one Application's objects: the cluster's, then its own.
pub fn combined(cluster: &CustomHealth, own: CustomHealth) -> Arc<CustomHealth> {
    let mut rules = cluster.clone();
    rules.extend(own);
    Arc::new(rules)
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState;
    use capstan_engine::health::assess_with;
    use serde_json::json;

    use super::{application_rules, combined};
    use crate::crd::{Application, ApplicationSpec, HealthCheck};

    fn app(checks: Vec<HealthCheck>) -> Application {
        let mut app = Application::new(
            "web",
            ApplicationSpec {
                health_checks: checks,
                ..Default::default()
            },
        );
        app.metadata.namespace = Some("shop".into());
        app
    }

    fn widget_check(current: &str) -> HealthCheck {
        HealthCheck {
            api_version: Some("example.com/v1".into()),
            kind: "Widget".into(),
            current: current.into(),
            failed: Some("status.phase == 'Broken'".into()),
            ..Default::default()
        }
    }

    fn widget(phase: &str) -> serde_json::Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
               "status": {"phase": phase}})
    }

    #[test]
    fn an_applications_health_checks_judge_its_kinds() {
        let rules = application_rules(&app(vec![widget_check("status.phase == 'Running'")]))
            .expect("the rules compile");
        assert_eq!(
            assess_with(&widget("Running"), &rules).state,
            HealthState::Healthy
        );
        assert_eq!(
            assess_with(&widget("Broken"), &rules).state,
            HealthState::Degraded
        );
        assert!(application_rules(&app(Vec::new())).unwrap().is_empty());
    }

    #[test]
    fn a_bad_expression_names_the_application_the_entry_and_the_expression() {
        let err = application_rules(&app(vec![
            widget_check("true"),
            HealthCheck {
                group: Some("example.com".into()),
                kind: "Gadget".into(),
                current: "status.(".into(),
                ..Default::default()
            },
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Application shop/web: spec.healthChecks[1] (Gadget.example.com): the current \
             expression does not compile: status.("
        );
        let err = application_rules(&app(vec![HealthCheck {
            kind: "Widget".into(),
            current: "true".into(),
            ..Default::default()
        }]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Application shop/web: spec.healthChecks[0] (Widget): apiVersion (or group) is required"
        );
    }

    #[test]
    fn the_applications_rules_win_over_the_clusters_for_the_same_kind() {
        let cluster = capstan_engine::health::CustomHealth::from_yaml(
            "- apiVersion: example.com/v1\n  kind: Widget\n  current: 'false'\n",
            "ConfigMap capstan-system/capstan-health, key rules.yaml",
        )
        .unwrap();
        let own = application_rules(&app(vec![widget_check("status.phase == 'Running'")])).unwrap();
        let rules = combined(&cluster, own);
        assert_eq!(
            assess_with(&widget("Running"), &rules).state,
            HealthState::Healthy
        );
        let cluster_only = combined(&cluster, application_rules(&app(Vec::new())).unwrap());
        assert_eq!(
            assess_with(&widget("Running"), &cluster_only).state,
            HealthState::Progressing
        );
    }
}
