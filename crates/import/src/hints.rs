//! What to tell the user about a field Capstan has no equivalent for, by the field's
//! path (list indexes ignored). Fields not listed get the generic message.

/// `(path suffix, message)`, first match wins; a suffix matches at a field boundary.
const HINTS: &[(&str, &str)] = &[
    // Argo CD Application
    (
        "source.plugin",
        "Config Management Plugins have no Capstan equivalent; left out: the path is rendered as plain manifests, Kustomize or Helm, whichever its files call for",
    ),
    (
        "source.helm.fileParameters",
        "Helm --set-file values have no Capstan equivalent; left out (put the file's content in helm.values)",
    ),
    (
        "source.helm.passCredentials",
        "passing repository credentials to every chart domain has no Capstan equivalent; left out",
    ),
    (
        "source.helm.ignoreMissingValueFiles",
        "Capstan fails on a missing values file; left out",
    ),
    (
        "source.helm.skipCrds",
        "Helm --skip-crds has no Capstan equivalent; left out (CRDs are rendered)",
    ),
    (
        "source.helm.skipTests",
        "Helm --skip-tests has no Capstan equivalent; left out",
    ),
    (
        "source.helm.skipSchemaValidation",
        "Helm --skip-schema-validation has no Capstan equivalent; left out",
    ),
    (
        "source.helm.version",
        "Capstan always renders with Helm 3; left out",
    ),
    (
        "source.helm.kubeVersion",
        "Helm --kube-version has no Capstan equivalent; left out",
    ),
    (
        "source.helm.apiVersions",
        "Helm --api-versions has no Capstan equivalent; left out",
    ),
    (
        "source.helm.namespace",
        "a Helm release namespace other than the destination namespace has no Capstan equivalent; left out",
    ),
    (
        "source.kustomize",
        "Kustomize overrides in the Application have no Capstan equivalent (its kustomize field has only buildOptions); left out: put them in the kustomization.yaml",
    ),
    (
        "source.name",
        "source names have no Capstan equivalent; left out",
    ),
    (
        "spec.info",
        "informational links have no Capstan equivalent; left out",
    ),
    (
        "spec.revisionHistoryLimit",
        "Capstan keeps a bounded history of its own; left out",
    ),
    (
        "spec.operation",
        "a pending Argo CD operation is not carried over; left out (run `capstan sync` instead)",
    ),
    (
        "ignoreDifferences.jqPathExpressions",
        "jq path expressions have no Capstan equivalent (only jsonPointers); left out",
    ),
    (
        "ignoreDifferences.managedFieldsManagers",
        "ignoring fields by manager has no Capstan equivalent (only jsonPointers); left out",
    ),
    (
        "syncPolicy.retry.refresh",
        "refreshing on retry has no Capstan equivalent; left out",
    ),
    // Argo CD ApplicationSet
    (
        "spec.syncPolicy.preserveResourcesOnDeletion",
        "ApplicationSet sync policies have no Capstan equivalent: the Applications are written out; left out",
    ),
    (
        "spec.syncPolicy.applicationsSync",
        "ApplicationSet sync policies have no Capstan equivalent: the Applications are written out; left out",
    ),
    (
        "spec.strategy",
        "progressive syncs of an ApplicationSet have no Capstan equivalent; left out",
    ),
    (
        "spec.templatePatch",
        "template patches are not applied by capstan import; left out",
    ),
    (
        "spec.ignoreApplicationDifferences",
        "the Applications are written out once; left out",
    ),
    (
        "spec.preservedFields",
        "the Applications are written out once; left out",
    ),
    (
        "git.requeueAfterSeconds",
        "the directories are read once, when importing; left out",
    ),
    // Flux
    (
        "spec.postBuild",
        "post-build variable substitution has no Capstan equivalent; left out: the manifests are applied with ${VAR} as written",
    ),
    (
        "spec.patches",
        "patches in the Kustomization object have no Capstan equivalent; left out: move them into the kustomization.yaml",
    ),
    (
        "spec.images",
        "image overrides in the Kustomization object have no Capstan equivalent; left out: move them into the kustomization.yaml",
    ),
    (
        "spec.components",
        "components in the Kustomization object have no Capstan equivalent; left out: move them into the kustomization.yaml",
    ),
    (
        "spec.namePrefix",
        "a name prefix in the Kustomization object has no Capstan equivalent; left out: move it into the kustomization.yaml",
    ),
    (
        "spec.nameSuffix",
        "a name suffix in the Kustomization object has no Capstan equivalent; left out: move it into the kustomization.yaml",
    ),
    (
        "spec.commonMetadata",
        "common labels and annotations in the object have no Capstan equivalent; left out",
    ),
    (
        "spec.decryption",
        "SOPS decryption is not in this Capstan's Application schema; left out: encrypted files would be applied as they are",
    ),
    (
        "spec.healthChecks",
        "Capstan assesses the health of every object it applies; the list is left out",
    ),
    (
        "spec.retryInterval",
        "Capstan retries failed syncs with exponential backoff (syncPolicy.retry); left out",
    ),
    (
        "spec.timeout",
        "Capstan's time limits are the controller's (--wave-timeout); left out",
    ),
    (
        "spec.serviceAccountName",
        "applying as another service account has no Capstan equivalent yet (projects come later); left out",
    ),
    (
        "spec.kubeConfig",
        "remote clusters have no Capstan equivalent yet; left out: the Application applies to the cluster its controller runs in",
    ),
    (
        "spec.force",
        "recreating objects whose immutable fields changed has no exact Capstan equivalent (the Replace and Force sync options always replace); left out",
    ),
    (
        "spec.deletionPolicy",
        "Capstan deletes an Application's objects only with its capstan.dev/delete-resources finalizer; left out",
    ),
    (
        "spec.install",
        "Helm install options have no Capstan equivalent (Capstan renders with helm template and applies); left out",
    ),
    (
        "spec.upgrade",
        "Helm upgrade options have no Capstan equivalent (Capstan renders with helm template and applies); left out",
    ),
    (
        "spec.rollback",
        "Helm rollback options have no Capstan equivalent (use `capstan rollback`); left out",
    ),
    (
        "spec.uninstall",
        "Helm uninstall options have no Capstan equivalent; left out",
    ),
    (
        "spec.test",
        "Helm tests have no Capstan equivalent; left out",
    ),
    (
        "spec.postRenderers",
        "post-renderers have no Capstan equivalent; left out",
    ),
    (
        "spec.maxHistory",
        "Capstan keeps a bounded history of its own; left out",
    ),
    (
        "spec.storageNamespace",
        "Capstan keeps no Helm release storage; left out",
    ),
    (
        "spec.persistentClient",
        "has no Capstan equivalent; left out",
    ),
    (
        "spec.driftDetection.ignore",
        "ignore rules go to ignoreDifferences only as JSON pointers; left out",
    ),
    (
        "chart.spec.verify",
        "chart signature verification is not in this Capstan's Application schema; left out",
    ),
    (
        "chart.spec.reconcileStrategy",
        "Capstan renders the chart at every new revision or version; left out",
    ),
    (
        "chart.spec.interval",
        "the chart is checked at the Application's interval; left out",
    ),
    (
        "chart.metadata",
        "labels and annotations of Flux's HelmChart object; left out",
    ),
    (
        "spec.verify",
        "signature verification is not in this Capstan's Application schema; left out",
    ),
    (
        "spec.ignore",
        "ignore patterns of a source have no Capstan equivalent; left out: every file under the path is read",
    ),
    (
        "spec.include",
        "including other repositories has no Capstan equivalent; left out",
    ),
    (
        "spec.recurseSubmodules",
        "Git submodules are not fetched by Capstan; left out",
    ),
    (
        "spec.provider",
        "cloud provider authentication has no Capstan equivalent; left out",
    ),
    (
        "spec.proxySecretRef",
        "proxies per source have no Capstan equivalent; left out",
    ),
    (
        "spec.certSecretRef",
        "TLS client certificates and CAs per source have no Capstan equivalent; left out",
    ),
    (
        "spec.insecure",
        "Capstan allows plain HTTP to loopback hosts only; left out",
    ),
    (
        "spec.accessFrom",
        "cross-namespace access rules have no Capstan equivalent; left out",
    ),
    (
        "spec.passCredentials",
        "has no Capstan equivalent; left out",
    ),
    (
        "spec.layerSelector",
        "a layer other than the Helm chart's has no Capstan equivalent; left out",
    ),
    (
        "spec.sparseCheckout",
        "sparse checkouts have no Capstan equivalent; left out",
    ),
];

