//! Flux `HelmRelease` (helm.toolkit.fluxcd.io) → Capstan `Application` with a chart.
//!
//! | Flux | Capstan |
//! | --- | --- |
//! | `chart.spec` with a HelmRepository (https or `type: oci`) | `source.repoURL`, `source.chart`, `source.targetRevision` = `version` (default `*`) |
//! | `chart.spec` with a GitRepository | `source.repoURL`, `targetRevision`, `path` = the chart's directory |
//! | `chartRef` to an OCIRepository (`oci://host/path/chart`, tag or semver) | `repoURL: oci://host/path`, `chart`, `targetRevision` |
//! | `values`, `valuesFrom`, `chart.spec.valuesFiles` | `helm.valuesObject`, `helm.valuesFrom`, `helm.valueFiles` |
//! | `releaseName` (default `[targetNamespace-]name`), `targetNamespace` (default its namespace) | `helm.releaseName`, `destination.namespace` |
//! | `install.createNamespace` | `syncPolicy.createNamespace` |
//! | `driftDetection.mode: enabled` | `syncPolicy.automated.selfHeal` (always `automated`, with prune) |
//! | `interval`, `suspend`, `dependsOn` | the same |
//! | `install`/`upgrade` strategies and remediation, `test`, `postRenderers`, … | warnings |

use capstan_controller::crd::{
    Application, ApplicationSpec, Automated, HelmSpec, SourceSpec, ValuesReference,
};

use super::sources::Resolved;
use super::{credentials, depends_on};
use crate::argo::application::join_in_repo;
use crate::fields::Doc;
use crate::report::ImportError;
use crate::{Ctx, Draft, duration, meta};

