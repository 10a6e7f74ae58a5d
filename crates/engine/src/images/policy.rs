//! Tag policies: which of an image repository's tags is the latest.
//!
//! A registry lists an image's tags (`1.4.2`, `1.5.0-rc.1`, `main-3f2a9c1-1718000000`,
//! `latest`, …) in no useful order. Image automation needs one of them: the newest
//! version a deployment should run. A [`TagPolicy`] is the rule that picks it, with the
//! same shapes and semantics as Flux's `ImagePolicy`, so a Flux user's spec means the
//! same thing here:
//!
//! ```yaml
//! filterTags:                       # optional: TagFilter
//!   pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)$'
//!   extract: '$ts'                  # rank the timestamp, return the whole tag
//! policy:                           # PolicyChoice: exactly one of
//!   semver: {range: '>=1.0.0 <2'}   #   the highest version in a range
//!   alphabetical: {order: asc}      #   the last tag in byte order (desc: the first)
//!   numerical: {order: asc}         #   the largest number (desc: the smallest)
//! ```
//!
//! ```
//! use capstan_engine::images::policy::{Order, TagFilter, TagPolicy};
//!
//! let tags = ["1.0.0", "1.0.1", "1.1.0-rc.1", "v1.2.0", "latest"];
//! let policy = TagPolicy::semver("1.x")?;
//! assert_eq!(policy.latest(&tags, None)?, "v1.2.0");
//!
//! let tags = ["main-3f2a9c1-1718000000", "main-77ab001-1718500000", "pr-12"];
//! let filter = TagFilter::new(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "$ts")?;
//! let policy = TagPolicy::numerical(Order::Asc);
//! assert_eq!(policy.latest(&tags, Some(&filter))?, "main-77ab001-1718500000");
//! # Ok::<(), capstan_engine::images::policy::PolicyError>(())
//! ```
//!
//! The rules, in brief (`policy/constraint.rs`, `number.rs`, `filter.rs` and
//! `version.rs` next to this file have the details and their tests):
//! - **semver** (`constraint`): Masterminds/semver v3 ranges, the library Flux uses:
//!   `1.2.x`, `~1.2`, `^0.3`, `>=1.0 <2 || 3.x`, `1.2 - 1.4`, an optional `v`. Only tags
//!   that are strict SemVer with at most one leading `v` count; others are skipped.
//!   Prereleases are considered only when the range names one. The tag is returned as
//!   listed (`v1.2.0` stays `v1.2.0`).
//! - **alphabetical**: byte-wise order. `ASC` (the default) picks the greatest tag,
//!   `DESC` the smallest.
//! - **numerical** (`number`): every tag must read as a number, as Go's `ParseFloat`
//!   reads it (`42`, `-1.5`, `1e3`, `0x1p4`, `inf`); a single tag that does not makes
//!   the whole choice an error, as in Flux. `ASC` picks the largest, `DESC` the smallest.
//! - **filterTags** (`filter`): a Go-syntax regular expression found anywhere in the
//!   tag; `extract` (`$1`, `$name`, `${name}`) gives the value the policy ranks, and the
//!   winning value maps back to the tag it came from.
//! - An order is read case-insensitively, as Flux's controller upper-cases it: `asc`,
//!   `ASC` or empty is [`Order::Asc`], `desc` is [`Order::Desc`], anything else is an
//!   error. A [`PolicyChoice`] that chooses nothing is an error.
//!
//! Where Capstan deliberately differs from Flux (none of Flux's own test cases is
//! affected; `tests/integration/image_policies.rs` runs them all):
//! - **Ties are decided by the tags, not by their order in the list.** When several
//!   tags rank equal (`1.0.0` and `v1.0.0` for semver; `1` and `1.0` numerically; two
//!   tags whose `extract` gives the same value), the one whose value, then tag, is
//!   byte-wise smallest wins: `1.0.0` over `v1.0.0`, `1` over `1.0`, `1.2.3` over
//!   `1.2.3-debug`. Flux keeps the first (semver), the last (numerical) or the last
//!   written to a Go map (extract), which depends on the order the registry listed the
//!   tags in.
//! - **`NaN` never wins a numerical choice** (unless every tag is `NaN`). Go compares
//!   `NaN` as neither less nor greater, so in Flux the outcome depends on list order.
//! - The regular-expression dialect is Rust's `regex`, which shares RE2's syntax; the
//!   few gaps are listed on [`TagFilter::new`].

