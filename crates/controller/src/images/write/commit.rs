//! The one write of a group: its inputs read from the spec and Secrets, the members'
//! plans applied in one work tree, one commit pushed.

use std::collections::BTreeMap;

use capstan_engine::images::ImageRef;
use capstan_engine::images::update::{PathPlan, Updated};
use capstan_engine::source::template::Template;
use capstan_engine::source::{GitCache, GitSource, Identity, SigningKey, WriteError, WriteOptions};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::{DEFAULT_MESSAGE, Member, Outcome, vars};
use crate::images::Automation;
use crate::images::crd::{HeldBack, ImageUpdate};

/// Why a write could not start: the condition reason and message.
type Refused = (&'static str, String);

/// What a group's write needs, read from the first member's spec and Secrets.
struct Inputs {
    src: GitSource,
    opts: WriteOptions,
    message: Template,
}

impl Automation {
    /// One write for all members: their plans in one work tree, one commit.
    pub(super) async fn write_members(&self, first: &ImageUpdate, members: &[Member]) -> Outcome {
        let inputs = match self.inputs(first, members).await {
            Ok(i) => i,
            Err((reason, message)) => return Outcome::Failed { reason, message },
        };
        let plans: Vec<PathPlan> = members
            .iter()
            .map(|m| self.plan(m, &m.writing, false))
            .collect();
        let held: Vec<(String, String, PathPlan)> = members
            .iter()
            .flat_map(|m| {
                m.held.iter().map(move |(name, image)| {
                    let one: BTreeMap<String, ImageRef> = [(name.clone(), image.clone())].into();
                    (name.clone(), image.to_string(), self.plan(m, &one, true))
                })
            })
            .collect();
        let cache = GitCache::new(self.ctx.opts.state_dir.join("git"));
        let members: Vec<Member> = members.to_vec();
        let result = tokio::task::spawn_blocking(move || {
            cache.write(
                &inputs.src,
                &inputs.opts,
                |tree| {
                    let updated = apply_plans(tree.root(), &plans)?;
                    Ok((updated, held_back(tree.root(), &held)?))
                },
                |(updated, _)| {
                    inputs
                        .message
                        .render(&vars(&members, updated))
                        .unwrap_or_else(|e| format!("Update images\n\n({e})"))
                },
            )
        })
        .await;
        match result {
            Ok(Ok(report)) => Outcome::Written(Box::new(report)),
            Ok(Err(e)) => Outcome::Failed {
                reason: match &e {
                    WriteError::Edit { .. } => "EditFailed",
                    WriteError::PushRefused { .. } => "PushRefused",
                    WriteError::Signing { .. } => "SigningFailed",
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

    /// The repository, credentials, author, signing key, branches and message of a
    /// group's write; a spec or Secret that does not do is refused naming the field.
    async fn inputs(&self, first: &ImageUpdate, members: &[Member]) -> Result<Inputs, Refused> {
        let ns = first.namespace().unwrap_or_default();
        let git = &first.spec.git;
        let auth = crate::credentials::git_auth(
            &self.ctx.client,
            &ns,
            git.credentials_secret.as_deref(),
            &self.ctx.opts.state_dir,
        )
        .await
        .map_err(|e| ("CredentialsFailed", crate::reconcile::error_chain(&e)))?;
        let signing = self
            .signing_key(first)
            .await
            .map_err(|m| ("SigningKeyFailed", m))?;
        let author = match &git.commit.author {
            Some(a) => Identity::parse(&format!("{} <{}>", a.name, a.email))
                .map_err(|e| ("InvalidSpec", format!("spec.git.commit.author: {e}")))?,
            None => Identity::capstan(),
        };
        let invalid =
            |field: &str, e: &dyn std::fmt::Display| ("InvalidSpec", format!("{field}: {e}"));
        let message = Template::parse(
            git.commit
                .message_template
                .as_deref()
                .unwrap_or(DEFAULT_MESSAGE),
        )
        .map_err(|e| invalid("spec.git.commit.messageTemplate", &e))?;
        let base = vars(members, &Updated::default());
        message
            .render(&base)
            .map_err(|e| invalid("spec.git.commit.messageTemplate", &e))?;
        let push_branch = match &git.push_branch {
            None => None,
            Some(t) => Some(
                Template::parse(t)
                    .and_then(|t| t.render(&base))
                    .map_err(|e| invalid("spec.git.pushBranch", &e))?
                    .trim()
                    .to_string(),
            ),
        };
        Ok(Inputs {
            src: GitSource {
                url: git.repo_url.clone(),
                auth,
            },
            opts: WriteOptions {
                branch: git.branch.clone().unwrap_or_default(),
                push_branch,
                author,
                signing,
                ..Default::default()
            },
            message,
        })
    }

    /// The signing key from the Secret the spec names, written to a file.
    pub(super) async fn signing_key(&self, u: &ImageUpdate) -> Result<Option<SigningKey>, String> {
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
}

/// Every plan applied to the work tree at `root`.
fn apply_plans(
    root: &std::path::Path,
    plans: &[PathPlan],
) -> Result<Updated, capstan_engine::source::write::EditError> {
    let mut updated = Updated::default();
    for p in plans {
        let o = capstan_engine::images::edit::apply(root, &p.path, &p.plan)?;
        updated.changes.extend(o.changes);
        updated.files.extend(o.files);
        updated.unused.extend(o.unused);
    }
    Ok(updated)
}

/// The held-back images (policy, image, dry-run plan) that Git no longer says, with
/// the field that shows it.
fn held_back(
    root: &std::path::Path,
    held: &[(String, String, PathPlan)],
) -> Result<Vec<HeldBack>, capstan_engine::source::write::EditError> {
    let mut out = Vec::new();
    for (policy, image, plan) in held {
        let o = capstan_engine::images::edit::apply(root, &plan.path, &plan.plan)?;
        if let Some(c) = o.changes.first() {
            out.push(HeldBack {
                policy: policy.clone(),
                image: image.clone(),
                reason: format!(
                    "written before, and Git moved away from it since ({}: {} -> {}); the policy's next image will be written",
                    c.file, c.new, c.old
                ),
            });
        }
    }
    Ok(out)
}
