//! Fault injection: the server misbehaves on purpose, as a busy or failing
//! kube-apiserver does, so clients can be tested against errors they rarely see.
//!
//! Off by default. A [`FaultPlan`] is parsed from a spec such as
//! `rate=0.1,status=500|503|429|409,delay=2s,reset,watch-close=5s,gone,verbs=create|patch,resources=configmaps`:
//!
//! | key | fault |
//! |---|---|
//! | `rate=R` | the share of matching requests that get a fault (0 to 1; required) |
//! | `status=C\|C…` | answer with one of these codes instead of carrying the request out: 500 `InternalError`, 503 `ServiceUnavailable` and 429 `TooManyRequests` (both with `Retry-After: 1`), 409 `Conflict` (writes only), 504 `Timeout` |
//! | `delay=D` (or `timeout=D`) | a slow answer: wait up to `D` before carrying the request out |
//! | `reset` | carry the request out, then drop the connection before the answer is sent (the client cannot know whether a write happened) |
//! | `watch-close=D` | close a watch early, at a random time within `D` |
//! | `gone` | answer a watch that resumes from a resourceVersion with `410 Expired`, as when the history is compacted |
//! | `verbs=V\|V…` | only these verbs (get, list, watch, create, update, patch, delete, deletecollection) |
//! | `resources=R\|R…` | only these resources (plural, e.g. `configmaps`, `deployments`); a subresource as `deployments/status` |
//! | `seed=N` | a fixed random seed, so a run can be repeated |
//!
//! Each matching request draws once: with probability `rate` it gets one of the faults
//! that can apply to it (a 409 only to a write, `gone` only to a resumed watch,
//! `watch-close` only to a watch), chosen uniformly. Discovery, `/version`, `/openapi`
//! and the health endpoints never get faults. Every fault is counted ([`Faults::stats`])
//! and logged at debug level.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A status code the plan may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultStatus {
    /// 409 Conflict (only for writes).
    Conflict,
    /// 429 TooManyRequests with `Retry-After: 1`.
    TooManyRequests,
    /// 500 InternalError.
    Internal,
    /// 503 ServiceUnavailable with `Retry-After: 1`.
    Unavailable,
    /// 504 Timeout.
    Timeout,
}

impl FaultStatus {
    /// The HTTP status code.
    pub fn code(self) -> u16 {
        match self {
            FaultStatus::Conflict => 409,
            FaultStatus::TooManyRequests => 429,
            FaultStatus::Internal => 500,
            FaultStatus::Unavailable => 503,
            FaultStatus::Timeout => 504,
        }
    }

    fn from_code(code: &str) -> Option<FaultStatus> {
        Some(match code {
            "409" => FaultStatus::Conflict,
            "429" => FaultStatus::TooManyRequests,
            "500" => FaultStatus::Internal,
            "503" => FaultStatus::Unavailable,
            "504" => FaultStatus::Timeout,
            _ => return None,
        })
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status instead of carrying the request out.
    Status(FaultStatus),
    /// Wait this long, then carry the request out.
    Delay(Duration),
    /// Carry the request out, then drop the connection without an answer.
    Reset,
    /// Close the watch after this long.
    CloseWatch(Duration),
    /// Answer the resumed watch with `410 Expired`.
    Gone,
}

impl Fault {
    /// A short name, for counting and logs.
    pub fn name(&self) -> String {
        match self {
            Fault::Status(s) => s.code().to_string(),
            Fault::Delay(_) => "delay".into(),
            Fault::Reset => "reset".into(),
            Fault::CloseWatch(_) => "watch-close".into(),
            Fault::Gone => "gone".into(),
        }
    }
}

/// Which faults to inject, and where. Parsed from a spec (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// The share of matching requests that get a fault, 0 to 1.
    pub rate: f64,
    /// Status codes to answer with.
    pub statuses: Vec<FaultStatus>,
    /// Slow answers, up to this long.
    pub delay: Option<Duration>,
    /// Dropped connections after the request was carried out.
    pub reset: bool,
    /// Watches closed early, within this long.
    pub watch_close: Option<Duration>,
    /// `410 Expired` for resumed watches.
    pub gone: bool,
    /// Only these verbs (all when `None`).
    pub verbs: Option<Vec<String>>,
    /// Only these resources, `plural` or `plural/subresource` (all when `None`).
    pub resources: Option<Vec<String>>,
    /// The random seed (from entropy when `None`).
    pub seed: Option<u64>,
}

