//! `GET /api/v1/applications`: the Applications of the controller's cache (never a
//! LIST per request), filtered, counted, sorted and paged on the server.
//!
//! Filters (all optional, combined with AND; a comma-separated list is any of):
//! `sync`, `health`, `namespace`, `repo` (part of the repository URL), `label` (a
//! label selector: `k=v`, `k!=v`, `k`, `!k`, comma-separated, all must hold),
//! `suspended` (`true`/`false`), `q` (text in the namespace/name, repository, path,
//! revision, commit message or author). Counts per sync and health state are over
//! the Applications the other filters (not `sync`, `health`, `suspended`) keep, so a
//! UI can show how many each state button would give. The sort (`sort=name`, the
//! default, `-name`, `sync`, `health`, `lastSync`, `-lastSync`) is stable: ties are
//! ordered by namespace and name. Pages: `page` (from 1) and `limit` (1–1000,
//! default 100).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use capstan_controller::Application;
use kube::ResourceExt;
use serde::Serialize;

use super::{ApiError, Role, auth};
use crate::AppState;

/// Sync states a filter may name.
pub const SYNC_STATES: &[&str] = &["Synced", "OutOfSync", "Unknown"];
/// Health states a filter may name.
pub const HEALTH_STATES: &[&str] = &[
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];
const SORTS: &[&str] = &["name", "-name", "sync", "health", "lastSync", "-lastSync"];

/// The revision an Application is at: what a list row shows of it.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRow {
    /// The full SHA.
    pub sha: String,
    /// Its first 7 characters.
    pub short: String,
    /// First line of the commit message (from history, when synced to it).
    pub message: String,
    /// The commit's author.
    pub author: String,
}

/// The last sync of an Application.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LastSync {
    /// `Running`, `Succeeded`, `Failed` or `Stopped`.
    pub phase: String,
    /// What started it (`automated`, `manual`, `rollback`, …).
    pub trigger: String,
    /// What happened.
    pub message: String,
    /// When it finished (RFC 3339), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Seconds since it finished (or started, while running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
}

/// One row of the list: what a list view needs of an Application.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The repository (the first source's, for several).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Path in it.
    pub path: String,
    /// What the spec asks for (branch, tag, SHA, range; empty for HEAD).
    pub target_revision: String,
    /// `Synced`, `OutOfSync` or `Unknown`.
    pub sync: String,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub health: String,
    /// Why, when not healthy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub health_message: String,
    /// The revision compared against.
    pub revision: RevisionRow,
    /// The last sync, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<LastSync>,
    /// `spec.suspend`.
    pub suspended: bool,
    /// Whether the emergency stop holds every sync.
    pub emergency_stop: bool,
    /// The Ready condition's message when it is not True.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the controller last wrote the status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
}

fn sync_of(app: &Application) -> &str {
    app.status
        .as_ref()
        .and_then(|s| s.sync.as_ref())
        .map(|s| s.status.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("Unknown")
}

fn health_of(app: &Application) -> &str {
    app.status
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .map(|s| s.status.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("Unknown")
}

fn repo_of(app: &Application) -> &str {
    if !app.spec.source.repo_url.is_empty() {
        return &app.spec.source.repo_url;
    }
    app.spec
        .sources
        .first()
        .map(|s| s.repo_url.as_str())
        .unwrap_or("")
}

fn finished_at(app: &Application) -> Option<&str> {
    app.status
        .as_ref()?
        .operation_state
        .as_ref()?
        .finished_at
        .as_deref()
}

/// The list row of `app`.
pub fn row(app: &Application, stop: bool, now: jiff::Timestamp) -> Row {
    let st = app.status.clone().unwrap_or_default();
    let sha = st
        .sync
        .as_ref()
        .map(|s| s.revision.clone())
        .unwrap_or_default();
    let commit = st
        .history
        .iter()
        .find(|h| h.revision == sha && !sha.is_empty());
    let src = if app.spec.source.repo_url.is_empty() {
        app.spec.sources.first().cloned().unwrap_or_default()
    } else {
        app.spec.source.clone()
    };
    let last_sync = st.operation_state.as_ref().map(|op| {
        let at = op.finished_at.as_ref().or(op.started_at.as_ref());
        LastSync {
            phase: op.phase.clone(),
            trigger: op.trigger.clone(),
            message: op.message.clone(),
            finished_at: op.finished_at.clone(),
            age_seconds: at
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| (now - t).get_seconds().max(0)),
        }
    });
    Row {
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
        labels: app.labels().clone(),
        repo_url: src.repo_url.clone(),
        path: src.path.clone().unwrap_or_else(|| ".".into()),
        target_revision: src.target_revision.clone().unwrap_or_default(),
        sync: sync_of(app).to_string(),
        health: health_of(app).to_string(),
        health_message: st
            .health
            .as_ref()
            .map(|h| h.message.clone())
            .unwrap_or_default(),
        revision: RevisionRow {
            short: sha.chars().take(7).collect(),
            message: commit.map(|c| c.message.clone()).unwrap_or_default(),
            author: commit.map(|c| c.author.clone()).unwrap_or_default(),
            sha,
        },
        last_sync,
        suspended: app.spec.suspend,
        emergency_stop: stop,
        message: st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status != "True")
            .map(|c| c.message.clone())
            .unwrap_or_default(),
        reconciled_at: st.reconciled_at.clone(),
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

impl LabelReq {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelReq::Equals(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::Absent(k) => !labels.contains_key(k),
        }
    }
}

fn parse_selector(s: &str) -> Result<Vec<LabelReq>, ApiError> {
    let bad = |part: &str| {
        ApiError::bad_request(
            "label",
            format!("label selector term {part:?}: expected key=value, key!=value, key or !key"),
        )
    };
    let valid_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let req = if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                LabelReq::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                LabelReq::Absent(k.trim().into())
            } else {
                LabelReq::Exists(part.into())
            };
            let key = match &req {
                LabelReq::Equals(k, _)
                | LabelReq::NotEquals(k, _)
                | LabelReq::Exists(k)
                | LabelReq::Absent(k) => k,
            };
            if valid_key(key) {
                Ok(req)
            } else {
                Err(bad(part))
            }
        })
        .collect()
}

