//! What a delivery says, read from each provider's payload: a ping, a push (the
//! repository's URLs, the refs it moved, the files it touched when the payload lists
//! them), an image pushed to a registry, or an event Capstan does not act on.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use serde_json::Value;

/// A provider of webhooks, as named in the route (`/webhooks/{provider}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// GitHub (and GitHub Enterprise).
    GitHub,
    /// GitLab (project and system hooks).
    GitLab,
    /// Gitea and Forgejo.
    Gitea,
    /// Gogs.
    Gogs,
    /// Bitbucket Cloud and Bitbucket Server / Data Center (told apart by the event key).
    Bitbucket,
    /// Azure DevOps Services / Server.
    AzureDevOps,
    /// Capstan's own JSON form for any Git server.
    Generic,
    /// Capstan's own JSON form for any registry.
    Registry,
    /// Docker Hub.
    DockerHub,
    /// Harbor.
    Harbor,
}

impl Provider {
    /// Every provider, as routed.
    pub const ALL: [Provider; 10] = [
        Provider::GitHub,
        Provider::GitLab,
        Provider::Gitea,
        Provider::Gogs,
        Provider::Bitbucket,
        Provider::AzureDevOps,
        Provider::Generic,
        Provider::Registry,
        Provider::DockerHub,
        Provider::Harbor,
    ];

    /// The name in the route, the metrics and the webhook Secret's key.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Gogs => "gogs",
            Provider::Bitbucket => "bitbucket",
            Provider::AzureDevOps => "azure-devops",
            Provider::Generic => "generic",
            Provider::Registry => "registry",
            Provider::DockerHub => "dockerhub",
            Provider::Harbor => "harbor",
        }
    }

    /// The provider a route names.
    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The provider that sent a delivery to the provider-agnostic route (`/api/webhook`,
    /// Argo CD's), by its headers; Gitea before GitHub and Gogs (it sends theirs too).
    pub fn detect(headers: &HeaderMap) -> Option<Provider> {
        let has = |h: &str| headers.contains_key(h);
        if has("x-gitea-event") {
            Some(Provider::Gitea)
        } else if has("x-gogs-event") {
            Some(Provider::Gogs)
        } else if has("x-github-event") {
            Some(Provider::GitHub)
        } else if has("x-gitlab-event") {
            Some(Provider::GitLab)
        } else if has("x-event-key") {
            Some(Provider::Bitbucket)
        } else if has("x-vss-activityid") {
            Some(Provider::AzureDevOps)
        } else {
            None
        }
    }

    /// The header naming a delivery, so a redelivery is recognised.
    pub fn delivery_header(self) -> &'static str {
        match self {
            Provider::GitHub => "x-github-delivery",
            Provider::GitLab => "x-gitlab-event-uuid",
            Provider::Gitea => "x-gitea-delivery",
            Provider::Gogs => "x-gogs-delivery",
            // Cloud sends X-Request-UUID, Server X-Request-Id
            Provider::Bitbucket => "x-request-uuid",
            Provider::AzureDevOps => "x-vss-activityid",
            Provider::Generic | Provider::Registry => "x-capstan-delivery",
            Provider::DockerHub | Provider::Harbor => "x-request-id",
        }
    }
}

/// One ref a push moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The full ref: `refs/heads/main`, `refs/tags/v1.2.0`.
    pub name: String,
    /// The commit it points at now (all zeros, or empty, when it was deleted).
    pub after: String,
    /// The ref was deleted.
    pub deleted: bool,
}

impl RefUpdate {
    /// The branch, for a `refs/heads/` ref.
    pub fn branch(&self) -> Option<&str> {
        self.name.strip_prefix("refs/heads/")
    }

    /// The tag, for a `refs/tags/` ref.
    pub fn tag(&self) -> Option<&str> {
        self.name.strip_prefix("refs/tags/")
    }
}

/// A push to a Git repository.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Push {
    /// The repository's URLs as the payload gives them (web, HTTPS clone, SSH clone).
    pub repo_urls: Vec<String>,
    /// The refs moved (one for most forges; Bitbucket and Azure DevOps can list several).
    pub refs: Vec<RefUpdate>,
    /// The repository's default branch, when the payload says.
    pub default_branch: Option<String>,
    /// The files the push touched (added, modified, removed), when the payload lists
    /// all of them; `None` when it does not (no list, a list cut short, a forced push):
    /// then every Application of the repository and ref is refreshed.
    pub changed_files: Option<BTreeSet<String>>,
}

