//! Flux's own image-policy test tables, run against Capstan's tag policies.
//!
//! The tables are image-reflector-controller's Go tests (semver, alphabetical, numerical,
//! the policy factory, filterTags and the controller's applyPolicy), transcribed case by
//! case into `shared/conformance/flux-image-policies/policies.json` next to the project
//! (its README names the upstream commit and files). They are read from there, never
//! copied here. With `CI` set they must be present; elsewhere the test says they are
//! missing and passes.

use std::path::Path;

use capstan_engine::images::policy::{
    OrderChoice, PolicyChoice, PolicyError, SemverChoice, TagFilter, TagPolicy,
};
use serde::Deserialize;
use serde_json::Value;

/// Cases where Capstan deliberately gives another answer than Flux, and why: the one
/// place such a difference may be written down. There are none. An entry names every
/// case with that `origin`; those cases are still run and must differ, so the list
/// cannot go stale.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    // ("<origin of the case>", "<why Capstan answers differently>"),
];

/// How many cases the README describes; a different count means the data changed and
/// this test should be read again.
const CASES: usize = 68;

#[derive(Deserialize)]
struct Table {
    source: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    origin: String,
    kind: String,
    #[serde(default)]
    params: Params,
    filter: Option<FilterParams>,
    #[serde(default)]
    tags: Vec<String>,
    expected: Option<Value>,
    #[serde(default)]
    expected_error: bool,
    check: Option<String>,
}

#[derive(Deserialize, Default)]
struct Params {
    range: Option<String>,
    order: Option<String>,
    pattern: Option<String>,
    extract: Option<String>,
}

#[derive(Deserialize)]
struct FilterParams {
    pattern: String,
    #[serde(default)]
    extract: String,
}

/// What a case gives: a value (a tag, `"ok"`, or a list of tags) or an error.
#[derive(Debug, PartialEq)]
enum Answer {
    Value(Value),
    Error(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Value(value) => write!(f, "{value}"),
            Answer::Error(message) => write!(f, "an error ({message})"),
        }
    }
}

impl Case {
    fn expected(&self) -> Result<Answer, String> {
        match (&self.expected, self.expected_error) {
            (Some(value), false) => Ok(Answer::Value(value.clone())),
            (None, true) => Ok(Answer::Error("any".to_owned())),
            _ => Err("the case gives neither `expected` nor `expected_error: true`".to_owned()),
        }
    }

    /// Capstan's answer to the case.
    fn answer(&self) -> Result<Answer, String> {
        let error = |e: PolicyError| Answer::Error(error_chain(&e));
        Ok(match self.kind.as_str() {
            "filterTags" => {
                let pattern = self.params.pattern.as_deref().unwrap_or_default();
                let extract = self.params.extract.as_deref().unwrap_or_default();
                match TagFilter::new(pattern, extract) {
                    Ok(filter) => {
                        let mut values: Vec<String> = filter
                            .apply(&self.tags)
                            .into_iter()
                            .map(|passed| passed.value.into_owned())
                            .collect();
                        values.sort();
                        values.dedup();
                        Answer::Value(values.into())
                    }
                    Err(e) => error(e),
                }
            }
            "semver" | "alphabetical" | "numerical" | "none" => {
                let policy = TagPolicy::from_choice(&self.choice()?);
                if self.check.as_deref() == Some("construct") {
                    return Ok(match policy {
                        Ok(_) => Answer::Value("ok".into()),
                        Err(e) => error(e),
                    });
                }
                let chosen = policy.and_then(|policy| {
                    let filter = match &self.filter {
                        Some(f) => Some(TagFilter::new(&f.pattern, &f.extract)?),
                        None => None,
                    };
                    policy.latest(&self.tags, filter.as_ref())
                });
                match chosen {
                    Ok(tag) => Answer::Value(tag.into()),
                    Err(e) => error(e),
                }
            }
            other => return Err(format!("unknown kind {other:?}")),
        })
    }

    /// The case's policy as an `ImagePolicy` spec would write it.
    fn choice(&self) -> Result<PolicyChoice, String> {
        let order = || OrderChoice {
            order: self.params.order.clone().unwrap_or_default(),
        };
        let mut choice = PolicyChoice::default();
        match self.kind.as_str() {
            "semver" => {
                let range = self
                    .params
                    .range
                    .clone()
                    .ok_or("a semver case without range")?;
                choice.semver = Some(SemverChoice { range });
            }
            "alphabetical" => choice.alphabetical = Some(order()),
            "numerical" => choice.numerical = Some(order()),
            _ => {}
        }
        Ok(choice)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[test]
fn every_flux_image_policy_case_gives_fluxs_answer() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/flux-image-policies/policies.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if std::env::var_os("CI").is_some() => panic!(
            "CI is set, so Flux's image-policy tables must be at {}: {error}",
            path.display()
        ),
        Err(error) => {
            eprintln!(
                "Flux's image-policy tables are not there ({}: {error}), so this test checked \
                 nothing. With them it checks that every case of image-reflector-controller's \
                 policy tests (semver ranges, alphabetical and numerical orders, the policy \
                 factory, filterTags pattern and extract, expected errors) gives Flux's answer.",
                path.display()
            );
            return;
        }
    };
    let table: Table = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    assert_eq!(
        table.cases.len(),
        CASES,
        "{} ({}) no longer has the {CASES} cases its README describes; read the data again",
        path.display(),
        table.source
    );

    let mut failures = Vec::new();
    let mut deliberate = Vec::new();
    for (index, case) in table.cases.iter().enumerate() {
        let label = format!("case {index} ({}, {:?})", case.origin, case.kind);
        let (expected, answer) = match (case.expected(), case.answer()) {
            (Ok(expected), Ok(answer)) => (expected, answer),
            (Err(problem), _) | (_, Err(problem)) => {
                failures.push(format!("{label}: {problem}"));
                continue;
            }
        };
        let agrees = match (&expected, &answer) {
            (Answer::Error(_), Answer::Error(_)) => true,
            (expected, answer) => expected == answer,
        };
        let why = DELIBERATE_DIFFERENCES
            .iter()
            .find(|(origin, _)| *origin == case.origin)
            .map(|(_, why)| why);
        match (agrees, why) {
            (true, None) => {}
            (false, Some(why)) => deliberate.push(format!("{label}: {why}")),
            (true, Some(_)) => failures.push(format!(
                "{label}: listed as a deliberate difference but gives Flux's answer; \
                 remove it from DELIBERATE_DIFFERENCES"
            )),
            (false, None) => failures.push(format!(
                "{label}: Flux gives {expected}, Capstan gives {answer} (tags {:?})",
                case.tags
            )),
        }
    }
    for line in &deliberate {
        eprintln!("differs deliberately: {line}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} Flux image-policy cases do not give Flux's answer:\n{}",
        failures.len(),
        table.cases.len(),
        failures.join("\n")
    );
}
