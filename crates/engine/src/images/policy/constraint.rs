//! Semver ranges with the semantics of Masterminds/semver v3 (v3.4), which Flux uses.
//!
//! Masterminds' rules differ from Cargo's (the `semver` crate), so they are written out
//! here. A range is:
//!
//! ```text
//! range      = group ("||" group)*                    any group may match
//! group      = comparison ((space | ",") comparison)*  every comparison must match
//! comparison = op? version                             spaces allowed after op
//! op         = "=" | "!=" | ">" | "<" | ">=" | "=>" | "<=" | "=<" | "~" | "~>" | "^"
//! version    = "v"? part ("." part ("." part)?)? ("-" prerelease)? ("+" build)?
//! part       = a number, or a wildcard x, X or *
//! ```
//!
//! and `a - b` (spaces required around the hyphen) is rewritten to `>= a, <= b` first.
//!
//! - A missing or wildcard part makes the comparison a *wildcard* at that place:
//!   `1.2` and `1.2.x` are the same, and parts after a wildcard are ignored.
//! - No operator, or `=`: exact when the version is complete, else like `~`.
//! - `~1.2.3` is `>=1.2.3 <1.3.0`; `~1.2` and `~1` keep the written parts fixed
//!   (`~1` = `>=1.0.0 <2.0.0`); `~0.0.0` and `~*` match everything.
//! - `^1.2.3` is `>=1.2.3 <2.0.0`; with major 0 the minor is fixed (`^0.2.3` =
//!   `>=0.2.3 <0.3.0`), and with major and minor 0 the patch is (`^0.0.3` = `=0.0.3`);
//!   `^0`, `^0.0`, `^1.x` fix what was written. A bare `^*` only matches `0.0.0`, as in
//!   Masterminds.
//! - `>1.2` means above every 1.2.x (`>=1.3.0`), `<=1.2` includes every 1.2.x, `<1.2` and
//!   `>=1.2` compare with 1.2.0; `!=1.2` excludes every 1.2.x.
//! - Prereleases: a group whose comparisons name no prerelease matches no prerelease
//!   version. When any comparison of a group names one (`>=1.2.0-0 <2`), the whole group
//!   considers prereleases, ordered by SemVer precedence.
//!
//! Wildcards and partial versions follow Masterminds' quirks exactly (they are what Flux
//! users see), including the odd ones: `<=*` only matches `0.0.x`, `>*` and `!=*` treat
//! `*` as `0.0.0`. The unit tests below pin each rule.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::version::{Version, compare_prereleases};

/// What is wrong with a semver range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A `||`-separated part is not a list of comparisons.
    #[error("{part:?} is not a list of comparisons such as \">=1.2.0 <2.0.0\"")]
    Malformed {
        /// The part, as written (after `a - b` was rewritten to `>= a, <= b`).
        part: String,
    },
    /// A comparison has the right shape but its version is not one.
    #[error("{version:?} is not a version: {reason}")]
    Version {
        /// The version as written in the range.
        version: String,
        /// Why.
        reason: &'static str,
    },
}

/// A parsed range: matches a version when any of its groups does.
#[derive(Debug, Clone)]
pub(super) struct SemverRange {
    text: String,
    groups: Vec<Group>,
}

impl SemverRange {
    /// Parse a range; the empty string is not a range.
    pub(super) fn parse(text: &str) -> Result<SemverRange, RangeError> {
        let rewritten = rewrite_hyphen_ranges(text);
        let groups = rewritten
            .split("||")
            .map(Group::parse)
            .collect::<Result<_, _>>()?;
        Ok(SemverRange {
            text: text.to_owned(),
            groups,
        })
    }

    /// Whether `version` is in the range.
    pub(super) fn matches(&self, version: &Version) -> bool {
        self.groups.iter().any(|group| group.matches(version))
    }
}

impl fmt::Display for SemverRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Comparisons that must all hold.
#[derive(Debug, Clone)]
struct Group {
    comparisons: Vec<Comparison>,
    /// Some comparison names a prerelease, so prerelease versions are considered.
    considers_prereleases: bool,
}

