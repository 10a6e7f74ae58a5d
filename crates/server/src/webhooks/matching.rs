//! Which Applications a push concerns: a source of the same repository (URLs
//! compared by [`repo_key`]), tracking a ref the push moved, and — when the push lists
//! its files — whose path (or `capstan.dev/watch-paths`) holds one of them.

use std::collections::BTreeSet;

use capstan_controller::crd::{Application, SourceSpec};
use capstan_engine::source::url::repo_key;
use globset::{Glob, GlobSetBuilder};
use kube::ResourceExt;

use super::event::Push;

/// The annotation listing, `;`-separated, the paths whose change concerns an
/// Application: globs, relative to its source's path, or to the repository's root
/// when they start with `/`. Argo CD's `argocd.argoproj.io/manifest-generate-paths`
/// is read the same way when this one is not set.
pub const WATCH_PATHS_ANNOTATION: &str = "capstan.dev/watch-paths";
const ARGO_WATCH_PATHS: &str = "argocd.argoproj.io/manifest-generate-paths";

/// Whether a push concerns `app`; when it does not, why (for the response and log).
pub fn concerns(app: &Application, push: &Push) -> Result<(), &'static str> {
    let keys: BTreeSet<String> = push.repo_urls.iter().map(|u| repo_key(u)).collect();
    let sources: Vec<&SourceSpec> = if app.spec.sources.is_empty() {
        vec![&app.spec.source]
    } else {
        app.spec.sources.iter().collect()
    };
    let same_repo: Vec<&SourceSpec> = sources
        .into_iter()
        .filter(|s| s.chart.is_none() && keys.contains(&repo_key(&s.repo_url)))
        .collect();
    if same_repo.is_empty() {
        return Err("another repository");
    }
    let tracked: Vec<&SourceSpec> = same_repo
        .into_iter()
        .filter(|s| tracks(s.target_revision.as_deref().unwrap_or(""), push))
        .collect();
    if tracked.is_empty() {
        return Err("another revision");
    }
    let Some(files) = &push.changed_files else {
        return Ok(());
    };
    let watch = app
        .annotations()
        .get(WATCH_PATHS_ANNOTATION)
        .or_else(|| app.annotations().get(ARGO_WATCH_PATHS));
    for s in tracked {
        if touched(s, watch.map(String::as_str), files) {
            return Ok(());
        }
    }
    Err("no file under its path changed")
}

/// Whether a source at `target` follows a ref the push moved: its branch (by name,
/// `refs/heads/…`, or `HEAD`/empty for the default branch), its tag, or a semver range
/// a pushed tag satisfies. A commit SHA follows nothing.
fn tracks(target: &str, push: &Push) -> bool {
    let target = target.trim();
    push.refs.iter().any(|r| {
        if let Some(branch) = r.branch() {
            if target.is_empty() || target == "HEAD" {
                // the default branch; when the payload does not say which it is, refresh
                return push.default_branch.as_deref().is_none_or(|d| d == branch);
            }
            return target == branch || target == r.name;
        }
        if let Some(tag) = r.tag() {
            if target == tag || target == r.name {
                return true;
            }
            return semver_range(target).is_some_and(|req| {
                semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag))
                    .is_ok_and(|v| req.matches(&v))
            });
        }
        target == r.name
    })
}

/// A `targetRevision` that is a semver range (`1.2.*`, `>=1.0.0 <2`, `~1.4`), not a
/// plain version, branch or SHA.
fn semver_range(target: &str) -> Option<semver::VersionReq> {
    let looks_like_range = target.contains(['*', '^', '~', '>', '<', '=', 'x', 'X', ' ', ','])
        && target
            .chars()
            .next()
            .is_some_and(|c| !c.is_ascii_alphabetic() || c == 'x' || c == 'X');
    if !looks_like_range {
        return None;
    }
    // Argo CD ranges separate constraints by spaces; semver by commas
    let normalised = target
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(", ")
        .replace(",,", ",");
    semver::VersionReq::parse(&normalised).ok()
}

