//! Argo CD `Application` → Capstan `Application`.
//!
//! | Argo CD | Capstan |
//! | --- | --- |
//! | `source` / `sources[]` (repoURL, targetRevision, path, chart, ref) | the same |
//! | `source.helm` valueFiles (relative to the path), values, valuesObject, parameters, releaseName | `source.helm`, values files relative to the repository root |
//! | `source.directory` include, exclude, recurse, jsonnet (extVars, tlas, libs) | `source.directory` (no recurse: `exclude: ["*/*"]`) |
//! | `source.kustomize` | `source.kustomize: {}` (forces Kustomize; its overrides warn) |
//! | `destination.namespace` | `destination.namespace` (`server`/`name` other than in-cluster warn) |
//! | `syncPolicy` automated (prune, selfHeal, allowEmpty, enabled), syncOptions, retry, managedNamespaceMetadata | `syncPolicy` (`CreateNamespace=true` also sets `createNamespace`) |
//! | `ignoreDifferences[].jsonPointers` | `ignoreDifferences` (jq and managers warn) |
//! | finalizer `resources-finalizer.argocd.argoproj.io` | finalizer `capstan.dev/delete-resources` |
//! | `project` other than `default`, `source.plugin`, … | warnings |

use std::path::{Component, Path};

use capstan_controller::crd::{
    Application, ApplicationSpec, Automated, DirectorySpec, HelmParameter, HelmSpec,
    IgnoreDifference, JsonnetSpec, JsonnetVarSpec, KustomizeSpec, ManagedNamespaceMetadata,
    RetryPolicy, SourceSpec,
};
use capstan_core::SyncOptionSet;

use crate::argo::inspect;
use crate::fields::Doc;
use crate::report::ImportError;
use crate::{Ctx, duration, meta};

/// Servers (and the name) Argo CD gives the cluster it runs in.
const IN_CLUSTER_SERVERS: &[&str] = &[
    "https://kubernetes.default.svc",
    "https://kubernetes.default.svc:443",
    "https://kubernetes.default.svc.cluster.local",
];

/// Convert the Argo CD Application read by `doc`.
pub(crate) fn convert(doc: &mut Doc, ctx: &mut Ctx) -> Result<Application, ImportError> {
    let metadata = meta::convert(doc, &ctx.opts.namespace, false)?;
    let mut spec = ApplicationSpec::default();
    project(doc)?;
    let sources = doc.list("spec.sources")?;
    if sources.is_empty() {
        if !doc.has("spec.source") {
            return Err(doc.invalid("spec.source", "is required (or spec.sources)"));
        }
        spec.source = source(doc, ctx, "spec.source")?;
    } else {
        for i in 0..sources.len() {
            spec.sources
                .push(source(doc, ctx, &format!("spec.sources[{i}]"))?);
        }
        doc.warn_if_present(
            "spec.source",
            "Argo CD ignores source when sources is set, and so does the import; left out",
        );
    }
    destination(doc, &mut spec)?;
    sync_policy(doc, &mut spec)?;
    spec.ignore_differences = ignore_differences(doc)?;
    Ok(Application {
        metadata,
        spec,
        status: None,
    })
}

fn project(doc: &mut Doc) -> Result<(), ImportError> {
    match doc.str("spec.project")? {
        None | Some("default") | Some("") => Ok(()),
        Some(p) => {
            doc.warn(
                "spec.project",
                format!(
                    "project {p:?}: projects have no Capstan equivalent yet; the Application is not restricted by it"
                ),
            );
            Ok(())
        }
    }
}

