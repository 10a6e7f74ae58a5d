//! Installing Capstan's CRDs (Application, AuditRecord, ImageRepository, ImagePolicy,
//! ImageUpdate, Notification) and waiting until they are established.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};

use crate::audit::AuditRecord;
use crate::crd::Application;
use crate::images::{ImagePolicy, ImageRepository, ImageUpdate};
use crate::notify::Notification;

/// Capstan's CRDs.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Application::crd(),
        AuditRecord::crd(),
        ImageRepository::crd(),
        ImagePolicy::crd(),
        ImageUpdate::crd(),
        Notification::crd(),
    ]
}

/// The CRDs as a multi-document YAML (for `deploy/` and `capstan install --print`).
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|c| format!("---\n{}", serde_saphyr::to_string(c).unwrap_or_default()))
        .collect()
}

/// Apply the CRDs and wait (up to 30 s) until they are established.
pub async fn install_crds(client: &kube::Client) -> Result<(), kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("capstan").force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        for _ in 0..300 {
            let established = api
                .get(&name)
                .await?
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
