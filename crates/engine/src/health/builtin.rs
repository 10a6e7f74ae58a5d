//! The built-in rules for popular custom resources — cert-manager, Argo Rollouts, Flux,
//! external-secrets and Crossplane — written as CEL rules in `builtin.yaml` and shipped
//! in the binary.
//!
//! They are data in the very format of custom rules, not Rust, so that a team that wants
//! one judged differently copies the rule into its own set and edits it (its rule then
//! takes precedence), so that each of them runs through the same CEL path as the custom
//! rules on every fixture, and so that a Flux user recognises them: they are what one
//! would write in `healthCheckExprs`. They are compiled once, on first use.

use std::sync::LazyLock;

use super::CustomHealth;

/// The rules, as shipped.
const RULES: &str = include_str!("builtin.yaml");

static POPULAR_CRDS: LazyLock<CustomHealth> = LazyLock::new(|| {
    // A test compiles every rule; should that ever fail in a build anyway, the kinds
    // fall back to the kstatus conventions rather than take the process down.
    CustomHealth::from_yaml(RULES, "built-in health rules").unwrap_or_else(|e| {
        tracing::error!("{e}");
        CustomHealth::default()
    })
});

/// The built-in rules for popular custom resources.
pub(super) fn popular_crds() -> &'static CustomHealth {
    &POPULAR_CRDS
}

#[cfg(test)]
mod tests {
    use capstan_core::HealthState::{self, Degraded, Healthy, Progressing, Suspended};

    use crate::health::test_support::assess_fixture;

