//! What a group's write leaves behind: each member's status (what it wrote, what it
//! holds back, the last push), an audit record and Event per push, and the
//! Applications of the repository and branch woken.

use std::collections::{BTreeMap, BTreeSet};

use capstan_engine::images::edit::FieldChange;
use capstan_engine::source::{GitSource, Written};
use kube::{Resource, ResourceExt};

use super::{Member, Outcome, attributed};
use crate::audit::{self, AuditRecordSpec};
use crate::crd::Condition;
use crate::images::crd::{HeldBack, ImageUpdate, ImageUpdateStatus, Strategy, WrittenImage};
use crate::images::{Automation, Pushed, merge, ready};
use capstan_engine::images::update::Updated;

/// What one write pushed: the commit and branch, or the head that already held it all.
struct WriteResult {
    commit: Option<String>,
    branch: Option<String>,
    head: String,
}

impl WriteResult {
    fn of(written: &Written) -> Self {
        match written {
            Written::Pushed { commit, branch, .. } => WriteResult {
                commit: Some(commit.clone()),
                branch: Some(branch.clone()),
                head: commit.clone(),
            },
            Written::NoChange { head } => WriteResult {
                commit: None,
                branch: None,
                head: head.clone(),
            },
        }
    }
}

impl Automation {
    /// Status, audit and Event for every member; a push wakes the Applications of
    /// the repository and branch.
    pub(super) async fn record(&self, first: &ImageUpdate, members: &[Member], outcome: Outcome) {
        let report = match outcome {
            Outcome::Written(report) => report,
            Outcome::Failed { reason, message } => {
                tracing::warn!(update = %first.name_any(), reason, %message, "image update failed");
                for m in members {
                    let cond = ready(false, reason, &message);
                    self.set_status(&m.update, Vec::new(), None, cond, None)
                        .await;
                }
                return;
            }
        };
        let pushed = WriteResult::of(&report.written);
        for m in members {
            self.record_member(m, &report.edit, &pushed, &report.written)
                .await;
        }
        if let Some(branch) = pushed.branch {
            let _ = self.pushed.send(Pushed {
                url: GitSource::new(&first.spec.git.repo_url).display_url(),
                branch,
            });
        }
    }

    /// One member's status after the write, and its audit record when it pushed.
    async fn record_member(
        &self,
        m: &Member,
        (updated, held): &(Updated, Vec<HeldBack>),
        pushed: &WriteResult,
        written: &Written,
    ) {
        let mine: Vec<FieldChange> = updated
            .changes
            .iter()
            .filter(|c| attributed(m, c).is_some())
            .cloned()
            .collect();
        let now = crate::now();
        let written_images = what_git_holds(m, updated, &mine, pushed, &now);
        let mine_held: Vec<HeldBack> = held
            .iter()
            .filter(|h| m.held.contains_key(&h.policy))
            .cloned()
            .collect();
        let push = pushed
            .commit
            .clone()
            .filter(|_| !mine.is_empty())
            .map(|c| (c, now.clone()));
        let cond = match &push {
            Some((c, _)) => ready(
                true,
                "Pushed",
                &format!(
                    "pushed {} to {}",
                    &c[..c.len().min(12)],
                    pushed.branch.clone().unwrap_or_default()
                ),
            ),
            None if !m.waiting.is_empty() => ready(
                true,
                "UpToDate",
                &format!(
                    "Git holds every chosen image; waiting for {} to choose one",
                    m.waiting.join(", ")
                ),
            ),
            None => ready(true, "UpToDate", "Git holds every chosen image"),
        };
        self.set_status(
            &m.update,
            mine_held,
            Some(written_images),
            cond,
            push.clone(),
        )
        .await;
        if let Some((c, _)) = &push {
            self.audit(m, &mine, c, written).await;
        }
    }

    async fn audit(&self, m: &Member, changes: &[FieldChange], commit: &str, written: &Written) {
        let ns = m.key.0.clone();
        let mut lines: Vec<String> = changes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} {} -> {}",
                    attributed(m, c).unwrap_or_default(),
                    c.field,
                    c.old,
                    c.new
                )
            })
            .collect();
        lines.dedup();
        let parent = match written {
            Written::Pushed { parent, .. } => parent.clone(),
            Written::NoChange { .. } => String::new(),
        };
        let mut summary = BTreeMap::new();
        summary.insert("fields".to_string(), changes.len() as u32);
        let record = AuditRecordSpec {
            time: audit::record_time(),
            application: format!("{ns}/{}", m.key.1),
            action: "image-update".into(),
            trigger: "image-policy".into(),
            actor: self.ctx.opts.identity.clone(),
            from_revision: parent,
            to_revision: commit.to_string(),
            message: m
                .writing
                .values()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            summary,
            result: "Succeeded".into(),
            details: lines.join("; "),
            ..Default::default()
        };
        if let Err(e) = audit::append(
            &self.ctx.client,
            &ns,
            record,
            Some(m.update.object_ref(&())),
        )
        .await
        {
            tracing::warn!(update = %m.key.1, error = %e, "writing the audit record");
        }
    }

    pub(super) async fn set_status(
        &self,
        u: &ImageUpdate,
        held: Vec<HeldBack>,
        written: Option<BTreeMap<String, WrittenImage>>,
        ready: Condition,
        push: Option<(String, String)>,
    ) {
        let old = u.status.clone().unwrap_or_default();
        let mut status = ImageUpdateStatus {
            observed_generation: u.meta().generation,
            last_run_time: Some(crate::now()),
            held_back: held,
            written: written.unwrap_or(old.written.clone()),
            ..old.clone()
        };
        if let Some((commit, time)) = push {
            status.last_push_commit = commit;
            status.last_push_time = Some(time);
        }
        status.conditions = merge(&old.conditions, ready);
        crate::apply_status(&self.ctx.client, u, &status).await;
    }
}

/// The image each of `m`'s policies has in Git now, as far as this write saw: the ones
/// it wrote (in the pushed commit), and the ones it found already there (at the head).
/// Policies the member no longer writes are forgotten.
fn what_git_holds(
    m: &Member,
    updated: &Updated,
    mine: &[FieldChange],
    pushed: &WriteResult,
    now: &str,
) -> BTreeMap<String, WrittenImage> {
    let unused: BTreeSet<&str> = updated.unused.iter().map(String::as_str).collect();
    let mut written = m
        .update
        .status
        .as_ref()
        .map(|s| s.written.clone())
        .unwrap_or_default();
    for (name, image) in &m.writing {
        let setter = format!("{}:{name}", m.key.0);
        let repo_image = m.images.get(name).map(String::as_str).unwrap_or("");
        let nowhere = unused.contains(setter.as_str())
            && (m.update.spec.update.strategy == Strategy::Setters || unused.contains(repo_image));
        if nowhere {
            continue;
        }
        let changed_here = mine
            .iter()
            .any(|c| attributed(m, c).as_deref() == Some(name.as_str()));
        written.insert(
            name.clone(),
            WrittenImage {
                policy: name.clone(),
                image: image.to_string(),
                commit: match (&pushed.commit, changed_here) {
                    (Some(c), true) => c.clone(),
                    _ => pushed.head.clone(),
                },
                time: now.to_string(),
            },
        );
    }
    written.retain(|name, _| {
        m.writing.contains_key(name) || m.held.contains_key(name) || m.waiting.contains(name)
    });
    written
}
