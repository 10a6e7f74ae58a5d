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

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capstan_engine::images::ImageRef;
use capstan_engine::images::edit::{EditPlan, FieldChange, HelmTarget, ImageSetting};
use capstan_engine::images::update::{PathPlan, Updated};
use capstan_engine::source::template::Template;
use capstan_engine::source::{
    GitCache, GitSource, Identity, SigningKey, WriteOptions, WriteReport, Written,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::crd::{HeldBack, ImageUpdate, ImageUpdateStatus, Strategy, WrittenImage};
use super::{Automation, Pushed, interval, key_of};
use crate::audit::{self, AuditRecordSpec};
use crate::crd::Condition;
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
    async fn write_members(&self, first: &ImageUpdate, members: &[Member]) -> Outcome {
        let ns = first.namespace().unwrap_or_default();
        let git = &first.spec.git;
        let auth = match crate::credentials::git_auth(
            &self.ctx.client,
            &ns,
            git.credentials_secret.as_deref(),
            &self.ctx.opts.state_dir,
        )
        .await
        {
            Ok(a) => a,
            Err(e) => {
                return Outcome::Failed {
                    reason: "CredentialsFailed",
                    message: crate::reconcile::error_chain(&e),
                };
            }
        };
        let signing = match self.signing_key(first).await {
            Ok(s) => s,
            Err(message) => {
                return Outcome::Failed {
                    reason: "SigningKeyFailed",
                    message,
                };
            }
        };
        let author = match &git.commit.author {
            Some(a) => match Identity::parse(&format!("{} <{}>", a.name, a.email)) {
                Ok(i) => i,
                Err(e) => {
                    return Outcome::Failed {
                        reason: "InvalidSpec",
                        message: format!("spec.git.commit.author: {e}"),
                    };
                }
            },
            None => Identity::capstan(),
        };
        let message = match Template::parse(
            git.commit
                .message_template
                .as_deref()
                .unwrap_or(DEFAULT_MESSAGE),
        ) {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Failed {
                    reason: "InvalidSpec",
                    message: format!("spec.git.commit.messageTemplate: {e}"),
                };
            }
        };
        let base_vars = vars(members, &Updated::default());
        let push_branch = match &git.push_branch {
            None => None,
            Some(t) => match Template::parse(t).and_then(|t| t.render(&base_vars)) {
                Ok(b) => Some(b.trim().to_string()),
                Err(e) => {
                    return Outcome::Failed {
                        reason: "InvalidSpec",
                        message: format!("spec.git.pushBranch: {e}"),
                    };
                }
            },
        };
        if let Err(e) = message.render(&base_vars) {
            return Outcome::Failed {
                reason: "InvalidSpec",
                message: format!("spec.git.commit.messageTemplate: {e}"),
            };
        }
        let plans: Vec<PathPlan> = members
            .iter()
            .map(|m| self.plan(m, &m.writing, false))
            .collect();
        let held_plans: Vec<(String, PathPlan)> = members
            .iter()
            .flat_map(|m| {
                m.held.iter().map(move |(name, image)| {
                    let one: BTreeMap<String, ImageRef> = [(name.clone(), image.clone())].into();
                    (name.clone(), self.plan(m, &one, true))
                })
            })
            .collect();
        let held_images: BTreeMap<String, String> = members
            .iter()
            .flat_map(|m| m.held.iter().map(|(n, i)| (n.clone(), i.to_string())))
            .collect();
        let src = GitSource {
            url: git.repo_url.clone(),
            auth,
        };
        let opts = WriteOptions {
            branch: git.branch.clone().unwrap_or_default(),
            push_branch,
            author,
            signing,
            ..Default::default()
        };
        let cache = GitCache::new(self.ctx.opts.state_dir.join("git"));
        let members_vars: Vec<Member> = members.to_vec();
        let result = tokio::task::spawn_blocking(move || {
            cache.write(
                &src,
                &opts,
                |tree| {
                    let mut updated = Updated::default();
                    for p in &plans {
                        let o = capstan_engine::images::edit::apply(tree.root(), &p.path, &p.plan)?;
                        updated.changes.extend(o.changes);
                        updated.files.extend(o.files);
                        updated.unused.extend(o.unused);
                    }
                    // a held-back image Git no longer says: report it
                    let mut held = Vec::new();
                    for (name, p) in &held_plans {
                        let o = capstan_engine::images::edit::apply(tree.root(), &p.path, &p.plan)?;
                        if !o.changes.is_empty() {
                            held.push(HeldBack {
                                policy: name.clone(),
                                image: held_images.get(name).cloned().unwrap_or_default(),
                                reason: format!(
                                    "written before, and Git moved away from it since ({}: {} -> {}); the policy's next image will be written",
                                    o.changes[0].file, o.changes[0].new, o.changes[0].old
                                ),
                            });
                        }
                    }
                    Ok((updated, held))
                },
                |(updated, _)| {
                    let v = vars(&members_vars, updated);
                    message.render(&v).unwrap_or_else(|e| format!("Update images\n\n({e})"))
                },
            )
        })
        .await;
        match result {
            Ok(Ok(report)) => Outcome::Written(Box::new(report)),
            Ok(Err(e)) => Outcome::Failed {
                reason: match &e {
                    capstan_engine::source::WriteError::Edit { .. } => "EditFailed",
                    capstan_engine::source::WriteError::PushRefused { .. } => "PushRefused",
                    capstan_engine::source::WriteError::Signing { .. } => "SigningFailed",
                    _ => "WriteFailed",
                },
                message: crate::reconcile::error_chain(&e),
            },
            Err(e) => Outcome::Failed {
                reason: "WriteFailed",
                message: format!("internal error: {e}"),
            },
        }
    }

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

    /// The signing key from the Secret the spec names, written to a file.
    async fn signing_key(&self, u: &ImageUpdate) -> Result<Option<SigningKey>, String> {
        let Some(r) = &u.spec.git.commit.signing_key else {
            return Ok(None);
        };
        let ns = u.namespace().unwrap_or_default();
        let name = &r.secret_ref.name;
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &ns);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading signing key Secret {ns}/{name}: {e}"))?
            .ok_or_else(|| format!("signing key Secret {ns}/{name} does not exist"))?;
        let data = secret.data.unwrap_or_default();
        let text = |k: &str| {
            data.get(k)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        let dir = self.ctx.opts.state_dir.join("signing");
        std::fs::create_dir_all(&dir).map_err(|e| format!("writing the signing key: {e}"))?;
        if let Some(armored) = text("git.asc") {
            let path = dir.join(format!("{ns}.{name}.asc"));
            crate::credentials::write_private(&path, &armored)
                .map_err(|e| format!("writing the signing key: {e}"))?;
            return Ok(Some(SigningKey::OpenPgp {
                key: path,
                passphrase: text("passphrase"),
            }));
        }
        if let Some(key) = text("ssh-privatekey").or_else(|| text("sshPrivateKey")) {
            let path = dir.join(format!("{ns}.{name}.key"));
            crate::credentials::write_private(&path, &key)
                .map_err(|e| format!("writing the signing key: {e}"))?;
            return Ok(Some(SigningKey::Ssh { key: path }));
        }
        Err(format!(
            "signing key Secret {ns}/{name} has neither git.asc (OpenPGP) nor ssh-privatekey"
        ))
    }

    /// Status, audit and Event for every member; a push wakes the Applications of
    /// the repository and branch.
    async fn record(&self, first: &ImageUpdate, members: &[Member], outcome: Outcome) {
        match outcome {
            Outcome::Failed { reason, message } => {
                tracing::warn!(update = %first.name_any(), reason, %message, "image update failed");
                for m in members {
                    self.set_status(
                        &m.update,
                        Vec::new(),
                        None,
                        ready(false, reason, &message),
                        None,
                    )
                    .await;
                }
            }
            Outcome::Written(report) => {
                let (updated, held) = &report.edit;
                let now = crate::now();
                let (commit, branch) = match &report.written {
                    Written::Pushed { commit, branch, .. } => {
                        (Some(commit.clone()), Some(branch.clone()))
                    }
                    Written::NoChange { .. } => (None, None),
                };
                let head = match &report.written {
                    Written::Pushed { commit, .. } => commit.clone(),
                    Written::NoChange { head } => head.clone(),
                };
                for m in members {
                    let mine: Vec<FieldChange> = updated
                        .changes
                        .iter()
                        .filter(|c| attributed(m, c).is_some())
                        .cloned()
                        .collect();
                    // every policy this member wrote, or found already written, is
                    // what Git says now
                    let unused: BTreeSet<&str> =
                        updated.unused.iter().map(String::as_str).collect();
                    let mut written = m
                        .update
                        .status
                        .as_ref()
                        .map(|s| s.written.clone())
                        .unwrap_or_default();
                    for (name, image) in &m.writing {
                        let setter = format!("{}:{name}", m.key.0);
                        let repo_image = m.images.get(name).map(String::as_str).unwrap_or("");
                        if unused.contains(setter.as_str())
                            && (m.update.spec.update.strategy == Strategy::Setters
                                || unused.contains(repo_image))
                        {
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
                                commit: if changed_here {
                                    commit.clone().unwrap_or_else(|| head.clone())
                                } else {
                                    head.clone()
                                },
                                time: now.clone(),
                            },
                        );
                    }
                    // policies this update no longer writes are forgotten
                    written.retain(|name, _| {
                        m.writing.contains_key(name)
                            || m.held.contains_key(name)
                            || m.waiting.contains(name)
                    });
                    let mine_held: Vec<HeldBack> = held
                        .iter()
                        .filter(|h| m.held.contains_key(&h.policy))
                        .cloned()
                        .collect();
                    let cond = match (&commit, mine.is_empty()) {
                        (Some(c), false) => ready(
                            true,
                            "Pushed",
                            &format!(
                                "pushed {} to {}",
                                &c[..c.len().min(12)],
                                branch.clone().unwrap_or_default()
                            ),
                        ),
                        _ if !m.waiting.is_empty() => ready(
                            true,
                            "UpToDate",
                            &format!(
                                "Git holds every chosen image; waiting for {} to choose one",
                                m.waiting.join(", ")
                            ),
                        ),
                        _ => ready(true, "UpToDate", "Git holds every chosen image"),
                    };
                    let push = commit
                        .clone()
                        .filter(|_| !mine.is_empty())
                        .map(|c| (c, now.clone()));
                    self.set_status(&m.update, mine_held, Some(written), cond, push)
                        .await;
                    if let (Some(c), false) = (&commit, mine.is_empty()) {
                        self.audit(m, &mine, c, &report.written).await;
                    }
                }
                if let Some(branch) = branch {
                    let _ = self.pushed.send(Pushed {
                        url: GitSource::new(&first.spec.git.repo_url).display_url(),
                        branch,
                    });
                }
            }
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

    async fn set_status(
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

/// A `Ready` condition.
pub(crate) fn ready(ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: None,
    }
}

/// `conditions` with `c` in place of its type, keeping the transition time when the
/// status did not change.
pub(crate) fn merge(conditions: &[Condition], mut c: Condition) -> Vec<Condition> {
    let old = conditions.iter().find(|o| o.type_ == c.type_);
    c.last_transition_time = match old {
        Some(o) if o.status == c.status => o
            .last_transition_time
            .clone()
            .or_else(|| Some(crate::now())),
        _ => Some(crate::now()),
    };
    let mut out: Vec<Condition> = conditions
        .iter()
        .filter(|o| o.type_ != c.type_)
        .cloned()
        .collect();
    out.insert(0, c);
    out
}