/// An image pushed to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePush {
    /// The image repository, `host/path` (Docker Hub's `user/repo` as `docker.io/user/repo`).
    pub image: String,
    /// The tag pushed, when the payload says.
    pub tag: Option<String>,
}

/// What a delivery says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A ping or test delivery: answered 200, nothing done.
    Ping,
    /// A push to a Git repository.
    Push(Push),
    /// Images pushed to a registry.
    Images(Vec<ImagePush>),
    /// An event Capstan does not act on (answered 202): its name.
    Other(String),
}

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// A field the event needs is missing or has the wrong type.
    #[error("the {event} payload has no {field}")]
    Missing {
        /// The event.
        event: String,
        /// The field (a JSON pointer).
        field: &'static str,
    },
    /// The headers do not say which event this is.
    #[error("no {0} header: not a webhook delivery of this provider")]
    NoEventHeader(&'static str),
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn is_deleted(after: &str) -> bool {
    after.is_empty() || after.chars().all(|c| c == '0')
}

/// Read a delivery of `provider`.
pub fn parse(provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<Event, PayloadError> {
    match provider {
        Provider::GitHub => github(headers, body),
        Provider::GitLab => gitlab(headers, body),
        Provider::Gitea => gitea_like(headers, body, "x-gitea-event"),
        Provider::Gogs => gitea_like(headers, body, "x-gogs-event"),
        Provider::Bitbucket => bitbucket(headers, body),
        Provider::AzureDevOps => azure_devops(body),
        Provider::Generic => generic(body),
        Provider::Registry => registry(body),
        Provider::DockerHub => dockerhub(body),
        Provider::Harbor => harbor(body),
    }
}

fn json(body: &[u8]) -> Result<Value, PayloadError> {
    Ok(serde_json::from_slice(body)?)
}

/// The files of GitHub-shaped `commits` (GitHub, GitLab, Gitea, Gogs): `None` when
/// there are none, or the list is known to be cut short.
fn commit_files(v: &Value, complete: bool) -> Option<BTreeSet<String>> {
    let commits = v.get("commits")?.as_array()?;
    if commits.is_empty() || !complete {
        return None;
    }
    let mut files = BTreeSet::new();
    for c in commits {
        for key in ["added", "modified", "removed"] {
            // a commit without its lists (GitHub leaves them out of very large pushes)
            let list = c.get(key)?.as_array()?;
            files.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
        }
    }
    // commits that list no file (forges' "test delivery" samples): not known to touch nothing
    (!files.is_empty()).then_some(files)
}

fn urls(v: &Value, pointers: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pointers {
        if let Some(u) = str_at(v, p)
            && !out.iter().any(|o| o == u)
        {
            out.push(u.to_string());
        }
    }
    out
}

fn github(headers: &HeaderMap, body: &[u8]) -> Result<Event, PayloadError> {
    let event =
        header(headers, "x-github-event").ok_or(PayloadError::NoEventHeader("X-GitHub-Event"))?;
    let v = json(body)?;
    match event {
        "ping" => Ok(Event::Ping),
        "push" => {
            let name = str_at(&v, "/ref").ok_or(PayloadError::Missing {
                event: "push".into(),
                field: "/ref",
            })?;
            let after = str_at(&v, "/after").unwrap_or("").to_string();
            let deleted =
                v.get("deleted").and_then(Value::as_bool) == Some(true) || is_deleted(&after);
            let forced = v.get("forced").and_then(Value::as_bool) == Some(true);
            // GitHub lists at most 2048 commits in a push payload
            let complete = !forced
                && v.get("commits")
                    .and_then(Value::as_array)
                    .is_some_and(|c| c.len() < 2048);
            let repo_urls = urls(
                &v,
                &[
                    "/repository/html_url",
                    "/repository/clone_url",
                    "/repository/ssh_url",
                    "/repository/git_url",
                    "/repository/url",
                ],
            );
            if repo_urls.is_empty() {
                return Err(PayloadError::Missing {
                    event: "push".into(),
                    field: "/repository/html_url",
                });
            }
            Ok(Event::Push(Push {
                repo_urls,
                refs: vec![RefUpdate {
                    name: name.to_string(),
                    after,
                    deleted,
                }],
                default_branch: str_at(&v, "/repository/default_branch")
                    .or_else(|| str_at(&v, "/repository/master_branch"))
                    .map(str::to_string),
                changed_files: commit_files(&v, complete),
            }))
        }
        other => Ok(Event::Other(other.to_string())),
    }
}

fn gitlab(headers: &HeaderMap, body: &[u8]) -> Result<Event, PayloadError> {
    let event =
        header(headers, "x-gitlab-event").ok_or(PayloadError::NoEventHeader("X-Gitlab-Event"))?;
    let v = json(body)?;
    // A system hook carries the kind in the body; a project hook in the header too.
    let kind = str_at(&v, "/object_kind").or_else(|| str_at(&v, "/event_name"));
    let is_push = match event {
        "Push Hook" | "Tag Push Hook" => true,
        "System Hook" => matches!(kind, Some("push" | "tag_push")),
        _ => false,
    };
    if !is_push {
        return Ok(Event::Other(match kind {
            Some(k) if event == "System Hook" => format!("System Hook ({k})"),
            _ => event.to_string(),
        }));
    }
    let name = str_at(&v, "/ref").ok_or(PayloadError::Missing {
        event: event.into(),
        field: "/ref",
    })?;
    let after = str_at(&v, "/after")
        .or_else(|| str_at(&v, "/checkout_sha"))
        .unwrap_or("")
        .to_string();
    let listed = v
        .get("commits")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as u64;
    let total = v
        .get("total_commits_count")
        .and_then(Value::as_u64)
        .unwrap_or(listed);
    let repo_urls = urls(
        &v,
        &[
            "/project/web_url",
            "/project/git_http_url",
            "/project/git_ssh_url",
            "/repository/homepage",
            "/repository/git_http_url",
            "/repository/git_ssh_url",
            "/repository/url",
        ],
    );
    if repo_urls.is_empty() {
        return Err(PayloadError::Missing {
            event: event.into(),
            field: "/project/web_url",
        });
    }
    Ok(Event::Push(Push {
        repo_urls,
        refs: vec![RefUpdate {
            name: name.to_string(),
            deleted: is_deleted(&after),
            after,
        }],
        default_branch: str_at(&v, "/project/default_branch").map(str::to_string),
        // GitLab lists at most 20 commits and counts them all
        changed_files: commit_files(&v, total <= listed),
    }))
}

fn gitea_like(
    headers: &HeaderMap,
    body: &[u8],
    event_header: &'static str,
) -> Result<Event, PayloadError> {
    let event = header(headers, event_header).ok_or(PayloadError::NoEventHeader(event_header))?;
    let v = json(body)?;
    match event {
        "push" => {
            let name = str_at(&v, "/ref").ok_or(PayloadError::Missing {
                event: "push".into(),
                field: "/ref",
            })?;
            let after = str_at(&v, "/after").unwrap_or("").to_string();
            let listed = v
                .get("commits")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as u64;
            // Gitea lists a few commits and counts them all in total_commits
            let total = v
                .get("total_commits")
                .and_then(Value::as_u64)
                .unwrap_or(listed);
            let repo_urls = urls(
                &v,
                &[
                    "/repository/html_url",
                    "/repository/clone_url",
                    "/repository/ssh_url",
                ],
            );
            if repo_urls.is_empty() {
                return Err(PayloadError::Missing {
                    event: "push".into(),
                    field: "/repository/html_url",
                });
            }
            Ok(Event::Push(Push {
                repo_urls,
                refs: vec![RefUpdate {
                    name: name.to_string(),
                    deleted: is_deleted(&after),
                    after,
                }],
                default_branch: str_at(&v, "/repository/default_branch").map(str::to_string),
                changed_files: commit_files(&v, total <= listed),
            }))
        }
        // Gitea's "Test delivery" sends a push; these are its other hook kinds
        other => Ok(Event::Other(other.to_string())),
    }
}

fn bitbucket(headers: &HeaderMap, body: &[u8]) -> Result<Event, PayloadError> {
    let key = header(headers, "x-event-key").ok_or(PayloadError::NoEventHeader("X-Event-Key"))?;
    if key == "diagnostics:ping" {
        return Ok(Event::Ping);
    }
    let v = json(body)?;
    match key {
        // Bitbucket Cloud
        "repo:push" => {
            let mut repo_urls = urls(&v, &["/repository/links/html/href"]);
            if let Some(full) = str_at(&v, "/repository/full_name") {
                let u = format!("https://bitbucket.org/{full}");
                if !repo_urls.contains(&u) {
                    repo_urls.push(u);
                }
            }
            if repo_urls.is_empty() {
                return Err(PayloadError::Missing {
                    event: key.into(),
                    field: "/repository/full_name",
                });
            }
            let mut refs = Vec::new();
            for c in v
                .pointer("/push/changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (side, deleted) = match c.get("new") {
                    Some(n) if !n.is_null() => (n, false),
                    _ => (c.get("old").unwrap_or(&Value::Null), true),
                };
                let Some(name) = str_at(side, "/name") else {
                    continue;
                };
                let prefix = if str_at(side, "/type") == Some("tag") {
                    "refs/tags/"
                } else {
                    "refs/heads/"
                };
                refs.push(RefUpdate {
                    name: format!("{prefix}{name}"),
                    after: if deleted {
                        String::new()
                    } else {
                        str_at(side, "/target/hash").unwrap_or("").to_string()
                    },
                    deleted,
                });
            }
            Ok(Event::Push(Push {
                repo_urls,
                refs,
                default_branch: str_at(&v, "/repository/mainbranch/name").map(str::to_string),
                changed_files: None,
            }))
        }
        // Bitbucket Server / Data Center
        "repo:refs_changed" => {
            let mut repo_urls = Vec::new();
            for l in v
                .pointer("/repository/links/clone")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(h) = str_at(l, "/href") {
                    repo_urls.push(h.to_string());
                }
            }
            if repo_urls.is_empty() {
                return Err(PayloadError::Missing {
                    event: key.into(),
                    field: "/repository/links/clone",
                });
            }
            let mut refs = Vec::new();
            for c in v
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = str_at(c, "/ref/id").or_else(|| str_at(c, "/refId")) else {
                    continue;
                };
                let after = str_at(c, "/toHash").unwrap_or("").to_string();
                refs.push(RefUpdate {
                    name: name.to_string(),
                    deleted: str_at(c, "/type") == Some("DELETE") || is_deleted(&after),
                    after,
                });
            }
            Ok(Event::Push(Push {
                repo_urls,
                refs,
                default_branch: None,
                changed_files: None,
            }))
        }
        other => Ok(Event::Other(other.to_string())),
    }
}