/// The message for an unmapped field, when there is a specific one.
pub(crate) fn hint(path: &str) -> Option<&'static str> {
    // `spec.sources[1].plugin` is a source's field like `spec.source.plugin`.
    let normalized = strip_indexes(path).replace(".sources.", ".source.");
    HINTS.iter().find_map(|(suffix, message)| {
        let at_boundary = normalized == *suffix
            || normalized.ends_with(&format!(".{suffix}"))
            || normalized.contains(&format!(".{suffix}."))
            || normalized.starts_with(&format!("{suffix}."));
        at_boundary.then_some(*message)
    })
}

fn strip_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_match_whole_fields_anywhere_in_the_path() {
        assert!(hint("spec.source.plugin").unwrap().contains("Plugin"));
        assert!(
            hint("spec.sources[2].plugin.env[0].name")
                .unwrap()
                .contains("Plugin")
        );
        assert!(
            hint("spec.template.spec.source.plugin.name")
                .unwrap()
                .contains("Plugin")
        );
        assert!(
            hint("spec.install.strategy.name")
                .unwrap()
                .contains("Helm install")
        );
        assert!(
            hint("spec.postBuild.substitute.a")
                .unwrap()
                .contains("substitution")
        );
        assert_eq!(hint("spec.sourceplugin"), None);
        assert_eq!(hint("spec.unknownThing"), None);
    }
}