    /// Every fixture of a built-in rule: the file, the state, a part of the message.
    const CASES: &[(&str, &str, HealthState, &str)] = &[
        (
            "certificate-issued",
            include_str!("testdata/certificate-issued.yaml"),
            Healthy,
            "",
        ),
        (
            "certificate-issuing",
            include_str!("testdata/certificate-issuing.yaml"),
            Progressing,
            "in progress: Ready False: DoesNotExist",
        ),
        (
            "certificate-issuer-not-found",
            include_str!("testdata/certificate-issuer-not-found.yaml"),
            Degraded,
            "issuer \"letsencrypt\" not found",
        ),
        (
            "issuer-ready",
            include_str!("testdata/issuer-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "issuer-initializing",
            include_str!("testdata/issuer-initializing.yaml"),
            Progressing,
            "not ready yet",
        ),
        (
            "issuer-acme-registration-failed",
            include_str!("testdata/issuer-acme-registration-failed.yaml"),
            Degraded,
            "ErrRegisterACMEAccount",
        ),
        (
            "clusterissuer-ready",
            include_str!("testdata/clusterissuer-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "clusterissuer-initializing",
            include_str!("testdata/clusterissuer-initializing.yaml"),
            Progressing,
            "not ready yet",
        ),
        (
            "clusterissuer-ca-secret-missing",
            include_str!("testdata/clusterissuer-ca-secret-missing.yaml"),
            Degraded,
            "secrets \"internal-ca\" not found",
        ),
        (
            "rollout-healthy",
            include_str!("testdata/rollout-healthy.yaml"),
            Healthy,
            "",
        ),
        (
            "rollout-progressing",
            include_str!("testdata/rollout-progressing.yaml"),
            Progressing,
            "rollout Progressing: more replicas need to be updated",
        ),
        (
            "rollout-generation-not-observed",
            include_str!("testdata/rollout-generation-not-observed.yaml"),
            Progressing,
            "waiting for the rollout spec update to be observed",
        ),
        (
            "rollout-paused-at-canary-step",
            include_str!("testdata/rollout-paused-at-canary-step.yaml"),
            Suspended,
            "rollout Paused: CanaryPauseStep",
        ),
        (
            "rollout-aborted",
            include_str!("testdata/rollout-aborted.yaml"),
            Degraded,
            "rollout Degraded: RolloutAborted",
        ),
        (
            "kustomization-ready",
            include_str!("testdata/kustomization-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "kustomization-reconciling",
            include_str!("testdata/kustomization-reconciling.yaml"),
            Progressing,
            "in progress: Ready Unknown: Progressing",
        ),
        (
            "kustomization-build-failed",
            include_str!("testdata/kustomization-build-failed.yaml"),
            Degraded,
            "failed: Ready False: BuildFailed: kustomize build failed",
        ),
        (
            "kustomization-suspended",
            include_str!("testdata/kustomization-suspended.yaml"),
            Suspended,
            "suspended",
        ),
        (
            "helmrelease-ready",
            include_str!("testdata/helmrelease-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "helmrelease-upgrading",
            include_str!("testdata/helmrelease-upgrading.yaml"),
            Progressing,
            "Running 'upgrade' action",
        ),
        (
            "helmrelease-install-failed",
            include_str!("testdata/helmrelease-install-failed.yaml"),
            Degraded,
            "InstallFailed: Helm install failed",
        ),
        (
            "gitrepository-ready",
            include_str!("testdata/gitrepository-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "gitrepository-fetching",
            include_str!("testdata/gitrepository-fetching.yaml"),
            Progressing,
            "new upstream revision",
        ),
        (
            "gitrepository-auth-failed",
            include_str!("testdata/gitrepository-auth-failed.yaml"),
            Degraded,
            "authentication required",
        ),
        (
            "ocirepository-ready",
            include_str!("testdata/ocirepository-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "ocirepository-pulling",
            include_str!("testdata/ocirepository-pulling.yaml"),
            Progressing,
            "reconciliation in progress",
        ),
        (
            "ocirepository-tag-not-found",
            include_str!("testdata/ocirepository-tag-not-found.yaml"),
            Degraded,
            "MANIFEST_UNKNOWN",
        ),
        (
            "helmrepository-ready",
            include_str!("testdata/helmrepository-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "helmrepository-oci-static",
            include_str!("testdata/helmrepository-oci-static.yaml"),
            Healthy,
            "",
        ),
        (
            "helmrepository-fetching",
            include_str!("testdata/helmrepository-fetching.yaml"),
            Progressing,
            "building artifact",
        ),
        (
            "helmrepository-index-unreachable",
            include_str!("testdata/helmrepository-index-unreachable.yaml"),
            Degraded,
            "IndexationFailed",
        ),
        (
            "externalsecret-synced",
            include_str!("testdata/externalsecret-synced.yaml"),
            Healthy,
            "",
        ),
        (
            "externalsecret-pending",
            include_str!("testdata/externalsecret-pending.yaml"),
            Progressing,
            "not ready yet",
        ),
        (
            "externalsecret-sync-error",
            include_str!("testdata/externalsecret-sync-error.yaml"),
            Degraded,
            "SecretSyncedError: could not get secret data from provider",
        ),
        (
            "secretstore-valid",
            include_str!("testdata/secretstore-valid.yaml"),
            Healthy,
            "",
        ),
        (
            "secretstore-pending",
            include_str!("testdata/secretstore-pending.yaml"),
            Progressing,
            "not ready yet",
        ),
        (
            "secretstore-invalid-provider-config",
            include_str!("testdata/secretstore-invalid-provider-config.yaml"),
            Degraded,
            "InvalidProviderConfig",
        ),
        (
            "crossplane-managed-resource-ready",
            include_str!("testdata/crossplane-managed-resource-ready.yaml"),
            Healthy,
            "",
        ),
        (
            "crossplane-managed-resource-creating",
            include_str!("testdata/crossplane-managed-resource-creating.yaml"),
            Progressing,
            "not ready yet: Ready False: Creating",
        ),
        (
            "crossplane-managed-resource-reconcile-error",
            include_str!("testdata/crossplane-managed-resource-reconcile-error.yaml"),
            Degraded,
            "Synced False: ReconcileError: observe failed",
        ),
        (
            "crossplane-provider-healthy",
            include_str!("testdata/crossplane-provider-healthy.yaml"),
            Healthy,
            "",
        ),
        (
            "crossplane-composition-without-status",
            include_str!("testdata/crossplane-composition-without-status.yaml"),
            Healthy,
            "",
        ),
    ];

    #[test]
    fn every_built_in_rule_compiles() {
        let rules = super::CustomHealth::from_yaml(super::RULES, "builtin.yaml");
        assert!(rules.is_ok_and(|rules| !rules.is_empty()));
    }

    #[test]
    fn popular_custom_resources_are_judged_by_their_built_in_rules() {
        let failures: Vec<String> = CASES
            .iter()
            .filter_map(|(name, yaml, state, fragment)| {
                let health = assess_fixture(yaml);
                let agrees = health.state == *state && health.message.contains(fragment);
                (!agrees).then(|| {
                    format!("{name}.yaml: expected {state} with {fragment:?}, judged {health:?}")
                })
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_kind_without_a_built_in_rule_keeps_the_kstatus_conventions() {
        let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nstatus:\n  conditions: [{type: Ready, status: \"False\", reason: Broken}]\n";
        assert_eq!(assess_fixture(widget).state, Degraded);
    }
}
