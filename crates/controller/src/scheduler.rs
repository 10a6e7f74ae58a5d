//! When each Application is reconciled: a keyed queue of due times.
//!
//! A key is in the queue at most once, at its earliest due time; scheduling it
//! earlier moves it up, later is ignored. A key being reconciled is not handed out
//! again; if it is scheduled meanwhile, it runs once more right after. Workers take
//! the earliest due key.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::reconcile::Trigger;

/// `namespace/name` of an Application.
pub type AppKey = (String, String);

#[derive(Default)]
struct Queue {
    due: BTreeSet<(Instant, u64, AppKey)>,
    by_key: HashMap<AppKey, (Instant, u64, Trigger)>,
    running: HashSet<AppKey>,
    again: HashMap<AppKey, (Instant, Trigger)>,
    seq: u64,
}

/// The work queue.
#[derive(Default)]
pub struct Scheduler {
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Scheduler {
    /// Schedule `key` at `at` (or earlier if it already is).
    pub fn schedule(&self, key: AppKey, at: Instant, trigger: Trigger) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.running.contains(&key) {
            let keep = q.again.get(&key).is_some_and(|(t, _)| *t <= at);
            if !keep {
                q.again.insert(key, (at, trigger));
            }
            return;
        }
        if let Some((t, seq, _)) = q.by_key.get(&key).cloned() {
            if t <= at {
                return;
            }
            q.due.remove(&(t, seq, key.clone()));
        }
        q.seq += 1;
        let seq = q.seq;
        q.due.insert((at, seq, key.clone()));
        q.by_key.insert(key, (at, seq, trigger));
        drop(q);
        self.notify.notify_one();
    }

    /// Forget `key` (the Application was deleted).
    pub fn remove(&self, key: &AppKey) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, seq, _)) = q.by_key.remove(key) {
            q.due.remove(&(t, seq, key.clone()));
        }
        q.again.remove(key);
    }

    /// Wait for the next due key and mark it running.
    pub async fn next(&self) -> (AppKey, Trigger) {
        loop {
            let wait_until = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                match q.due.first().cloned() {
                    Some((t, seq, key)) if t <= Instant::now() => {
                        q.due.remove(&(t, seq, key.clone()));
                        let (_, _, trigger) = q.by_key.remove(&key).expect("indexed");
                        q.running.insert(key.clone());
                        return (key, trigger);
                    }
                    Some((t, _, _)) => Some(t),
                    None => None,
                }
            };
            let notified = self.notify.notified();
            match wait_until {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The key finished; schedule its next run (or the one asked for meanwhile).
    pub fn done(&self, key: AppKey, next: Instant, trigger: Trigger) {
        let again = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.running.remove(&key);
            q.again.remove(&key)
        };
        self.schedule(key.clone(), next, trigger);
        if let Some((at, t)) = again {
            self.schedule(key, at, t);
        }
        self.notify.notify_waiters();
    }

    /// The key finished without a next run (its Application is gone); a run asked
    /// for meanwhile still happens.
    pub fn release(&self, key: AppKey) {
        let again = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.running.remove(&key);
            q.again.remove(&key)
        };
        if let Some((at, t)) = again {
            self.schedule(key, at, t);
        }
        self.notify.notify_waiters();
    }

    /// Keys scheduled or running.
    pub fn len(&self) -> usize {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.by_key.len() + q.running.len()
    }

    /// Whether nothing is scheduled or running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: &str) -> AppKey {
        ("default".into(), n.into())
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_first_once_per_key_and_reruns_after_running() {
        let s = Scheduler::default();
        let now = Instant::now();
        s.schedule(key("b"), now + Duration::from_secs(5), Trigger::Interval);
        s.schedule(key("a"), now + Duration::from_secs(10), Trigger::Interval);
        s.schedule(key("a"), now + Duration::from_secs(1), Trigger::Spec);
        s.schedule(key("a"), now + Duration::from_secs(20), Trigger::Interval);
        assert_eq!(s.len(), 2);
        let (k, t) = s.next().await;
        assert_eq!((k, t), (key("a"), Trigger::Spec));
        // scheduled while running: runs again after it finishes
        s.schedule(key("a"), Instant::now(), Trigger::Drift);
        let (k, _) = s.next().await;
        assert_eq!(k, key("b"), "a running key is not handed out twice");
        s.done(
            key("a"),
            Instant::now() + Duration::from_secs(100),
            Trigger::Interval,
        );
        let (k, t) = s.next().await;
        assert_eq!((k, t), (key("a"), Trigger::Drift));
        s.done(
            key("a"),
            Instant::now() + Duration::from_secs(100),
            Trigger::Interval,
        );
        s.remove(&key("a"));
        // b is still running (handed out above). Released without a next run, it is
        // gone...
        s.release(key("b"));
        assert!(s.is_empty());
        // ...unless a run was asked for while it ran.
        s.schedule(key("b"), Instant::now(), Trigger::Spec);
        let (k, _) = s.next().await;
        assert_eq!(k, key("b"));
        s.schedule(key("b"), Instant::now(), Trigger::Drift);
        s.release(key("b"));
        assert_eq!(s.len(), 1, "b runs again");
        let (k, t) = s.next().await;
        assert_eq!((k, t), (key("b"), Trigger::Drift));
    }
}
