//! Sources beyond one Git path: a chart from a Helm repository or an OCI registry
//! (`source.chart`), values from ConfigMaps and Secrets (`helm.valuesFrom`), and
//! several sources making one Application (`sources`, Argo CD's multi-source).
//!
//! ```text
//! each Git source: fetch (shared), resolve, its tree ──▶ refs: `$name` → tree
//! each source that renders: its values files read in order (`$name/path` from a
//!   ref's tree, others from its own directory), then valuesFrom, as documents ──▶
//!   render (a chart from the chart cache, or the Git path) ──▶ one desired set
//! ```
//!
//! The revision is the one source's (a chart's is its archive digest), or, for several,
//! their ids joined with `,` in the order of `sources`, so any change of any source
//! is a new revision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capstan_core::Revision;
use capstan_engine::render::{self, DesiredObject, ValuesDoc, ValuesKind, ValuesReference};
use capstan_engine::source::helm::{ChartSource, HelmAuth, auth_from_secret};
use capstan_engine::source::{Checkout, GitSource, confine};

use super::{Pass, StageFailure, Trigger, error_chain, spec};
use crate::crd::SourceSpec;

/// A fetched Git source: where, at which commit, its files.
struct Fetched {
    src: GitSource,
    revision: Revision,
    root: PathBuf,
}