/// One source at `at` (`spec.source`, `spec.sources[1]`).
pub(crate) fn source(doc: &mut Doc, ctx: &mut Ctx, at: &str) -> Result<SourceSpec, ImportError> {
    let f = |name: &str| format!("{at}.{name}");
    let original_url = doc.required_str(&f("repoURL"))?;
    let chart = doc.str(&f("chart"))?.map(str::to_string);
    let mut repo_url = ctx.opts.repos.rewrite(original_url);
    if chart.is_some() && !repo_url.contains("://") {
        // Argo CD names OCI Helm registries without a scheme.
        repo_url = format!("oci://{repo_url}");
    }
    let path = doc.str(&f("path"))?.map(clean_path);
    let mut src = SourceSpec {
        repo_url,
        target_revision: doc.text(&f("targetRevision"))?,
        path: path.clone(),
        chart,
        ref_: doc.str(&f("ref"))?.map(str::to_string),
        ..Default::default()
    };
    src.directory = directory(doc, &f("directory"))?;
    src.helm = helm(doc, &f("helm"), path.as_deref(), src.chart.is_some())?;
    if doc.map(&f("kustomize"))?.is_some() {
        src.kustomize = Some(KustomizeSpec::default());
    }
    let fields = inspect::Fields {
        repo: &f("repoURL"),
        path: &f("path"),
        plugin: Some(&f("plugin")),
        top_level_only: true,
    };
    inspect::source(doc, ctx, &fields, original_url, &mut src)?;
    Ok(src)
}

/// `./apps/web/` → `apps/web`; `` and `./` → `.`.
fn clean_path(p: &str) -> String {
    let t = p.trim().trim_start_matches("./").trim_end_matches('/');
    if t.is_empty() {
        ".".into()
    } else {
        t.to_string()
    }
}

fn directory(doc: &mut Doc, at: &str) -> Result<Option<DirectorySpec>, ImportError> {
    if doc.map(at)?.is_none() {
        return Ok(None);
    }
    let f = |name: &str| format!("{at}.{name}");
    let recurse = doc.bool(&f("recurse"))?.unwrap_or(false);
    let mut dir = DirectorySpec::default();
    if let Some(i) = doc.str(&f("include"))?.filter(|s| !s.is_empty()) {
        dir.include.push(i.to_string());
    }
    if let Some(e) = doc.str(&f("exclude"))?.filter(|s| !s.is_empty()) {
        dir.exclude.push(e.to_string());
    }
    if !recurse {
        // Argo CD reads only the top level of a directory unless told to recurse.
        dir.exclude.push("*/*".into());
    }
    dir.jsonnet = jsonnet(doc, &f("jsonnet"))?;
    Ok(Some(dir))
}

/// `directory.jsonnet`: ext vars, TLAs (`code` for Jsonnet code) and library paths,
/// spelled the same in Capstan; an empty one is no setting at all.
fn jsonnet(doc: &mut Doc, at: &str) -> Result<Option<JsonnetSpec>, ImportError> {
    if doc.map(at)?.is_none() {
        return Ok(None);
    }
    let vars = |field: &str, doc: &mut Doc| -> Result<Vec<JsonnetVarSpec>, ImportError> {
        let path = format!("{at}.{field}");
        let items = doc.list(&path)?;
        let mut out = Vec::new();
        for i in 0..items.len() {
            let v = format!("{path}[{i}]");
            out.push(JsonnetVarSpec {
                name: doc.required_str(&format!("{v}.name"))?.to_string(),
                value: doc.text(&format!("{v}.value"))?.unwrap_or_default(),
                code: doc.bool(&format!("{v}.code"))?.unwrap_or(false),
            });
        }
        Ok(out)
    };
    let spec = JsonnetSpec {
        ext_vars: vars("extVars", doc)?,
        tlas: vars("tlas", doc)?,
        libs: doc.strings(&format!("{at}.libs"))?,
    };
    let empty = spec.ext_vars.is_empty() && spec.tlas.is_empty() && spec.libs.is_empty();
    Ok((!empty).then_some(spec))
}