fn azure_devops(body: &[u8]) -> Result<Event, PayloadError> {
    let v = json(body)?;
    match str_at(&v, "/eventType") {
        Some("git.push") => {
            let repo_urls = urls(
                &v,
                &[
                    "/resource/repository/remoteUrl",
                    "/resource/repository/sshUrl",
                ],
            );
            if repo_urls.is_empty() {
                return Err(PayloadError::Missing {
                    event: "git.push".into(),
                    field: "/resource/repository/remoteUrl",
                });
            }
            let refs = v
                .pointer("/resource/refUpdates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    let after = str_at(r, "/newObjectId").unwrap_or("").to_string();
                    Some(RefUpdate {
                        name: str_at(r, "/name")?.to_string(),
                        deleted: is_deleted(&after),
                        after,
                    })
                })
                .collect();
            Ok(Event::Push(Push {
                repo_urls,
                refs,
                default_branch: str_at(&v, "/resource/repository/defaultBranch")
                    .map(|b| b.strip_prefix("refs/heads/").unwrap_or(b).to_string()),
                changed_files: None,
            }))
        }
        Some(other) => Ok(Event::Other(other.to_string())),
        None => Err(PayloadError::Missing {
            event: "Azure DevOps".into(),
            field: "/eventType",
        }),
    }
}

