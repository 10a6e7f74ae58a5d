//! Capstan's health assessment against Argo CD's, on Argo CD's own fixtures.
//!
//! `shared/conformance/argo-health/cases.json` lists the objects of gitops-engine's
//! health tests with the status Argo CD gives each (and the message, where its test
//! asserts one). Every case must get the same from [`capstan_engine::health::assess`],
//! except the ones in [`DIFFERENCES`], each with Capstan's own verdict and the reason.
//! All disagreements are reported at once, each naming its file.
//!
//! The data stays in `shared/` (next to the project, never copied into it). When it is
//! absent, the test says so and what it would have checked; under CI it must be there.

use std::path::{Path, PathBuf};

use capstan_core::HealthState;
use serde::Deserialize;
use serde_json::Value;

/// One case where Capstan deliberately differs from the data: its own verdict, and why.
struct Difference {
    /// The case's `file`.
    file: &'static str,
    /// Capstan's verdict.
    capstan: HealthState,
    /// Why.
    why: &'static str,
}

/// The cases where Capstan deliberately differs. Nowhere else may a case be skipped, and
/// only two sorts of case may be here: those where Argo CD gives no health at all
/// (`expected_status: null`) and those of API versions Argo CD now calls unsupported.
/// Every other case, of the 50 fixtures of Argo CD itself, must agree.
const DIFFERENCES: &[Difference] = &[
    Difference {
        file: "testdata/knative-service.yaml",
        capstan: HealthState::Healthy,
        why: "Argo CD has no rule for serving.knative.dev and gives no health (null); Capstan \
              judges every custom resource by the kstatus conventions, as Flux users expect, \
              and an object without a status is healthy by being present",
    },
    Difference {
        file: "testdata/application-healthy.yaml",
        capstan: HealthState::Unknown,
        why: "Argo CD removed its Application rule and gives no health (null); Capstan's kstatus \
              rule finds no Ready/Stalled/Reconciling condition and says Unknown, which, like \
              Argo's null, never counts in the roll-up",
    },
    Difference {
        file: "testdata/application-degraded.yaml",
        capstan: HealthState::Unknown,
        why: "as application-healthy.yaml: no health from Argo CD (null), Unknown from Capstan",
    },
    Difference {
        file: "testdata-gitops-engine-only/hpa-v2beta2-healthy.yaml",
        capstan: HealthState::Unknown,
        why: "only the archived gitops-engine expects Healthy; Argo CD now calls \
              autoscaling/v2beta2 unsupported (Unknown), and so does Capstan: the API is no \
              longer served since Kubernetes 1.26",
    },
    Difference {
        file: "testdata-gitops-engine-only/hpa-v2beta1-healthy.yaml",
        capstan: HealthState::Unknown,
        why: "as hpa-v2beta2-healthy.yaml: Argo CD now calls autoscaling/v2beta1 unsupported \
              (no longer served since Kubernetes 1.25)",
    },
    Difference {
        file: "testdata-gitops-engine-only/hpa-v2beta1-healthy-disabled.yaml",
        capstan: HealthState::Unknown,
        why: "as hpa-v2beta1-healthy.yaml",
    },
];

/// One entry of `cases.json`.
#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    kind: String,
    expected_status: Option<HealthState>,
    #[serde(default)]
    expected_message: Option<String>,
}

#[test]
fn capstan_judges_every_argo_cd_health_fixture_as_argo_cd_does() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let cases: Vec<Case> = serde_json::from_str(&read(&dir.join("cases.json")))
        .expect("cases.json is a list of cases");
    let results: Vec<(&Case, Option<String>)> =
        cases.iter().map(|case| (case, check(&dir, case))).collect();
    let agreed = results
        .iter()
        .filter(|(case, failure)| failure.is_none() && difference(&case.file).is_none())
        .count();
    let mut failures: Vec<String> = results
        .into_iter()
        .filter_map(|(_, failure)| failure)
        .collect();
    failures.extend(stale_differences(&cases));
    eprintln!(
        "argo-health: {agreed} of {} cases agree with Argo CD; {} deliberate differences",
        cases.len(),
        DIFFERENCES.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Why a case fails, if it does.
fn check(dir: &Path, case: &Case) -> Option<String> {
    let obj = match read_as_argo_cd_does(&read(&dir.join(&case.file))) {
        Ok(obj) => obj,
        Err(e) => return Some(format!("{}: not readable: {e}", case.file)),
    };
    let Some(Difference { capstan, why, .. }) = difference(&case.file) else {
        return agrees_with_argo(case, &obj);
    };
    if let Some(expected) = case.expected_status
        && !case.file.starts_with("testdata-gitops-engine-only/")
    {
        return Some(format!(
            "{}: Argo CD says {expected} and the API is supported: such a case may not be a \
             difference, Capstan must agree",
            case.file
        ));
    }
    let health = capstan_engine::health::assess(&obj);
    (health.state != *capstan).then(|| {
        format!(
            "{}: expected Capstan's own {capstan} ({why}), judged {health:?}",
            case.file
        )
    })
}

/// A fixture read as Argo CD's test reads it: Go's YAML reader keeps the last of a
/// repeated key (`statefulset-ondelete.yaml` repeats `spec.updateStrategy`, with the same
/// value both times). Capstan's own readers refuse a repeated key, as a silent drop of
/// one value would be; here the subject is the health verdict, not the YAML.
fn read_as_argo_cd_does(text: &str) -> Result<Value, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    };
    serde_saphyr::from_str_with_options(text, options)
}

/// The deliberate difference listed for a case's file, if any.
fn difference(file: &str) -> Option<&'static Difference> {
    DIFFERENCES.iter().find(|d| d.file == file)
}

/// Why Capstan's verdict differs from Argo CD's for a case, if it does.
fn agrees_with_argo(case: &Case, obj: &Value) -> Option<String> {
    let health = capstan_engine::health::assess(obj);
    let Some(expected) = case.expected_status else {
        return Some(format!(
            "{}: Argo CD gives the {} no health (null), Capstan {health:?}: list it in DIFFERENCES with the reason",
            case.file, case.kind
        ));
    };
    if health.state != expected {
        return Some(format!(
            "{}: Argo CD says {expected}, Capstan {health:?}",
            case.file
        ));
    }
    match &case.expected_message {
        Some(message) if &health.message != message => Some(format!(
            "{}: Argo CD says {message:?}, Capstan {:?}",
            case.file, health.message
        )),
        _ => None,
    }
}

/// Differences that name no case: a renamed fixture must not leave one behind.
fn stale_differences(cases: &[Case]) -> Vec<String> {
    DIFFERENCES
        .iter()
        .filter(|d| !cases.iter().any(|case| case.file == d.file))
        .map(|d| format!("{}: listed in DIFFERENCES but not in cases.json", d.file))
        .collect()
}

/// `shared/conformance/argo-health` next to the project, or `None` (having said so) when
/// it is absent outside CI.
fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/argo-health");
    if dir.join("cases.json").is_file() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "the Argo CD health conformance data is missing: expected {}/cases.json (CI must have shared/ next to the project)",
            dir.display()
        );
    }
    eprintln!(
        "skipped: the Argo CD health conformance data is not at {} — it would have checked \
         that Capstan judges Argo CD's 53 health fixtures as Argo CD does",
        dir.display()
    );
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
