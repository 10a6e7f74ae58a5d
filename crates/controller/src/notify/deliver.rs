//! What one event looks like to each kind of destination, and sending it.
//!
//! - `webhook`: Capstan's JSON body, `X-Capstan-Event`, `X-Capstan-Delivery` (stable
//!   per event and destination, for receivers that drop repeats) and, with a key,
//!   `X-Capstan-Signature: sha256=<hex HMAC-SHA256 of the body>` as GitHub signs.
//! - `slack`: an incoming webhook's `{"text", "blocks"}`.
//! - `teams`: a message with one Adaptive Card, as Teams Workflows (and the legacy
//!   connectors) take it.
//! - `github`, `gitlab`, `gitea`: a commit status on the event's revision, context
//!   `capstan/<application>`, in the repository the Application's `repoURL` names.
//!
//! URLs and tokens come from Secrets and go nowhere but the request: errors name the
//! destination and field, never the URL (reqwest's errors are stripped of it).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha2::Sha256;

use super::crd::{DestinationType, TriggerName};
use super::triggers::Event;

/// A destination with its secrets read: ready to send to.
#[derive(Clone)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub type_: DestinationType,
    /// Where to post (the webhook URL, or the forge's API base).
    pub url: String,
    /// The forge's token.
    pub token: Option<String>,
    /// The webhook's HMAC key.
    pub hmac: Option<Vec<u8>>,
    /// The forge repository, when the spec names it.
    pub repository: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the URL and the secrets stay out of every debug print
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("type", &self.type_)
            .finish_non_exhaustive()
    }
}

/// Why a delivery failed. Never holds a secret URL or token.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The destination's Secret or key is missing or unreadable.
    #[error("{field}: {problem}")]
    Secret {
        /// `spec.destinations[i].urlSecretRef`, …
        field: String,
        /// What is wrong (names the Secret and key, never the value).
        problem: String,
    },
    /// The URL is not an http(s) URL.
    #[error("{field}: not an http(s) URL")]
    InvalidUrl {
        /// Where it came from.
        field: String,
    },
    /// The forge repository could not be derived from the Application's `repoURL`.
    #[error(
        "destination {destination}: no {forge} repository in the repoURL of {application} ({repo_url}); set spec.destinations[].repository"
    )]
    NoRepository {
        /// The destination.
        destination: String,
        /// The forge.
        forge: &'static str,
        /// `namespace/name`.
        application: String,
        /// The repoURL (without credentials).
        repo_url: String,
    },
    /// The request did not complete (connection, timeout).
    #[error("destination {destination}: the request failed")]
    Send {
        /// The destination.
        destination: String,
        /// Why (without the URL).
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered with an error status.
    #[error("destination {destination}: the receiver answered {status}")]
    Status {
        /// The destination.
        destination: String,
        /// The HTTP status.
        status: u16,
    },
}

/// One HTTP request to make.
#[derive(Clone)]
pub struct Request {
    /// The full URL.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: HeaderMap,
    /// The JSON body, exactly as signed.
    pub body: Vec<u8>,
}

/// Who sends, for the bodies.
#[derive(Debug, Clone)]
pub struct Sender {
    /// `namespace/name` of the Notification.
    pub notification: String,
    /// The stable id of this delivery.
    pub delivery_id: String,
}

/// The `X-Capstan-Signature` of `body` under `key`: `sha256=<hex>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Capstan's own JSON body of an event (the `webhook` destination's).
pub fn event_json(event: &Event, sender: &Sender) -> Value {
    let mut body = json!({
        "notification": sender.notification,
        "deliveryId": sender.delivery_id,
        "trigger": event.trigger.as_str(),
        "revision": event.revision,
        "message": event.message,
        "time": event.time.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    });
    if let Some(app) = &event.app {
        body["application"] = json!({
            "namespace": app.namespace,
            "name": app.name,
            "uid": app.uid,
            "repoURL": app.repo_url,
            "sync": app.sync,
            "health": app.health,
        });
    }
    body
}

/// Good, bad or on its way — for colours, emoji and commit states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Good,
    Bad,
    Pending,
}