/// A validated list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    sync: Vec<String>,
    health: Vec<String>,
    namespace: Vec<String>,
    repo: Vec<String>,
    labels: Vec<LabelReq>,
    suspended: Option<bool>,
    text: Option<String>,
    sort: String,
    page: usize,
    limit: usize,
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(v))
                .map(|a| a.to_string())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        field,
                        format!("{field}={v:?}: expected one of {}", allowed.join(", ")),
                    )
                })
        })
        .collect()
}

fn number(field: &str, value: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                field,
                format!("{field}={value:?}: expected a whole number from {min} to {max}"),
            )
        })
}

impl ListQuery {
    /// Validate the query parameters; an unknown one is an error naming it.
    pub fn parse(params: &[(String, String)]) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery {
            sort: "name".into(),
            page: 1,
            limit: 100,
            ..Default::default()
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        for (k, v) in params {
            match k.as_str() {
                "sync" => q.sync.extend(one_of("sync", v, SYNC_STATES)?),
                "health" => q.health.extend(one_of("health", v, HEALTH_STATES)?),
                "namespace" => q.namespace.extend(list(v)),
                "repo" => q.repo.extend(list(v).into_iter().map(|r| r.to_lowercase())),
                "label" => q.labels.extend(parse_selector(v)?),
                "suspended" => {
                    q.suspended = Some(match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ApiError::bad_request(
                                "suspended",
                                format!("suspended={v:?}: expected true or false"),
                            ));
                        }
                    })
                }
                "q" => q.text = Some(v.to_lowercase()).filter(|t| !t.trim().is_empty()),
                "sort" => {
                    if !SORTS.contains(&v.as_str()) {
                        return Err(ApiError::bad_request(
                            "sort",
                            format!("sort={v:?}: expected one of {}", SORTS.join(", ")),
                        ));
                    }
                    q.sort = v.clone();
                }
                "page" => q.page = number("page", v, 1, usize::MAX)?,
                "limit" => q.limit = number("limit", v, 1, 1000)?,
                other => {
                    return Err(ApiError::bad_request(
                        other,
                        format!(
                            "unknown parameter {other:?}: expected sync, health, namespace, repo, label, suspended, q, sort, page or limit"
                        ),
                    ));
                }
            }
        }
        Ok(q)
    }

    /// The page asked for (from 1).
    pub fn page(&self) -> usize {
        self.page
    }

    /// Rows per page.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the filters other than the state ones keep `app`.
    fn keeps_scope(&self, app: &Application) -> bool {
        let ns = app.metadata.namespace.as_deref().unwrap_or("");
        if !self.namespace.is_empty() && !self.namespace.iter().any(|n| n == ns) {
            return false;
        }
        if !self.repo.is_empty() {
            let repo = repo_of(app).to_lowercase();
            if !self.repo.iter().any(|r| repo.contains(r.as_str())) {
                return false;
            }
        }
        if !self.labels.is_empty() {
            let labels = app.labels();
            if !self.labels.iter().all(|r| r.holds(labels)) {
                return false;
            }
        }
        match &self.text {
            None => true,
            Some(t) => text_matches(app, t),
        }
    }

    fn keeps_state(&self, app: &Application) -> bool {
        (self.sync.is_empty() || self.sync.iter().any(|s| s == sync_of(app)))
            && (self.health.is_empty() || self.health.iter().any(|h| h == health_of(app)))
            && self.suspended.is_none_or(|s| s == app.spec.suspend)
    }
}

