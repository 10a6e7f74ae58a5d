//! Authentication, as kube-apiserver does it for the tokens this server knows:
//!
//! - its admin bearer token (the kubeconfig's), like an entry of kube-apiserver's
//!   `--token-auth-file`: user `kubernetes-admin` in `system:masters`;
//! - ServiceAccount tokens it issued through the TokenRequest API
//!   (`POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`, what `kubectl create
//!   token` calls): JWTs with kube-apiserver's claims, signed by the server (HS256, with
//!   a key derived from the admin token, so a persistent server's tokens survive its
//!   restarts), checked on every use — signature, issuer, expiry, audience, and that
//!   the ServiceAccount still exists with the same uid.
//!
//! `POST /apis/authentication.k8s.io/v1/tokenreviews` answers for either kind, as
//! webhook authenticators and in-cluster servers (Capstan's own HTTP API) use it.
//!
//! Authorization: the server has no RBAC. The admin token may do everything; a
//! ServiceAccount token authenticates (TokenReview says who it is) but every other
//! request with it is refused with 403, as a real cluster refuses a ServiceAccount no
//! RoleBinding names.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cluster::Cluster;
use crate::error::{ApiError, Cause, Result};

/// The issuer of ServiceAccount tokens, and the API audience (kube-apiserver's
/// defaults: `--service-account-issuer`, `--api-audiences`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The admin token's user.
pub const ADMIN_USER: &str = "kubernetes-admin";

/// A TokenRequest's default lifetime (kube-apiserver: one hour) and the shortest allowed.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;

/// Who a token belongs to (a TokenReview's `status.user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// `kubernetes-admin`, or `system:serviceaccount:NS:NAME`.
    pub username: String,
    /// The user's uid (a ServiceAccount's uid).
    pub uid: String,
    /// Its groups, `system:authenticated` last.
    pub groups: Vec<String>,
    /// The token's id, for ServiceAccount tokens (`authentication.kubernetes.io/credential-id`).
    pub credential_id: Option<String>,
}

impl UserInfo {
    /// Whether this is the admin (which the server authorizes for everything).
    pub fn is_admin(&self) -> bool {
        self.username == ADMIN_USER
    }

    fn to_json(&self) -> Value {
        let mut user = json!({"username": self.username, "uid": self.uid, "groups": self.groups});
        if let Some(id) = &self.credential_id {
            user["extra"] =
                json!({"authentication.kubernetes.io/credential-id": [format!("JTI={id}")]});
        }
        user
    }
}

/// The tokens this server accepts.
pub struct Authenticator {
    admin_token: String,
    key: Vec<u8>,
}

