//! Who is asking, and may they.
//!
//! **Authentication**: `Authorization: Bearer TOKEN`, checked in this order:
//!
//! 1. the static tokens of the Secret [`ApiOptions::tokens_secret`] in the
//!    controller's namespace — key = user name, value = token — compared in constant
//!    time; such a user has no groups;
//! 2. any other token is asked about with a Kubernetes `TokenReview`
//!    (`authentication.k8s.io/v1`) through the controller's client — ServiceAccount
//!    tokens, and whatever else the cluster's authenticators accept — and the user
//!    and groups it returns are used. A successful review is reused for
//!    [`ApiOptions::review_ttl`], keyed by the token's SHA-256 (the token itself is
//!    not kept).
//!
//! No token, or one that neither knows: 401.
//!
//! **Authorization**: the ConfigMap [`ApiOptions::rbac_configmap`] binds users and
//! groups to roles (see [`Policy`]); a user's role is the highest one bound to its
//! name or any of its groups. Nothing bound: nothing allowed (403, naming the role
//! the request needs). A ConfigMap that does not parse denies everyone (500, naming
//! the problem) rather than guessing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiOptions};
use crate::AppState;

/// What a user may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read Applications, resources, diffs, history, audit, events.
    Viewer,
    /// And act on Applications: refresh, sync, rollback, suspend, resume.
    Operator,
    /// And the emergency stop (and settings).
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The name audit records give (`alice`, `system:serviceaccount:ci:deployer`).
    pub name: String,
    /// Its groups (from the TokenReview; none for static tokens).
    pub groups: Vec<String>,
    /// How it authenticated: `static-token` or `token-review`.
    pub via: &'static str,
    /// Its role, if any is bound.
    pub role: Option<Role>,
}

/// The RBAC ConfigMap's `policy.yaml`:
///
/// ```yaml
/// bindings:
///   - role: admin
///     users: [alice]
///   - role: operator
///     groups: [platform, "system:serviceaccounts:ci"]
///   - role: viewer
///     groups: ["system:authenticated"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Who has which role.
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

/// One binding of a role to users and groups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// `viewer`, `operator` or `admin`.
    pub role: Role,
    /// User names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Kubernetes' superuser group, `admin` in every policy.
pub const SUPERUSERS: &str = "system:masters";

/// The key of the RBAC ConfigMap holding the [`Policy`].
pub const POLICY_KEY: &str = "policy.yaml";

impl Policy {
    /// Parse `policy.yaml`; the error names the line and field.
    pub fn parse(text: &str) -> Result<Policy, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    /// The highest role bound to `user` or one of `groups`. The cluster's superusers
    /// (`system:masters`) are `admin` without a binding: they can change the stop
    /// ConfigMap and every Application with kubectl anyway, and so the kubeconfig that
    /// `capstan up` writes works against the API on a fresh machine.
    pub fn role_of(&self, user: &str, groups: &[String]) -> Option<Role> {
        if groups.iter().any(|g| g == SUPERUSERS) {
            return Some(Role::Admin);
        }
        self.bindings
            .iter()
            .filter(|b| {
                b.users.iter().any(|u| u == user) || b.groups.iter().any(|g| groups.contains(g))
            })
            .map(|b| b.role)
            .max()
    }
}

/// The static tokens and the policy, as last read.
struct Config {
    read_at: Instant,
    /// SHA-256 of each token, by user.
    tokens: Vec<(String, [u8; 32])>,
    policy: Result<Policy, String>,
}

/// A successful TokenReview: when, the user name and groups.
type Reviewed = (Instant, String, Vec<String>);

