//! Where an image's API is: `host[:port]/repository` checked (characters a host and
//! a distribution repository may have), Docker Hub's short names expanded, the scheme
//! chosen (plain HTTP for loopback registries only), and next-page links kept on the
//! registry's origin.

use oci_client::Reference;
use reqwest::Url;

use super::{RegistryError, excerpt};
use crate::images::reference::{ImageRef, normalized_repository};

/// An image resolved to where its API is.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The image as given, for messages.
    pub(super) image: String,
    /// The registry host as a docker config keys it (`docker.io`).
    pub(super) registry: String,
    /// The repository on it (`library/nginx`).
    pub(super) repository: String,
    /// `scheme://api-host/` (`https://index.docker.io/`).
    pub(super) base: Url,
}

impl Target {
    /// Resolve `image`; with `insecure`, refuse any registry that is not loopback.
    pub(super) fn parse(image: &str, insecure: bool) -> Result<Target, RegistryError> {
        let invalid = |reason| RegistryError::InvalidImage {
            image: image.to_string(),
            reason,
        };
        let parsed = ImageRef::parse(image)
            .map_err(|_| invalid("expected host[:port]/repository or a Docker Hub name"))?;
        if parsed.tag.is_some() || parsed.digest.is_some() {
            return Err(invalid("expected a repository without a tag or digest"));
        }
        let normalized = normalized_repository(&parsed.name);
        let (registry, repository) = normalized
            .split_once('/')
            .ok_or_else(|| invalid("expected host[:port]/repository"))?;
        if !valid_host(registry) {
            return Err(invalid(
                "the registry host has characters a host cannot have",
            ));
        }
        if !valid_repository(repository) {
            return Err(invalid(
                "repository path components are lower-case letters and digits separated by '.', '_' or '-'",
            ));
        }
        let reference = oci_reference(registry, repository);
        let scheme = if insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", reference.resolve_registry()))
            .map_err(|_| invalid("the registry host is not a valid URL host"))?;
        if insecure && !is_loopback_url(&base) {
            return Err(RegistryError::InsecureNotLoopback {
                image: image.to_string(),
                host: registry.to_string(),
            });
        }
        Ok(Target {
            image: image.to_string(),
            registry: registry.to_string(),
            repository: repository.to_string(),
            base,
        })
    }

    /// The API host (`index.docker.io`, `127.0.0.1:5000`), for messages.
    pub(super) fn api_host(&self) -> String {
        host_port(&self.base)
    }

    pub(super) fn url(&self, path_and_query: &str) -> Result<Url, RegistryError> {
        self.base
            .join(path_and_query)
            .map_err(|_| RegistryError::InvalidImage {
                image: self.image.clone(),
                reason: "the repository does not make a valid URL",
            })
    }

    /// The URL a `Link` target points to from `current`: same origin only, so
    /// credentials never go to another host.
    pub(super) fn follow(&self, current: &Url, link: &str) -> Result<Url, RegistryError> {
        let bad = |reason| RegistryError::BadNextLink {
            image: self.image.clone(),
            link: excerpt(link.as_bytes()),
            reason,
        };
        let next = current.join(link).map_err(|_| bad("not a URL"))?;
        if next.origin() != self.base.origin() {
            return Err(bad("it points to another origin than the registry"));
        }
        Ok(next)
    }
}