impl Authenticator {
    /// An authenticator for the server whose admin token is `admin_token`.
    pub fn new(admin_token: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"capstan-apiserver serviceaccount signing key\0");
        h.update(admin_token.as_bytes());
        Authenticator {
            admin_token: admin_token.to_string(),
            key: h.finalize().to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    /// Who `token` is, for a request to the API itself (audience: the API).
    pub fn authenticate(&self, cluster: &Cluster, token: &str) -> Option<UserInfo> {
        self.review(cluster, token, &[]).ok().map(|(u, _)| u)
    }

    /// Check `token` for `audiences` (empty: the API's): the user and the audiences it
    /// is valid for, or why not.
    fn review(
        &self,
        cluster: &Cluster,
        token: &str,
        audiences: &[String],
    ) -> std::result::Result<(UserInfo, Vec<String>), String> {
        let wanted: Vec<String> = if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences.to_vec()
        };
        let (a, b) = (token.as_bytes(), self.admin_token.as_bytes());
        if a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
            // a static token is valid for the API's audience only
            if !wanted.iter().any(|w| w == ISSUER) {
                return Err("token audiences is invalid for the target audiences".into());
            }
            let admin = UserInfo {
                username: ADMIN_USER.into(),
                uid: String::new(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                credential_id: None,
            };
            return Ok((admin, vec![ISSUER.into()]));
        }
        let claims = self.verify(token)?;
        let now = jiff::Timestamp::now().as_second();
        let num = |k: &str| claims.get(k).and_then(Value::as_i64);
        if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
            return Err("invalid bearer token".into());
        }
        if num("exp").is_none_or(|e| e <= now) {
            return Err("invalid bearer token, service account token has expired".into());
        }
        if num("nbf").is_some_and(|n| n > now + 60) {
            return Err("invalid bearer token, service account token is not valid yet".into());
        }
        let aud: Vec<String> = claims
            .get("aud")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let valid: Vec<String> = wanted.into_iter().filter(|w| aud.contains(w)).collect();
        if valid.is_empty() {
            return Err(format!(
                "token audiences {aud:?} is invalid for the target audiences {:?}",
                if audiences.is_empty() {
                    vec![ISSUER.to_string()]
                } else {
                    audiences.to_vec()
                }
            ));
        }
        let k8s = claims.get("kubernetes.io").cloned().unwrap_or_default();
        let ns = k8s.get("namespace").and_then(Value::as_str).unwrap_or("");
        let sa_name = k8s
            .pointer("/serviceaccount/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let sa_uid = k8s
            .pointer("/serviceaccount/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        // the ServiceAccount must still exist, and be the one the token was issued for
        let live_uid = serviceaccount_uid(cluster, ns, sa_name);
        match live_uid {
            None => {
                return Err(format!(
                    "invalid bearer token, serviceaccounts \"{sa_name}\" not found"
                ));
            }
            Some(u) if u != sa_uid => {
                return Err(format!(
                    "invalid bearer token, the ServiceAccount {ns}/{sa_name} was deleted and recreated (uid {u}, token issued for {sa_uid})"
                ));
            }
            Some(_) => {}
        }
        let user = UserInfo {
            username: format!("system:serviceaccount:{ns}:{sa_name}"),
            uid: sa_uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            credential_id: claims
                .get("jti")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        Ok((user, valid))
    }

    /// The claims of a token this server signed.
    fn verify(&self, token: &str) -> std::result::Result<Value, String> {
        let invalid = || "invalid bearer token".to_string();
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(c.as_bytes());
        mac.verify_slice(&sig).map_err(|_| invalid())?;
        let claims = URL_SAFE_NO_PAD.decode(c).map_err(|_| invalid())?;
        serde_json::from_slice(&claims).map_err(|_| invalid())
    }

    fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{claims}.{sig}")
    }

    /// `POST .../serviceaccounts/NAME/token`: issue a token for the ServiceAccount.
    pub fn token_request(
        &self,
        cluster: &Cluster,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value> {
        let def = cluster
            .registry
            .get("", "v1", "serviceaccounts")
            .expect("serviceaccounts are built in");
        let sa = cluster.get(&def, namespace, name)?;
        let uid = sa
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION,
            Some(v) => v.as_i64().ok_or_else(|| {
                ApiError::invalid(
                    "authentication.k8s.io",
                    "TokenRequest",
                    name,
                    vec![Cause::new(
                        "FieldValueInvalid",
                        "spec.expirationSeconds",
                        format!("Invalid value: {v}: must be an integer"),
                    )],
                )
            })?,
        };
        if expiration < MIN_EXPIRATION {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                name,
                vec![Cause::new(
                    "FieldValueInvalid",
                    "spec.expirationSeconds",
                    format!(
                        "Invalid value: {expiration}: may not specify a duration less than 10 minutes"
                    ),
                )],
            ));
        }
        let audiences: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| vec![ISSUER.to_string()]);
        let now = jiff::Timestamp::now();
        let exp = now.as_second() + expiration;
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": now.as_second(),
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
            "nbf": now.as_second(),
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
        });
        let expires = jiff::Timestamp::from_second(exp)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
            "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null)},
            "status": {"token": self.sign(&claims), "expirationTimestamp": expires},
        }))
    }

    /// `POST /apis/authentication.k8s.io/v1/tokenreviews`: who a token is.
    pub fn token_review(&self, cluster: &Cluster, body: &Value) -> Result<Value> {
        if body.get("kind").and_then(Value::as_str) != Some("TokenReview") {
            return Err(ApiError::bad_request(
                "the body must be a TokenReview (authentication.k8s.io/v1)",
            ));
        }
        let token = body
            .pointer("/spec/token")
            .and_then(Value::as_str)
            .unwrap_or("");
        if token.is_empty() {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenReview",
                "",
                vec![Cause::required("spec.token")],
            ));
        }
        let audiences: Vec<String> = body
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let status = match self.review(cluster, token, &audiences) {
            Ok((user, audiences)) => {
                json!({"authenticated": true, "user": user.to_json(), "audiences": audiences})
            }
            Err(why) => json!({"user": {}, "error": format!("[{why}]")}),
        };
        Ok(json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": body.get("spec").cloned().unwrap_or_else(|| json!({})),
            "status": status,
        }))
    }
}

fn serviceaccount_uid(cluster: &Cluster, namespace: &str, name: &str) -> Option<String> {
    let def = cluster.registry.get("", "v1", "serviceaccounts")?;
    let sa = cluster.get(&def, namespace, name).ok()?;
    sa.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// 403 for an authenticated user the server does not authorize (anyone but the admin).
pub fn forbidden(user: &UserInfo, method: &http::Method, path: &str) -> ApiError {
    ApiError::forbidden_request(format!(
        "forbidden: User \"{}\" cannot {} path \"{path}\": the embedded API server has no RBAC and authorizes only its admin token",
        user.username,
        method.as_str().to_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_signed_by_another_server_is_invalid() {
        let ours = Authenticator::new("a");
        let theirs = Authenticator::new("b");
        let token = theirs.sign(&json!({"iss": ISSUER}));
        assert!(ours.verify(&token).is_err());
        assert!(theirs.verify(&token).is_ok());
        assert!(ours.verify("not.a.jwt").is_err());
        assert!(ours.verify("").is_err());
    }
}
