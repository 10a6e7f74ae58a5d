//! A local directory as a source (`capstan apply ./deploy`).
//!
//! The directory itself is the repository root for confinement: symlinks leaving it
//! are refused. Its revision is a digest of the file contents, so two renders of an
//! unchanged directory carry the same revision.

use std::path::{Path, PathBuf};

use capstan_core::Revision;
use sha2::{Digest, Sha256};

use super::{Checkout, ConfineError, confine};

/// Open a local directory as a checkout.
pub fn open(dir: &Path) -> Result<Checkout, ConfineError> {
    let root = dir.to_path_buf();
    if root.is_file() {
        return Err(ConfineError::NotADirectory {
            path: dir.display().to_string(),
        });
    }
    if !root.is_dir() {
        return Err(ConfineError::NotFound {
            path: dir.display().to_string(),
        });
    }
    confine::check_tree(&root, Path::new("."))?;
    let digest = digest_dir(&root).map_err(|source| ConfineError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let revision = Revision {
        id: format!("sha256:{digest}"),
        requested: dir.display().to_string(),
        author: String::new(),
        message: format!("local directory {}", dir.display()),
        time: String::new(),
    };
    Ok(Checkout::existing(root, PathBuf::from("."), revision))
}

fn digest_dir(root: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(root, root, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in files {
        h.update(rel.as_bytes());
        h.update([0]);
        // an unreadable file is an error, never hashed as if it were empty
        let path = root.join(&rel);
        let bytes = std::fs::read(&path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
        })?;
        h.update(bytes);
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name() == ".git" {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(
                path.strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_follows_the_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x: 1").unwrap();
        let one = open(dir.path()).unwrap().revision.id;
        assert_eq!(open(dir.path()).unwrap().revision.id, one);
        std::fs::write(dir.path().join("a.yaml"), "x: 2").unwrap();
        assert_ne!(open(dir.path()).unwrap().revision.id, one);
        assert!(one.starts_with("sha256:"));
    }
}