mod constraint;
mod filter;
mod number;
mod version;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use constraint::SemverRange;
use version::Version;

pub use constraint::RangeError;
pub use filter::{FilteredTag, TagFilter};
pub use number::InvalidNumber;

/// Why a policy could not be built, or could not choose a tag.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy spec sets none of `semver`, `alphabetical`, `numerical`.
    #[error("the image policy chooses none of semver, alphabetical or numerical")]
    NoPolicy,
    /// The semver range does not parse.
    #[error("invalid semver range {range:?}")]
    InvalidRange {
        /// The range as written.
        range: String,
        /// What is wrong with it.
        #[source]
        source: RangeError,
    },
    /// An alphabetical or numerical order other than `ASC` or `DESC`.
    #[error("invalid order {order:?}: expected ASC or DESC (in any case; empty means ASC)")]
    InvalidOrder {
        /// The order as written.
        order: String,
    },
    /// The `filterTags` pattern does not compile.
    #[error("invalid regular expression pattern {pattern:?}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// The compiler's complaint.
        #[source]
        source: regex::Error,
    },
    /// The repository has no tags at all.
    #[error("there are no tags to choose from")]
    NoTags,
    /// The `filterTags` pattern matched none of the tags.
    #[error("no tag matches filter pattern {pattern:?} ({considered})")]
    NoTagPassesFilter {
        /// The pattern.
        pattern: String,
        /// The tags it was tried on.
        considered: TagSummary,
    },
    /// No tag (or extracted value) is a version in the range.
    #[error("no tag matches semver range {range:?} ({considered})")]
    NoTagInRange {
        /// The range as written.
        range: String,
        /// What was checked against it.
        considered: TagSummary,
    },
    /// A numerical policy met a tag (or extracted value) that is not a number.
    #[error(
        "a numerical policy ranks every tag as a number, and {} is not one",
        describe_value(.value, .tag)
    )]
    NotANumber {
        /// The tag as listed.
        tag: String,
        /// What was read as a number: the tag, or what `extract` made of it.
        value: String,
        /// Why it is not a number.
        #[source]
        source: InvalidNumber,
    },
}

fn describe_value(value: &str, tag: &str) -> String {
    if value == tag {
        format!("tag {tag:?}")
    } else {
        format!("{value:?} (extracted from tag {tag:?})")
    }
}

/// A few of the tags (or extracted values) a choice looked at, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSummary {
    count: usize,
    sample: Vec<String>,
    extracted: bool,
}

impl TagSummary {
    const SAMPLE: usize = 5;

    fn new<'a>(values: impl ExactSizeIterator<Item = &'a str>, extracted: bool) -> Self {
        let count = values.len();
        let sample = values.take(Self::SAMPLE).map(str::to_owned).collect();
        TagSummary {
            count,
            sample,
            extracted,
        }
    }

    /// How many there were.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The first few, in list order.
    pub fn sample(&self) -> &[String] {
        &self.sample
    }
}

impl fmt::Display for TagSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = match (self.extracted, self.count) {
            (false, 1) => "tag",
            (false, _) => "tags",
            (true, 1) => "extracted value",
            (true, _) => "extracted values",
        };
        write!(f, "{} {noun}: {}", self.count, self.sample.join(", "))?;
        if self.count > self.sample.len() {
            write!(f, " and {} more", self.count - self.sample.len())?;
        }
        Ok(())
    }
}

/// Which end of the order is the latest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// The greatest tag (alphabetical) or the largest number (numerical) is the latest.
    #[default]
    Asc,
    /// The smallest is the latest.
    Desc,
}

impl Order {
    /// `ordering` (greater = more recent under [`Order::Asc`]) under this order.
    fn apply(self, ordering: Ordering) -> Ordering {
        match self {
            Order::Asc => ordering,
            Order::Desc => ordering.reverse(),
        }
    }
}

impl FromStr for Order {
    type Err = PolicyError;

    /// `ASC` or `DESC` in any case, as Flux's controller upper-cases the spec's order;
    /// empty means `ASC`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_uppercase().as_str() {
            "" | "ASC" => Ok(Order::Asc),
            "DESC" => Ok(Order::Desc),
            _ => Err(PolicyError::InvalidOrder {
                order: text.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        })
    }
}

/// The `policy` of a Flux `ImagePolicy` spec, as written: one of its fields is set.
/// If several are, the first of `semver`, `alphabetical`, `numerical` is used, as Flux
/// does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyChoice {
    /// `semver: {range: …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemverChoice>,
    /// `alphabetical: {order: …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<OrderChoice>,
    /// `numerical: {order: …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<OrderChoice>,
}