impl Group {
    fn parse(part: &str) -> Result<Group, RangeError> {
        let malformed = || RangeError::Malformed {
            part: part.to_owned(),
        };
        let bytes = part.as_bytes();
        let mut comparisons = Vec::new();
        let mut at = skip_spaces(bytes, 0);
        loop {
            let (op, after_op) = Op::lex(bytes, at);
            let start = skip_spaces(bytes, after_op);
            let written = WrittenVersion::lex(part, start).ok_or_else(malformed)?;
            let end = written.end;
            comparisons.push(Comparison::new(op, &written)?);
            let next = skip_spaces(bytes, end);
            at = match bytes.get(next) {
                None => break,
                Some(b',') => skip_spaces(bytes, next + 1),
                Some(_) if next > end => next,
                Some(_) => return Err(malformed()),
            };
        }
        let considers_prereleases = comparisons.iter().any(|c| c.version.is_prerelease());
        Ok(Group {
            comparisons,
            considers_prereleases,
        })
    }

    fn matches(&self, version: &Version) -> bool {
        if version.is_prerelease() && !self.considers_prereleases {
            return false;
        }
        self.comparisons.iter().all(|c| c.allows(version))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// No operator, or `=`.
    Exact,
    NotEqual,
    Greater,
    Less,
    GreaterOrEqual,
    LessOrEqual,
    /// `~` or `~>`.
    Tilde,
    Caret,
}

impl Op {
    /// The operator at `at` (possibly none) and where it ends. Two-character operators
    /// win: a version never starts with `=`, `>` or `<`, so that is always right.
    fn lex(bytes: &[u8], at: usize) -> (Op, usize) {
        let two = bytes.get(at..at + 2);
        let op = match two {
            Some(b"!=") => Some(Op::NotEqual),
            Some(b">=" | b"=>") => Some(Op::GreaterOrEqual),
            Some(b"<=" | b"=<") => Some(Op::LessOrEqual),
            Some(b"~>") => Some(Op::Tilde),
            _ => None,
        };
        if let Some(op) = op {
            return (op, at + 2);
        }
        let op = match bytes.get(at) {
            Some(b'=') => Op::Exact,
            Some(b'>') => Op::Greater,
            Some(b'<') => Op::Less,
            Some(b'~') => Op::Tilde,
            Some(b'^') => Op::Caret,
            _ => return (Op::Exact, at),
        };
        (op, at + 1)
    }
}

/// Where the written version stops being precise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    /// `1.2.3`: complete.
    None,
    /// `*`, `x`: the major is a wildcard (Masterminds then treats it as `0.0.0`).
    Major,
    /// `1`, `1.x`.
    Minor,
    /// `1.2`, `1.2.x`.
    Patch,
}

/// A version as written in a range, split into its parts; only its shape is checked.
struct WrittenVersion<'a> {
    text: &'a str,
    major: &'a str,
    minor: Option<&'a str>,
    patch: Option<&'a str>,
    pre: &'a str,
    end: usize,
}

impl<'a> WrittenVersion<'a> {
    /// The longest version-shaped text starting at `start`.
    fn lex(source: &'a str, start: usize) -> Option<WrittenVersion<'a>> {
        let bytes = source.as_bytes();
        let run = |from: usize, class: fn(u8) -> bool| {
            from + bytes
                .get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&b| class(b))
                .count()
        };
        // A `.`-, `-`- or `+`-introduced piece, when the introducer is followed by at
        // least one character of its class.
        let piece = |at: usize, introducer: u8, class: fn(u8) -> bool| {
            let follows = bytes.get(at + 1).is_some_and(|&b| class(b));
            (bytes.get(at) == Some(&introducer) && follows).then(|| run(at + 1, class))
        };
        let identifiers = |at: usize, introducer: u8| {
            let mut end = piece(at, introducer, is_identifier_byte)?;
            while let Some(next) = piece(end, b'.', is_identifier_byte) {
                end = next;
            }
            Some(end)
        };

        let mut at = start;
        if bytes.get(at) == Some(&b'v') {
            at += 1;
        }
        let major_end = run(at, is_part_byte);
        if major_end == at {
            return None;
        }
        let major = &source[at..major_end];
        at = major_end;
        let mut minor = None;
        let mut patch = None;
        if let Some(end) = piece(at, b'.', is_part_byte) {
            minor = Some(&source[at + 1..end]);
            at = end;
            if let Some(end) = piece(at, b'.', is_part_byte) {
                patch = Some(&source[at + 1..end]);
                at = end;
            }
        }
        let mut pre = "";
        if let Some(end) = identifiers(at, b'-') {
            pre = &source[at + 1..end];
            at = end;
        }
        if let Some(end) = identifiers(at, b'+') {
            at = end;
        }
        Some(WrittenVersion {
            text: &source[start..at],
            major,
            minor,
            patch,
            pre,
            end: at,
        })
    }
}

