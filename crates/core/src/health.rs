//! Health of objects and of the sets they form.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How healthy an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthState {
    /// Doing what it should.
    Healthy,
    /// On its way (rolling out, waiting for replicas, a Job still running).
    Progressing,
    /// Failed or unable to progress.
    Degraded,
    /// Deliberately paused (a suspended CronJob, a paused Deployment).
    Suspended,
    /// Expected but absent from the cluster.
    Missing,
    /// No rule says (an unknown kind without conditions).
    Unknown,
}

impl HealthState {
    /// Rank for roll-ups: higher is worse. Degraded > Missing > Progressing > Suspended > Healthy;
    /// Unknown ranks lowest so objects no rule covers never hide a real state.
    pub fn severity(self) -> u8 {
        match self {
            HealthState::Unknown => 0,
            HealthState::Healthy => 1,
            HealthState::Suspended => 2,
            HealthState::Progressing => 3,
            HealthState::Missing => 4,
            HealthState::Degraded => 5,
        }
    }

    /// Healthy (or nothing to judge).
    pub fn is_ready(self) -> bool {
        matches!(self, HealthState::Healthy | HealthState::Unknown)
    }

    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "Healthy",
            HealthState::Progressing => "Progressing",
            HealthState::Degraded => "Degraded",
            HealthState::Suspended => "Suspended",
            HealthState::Missing => "Missing",
            HealthState::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health state with the reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The state.
    pub state: HealthState,
    /// Why, in a sentence (empty when healthy).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Health {
    /// Healthy, with no message.
    pub fn healthy() -> Self {
        Health {
            state: HealthState::Healthy,
            message: String::new(),
        }
    }

    /// A state with a reason.
    pub fn new(state: HealthState, message: impl Into<String>) -> Self {
        Health {
            state,
            message: message.into(),
        }
    }

    /// The worst of several: Degraded > Missing > Progressing > Suspended > Healthy
    /// (> Unknown). An empty set is Healthy.
    pub fn worst<'a>(all: impl IntoIterator<Item = &'a Health>) -> Health {
        all.into_iter()
            .max_by_key(|h| h.state.severity())
            .cloned()
            .unwrap_or_else(Health::healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_up_is_worst_first() {
        let hs = [
            Health::healthy(),
            Health::new(HealthState::Progressing, "1 of 2 replicas"),
            Health::new(HealthState::Missing, "not found"),
            Health::new(HealthState::Suspended, "paused"),
        ];
        assert_eq!(Health::worst(&hs).state, HealthState::Missing);
        let with_degraded = [
            Health::new(HealthState::Degraded, "x"),
            Health::new(HealthState::Missing, "y"),
        ];
        assert_eq!(Health::worst(&with_degraded).state, HealthState::Degraded);
        assert_eq!(
            Health::worst(&[Health::new(HealthState::Unknown, ""), Health::healthy()]).state,
            HealthState::Healthy
        );
        assert_eq!(Health::worst(&[]).state, HealthState::Healthy);
        let progressing_over_suspended = [
            Health::new(HealthState::Suspended, "paused"),
            Health::new(HealthState::Progressing, "rolling out"),
            Health::healthy(),
        ];
        assert_eq!(
            Health::worst(&progressing_over_suspended),
            Health::new(HealthState::Progressing, "rolling out"),
            "the worst keeps its reason"
        );
        let suspended_over_healthy = [
            Health::healthy(),
            Health::new(HealthState::Suspended, "paused"),
        ];
        assert_eq!(
            Health::worst(&suspended_over_healthy).state,
            HealthState::Suspended
        );
        let order = [
            HealthState::Healthy,
            HealthState::Suspended,
            HealthState::Progressing,
            HealthState::Missing,
            HealthState::Degraded,
        ];
        assert!(
            order.windows(2).all(|w| w[0].severity() < w[1].severity()),
            "Degraded > Missing > Progressing > Suspended > Healthy"
        );
    }
}
