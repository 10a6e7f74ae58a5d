//! Versions as Flux reads and orders them.
//!
//! Two readers, one ordering:
//! - [`Version::from_tag`]: a tag counts as a version only if it is strict SemVer 2.0
//!   (`1.2.3`, `1.2.3-rc.1+build.5`), with at most one leading `v` (fluxcd/pkg's
//!   `version.ParseVersion`). `1.2`, `1.0.0.1`, `01.2.3`, `V1.2.3` are not versions.
//! - [`Version::from_range_parts`]: the version written inside a range, which may be
//!   partial and may have leading zeros (`>= 01.2` is `>= 1.2.0`), as Masterminds'
//!   lenient `NewVersion` reads it.
//!
//! Precedence is SemVer's: major, minor, patch, then a prerelease sorts before the
//! release, prerelease identifiers compare pairwise (numbers numerically and before
//! words, words byte-wise, a shorter list first). Build metadata is dropped: it has no
//! precedence. One Masterminds detail is kept: a numeric identifier too large for a
//! `u64` compares as a word.

use std::cmp::Ordering;

/// A version without its build metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Version {
    pub(super) major: u64,
    pub(super) minor: u64,
    pub(super) patch: u64,
    /// The prerelease without its `-`; empty for a release.
    pub(super) pre: String,
}

impl Version {
    /// The tag as a version, or `None` when it is not strict SemVer (one leading `v`
    /// allowed). Never fails loudly: Flux skips such tags.
    pub(super) fn from_tag(tag: &str) -> Option<Version> {
        let text = tag.strip_prefix('v').unwrap_or(tag);
        let (text, build) = match text.split_once('+') {
            Some((text, build)) => (text, Some(build)),
            None => (text, None),
        };
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut numbers = core.split('.');
        let (Some(major), Some(minor), Some(patch), None) = (
            numbers.next(),
            numbers.next(),
            numbers.next(),
            numbers.next(),
        ) else {
            return None;
        };
        let strict = |part: &str| {
            if part.len() > 1 && part.starts_with('0') {
                None
            } else {
                parse_number(part)
            }
        };
        let pre_is_valid = pre
            .is_none_or(|pre| identifiers_are_valid(pre) && !pre.split('.').any(has_leading_zero));
        if !pre_is_valid || !build.is_none_or(identifiers_are_valid) {
            return None;
        }
        Some(Version {
            major: strict(major)?,
            minor: strict(minor)?,
            patch: strict(patch)?,
            pre: pre.unwrap_or_default().to_owned(),
        })
    }

    /// The version a range names, from parts the range grammar has already checked for
    /// shape (`pre` is a dot-separated list of `[0-9A-Za-z-]+`). Leading zeros are
    /// allowed in the numbers, not in numeric prerelease identifiers.
    pub(super) fn from_range_parts(
        major: &str,
        minor: &str,
        patch: &str,
        pre: &str,
    ) -> Result<Version, &'static str> {
        const NOT_A_NUMBER: &str =
            "each of major, minor and patch must be a number or a wildcard (x, X or *)";
        let number = |part: &str| parse_number(part).ok_or(NOT_A_NUMBER);
        if pre.split('.').any(has_leading_zero) {
            return Err("a numeric prerelease identifier has a leading zero");
        }
        Ok(Version {
            major: number(major)?,
            minor: number(minor)?,
            patch: number(patch)?,
            pre: pre.to_owned(),
        })
    }

    /// Whether this is a prerelease.
    pub(super) fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prereleases(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Two prereleases (or a prerelease and the empty string), identifier by identifier; a
/// missing identifier sorts first.
pub(super) fn compare_prereleases(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (l, r) => {
                let order = compare_identifiers(l.unwrap_or(""), r.unwrap_or(""));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

fn compare_identifiers(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    match (parse_number(a), parse_number(b)) {
        // Equal numbers written differently cannot reach here (leading zeros are
        // refused), but the byte order keeps the ordering total regardless.
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// A non-empty run of ASCII digits that fits a `u64` (no sign, unlike `str::parse`).
fn parse_number(part: &str) -> Option<u64> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

fn has_leading_zero(identifier: &str) -> bool {
    identifier.len() > 1
        && identifier.starts_with('0')
        && identifier.bytes().all(|b| b.is_ascii_digit())
}

/// A dot-separated list of non-empty `[0-9A-Za-z-]+` identifiers.
fn identifiers_are_valid(list: &str) -> bool {
    list.split('.').all(|identifier| {
        !identifier.is_empty()
            && identifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str) -> Version {
        Version::from_tag(text).unwrap_or_else(|| panic!("{text} should be a version"))
    }

    #[test]
    fn a_tag_is_a_version_only_when_it_is_strict_semver_with_an_optional_v() {
        for good in [
            "1.2.3",
            "v1.2.3",
            "0.0.0",
            "1.2.3-rc.1",
            "1.2.3-0a",
            "1.2.3+build.007",
            "v1.2.3-alpha-1.2+x-y",
            "18446744073709551615.0.0",
        ] {
            assert!(Version::from_tag(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "v",
            "1",
            "1.2",
            "1.0.0.1",
            "1.0.0p",
            "b1.2.3",
            "V1.2.3",
            "vv1.2.3",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.3-01",
            "1.2.3-é",
            "+1.2.3",
            "1.2.+3",
            " 1.2.3",
            "1.2.3 ",
            "18446744073709551616.0.0",
            "1.2.3-a+b+c",
        ] {
            assert!(Version::from_tag(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn build_metadata_is_dropped_and_does_not_order() {
        assert_eq!(tag("1.2.3+a").cmp(&tag("1.2.3+b")), Ordering::Equal);
        assert_eq!(tag("v1.2.3"), tag("1.2.3"));
    }

    #[test]
    fn precedence_follows_semver() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(tag(pair[0]) < tag(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn a_numeric_identifier_beyond_u64_compares_as_a_word() {
        // Masterminds parses identifiers as uint64; one that overflows is a word, and
        // words sort after numbers and byte-wise among themselves.
        let huge = tag("1.0.0-100000000000000000000");
        assert!(tag("1.0.0-5") < huge);
        assert!(huge < tag("1.0.0-99999999999999999999"));
    }

    #[test]
    fn a_range_version_accepts_leading_zeros_but_not_in_numeric_prereleases() {
        let version = Version::from_range_parts("01", "002", "3", "rc.0a").map(|v| v.minor);
        assert_eq!(version, Ok(2));
        assert!(Version::from_range_parts("1", "0", "0", "rc.01").is_err());
        assert!(Version::from_range_parts("1x", "0", "0", "").is_err());
        assert!(Version::from_range_parts("99999999999999999999", "0", "0", "").is_err());
    }
}
