//! Flux's sources — `GitRepository`, `HelmRepository`, `OCIRepository`, and the
//! `ArtifactGenerator` artifacts (`ExternalArtifact`) cut from them — read once and
//! folded into every Kustomization and HelmRelease that refers to them. A source makes
//! no Capstan object of its own; its fields are checked (and named in warnings) when
//! something uses it.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

use crate::duration;
use crate::fields::Doc;
use crate::manifest::{Location, Manifest, ObjectId};
use crate::report::{ImportError, Note, NoteReason, Warning};

/// The media type of a Helm chart's layer in an OCI artifact.
const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// `(kind, namespace, name)`.
pub(crate) type Key = (String, String, String);

fn key(kind: &str, namespace: &str, name: &str) -> Key {
    (kind.to_string(), namespace.to_string(), name.to_string())
}

/// A Git repository at a revision.
#[derive(Debug, Clone)]
pub(crate) struct Git {
    pub url: String,
    /// Branch, tag, semver range or commit, as Capstan's targetRevision takes it.
    pub revision: String,
    pub secret: Option<String>,
    pub interval: Option<String>,
    pub suspend: bool,
}

/// A Helm repository (HTTPS `index.yaml`, or an OCI registry).
#[derive(Debug, Clone)]
pub(crate) struct HelmRepo {
    pub url: String,
    pub secret: Option<String>,
    pub interval: Option<String>,
    pub suspend: bool,
}

/// One chart in an OCI registry (Flux's OCIRepository): `oci://host/path/chart`.
#[derive(Debug, Clone)]
pub(crate) struct OciChart {
    /// `oci://host/path`.
    pub repo: String,
    /// `chart`.
    pub chart: String,
    /// Tag or semver range.
    pub revision: Option<String>,
    pub secret: Option<String>,
    pub interval: Option<String>,
    pub suspend: bool,
}

/// An artifact of an ArtifactGenerator that is a subdirectory of one Git source.
#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    /// The source it is cut from.
    pub source: Key,
    /// Its root inside that source (`apps` for `@monorepo/apps/**`), or `.`.
    pub offset: String,
}

#[derive(Debug, Clone)]
enum Parsed {
    Git(Git),
    Helm(HelmRepo),
    Oci(OciChart),
    /// Artifacts by name, each a subdirectory of a source, or why it is not.
    Generator(HashMap<String, Result<Artifact, String>>),
    /// A source kind Capstan has no equivalent for (Bucket, HelmChart …).
    Unsupported(String),
}

struct Entry {
    location: Location,
    id: ObjectId,
    parsed: Result<Parsed, String>,
    warnings: Vec<Warning>,
    used: Cell<bool>,
}

/// The sources of the input, by kind, namespace and name, and the keys of its Secrets.
pub(crate) struct Sources {
    entries: HashMap<Key, Entry>,
    order: Vec<Key>,
    secrets: HashMap<(String, String), BTreeSet<String>>,
}

/// What a Kustomization's or HelmRelease's source reference resolves to.
pub(crate) enum Resolved {
    Git { git: Git, offset: String },
    Helm(HelmRepo),
    Oci(OciChart),
}

