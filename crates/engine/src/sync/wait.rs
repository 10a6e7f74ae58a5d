//! Waiting for health: poll the objects until all are settled (healthy, suspended, or
//! without a health rule), one of them degrades, or the time is up. A failed wait
//! names every object that is not healthy, with its reason (degraded ones first).

use std::time::Duration;

use capstan_core::{Health, HealthState, ObjectRef};
use futures::{StreamExt, stream};

use crate::destination::Destination;
use crate::health::{self, CustomHealth};

/// Objects that did not become healthy.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Degraded, or still not healthy when the time ran out.
    #[error("{}", describe(.unhealthy, .timed_out))]
    Unhealthy {
        /// The objects that are not healthy, with why.
        unhealthy: Vec<(ObjectRef, Health)>,
        /// Every object's health at the end.
        all: Vec<(ObjectRef, Health)>,
        /// Whether the wait ran out of time (else something degraded).
        timed_out: bool,
    },
}

fn describe(unhealthy: &[(ObjectRef, Health)], timed_out: &bool) -> String {
    let head = if *timed_out {
        "timed out waiting for health"
    } else {
        "objects degraded"
    };
    let lines: Vec<String> = unhealthy
        .iter()
        .map(|(id, h)| {
            if h.message.is_empty() {
                format!("{id} is {}", h.state)
            } else {
                format!("{id} is {}: {}", h.state, h.message)
            }
        })
        .collect();
    format!("{head}: {}", lines.join("; "))
}

/// The health of one object as it is now, by the built-in rules (Missing when absent).
pub async fn health_of(dest: &Destination, api_version: &str, id: &ObjectRef) -> Health {
    health_of_with(dest, api_version, id, CustomHealth::none()).await
}

/// The health of one object as it is now, the `custom` rules taking precedence over the
/// built-in ones for their kinds (Missing when absent).
pub async fn health_of_with(
    dest: &Destination,
    api_version: &str,
    id: &ObjectRef,
    custom: &CustomHealth,
) -> Health {
    let api = match dest.api_for(api_version, id).await {
        Ok(api) => api,
        Err(e) => return Health::new(HealthState::Missing, e.to_string()),
    };
    match api.get_opt(&id.name).await {
        Ok(Some(obj)) => {
            health::assess_with(&serde_json::to_value(obj).unwrap_or_default(), custom)
        }
        Ok(None) => Health::new(HealthState::Missing, "not found in the cluster"),
        Err(e) => Health::new(HealthState::Unknown, format!("reading it failed: {e}")),
    }
}

/// Wait until every object is settled; degraded objects fail the wait at once.
pub async fn wait_healthy(
    dest: &Destination,
    objects: &[(String, ObjectRef)],
    timeout: Duration,
    custom: &CustomHealth,
    mut on_pending: impl FnMut(&[(ObjectRef, Health)]),
) -> Result<Vec<(ObjectRef, Health)>, WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        let all: Vec<(ObjectRef, Health)> = stream::iter(objects.iter().cloned())
            .map(|(v, id)| async move {
                let h = health_of_with(dest, &v, &id, custom).await;
                (id, h)
            })
            .buffered(16)
            .collect()
            .await;
        let pending: Vec<(ObjectRef, Health)> = all
            .iter()
            .filter(|(_, h)| !super::is_settled(h.state))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(all);
        }
        if pending
            .iter()
            .any(|(_, h)| h.state == HealthState::Degraded)
        {
            // Fail at once, naming every object that is not healthy: the degraded
            // ones first, then those still on their way.
            let (mut unhealthy, progressing): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|(_, h)| h.state == HealthState::Degraded);
            unhealthy.extend(progressing);
            return Err(WaitError::Unhealthy {
                unhealthy,
                all,
                timed_out: false,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WaitError::Unhealthy {
                unhealthy: pending,
                all,
                timed_out: true,
            });
        }
        on_pending(&pending);
        tokio::time::sleep(
            delay.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
