//! Reading an Application's spec into the engine's options: durations, render and
//! plan options, the destination namespace, retry backoff.

use std::time::Duration;

use capstan_core::SyncOptionSet;
use capstan_engine::diff::IgnoreRule;
use capstan_engine::plan::PlanOptions;
use capstan_engine::render::{
    HelmOptions, JsonnetOptions, JsonnetVar, KustomizeOptions, RenderOptions, RendererKind,
};
use kube::ResourceExt;

use crate::crd::{Application, JsonnetVarSpec};

/// A duration of the spec (`30s`, `2m`, `1h30m`, `500ms`).
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// The spec's durations that do not parse, as `field: "value"` messages. The CRD's
/// schema already rejects them; this guards against a CRD installed without it.
pub(super) fn invalid_durations(app: &Application) -> Vec<String> {
    let retry = app.spec.sync_policy.retry.as_ref();
    [
        ("spec.interval", app.spec.interval.as_deref()),
        (
            "spec.syncPolicy.retry.backoffDuration",
            retry.and_then(|r| r.backoff_duration.as_deref()),
        ),
        (
            "spec.syncPolicy.retry.backoffMaxDuration",
            retry.and_then(|r| r.backoff_max_duration.as_deref()),
        ),
    ]
    .into_iter()
    .filter_map(|(field, v)| {
        let v = v?;
        parse_duration(v)
            .is_none()
            .then(|| format!("{field}: {v:?} is not a duration (e.g. 30s, 2m, 1h30m)"))
    })
    .collect()
}

/// The Application's sync options: `syncPolicy.syncOptions` (Argo CD's spelling) and
/// `syncPolicy.createNamespace`; an unknown or malformed option names its field.
pub(super) fn sync_option_set(app: &Application) -> Result<SyncOptionSet, String> {
    let policy = &app.spec.sync_policy;
    let mut set = SyncOptionSet::default();
    for (i, opt) in policy.sync_options.iter().enumerate() {
        set = set
            .with([opt.as_str()])
            .map_err(|e| format!("spec.syncPolicy.syncOptions[{i}]: {e}"))?;
    }
    set.create_namespace |= policy.create_namespace;
    Ok(set)
}

/// Labels and annotations of the namespace `CreateNamespace` creates.
pub(super) fn namespace_metadata(app: &Application) -> capstan_engine::sync::NamespaceMetadata {
    let m = app.spec.sync_policy.managed_namespace_metadata.as_ref();
    capstan_engine::sync::NamespaceMetadata {
        labels: m.map(|m| m.labels.clone()).unwrap_or_default(),
        annotations: m.map(|m| m.annotations.clone()).unwrap_or_default(),
    }
}

/// Fields of the spec this controller cannot act on yet, named so the Application
/// waits with a clear condition instead of being synced without them.
pub(super) fn unsupported(app: &Application) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &app.spec;
    if !spec.sources.is_empty() && !spec.source.repo_url.is_empty() {
        out.push("spec.source and spec.sources are both set: give one source, or a list of them in spec.sources".to_string());
    }
    for (i, src) in spec.sources.iter().enumerate() {
        if src.repo_url.is_empty() {
            out.push(format!("spec.sources[{i}].repoURL is empty"));
        }
    }
    for v in spec
        .sources
        .iter()
        .chain([&spec.source])
        .filter_map(|s| s.helm.as_ref())
        .flat_map(|h| &h.values_from)
    {
        if v.kind != "ConfigMap" && v.kind != "Secret" {
            out.push(format!(
                "helm.valuesFrom {:?}: kind must be ConfigMap or Secret, not {:?}",
                v.name, v.kind
            ));
        }
    }
    out
}

/// Whether the spec needs more than one Git path rendered: several sources, a chart
/// from a Helm repository, or values from the cluster.
pub(super) fn is_composite(app: &Application) -> bool {
    let src = &app.spec.source;
    !app.spec.sources.is_empty()
        || src.chart.is_some()
        || src.helm.as_ref().is_some_and(|h| !h.values_from.is_empty())
}

/// The Application's interval (default from the controller options).
pub fn interval(app: &Application, default: Duration) -> Duration {
    app.spec
        .interval
        .as_deref()
        .and_then(parse_duration)
        .unwrap_or(default)
        .max(Duration::from_secs(1))
}