/// A fault spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault spec {spec:?}: {problem}")]
pub struct FaultSpecError {
    /// The whole spec.
    pub spec: String,
    /// What is wrong, naming the key.
    pub problem: String,
}

const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

impl FromStr for FaultPlan {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |problem: String| FaultSpecError {
            spec: spec.to_string(),
            problem,
        };
        let mut plan = FaultPlan {
            rate: f64::NAN,
            statuses: Vec::new(),
            delay: None,
            reset: false,
            watch_close: None,
            gone: false,
            verbs: None,
            resources: None,
            seed: None,
        };
        let duration = |key: &str, v: &str| {
            humantime::parse_duration(v).map_err(|e| {
                fail(format!(
                    "{key}={v:?} is not a duration (e.g. 2s, 500ms): {e}"
                ))
            })
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            fn needs<'v>(
                key: &str,
                v: Option<&'v str>,
                fail: &dyn Fn(String) -> FaultSpecError,
            ) -> Result<&'v str, FaultSpecError> {
                v.filter(|v| !v.is_empty())
                    .ok_or_else(|| fail(format!("{key} needs a value ({key}=...)")))
            }
            let need = |v| needs(key, v, &fail);
            match key {
                "rate" => {
                    let v = need(value)?;
                    plan.rate = v
                        .parse::<f64>()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| fail(format!("rate={v:?} is not a number from 0 to 1")))?;
                }
                "status" => {
                    for code in need(value)?.split('|') {
                        let s = FaultStatus::from_code(code.trim()).ok_or_else(|| {
                            fail(format!(
                                "status {code:?} is not one of 409, 429, 500, 503, 504"
                            ))
                        })?;
                        if !plan.statuses.contains(&s) {
                            plan.statuses.push(s);
                        }
                    }
                }
                "delay" | "timeout" => plan.delay = Some(duration(key, need(value)?)?),
                "watch-close" => plan.watch_close = Some(duration(key, need(value)?)?),
                "reset" | "gone" if value.is_some() => {
                    return Err(fail(format!("{key} takes no value")));
                }
                "reset" => plan.reset = true,
                "gone" => plan.gone = true,
                "verbs" => {
                    let verbs: Vec<String> = need(value)?
                        .split('|')
                        .map(|v| v.trim().to_string())
                        .collect();
                    if let Some(bad) = verbs.iter().find(|v| !VERBS.contains(&v.as_str())) {
                        return Err(fail(format!(
                            "verb {bad:?} is not one of {}",
                            VERBS.join(", ")
                        )));
                    }
                    plan.verbs = Some(verbs);
                }
                "resources" => {
                    plan.resources = Some(
                        need(value)?
                            .split('|')
                            .map(|v| v.trim().to_string())
                            .collect(),
                    )
                }
                "seed" => {
                    let v = need(value)?;
                    plan.seed = Some(
                        v.parse()
                            .map_err(|_| fail(format!("seed={v:?} is not a whole number")))?,
                    );
                }
                other => {
                    return Err(fail(format!(
                        "unknown key {other:?} (rate, status, delay, reset, watch-close, gone, verbs, resources, seed)"
                    )));
                }
            }
        }
        if plan.rate.is_nan() {
            return Err(fail("rate=R is required (e.g. rate=0.1)".into()));
        }
        if plan.statuses.is_empty()
            && plan.delay.is_none()
            && !plan.reset
            && plan.watch_close.is_none()
            && !plan.gone
        {
            return Err(fail(
                "names no fault: give status=..., delay=..., reset, watch-close=... or gone".into(),
            ));
        }
        Ok(plan)
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate={}", self.rate)?;
        if !self.statuses.is_empty() {
            let codes: Vec<String> = self.statuses.iter().map(|s| s.code().to_string()).collect();
            write!(f, ",status={}", codes.join("|"))?;
        }
        if let Some(d) = self.delay {
            write!(f, ",delay={}", humantime::format_duration(d))?;
        }
        if self.reset {
            write!(f, ",reset")?;
        }
        if let Some(d) = self.watch_close {
            write!(f, ",watch-close={}", humantime::format_duration(d))?;
        }
        if self.gone {
            write!(f, ",gone")?;
        }
        if let Some(v) = &self.verbs {
            write!(f, ",verbs={}", v.join("|"))?;
        }
        if let Some(r) = &self.resources {
            write!(f, ",resources={}", r.join("|"))?;
        }
        if let Some(s) = self.seed {
            write!(f, ",seed={s}")?;
        }
        Ok(())
    }
}

