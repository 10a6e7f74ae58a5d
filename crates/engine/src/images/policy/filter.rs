//! `filterTags`: keep the tags a pattern matches, and optionally rank a part of each.
//!
//! As in Flux, the pattern is found anywhere in the tag (anchor it with `^…$` to match the
//! whole tag), and the empty pattern keeps every tag. `extract` is a template over the
//! pattern's groups, expanded as Go's `Regexp.ExpandString` does:
//! - `$1`, `${1}`: group 1; `$0`: the whole match;
//! - `$name`, `${name}`: the group `(?P<name>…)`; the name is the longest run of letters,
//!   digits and `_`, so `$1x` is the group named `1x`, not group 1 followed by `x`;
//! - `$$`: a literal `$`; a `$` not followed by a name (or `${` without its `}`) stays
//!   as it is;
//! - a group that does not exist or did not take part in the match gives the empty
//!   string, and so does a number with a leading zero (`$01`), which Go reads as a name.
//!
//! Unlike `regex::Captures::expand`, `$01` is not group 1 and `${a b}` is left as
//! written, since those are Go's rules.

use std::borrow::Cow;

use regex::{Captures, Regex, RegexBuilder};

use super::PolicyError;

/// A compiled `filterTags` rule: a pattern and an optional `extract` template.
#[derive(Debug, Clone)]
pub struct TagFilter {
    pattern: String,
    extract: String,
    regex: Regex,
}

/// A tag that passed a [`TagFilter`]: what the policy ranks, and the tag it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredTag<'t> {
    /// The value the policy ranks: the tag itself, or what `extract` made of it.
    pub value: Cow<'t, str>,
    /// The tag as the registry lists it; this is what a policy returns.
    pub tag: &'t str,
}

impl<'t> FilteredTag<'t> {
    /// A tag ranked as it is.
    pub fn unchanged(tag: &'t str) -> Self {
        FilteredTag {
            value: Cow::Borrowed(tag),
            tag,
        }
    }
}

impl TagFilter {
    /// Compile `pattern` (Go RE2 syntax, which Rust's `regex` crate shares) with the
    /// `extract` template (empty: rank the tags themselves).
    ///
    /// The dialects differ at the edges: `\Q…\E`, `\C`, group names that start with a
    /// digit and a `{` that starts no repetition (a literal in Go) are refused here;
    /// `\d`, `\w`, `\s` and `\b` are Unicode-aware instead of ASCII-only (registry tags
    /// are ASCII, so what they match does not change); octal escapes such as `\012` are
    /// read as in Go.
    pub fn new(pattern: &str, extract: &str) -> Result<TagFilter, PolicyError> {
        let regex = RegexBuilder::new(pattern)
            .octal(true)
            .build()
            .map_err(|source| PolicyError::InvalidPattern {
                pattern: pattern.to_owned(),
                source,
            })?;
        Ok(TagFilter {
            pattern: pattern.to_owned(),
            extract: extract.to_owned(),
            regex,
        })
    }

    /// The pattern, as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The extract template, as written (empty when the tags are ranked as they are).
    pub fn extract(&self) -> &str {
        &self.extract
    }

    /// The tags the pattern matches, in their order, each with the value to rank.
    /// Several tags may give the same value; [`TagPolicy`](super::TagPolicy) then
    /// prefers the byte-wise smallest tag.
    pub fn apply<'t, S: AsRef<str>>(&self, tags: &'t [S]) -> Vec<FilteredTag<'t>> {
        tags.iter()
            .map(AsRef::as_ref)
            .filter_map(|tag| {
                if self.extract.is_empty() {
                    return self
                        .regex
                        .is_match(tag)
                        .then(|| FilteredTag::unchanged(tag));
                }
                let captures = self.regex.captures(tag)?;
                Some(FilteredTag {
                    value: Cow::Owned(expand(&self.extract, &captures)),
                    tag,
                })
            })
            .collect()
    }
}