impl Sources {
    /// Read every source (and Secret) of the input; errors of a source are returned
    /// here once, and whoever refers to it gets a short error pointing at it.
    pub fn read(manifests: &[Manifest]) -> (Sources, Vec<ImportError>) {
        let mut s = Sources {
            entries: HashMap::new(),
            order: Vec::new(),
            secrets: HashMap::new(),
        };
        let mut errors = Vec::new();
        for m in manifests {
            let id = m.id();
            if id.group.is_empty() && id.kind == "Secret" {
                let keys = ["data", "stringData"]
                    .iter()
                    .filter_map(|f| m.object.get(f).and_then(|d| d.as_object()))
                    .flat_map(|d| d.keys().cloned())
                    .collect();
                s.secrets
                    .insert((id.namespace.clone(), id.name.clone()), keys);
                continue;
            }
            let parse: fn(&mut Doc) -> Result<Parsed, ImportError> =
                match (id.group.as_str(), id.kind.as_str()) {
                    ("source.toolkit.fluxcd.io", "GitRepository") => git,
                    ("source.toolkit.fluxcd.io", "HelmRepository") => helm_repository,
                    ("source.toolkit.fluxcd.io", "OCIRepository") => oci_repository,
                    ("source.extensions.fluxcd.io", "ArtifactGenerator") => generator,
                    ("source.toolkit.fluxcd.io", "Bucket" | "HelmChart") => unsupported,
                    _ => continue,
                };
            let mut doc = Doc::new(m);
            // Sources are found by kind, namespace and name; their labels and
            // annotations mean nothing once they are folded into Applications.
            doc.mark("metadata");
            let parsed = match parse(&mut doc) {
                Ok(p) => Ok(p),
                Err(e) => {
                    let short = e.to_string();
                    errors.push(e);
                    Err(short)
                }
            };
            let k = key(&id.kind, &id.namespace, &id.name);
            s.order.push(k.clone());
            s.entries.insert(
                k,
                Entry {
                    location: m.location.clone(),
                    id,
                    parsed,
                    warnings: doc.finish(),
                    used: Cell::new(false),
                },
            );
        }
        (s, errors)
    }