impl Pass<'_> {
    /// The sources of the spec: `sources`, or `source` alone.
    fn source_list(&self) -> Vec<(String, &SourceSpec)> {
        if self.app.spec.sources.is_empty() {
            vec![("spec.source".to_string(), &self.app.spec.source)]
        } else {
            self.app
                .spec
                .sources
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("spec.sources[{i}]"), s))
                .collect()
        }
    }

    /// Stages 1–3 for a chart, values from the cluster, or several sources: the
    /// revision and the desired set.
    pub(super) async fn composite(
        &self,
    ) -> Result<(Revision, Arc<Vec<DesiredObject>>), StageFailure> {
        let list = self.source_list();
        let mut fetched: Vec<Option<Fetched>> = Vec::new();
        let mut refs: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (at, src) in &list {
            if src.chart.is_some() {
                fetched.push(None);
                continue;
            }
            let f = self.fetch_git(at, src).await?;
            if let Some(name) = &src.ref_ {
                refs.insert(name.clone(), f.root.clone());
            }
            fetched.push(Some(f));
        }
        let dest_ns = spec::destination_namespace(self.app);
        let dest = self.ctx.dest.with_namespace(&dest_ns);
        let scopes = dest
            .scopes()
            .await
            .map_err(|e| StageFailure::retry("ClusterUnreachable", e))?;
        let mut revisions = Vec::new();
        let mut desired = Vec::new();
        for ((at, src), f) in list.iter().zip(&fetched) {
            // a ref without a path only lends its files
            if src.ref_.is_some() && src.path.is_none() && src.chart.is_none() {
                if let Some(f) = f {
                    revisions.push(f.revision.clone());
                }
                continue;
            }
            let mut opts = spec::source_render_options(self.app, src, &dest_ns);
            let caps = self.capabilities().await?;
            opts.helm.api_versions = caps.api_versions;
            opts.helm.kube_version = caps.kube_version;
            // the values files are read into documents below, in their order
            opts.helm.values_files.clear();
            let own_dir = f
                .as_ref()
                .map(|f| f.root.join(src.path.as_deref().unwrap_or(".")));
            let (revision, objects) = match f {
                Some(f) => {
                    opts.helm.values_from =
                        self.values_docs(at, src, own_dir.as_deref(), &refs).await?;
                    let path = src.path.clone().unwrap_or_else(|| ".".into());
                    let objs = self
                        .ctx
                        .sources
                        .desired(&f.src, &f.revision, &path, &opts, &dest_ns, &scopes)
                        .await
                        .map_err(|e| StageFailure::retry("RenderFailed", format!("{at}: {e}")))?;
                    (f.revision.clone(), objs)
                }
                None => {
                    let (revision, chart_dir) = self.fetch_chart(at, src).await?;
                    opts.helm.values_from =
                        self.values_docs(at, src, Some(&chart_dir), &refs).await?;
                    opts.renderer = Some(render::RendererKind::Helm);
                    let view = Checkout::existing(chart_dir, PathBuf::from("."), revision.clone());
                    let objs = render::render(&view, &opts, &dest_ns, &scopes)
                        .await
                        .map_err(|e| {
                            StageFailure::retry(
                                "RenderFailed",
                                format!("{at}: {}", error_chain(&e)),
                            )
                        })?;
                    (revision, Arc::new(objs))
                }
            };
            revisions.push(revision);
            desired.extend(objects.iter().cloned());
        }
        let revision = combined(revisions);
        Ok((revision, Arc::new(desired)))
    }

    /// Fetch (shared with every Application of the repository) and resolve one Git
    /// source; its tree.
    async fn fetch_git(&self, at: &str, src: &SourceSpec) -> Result<Fetched, StageFailure> {
        let auth = crate::credentials::git_auth(
            &self.ctx.client,
            &self.namespace,
            src.credentials_secret.as_deref(),
            &self.ctx.opts.state_dir,
        )
        .await
        .map_err(|e| {
            StageFailure::retry("CredentialsFailed", format!("{at}: {}", error_chain(&e)))
        })?;
        let git = GitSource {
            url: src.repo_url.clone(),
            auth,
        };
        let forced = self.request.is_some()
            || matches!(
                self.trigger,
                Trigger::Refresh | Trigger::Webhook | Trigger::ImageUpdate
            );
        self.ctx
            .sources
            .fetch(&git, forced)
            .await
            .map_err(|e| StageFailure::retry("FetchFailed", format!("{at}: {e}")))?;
        let wanted = src.target_revision.clone().unwrap_or_default();
        let revision = self
            .ctx
            .sources
            .resolve(&git, &wanted)
            .await
            .map_err(|e| StageFailure::retry("RevisionNotFound", format!("{at}: {e}")))?;
        let tree = self
            .ctx
            .sources
            .tree(&git, &revision)
            .await
            .map_err(|e| StageFailure::retry("FetchFailed", format!("{at}: {e}")))?;
        Ok(Fetched {
            src: git,
            revision,
            root: tree.root().to_path_buf(),
        })
    }

    /// The chart of a source from its Helm repository or OCI registry (cached by
    /// digest), with the credentials of its Secret.
    async fn fetch_chart(
        &self,
        at: &str,
        src: &SourceSpec,
    ) -> Result<(Revision, PathBuf), StageFailure> {
        let chart = src.chart.clone().unwrap_or_default();
        let version = src.target_revision.clone().unwrap_or_default();
        let auth = match &src.credentials_secret {
            Some(name) => auth_from_secret(&self.ctx.client, &self.namespace, name)
                .await
                .map_err(|e| {
                    StageFailure::retry("CredentialsFailed", format!("{at}: {}", error_chain(&e)))
                })?,
            None => HelmAuth::default(),
        };
        let source = ChartSource::new(&src.repo_url, &chart, &version);
        let fetched = self.ctx.charts.fetch(&source, &auth).await.map_err(|e| {
            StageFailure::retry("FetchFailed", format!("{at}: {}", error_chain(&e)))
        })?;
        Ok((fetched.revision(&version), fetched.dir))
    }

    /// A source's Helm values as documents, in Argo CD's order: its values files
    /// (`$name/path` from the ref `name`, others from its own directory), then
    /// `valuesFrom` (read from the Application's namespace).
    async fn values_docs(
        &self,
        at: &str,
        src: &SourceSpec,
        own: Option<&Path>,
        refs: &BTreeMap<String, PathBuf>,
    ) -> Result<Vec<ValuesDoc>, StageFailure> {
        let Some(helm) = &src.helm else {
            return Ok(Vec::new());
        };
        let mut docs = Vec::new();
        for (i, file) in helm.value_files.iter().enumerate() {
            let field = format!("{at}.helm.valueFiles[{i}]");
            let (root, rel) = match file.strip_prefix('$') {
                Some(rest) => {
                    let (name, rel) = rest.split_once('/').unwrap_or((rest, ""));
                    let root = refs.get(name).ok_or_else(|| StageFailure {
                        reason: "InvalidSpec",
                        message: format!(
                            "{field}: {file:?} names the source ref {name:?}, but no Git source has `ref: {name}`"
                        ),
                        retry: false,
                    })?;
                    (root.clone(), rel.to_string())
                }
                None => match own {
                    Some(dir) => (dir.to_path_buf(), file.clone()),
                    None => continue,
                },
            };
            let path = confine::check_tree(&root, Path::new(&rel)).map_err(|e| StageFailure {
                reason: "InvalidSpec",
                message: format!("{field}: {e}"),
                retry: false,
            })?;
            let text = std::fs::read_to_string(&path).map_err(|e| {
                StageFailure::retry("RenderFailed", format!("{field}: reading {file}: {e}"))
            })?;
            docs.push(ValuesDoc::new(format!("values file {file}"), text));
        }
        let refs: Vec<ValuesReference> = helm
            .values_from
            .iter()
            .map(|v| ValuesReference {
                kind: if v.kind == "Secret" {
                    ValuesKind::Secret
                } else {
                    ValuesKind::ConfigMap
                },
                name: v.name.clone(),
                namespace: None,
                key: v
                    .values_key
                    .clone()
                    .unwrap_or_else(|| render::values_from::DEFAULT_KEY.to_string()),
                target_path: v.target_path.clone(),
                optional: v.optional,
            })
            .collect();
        let from = render::values_from(&self.ctx.client, &self.namespace, &refs)
            .await
            .map_err(|e| {
                StageFailure::retry(
                    "ValuesFromFailed",
                    format!("{at}.helm.valuesFrom: {}", error_chain(&e)),
                )
            })?;
        docs.extend(from);
        Ok(docs)
    }

    /// Helm's `.Capabilities` for the destination (its discovery and version).
    pub(super) async fn capabilities(
        &self,
    ) -> Result<capstan_engine::destination::Capabilities, StageFailure> {
        self.ctx
            .capabilities()
            .await
            .map_err(|e| StageFailure::retry("ClusterUnreachable", e))
    }
}

/// One revision for several: the ids joined with `,`, the first's author and message.
fn combined(revisions: Vec<Revision>) -> Revision {
    match revisions.len() {
        1 => revisions.into_iter().next().unwrap_or_else(empty),
        0 => empty(),
        _ => Revision {
            id: revisions
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
            requested: revisions
                .iter()
                .map(|r| r.requested.as_str())
                .collect::<Vec<_>>()
                .join(","),
            author: revisions[0].author.clone(),
            message: revisions[0].message.clone(),
            time: revisions[0].time.clone(),
        },
    }
}

fn empty() -> Revision {
    Revision {
        id: String::new(),
        requested: String::new(),
        author: String::new(),
        message: String::new(),
        time: String::new(),
    }
}
