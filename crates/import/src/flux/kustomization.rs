//! Flux `Kustomization` (kustomize.toolkit.fluxcd.io) → Capstan `Application`.
//!
//! | Flux | Capstan |
//! | --- | --- |
//! | `sourceRef` GitRepository (url, ref), or an ExternalArtifact cut from one | `source.repoURL`, `source.targetRevision` (commit > name > semver > tag > branch, default `master`) |
//! | `path` (inside the artifact) | `source.path` (inside the repository) |
//! | `prune` | `syncPolicy.automated.prune` (and the finalizer that deletes with it); Flux always syncs and corrects drift: `automated.selfHeal: true` |
//! | `interval` (and the source's) | `interval`, the shorter of the two |
//! | `targetNamespace` | `destination.namespace` |
//! | `dependsOn` | `dependsOn` |
//! | `suspend` (or a suspended source) | `suspend` |
//! | `healthCheckExprs` | `healthChecks` |
//! | `postBuild`, `patches`, `images`, `decryption`, … | warnings |

use capstan_controller::crd::{Application, ApplicationSpec, Automated, SourceSpec};

use super::sources::Resolved;
use super::{credentials, depends_on, health_checks};
use crate::argo::application::join_in_repo;
use crate::argo::inspect;
use crate::fields::Doc;
use crate::report::ImportError;
use crate::{Ctx, Draft, duration, meta};

/// Convert the Kustomization read by `doc`; `None` when its source is of a kind Capstan
/// cannot read (named in a warning).
pub(crate) fn convert(doc: &mut Doc, ctx: &mut Ctx) -> Result<Option<Draft>, ImportError> {
    let own_ns = doc.id().namespace.clone();
    let prune = doc.bool("spec.prune")?.unwrap_or(false);
    let metadata = meta::convert(doc, &ctx.opts.namespace, prune)?;
    let kind = doc.required_str("spec.sourceRef.kind")?;
    let name = doc.required_str("spec.sourceRef.name")?;
    let ns = doc.str("spec.sourceRef.namespace")?.unwrap_or(&own_ns);
    if matches!(kind, "OCIRepository" | "Bucket") {
        doc.warn(
            "spec.sourceRef",
            format!(
                "manifests from a {kind} have no Capstan equivalent (Capstan reads manifests from Git): the Kustomization is not imported"
            ),
        );
        return Ok(None);
    }
    let (git, offset) = match ctx.sources.resolve(doc, "spec.sourceRef", kind, ns, name)? {
        Resolved::Git { git, offset } => (git, offset),
        _ => {
            return Err(doc.invalid(
                "spec.sourceRef",
                format!("{kind} {ns}/{name} is not a source of manifests"),
            ));
        }
    };
    let path = doc.str("spec.path")?.unwrap_or(".");
    let path = join_in_repo(&offset, path.trim_start_matches('/'))
        .ok_or_else(|| doc.invalid("spec.path", format!("{path:?} leaves the repository")))?;
    if offset != "." {
        doc.warn(
            "spec.sourceRef",
            format!(
                "the ExternalArtifact {ns}/{name} is read as the directory {offset} of {}: files its ArtifactGenerator leaves out are read too",
                git.url
            ),
        );
    }
    let mut src = SourceSpec {
        repo_url: ctx.opts.repos.rewrite(&git.url),
        target_revision: Some(git.revision.clone()),
        path: Some(path),
        ..Default::default()
    };
    if let Some(secret) = &git.secret {
        src.credentials_secret = Some(credentials(
            doc,
            ctx,
            "spec.sourceRef",
            secret,
            ns,
            &git.url,
        ));
    }
    let fields = inspect::Fields {
        repo: "spec.sourceRef",
        path: "spec.path",
        plugin: None,
        top_level_only: false,
    };
    inspect::source(doc, ctx, &fields, &git.url, &mut src)?;
    let mut spec = ApplicationSpec {
        source: src,
        suspend: doc.bool("spec.suspend")?.unwrap_or(false) || git.suspend,
        ..Default::default()
    };
    if git.suspend {
        doc.warn(
            "spec.sourceRef",
            format!(
                "the source {kind} {ns}/{name} is suspended: the Application is imported suspended"
            ),
        );
    }
    spec.sync_policy.automated = Some(Automated {
        prune,
        self_heal: true,
    });
    let own = match doc.text("spec.interval")? {
        Some(t) => match duration::normalize(&t) {
            Some(d) => Some(d),
            None => {
                doc.warn(
                    "spec.interval",
                    format!("{t:?} is not a duration Capstan takes (e.g. 30s, 5m, 1h); left out"),
                );
                None
            }
        },
        None => None,
    };
    spec.interval = duration::shorter(own, git.interval.clone());
    spec.destination.namespace = doc
        .str("spec.targetNamespace")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    // Flux waits for health only with `wait`; Capstan always assesses it, and a
    // dependent Application waits for Healthy either way.
    doc.mark("spec.wait");
    spec.health_checks = health_checks(doc)?;
    let depends = depends_on(doc, "Kustomization", "kustomize.toolkit.fluxcd.io")?;
    Ok(Some(Draft::new(
        Application {
            metadata,
            spec,
            status: None,
        },
        doc,
        depends,
    )))
}