    /// The keys of a Secret of the input, when it is there (never its values).
    pub fn secret_keys(&self, namespace: &str, name: &str) -> Option<&BTreeSet<String>> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }

    /// Resolve the reference at `field` of `doc` (`kind`, `name`, `namespace`).
    pub fn resolve(
        &self,
        doc: &Doc,
        field: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Resolved, ImportError> {
        if kind == "ExternalArtifact" {
            return self.artifact(doc, field, namespace, name);
        }
        let entry = self.entry(doc, field, kind, namespace, name)?;
        match &entry.parsed {
            Ok(Parsed::Git(g)) => Ok(Resolved::Git {
                git: g.clone(),
                offset: ".".into(),
            }),
            Ok(Parsed::Helm(h)) => Ok(Resolved::Helm(h.clone())),
            Ok(Parsed::Oci(o)) => Ok(Resolved::Oci(o.clone())),
            Ok(Parsed::Generator(_)) | Ok(Parsed::Unsupported(_)) | Err(_) => {
                unreachable_source(doc, field, entry)
            }
        }
    }

    fn entry(
        &self,
        doc: &Doc,
        field: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<&Entry, ImportError> {
        let target = ObjectId {
            group: String::new(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let Some(entry) = self.entries.get(&key(kind, namespace, name)) else {
            let hint = if kind == "GitRepository" && name == "flux-system" {
                "; `flux bootstrap` writes it into flux-system/gotk-sync.yaml: add that file (or a GitRepository named flux-system) to the input".to_string()
            } else {
                String::new()
            };
            return Err(ImportError::MissingReference {
                at: doc.at(),
                field: field.to_string(),
                target: Box::new(ObjectId {
                    group: "source.toolkit.fluxcd.io".into(),
                    ..target
                }),
                hint,
            });
        };
        entry.used.set(true);
        Ok(entry)
    }

    fn artifact(
        &self,
        doc: &Doc,
        field: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Resolved, ImportError> {
        let generator = self.order.iter().find_map(|k| {
            let e = &self.entries[k];
            match &e.parsed {
                Ok(Parsed::Generator(artifacts))
                    if k.1 == namespace && artifacts.contains_key(name) =>
                {
                    Some((e, &artifacts[name]))
                }
                _ => None,
            }
        });
        let Some((entry, artifact)) = generator else {
            return Err(ImportError::MissingReference {
                at: doc.at(),
                field: field.to_string(),
                target: Box::new(ObjectId {
                    group: "source.toolkit.fluxcd.io".into(),
                    kind: "ExternalArtifact".into(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                }),
                hint: "; no ArtifactGenerator of the input makes it".into(),
            });
        };
        entry.used.set(true);
        let artifact = artifact.as_ref().map_err(|why| {
            doc.invalid(
                field,
                format!(
                    "the artifact {name:?} of {} ({}) cannot be read as a directory of one Git repository: {why}",
                    entry.id, entry.location
                ),
            )
        })?;
        let (kind, ns, src_name) = &artifact.source;
        let source = self.entry(doc, field, kind, ns, src_name)?;
        match &source.parsed {
            Ok(Parsed::Git(g)) => Ok(Resolved::Git {
                git: g.clone(),
                offset: artifact.offset.clone(),
            }),
            _ => unreachable_source(doc, field, source),
        }
    }

    /// Warnings of the sources that were used, notes for the others.
    pub fn finish(self) -> (Vec<Warning>, Vec<Note>) {
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        for k in &self.order {
            let e = &self.entries[k];
            if e.parsed.is_err() {
                continue;
            }
            if e.used.get() {
                warnings.extend(e.warnings.iter().cloned());
                notes.push(Note {
                    location: e.location.clone(),
                    object: e.id.clone(),
                    reason: NoteReason::Source,
                    message: "a source: folded into the Applications that use it".into(),
                });
            } else {
                notes.push(Note {
                    location: e.location.clone(),
                    object: e.id.clone(),
                    reason: NoteReason::Source,
                    message: "a source no Kustomization or HelmRelease of the input uses: nothing made from it".into(),
                });
            }
        }
        (warnings, notes)
    }
}

fn unreachable_source<T>(doc: &Doc, field: &str, entry: &Entry) -> Result<T, ImportError> {
    let why = match &entry.parsed {
        Err(_) => "it could not be read (see its error)".to_string(),
        Ok(Parsed::Unsupported(why)) => why.clone(),
        Ok(Parsed::Generator(_)) => {
            "it is an ArtifactGenerator: refer to one of its artifacts as an ExternalArtifact"
                .into()
        }
        Ok(_) => "it is not a source of this kind".into(),
    };
    Err(doc.invalid(
        field,
        format!("refers to {} ({}): {why}", entry.id, entry.location),
    ))
}

fn interval(doc: &mut Doc) -> Result<Option<String>, ImportError> {
    let Some(t) = doc.text("spec.interval")? else {
        return Ok(None);
    };
    match duration::normalize(&t) {
        Some(d) => Ok(Some(d)),
        None => {
            doc.warn(
                "spec.interval",
                format!("{t:?} is not a duration Capstan takes (e.g. 30s, 5m, 1h); left out"),
            );
            Ok(None)
        }
    }
}

fn secret(doc: &mut Doc) -> Result<Option<String>, ImportError> {
    if doc.map("spec.secretRef")?.is_none() {
        return Ok(None);
    }
    Ok(Some(doc.required_str("spec.secretRef.name")?.to_string()))
}

fn git(doc: &mut Doc) -> Result<Parsed, ImportError> {
    let url = doc.required_str("spec.url")?.to_string();
    let commit = doc.str("spec.ref.commit")?;
    let name = doc.str("spec.ref.name")?;
    let semver = doc.str("spec.ref.semver")?;
    let tag = doc.str("spec.ref.tag")?;
    let branch = doc.str("spec.ref.branch")?;
    let named = match name {
        Some(n) => match n
            .strip_prefix("refs/heads/")
            .or_else(|| n.strip_prefix("refs/tags/"))
        {
            Some(short) => Some(short.to_string()),
            None => {
                doc.warn(
                    "spec.ref.name",
                    format!("{n:?}: Capstan resolves branches, tags, commits and semver ranges only; left out"),
                );
                None
            }
        },
        None => None,
    };
    // Flux's order of precedence; without any, the branch `master`.
    let revision = commit
        .map(str::to_string)
        .or(named)
        .or(semver.map(str::to_string))
        .or(tag.map(str::to_string))
        .or(branch.map(str::to_string))
        .unwrap_or_else(|| "master".into());
    Ok(Parsed::Git(Git {
        url,
        revision,
        secret: secret(doc)?,
        interval: interval(doc)?,
        suspend: doc.bool("spec.suspend")?.unwrap_or(false),
    }))
}

fn helm_repository(doc: &mut Doc) -> Result<Parsed, ImportError> {
    let url = doc.required_str("spec.url")?.to_string();
    let ty = doc.str("spec.type")?.unwrap_or("default");
    if ty == "oci" && !url.starts_with("oci://") {
        return Err(doc.invalid("spec.url", "must start with oci:// when spec.type is oci"));
    }
    if ty != "oci" && ty != "default" {
        return Err(doc.invalid("spec.type", format!("{ty:?} is not default or oci")));
    }
    Ok(Parsed::Helm(HelmRepo {
        url,
        secret: secret(doc)?,
        interval: interval(doc)?,
        suspend: doc.bool("spec.suspend")?.unwrap_or(false),
    }))
}

fn oci_repository(doc: &mut Doc) -> Result<Parsed, ImportError> {
    let url = doc.required_str("spec.url")?;
    let Some(rest) = url.strip_prefix("oci://") else {
        return Err(doc.invalid("spec.url", "must start with oci://"));
    };
    let Some((repo, chart)) = rest.trim_end_matches('/').rsplit_once('/') else {
        return Err(doc.invalid("spec.url", "must name a repository: oci://host/path/chart"));
    };
    let revision = if let Some(s) = doc.str("spec.ref.semver")? {
        Some(s.to_string())
    } else if let Some(t) = doc.str("spec.ref.tag")? {
        Some(t.to_string())
    } else {
        if doc.str("spec.ref.digest")?.is_some() {
            doc.warn(
                "spec.ref.digest",
                "a chart pinned by digest has no Capstan equivalent (chart versions and ranges only); left out",
            );
        }
        None
    };
    doc.warn_if_present(
        "spec.ref.semverFilter",
        "a semver filter has no Capstan equivalent; left out",
    );
    match doc.str("spec.layerSelector.mediaType")? {
        None | Some(HELM_CHART_LAYER) => {
            doc.mark("spec.layerSelector");
        }
        Some(_) => {}
    }
    Ok(Parsed::Oci(OciChart {
        repo: format!("oci://{repo}"),
        chart: chart.to_string(),
        revision,
        secret: secret(doc)?,
        interval: interval(doc)?,
        suspend: doc.bool("spec.suspend")?.unwrap_or(false),
    }))
}

fn unsupported(doc: &mut Doc) -> Result<Parsed, ImportError> {
    let kind = doc.id().kind.clone();
    doc.mark("spec");
    Ok(Parsed::Unsupported(format!(
        "a {kind} has no Capstan equivalent (Capstan reads Git repositories, Helm repositories and OCI Helm charts)"
    )))
}

/// An ArtifactGenerator: each artifact must copy directories of one Git source so that
/// the layout below some directory is kept (`@src/apps/base/** → @artifact/base/`),
/// which makes the artifact that directory of the repository.
fn generator(doc: &mut Doc) -> Result<Parsed, ImportError> {
    let ns = doc.id().namespace.clone();
    let mut aliases: HashMap<String, Key> = HashMap::new();
    let sources = doc.list("spec.sources")?;
    for i in 0..sources.len() {
        let at = format!("spec.sources[{i}]");
        let alias = doc.required_str(&format!("{at}.alias"))?.to_string();
        let kind = doc.required_str(&format!("{at}.kind"))?.to_string();
        let name = doc.required_str(&format!("{at}.name"))?.to_string();
        let namespace = doc
            .str(&format!("{at}.namespace"))?
            .unwrap_or(&ns)
            .to_string();
        aliases.insert(alias, key(&kind, &namespace, &name));
    }
    let mut out = HashMap::new();
    let artifacts = doc.list("spec.artifacts")?;
    for i in 0..artifacts.len() {
        let at = format!("spec.artifacts[{i}]");
        let name = doc.required_str(&format!("{at}.name"))?.to_string();
        doc.mark(&format!("{at}.originRevision"));
        doc.warn_if_present(
            &format!("{at}.revision"),
            "an artifact's own revision has no Capstan equivalent; left out",
        );
        let copies = doc.list(&format!("{at}.copy"))?;
        let mut found: Option<Result<Artifact, String>> = None;
        for j in 0..copies.len() {
            let c = format!("{at}.copy[{j}]");
            let from = doc.required_str(&format!("{c}.from"))?;
            let to = doc.required_str(&format!("{c}.to"))?;
            doc.warn_if_present(
                &format!("{c}.exclude"),
                "the artifact is read as a directory of the repository: files it excludes are read too",
            );
            match doc.str(&format!("{c}.strategy"))? {
                None | Some("Overwrite") => {}
                Some(other) => doc.warn(
                    &format!("{c}.strategy"),
                    format!("the {other} strategy has no Capstan equivalent; the files are read as they are in the repository"),
                ),
            }
            let one = copy_offset(from, to, &aliases);
            found = Some(match (found, one) {
                (None, r) => r,
                (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
                (Some(Ok(a)), Ok(b)) if a.source == b.source && a.offset == b.offset => Ok(a),
                (Some(Ok(a)), Ok(b)) => Err(format!(
                    "its copies put different directories at their place ({} and {})",
                    a.offset, b.offset
                )),
            });
        }
        out.insert(
            name,
            found.unwrap_or_else(|| Err("it copies nothing".into())),
        );
    }
    Ok(Parsed::Generator(out))
}

/// `@alias/apps/base/**` copied to `@artifact/base/` keeps the layout below `apps`.
fn copy_offset(from: &str, to: &str, aliases: &HashMap<String, Key>) -> Result<Artifact, String> {
    let (alias, from_path) = from
        .strip_prefix('@')
        .and_then(|f| f.split_once('/').or(Some((f, ""))))
        .ok_or_else(|| format!("{from:?} does not start with @alias/"))?;
    let source = aliases
        .get(alias)
        .ok_or_else(|| format!("{from:?} names no source alias of the generator"))?
        .clone();
    let dir = from_path
        .trim_end_matches("**")
        .trim_end_matches('*')
        .trim_end_matches('/');
    if dir.contains('*') || dir.contains('?') || dir.contains('[') {
        return Err(format!("{from:?} is not a whole directory (dir/**)"));
    }
    let to_dir = to
        .strip_prefix("@artifact")
        .ok_or_else(|| format!("{to:?} does not start with @artifact/"))?
        .trim_matches('/');
    let offset = if to_dir.is_empty() {
        dir.to_string()
    } else {
        dir.strip_suffix(to_dir)
            .map(|o| o.trim_end_matches('/').to_string())
            .ok_or_else(|| format!("{from:?} copied to {to:?} does not keep its layout"))?
    };
    Ok(Artifact {
        source,
        offset: if offset.is_empty() {
            ".".into()
        } else {
            offset
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_that_keep_the_layout_make_a_directory_of_the_repository() {
        let aliases = HashMap::from([(
            "monorepo".to_string(),
            key("GitRepository", "flux-system", "flux-system"),
        )]);
        let a = copy_offset("@monorepo/apps/base/**", "@artifact/base/", &aliases).unwrap();
        assert_eq!(a.offset, "apps");
        let b = copy_offset("@monorepo/infrastructure/**", "@artifact/", &aliases).unwrap();
        assert_eq!(b.offset, "infrastructure");
        let err = copy_offset("@monorepo/apps/base/**", "@artifact/other/", &aliases).unwrap_err();
        assert!(err.contains("does not keep its layout"), "{err}");
        assert!(copy_offset("@nope/x/**", "@artifact/", &aliases).is_err());
    }
}
