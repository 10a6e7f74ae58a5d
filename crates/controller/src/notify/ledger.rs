//! The record of what a Notification sent, kept in its status so every replica and
//! every restart reads the same one.
//!
//! A key is (Application uid, trigger, revision, destination). The record is
//! bounded: per Application the newest [`Ledger::per_application`] entries are kept,
//! and entries of Applications that no longer exist are dropped. An event whose
//! entry was dropped is not sent again as long as it is older than the oldest entry
//! kept for its Application.

use std::collections::HashMap;

use super::crd::{SentRecord, TriggerName};

/// The identity of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The Application's uid (`*` for the emergency stop).
    pub uid: String,
    /// The trigger.
    pub trigger: TriggerName,
    /// The revision.
    pub revision: String,
    /// The destination's name.
    pub destination: String,
}

impl Key {
    /// The key a record stands for.
    pub fn of(r: &SentRecord) -> Key {
        Key {
            uid: if r.uid.is_empty() {
                "*".into()
            } else {
                r.uid.clone()
            },
            trigger: r.trigger,
            revision: r.revision.clone(),
            destination: r.destination.clone(),
        }
    }

    /// A stable id of the delivery (`X-Capstan-Delivery`): the same on every retry and
    /// after a restart, so a receiver can drop a repeat.
    pub fn delivery_id(&self, notification_uid: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            notification_uid,
            &self.uid,
            self.trigger.as_str(),
            &self.revision,
            &self.destination,
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// What one Notification has sent.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Entries, oldest first.
    records: Vec<SentRecord>,
    /// Entries kept per Application.
    pub per_application: usize,
}

impl Ledger {
    /// A ledger holding `records` (from the status).
    pub fn new(records: Vec<SentRecord>, per_application: usize) -> Ledger {
        let mut l = Ledger {
            records: Vec::new(),
            per_application: per_application.max(1),
        };
        l.merge(&records);
        l
    }

    /// Add what another copy of the record holds (the status as last written).
    pub fn merge(&mut self, records: &[SentRecord]) {
        for r in records {
            if !self.contains(&Key::of(r)) {
                self.records.push(r.clone());
            }
        }
        self.records.sort_by(|a, b| a.time.cmp(&b.time));
    }

    /// Whether `key` was handled.
    pub fn contains(&self, key: &Key) -> bool {
        self.records.iter().any(|r| Key::of(r) == *key)
    }

    /// Whether an event of Application `uid` at `time` is older than what the record
    /// still remembers of it, once the record had to forget entries of it.
    pub fn forgotten(&self, uid: &str, time: Option<jiff::Timestamp>, full: bool) -> bool {
        if !full {
            return false;
        }
        let oldest = self
            .records
            .iter()
            .filter(|r| r.uid == uid)
            .filter_map(|r| r.time.parse::<jiff::Timestamp>().ok())
            .min();
        matches!((oldest, time), (Some(o), Some(t)) if t < o)
    }

    /// Whether the record holds as many entries of `uid` as it keeps.
    pub fn is_full(&self, uid: &str) -> bool {
        self.records.iter().filter(|r| r.uid == uid).count() >= self.per_application
    }

    /// Record a handled delivery, then drop the oldest entries beyond the bound.
    pub fn insert(&mut self, record: SentRecord) {
        if self.contains(&Key::of(&record)) {
            return;
        }
        self.records.push(record);
        self.bound();
    }

    /// Drop entries of Applications whose uid is not in `live` (the emergency stop's
    /// are kept to the bound too).
    pub fn retain_applications(&mut self, live: &std::collections::HashSet<String>) {
        self.records
            .retain(|r| r.uid.is_empty() || live.contains(&r.uid));
    }

    fn bound(&mut self) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let limit = self.per_application;
        // newest first, so the oldest are the ones past the bound
        let mut keep: Vec<SentRecord> = Vec::new();
        for r in self.records.iter().rev() {
            let n = seen.entry(r.uid.clone()).or_default();
            *n += 1;
            if *n <= limit {
                keep.push(r.clone());
            }
        }
        keep.reverse();
        self.records = keep;
    }

    /// The entries, oldest first.
    pub fn records(&self) -> &[SentRecord] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: &str, rev: &str, time: &str) -> SentRecord {
        SentRecord {
            application: "apps/web".into(),
            uid: uid.into(),
            trigger: TriggerName::Deployed,
            revision: rev.into(),
            destination: "slack".into(),
            result: "Sent".into(),
            time: time.into(),
        }
    }

    #[test]
    fn the_record_is_bounded_per_application_and_remembers_what_it_forgot() {
        let mut l = Ledger::new(Vec::new(), 2);
        l.insert(rec("a", "r1", "2026-01-01T00:00:01Z"));
        l.insert(rec("a", "r2", "2026-01-01T00:00:02Z"));
        l.insert(rec("b", "r1", "2026-01-01T00:00:02Z"));
        l.insert(rec("a", "r3", "2026-01-01T00:00:03Z"));
        assert_eq!(l.records().len(), 3);
        let r1 = Key::of(&rec("a", "r1", ""));
        assert!(!l.contains(&r1), "the oldest of a is dropped");
        assert!(l.contains(&Key::of(&rec("b", "r1", ""))));
        // r1 happened before the oldest entry kept for a: it counts as sent
        let t1 = "2026-01-01T00:00:01Z".parse().ok();
        assert!(l.forgotten("a", t1, l.is_full("a")));
        let later = "2026-01-01T00:00:04Z".parse().ok();
        assert!(!l.forgotten("a", later, l.is_full("a")));
        // inserting twice keeps one
        l.insert(rec("b", "r1", "2026-01-01T00:00:09Z"));
        assert_eq!(l.records().len(), 3);
        l.retain_applications(&["b".to_string()].into_iter().collect());
        assert_eq!(l.records().len(), 1);
    }

    #[test]
    fn a_delivery_id_is_stable_and_differs_per_destination() {
        let k = Key::of(&rec("a", "r1", ""));
        assert_eq!(k.delivery_id("n"), k.delivery_id("n"));
        let other = Key {
            destination: "teams".into(),
            ..k.clone()
        };
        assert_ne!(k.delivery_id("n"), other.delivery_id("n"));
        assert_eq!(k.delivery_id("n").len(), 32);
    }
}