fn tone(t: TriggerName) -> Tone {
    match t {
        TriggerName::SyncSucceeded | TriggerName::Deployed => Tone::Good,
        TriggerName::SyncFailed | TriggerName::HealthDegraded | TriggerName::EmergencyStop => {
            Tone::Bad
        }
        TriggerName::ImageUpdated => Tone::Pending,
    }
}

fn title(event: &Event) -> String {
    let what = match event.trigger {
        TriggerName::SyncSucceeded => "Sync succeeded",
        TriggerName::SyncFailed => "Sync failed",
        TriggerName::HealthDegraded => "Health degraded",
        TriggerName::Deployed => "Deployed",
        TriggerName::EmergencyStop => "Emergency stop",
        TriggerName::ImageUpdated => "Image updated",
    };
    match &event.app {
        Some(app) => format!("{what}: {}", app.key()),
        None => what.to_string(),
    }
}

fn slack_body(event: &Event) -> Value {
    let emoji = match tone(event.trigger) {
        Tone::Good => ":white_check_mark:",
        Tone::Bad => ":red_circle:",
        Tone::Pending => ":arrows_counterclockwise:",
    };
    let text = format!("{emoji} *{}*\n{}", title(event), event.message);
    let mut context = vec![format!("`{}`", event.trigger.as_str())];
    if event.app.is_some() {
        context.push(format!("revision `{}`", event.short_revision()));
    }
    json!({
        "text": format!("{}: {}", title(event), event.message),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]},
        ],
    })
}

fn teams_body(event: &Event) -> Value {
    let color = match tone(event.trigger) {
        Tone::Good => "Good",
        Tone::Bad => "Attention",
        Tone::Pending => "Accent",
    };
    let mut facts = vec![json!({"title": "Trigger", "value": event.trigger.as_str()})];
    if let Some(app) = &event.app {
        facts.push(json!({"title": "Application", "value": app.key()}));
        facts.push(json!({"title": "Revision", "value": event.short_revision()}));
        if !app.sync.is_empty() {
            facts.push(json!({"title": "Sync", "value": app.sync}));
        }
        if !app.health.is_empty() {
            facts.push(json!({"title": "Health", "value": app.health}));
        }
    }
    json!({
        "type": "message",
        "summary": title(event),
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "color": color, "text": title(event), "wrap": true},
                    {"type": "TextBlock", "text": event.message, "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    })
}

/// `owner/repo` (or GitLab's `group/sub/project`) of a repository URL:
/// `https://host/owner/repo.git`, `ssh://git@host/owner/repo`, `git@host:owner/repo`.
pub fn repository_path(repo_url: &str) -> Option<String> {
    let rest = match repo_url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1.to_string(),
        None => repo_url.split_once(':')?.1.to_string(),
    };
    let path = rest
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .trim_end_matches(".git")
        .to_string();
    (path.contains('/') && !path.split('/').any(str::is_empty)).then_some(path)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn header(name: &'static str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_static(name),
        HeaderValue::from_str(value).ok()?,
    ))
}