/// Whether `hay` contains `needle` (lowercase), ignoring ASCII case, without allocating.
fn contains_ci(hay: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    n.is_empty()
        || hay
            .as_bytes()
            .windows(n.len())
            .any(|w| w.eq_ignore_ascii_case(n))
}

fn text_matches(app: &Application, t: &str) -> bool {
    let ns = app.metadata.namespace.as_deref().unwrap_or("");
    let name = app.metadata.name.as_deref().unwrap_or("");
    let in_key = match t.split_once('/') {
        // `namespace/name`, or a part of it across the slash
        Some((a, b)) => ns.ends_with(a) && name.starts_with(b),
        None => contains_ci(ns, t) || contains_ci(name, t),
    };
    if in_key
        || contains_ci(repo_of(app), t)
        || app
            .spec
            .source
            .path
            .as_deref()
            .is_some_and(|p| contains_ci(p, t))
    {
        return true;
    }
    let Some(st) = app.status.as_ref() else {
        return false;
    };
    let sha = st.sync.as_ref().map(|s| s.revision.as_str()).unwrap_or("");
    if !sha.is_empty() && sha.starts_with(t) {
        return true;
    }
    st.history
        .iter()
        .find(|h| h.revision == sha)
        .is_some_and(|h| contains_ci(&h.message, t) || contains_ci(&h.author, t))
}

/// Counts over the Applications in scope.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// How many, in scope (before the state filters).
    pub total: usize,
    /// By sync state.
    pub sync: BTreeMap<String, usize>,
    /// By health state.
    pub health: BTreeMap<String, usize>,
    /// How many are suspended.
    pub suspended: usize,
}

/// The answer of the list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    /// The page's rows.
    pub items: Vec<Row>,
    /// How many match all filters (over every page).
    pub total: usize,
    /// This page (from 1).
    pub page: usize,
    /// Rows per page.
    pub limit: usize,
    /// How many pages the matches fill.
    pub pages: usize,
    /// Counts per state over the Applications the scope filters keep.
    pub counts: Counts,
    /// Whether the emergency stop holds every sync (`GET /api/v1/emergency-stop` says
    /// why and since when).
    pub emergency_stop: bool,
}

fn bump(counts: &mut BTreeMap<String, usize>, state: &str) {
    match counts.get_mut(state) {
        Some(n) => *n += 1,
        None => {
            counts.insert(state.to_string(), 1);
        }
    }
}