/// Whether a changed file is under the source's path, or matches a watch path.
fn touched(source: &SourceSpec, watch: Option<&str>, files: &BTreeSet<String>) -> bool {
    let base = source
        .path
        .as_deref()
        .unwrap_or("")
        .trim_matches('/')
        .trim_start_matches("./");
    let base = if base == "." { "" } else { base };
    let mut globs = GlobSetBuilder::new();
    match watch {
        Some(list) => {
            for p in list.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let full = match p.strip_prefix('/') {
                    Some(abs) => abs.to_string(),
                    None => join(base, p),
                };
                let full = full.trim_end_matches('/');
                for pattern in [full.to_string(), format!("{full}/**")] {
                    if let Ok(g) = Glob::new(&pattern) {
                        globs.add(g);
                    }
                }
            }
        }
        None if base.is_empty() || source.ref_.is_some() && source.path.is_none() => {
            // the whole repository (or a `ref` source lending any of its files)
            return !files.is_empty();
        }
        None => {
            if let Ok(g) = Glob::new(&format!("{base}/**")) {
                globs.add(g);
            }
        }
    }
    let Ok(set) = globs.build() else {
        return true;
    };
    files
        .iter()
        .any(|f| set.is_match(f.trim_start_matches('/')))
}

/// `base/rel` with `.` and `..` resolved.
fn join(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::super::event::RefUpdate;
    use super::*;

    fn app(repo: &str, rev: &str, path: &str, watch: Option<&str>) -> Application {
        let mut a: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {"source": {"repoURL": repo, "targetRevision": rev, "path": path},
                     "destination": {"namespace": "default"}}
        }))
        .unwrap();
        if let Some(w) = watch {
            a.annotations_mut()
                .insert(WATCH_PATHS_ANNOTATION.into(), w.into());
        }
        a
    }

    fn push(r: &str, files: Option<&[&str]>) -> Push {
        Push {
            repo_urls: vec!["https://github.com/org/repo".into()],
            refs: vec![RefUpdate {
                name: r.into(),
                after: "abc".into(),
                deleted: false,
            }],
            default_branch: Some("main".into()),
            changed_files: files.map(|f| f.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn branches_head_tags_and_ranges_are_followed() {
        let p = push("refs/heads/main", None);
        for rev in ["main", "refs/heads/main", "HEAD", ""] {
            assert_eq!(
                concerns(&app("git@github.com:org/repo.git", rev, "k", None), &p),
                Ok(()),
                "{rev}"
            );
        }
        for rev in ["dev", "v1.0.0", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(
                concerns(&app("https://github.com/org/repo", rev, "k", None), &p).is_err(),
                "{rev}"
            );
        }
        let t = push("refs/tags/v1.4.2", None);
        for rev in ["v1.4.2", "1.4.*", ">=1.0.0 <2.0.0", "~1.4", "^1"] {
            assert_eq!(
                concerns(&app("https://github.com/org/repo", rev, "k", None), &t),
                Ok(()),
                "{rev}"
            );
        }
        for rev in ["2.*", "v1.4.1", "main", "HEAD"] {
            assert!(
                concerns(&app("https://github.com/org/repo", rev, "k", None), &t).is_err(),
                "{rev}"
            );
        }
    }

    #[test]
    fn the_changed_files_pick_the_applications_of_their_paths() {
        let p = push(
            "refs/heads/main",
            Some(&["apps/web/deploy.yaml", "README.md"]),
        );
        let ok = |path: &str, watch: Option<&str>| {
            concerns(&app("https://github.com/org/repo", "main", path, watch), &p)
        };
        assert_eq!(ok("apps/web", None), Ok(()));
        assert_eq!(ok("./apps/web/", None), Ok(()));
        assert_eq!(ok(".", None), Ok(()));
        assert!(ok("apps/api", None).is_err());
        assert!(
            ok("apps/we", None).is_err(),
            "a prefix of a directory is not the directory"
        );
        // watch paths: relative to the path, or to the root with a leading /
        assert_eq!(ok("apps/api", Some("../web")), Ok(()));
        assert_eq!(ok("apps/api", Some("/apps/*/deploy.yaml")), Ok(()));
        assert_eq!(ok("apps/api", Some("/docs; /README.md")), Ok(()));
        assert!(
            ok("apps/web", Some("/base")).is_err(),
            "watch paths replace the path"
        );
    }
}