/// Capstan's generic Git form: `{"repository": URL, "ref": "refs/heads/main" | "main",
/// "after": SHA?, "files": [..]?}`; `{"ping": true}` is a ping.
fn generic(body: &[u8]) -> Result<Event, PayloadError> {
    let v = json(body)?;
    if v.get("ping").and_then(Value::as_bool) == Some(true) {
        return Ok(Event::Ping);
    }
    let repo = str_at(&v, "/repository").ok_or(PayloadError::Missing {
        event: "generic push".into(),
        field: "/repository",
    })?;
    let r = str_at(&v, "/ref").ok_or(PayloadError::Missing {
        event: "generic push".into(),
        field: "/ref",
    })?;
    let name = if r.starts_with("refs/") {
        r.to_string()
    } else {
        format!("refs/heads/{r}")
    };
    let after = str_at(&v, "/after").unwrap_or("").to_string();
    let changed_files = v.get("files").and_then(Value::as_array).map(|f| {
        f.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    });
    Ok(Event::Push(Push {
        repo_urls: vec![repo.to_string()],
        refs: vec![RefUpdate {
            name,
            deleted: v.get("deleted").and_then(Value::as_bool) == Some(true),
            after,
        }],
        default_branch: str_at(&v, "/defaultBranch").map(str::to_string),
        changed_files,
    }))
}

