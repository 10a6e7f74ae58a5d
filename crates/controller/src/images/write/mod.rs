//! ImageUpdate: what the policies chose, written to Git — one commit for every
//! ImageUpdate of a namespace that writes to the same repository and branch (with the
//! same author, credentials and signing key), however many policies it touches.
//!
//! What happens to a policy's image:
//! - it is written wherever the update path uses it (setter markers; with the
//!   `Images` strategy also container images, Kustomize entries, Helm values);
//! - it is **held back** when it is the image this ImageUpdate last wrote for that
//!   policy (`status.written`) and Git no longer says it: someone moved Git away from
//!   it — a `capstan revert`, a rollback by a commit — and writing it again would undo
//!   their decision. The policy's next image is written as usual. Held-back images are
//!   listed in `status.heldBack` with the reason.
//!
//! Every push is recorded in the audit log (policies, old → new, commit) and as an
//! Event on the ImageUpdate.

mod commit;
mod record;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capstan_engine::images::ImageRef;
use capstan_engine::images::edit::{EditPlan, FieldChange, HelmTarget, ImageSetting};
use capstan_engine::images::update::{PathPlan, Updated};
use capstan_engine::source::{GitSource, WriteReport};
use kube::ResourceExt;
use kube::api::Api;
use serde::Serialize;

use super::crd::{HeldBack, ImageUpdate, Strategy};
use super::{Automation, interval, key_of, ready};
use crate::scheduler::AppKey;

/// The default commit message.
pub const DEFAULT_MESSAGE: &str = "Update images: {{ images | join(\", \") }}\n\n{% for c in changes %}- {{ c.file }}: {{ c.field }}: {{ c.old }} -> {{ c.new }}\n{% endfor %}";

/// What the message and push branch templates see.
#[derive(Debug, Clone, Serialize)]
struct Vars {
    /// The ImageUpdates of the commit, joined with `,`.
    update: String,
    /// `name:tag[@digest]` of every image written.
    images: Vec<String>,
    /// Their tags.
    tags: Vec<String>,
    /// Policy name → image.
    policies: BTreeMap<String, String>,
    changes: Vec<FieldChange>,
    files: Vec<String>,
}

/// What makes ImageUpdates share a commit.
fn group_key(u: &ImageUpdate) -> String {
    let g = &u.spec.git;
    format!(
        "{}|{}|{}|{}|{:?}|{:?}|{:?}",
        u.namespace().unwrap_or_default(),
        GitSource::new(&g.repo_url).display_url(),
        g.branch.clone().unwrap_or_default(),
        g.push_branch.clone().unwrap_or_default(),
        g.commit.author,
        g.credentials_secret,
        g.commit
            .signing_key
            .as_ref()
            .map(|s| s.secret_ref.name.clone()),
    )
}

/// One member's part of the commit.
#[derive(Clone)]
struct Member {
    key: AppKey,
    update: Arc<ImageUpdate>,
    /// Policy → its latest image, for the policies it writes now.
    writing: BTreeMap<String, ImageRef>,
    /// Policies held back (their image is the one last written).
    held: BTreeMap<String, ImageRef>,
    /// Policies with no image chosen yet.
    waiting: Vec<String>,
    /// The repository image of each policy (for attributing changes).
    images: BTreeMap<String, String>,
}

/// What a member's write left behind, to put in its status.
enum Outcome {
    Written(Box<WriteReport<(Updated, Vec<HeldBack>)>>),
    Failed {
        reason: &'static str,
        message: String,
    },
}

