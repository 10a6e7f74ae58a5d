//! What the scheduler remembers of an Application between reconciles.

use std::time::Duration;

/// Per-Application memory of the scheduler (lost on restart; nothing depends on it
/// for correctness, only for pacing).
#[derive(Debug, Clone, Default)]
pub struct AppMemory {
    /// Consecutive failed syncs.
    pub failures: u32,
    /// Self-heal delay after the last heal (zero: none yet).
    pub heal_delay: Duration,
    /// When drift was last healed.
    pub last_heal: Option<tokio::time::Instant>,
}

impl AppMemory {
    /// How long to wait before healing drift seen `now`: the first delay, doubled for
    /// every heal that drift came back after within `2 × max` (something keeps undoing
    /// Git's state), capped at `max`; back to the first delay once drift stayed away
    /// that long. Changes that needed no heal (a status update) do not count.
    pub fn heal_delay(
        &self,
        now: tokio::time::Instant,
        first: Duration,
        max: Duration,
    ) -> Duration {
        if self.healed_recently(now, max) {
            self.heal_delay.clamp(first, max)
        } else {
            first
        }
    }

    /// Drift was healed `now`: the next heal waits longer.
    pub fn healed(&mut self, now: tokio::time::Instant, first: Duration, max: Duration) {
        self.heal_delay = if self.healed_recently(now, max) {
            (self.heal_delay.max(first) * 2).min(max)
        } else {
            first
        };
        self.last_heal = Some(now);
    }

    /// Whether the last heal was less than `2 × max` before `now`.
    fn healed_recently(&self, now: tokio::time::Instant, max: Duration) -> bool {
        self.last_heal
            .is_some_and(|t| now.saturating_duration_since(t) < max * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heal_delay_grows_while_healed_drift_comes_back_and_resets_when_it_stays_away() {
        let (first, max) = (Duration::from_secs(2), Duration::from_secs(60));
        let t0 = tokio::time::Instant::now();
        let mut m = AppMemory::default();
        assert_eq!(m.heal_delay(t0, first, max), first, "never healed");
        let mut now = t0;
        let mut seen = Vec::new();
        for _ in 0..7 {
            m.healed(now, first, max);
            now += Duration::from_secs(1);
            seen.push(m.heal_delay(now, first, max).as_secs());
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 60, 60]);
        // quiet for twice the cap: the next drift is healed at the first delay again
        let later = now + max * 2;
        assert_eq!(m.heal_delay(later, first, max), first);
        m.healed(later, first, max);
        assert_eq!(m.heal_delay(later, first, max), first);
    }
}