/// Convert the HelmRelease read by `doc`; `None` when its chart comes from a source
/// Capstan cannot read (named in a warning).
pub(crate) fn convert(doc: &mut Doc, ctx: &mut Ctx) -> Result<Option<Draft>, ImportError> {
    let own_ns = doc.id().namespace.clone();
    let name = doc.required_str("metadata.name")?.to_string();
    let metadata = meta::convert(doc, &ctx.opts.namespace, true)?;
    let Some((mut src, interval, suspended)) = chart(doc, ctx, &own_ns)? else {
        return Ok(None);
    };
    let target_ns = doc
        .str("spec.targetNamespace")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let release = match doc.str("spec.releaseName")? {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => match &target_ns {
            Some(t) => format!("{t}-{name}"),
            None => name.clone(),
        },
    };
    let helm = src.helm.get_or_insert_with(HelmSpec::default);
    helm.release_name = Some(release);
    helm.values_object = doc.get("spec.values").cloned();
    helm.values_from = values_from(doc, ctx, &own_ns)?;
    let mut spec = ApplicationSpec {
        source: src,
        suspend: doc.bool("spec.suspend")?.unwrap_or(false) || suspended,
        ..Default::default()
    };
    spec.destination.namespace = Some(target_ns.unwrap_or(own_ns));
    spec.sync_policy.create_namespace = doc.bool("spec.install.createNamespace")?.unwrap_or(false);
    let self_heal = match doc.str("spec.driftDetection.mode")? {
        Some("enabled") => true,
        None | Some("disabled") | Some("warn") => false,
        Some(other) => {
            return Err(doc.invalid(
                "spec.driftDetection.mode",
                format!("{other:?} is not enabled, warn or disabled"),
            ));
        }
    };
    spec.sync_policy.automated = Some(Automated {
        prune: true,
        self_heal,
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
    spec.interval = duration::shorter(own, interval);
    let depends = depends_on(doc, "HelmRelease", "helm.toolkit.fluxcd.io")?;
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

/// The chart's source, the source's interval, and whether the source is suspended.
fn chart(
    doc: &mut Doc,
    ctx: &mut Ctx,
    own_ns: &str,
) -> Result<Option<(SourceSpec, Option<String>, bool)>, ImportError> {
    let has_spec = doc.has("spec.chart.spec");
    let has_ref = doc.has("spec.chartRef");
    match (has_spec, has_ref) {
        (true, true) => Err(doc.invalid("spec.chartRef", "chart and chartRef are exclusive")),
        (false, false) => Err(doc.invalid("spec.chart", "is required (or spec.chartRef)")),
        (false, true) => chart_ref(doc, ctx, own_ns),
        (true, false) => chart_spec(doc, ctx, own_ns),
    }
}

fn chart_ref(
    doc: &mut Doc,
    ctx: &mut Ctx,
    own_ns: &str,
) -> Result<Option<(SourceSpec, Option<String>, bool)>, ImportError> {
    let kind = doc.required_str("spec.chartRef.kind")?;
    let name = doc.required_str("spec.chartRef.name")?;
    let ns = doc.str("spec.chartRef.namespace")?.unwrap_or(own_ns);
    if kind != "OCIRepository" {
        doc.warn(
            "spec.chartRef",
            format!(
                "a chart from a {kind} has no Capstan equivalent: the HelmRelease is not imported"
            ),
        );
        return Ok(None);
    }
    let Resolved::Oci(oci) = ctx.sources.resolve(doc, "spec.chartRef", kind, ns, name)? else {
        return Err(doc.invalid(
            "spec.chartRef",
            format!("{kind} {ns}/{name} is not a chart"),
        ));
    };
    if oci.revision.is_none() {
        doc.warn(
            "spec.chartRef",
            format!(
                "the OCIRepository {ns}/{name} names no tag or semver range (Flux takes the tag latest); the chart's newest version is asked for"
            ),
        );
    }
    let mut src = SourceSpec {
        repo_url: ctx.opts.repos.rewrite(&oci.repo),
        chart: Some(oci.chart.clone()),
        target_revision: Some(oci.revision.clone().unwrap_or_else(|| "*".into())),
        ..Default::default()
    };
    if let Some(secret) = &oci.secret {
        src.credentials_secret = Some(credentials(
            doc,
            ctx,
            "spec.chartRef",
            secret,
            ns,
            &oci.repo,
        ));
    }
    Ok(Some((src, oci.interval.clone(), oci.suspend)))
}

fn chart_spec(
    doc: &mut Doc,
    ctx: &mut Ctx,
    own_ns: &str,
) -> Result<Option<(SourceSpec, Option<String>, bool)>, ImportError> {
    let chart = doc.required_str("spec.chart.spec.chart")?;
    let version = doc.text("spec.chart.spec.version")?;
    let kind = doc.required_str("spec.chart.spec.sourceRef.kind")?;
    let name = doc.required_str("spec.chart.spec.sourceRef.name")?;
    let ns = doc
        .str("spec.chart.spec.sourceRef.namespace")?
        .unwrap_or(own_ns);
    let field = "spec.chart.spec.sourceRef";
    if kind == "Bucket" {
        doc.warn(
            field,
            "a chart from a Bucket has no Capstan equivalent: the HelmRelease is not imported",
        );
        return Ok(None);
    }
    let mut values_files = doc.strings("spec.chart.spec.valuesFiles")?;
    if let Some(f) = doc.str("spec.chart.spec.valuesFile")? {
        values_files.insert(0, f.to_string());
    }
    if !values_files.is_empty() {
        doc.mark("spec.chart.spec.ignoreMissingValuesFiles");
    }
    let (mut src, url, secret, interval, suspend, chart_values) = match ctx
        .sources
        .resolve(doc, field, kind, ns, name)?
    {
        Resolved::Helm(repo) => {
            let src = SourceSpec {
                repo_url: ctx.opts.repos.rewrite(&repo.url),
                chart: Some(chart.to_string()),
                // Flux's default version is `*`, the newest.
                target_revision: Some(version.unwrap_or_else(|| "*".into())),
                ..Default::default()
            };
            if !values_files.is_empty() {
                doc.warn(
                    "spec.chart.spec.valuesFiles",
                    "files of the chart used as its values: passed as helm.valueFiles, which Capstan reads from the chart",
                );
            }
            (
                src,
                repo.url,
                repo.secret,
                repo.interval,
                repo.suspend,
                "values.yaml".to_string(),
            )
        }
        Resolved::Git { git, offset } => {
            let path = join_in_repo(&offset, chart.trim_start_matches("./"))
                .ok_or_else(|| doc.invalid("spec.chart.spec.chart", "leaves the repository"))?;
            if version.is_some() {
                doc.warn(
                    "spec.chart.spec.version",
                    "the chart comes from Git: the revision of the repository decides, the version is left out",
                );
            }
            let chart_values = format!("{path}/values.yaml");
            let src = SourceSpec {
                repo_url: ctx.opts.repos.rewrite(&git.url),
                target_revision: Some(git.revision.clone()),
                path: Some(path),
                ..Default::default()
            };
            (
                src,
                git.url,
                git.secret,
                git.interval,
                git.suspend,
                chart_values,
            )
        }
        Resolved::Oci(_) => {
            return Err(doc.invalid(
                field,
                "an OCIRepository is referred to with spec.chartRef, not spec.chart.spec.sourceRef",
            ));
        }
    };
    if !values_files.is_empty() {
        if !values_files
            .iter()
            .any(|f| f.trim_start_matches("./") == chart_values)
        {
            doc.warn(
                "spec.chart.spec.valuesFiles",
                "Flux uses these files instead of the chart's values.yaml; Capstan (as helm) reads the chart's values.yaml first",
            );
        }
        src.helm = Some(HelmSpec {
            value_files: values_files,
            ..Default::default()
        });
    }
    if let Some(secret) = &secret {
        src.credentials_secret = Some(credentials(doc, ctx, field, secret, ns, &url));
    }
    Ok(Some((src, interval, suspend)))
}

fn values_from(
    doc: &mut Doc,
    ctx: &Ctx,
    own_ns: &str,
) -> Result<Vec<ValuesReference>, ImportError> {
    let items = doc.list("spec.valuesFrom")?;
    let mut out = Vec::new();
    for i in 0..items.len() {
        let at = format!("spec.valuesFrom[{i}]");
        let kind = doc.required_str(&format!("{at}.kind"))?;
        if kind != "ConfigMap" && kind != "Secret" {
            return Err(doc.invalid(
                &format!("{at}.kind"),
                format!("{kind:?} is not ConfigMap or Secret"),
            ));
        }
        let name = doc.required_str(&format!("{at}.name"))?.to_string();
        if own_ns != ctx.opts.namespace {
            doc.warn(
                &at,
                format!(
                    "the {kind} {own_ns}/{name} is read from the Application's namespace {}: copy it there",
                    ctx.opts.namespace
                ),
            );
        }
        out.push(ValuesReference {
            kind: kind.to_string(),
            name,
            values_key: doc.str(&format!("{at}.valuesKey"))?.map(str::to_string),
            target_path: doc.str(&format!("{at}.targetPath"))?.map(str::to_string),
            optional: doc.bool(&format!("{at}.optional"))?.unwrap_or(false),
        });
    }
    Ok(out)
}