/// The request a fault is drawn for.
#[derive(Debug, Clone, Copy)]
pub struct FaultTarget<'a> {
    /// The RBAC verb.
    pub verb: &'a str,
    /// The resource (plural).
    pub resource: &'a str,
    /// The subresource, if any.
    pub subresource: Option<&'a str>,
    /// For a watch: whether it resumes from a resourceVersion.
    pub resumes: bool,
}

/// A plan being carried out: the random source and the counts.
pub struct Faults {
    plan: FaultPlan,
    rng: Mutex<StdRng>,
    requests: AtomicU64,
    counts: Mutex<BTreeMap<String, u64>>,
}

/// What has been injected so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests that matched the plan's scope.
    pub requests: u64,
    /// Faults injected, by name (`500`, `reset`, `watch-close`, …).
    pub injected: BTreeMap<String, u64>,
}

impl FaultStats {
    /// All faults injected.
    pub fn total(&self) -> u64 {
        self.injected.values().sum()
    }
}

impl fmt::Display for FaultStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults injected in {} requests",
            self.total(),
            self.requests
        )?;
        if !self.injected.is_empty() {
            let parts: Vec<String> = self
                .injected
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

impl Faults {
    /// Start carrying out `plan`.
    pub fn new(plan: FaultPlan) -> Faults {
        let rng = match plan.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Faults {
            plan,
            rng: Mutex::new(rng),
            requests: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// The plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// What has been injected so far.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            requests: self.requests.load(Ordering::Relaxed),
            injected: self.counts.lock().clone(),
        }
    }

    fn in_scope(&self, t: &FaultTarget<'_>) -> bool {
        let verb_ok = self
            .plan
            .verbs
            .as_ref()
            .is_none_or(|v| v.iter().any(|v| v == t.verb));
        let resource_ok = self.plan.resources.as_ref().is_none_or(|rs| {
            rs.iter().any(|r| match (r.split_once('/'), t.subresource) {
                (Some((res, sub)), Some(s)) => res == t.resource && sub == s,
                (None, None) => r == t.resource,
                _ => false,
            })
        });
        verb_ok && resource_ok
    }

    /// Draw a fault for one request: `None` for most.
    pub fn draw(&self, t: FaultTarget<'_>) -> Option<Fault> {
        if !self.in_scope(&t) {
            return None;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let write = matches!(
            t.verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        );
        let watch = t.verb == "watch";
        let fault = {
            let mut rng = self.rng.lock();
            if !rng.random_bool(self.plan.rate) {
                return None;
            }
            let mut choices: Vec<Fault> = self
                .plan
                .statuses
                .iter()
                .filter(|s| write || **s != FaultStatus::Conflict)
                .map(|s| Fault::Status(*s))
                .collect();
            if let Some(d) = self.plan.delay {
                choices.push(Fault::Delay(random_up_to(&mut rng, d)));
            }
            if self.plan.reset {
                choices.push(Fault::Reset);
            }
            if watch && let Some(d) = self.plan.watch_close {
                choices.push(Fault::CloseWatch(random_up_to(&mut rng, d)));
            }
            if watch && t.resumes && self.plan.gone {
                choices.push(Fault::Gone);
            }
            if choices.is_empty() {
                return None;
            }
            choices[rng.random_range(0..choices.len())]
        };
        *self.counts.lock().entry(fault.name()).or_default() += 1;
        tracing::debug!(
            fault = %fault.name(),
            verb = t.verb,
            resource = t.resource,
            subresource = t.subresource.unwrap_or(""),
            "injecting a fault"
        );
        Some(fault)
    }
}

fn random_up_to(rng: &mut StdRng, max: Duration) -> Duration {
    let ms = max.as_millis().max(1) as u64;
    Duration::from_millis(rng.random_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(verb: &str) -> FaultTarget<'_> {
        FaultTarget {
            verb,
            resource: "configmaps",
            subresource: None,
            resumes: true,
        }
    }

    #[test]
    fn a_spec_parses_and_prints_back() {
        let plan: FaultPlan =
            "rate=0.1, status=500|503|429|409, timeout=2s, reset, watch-close=5s, gone, verbs=create|patch, resources=configmaps|deployments/status, seed=7"
                .parse()
                .unwrap();
        assert_eq!(plan.rate, 0.1);
        assert_eq!(
            plan.statuses,
            [
                FaultStatus::Internal,
                FaultStatus::Unavailable,
                FaultStatus::TooManyRequests,
                FaultStatus::Conflict
            ]
        );
        assert_eq!(plan.delay, Some(Duration::from_secs(2)));
        assert!(plan.reset && plan.gone);
        assert_eq!(plan.watch_close, Some(Duration::from_secs(5)));
        assert_eq!(plan.seed, Some(7));
        let again: FaultPlan = plan.to_string().parse().unwrap();
        assert_eq!(again, plan);
    }

    #[test]
    fn bad_specs_name_the_key() {
        for (spec, needle) in [
            ("status=500", "rate=R is required"),
            ("rate=2,status=500", "rate=\"2\""),
            ("rate=0.1", "names no fault"),
            ("rate=0.1,status=404", "status \"404\""),
            ("rate=0.1,delay=soon", "delay=\"soon\""),
            ("rate=0.1,reset=yes", "reset takes no value"),
            ("rate=0.1,reset,verbs=fetch", "verb \"fetch\""),
            ("rate=0.1,reset,colour=red", "unknown key \"colour\""),
            ("rate=0.1,reset,seed=x", "seed=\"x\""),
        ] {
            let err = spec.parse::<FaultPlan>().unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn the_rate_holds_and_faults_fit_the_request() {
        let faults = Faults::new("rate=0.25,status=409|500,seed=1".parse().unwrap());
        let mut injected = 0;
        for _ in 0..4000 {
            match faults.draw(target("get")) {
                Some(Fault::Status(FaultStatus::Internal)) => injected += 1,
                None => {}
                other => panic!("a read never gets {other:?}"),
            }
        }
        assert!((800..1200).contains(&injected), "{injected} of 4000");
        let stats = faults.stats();
        assert_eq!(stats.requests, 4000);
        assert_eq!(stats.total(), injected);
        // gone only for resumed watches, watch-close only for watches
        let faults = Faults::new("rate=1,gone,watch-close=1s,seed=2".parse().unwrap());
        assert_eq!(faults.draw(target("get")), None);
        let fresh = FaultTarget {
            resumes: false,
            ..target("watch")
        };
        assert!(matches!(faults.draw(fresh), Some(Fault::CloseWatch(_))));
    }

    #[test]
    fn the_scope_limits_verbs_and_resources() {
        let faults = Faults::new(
            "rate=1,status=500,verbs=patch,resources=deployments/status"
                .parse()
                .unwrap(),
        );
        assert_eq!(faults.draw(target("patch")), None, "configmaps are out");
        let status = FaultTarget {
            verb: "patch",
            resource: "deployments",
            subresource: Some("status"),
            resumes: false,
        };
        assert!(faults.draw(status).is_some());
        assert_eq!(
            faults.draw(FaultTarget {
                verb: "get",
                ..status
            }),
            None
        );
        assert_eq!(faults.stats().requests, 1);
    }
}