/// `semver: {range: …}` in a [`PolicyChoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemverChoice {
    /// The range, e.g. `>=1.0.0 <2` or `1.4.x`.
    pub range: String,
}

/// `alphabetical: {order: …}` or `numerical: {order: …}` in a [`PolicyChoice`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChoice {
    /// `asc`, `desc` (any case) or empty for ascending.
    #[serde(default)]
    pub order: String,
}

/// A validated rule that picks the latest tag; build it once, use it on every scan.
#[derive(Debug, Clone)]
pub struct TagPolicy {
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Semver(SemverRange),
    Alphabetical(Order),
    Numerical(Order),
}

impl TagPolicy {
    /// The highest version within `range` (Masterminds/semver v3 syntax).
    pub fn semver(range: &str) -> Result<TagPolicy, PolicyError> {
        let parsed = SemverRange::parse(range).map_err(|source| PolicyError::InvalidRange {
            range: range.to_owned(),
            source,
        })?;
        Ok(TagPolicy {
            rule: Rule::Semver(parsed),
        })
    }

    /// The last tag in byte order ([`Order::Asc`]) or the first ([`Order::Desc`]).
    pub fn alphabetical(order: Order) -> TagPolicy {
        TagPolicy {
            rule: Rule::Alphabetical(order),
        }
    }

    /// The largest number ([`Order::Asc`]) or the smallest ([`Order::Desc`]).
    pub fn numerical(order: Order) -> TagPolicy {
        TagPolicy {
            rule: Rule::Numerical(order),
        }
    }

    /// The policy an `ImagePolicy` spec chooses.
    pub fn from_choice(choice: &PolicyChoice) -> Result<TagPolicy, PolicyError> {
        if let Some(semver) = &choice.semver {
            TagPolicy::semver(&semver.range)
        } else if let Some(alphabetical) = &choice.alphabetical {
            Ok(TagPolicy::alphabetical(alphabetical.order.parse()?))
        } else if let Some(numerical) = &choice.numerical {
            Ok(TagPolicy::numerical(numerical.order.parse()?))
        } else {
            Err(PolicyError::NoPolicy)
        }
    }

    /// The latest of `tags`, after `filter` if given, returned as the registry lists it
    /// (the original tag, also when the policy ranked an extracted value).
    ///
    /// Errors: no tags; no tag passing the filter; no version in the semver range; a
    /// value a numerical policy cannot read as a number.
    pub fn latest<S: AsRef<str>>(
        &self,
        tags: &[S],
        filter: Option<&TagFilter>,
    ) -> Result<String, PolicyError> {
        if tags.is_empty() {
            return Err(PolicyError::NoTags);
        }
        let candidates = match filter {
            Some(filter) => {
                let passed = filter.apply(tags);
                if passed.is_empty() {
                    return Err(PolicyError::NoTagPassesFilter {
                        pattern: filter.pattern().to_owned(),
                        considered: TagSummary::new(tags.iter().map(AsRef::as_ref), false),
                    });
                }
                passed
            }
            None => tags
                .iter()
                .map(|tag| FilteredTag::unchanged(tag.as_ref()))
                .collect(),
        };
        let extracted = filter.is_some_and(|f| !f.extract().is_empty());
        let winner = match &self.rule {
            Rule::Semver(range) => highest_in_range(range, &candidates, extracted)?,
            Rule::Alphabetical(order) => candidates
                .iter()
                .max_by(|a, b| {
                    order
                        .apply(a.value.cmp(&b.value))
                        .then_with(|| prefer_smaller(a, b))
                })
                .ok_or(PolicyError::NoTags)?,
            Rule::Numerical(order) => latest_number(*order, &candidates)?,
        };
        Ok(winner.tag.to_owned())
    }
}

impl fmt::Display for TagPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Semver(range) => write!(f, "semver range {:?}", range.to_string()),
            Rule::Alphabetical(order) => write!(f, "alphabetical, {order}"),
            Rule::Numerical(order) => write!(f, "numerical, {order}"),
        }
    }
}