fn helm(
    doc: &mut Doc,
    at: &str,
    path: Option<&str>,
    is_chart: bool,
) -> Result<Option<HelmSpec>, ImportError> {
    if doc.map(at)?.is_none() {
        return Ok(None);
    }
    let f = |name: &str| format!("{at}.{name}");
    let mut helm = HelmSpec {
        release_name: doc.str(&f("releaseName"))?.map(str::to_string),
        values: doc.str(&f("values"))?.map(str::to_string),
        values_object: doc.get(&f("valuesObject")).cloned(),
        ..Default::default()
    };
    let files = doc.strings(&f("valueFiles"))?;
    for (i, file) in files.into_iter().enumerate() {
        let field = format!("{at}.valueFiles[{i}]");
        if file.starts_with('$') || is_chart {
            // `$ref/…` of multi-source, or a file of a chart from a Helm repository.
            helm.value_files.push(file);
        } else if file.contains("://") {
            doc.warn(
                &field,
                "values files from a URL have no Capstan equivalent; left out",
            );
        } else {
            let joined = join_in_repo(path.unwrap_or("."), &file)
                .ok_or_else(|| doc.invalid(&field, format!("{file:?} leaves the repository")))?;
            helm.value_files.push(joined);
        }
    }
    let params = doc.list(&f("parameters"))?;
    for i in 0..params.len() {
        let p = format!("{at}.parameters[{i}]");
        let name = doc.required_str(&format!("{p}.name"))?.to_string();
        let value = doc.text(&format!("{p}.value"))?.unwrap_or_default();
        if doc.bool(&format!("{p}.forceString"))? == Some(true) {
            doc.warn(
                &format!("{p}.forceString"),
                "Capstan passes parameters as --set, not --set-string; a value that looks like a number or boolean is typed",
            );
        }
        helm.parameters.push(HelmParameter { name, value });
    }
    Ok(Some(helm))
}