/// The commit status of an event on a forge.
fn forge_request(target: &Target, event: &Event) -> Result<Option<Request>, DeliverError> {
    let Some(app) = &event.app else {
        // the emergency stop concerns no commit
        return Ok(None);
    };
    let forge = target.type_.as_str();
    let repository = match &target.repository {
        Some(r) => r.trim_matches('/').to_string(),
        None => repository_path(&app.repo_url).ok_or_else(|| DeliverError::NoRepository {
            destination: target.name.clone(),
            forge,
            application: app.key(),
            repo_url: app.repo_url.clone(),
        })?,
    };
    let context = format!("capstan/{}", app.name);
    let mut description: String = event.message.chars().take(140).collect();
    if description.len() < event.message.len() {
        description = description.chars().take(139).collect::<String>() + "…";
    }
    let base = target.url.trim_end_matches('/');
    let token = target.token.as_deref().unwrap_or("");
    let mut headers = HeaderMap::new();
    let (url, body) = match target.type_ {
        DestinationType::Github | DestinationType::Gitea => {
            let state = match tone(event.trigger) {
                Tone::Good => "success",
                Tone::Bad => "failure",
                Tone::Pending => "pending",
            };
            let (owner_repo, auth) = if target.type_ == DestinationType::Github {
                headers.extend(header("accept", "application/vnd.github+json"));
                headers.extend(header("x-github-api-version", "2022-11-28"));
                (repository.clone(), format!("Bearer {token}"))
            } else {
                (repository.clone(), format!("token {token}"))
            };
            let mut auth = HeaderValue::from_str(&auth).map_err(|_| DeliverError::Secret {
                field: format!("destination {}: tokenSecretRef", target.name),
                problem: "the token is not a valid header value".into(),
            })?;
            auth.set_sensitive(true);
            headers.insert(AUTHORIZATION, auth);
            let (owner, repo) = owner_repo
                .split_once('/')
                .unwrap_or((owner_repo.as_str(), ""));
            (
                format!(
                    "{base}/repos/{}/{}/statuses/{}",
                    encode(owner),
                    repo.split('/').map(encode).collect::<Vec<_>>().join("/"),
                    encode(&event.revision)
                ),
                json!({"state": state, "context": context, "description": description}),
            )
        }
        _ => {
            let state = match tone(event.trigger) {
                Tone::Good => "success",
                Tone::Bad => "failed",
                Tone::Pending => "pending",
            };
            let mut auth = HeaderValue::from_str(token).map_err(|_| DeliverError::Secret {
                field: format!("destination {}: tokenSecretRef", target.name),
                problem: "the token is not a valid header value".into(),
            })?;
            auth.set_sensitive(true);
            headers.insert(HeaderName::from_static("private-token"), auth);
            (
                format!(
                    "{base}/projects/{}/statuses/{}",
                    encode(&repository),
                    encode(&event.revision)
                ),
                json!({"state": state, "name": context, "description": description}),
            )
        }
    };
    Ok(Some(Request {
        url,
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }))
}

