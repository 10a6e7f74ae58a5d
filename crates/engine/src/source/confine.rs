//! Keeping every path read from a repository inside it.
//!
//! A repository is untrusted input: a path given by an Application (`spec.source.path`,
//! Helm values files) or a symlink committed to the tree may point outside it (to
//! `/etc`, to another tenant's checkout). Such paths are refused with an error naming
//! the path, never followed.

use std::path::{Component, Path, PathBuf};

/// A path that leaves the repository.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A relative path with `..` (or an absolute path) that escapes the root.
    #[error("path {path:?} escapes the repository")]
    Escapes {
        /// The path as given.
        path: String,
    },
    /// A symlink whose target lies outside the repository.
    #[error("symlink {link:?} points to {target:?}, outside the repository")]
    SymlinkEscapes {
        /// The link, relative to the repository root.
        link: String,
        /// Its target as written.
        target: String,
    },
    /// The path does not exist in the repository.
    #[error("path {path:?} does not exist in the repository")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// A local source that is a file: sources are directories.
    #[error(
        "{path:?} is a file; give the directory it is in (every YAML/JSON file there is rendered)"
    )]
    NotADirectory {
        /// The path as given.
        path: String,
    },
    /// Reading the tree failed.
    #[error("reading {path:?}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Normalize `rel` lexically against `root`; `..` that climbs above `root`, or an
/// absolute path, is an error.
pub fn join(root: &Path, rel: &Path) -> Result<PathBuf, ConfineError> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(ConfineError::Escapes {
                        path: rel.display().to_string(),
                    });
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ConfineError::Escapes {
                    path: rel.display().to_string(),
                });
            }
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    Ok(out)
}

/// Check that `path` (relative to `root`) exists inside the repository and that no
/// symlink under it — or on the way to it — points outside the repository.
pub fn check_tree(root: &Path, rel: &Path) -> Result<PathBuf, ConfineError> {
    let full = join(root, rel)?;
    let root_real = root.canonicalize().map_err(|source| ConfineError::Io {
        path: root.display().to_string(),
        source,
    })?;
    // every ancestor between root and full must not be a symlink leading outside
    let mut cur = root.to_path_buf();
    for c in full
        .strip_prefix(root)
        .unwrap_or(Path::new(""))
        .components()
    {
        cur.push(c);
        check_link(root, &root_real, &cur)?;
    }
    if !full.exists() {
        return Err(ConfineError::NotFound {
            path: rel.display().to_string(),
        });
    }
    if full.is_dir() {
        walk(root, &root_real, &full)?;
    }
    Ok(full)
}

fn walk(root: &Path, root_real: &Path, dir: &Path) -> Result<(), ConfineError> {
    let io = |source| ConfineError::Io {
        path: relative(root, dir),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let ty = entry.file_type().map_err(io)?;
        if ty.is_symlink() {
            check_link(root, root_real, &path)?;
        } else if ty.is_dir() && entry.file_name() != ".git" {
            walk(root, root_real, &path)?;
        }
    }
    Ok(())
}

fn check_link(root: &Path, root_real: &Path, path: &Path) -> Result<(), ConfineError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_symlink() {
        return Ok(());
    }
    let target = std::fs::read_link(path).map_err(|source| ConfineError::Io {
        path: relative(root, path),
        source,
    })?;
    let escapes = || ConfineError::SymlinkEscapes {
        link: relative(root, path),
        target: target.display().to_string(),
    };
    if target.is_absolute() {
        return Err(escapes());
    }
    // Resolve the link's directory against the root, then the target lexically.
    let parent = path.parent().unwrap_or(root);
    let parent_rel = parent.strip_prefix(root).unwrap_or(Path::new(""));
    if join(root, &parent_rel.join(&target)).is_err() {
        return Err(escapes());
    }
    // And for links through links: the final resolution must stay inside too.
    if let Ok(real) = path.canonicalize()
        && !real.starts_with(root_real)
    {
        return Err(escapes());
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_that_climbs_out_is_refused() {
        let root = Path::new("/repo");
        assert_eq!(
            join(root, Path::new("a/../b")).unwrap(),
            Path::new("/repo/b")
        );
        assert!(matches!(
            join(root, Path::new("../etc")),
            Err(ConfineError::Escapes { .. })
        ));
        assert!(matches!(
            join(root, Path::new("a/../../x")),
            Err(ConfineError::Escapes { .. })
        ));
        assert!(matches!(
            join(root, Path::new("/etc/passwd")),
            Err(ConfineError::Escapes { .. })
        ));
    }

    #[test]
    fn symlinks_inside_are_fine_and_outside_are_errors_naming_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("deploy/base")).unwrap();
        std::fs::write(root.join("deploy/base/cm.yaml"), "x").unwrap();
        std::os::unix::fs::symlink("base/cm.yaml", root.join("deploy/inside.yaml")).unwrap();
        check_tree(root, Path::new("deploy")).unwrap();

        std::os::unix::fs::symlink("../../../etc/passwd", root.join("deploy/base/evil.yaml"))
            .unwrap();
        let err = check_tree(root, Path::new("deploy")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "symlink \"deploy/base/evil.yaml\" points to \"../../../etc/passwd\", outside the repository"
        );
        std::fs::remove_file(root.join("deploy/base/evil.yaml")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("deploy/abs")).unwrap();
        assert!(matches!(
            check_tree(root, Path::new("deploy")),
            Err(ConfineError::SymlinkEscapes { .. })
        ));
        assert!(matches!(
            check_tree(root, Path::new("missing")),
            Err(ConfineError::NotFound { .. })
        ));
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("deploy")).unwrap();
        let err = check_tree(dir.path(), Path::new("deploy")).unwrap_err();
        assert!(matches!(err, ConfineError::SymlinkEscapes { .. }), "{err}");
    }
}