/// Capstan's generic registry form: `{"image": "host/repo", "tag": "1.2.3"?}`.
fn registry(body: &[u8]) -> Result<Event, PayloadError> {
    let v = json(body)?;
    if v.get("ping").and_then(Value::as_bool) == Some(true) {
        return Ok(Event::Ping);
    }
    let image = str_at(&v, "/image").ok_or(PayloadError::Missing {
        event: "registry push".into(),
        field: "/image",
    })?;
    Ok(Event::Images(vec![ImagePush {
        image: image.to_string(),
        tag: str_at(&v, "/tag").map(str::to_string),
    }]))
}

fn dockerhub(body: &[u8]) -> Result<Event, PayloadError> {
    let v = json(body)?;
    let repo = str_at(&v, "/repository/repo_name").ok_or(PayloadError::Missing {
        event: "Docker Hub push".into(),
        field: "/repository/repo_name",
    })?;
    let image = if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    Ok(Event::Images(vec![ImagePush {
        image,
        tag: str_at(&v, "/push_data/tag").map(str::to_string),
    }]))
}

fn harbor(body: &[u8]) -> Result<Event, PayloadError> {
    let v = json(body)?;
    let kind = str_at(&v, "/type").unwrap_or("");
    if kind != "PUSH_ARTIFACT" && kind != "pushImage" {
        return Ok(Event::Other(if kind.is_empty() {
            "unknown".into()
        } else {
            kind.to_string()
        }));
    }
    let mut images = Vec::new();
    for r in v
        .pointer("/event_data/resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // resource_url is `host/project/repo:tag` (or `@sha256:…`)
        if let Some(url) = str_at(r, "/resource_url") {
            let name = url.split('@').next().unwrap_or(url);
            let name = match name.rsplit_once(':') {
                Some((n, tag)) if !tag.contains('/') => n,
                _ => name,
            };
            images.push(ImagePush {
                image: name.to_string(),
                tag: str_at(r, "/tag").map(str::to_string),
            });
        }
    }
    if images.is_empty() {
        return Err(PayloadError::Missing {
            event: kind.into(),
            field: "/event_data/resources/0/resource_url",
        });
    }
    Ok(Event::Images(images))
}

impl Push {
    /// Whether a ref of this push names the default branch (Argo CD's "touched HEAD");
    /// `None` when the payload does not say which branch is the default.
    pub fn touches_head(&self) -> Option<bool> {
        let default = self.default_branch.as_deref()?;
        Some(self.refs.iter().any(|r| r.branch() == Some(default)))
    }

    /// The refs as Argo CD names a push's revision: the branch or tag alone.
    pub fn revisions(&self) -> Vec<String> {
        self.refs
            .iter()
            .map(|r| r.branch().or(r.tag()).unwrap_or(&r.name).to_string())
            .collect()
    }
}
