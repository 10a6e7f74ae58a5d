//! Image references as they are written in manifests: `name[:tag][@digest]`.
//!
//! The name is kept exactly as written (`nginx`, `ghcr.io/org/web`,
//! `127.0.0.1:5000/app`), so a write-back changes only the tag or digest and leaves
//! the registry spelling alone. Two names denote the same repository when they agree
//! after Docker's defaults are applied (`nginx` is `docker.io/library/nginx`).

use std::fmt;

/// What is wrong with an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty, or white space in it.
    #[error("{reference:?} is not an image reference (expected name[:tag][@digest])")]
    Malformed {
        /// What was given.
        reference: String,
    },
    /// A tag with characters a registry does not allow.
    #[error(
        "{reference:?} has an invalid tag {tag:?} (letters, digits, '_', '.', '-'; at most 128, not starting with '.' or '-')"
    )]
    BadTag {
        /// What was given.
        reference: String,
        /// The tag.
        tag: String,
    },
    /// A digest that is not `algorithm:hex`.
    #[error("{reference:?} has an invalid digest {digest:?} (expected sha256:<64 hex digits>)")]
    BadDigest {
        /// What was given.
        reference: String,
        /// The digest.
        digest: String,
    },
}

/// An image reference: a repository name as written, and optionally a tag and a
/// digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// The repository, as written (`ghcr.io/org/web`).
    pub name: String,
    /// The tag (`1.4.2`).
    pub tag: Option<String>,
    /// The digest (`sha256:…`).
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse `name[:tag][@digest]`: the digest is what follows the last `@`, the tag
    /// what follows the last `:` after the last `/` (so `host:5000/app` has no tag).
    pub fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        let malformed = || ReferenceError::Malformed {
            reference: s.to_string(),
        };
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed());
        }
        let (rest, digest) = match s.rsplit_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') || name.contains('@') {
            return Err(malformed());
        }
        let image = ImageRef {
            name: name.to_string(),
            tag,
            digest,
        };
        image.validate(s)?;
        Ok(image)
    }

    /// A reference with only a name.
    pub fn named(name: impl Into<String>) -> ImageRef {
        ImageRef {
            name: name.into(),
            tag: None,
            digest: None,
        }
    }

    fn validate(&self, original: &str) -> Result<(), ReferenceError> {
        if let Some(tag) = &self.tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::BadTag {
                reference: original.to_string(),
                tag: tag.clone(),
            });
        }
        if let Some(digest) = &self.digest
            && !valid_digest(digest)
        {
            return Err(ReferenceError::BadDigest {
                reference: original.to_string(),
                digest: digest.clone(),
            });
        }
        Ok(())
    }

    /// Whether `other` names the same repository (Docker's defaults applied to both).
    pub fn same_repository(&self, other: &str) -> bool {
        same_repository(&self.name, other)
    }

    /// This reference with another name.
    pub fn with_name(&self, name: &str) -> ImageRef {
        ImageRef {
            name: name.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// A tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A digest: `algorithm:hex`, where sha256 has 64 hex digits and sha512 128.
pub fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let expected = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == expected
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// A repository name with Docker's defaults made explicit: `nginx` →
/// `docker.io/library/nginx`, `org/app` → `docker.io/org/app`, `index.docker.io/…` →
/// `docker.io/…`; names on other registries stay as they are (lower-cased host).
pub fn normalized_repository(name: &str) -> String {
    let (first, rest) = match name.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    let is_host = rest.is_some() && (first.contains(['.', ':']) || first == "localhost");
    match (is_host, rest) {
        (true, Some(rest)) => {
            let host = first.to_ascii_lowercase();
            let host = if host == "index.docker.io" || host == "registry-1.docker.io" {
                "docker.io".to_string()
            } else {
                host
            };
            if host == "docker.io" && !rest.contains('/') {
                format!("docker.io/library/{rest}")
            } else {
                format!("{host}/{rest}")
            }
        }
        (_, Some(_)) => format!("docker.io/{name}"),
        (_, None) => format!("docker.io/library/{name}"),
    }
}

/// Whether two repository names are the same repository.
pub fn same_repository(a: &str, b: &str) -> bool {
    a == b || normalized_repository(a) == normalized_repository(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_flux_does_the_digest_then_the_tag() {
        let r = ImageRef::parse("index.repo.fake/updated:v1.0.1").unwrap();
        assert_eq!(r.name, "index.repo.fake/updated");
        assert_eq!(r.tag.as_deref(), Some("v1.0.1"));
        assert_eq!(r.digest, None);
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("image:v1.0.0@{d}")).unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("image", Some("v1.0.0"), Some(d.as_str()))
        );
        let r = ImageRef::parse("127.0.0.1:5000/team/app").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000/team/app", None)
        );
        let r = ImageRef::parse("127.0.0.1:5000/app:2").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/app:2");
    }

    #[test]
    fn bad_references_are_named() {
        for bad in [
            "",
            "a b",
            "app:",
            ":1.0",
            "app:-x",
            "app@sha256:zz",
            "app@md5:abc",
            "/x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
        let e = ImageRef::parse("web:1.0 beta").unwrap_err();
        assert!(e.to_string().contains("\"web:1.0 beta\""), "{e}");
    }

    #[test]
    fn docker_defaults_make_short_names_equal() {
        assert!(same_repository("nginx", "docker.io/library/nginx"));
        assert!(same_repository("nginx", "index.docker.io/library/nginx"));
        assert!(same_repository("org/app", "docker.io/org/app"));
        assert!(same_repository("GHCR.io/org/app", "ghcr.io/org/app"));
        assert!(!same_repository("ghcr.io/org/app", "ghcr.io/org/app2"));
        assert!(!same_repository("nginx", "ghcr.io/library/nginx"));
        assert!(same_repository("localhost/app", "localhost/app"));
        assert!(!same_repository("localhost/app", "docker.io/localhost/app"));
    }
}
