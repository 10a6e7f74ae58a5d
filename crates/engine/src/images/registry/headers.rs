//! The two response headers a registry client reads beyond the status: `Link` (RFC 8288)
//! for the next page of a tag list, and `WWW-Authenticate` (RFC 9110 §11.6.1) for the
//! scheme and realm of a challenge. Pure parsing, no I/O.

use std::collections::HashMap;

/// The target of the first link with relation `next` among `Link` header values, as
/// written (relative or absolute; the caller resolves it against the request URL).
///
/// Each value may hold several links separated by commas (`<a>; rel="prev", <b>;
/// rel="next"`); `rel` may be quoted or not and may list several relations
/// (`rel="next last"`). A link that does not parse is skipped.
pub(super) fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    values
        .into_iter()
        .flat_map(links)
        .find(|(_, params)| {
            params.get("rel").is_some_and(|rel| {
                rel.split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            })
        })
        .map(|(target, _)| target)
}

/// The links of one `Link` header value: each target and its parameters (names in
/// lower case). Parsing stops at the first malformed link.
fn links(value: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        let Some(after) = rest.strip_prefix('<') else {
            return out;
        };
        let Some((target, after)) = after.split_once('>') else {
            return out;
        };
        let (params, after) = parameters(after, ';', ',');
        out.push((target.trim().to_string(), params));
        rest = after;
    }
}

/// The scheme of a `WWW-Authenticate` challenge (lower case) and its parameters (names
/// in lower case), e.g. `bearer` with `realm`, `service`, `scope`. Only the first
/// challenge of the value is read.
pub(super) fn challenge(value: &str) -> Option<(String, HashMap<String, String>)> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.is_empty() {
        return None;
    }
    let (params, _) = parameters(rest, ',', '\0');
    Some((scheme.to_ascii_lowercase(), params))
}

/// `name=value` or `name="quoted value"` parameters, each introduced by (or, for a
/// challenge, separated by) `sep`, up to `end` outside quotes or the end of `s`.
/// Returns the parameters and what follows `end`.
fn parameters(s: &str, sep: char, end: char) -> (HashMap<String, String>, &str) {
    let mut params = HashMap::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|(_, c)| *c == sep || c.is_ascii_whitespace())
        {
            chars.next();
        }
        match chars.peek() {
            None => return (params, ""),
            Some((i, c)) if *c == end => return (params, &s[i + c.len_utf8()..]),
            Some(_) => {}
        }
        let mut name = String::new();
        while let Some((_, c)) = chars.peek().copied() {
            if c == '=' || c == sep || c == end {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|(_, c)| *c == '=') {
            chars.next();
            while chars.peek().is_some_and(|(_, c)| c.is_ascii_whitespace()) {
                chars.next();
            }
            if chars.peek().is_some_and(|(_, c)| *c == '"') {
                chars.next();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some((_, c)) = chars.peek().copied() {
                    if c == sep || c == end {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() {
            params
                .entry(name)
                .or_insert_with(|| value.trim().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_of_docker_hub_and_ghcr_is_relative() {
        let hub = r#"</v2/library/nginx/tags/list?last=1.25&n=100>; rel="next""#;
        assert_eq!(
            next_link([hub]).as_deref(),
            Some("/v2/library/nginx/tags/list?last=1.25&n=100")
        );
        let ghcr = r#"</v2/org/app/tags/list?last=v2.0.0&n=0>; rel="next""#;
        assert_eq!(
            next_link([ghcr]).as_deref(),
            Some("/v2/org/app/tags/list?last=v2.0.0&n=0")
        );
    }

    #[test]
    fn absolute_links_unquoted_rel_and_several_relations_are_read() {
        let abs = "<https://r.example/v2/a/tags/list?n=2&last=b>; rel=next";
        assert_eq!(
            next_link([abs]).as_deref(),
            Some("https://r.example/v2/a/tags/list?n=2&last=b")
        );
        let many = r#"</x?last=a,b>; rel="prev"; title="a, b", </y>; rel="last next""#;
        assert_eq!(next_link([many]).as_deref(), Some("/y"));
        let split = [r#"</p>; rel="prev""#, r#"</n>; REL="Next""#];
        assert_eq!(next_link(split).as_deref(), Some("/n"));
    }

    #[test]
    fn no_next_link_means_the_last_page() {
        assert_eq!(next_link([]), None);
        assert_eq!(next_link([r#"</p>; rel="prev""#]), None);
        assert_eq!(next_link(["</q>"]), None);
        assert_eq!(next_link(["garbage"]), None);
        assert_eq!(next_link([r#"<unterminated; rel="next""#]), None);
        assert_eq!(next_link([r#"</x>; rel="nextpage""#]), None);
    }

    #[test]
    fn challenges_give_the_scheme_and_realm() {
        let (scheme, p) = challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
        let (scheme, p) = challenge(r#"Basic realm="capstan-test""#).unwrap();
        assert_eq!(
            (scheme.as_str(), p["realm"].as_str()),
            ("basic", "capstan-test")
        );
        assert_eq!(challenge("  "), None);
        assert!(challenge("Bearer").unwrap().1.is_empty());
    }
}
