//! What a plan intends and what a sync did, per object: one type for the CLI, the
//! controller's history and the UI.

use serde::{Deserialize, Serialize};

use crate::{Health, ObjectRef};

/// What a plan intends for one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Change {
    /// Not in the cluster: it will be created.
    Create,
    /// In the cluster and different: it will be updated.
    Update {
        /// Unified diff of the live object to what it would become (secret values masked).
        diff: String,
    },
    /// In the cluster and equal to what applying would give.
    Unchanged,
    /// In the previous inventory but no longer desired: it will be deleted.
    Prune,
}

impl Change {
    /// Whether the object differs from what is desired.
    pub fn is_drift(&self) -> bool {
        !matches!(self, Change::Unchanged)
    }
}

/// What a sync did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// Created.
    Created,
    /// Updated.
    Configured,
    /// Left alone: it already matched.
    Unchanged,
    /// Deleted because it left the source.
    Pruned,
    /// Not touched, on purpose.
    Skipped {
        /// Why (e.g. `capstan.dev/prune: "false"`).
        reason: String,
    },
    /// The API refused or the operation failed.
    Failed {
        /// The error.
        reason: String,
    },
}

impl Outcome {
    /// The word the CLI prints (`created`, `configured`, …).
    pub fn verb(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Pruned => "pruned",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One object in a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The object.
    pub object: ObjectRef,
    /// The plan for it (when planned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// What the sync did (when synced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Its health (when assessed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// Everything a plan or sync covers, in the order objects were handled. Returned even
/// when a sync fails part-way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeSet {
    /// One entry per object.
    pub entries: Vec<Entry>,
    /// Position of each object in `entries` (rebuilt when stale, e.g. after deserializing).
    #[serde(skip)]
    index: std::collections::HashMap<ObjectRef, usize>,
}

impl PartialEq for ChangeSet {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for ChangeSet {}

impl ChangeSet {
    /// The entry of an object, created if absent.
    pub fn entry(&mut self, object: &ObjectRef) -> &mut Entry {
        if self.index.len() != self.entries.len() {
            self.index = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.object.clone(), i))
                .collect();
        }
        let i = match self.index.get(object) {
            Some(&i) => i,
            None => {
                self.entries.push(Entry {
                    object: object.clone(),
                    change: None,
                    outcome: None,
                    health: None,
                });
                self.index.insert(object.clone(), self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// Whether any planned change is a drift (create, update or prune).
    pub fn has_drift(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.change.as_ref().is_some_and(Change::is_drift))
    }

    /// Whether any object failed.
    pub fn has_failures(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.outcome, Some(Outcome::Failed { .. })))
    }

    /// How many entries have each outcome verb, in a fixed order.
    pub fn outcome_counts(&self) -> Vec<(&'static str, usize)> {
        [
            "created",
            "configured",
            "unchanged",
            "pruned",
            "skipped",
            "failed",
        ]
        .into_iter()
        .map(|verb| {
            let n = self
                .entries
                .iter()
                .filter(|e| e.outcome.as_ref().is_some_and(|o| o.verb() == verb))
                .count();
            (verb, n)
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_set_counts_and_drift() {
        let mut cs = ChangeSet::default();
        let a = ObjectRef::new("", "ConfigMap", Some("d"), "a");
        let b = ObjectRef::new("", "ConfigMap", Some("d"), "b");
        cs.entry(&a).change = Some(Change::Unchanged);
        cs.entry(&a).outcome = Some(Outcome::Unchanged);
        assert!(!cs.has_drift());
        cs.entry(&b).change = Some(Change::Create);
        cs.entry(&b).outcome = Some(Outcome::Failed {
            reason: "denied".into(),
        });
        assert!(cs.has_drift());
        assert!(cs.has_failures());
        assert_eq!(cs.entries.len(), 2);
        let counts = cs.outcome_counts();
        assert_eq!(counts[2], ("unchanged", 1));
        assert_eq!(counts[5], ("failed", 1));
        let json = serde_json::to_value(&cs).unwrap();
        assert_eq!(
            json["entries"][1]["outcome"],
            serde_json::json!({"result": "failed", "reason": "denied"})
        );
    }
}