/// `file` relative to `dir` (both inside a repository) as a path from the repository
/// root, or `None` when it leaves the repository.
pub(crate) fn join_in_repo(dir: &str, file: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let start = if file.starts_with('/') {
        Path::new(file).to_path_buf()
    } else {
        Path::new(dir).join(file)
    };
    for c in start.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

fn destination(doc: &mut Doc, spec: &mut ApplicationSpec) -> Result<(), ImportError> {
    if let Some(server) = doc.str("spec.destination.server")? {
        let s = server.trim_end_matches('/');
        if !IN_CLUSTER_SERVERS.contains(&s) {
            doc.warn(
                "spec.destination.server",
                format!(
                    "{server} is not the in-cluster server: Capstan has no registered clusters yet; the Application applies to the cluster its controller runs in"
                ),
            );
        }
    }
    if let Some(name) = doc.str("spec.destination.name")?
        && name != "in-cluster"
    {
        doc.warn(
            "spec.destination.name",
            format!(
                "cluster {name:?} is not in-cluster: Capstan has no registered clusters yet; the Application applies to the cluster its controller runs in"
            ),
        );
    }
    spec.destination.namespace = doc
        .str("spec.destination.namespace")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(())
}

fn sync_policy(doc: &mut Doc, spec: &mut ApplicationSpec) -> Result<(), ImportError> {
    let p = &mut spec.sync_policy;
    if doc.map("spec.syncPolicy.automated")?.is_some() {
        let enabled = doc
            .bool("spec.syncPolicy.automated.enabled")?
            .unwrap_or(true);
        let prune = doc
            .bool("spec.syncPolicy.automated.prune")?
            .unwrap_or(false);
        let self_heal = doc
            .bool("spec.syncPolicy.automated.selfHeal")?
            .unwrap_or(false);
        p.allow_empty = doc
            .bool("spec.syncPolicy.automated.allowEmpty")?
            .unwrap_or(false);
        if enabled {
            p.automated = Some(Automated { prune, self_heal });
        }
    }
    for (i, opt) in doc
        .strings("spec.syncPolicy.syncOptions")?
        .into_iter()
        .enumerate()
    {
        match SyncOptionSet::default().with([opt.as_str()]) {
            Ok(set) => {
                if set.create_namespace {
                    p.create_namespace = true;
                }
                p.sync_options.push(opt);
            }
            Err(e) => doc.warn(
                &format!("spec.syncPolicy.syncOptions[{i}]"),
                format!("{e}; left out"),
            ),
        }
    }
    if doc.map("spec.syncPolicy.retry")?.is_some() {
        p.retry = Some(retry(doc)?);
    }
    if doc
        .map("spec.syncPolicy.managedNamespaceMetadata")?
        .is_some()
    {
        p.managed_namespace_metadata = Some(ManagedNamespaceMetadata {
            labels: doc.string_map("spec.syncPolicy.managedNamespaceMetadata.labels")?,
            annotations: doc.string_map("spec.syncPolicy.managedNamespaceMetadata.annotations")?,
        });
    }
    Ok(())
}

fn retry(doc: &mut Doc) -> Result<RetryPolicy, ImportError> {
    let limit = match doc.int("spec.syncPolicy.retry.limit")? {
        None => 5,
        // Argo CD retries without end when the limit is negative.
        Some(n) if n < 0 => u32::MAX,
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let d = |field: &str, doc: &mut Doc| -> Result<Option<String>, ImportError> {
        let path = format!("spec.syncPolicy.retry.backoff.{field}");
        let Some(t) = doc.text(&path)? else {
            return Ok(None);
        };
        match duration::normalize(&t) {
            Some(n) => Ok(Some(n)),
            None => {
                doc.warn(
                    &path,
                    format!("{t:?} is not a duration Capstan takes (e.g. 5s, 2m, 1h30m); left out"),
                );
                Ok(None)
            }
        }
    };
    let backoff_duration = d("duration", doc)?;
    let backoff_max_duration = d("maxDuration", doc)?;
    let backoff_factor = doc
        .int("spec.syncPolicy.retry.backoff.factor")?
        .map(|f| u32::try_from(f.max(1)).unwrap_or(u32::MAX));
    doc.mark("spec.syncPolicy.retry.backoff");
    Ok(RetryPolicy {
        limit,
        backoff_duration,
        backoff_factor,
        backoff_max_duration,
    })
}

fn ignore_differences(doc: &mut Doc) -> Result<Vec<IgnoreDifference>, ImportError> {
    let items = doc.list("spec.ignoreDifferences")?;
    let mut out = Vec::new();
    for i in 0..items.len() {
        let at = format!("spec.ignoreDifferences[{i}]");
        let f = |name: &str| format!("{at}.{name}");
        let kind = doc.required_str(&f("kind"))?.to_string();
        let group = doc.str(&f("group"))?.map(str::to_string);
        let name = doc.str(&f("name"))?.map(str::to_string);
        let namespace = doc.str(&f("namespace"))?.map(str::to_string);
        let json_pointers = doc.strings(&f("jsonPointers"))?;
        if json_pointers.is_empty() {
            doc.warn(
                &at,
                "has no jsonPointers, the only kind of rule Capstan has; the entry is left out",
            );
            continue;
        }
        out.push(IgnoreDifference {
            group,
            kind,
            name,
            namespace,
            json_pointers,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_files_are_made_relative_to_the_repository_root() {
        assert_eq!(
            join_in_repo("helm-guestbook", "values-production.yaml").as_deref(),
            Some("helm-guestbook/values-production.yaml")
        );
        assert_eq!(
            join_in_repo("charts/web", "../../env/prod.yaml").as_deref(),
            Some("env/prod.yaml")
        );
        assert_eq!(join_in_repo("a", "../../x.yaml"), None);
        assert_eq!(join_in_repo(".", "v.yaml").as_deref(), Some("v.yaml"));
    }

    #[test]
    fn paths_lose_their_dot_slash() {
        assert_eq!(clean_path("./production"), "production");
        assert_eq!(clean_path("./"), ".");
        assert_eq!(clean_path("apps/web/"), "apps/web");
    }
}