impl Automation {
    /// Run the ImageUpdate `key` with every ImageUpdate it shares a commit with;
    /// when to run again, and the members that ran.
    pub(crate) async fn write_group(
        &self,
        key: &AppKey,
        update: &ImageUpdate,
    ) -> (Duration, Vec<AppKey>) {
        let every = interval(update.spec.interval.as_deref(), self.opts.update_interval);
        if update.spec.suspend {
            self.set_status(
                update,
                Vec::new(),
                None,
                ready(
                    false,
                    "Suspended",
                    "spec.suspend is set: nothing is written",
                ),
                None,
            )
            .await;
            return (every, vec![key.clone()]);
        }
        let group = group_key(update);
        let members: Vec<Arc<ImageUpdate>> = self
            .updates
            .state()
            .into_iter()
            .filter(|u| !u.spec.suspend && group_key(u) == group)
            .collect();
        let keys: Vec<AppKey> = members.iter().map(|u| key_of(u.as_ref())).collect();
        if self.ctx.stop.is_stopped() {
            for u in &members {
                self.set_status(
                    u,
                    Vec::new(),
                    None,
                    ready(
                        false,
                        "EmergencyStop",
                        "the emergency stop is on: nothing is written",
                    ),
                    None,
                )
                .await;
            }
            return (Duration::from_secs(5), keys);
        }
        let lock = {
            let mut locks = self.write_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(group.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        // the cache may not show the status the last run of the group wrote yet (a run
        // of another member, just before): read every member afresh, so what it wrote
        // (`written`, the last push) is not lost
        let mut fresh = Vec::new();
        for u in members {
            let api: Api<ImageUpdate> =
                Api::namespaced(self.ctx.client.clone(), &u.namespace().unwrap_or_default());
            match api.get_opt(&u.name_any()).await {
                Ok(Some(current)) => fresh.push(Arc::new(current)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(update = %u.name_any(), error = %e, "reading the ImageUpdate");
                    fresh.push(u);
                }
            }
        }
        let members: Vec<Member> = fresh.into_iter().map(|u| self.member(u)).collect();
        let update = members
            .iter()
            .find(|m| m.key == *key)
            .map(|m| m.update.clone())
            .unwrap_or_else(|| Arc::new(update.clone()));
        let update = update.as_ref();
        let outcome = self.write_members(update, &members).await;
        let retry = matches!(outcome, Outcome::Failed { .. });
        self.record(update, &members, outcome).await;
        (
            if retry {
                Duration::from_secs(30).min(every)
            } else {
                every
            },
            keys,
        )
    }

    /// A member's policies and what they chose.
    fn member(&self, update: Arc<ImageUpdate>) -> Member {
        let ns = update.namespace().unwrap_or_default();
        let names: Vec<String> = if update.spec.policies.is_empty() {
            self.policies
                .state()
                .iter()
                .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                .map(|p| p.name_any())
                .collect()
        } else {
            update.spec.policies.clone()
        };
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let written = update
            .status
            .as_ref()
            .map(|s| s.written.clone())
            .unwrap_or_default();
        let mut m = Member {
            key: key_of(update.as_ref()),
            update: update.clone(),
            writing: BTreeMap::new(),
            held: BTreeMap::new(),
            waiting: Vec::new(),
            images: BTreeMap::new(),
        };
        for name in names {
            let pkey = (ns.clone(), name.clone());
            if let Some(p) = self.policy(&pkey)
                && let Some(repo) =
                    self.repo(&(ns.clone(), p.spec.image_repository_ref.name.clone()))
            {
                m.images.insert(name.clone(), repo.spec.image.clone());
            }
            match latest.get(&pkey) {
                None => m.waiting.push(name),
                Some(image) => {
                    if written
                        .get(&name)
                        .is_some_and(|w| w.image == image.to_string())
                    {
                        m.held.insert(name, image.clone());
                    } else {
                        m.writing.insert(name, image.clone());
                    }
                }
            }
        }
        m
    }

    /// One write for all members: their plans in one work tree, one commit.
    /// The edit plan of a member for some of its policies.
    fn plan(&self, m: &Member, policies: &BTreeMap<String, ImageRef>, dry_run: bool) -> PathPlan {
        let ns = m.key.0.clone();
        let spec = &m.update.spec.update;
        let mut plan = EditPlan {
            policies: policies
                .iter()
                .map(|(name, image)| (format!("{ns}:{name}"), image.clone()))
                .collect(),
            dry_run,
            ..Default::default()
        };
        if spec.strategy == Strategy::Images {
            for (name, image) in policies {
                if let Some(repo_image) = m.images.get(name) {
                    plan.images.push(ImageSetting {
                        image: repo_image.clone(),
                        new: image.clone(),
                        rename: false,
                        named: false,
                    });
                    for h in spec.helm.iter().filter(|h| h.policy == *name) {
                        plan.helm.push(HelmTarget {
                            image: repo_image.clone(),
                            file: h.file.clone(),
                            key: h.key.clone(),
                        });
                    }
                }
            }
        }
        PathPlan {
            path: PathBuf::from(&spec.path),
            plan,
        }
    }
}

/// The policy a change was made for (setters name it; `Images` changes name the
/// repository image).
fn attributed(m: &Member, c: &FieldChange) -> Option<String> {
    let prefix = format!("{}:", m.key.0);
    if let Some(rest) = c.by.strip_prefix(&prefix) {
        let name = rest.split(':').next().unwrap_or(rest);
        if m.writing.contains_key(name) {
            return Some(name.to_string());
        }
    }
    m.images
        .iter()
        .find(|(name, image)| **image == c.by && m.writing.contains_key(*name))
        .map(|(name, _)| name.clone())
}

/// What the templates see of the members and what changed.
fn vars(members: &[Member], updated: &Updated) -> Vars {
    let mut policies = BTreeMap::new();
    for m in members {
        for (name, image) in &m.writing {
            policies.insert(name.clone(), image.to_string());
        }
    }
    let images: Vec<String> = policies
        .values()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let tags: Vec<String> = policies
        .values()
        .filter_map(|i| ImageRef::parse(i).ok().and_then(|r| r.tag))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Vars {
        update: members
            .iter()
            .map(|m| m.key.1.clone())
            .collect::<Vec<_>>()
            .join(","),
        images,
        tags,
        policies,
        changes: updated.changes.clone(),
        files: updated.files.clone(),
    }
}
