//! ImageRepository: the tags of a registry repository, scanned at its interval.
//!
//! A scan that fails (the registry down, credentials refused) says so in `Ready` and
//! keeps the last scan's tags: the policies keep their choice, and nothing new is
//! written until a scan succeeds again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_engine::images::reference::normalized_repository;
use capstan_engine::images::registry::{Credentials, registry_host};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::crd::{DEFAULT_EXCLUSION, ImageRepository, ImageRepositoryStatus, ScanResult};
use super::{Automation, Scanned, interval};
use super::{merge, ready};
use crate::crd::Condition;
use crate::scheduler::AppKey;

/// How many tags `status.lastScanResult.latestTags` shows.
const LATEST_SHOWN: usize = 10;

impl Automation {
    /// Scan one ImageRepository; when to scan it again.
    pub(crate) async fn scan(&self, key: &AppKey, repo: &ImageRepository) -> Duration {
        let every = interval(repo.spec.interval.as_deref(), self.opts.scan_interval);
        if repo.spec.suspend {
            self.repo_status(
                repo,
                None,
                ready(false, "Suspended", "spec.suspend is set: not scanned"),
            )
            .await;
            return every;
        }
        let scanned = self.scan_tags(repo).await;
        self.ctx
            .metrics
            .image_scan(scanned.as_ref().map(|_| ()).map_err(|(reason, _)| *reason));
        match scanned {
            Ok(tags) => {
                let count = tags.len();
                let mut sorted = tags.clone();
                sorted.sort_unstable_by(|a, b| b.cmp(a));
                sorted.truncate(LATEST_SHOWN);
                {
                    let mut scanned = self.scanned.lock().unwrap_or_else(|p| p.into_inner());
                    // digests of an unchanged tag list stay known until the next scan asks
                    scanned.insert(
                        key.clone(),
                        Scanned {
                            tags: Arc::new(tags),
                            digests: HashMap::new(),
                        },
                    );
                }
                let result = ScanResult {
                    tag_count: count as u64,
                    latest_tags: sorted,
                    scan_time: Some(crate::now()),
                };
                self.repo_status(
                    repo,
                    Some(result),
                    ready(true, "Succeeded", &format!("{count} tags found")),
                )
                .await;
                every
            }
            Err((reason, message)) => {
                tracing::warn!(repository = %format!("{}/{}", key.0, key.1), reason, %message, "image scan failed");
                self.repo_status(repo, None, ready(false, reason, &message))
                    .await;
                every.min(Duration::from_secs(30))
            }
        }
    }

    /// The tags of the repository, after its exclusion list.
    async fn scan_tags(
        &self,
        repo: &ImageRepository,
    ) -> Result<Vec<String>, (&'static str, String)> {
        let exclusions = repo
            .spec
            .exclusion_list
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_EXCLUSION.to_string()]);
        let patterns = exclusions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                regex::Regex::new(p).map_err(|e| {
                    (
                        "InvalidSpec",
                        format!("spec.exclusionList[{i}] {p:?} is not a regular expression: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let creds = self.registry_credentials(repo).await?;
        let client = if repo.spec.insecure {
            &self.insecure_registry
        } else {
            &self.registry
        };
        let tags = client
            .tags(&repo.spec.image, creds.as_ref())
            .await
            .map_err(|e| ("ScanFailed", crate::reconcile::error_chain(&e)))?;
        Ok(tags
            .into_iter()
            .filter(|t| !patterns.iter().any(|p| p.is_match(t)))
            .collect())
    }

    /// The registry credentials of `repo`'s `secretRef`, if it has one.
    pub(crate) async fn registry_credentials(
        &self,
        repo: &ImageRepository,
    ) -> Result<Option<Credentials>, (&'static str, String)> {
        let Some(r) = &repo.spec.secret_ref else {
            return Ok(None);
        };
        let ns = repo.namespace().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &ns);
        let secret = api
            .get_opt(&r.name)
            .await
            .map_err(|e| {
                (
                    "CredentialsFailed",
                    format!("reading Secret {ns}/{}: {e}", r.name),
                )
            })?
            .ok_or_else(|| {
                (
                    "CredentialsFailed",
                    format!("Secret {ns}/{} does not exist", r.name),
                )
            })?;
        let data = secret.data.unwrap_or_default();
        let json = data.get(".dockerconfigjson").ok_or_else(|| {
            (
                "CredentialsFailed",
                format!("Secret {ns}/{} has no .dockerconfigjson (make it with kubectl create secret docker-registry)", r.name),
            )
        })?;
        let host = registry_host(&repo.spec.image).map_err(|e| ("InvalidSpec", e.to_string()))?;
        Credentials::from_docker_config(&json.0, &host)
            .map_err(|e| ("CredentialsFailed", format!("Secret {ns}/{}: {e}", r.name)))
    }

    async fn repo_status(
        &self,
        repo: &ImageRepository,
        result: Option<ScanResult>,
        cond: Condition,
    ) {
        let old = repo.status.clone().unwrap_or_default();
        let status = ImageRepositoryStatus {
            observed_generation: repo.meta().generation,
            conditions: merge(&old.conditions, cond),
            last_scan_result: result.or(old.last_scan_result.clone()),
            canonical_image_name: normalized_repository(&repo.spec.image),
        };
        if status == old {
            return;
        }
        crate::apply_status(&self.ctx.client, repo, &status).await;
    }
}
