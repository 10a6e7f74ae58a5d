//! Rendering an Application from a tree of this repository, with the options its spec
//! asks for (the controller's own mapping), offline: only sources that are this
//! repository are rendered; a chart from a Helm repository, another repository, or a
//! `$ref` into one make the Application external.

use std::path::PathBuf;
use std::time::Duration;

use capstan_controller::crd::{Application, SourceSpec};
use capstan_controller::reconcile::{destination_namespace, source_render_options};
use capstan_core::Revision;
use capstan_engine::render::{self, DesiredObject, RenderOptions, Scopes};
use capstan_engine::source::Checkout;
use capstan_import::repos::normalize_url;

/// The renderer binaries and their time limit.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The helm binary (default `$CAPSTAN_HELM`, then `helm`).
    pub helm: Option<String>,
    /// The kustomize binary (default `kustomize`, else `kubectl kustomize`).
    pub kustomize: Option<String>,
    /// How long one render may take.
    pub timeout: Duration,
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            helm: None,
            kustomize: None,
            timeout: Duration::from_secs(90),
        }
    }
}

/// The URLs under which Applications name this repository.
#[derive(Debug, Clone)]
pub(crate) struct SelfRepo {
    urls: Vec<String>,
}

impl SelfRepo {
    pub fn new(urls: impl IntoIterator<Item = String>) -> SelfRepo {
        SelfRepo {
            urls: urls.into_iter().map(|u| normalize_url(&u)).collect(),
        }
    }

    /// The URLs, as given to import (so ApplicationSet Git generators read this tree).
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Whether `url` is this repository: one of its URLs, or relative (empty, `.`, a
    /// path without a scheme).
    pub fn is_self(&self, url: &str) -> bool {
        let u = url.trim();
        let url_like =
            u.contains("://") || u.starts_with('/') || (u.contains('@') && u.contains(':'));
        let relative = u.is_empty() || !url_like;
        relative || self.urls.contains(&normalize_url(u))
    }
}

/// One source of an Application to render from this repository.
#[derive(Debug, Clone)]
pub(crate) struct RenderSource {
    /// `spec.source`, `spec.sources[1]`.
    at: String,
    /// Its path in the repository.
    pub path: String,
    opts: RenderOptions,
}

impl RenderSource {
    /// Its values files, from the repository root (`$ref/…` resolved).
    pub fn values_files(&self) -> &[String] {
        &self.opts.helm.values_files
    }
}

/// What rendering an Application takes, when it can be rendered from this repository.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub sources: Vec<RenderSource>,
    namespace: String,
    /// What the render leaves out (values from the cluster).
    pub notes: Vec<String>,
}

/// The sources of the spec: `sources`, or `source` alone.
pub(crate) fn source_list(app: &Application) -> Vec<(String, &SourceSpec)> {
    if app.spec.sources.is_empty() {
        vec![("spec.source".to_string(), &app.spec.source)]
    } else {
        app.spec
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("spec.sources[{i}]"), s))
            .collect()
    }
}

/// How to render `app` from this repository, or why it cannot be (it is external).
pub(crate) fn plan(app: &Application, repo: &SelfRepo, tools: &Tools) -> Result<Plan, String> {
    let namespace = destination_namespace(app);
    let list = source_list(app);
    let refs: Vec<&str> = list
        .iter()
        .filter(|(_, s)| s.chart.is_none() && repo.is_self(&s.repo_url))
        .filter_map(|(_, s)| s.ref_.as_deref())
        .collect();
    let mut sources = Vec::new();
    let mut notes = Vec::new();
    for (at, src) in &list {
        if let Some(chart) = &src.chart {
            return Err(format!(
                "{at} is the chart {chart} {} from {}",
                src.target_revision.as_deref().unwrap_or("(newest)"),
                src.repo_url
            ));
        }
        if !repo.is_self(&src.repo_url) {
            return Err(format!(
                "{at}.repoURL {} is another repository",
                src.repo_url
            ));
        }
        if src.ref_.is_some() && src.path.is_none() {
            continue; // lends its files to the others
        }
        let mut opts = source_render_options(app, src, &namespace);
        opts.helm.binary = tools.helm.clone();
        opts.helm.timeout = tools.timeout;
        opts.kustomize.binary = tools.kustomize.clone();
        opts.kustomize.timeout = tools.timeout;
        let mut files = Vec::new();
        for f in &opts.helm.values_files {
            match f.strip_prefix('$') {
                None => files.push(f.clone()),
                Some(rest) => {
                    let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
                    if !refs.contains(&name) {
                        return Err(format!(
                            "{at}.helm.valueFiles {f:?} is read from the source {name:?}, which is not this repository"
                        ));
                    }
                    files.push(path.to_string());
                }
            }
        }
        opts.helm.values_files = files;
        if src.helm.as_ref().is_some_and(|h| !h.values_from.is_empty()) {
            notes.push(format!(
                "{at}.helm.valuesFrom: values from ConfigMaps and Secrets of the cluster are not read by a preview"
            ));
        }
        sources.push(RenderSource {
            at: at.clone(),
            path: src.path.clone().unwrap_or_else(|| ".".into()),
            opts,
        });
    }
    Ok(Plan {
        sources,
        namespace,
        notes,
    })
}

/// How to render the chart at `path` with its default values, as release `name` in
/// the namespace `default`.
pub(crate) fn chart_plan(path: &str, name: &str, tools: &Tools) -> Plan {
    let mut opts = RenderOptions {
        renderer: Some(render::RendererKind::Helm),
        ..Default::default()
    };
    opts.helm.release_name = Some(name.to_string());
    opts.helm.binary = tools.helm.clone();
    opts.helm.timeout = tools.timeout;
    Plan {
        sources: vec![RenderSource {
            at: format!("the chart {path}/"),
            path: path.to_string(),
            opts,
        }],
        namespace: "default".into(),
        notes: Vec::new(),
    }
}

/// Render `plan` from the tree at `root` (revision `revision`).
pub(crate) async fn render(
    plan: &Plan,
    root: &std::path::Path,
    revision: &Revision,
) -> Result<Vec<DesiredObject>, String> {
    let scopes = Scopes::builtin();
    let mut out = Vec::new();
    for s in &plan.sources {
        let checkout =
            Checkout::existing(root.to_path_buf(), PathBuf::from(&s.path), revision.clone());
        let objs = render::render(&checkout, &s.opts, &plan.namespace, &scopes)
            .await
            .map_err(|e| format!("{}: {}", s.at, chain(&e)))?;
        out.extend(objs);
    }
    Ok(out)
}

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_repository_is_any_of_its_urls_or_a_relative_one() {
        let r = SelfRepo::new([
            "file:///srv/env.git".to_string(),
            "https://github.com/org/env".to_string(),
        ]);
        assert!(r.is_self("https://github.com/org/env.git"));
        assert!(r.is_self("file:///srv/env.git"));
        assert!(r.is_self(""));
        assert!(r.is_self("."));
        assert!(!r.is_self("https://github.com/org/other"));
        assert!(!r.is_self("git@github.com:org/other.git"));
    }
}
