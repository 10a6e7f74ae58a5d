//! Choosing a chart version as Helm does: a version listed exactly as asked for wins;
//! otherwise what was asked for is a Masterminds range (the engine's image-tag
//! [`TagPolicy`]), empty meaning `*` (the highest version that is not a prerelease).

use crate::images::policy::{PolicyError, TagPolicy};

use super::{ChartError, ChartId};

/// How many versions an error lists.
const SHOWN: usize = 5;

/// The version of `available` that `chart.version` asks for.
pub(super) fn pick(chart: &ChartId, available: &[String]) -> Result<String, ChartError> {
    let requested = chart.version.trim();
    if !requested.is_empty() && available.iter().any(|v| v == requested) {
        return Ok(requested.to_string());
    }
    let range = if requested.is_empty() { "*" } else { requested };
    let policy = TagPolicy::semver(range).map_err(|source| ChartError::InvalidVersion {
        chart: chart.clone(),
        source: Box::new(source),
    })?;
    match policy.latest(available, None) {
        Ok(version) => Ok(version),
        Err(PolicyError::NoTags | PolicyError::NoTagInRange { .. }) => {
            Err(ChartError::NoMatchingVersion {
                chart: chart.clone(),
                available: summary(available),
            })
        }
        Err(source) => Err(ChartError::InvalidVersion {
            chart: chart.clone(),
            source: Box::new(source),
        }),
    }
}

/// A few of `versions`, highest first: `1.3.0, 1.2.0, 1.0.0 and 4 more`, or `none`.
pub(super) fn summary(versions: &[String]) -> String {
    if versions.is_empty() {
        return "none".into();
    }
    let mut sorted: Vec<&String> = versions.iter().collect();
    let key = |v: &str| semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok();
    sorted.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| b.cmp(a)));
    sorted.dedup();
    let mut out = sorted
        .iter()
        .take(SHOWN)
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if sorted.len() > SHOWN {
        out.push_str(&format!(" and {} more", sorted.len() - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(version: &str) -> ChartId {
        ChartId {
            repo: "https://charts.example.com".into(),
            chart: "app".into(),
            version: version.into(),
        }
    }

    fn versions(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_versions_ranges_and_the_latest_release_are_chosen_as_helm_does() {
        let all = versions(&["1.0.0", "1.2.0", "1.9.1", "2.0.0", "2.1.0-rc.1"]);
        assert_eq!(pick(&id("1.2.0"), &all).unwrap(), "1.2.0");
        assert_eq!(pick(&id(">=1.2 <2"), &all).unwrap(), "1.9.1");
        assert_eq!(pick(&id("1.x"), &all).unwrap(), "1.9.1");
        assert_eq!(pick(&id(""), &all).unwrap(), "2.0.0", "no prerelease");
        assert_eq!(
            pick(&id("2.1.0-rc.1"), &all).unwrap(),
            "2.1.0-rc.1",
            "a prerelease asked for by name"
        );
        assert_eq!(pick(&id(">=2.1.0-0"), &all).unwrap(), "2.1.0-rc.1");
    }

    #[test]
    fn no_match_lists_a_few_versions_highest_first() {
        let all = versions(&[
            "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.10.0", "0.6.0",
        ]);
        let e = pick(&id("^1"), &all).unwrap_err();
        assert_eq!(
            e.to_string(),
            "chart app ^1 from https://charts.example.com: no version matches \
             (versions: 0.10.0, 0.6.0, 0.5.0, 0.4.0, 0.3.0 and 2 more)"
        );
        let e = pick(&id("1.0.0"), &[]).unwrap_err();
        assert!(e.to_string().ends_with("(versions: none)"), "{e}");
        let e = pick(&id(">=banana"), &all).unwrap_err();
        assert!(matches!(e, ChartError::InvalidVersion { .. }), "{e}");
    }
}