/// The API's authentication state: the config cache and the TokenReview cache.
#[derive(Default)]
pub struct Authenticator {
    config: tokio::sync::Mutex<Option<std::sync::Arc<Config>>>,
    reviews: Mutex<HashMap<[u8; 32], Reviewed>>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Authenticator {
    async fn config(&self, state: &AppState) -> Result<std::sync::Arc<Config>, ApiError> {
        let opts = &state.opts.api;
        let mut cached = self.config.lock().await;
        if let Some(c) = cached.as_ref()
            && c.read_at.elapsed() < opts.config_ttl
        {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(read_config(state, opts).await?);
        *cached = Some(c.clone());
        Ok(c)
    }

    /// Who the request's bearer token names; 401 when none or unknown.
    pub async fn authenticate(
        &self,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<User, ApiError> {
        self.authenticate_token(state, bearer(headers)?).await
    }

    /// Who `token` names (the web UI's session cookie holds one); 401 when unknown.
    pub async fn authenticate_token(
        &self,
        state: &AppState,
        token: &str,
    ) -> Result<User, ApiError> {
        let config = self.config(state).await?;
        let role = |name: &str, groups: &[String]| match &config.policy {
            Ok(p) => Ok(p.role_of(name, groups)),
            Err(e) => Err(ApiError::internal(format!(
                "the RBAC ConfigMap {}/{} is invalid, so nobody is allowed anything: {POLICY_KEY}: {e}",
                state.controller.namespace, state.opts.api.rbac_configmap
            ))),
        };
        // every static token is compared, in constant time, whatever matches
        let theirs = digest(token.as_bytes());
        let mut found: Option<&str> = None;
        for (user, hash) in &config.tokens {
            if bool::from(hash.ct_eq(&theirs)) {
                found = Some(user.as_str());
            }
        }
        if let Some(user) = found {
            return Ok(User {
                name: user.to_string(),
                groups: Vec::new(),
                via: "static-token",
                role: role(user, &[])?,
            });
        }
        let (name, groups) = self.review(state, token, theirs).await?;
        Ok(User {
            role: role(&name, &groups)?,
            name,
            groups,
            via: "token-review",
        })
    }

    async fn review(
        &self,
        state: &AppState,
        token: &str,
        hash: [u8; 32],
    ) -> Result<(String, Vec<String>), ApiError> {
        let ttl = state.opts.api.review_ttl;
        {
            let mut reviews = self.reviews.lock().unwrap_or_else(|p| p.into_inner());
            reviews.retain(|_, (at, _, _)| at.elapsed() < ttl);
            if let Some((_, name, groups)) = reviews.get(&hash) {
                return Ok((name.clone(), groups.clone()));
            }
        }
        let api: Api<TokenReview> = Api::all(state.controller.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ApiError::kube("asking the cluster who the token is (TokenReview)", &e))?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        match (status.authenticated, user.username) {
            (Some(true), Some(name)) if !name.is_empty() => {
                let groups = user.groups.unwrap_or_default();
                self.reviews
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(hash, (Instant::now(), name.clone(), groups.clone()));
                Ok((name, groups))
            }
            _ => Err(ApiError::unauthorized(
                "the bearer token is neither a Capstan API token nor one the cluster authenticates",
            )),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("no token: send `Authorization: Bearer TOKEN`"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    Ok(token)
}

async fn read_config(state: &AppState, opts: &ApiOptions) -> Result<Config, ApiError> {
    let ns = &state.controller.namespace;
    let client = &state.controller.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let tokens = secrets
        .get_opt(&opts.tokens_secret)
        .await
        .map_err(|e| {
            ApiError::kube(
                &format!("reading the API tokens Secret {ns}/{}", opts.tokens_secret),
                &e,
            )
        })?
        .and_then(|s| s.data)
        .unwrap_or_default()
        .into_iter()
        .map(|(user, token)| (user, digest(token.0.trim_ascii())))
        .filter(|(_, t)| *t != digest(b""))
        .collect();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let policy = match maps.get_opt(&opts.rbac_configmap).await.map_err(|e| {
        ApiError::kube(
            &format!("reading the RBAC ConfigMap {ns}/{}", opts.rbac_configmap),
            &e,
        )
    })? {
        None => Ok(Policy::default()),
        Some(cm) => match cm.data.unwrap_or_default().get(POLICY_KEY) {
            None => Err(format!("the key {POLICY_KEY} is missing")),
            Some(text) => Policy::parse(text),
        },
    };
    Ok(Config {
        read_at: Instant::now(),
        tokens,
        policy,
    })
}

/// Authenticate the request and check that its user has `role` to do `what`.
pub async fn require(
    state: &AppState,
    headers: &HeaderMap,
    role: Role,
    what: &str,
) -> Result<User, ApiError> {
    let user = state.api.authenticate(state, headers).await?;
    if user.role.is_none_or(|r| r < role) {
        return Err(ApiError::forbidden(&user.name, role, what));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_bound_role_counts_and_nothing_bound_is_nothing() {
        let p = Policy::parse(
            "bindings:\n  - role: viewer\n    groups: [\"system:authenticated\"]\n  - role: admin\n    users: [alice]\n  - role: operator\n    groups: [platform]\n",
        )
        .unwrap();
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(p.role_of("alice", &[]), Some(Role::Admin));
        assert_eq!(
            Policy::default().role_of("kubernetes-admin", &g(&["system:masters"])),
            Some(Role::Admin),
            "the cluster's superusers without a binding"
        );
        assert_eq!(
            p.role_of("bob", &g(&["platform", "system:authenticated"])),
            Some(Role::Operator)
        );
        assert_eq!(
            p.role_of("carol", &g(&["system:authenticated"])),
            Some(Role::Viewer)
        );
        assert_eq!(p.role_of("mallory", &[]), None);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }

    #[test]
    fn a_policy_with_an_unknown_role_or_field_is_an_error_naming_it() {
        let e = Policy::parse("bindings:\n  - role: root\n    users: [a]\n").unwrap_err();
        assert!(e.contains("root"), "{e}");
        let e = Policy::parse("bindings:\n  - role: admin\n    user: [a]\n").unwrap_err();
        assert!(e.contains("user"), "{e}");
    }
}
