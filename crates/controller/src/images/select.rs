//! ImagePolicy: the latest image of a repository's tags, chosen again after every scan.

use capstan_engine::images::ImageRef;
use capstan_engine::images::policy::{TagFilter, TagPolicy};
use kube::Resource;
use tokio::time::Instant;

use super::crd::{DigestReflection, ImagePolicy, ImagePolicyStatus, ImageRefStatus};
use super::{Automation, dedup};
use super::{merge, ready};
use crate::crd::Condition;
use crate::reconcile::Trigger;
use crate::scheduler::AppKey;

impl Automation {
    /// Choose the latest image of the ImagePolicy `key`; when the choice changed, the
    /// ImageUpdates that write it run (after the settle time).
    pub(crate) async fn choose(&self, key: &AppKey) {
        // one choice of a policy at a time (a scan and a spec change can ask together)
        let lock = {
            let mut locks = self.choose_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let Some(policy) = self.policy(key) else {
            self.latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            return;
        };
        match self.latest_of(key, &policy).await {
            Ok(image) => {
                let before = self
                    .latest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), image.clone());
                let changed = before.as_ref() != Some(&image);
                self.policy_status(
                    &policy,
                    Some(&image),
                    ready(true, "Succeeded", &format!("latest image {image}")),
                )
                .await;
                if changed {
                    tracing::info!(policy = %format!("{}/{}", key.0, key.1), %image, "policy chose an image");
                    let at = Instant::now() + self.opts.settle;
                    for u in dedup(self.updates_of(key)) {
                        self.update_queue.schedule(u, at, Trigger::Spec);
                    }
                }
            }
            Err((reason, message)) => {
                self.policy_status(&policy, None, ready(false, reason, &message))
                    .await;
            }
        }
    }

    async fn latest_of(
        &self,
        key: &AppKey,
        policy: &ImagePolicy,
    ) -> Result<ImageRef, (&'static str, String)> {
        let repo_key = (key.0.clone(), policy.spec.image_repository_ref.name.clone());
        let Some(repo) = self.repo(&repo_key) else {
            return Err((
                "RepositoryNotFound",
                format!(
                    "ImageRepository {}/{} does not exist (spec.imageRepositoryRef)",
                    repo_key.0, repo_key.1
                ),
            ));
        };
        let rule = TagPolicy::from_choice(&policy.spec.policy.choice()).map_err(|e| {
            (
                "InvalidPolicy",
                format!("spec.policy: {}", crate::reconcile::error_chain(&e)),
            )
        })?;
        let filter = match &policy.spec.filter_tags {
            Some(f) => Some(TagFilter::new(&f.pattern, &f.extract).map_err(|e| {
                (
                    "InvalidPolicy",
                    format!("spec.filterTags: {}", crate::reconcile::error_chain(&e)),
                )
            })?),
            None => None,
        };
        let scanned = self
            .scanned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&repo_key)
            .cloned();
        let Some(scanned) = scanned else {
            return Err((
                "WaitingForScan",
                format!("ImageRepository {} has not been scanned yet", repo_key.1),
            ));
        };
        let tag = rule
            .latest(&scanned.tags, filter.as_ref())
            .map_err(|e| ("NoMatchingTag", e.to_string()))?;
        let digest = match policy.spec.digest_reflection_policy.unwrap_or_default() {
            DigestReflection::Never => None,
            DigestReflection::Always => Some(self.digest_of(&repo_key, &repo, &tag).await?),
        };
        Ok(ImageRef {
            name: repo.spec.image.clone(),
            tag: Some(tag),
            digest,
        })
    }

    /// The digest of `tag`, looked up once per scan.
    async fn digest_of(
        &self,
        repo_key: &AppKey,
        repo: &super::ImageRepository,
        tag: &str,
    ) -> Result<String, (&'static str, String)> {
        if let Some(d) = self
            .scanned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(repo_key)
            .and_then(|s| s.digests.get(tag).cloned())
        {
            return Ok(d);
        }
        let creds = self.registry_credentials(repo).await?;
        let client = if repo.spec.insecure {
            &self.insecure_registry
        } else {
            &self.registry
        };
        let digest = client
            .digest(&repo.spec.image, tag, creds.as_ref())
            .await
            .map_err(|e| ("DigestFailed", crate::reconcile::error_chain(&e)))?;
        if let Some(s) = self
            .scanned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(repo_key)
        {
            s.digests.insert(tag.to_string(), digest.clone());
        }
        Ok(digest)
    }

    async fn policy_status(
        &self,
        policy: &ImagePolicy,
        latest: Option<&ImageRef>,
        cond: Condition,
    ) {
        let old = policy.status.clone().unwrap_or_default();
        let latest = latest.map(|r| ImageRefStatus {
            name: r.name.clone(),
            tag: r.tag.clone().unwrap_or_default(),
            digest: r.digest.clone().unwrap_or_default(),
        });
        let (latest_ref, previous) = match latest {
            Some(l) if old.latest_ref.as_ref() != Some(&l) => (
                Some(l),
                old.latest_ref.clone().or(old.observed_previous_ref.clone()),
            ),
            Some(l) => (Some(l), old.observed_previous_ref.clone()),
            None => (old.latest_ref.clone(), old.observed_previous_ref.clone()),
        };
        let status = ImagePolicyStatus {
            observed_generation: policy.meta().generation,
            conditions: merge(&old.conditions, cond),
            latest_ref,
            observed_previous_ref: previous,
        };
        if status == old {
            return;
        }
        crate::apply_status(&self.ctx.client, policy, &status).await;
    }
}