/// One comparison: an operator and the version it compares with.
#[derive(Debug, Clone)]
struct Comparison {
    op: Op,
    version: Version,
    wildcard: Wildcard,
}

impl Comparison {
    fn new(op: Op, written: &WrittenVersion<'_>) -> Result<Comparison, RangeError> {
        let wild = |part: Option<&str>| part.is_none_or(is_wildcard);
        let (wildcard, major, minor, patch) = if is_wildcard(written.major) {
            (Wildcard::Major, "0", "0", "0")
        } else if wild(written.minor) {
            (Wildcard::Minor, written.major, "0", "0")
        } else if wild(written.patch) {
            (
                Wildcard::Patch,
                written.major,
                written.minor.unwrap_or("0"),
                "0",
            )
        } else {
            let patch = written.patch.unwrap_or("0");
            (
                Wildcard::None,
                written.major,
                written.minor.unwrap_or("0"),
                patch,
            )
        };
        let version =
            Version::from_range_parts(major, minor, patch, written.pre).map_err(|reason| {
                RangeError::Version {
                    version: written.text.to_owned(),
                    reason,
                }
            })?;
        Ok(Comparison {
            op,
            version,
            wildcard,
        })
    }

    /// Whether `v` satisfies this comparison (the group has already refused
    /// prereleases it does not consider).
    fn allows(&self, v: &Version) -> bool {
        let c = &self.version;
        let minor_wild = self.wildcard == Wildcard::Minor;
        let patch_wild = self.wildcard == Wildcard::Patch;
        let exact = self.wildcard == Wildcard::None;
        match self.op {
            Op::Exact if exact => v == c,
            Op::Exact | Op::Tilde => {
                if v < c {
                    false
                } else if (c.major, c.minor, c.patch) == (0, 0, 0) && !minor_wild && !patch_wild {
                    true
                } else {
                    v.major == c.major && (minor_wild || v.minor == c.minor)
                }
            }
            Op::NotEqual => {
                if !exact {
                    if c.major != v.major || (!minor_wild && c.minor != v.minor) {
                        return true;
                    }
                    if minor_wild {
                        return false;
                    }
                    if !patch_wild && c.patch != v.patch {
                        return true;
                    }
                    if patch_wild {
                        // Same major and minor: different only if the prereleases differ.
                        return compare_prereleases(&v.pre, &c.pre).is_ne();
                    }
                }
                v != c
            }
            Op::Greater => match self.wildcard {
                Wildcard::None | Wildcard::Major => v > c,
                Wildcard::Minor => v.major > c.major,
                Wildcard::Patch => v.major > c.major || (v.major == c.major && v.minor > c.minor),
            },
            Op::Less => v < c,
            Op::GreaterOrEqual => v >= c,
            Op::LessOrEqual => {
                if exact {
                    v <= c
                } else {
                    v.major < c.major || (v.major == c.major && (minor_wild || v.minor <= c.minor))
                }
            }
            Op::Caret => {
                if v < c {
                    false
                } else if c.major > 0 || minor_wild {
                    v.major == c.major
                } else if v.major > 0 {
                    false
                } else if c.minor > 0 || patch_wild {
                    v.minor == c.minor
                } else {
                    v.minor == 0 && v.patch == c.patch
                }
            }
        }
    }
}

/// `\s` in Go's regular expressions: ASCII only.
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ')
}

fn skip_spaces(bytes: &[u8], from: usize) -> usize {
    from + bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| is_space(b))
        .count()
}

/// A character of a version part as the range grammar lexes it. Masterminds' class
/// also holds `|`; such a part is refused later (unless it follows a wildcard, which
/// makes it ignored), exactly as there.
fn is_part_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'x' | b'X' | b'*' | b'|')
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

/// The version shape, as a regular expression, for the hyphen-range rewrite (kept equal
/// to [`WrittenVersion::lex`]; a unit test checks they agree).
const VERSION_PATTERN: &str = r"v?[0-9xX*|]+(?:\.[0-9xX*|]+)?(?:\.[0-9xX*|]+)?(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?";