/// `template` with its group references replaced by what the groups matched.
fn expand(template: &str, captures: &Captures<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match group_reference(rest) {
            Some((name, after)) => {
                out.push_str(group_text(captures, name));
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// The group name at the start of `text` (after a `$`), and what follows the reference.
fn group_reference(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    // Go's rule is Unicode letters and digits; group names themselves are ASCII, so a
    // non-ASCII name never names a group either way.
    let length = body
        .find(|c: char| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .unwrap_or(body.len());
    if length == 0 {
        return None;
    }
    let (name, after) = body.split_at(length);
    if braced {
        Some((name, after.strip_prefix('}')?))
    } else {
        Some((name, after))
    }
}

/// What the named or numbered group matched; empty when it did not take part.
fn group_text<'h>(captures: &Captures<'h>, name: &str) -> &'h str {
    let group = if name.bytes().all(|b| b.is_ascii_digit()) {
        if name.len() > 1 && name.starts_with('0') {
            None
        } else {
            name.parse().ok().and_then(|index| captures.get(index))
        }
    } else {
        captures.name(name)
    };
    group.map_or("", |m| m.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pattern: &str, extract: &str, tags: &[&str]) -> Vec<String> {
        let filter = TagFilter::new(pattern, extract).expect("valid pattern");
        filter
            .apply(tags)
            .into_iter()
            .map(|t| t.value.into_owned())
            .collect()
    }

    fn expanded(pattern: &str, template: &str, tag: &str) -> String {
        let regex = Regex::new(pattern).expect("valid pattern");
        let captures = regex.captures(tag).expect("the pattern matches");
        expand(template, &captures)
    }

    #[test]
    fn the_pattern_is_found_anywhere_and_the_empty_pattern_keeps_everything() {
        assert_eq!(values("", "", &["a", ""]), ["a", ""]);
        assert_eq!(
            values("rc", "", &["1.0-rc.1", "rc", "1.0"]),
            ["1.0-rc.1", "rc"]
        );
        assert_eq!(values("^ver", "", &["ver1", "rel-ver2"]), ["ver1"]);
    }

    #[test]
    fn extract_expands_numbered_and_named_groups() {
        let tags = ["main-abc123-1700000000", "pr-7"];
        let pattern = r"^main-(?P<sha>[a-f0-9]+)-(?P<ts>\d+)$";
        assert_eq!(values(pattern, "$ts", &tags), ["1700000000"]);
        assert_eq!(values(pattern, "${ts}.$sha", &tags), ["1700000000.abc123"]);
        assert_eq!(
            values(pattern, "$2-$1-$0", &tags),
            ["1700000000-abc123-main-abc123-1700000000"]
        );
    }

    #[test]
    fn a_name_is_the_longest_run_of_word_characters() {
        assert_eq!(expanded(r"(a)(?P<b>b)", "$1x", "ab"), "");
        assert_eq!(expanded(r"(a)(?P<b>b)", "${1}x", "ab"), "ax");
        assert_eq!(expanded(r"(a)(?P<b>b)", "$b-$b", "ab"), "b-b");
        assert_eq!(expanded(r"(a)(?P<b>b)", "$b_", "ab"), "");
    }

    #[test]
    fn dollar_signs_that_are_not_references_stay() {
        assert_eq!(expanded(r"(a)", "$$1", "a"), "$1");
        assert_eq!(expanded(r"(a)", "cost: $", "a"), "cost: $");
        assert_eq!(expanded(r"(a)", "$-$1", "a"), "$-a");
        assert_eq!(expanded(r"(a)", "${1", "a"), "${1");
        assert_eq!(expanded(r"(a)", "${1 }", "a"), "${1 }");
        assert_eq!(expanded(r"(a)", "${}", "a"), "${}");
    }

    #[test]
    fn missing_groups_and_leading_zeros_give_nothing() {
        assert_eq!(expanded(r"(a)|(b)", "[$2]", "a"), "[]");
        assert_eq!(
            expanded(r"(a)", "[$9][$nope][$01][$99999999999999999999]", "a"),
            "[][][][]"
        );
        assert_eq!(expanded(r"(a)", "[$0]", "a"), "[a]");
    }

    #[test]
    fn an_invalid_pattern_names_itself() {
        for bad in ["[=", "^test-(.*", "x{2,1}", "(?P<n>a)(?P<n>b)", "\\"] {
            let error = TagFilter::new(bad, "").expect_err(bad).to_string();
            assert!(
                error.contains("invalid regular expression pattern") && error.contains(bad),
                "{error}"
            );
        }
    }

    #[test]
    fn the_dialect_gaps_are_refused_rather_than_misread() {
        // Go accepts these (quoting, a literal `{`, a digit-led group name); registry
        // tags cannot contain `{`, so only the first and last could ever matter.
        for gap in [r"\Qa.b\E", "a{", "(?P<1x>a)"] {
            assert!(TagFilter::new(gap, "").is_err(), "{gap}");
        }
    }

    #[test]
    fn octal_escapes_read_as_in_go() {
        assert_eq!(values(r"^\101$", "", &["A", "B"]), ["A"]);
    }

    #[test]
    fn odd_tags_and_templates_never_panic() {
        let long = "9".repeat(10_000);
        let tags = ["", "é", "\u{1F600}-1", "a\u{0}b", long.as_str()];
        for template in ["", "$", "${", "$é", "${é}", "$1é", "\u{1F600}$0", "$$$"] {
            let _ = values(r"(.)?(?P<n>\d)?", template, &tags);
        }
    }
}