/// The candidate with the highest version in `range`.
fn highest_in_range<'c, 't>(
    range: &SemverRange,
    candidates: &'c [FilteredTag<'t>],
    extracted: bool,
) -> Result<&'c FilteredTag<'t>, PolicyError> {
    candidates
        .iter()
        .filter_map(|candidate| {
            let version = Version::from_tag(&candidate.value)?;
            range.matches(&version).then_some((version, candidate))
        })
        .max_by(|(a_version, a), (b_version, b)| {
            a_version.cmp(b_version).then_with(|| prefer_smaller(a, b))
        })
        .map(|(_, candidate)| candidate)
        .ok_or_else(|| PolicyError::NoTagInRange {
            range: range.to_string(),
            considered: TagSummary::new(candidates.iter().map(|c| c.value.as_ref()), extracted),
        })
}

/// The candidate with the largest (or smallest) number; every candidate must be one.
fn latest_number<'c, 't>(
    order: Order,
    candidates: &'c [FilteredTag<'t>],
) -> Result<&'c FilteredTag<'t>, PolicyError> {
    let numbers = candidates
        .iter()
        .map(|candidate| match number::parse(&candidate.value) {
            Ok(number) => Ok((number, candidate)),
            Err(source) => Err(PolicyError::NotANumber {
                tag: candidate.tag.to_owned(),
                value: candidate.value.clone().into_owned(),
                source,
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    numbers
        .into_iter()
        .max_by(|(x, a), (y, b)| rank_numbers(order, *x, *y).then_with(|| prefer_smaller(a, b)))
        .map(|(_, candidate)| candidate)
        .ok_or(PolicyError::NoTags)
}

/// Between candidates the policy ranks equal, the byte-wise smaller value, then tag,
/// is preferred (as a "greater" ordering, for `max_by`).
fn prefer_smaller(a: &FilteredTag<'_>, b: &FilteredTag<'_>) -> Ordering {
    b.value.cmp(&a.value).then_with(|| b.tag.cmp(a.tag))
}

/// Numbers under `order`; `NaN` ranks below every number in either order.
fn rank_numbers(order: Order, x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => order.apply(x.partial_cmp(&y).unwrap_or(Ordering::Equal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(policy: &TagPolicy, tags: &[&str]) -> String {
        policy
            .latest(tags, None)
            .unwrap_or_else(|e| panic!("{policy} on {tags:?}: {e}"))
    }

    fn semver(range: &str) -> TagPolicy {
        TagPolicy::semver(range).unwrap_or_else(|e| panic!("{range}: {e}"))
    }

    #[test]
    fn semver_picks_the_highest_version_in_range_and_returns_it_as_listed() {
        let tags = [
            "1.0.0",
            "v1.0.3",
            "1.0.2+build",
            "1.1.0",
            "1.0.4-rc.1",
            "junk",
        ];
        assert_eq!(latest(&semver("1.0.x"), &tags), "v1.0.3");
        assert_eq!(latest(&semver(">=1.0.4-0 <1.1"), &tags), "1.0.4-rc.1");
    }

    #[test]
    fn orders_read_like_flux_reads_them() {
        for (text, order) in [
            ("", Order::Asc),
            ("ASC", Order::Asc),
            ("asc", Order::Asc),
            ("Desc", Order::Desc),
        ] {
            assert_eq!(text.parse::<Order>().ok(), Some(order), "{text}");
        }
        for bad in ["invalid", " asc", "ascending", "é"] {
            let error = bad.parse::<Order>().expect_err(bad).to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn a_choice_of_nothing_is_an_error_and_semver_wins_over_the_others() {
        assert!(matches!(
            TagPolicy::from_choice(&PolicyChoice::default()),
            Err(PolicyError::NoPolicy)
        ));
        let choice: PolicyChoice = serde_json::from_str(
            r#"{"semver": {"range": "1.x"}, "alphabetical": {"order": "desc"}}"#,
        )
        .expect("valid spec");
        let policy = TagPolicy::from_choice(&choice).expect("valid policy");
        assert_eq!(latest(&policy, &["1.2.0", "1.10.0", "2.0.0"]), "1.10.0");
        let choice: PolicyChoice =
            serde_json::from_str(r#"{"numerical": {}}"#).expect("valid spec");
        let policy = TagPolicy::from_choice(&choice).expect("valid policy");
        assert_eq!(latest(&policy, &["9", "10"]), "10");
    }

    #[test]
    fn ties_go_to_the_smallest_tag_whatever_the_list_order() {
        let cases: [(TagPolicy, &[&str], &str); 4] = [
            (semver("1.x"), &["v1.0.0", "1.0.0+b", "1.0.0"], "1.0.0"),
            (
                TagPolicy::numerical(Order::Asc),
                &["1.0", "01", "1", "1e0"],
                "01",
            ),
            (TagPolicy::numerical(Order::Desc), &["-0", "0", "0.0"], "-0"),
            (TagPolicy::alphabetical(Order::Asc), &["b", "a", "b"], "b"),
        ];
        for (policy, tags, expected) in cases {
            let mut tags = tags.to_vec();
            for _ in 0..tags.len() {
                tags.rotate_left(1);
                assert_eq!(latest(&policy, &tags), expected, "{policy} on {tags:?}");
            }
        }
        let filter = TagFilter::new(r"^(\d+\.\d+\.\d+)", "$1").expect("valid");
        for tags in [["1.2.3-debug", "1.2.3"], ["1.2.3", "1.2.3-debug"]] {
            let chosen = semver("*").latest(&tags, Some(&filter)).expect("a tag");
            assert_eq!(chosen, "1.2.3");
        }
    }

    #[test]
    fn nan_never_wins_a_numerical_choice() {
        for order in [Order::Asc, Order::Desc] {
            let policy = TagPolicy::numerical(order);
            assert_eq!(latest(&policy, &["NaN", "5", "nan"]), "5");
            assert_eq!(latest(&policy, &["nan", "NaN"]), "NaN");
        }
        assert_eq!(
            latest(&TagPolicy::numerical(Order::Asc), &["inf", "1e308"]),
            "inf"
        );
        assert_eq!(
            latest(&TagPolicy::numerical(Order::Desc), &["-Inf", "-1e308"]),
            "-Inf"
        );
    }

    #[test]
    fn errors_name_what_went_wrong() {
        let message =
            |result: Result<String, PolicyError>| result.expect_err("an error").to_string();
        let tags = ["1.2.0", "2.0.0", "b1.0.0"];
        assert_eq!(
            message(semver("1.0.x").latest(&tags, None)),
            r#"no tag matches semver range "1.0.x" (3 tags: 1.2.0, 2.0.0, b1.0.0)"#
        );
        let many: Vec<String> = (0..8).map(|n| format!("rel-{n}")).collect();
        let filter = TagFilter::new("^v", "").expect("valid");
        assert_eq!(
            message(semver("*").latest(&many, Some(&filter))),
            r#"no tag matches filter pattern "^v" (8 tags: rel-0, rel-1, rel-2, rel-3, rel-4 and 3 more)"#
        );
        assert_eq!(
            message(TagPolicy::numerical(Order::Asc).latest(&["0", "1a", "b"], None)),
            r#"a numerical policy ranks every tag as a number, and tag "1a" is not one"#
        );
        let filter = TagFilter::new("^rc-(.*)$", "$1").expect("valid");
        assert_eq!(
            message(TagPolicy::numerical(Order::Asc).latest(&["rc-1", "rc-x"], Some(&filter))),
            r#"a numerical policy ranks every tag as a number, and "x" (extracted from tag "rc-x") is not one"#
        );
        assert_eq!(
            message(TagPolicy::alphabetical(Order::Asc).latest::<&str>(&[], None)),
            "there are no tags to choose from"
        );
        let error = TagPolicy::semver("1.0.0p").expect_err("invalid");
        assert_eq!(error.to_string(), r#"invalid semver range "1.0.0p""#);
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some(r#""1.0.0p" is not a list of comparisons such as ">=1.2.0 <2.0.0""#)
        );
    }

    #[test]
    fn odd_tags_never_panic_any_policy() {
        let long = "1".repeat(100_000);
        let tags = [
            "",
            " ",
            "é",
            "\u{1F600}",
            "\u{0}",
            "v",
            "1.2.3-é",
            "1e99999",
            "-0x1p99999",
            "NaN",
            long.as_str(),
            "18446744073709551616.0.0",
            "0.0.0-0",
        ];
        let filter = TagFilter::new(r"(?P<all>.*)", "${all}").expect("valid");
        for policy in [
            semver("*"),
            semver(">=0.0.0-0"),
            TagPolicy::alphabetical(Order::Asc),
            TagPolicy::alphabetical(Order::Desc),
            TagPolicy::numerical(Order::Asc),
        ] {
            let _ = policy.latest(&tags, None);
            let _ = policy.latest(&tags, Some(&filter));
            for tag in tags {
                let _ = policy.latest(&[tag], None);
            }
        }
        assert_eq!(latest(&semver(">=0.0.0-0"), &tags), "0.0.0-0");
    }
}