/// `a - b`, with the spaces around it: Go's leftmost-first match, reproduced by the
/// `regex` crate's identical semantics (and in linear time for any input).
static HYPHEN_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    let space = r"[\t\n\x0C\r ]";
    let pattern =
        format!(r"{space}*({VERSION_PATTERN}){space}+-{space}+({VERSION_PATTERN}){space}*");
    Regex::new(&pattern).expect("the hyphen-range pattern is a valid regular expression")
});

/// Rewrite every `a - b` to `>= a, <= b ` (the trailing space keeps the next comparison
/// apart). As in Masterminds, the match takes the spaces before `a` too, so `<1 2 - 3`
/// becomes `<1>= 2, <= 3 `, which is malformed.
fn rewrite_hyphen_ranges(text: &str) -> String {
    HYPHEN_RANGE.replace_all(text, ">= $1, <= $2 ").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> SemverRange {
        SemverRange::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn version(text: &str) -> Version {
        Version::from_tag(text).unwrap_or_else(|| panic!("{text} is a version"))
    }

    /// Check `range` against versions that must and must not match.
    fn check(text: &str, inside: &[&str], outside: &[&str]) {
        let r = range(text);
        for v in inside {
            assert!(r.matches(&version(v)), "{text:?} should match {v}");
        }
        for v in outside {
            assert!(!r.matches(&version(v)), "{text:?} should not match {v}");
        }
    }

    #[test]
    fn the_invalid_ranges_of_flux_are_refused() {
        for bad in ["", "1.0.0p", "1x", "x1", "-1", "a", "*-*"] {
            assert!(SemverRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_ranges_are_refused_with_the_part_named() {
        for bad in [
            " ",
            "||",
            "1 ||",
            ">",
            ">= ",
            "=>=1",
            "1,,2",
            ",1",
            "1,",
            "1.2.3.4",
            "12.3.34~ 1.2.3",
            ">1<2",
            "v",
            "vv1",
            "V1",
            "1 - ",
            "1 -2",
            "~ >1",
            "1.0 |2.0",
            "**",
            "1.2.3-",
            "1.2.3-a.",
            "01.x-01",
            "99999999999999999999",
            "1 >= bar",
            "BAR >= 1.2.3",
        ] {
            assert!(SemverRange::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            SemverRange::parse(">=1.0 || 2.0.0.1").unwrap_err(),
            RangeError::Malformed {
                part: " 2.0.0.1".to_owned()
            }
        );
        assert_eq!(
            SemverRange::parse("1x").unwrap_err(),
            RangeError::Version {
                version: "1x".to_owned(),
                reason: "each of major, minor and patch must be a number or a wildcard (x, X or *)"
            }
        );
    }

    #[test]
    fn operators_may_be_followed_by_spaces_and_comparisons_joined_by_space_or_comma() {
        for good in [
            ">= 1.2",
            "=< 1.2",
            "=> 1.2",
            "~> 1.2",
            ">40.50.60, < 50.70",
            ">= 1.2.3 < 2.0 || => 3.0 < 4",
            ">1.1    <3",
            "12.3.34 ~1.2.3",
            " 1.2 ,2",
            "\t>=1\n",
            "v2.3.5-20161202202307-sha.e8fc5e5",
        ] {
            range(good);
        }
    }

    #[test]
    fn a_missing_or_wildcard_part_makes_the_rest_irrelevant() {
        check("1.2.x", &["1.2.0", "1.2.99"], &["1.3.0", "1.1.9"]);
        check("1.2", &["1.2.0", "1.2.99"], &["1.3.0"]);
        check("1.x", &["1.0.0", "1.9.9"], &["2.0.0", "0.9.0"]);
        check("1.X.5", &["1.0.0", "1.9.9"], &["2.0.0"]);
        check("1", &["1.0.0", "1.9.9"], &["2.0.0"]);
        check("*", &["0.0.0", "1.2.3", "99.0.0"], &["1.2.3-rc.1"]);
        check("x.|", &["1.2.3"], &[]);
    }

    #[test]
    fn a_complete_version_without_operator_is_exact() {
        check(
            "1.2.3",
            &["1.2.3", "v1.2.3", "1.2.3+build"],
            &["1.2.4", "1.2.3-rc.1"],
        );
        check("=1.0.0", &["1.0.0"], &["1.0.1"]);
    }

    #[test]
    fn a_leading_v_in_the_range_is_ignored() {
        check("v1.0.x", &["1.0.1", "v1.0.1"], &["1.1.0"]);
        check(">= v1.2", &["1.2.0"], &["1.1.0"]);
    }

    #[test]
    fn a_tilde_keeps_the_minor_unless_only_the_major_was_written() {
        check("~1.2.3", &["1.2.3", "1.2.9"], &["1.2.2", "1.3.0"]);
        check("~1.2", &["1.2.0", "1.2.9"], &["1.3.0", "1.1.9"]);
        check("~1", &["1.0.0", "1.9.0"], &["2.0.0", "0.9.0"]);
        check("~>1.x", &["1.0.0", "1.9.0"], &["2.0.0"]);
        check("~0.2.3", &["0.2.5"], &["0.3.0"]);
        check("~0.0.0", &["0.0.0", "5.6.7"], &[]);
        check("~*", &["0.0.0", "5.6.7"], &[]);
    }

    #[test]
    fn a_caret_keeps_the_major_when_it_is_not_zero() {
        check("^1.2.3", &["1.2.3", "1.8.9"], &["1.2.2", "2.0.0"]);
        check("^1.2", &["1.2.0", "1.8.9"], &["1.1.9", "2.0.0"]);
        check("^1", &["1.0.0", "1.8.9"], &["2.0.0", "0.9.9"]);
        check("^1.x", &["1.1.1"], &["2.1.1"]);
    }

    #[test]
    fn a_caret_on_zero_major_stays_within_the_minor() {
        check("^0.2.3", &["0.2.3", "0.2.5"], &["0.2.2", "0.3.0", "1.2.3"]);
        check("^0.2", &["0.2.0", "0.2.5"], &["0.3.0"]);
    }

    #[test]
    fn a_caret_on_zero_major_and_minor_pins_the_patch() {
        check("^0.0.3", &["0.0.3"], &["0.0.4", "0.0.2", "0.1.3"]);
        check("^0.0", &["0.0.0", "0.0.9"], &["0.1.0"]);
        check("^0", &["0.0.0", "0.9.9"], &["1.0.0"]);
    }

    #[test]
    fn a_caret_on_a_bare_wildcard_only_matches_zero_as_in_masterminds() {
        check("^*", &["0.0.0"], &["0.0.1", "1.2.3"]);
    }

    #[test]
    fn greater_than_a_partial_version_skips_all_of_it() {
        check(">1.1", &["1.2.0", "4.1.0"], &["1.1.0", "1.1.9"]);
        check(">11", &["12.0.0"], &["11.1.0"]);
        check(">0", &["1.0.0"], &["0.0.1", "0.9.9"]);
        check(">1.2.3", &["1.2.4"], &["1.2.3"]);
        check(">*", &["0.0.1", "1.0.0"], &["0.0.0"]);
    }

    #[test]
    fn less_or_equal_to_a_partial_version_includes_all_of_it() {
        check("<=1.1", &["1.1.0", "1.1.9", "0.1.0"], &["1.2.0"]);
        check("<=11", &["11.2.3", "1.2.3"], &["12.2.3"]);
        check("<=1.x", &["1.9.0"], &["2.0.0"]);
        check("<=1.2.3", &["1.2.3"], &["1.2.4"]);
        check("<=*", &["0.0.0", "0.0.7"], &["0.1.0", "1.0.0"]);
    }

    #[test]
    fn less_than_and_greater_or_equal_compare_with_the_zero_filled_version() {
        check("<1.1", &["0.1.0", "1.0.9"], &["1.1.0", "1.1.1"]);
        check("<1.x", &["0.1.1"], &["1.1.1", "2.0.0"]);
        check(">=1.1", &["1.1.0", "4.1.0"], &["1.0.9"]);
        check(">=0.x", &["0.0.0", "0.1.1", "3.0.0"], &["0.1.0-alpha"]);
    }

    #[test]
    fn not_equal_excludes_everything_a_partial_version_covers() {
        check("!=4.1.0", &["4.1.1"], &["4.1.0"]);
        check("!=4.1", &["5.1.0", "4.2.0"], &["4.1.0", "4.1.1"]);
        check("!=4.x", &["5.1.0"], &["4.1.0"]);
        check("!=*", &["0.0.1", "1.0.0"], &["0.0.0"]);
        check("!=4.1-alpha", &["4.1.0"], &["4.1.0-alpha", "4.1.1-alpha"]);
    }

    #[test]
    fn groups_are_anded_within_and_ored_across() {
        check(">1.1, <2", &["1.2.1"], &["1.1.1", "2.0.0"]);
        check(">=1.1 <2 !=1.2.3", &["1.2.4"], &["1.2.3"]);
        check(
            ">=1.1, <2, !=1.2.3 || > 3",
            &["1.5.0", "4.1.2"],
            &["1.2.3", "3.1.2", "3.0.0"],
        );
        check(">=1.1, <2, !=1.2.3 || >= 3", &["3.0.0"], &[]);
    }

    #[test]
    fn a_hyphen_range_is_inclusive_at_both_ends() {
        check("1.1 - 2", &["1.1.0", "2.9.9"], &["1.0.9", "3.0.0"]);
        check("1.2 - 1.4.5", &["1.2.0", "1.4.5"], &["1.4.6", "1.1.0"]);
        check(
            "3 - 4 || => 6.0, < 7",
            &["3.0.0", "4.5.0", "6.1.0"],
            &["5.0.0"],
        );
        check("1 - 2 3 - 4", &[], &["1.0.0", "3.0.0"]);
        check("1 - 2 || 3 - 4", &["1.5.0", "3.5.0"], &["2.5.0-0"]);
        // Without spaces around it, the hyphen starts a prerelease: `1.1-3` is the
        // wildcard 1.1 with prerelease 3, so releases 1.1.x match.
        check("1.1-3", &["1.1.0", "1.1.5"], &["4.3.2", "1.2.0"]);
    }

    #[test]
    fn a_hyphen_range_after_another_comparison_needs_a_comma_as_in_masterminds() {
        assert!(SemverRange::parse(">=1 2 - 3").is_err());
        check(">=1, 2 - 3", &["2.5.0", "3.1.0"], &["1.5.0", "4.0.0"]);
    }

    #[test]
    fn prereleases_only_match_groups_that_name_one() {
        check(">=1.1", &[], &["4.1.0-beta"]);
        check("^1.x", &[], &["1.1.1-beta1"]);
        check("~1.1-alpha", &["1.1.1-beta"], &[]);
        check("^1.1.2-alpha", &["1.2.1-beta1"], &["2.0.0-beta"]);
        check(
            "~1.2.3-beta.2",
            &["1.2.3-beta.4", "1.2.4-beta.2"],
            &["1.2.3-beta.1"],
        );
        check(">1.2.3-alpha.1", &["1.2.3-alpha.2", "1.3.3-alpha.2"], &[]);
        check("*-0", &["1.2.3-alpha.1", "1.2.3"], &[]);
        // One comparison naming a prerelease opens its whole group to them...
        // (2.0.0-rc.1 sorts before 2.0.0, so it is in.)
        check(
            ">=1.0.0-0 <2.0.0",
            &["1.5.0-rc.1", "2.0.0-rc.1"],
            &["2.0.0", "0.9.0"],
        );
        // ...but not the other groups.
        check(">=3.0.0-0 || <2.0.0", &["3.1.0-rc.1"], &["1.5.0-rc.1"]);
    }

    #[test]
    fn the_rewrite_regex_and_the_lexer_agree_on_what_a_version_is() {
        let anchored = Regex::new(&format!("^{VERSION_PATTERN}")).expect("valid");
        for text in [
            "1",
            "v1.2.3",
            "1.2.3.4",
            "1.x.|",
            "1.2.3-rc.1+b.2",
            "1.2.3-",
            "1.2.3-a.",
            "1..2",
            "v",
            "x1",
            "*-*",
            "1.2+",
            "1-2-3",
            "1.0.0p",
            "1|2",
        ] {
            let by_regex = anchored.find(text).map(|m| m.end());
            let by_lexer = WrittenVersion::lex(text, 0).map(|w| w.end);
            assert_eq!(by_regex, by_lexer, "{text:?}");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let long = "9".repeat(10_000);
        let many = "1 - 2 ".repeat(2_000);
        for odd in [
            "é",
            "1.é",
            ">=é",
            "1 - é",
            "\u{0}",
            "1.2.3-é",
            "||||",
            "-",
            " - ",
            "- 1",
            "1 -",
            "^",
            "~>",
            "!",
            "v1.2.3-",
            "1.2.3+é",
            "\u{1F600}",
            "1.\u{0301}",
            long.as_str(),
            many.as_str(),
            "18446744073709551615.18446744073709551615.18446744073709551615",
        ] {
            let _ = SemverRange::parse(odd);
        }
        let max = range(">=18446744073709551615.0.0");
        assert!(max.matches(&version("18446744073709551615.0.0")));
    }
}
