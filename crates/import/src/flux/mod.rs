//! Flux's kinds: a `Kustomization` and a `HelmRelease` each become a Capstan
//! Application, with their source (`GitRepository`, `HelmRepository`,
//! `OCIRepository`, an `ArtifactGenerator`'s artifact) folded in.

pub(crate) mod helmrelease;
pub(crate) mod kustomization;
pub(crate) mod sources;

use crate::Ctx;
use crate::fields::Doc;
use crate::manifest::ObjectId;
use crate::report::ImportError;

/// The Secret `name` of a source in `source_ns`, as the Application's credentials
/// Secret, with warnings when Capstan would read other keys than Flux, or from
/// another namespace. Secret values are never read.
pub(crate) fn credentials(
    doc: &mut Doc,
    ctx: &Ctx,
    field: &str,
    name: &str,
    source_ns: &str,
    url: &str,
) -> String {
    let app_ns = &ctx.opts.namespace;
    if source_ns != app_ns {
        doc.warn(
            field,
            format!(
                "the credentials Secret {source_ns}/{name} is read from the Application's namespace {app_ns}: copy it there"
            ),
        );
    }
    let ssh = url.starts_with("ssh://") || (!url.contains("://") && url.contains('@'));
    let renames: &[(&str, &str)] = if ssh {
        &[("identity", "sshPrivateKey"), ("known_hosts", "knownHosts")]
    } else {
        &[("bearerToken", "token")]
    };
    match ctx.sources.secret_keys(source_ns, name) {
        Some(keys) => {
            let wrong: Vec<String> = renames
                .iter()
                .filter(|(flux, _)| keys.contains(*flux))
                .map(|(flux, capstan)| format!("{flux} → {capstan}"))
                .collect();
            if !wrong.is_empty() {
                doc.warn(
                    field,
                    format!(
                        "the Secret {source_ns}/{name} has Flux's key names; Capstan reads other ones: rename {}",
                        wrong.join(", ")
                    ),
                );
            }
            for extra in ["ca.crt", "tls.crt", "tls.key", "caFile", "certFile", "keyFile"] {
                if keys.contains(extra) {
                    doc.warn(
                        field,
                        format!("the Secret {source_ns}/{name} holds {extra}: TLS certificates per source have no Capstan equivalent"),
                    );
                }
            }
        }
        None if ssh => doc.warn(
            field,
            format!(
                "Flux reads the SSH key of the Secret {name} from identity and known_hosts; Capstan reads sshPrivateKey and knownHosts: rename them"
            ),
        ),
        None => {}
    }
    name.to_string()
}

/// `spec.healthCheckExprs` (Flux 2.8): CEL rules per kind, the same shape as the
/// Application's `healthChecks`.
pub(crate) fn health_checks(
    doc: &mut Doc,
) -> Result<Vec<capstan_controller::crd::HealthCheck>, ImportError> {
    let items = doc.list("spec.healthCheckExprs")?;
    let mut out = Vec::new();
    for i in 0..items.len() {
        let at = format!("spec.healthCheckExprs[{i}]");
        let f = |name: &str| format!("{at}.{name}");
        out.push(capstan_controller::crd::HealthCheck {
            api_version: Some(doc.required_str(&f("apiVersion"))?.to_string()),
            group: None,
            kind: doc.required_str(&f("kind"))?.to_string(),
            current: doc.required_str(&f("current"))?.to_string(),
            in_progress: doc.str(&f("inProgress"))?.map(str::to_string),
            failed: doc.str(&f("failed"))?.map(str::to_string),
            suspended: None,
            message: None,
        });
    }
    Ok(out)
}

/// `spec.dependsOn` of a Flux object: the objects (of `kind`) it waits for.
pub(crate) fn depends_on(
    doc: &mut Doc,
    kind: &str,
    group: &str,
) -> Result<Vec<(ObjectId, String)>, ImportError> {
    let own_ns = doc.id().namespace.clone();
    let items = doc.list("spec.dependsOn")?;
    let mut out = Vec::new();
    for i in 0..items.len() {
        let at = format!("spec.dependsOn[{i}]");
        let name = doc.required_str(&format!("{at}.name"))?.to_string();
        let namespace = doc
            .str(&format!("{at}.namespace"))?
            .unwrap_or(&own_ns)
            .to_string();
        doc.warn_if_present(
            &format!("{at}.readyExpr"),
            "readiness expressions have no Capstan equivalent: the dependency must be Healthy",
        );
        out.push((
            ObjectId {
                group: group.to_string(),
                kind: kind.to_string(),
                namespace,
                name,
            },
            at,
        ));
    }
    Ok(out)
}