/// Whether `url`'s host is this machine: `localhost`, `127.0.0.0/8` or `[::1]`, read
/// by a URL parser (so `http://a.example?@127.0.0.1/` is `a.example`).
pub(super) fn is_loopback_url(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` of `url`, for messages.
pub(super) fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The oci-client reference of a repository (the tag is not used: tokens are scoped
/// to the repository).
pub(super) fn oci_reference(registry: &str, repository: &str) -> Reference {
    Reference::with_tag(
        registry.to_string(),
        repository.to_string(),
        "latest".to_string(),
    )
}

/// A host as an image reference may name it: a DNS name or IPv4 address, or a
/// bracketed IPv6 address, with an optional port.
fn valid_host(host: &str) -> bool {
    let (name_ok, port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => (
                addr.parse::<std::net::Ipv6Addr>().is_ok(),
                match rest {
                    "" => None,
                    _ => Some(rest.strip_prefix(':').unwrap_or("not a port")),
                },
            ),
            None => return false,
        },
        None => {
            let (name, port) = match host.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            };
            let labels_ok = name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            (labels_ok, port)
        }
    };
    name_ok
        && port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
}

/// A repository path as the distribution spec allows: components of lower-case
/// letters and digits, separated inside by `.`, `_`, `__` or dashes.
fn valid_repository(repository: &str) -> bool {
    repository.len() <= 255
        && repository.split('/').all(|component| {
            let bytes = component.as_bytes();
            bytes
                .first()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && !component.contains("..")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::registry::registry_host;

    #[test]
    fn docker_hub_short_names_resolve_to_its_api_host() {
        let t = Target::parse("nginx", false).unwrap();
        assert_eq!(t.registry, "docker.io");
        assert_eq!(t.repository, "library/nginx");
        assert_eq!(t.base.as_str(), "https://index.docker.io/");
        let t = Target::parse("ghcr.io/Org/app", false);
        assert!(t.is_err(), "upper case is not a repository");
        let t = Target::parse("ghcr.io/org/app", false).unwrap();
        assert_eq!(
            t.url("v2/org/app/tags/list?n=5").unwrap().as_str(),
            "https://ghcr.io/v2/org/app/tags/list?n=5"
        );
        assert_eq!(
            registry_host("index.docker.io/org/app").unwrap(),
            "docker.io"
        );
        assert_eq!(
            registry_host("127.0.0.1:5000/app").unwrap(),
            "127.0.0.1:5000"
        );
    }

    #[test]
    fn plain_http_is_for_loopback_registries_only() {
        for ok in [
            "127.0.0.1:5000/app",
            "127.1.2.3/team/app",
            "localhost:5000/app",
            "[::1]:5000/app",
        ] {
            let t = Target::parse(ok, true).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(t.base.scheme(), "http", "{ok}");
        }
        for refused in [
            "registry.example.com/app",
            "10.0.0.1:5000/app",
            "127.0.0.1.nip.io/app",
            "localhost.example.com/app",
            "nginx",
        ] {
            let e = Target::parse(refused, true).unwrap_err();
            assert!(
                matches!(e, RegistryError::InsecureNotLoopback { .. }),
                "{refused}: {e}"
            );
            assert!(e.to_string().contains(refused), "{e}");
        }
    }

    #[test]
    fn images_with_tags_or_strange_characters_are_refused() {
        for bad in [
            "app:1.0",
            "app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "host:5000/a/../b",
            "host:5000/a?n=1",
            "host:5000/a%2f",
            "ho st/app",
            "host:99999/app",
            "-host.io/app",
            "host:5000/",
            "",
        ] {
            let e = Target::parse(bad, false).unwrap_err();
            assert!(
                matches!(e, RegistryError::InvalidImage { .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn token_services_are_loopback_by_their_parsed_host() {
        for yes in [
            "http://127.0.0.1:4000/token",
            "http://localhost/token",
            "http://[::1]:4000/token",
            "http://127.9.9.9/t?service=x",
        ] {
            assert!(is_loopback_url(&Url::parse(yes).unwrap()), "{yes}");
        }
        for no in [
            "http://auth.example.com/token",
            "http://a.example?@127.0.0.1/token",
            "http://127.0.0.1.example.com/token",
            "http://10.0.0.1/token",
        ] {
            assert!(!is_loopback_url(&Url::parse(no).unwrap()), "{no}");
        }
    }

    #[test]
    fn next_links_stay_on_the_registry() {
        let t = Target::parse("127.0.0.1:5000/app", true).unwrap();
        let current = t.url("v2/app/tags/list?n=2").unwrap();
        let next = t.follow(&current, "/v2/app/tags/list?n=2&last=b").unwrap();
        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:5000/v2/app/tags/list?n=2&last=b"
        );
        let abs = t
            .follow(&current, "http://127.0.0.1:5000/v2/app/tags/list?last=c")
            .unwrap();
        assert_eq!(abs.query(), Some("last=c"));
        let relative = t.follow(&current, "list?last=d").unwrap();
        assert_eq!(relative.path(), "/v2/app/tags/list");
        for foreign in [
            "http://evil.example/v2/app/tags/list",
            "https://127.0.0.1:5000/v2/app/tags/list",
            "http://127.0.0.1:5001/v2/app/tags/list",
        ] {
            let e = t.follow(&current, foreign).unwrap_err();
            assert!(
                matches!(e, RegistryError::BadNextLink { .. }),
                "{foreign}: {e}"
            );
        }
    }
}