/// The sort key every order ends with: namespace, then name.
fn key(a: &Application) -> (&str, &str) {
    (
        a.metadata.namespace.as_deref().unwrap_or(""),
        a.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Filter, count, sort and page `apps`.
pub fn select(
    apps: &[Arc<Application>],
    q: &ListQuery,
    stop: bool,
    now: jiff::Timestamp,
) -> (Vec<Row>, usize, Counts) {
    let mut counts = Counts::default();
    for s in SYNC_STATES {
        counts.sync.insert(s.to_string(), 0);
    }
    for h in HEALTH_STATES {
        counts.health.insert(h.to_string(), 0);
    }
    let mut matched: Vec<&Arc<Application>> = Vec::new();
    for app in apps {
        if !q.keeps_scope(app) {
            continue;
        }
        counts.total += 1;
        bump(&mut counts.sync, sync_of(app));
        bump(&mut counts.health, health_of(app));
        counts.suspended += usize::from(app.spec.suspend);
        if q.keeps_state(app) {
            matched.push(app);
        }
    }
    match q.sort.as_str() {
        "-name" => matched.sort_by(|a, b| key(b).cmp(&key(a))),
        "sync" => matched.sort_by(|a, b| (sync_of(a), key(a)).cmp(&(sync_of(b), key(b)))),
        "health" => matched.sort_by(|a, b| (health_of(a), key(a)).cmp(&(health_of(b), key(b)))),
        // RFC 3339 UTC sorts as text; never synced goes last either way
        "lastSync" => matched.sort_by(|a, b| {
            (finished_at(a).is_none(), finished_at(a), key(a)).cmp(&(
                finished_at(b).is_none(),
                finished_at(b),
                key(b),
            ))
        }),
        "-lastSync" => matched.sort_by(|a, b| {
            (
                finished_at(a).is_none(),
                std::cmp::Reverse(finished_at(a)),
                key(a),
            )
                .cmp(&(
                    finished_at(b).is_none(),
                    std::cmp::Reverse(finished_at(b)),
                    key(b),
                ))
        }),
        _ => matched.sort_by(|a, b| key(a).cmp(&key(b))),
    }
    let total = matched.len();
    let rows = matched
        .into_iter()
        .skip((q.page - 1).saturating_mul(q.limit))
        .take(q.limit)
        .map(|a| row(a, stop, now))
        .collect();
    (rows, total, counts)
}

/// `GET /api/v1/applications`.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ListResponse>, ApiError> {
    auth::require(&state, &headers, Role::Viewer, "list Applications").await?;
    let Query(params) = params.map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    let q = ListQuery::parse(&params)?;
    let c = &state.controller;
    if !c.is_ready() {
        return Err(ApiError::unavailable(
            "the controller has not listed the Applications yet; try again",
        ));
    }
    let stop = c.stop.is_stopped();
    let apps = c.applications.state();
    let (items, total, counts) = select(&apps, &q, stop, jiff::Timestamp::now());
    Ok(Json(ListResponse {
        items,
        total,
        page: q.page,
        limit: q.limit,
        pages: total.div_ceil(q.limit),
        counts,
        emergency_stop: stop,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_controller::crd::{ApplicationStatus, HealthStatus, SyncStatus};

    fn app(ns: &str, name: &str, sync: &str, health: &str) -> Arc<Application> {
        let mut a = Application::new(name, Default::default());
        a.metadata.namespace = Some(ns.into());
        a.spec.source.repo_url = format!("https://git.example/{ns}.git");
        a.status = Some(ApplicationStatus {
            sync: Some(SyncStatus {
                status: sync.into(),
                ..Default::default()
            }),
            health: Some(HealthStatus {
                status: health.into(),
                message: String::new(),
            }),
            ..Default::default()
        });
        Arc::new(a)
    }

    fn params(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn filters_count_the_scope_and_page_in_a_stable_order() {
        let apps = vec![
            app("b", "web", "Synced", "Healthy"),
            app("a", "web", "OutOfSync", "Degraded"),
            app("a", "api", "Synced", "Healthy"),
            app("c", "db", "Synced", "Progressing"),
        ];
        let now = jiff::Timestamp::now();
        let q = ListQuery::parse(&params("sync=Synced&limit=2")).unwrap();
        let (rows, total, counts) = select(&apps, &q, false, now);
        assert_eq!(total, 3);
        let names: Vec<String> = rows
            .iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect();
        assert_eq!(names, ["a/api", "b/web"]);
        assert_eq!(counts.total, 4);
        assert_eq!(counts.sync["OutOfSync"], 1);
        assert_eq!(counts.health["Healthy"], 2);
        let q = ListQuery::parse(&params("sync=synced&limit=2&page=2")).unwrap();
        let (rows, _, _) = select(&apps, &q, false, now);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "db");
        let q = ListQuery::parse(&params("repo=git.example/a&q=web")).unwrap();
        let (rows, total, counts) = select(&apps, &q, false, now);
        assert_eq!(
            (total, counts.total, rows[0].namespace.as_str()),
            (1, 1, "a")
        );
    }

    #[test]
    fn bad_parameters_name_the_field() {
        for (q, field) in [
            ("sync=Fine", "sync"),
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("page=x", "page"),
            ("sort=size", "sort"),
            ("label=a%b", "label"),
            ("suspended=maybe", "suspended"),
            ("colour=red", "colour"),
        ] {
            let e = ListQuery::parse(&params(q)).unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), (400, Some(field)), "{q}");
        }
    }

    #[test]
    fn label_selectors_hold_like_kubernetes_equality_selectors() {
        let labels: BTreeMap<String, String> = [("team".to_string(), "pay".to_string())]
            .into_iter()
            .collect();
        let holds = |s: &str| parse_selector(s).unwrap().iter().all(|r| r.holds(&labels));
        assert!(holds("team=pay"));
        assert!(holds("team==pay,!tier"));
        assert!(holds("team"));
        assert!(!holds("team!=pay"));
        assert!(!holds("tier"));
    }
}