/// The delay before retry number `failures`: the spec's backoff (default 5 s, ×2),
/// capped by the spec's maximum or `default_max`.
pub(super) fn backoff(failures: u32, default_max: Duration, app: &Application) -> Duration {
    let retry = app.spec.sync_policy.retry.as_ref();
    let base = retry
        .and_then(|r| r.backoff_duration.as_deref())
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(5));
    let factor = retry.and_then(|r| r.backoff_factor).unwrap_or(2).max(1);
    let max = retry
        .and_then(|r| r.backoff_max_duration.as_deref())
        .and_then(parse_duration)
        .unwrap_or(default_max);
    let mut d = base;
    for _ in 1..failures {
        d = (d * factor).min(max);
    }
    d.min(max)
}

/// The namespace an Application's namespaced objects go to by default.
pub fn destination_namespace(app: &Application) -> String {
    app.spec
        .destination
        .namespace
        .clone()
        .unwrap_or_else(|| app.namespace().unwrap_or_default())
}

/// The renderer options the source asks for.
pub(super) fn render_options(app: &Application, namespace: &str) -> RenderOptions {
    source_render_options(app, &app.spec.source, namespace)
}

/// The renderer options one source asks for.
pub fn source_render_options(
    app: &Application,
    src: &crate::crd::SourceSpec,
    namespace: &str,
) -> RenderOptions {
    let mut opts = RenderOptions::default();
    if let Some(d) = &src.directory {
        opts.renderer = Some(RendererKind::Directory);
        opts.include = d.include.clone();
        opts.exclude = d.exclude.clone();
        if let Some(j) = &d.jsonnet {
            opts.jsonnet = JsonnetOptions {
                tlas: j.tlas.iter().map(jsonnet_var).collect(),
                ext_vars: j.ext_vars.iter().map(jsonnet_var).collect(),
                libs: j.libs.clone(),
                ..Default::default()
            };
        }
    }
    if let Some(k) = &src.kustomize {
        opts.renderer = Some(RendererKind::Kustomize);
        opts.kustomize = KustomizeOptions {
            args: k.build_options.clone(),
            ..Default::default()
        };
    }
    if let Some(h) = &src.helm {
        opts.renderer = Some(RendererKind::Helm);
        opts.helm = HelmOptions {
            release_name: Some(h.release_name.clone().unwrap_or_else(|| app.name_any())),
            namespace: Some(namespace.to_string()),
            values_files: h.value_files.clone(),
            values: helm_values(h),
            set: h
                .parameters
                .iter()
                .map(|p| format!("{}={}", p.name, p.value))
                .collect(),
            ..Default::default()
        };
    }
    opts
}

fn jsonnet_var(v: &JsonnetVarSpec) -> JsonnetVar {
    JsonnetVar {
        name: v.name.clone(),
        value: v.value.clone(),
        code: v.code,
    }
}