/// The request for `event` at `target`, or `None` when the destination takes no such
/// event (a commit status for the emergency stop).
pub fn request(
    target: &Target,
    event: &Event,
    sender: &Sender,
) -> Result<Option<Request>, DeliverError> {
    if target.type_.is_forge() {
        return forge_request(target, event);
    }
    let body = match target.type_ {
        DestinationType::Slack => slack_body(event),
        DestinationType::Teams => teams_body(event),
        _ => event_json(event, sender),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut headers = HeaderMap::new();
    if target.type_ == DestinationType::Webhook {
        headers.extend(header("x-capstan-event", event.trigger.as_str()));
        headers.extend(header("x-capstan-delivery", &sender.delivery_id));
        if let Some(key) = &target.hmac {
            headers.extend(header("x-capstan-signature", &signature(key, &body)));
        }
    }
    Ok(Some(Request {
        url: target.url.clone(),
        headers,
        body,
    }))
}

/// The HTTP client deliveries share: `timeout` per request, no redirects (a token
/// must not follow one to another host).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("capstan/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Send one request; a 2xx answer is success.
pub async fn send(
    http: &reqwest::Client,
    destination: &str,
    req: Request,
) -> Result<u16, DeliverError> {
    let resp = http
        .post(&req.url)
        .header(CONTENT_TYPE, "application/json")
        .headers(req.headers)
        .body(req.body)
        .send()
        .await
        .map_err(|e| DeliverError::Send {
            destination: destination.to_string(),
            source: e.without_url(),
        })?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Err(DeliverError::Status {
            destination: destination.to_string(),
            status,
        });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::triggers::AppFacts;

    fn event(trigger: TriggerName) -> Event {
        Event {
            trigger,
            app: Some(AppFacts {
                namespace: "apps".into(),
                name: "web".into(),
                uid: "u1".into(),
                repo_url: "https://github.com/acme/env.git".into(),
                sync: "Synced".into(),
                health: "Healthy".into(),
            }),
            revision: "0123456789abcdef".into(),
            time: None,
            message: "apps/web synced to 0123456".into(),
        }
    }

    fn target(type_: DestinationType, url: &str) -> Target {
        Target {
            name: type_.as_str().into(),
            type_,
            url: url.into(),
            token: Some("tok".into()),
            hmac: Some(b"key".to_vec()),
            repository: None,
        }
    }

    fn sender() -> Sender {
        Sender {
            notification: "apps/n".into(),
            delivery_id: "d1".into(),
        }
    }

    #[test]
    fn the_repository_is_read_from_every_url_form() {
        for url in [
            "https://github.com/acme/env.git",
            "ssh://git@github.com/acme/env",
            "git@github.com:acme/env.git",
            "http://127.0.0.1:8080/acme/env.git/",
        ] {
            assert_eq!(repository_path(url).as_deref(), Some("acme/env"), "{url}");
        }
        assert_eq!(
            repository_path("https://gitlab.com/g/sub/p.git").as_deref(),
            Some("g/sub/p")
        );
        assert_eq!(repository_path("http://127.0.0.1:1/env.git"), None);
    }

    #[test]
    fn a_webhook_body_is_signed_as_sent() {
        let t = target(DestinationType::Webhook, "http://x/hook");
        let r = request(&t, &event(TriggerName::SyncSucceeded), &sender())
            .unwrap()
            .unwrap();
        let sig = r.headers["x-capstan-signature"].to_str().unwrap();
        assert_eq!(sig, signature(b"key", &r.body));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["trigger"], "on-sync-succeeded");
        assert_eq!(body["application"]["name"], "web");
        assert_eq!(r.headers["x-capstan-delivery"], "d1");
    }

    #[test]
    fn forges_get_commit_statuses_in_their_shapes() {
        let gh = request(
            &target(DestinationType::Github, "https://api.github.com/"),
            &event(TriggerName::SyncFailed),
            &sender(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            gh.url,
            "https://api.github.com/repos/acme/env/statuses/0123456789abcdef"
        );
        assert!(gh.headers[AUTHORIZATION].is_sensitive());
        let body: Value = serde_json::from_slice(&gh.body).unwrap();
        assert_eq!(body["state"], "failure");
        assert_eq!(body["context"], "capstan/web");

        let mut e = event(TriggerName::ImageUpdated);
        e.app.as_mut().unwrap().repo_url = "https://gitlab.com/g/sub/p.git".into();
        let gl = request(
            &target(DestinationType::Gitlab, "https://gitlab.com/api/v4"),
            &e,
            &sender(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            gl.url,
            "https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/statuses/0123456789abcdef"
        );
        assert_eq!(gl.headers["private-token"], "tok");
        let body: Value = serde_json::from_slice(&gl.body).unwrap();
        assert_eq!(
            (body["state"].as_str(), body["name"].as_str()),
            (Some("pending"), Some("capstan/web"))
        );

        let gt = request(
            &target(DestinationType::Gitea, "https://gitea.example.com/api/v1"),
            &event(TriggerName::Deployed),
            &sender(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(gt.headers[AUTHORIZATION], "token tok");
        assert!(
            gt.url
                .ends_with("/repos/acme/env/statuses/0123456789abcdef")
        );

        let stop = Event {
            app: None,
            ..event(TriggerName::EmergencyStop)
        };
        let none = request(
            &target(DestinationType::Github, "https://x"),
            &stop,
            &sender(),
        );
        assert!(none.unwrap().is_none());
    }

    #[test]
    fn slack_and_teams_get_their_message_shapes() {
        let e = event(TriggerName::Deployed);
        let s: Value = serde_json::from_slice(
            &request(&target(DestinationType::Slack, "http://x"), &e, &sender())
                .unwrap()
                .unwrap()
                .body,
        )
        .unwrap();
        assert!(s["text"].as_str().unwrap().contains("apps/web"));
        assert_eq!(s["blocks"][0]["type"], "section");
        let t: Value = serde_json::from_slice(
            &request(&target(DestinationType::Teams, "http://x"), &e, &sender())
                .unwrap()
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(
            t["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(t["attachments"][0]["content"]["type"], "AdaptiveCard");
    }
}
