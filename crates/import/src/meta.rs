//! `metadata` of an input object → `metadata` of the Capstan object: the name, labels,
//! the annotations Capstan reads, and the finalizer that deletes what the Application
//! applied.

use std::collections::BTreeMap;

use capstan_controller::reconcile::DELETE_RESOURCES_FINALIZER;
use kube::api::ObjectMeta;

use crate::fields::Doc;
use crate::report::ImportError;

/// Argo CD's finalizers that delete an Application's resources with it.
const ARGO_RESOURCES_FINALIZERS: &[&str] = &[
    "resources-finalizer.argocd.argoproj.io",
    "resources-finalizer.argocd.argoproj.io/background",
    "resources-finalizer.argocd.argoproj.io/foreground",
];

/// Annotations of Argo CD and Flux that Capstan reads itself (on an Application that a
/// parent Application applies, as in an app-of-apps).
const READ_BY_CAPSTAN: &[&str] = &[
    "argocd.argoproj.io/sync-wave",
    "argocd.argoproj.io/sync-options",
    "argocd.argoproj.io/compare-options",
    "argocd.argoproj.io/hook",
    "argocd.argoproj.io/hook-delete-policy",
];

/// Annotation prefixes of tools whose annotations mean nothing to Capstan.
const FOREIGN_PREFIXES: &[&str] = &[
    "argocd.argoproj.io/",
    "notifications.argoproj.io/",
    "argocd-image-updater.argoproj.io/",
    "fluxcd.io/",
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
    "reconcile.fluxcd.io/",
    "source.toolkit.fluxcd.io/",
];

/// Server-written annotations that carry no configuration.
const SERVER_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// The Capstan metadata of an input object: its name (the caller may rename it), the
/// given namespace, its labels and the annotations that mean something to Capstan.
/// `delete_resources` adds Capstan's finalizer; a finalizer Capstan has no equivalent
/// for is named in a warning.
pub(crate) fn convert(
    doc: &mut Doc,
    namespace: &str,
    delete_resources: bool,
) -> Result<ObjectMeta, ImportError> {
    let name = doc.required_str("metadata.name")?.to_string();
    doc.mark("metadata.namespace");
    let labels = doc.string_map("metadata.labels")?;
    let annotations = annotations(doc)?;
    let mut finalizers = Vec::new();
    let mut delete = delete_resources;
    for (i, f) in doc.strings("metadata.finalizers")?.into_iter().enumerate() {
        if ARGO_RESOURCES_FINALIZERS.contains(&f.as_str()) {
            delete = true;
            if f.ends_with("/foreground") {
                doc.warn(
                    &format!("metadata.finalizers[{i}]"),
                    "Capstan deletes the Application's objects in the background; foreground deletion is left out",
                );
            }
        } else if f == "finalizers.fluxcd.io" {
            // Flux's own bookkeeping finalizer on an exported object.
        } else {
            doc.warn(
                &format!("metadata.finalizers[{i}]"),
                format!("finalizer {f:?} has no Capstan equivalent; left out"),
            );
        }
    }
    if delete {
        finalizers.push(DELETE_RESOURCES_FINALIZER.to_string());
    }
    doc.mark("metadata.finalizers");
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels).filter(|l| !l.is_empty()),
        annotations: Some(annotations).filter(|a| !a.is_empty()),
        finalizers: Some(finalizers).filter(|f| !f.is_empty()),
        ..Default::default()
    })
}

fn annotations(doc: &mut Doc) -> Result<BTreeMap<String, String>, ImportError> {
    let all = doc.string_map("metadata.annotations")?;
    let mut out = BTreeMap::new();
    for (k, v) in all {
        if SERVER_ANNOTATIONS.contains(&k.as_str()) {
            continue;
        }
        if !READ_BY_CAPSTAN.contains(&k.as_str())
            && FOREIGN_PREFIXES.iter().any(|p| k.starts_with(p))
        {
            doc.warn(
                &format!("metadata.annotations[{k}]"),
                "has no Capstan equivalent; left out",
            );
            continue;
        }
        out.insert(k, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use serde_json::json;

    #[test]
    fn argo_finalizer_becomes_capstans_and_foreign_annotations_are_named() {
        let m = Manifest::new(
            "a.yaml",
            1,
            json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {
                    "name": "web", "namespace": "argocd",
                    "labels": {"team": "a"},
                    "annotations": {
                        "argocd.argoproj.io/sync-wave": "2",
                        "notifications.argoproj.io/subscribe.on-sync-succeeded.slack": "ops",
                        "kubectl.kubernetes.io/last-applied-configuration": "{}"
                    },
                    "finalizers": ["resources-finalizer.argocd.argoproj.io", "example.com/other"]
                }
            }),
        );
        let mut doc = Doc::new(&m);
        let meta = convert(&mut doc, "capstan-system", false).unwrap();
        assert_eq!(meta.namespace.as_deref(), Some("capstan-system"));
        assert_eq!(meta.finalizers.unwrap(), [DELETE_RESOURCES_FINALIZER]);
        let ann = meta.annotations.unwrap();
        assert_eq!(ann.len(), 1);
        assert_eq!(ann["argocd.argoproj.io/sync-wave"], "2");
        let fields: Vec<String> = doc.finish().into_iter().map(|w| w.field).collect();
        assert_eq!(
            fields,
            [
                "metadata.annotations[notifications.argoproj.io/subscribe.on-sync-succeeded.slack]",
                "metadata.finalizers[1]"
            ]
        );
    }
}