/// `values` with `valuesObject` merged over it, as one YAML (JSON) document.
fn helm_values(h: &crate::crd::HelmSpec) -> Option<String> {
    let Some(object) = &h.values_object else {
        return h.values.clone();
    };
    let mut base: serde_json::Value = h
        .values
        .as_deref()
        .and_then(|v| serde_saphyr::from_str(v).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    merge(&mut base, object);
    Some(base.to_string())
}

/// Merge `over` into `base`, maps key by key (as Helm merges values).
fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The plan options of a controller reconcile.
pub(super) fn plan_options(app: &Application, requests_per_app: usize) -> PlanOptions {
    let mut opts = PlanOptions::new(app.name_any());
    opts.dry_run_creates = false;
    // Git is the source of truth: fields another manager took over (a `kubectl edit`)
    // are taken back, as Flux's kustomize-controller does, instead of failing on the
    // conflict forever.
    opts.force_conflicts = true;
    opts.concurrency = requests_per_app;
    opts.sync_options = sync_option_set(app).unwrap_or_default();
    opts.ignore_differences = app
        .spec
        .ignore_differences
        .iter()
        .map(|i| IgnoreRule {
            group: i.group.clone(),
            kind: i.kind.clone(),
            name: i.name.clone(),
            namespace: i.namespace.clone(),
            json_pointers: i.json_pointers.clone(),
        })
        .collect();
    opts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ApplicationSpec, RetryPolicy, SourceSpec};

    fn app(spec: ApplicationSpec) -> Application {
        Application::new("web", spec)
    }

    fn with_retry(retry: RetryPolicy) -> Application {
        let mut spec = ApplicationSpec::default();
        spec.sync_policy.retry = Some(retry);
        app(spec)
    }

    #[test]
    fn durations_parse_like_the_crd_pattern_says_and_bad_ones_are_named() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        let pattern = regex::Regex::new(crate::crd::DURATION_PATTERN).unwrap();
        for ok in ["30s", "2m", "1h30m", "500ms", "1h0m10s"] {
            assert!(pattern.is_match(ok), "{ok}");
            assert!(parse_duration(ok).is_some(), "{ok}");
        }
        for bad in ["2x", "soon", "", "-1s", "1.5h"] {
            assert!(!pattern.is_match(bad), "{bad}");
        }

        let mut spec = ApplicationSpec {
            interval: Some("2x".into()),
            source: SourceSpec::default(),
            ..Default::default()
        };
        spec.sync_policy.retry = Some(RetryPolicy {
            limit: 1,
            backoff_duration: Some("5s".into()),
            backoff_factor: None,
            backoff_max_duration: Some("forever".into()),
        });
        let invalid = invalid_durations(&app(spec));
        assert_eq!(
            invalid,
            vec![
                r#"spec.interval: "2x" is not a duration (e.g. 30s, 2m, 1h30m)"#.to_string(),
                r#"spec.syncPolicy.retry.backoffMaxDuration: "forever" is not a duration (e.g. 30s, 2m, 1h30m)"#.to_string(),
            ]
        );
        assert!(invalid_durations(&app(ApplicationSpec::default())).is_empty());
    }

    #[test]
    fn the_interval_defaults_and_is_at_least_a_second() {
        let default = Duration::from_secs(120);
        assert_eq!(interval(&app(ApplicationSpec::default()), default), default);
        let every = |s: &str| {
            interval(
                &app(ApplicationSpec {
                    interval: Some(s.into()),
                    ..Default::default()
                }),
                default,
            )
        };
        assert_eq!(every("10s"), Duration::from_secs(10));
        assert_eq!(every("10ms"), Duration::from_secs(1));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let cap = Duration::from_secs(180);
        let defaults = app(ApplicationSpec::default());
        let delays: Vec<u64> = (1..=9)
            .map(|n| backoff(n, cap, &defaults).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 180, 180, 180]);

        let custom = with_retry(RetryPolicy {
            limit: 3,
            backoff_duration: Some("1s".into()),
            backoff_factor: Some(3),
            backoff_max_duration: Some("20s".into()),
        });
        let delays: Vec<u64> = (1..=5)
            .map(|n| backoff(n, cap, &custom).as_secs())
            .collect();
        assert_eq!(delays, [1, 3, 9, 20, 20]);
    }

    #[test]
    fn argo_cds_directory_jsonnet_fields_become_the_jsonnet_options() {
        let source: SourceSpec = serde_json::from_value(serde_json::json!({
            "repoURL": "https://git.example/env.git",
            "path": "apps/guestbook",
            "directory": {"jsonnet": {
                "extVars": [{"name": "env", "value": "prod"}],
                "tlas": [{"name": "replicas", "value": "2 + 1", "code": true}],
                "libs": ["vendor"],
            }},
        }))
        .unwrap();
        let opts = render_options(
            &app(ApplicationSpec {
                source,
                ..Default::default()
            }),
            "shop",
        );
        assert_eq!(opts.renderer, Some(RendererKind::Directory));
        assert_eq!(
            opts.jsonnet.ext_vars,
            [JsonnetVar {
                name: "env".into(),
                value: "prod".into(),
                code: false
            }]
        );
        assert_eq!(
            opts.jsonnet.tlas,
            [JsonnetVar {
                name: "replicas".into(),
                value: "2 + 1".into(),
                code: true
            }]
        );
        assert_eq!(opts.jsonnet.libs, ["vendor"]);
    }
}
