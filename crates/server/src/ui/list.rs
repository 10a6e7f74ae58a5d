//! `/`: every Application, filtered, counted and paged on the server by the API's own
//! code ([`crate::api::list::select`]) over the controller's cache: a page of 100 rows
//! costs the same at 10,000 Applications as at 100.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use maud::{Markup, html};

use super::page::{self, Nav, ago, badge};
use super::{Session, UiError, View};
use crate::AppState;
use crate::api::list::{self, Counts, HEALTH_STATES, ListQuery, Row, SYNC_STATES};
use crate::api::{ApiError, Role};

/// The list's query parameters (those of `GET /api/v1/applications`).
const PARAMS: &[&str] = &[
    "sync",
    "health",
    "namespace",
    "repo",
    "label",
    "suspended",
    "q",
    "sort",
    "page",
    "limit",
];

/// `GET /`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(raw): Query<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    session.require(Role::Viewer, "list Applications")?;
    // empty fields of the filter form are no filter; the UI's own parameters are not the API's
    let params: Vec<(String, String)> = raw
        .into_iter()
        .filter(|(k, v)| !v.trim().is_empty() && PARAMS.contains(&k.as_str()))
        .collect();
    let banner = page::banner(&state, &session).await;
    let c = &state.controller;
    let live = if !c.is_ready() {
        html! { p.notice { "The controller is still listing the Applications; this page fills in when it has." } }
    } else {
        match ListQuery::parse(&params) {
            Err(e) => error(&e),
            Ok(q) => {
                let apps = c.applications.state();
                let stop = c.stop.is_stopped();
                let (rows, total, counts) = list::select(&apps, &q, stop, jiff::Timestamp::now());
                let pages = total.div_ceil(q.limit()).max(1);
                html! {
                    (counts_bar(&counts, &params))
                    (table(&rows))
                    (pager(&params, q.page(), pages, total))
                }
            }
        }
    };
    Ok(super::respond(
        &headers,
        &session,
        banner,
        View {
            title: "Applications".into(),
            nav: Nav::Applications,
            fixed: filters(&params),
            live,
            poll: true,
            etag: None,
        },
    ))
}

fn error(e: &ApiError) -> Markup {
    html! { p.error role="alert" { (e.message) } }
}

fn value<'a>(params: &'a [(String, String)], key: &str) -> &'a str {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `params` with `key` set to `value` (removed when empty), back on page 1.
fn with(params: &[(String, String)], key: &str, value: &str) -> String {
    let mut p: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != key && k != "page")
        .cloned()
        .collect();
    if !value.is_empty() {
        p.push((key.into(), value.into()));
    }
    format!("/{}", page::query(&p))
}

fn filters(params: &[(String, String)]) -> Markup {
    let select = |name: &str, states: &[&str]| {
        let current = value(params, name);
        html! {
            select name=(name) aria-label=(name) {
                option value="" { "any " (name) }
                @for s in states {
                    option value=(s) selected[current == *s] { (s) }
                }
            }
        }
    };
    html! {
        form.filters method="get" action="/" role="search" {
            input type="search" name="q" value=(value(params, "q")) placeholder="Search name, repository, path, revision, commit, author" aria-label="search";
            (select("sync", SYNC_STATES))
            (select("health", HEALTH_STATES))
            input type="text" name="repo" value=(value(params, "repo")) placeholder="repository" aria-label="repository";
            input type="text" name="namespace" value=(value(params, "namespace")) placeholder="namespace" aria-label="namespace";
            input type="text" name="label" value=(value(params, "label")) placeholder="labels: team=pay,!canary" aria-label="labels";
            button type="submit" { "Filter" }
            @if !params.is_empty() { a.clear href="/" { "Clear" } }
        }
    }
}

fn counts_bar(c: &Counts, params: &[(String, String)]) -> Markup {
    let link = |key: &str, state: &str, n: usize| {
        let active = value(params, key) == state;
        let href = with(params, key, if active { "" } else { state });
        html! {
            a href=(href) class={ "count s-" (state) @if active { " active" } } {
                b { (n) } " " (state)
            }
        }
    };
    html! {
        div.counts #counts {
            span.total { b #total { (c.total) } " Applications" }
            span.group {
                @for s in SYNC_STATES { (link("sync", s, c.sync.get(*s).copied().unwrap_or(0))) }
            }
            span.group {
                @for s in HEALTH_STATES {
                    @let n = c.health.get(*s).copied().unwrap_or(0);
                    @if n > 0 || value(params, "health") == *s { (link("health", s, n)) }
                }
            }
            @if c.suspended > 0 {
                a.count href=(with(params, "suspended", "true")) { b { (c.suspended) } " suspended" }
            }
        }
    }
}

fn table(rows: &[Row]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "No Application matches." }
        } @else {
            table.apps {
                thead { tr {
                    th { "Application" } th { "Sync" } th { "Health" } th { "Revision" } th { "Last sync" } th { "Message" }
                } }
                tbody {
                    @for r in rows { (row(r)) }
                }
            }
        }
    }
}

fn row(r: &Row) -> Markup {
    let id = format!("{}/{}", r.namespace, r.name);
    html! {
        tr data-app=(id) {
            td.name {
                a href=(page::app_href(&r.namespace, &r.name)) { span.ns { (r.namespace) "/" } (r.name) }
                @if r.suspended { " " span.chip.suspended { "suspended" } }
                @if r.emergency_stop { " " span.chip.stopped { "stopped" } }
                div.sub { (r.repo_url) " " span.path { (r.path) } }
            }
            td { (badge(&r.sync)) }
            td { (badge(&r.health)) }
            td.rev {
                @if r.revision.short.is_empty() { span.dim { "—" } } @else {
                    code title=(r.revision.sha) { (r.revision.short) }
                    @if !r.revision.message.is_empty() { " " span.msg { (r.revision.message) } }
                    @if !r.revision.author.is_empty() { div.sub { (r.revision.author) } }
                }
            }
            td.last {
                @match &r.last_sync {
                    None => span.dim { "never" },
                    Some(l) => {
                        (badge(&l.phase))
                        @if let Some(a) = l.age_seconds { " " span.age { (ago(a)) " ago" } }
                        @if !l.trigger.is_empty() { div.sub { (l.trigger) } }
                    }
                }
            }
            td.message {
                @if !r.message.is_empty() { (r.message) }
                @else if !r.health_message.is_empty() { (r.health_message) }
            }
        }
    }
}

fn pager(params: &[(String, String)], page: usize, pages: usize, total: usize) -> Markup {
    let to = |p: usize| {
        let mut q: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .collect();
        if p > 1 {
            q.push(("page".into(), p.to_string()));
        }
        format!("/{}", page::query(&q))
    };
    html! {
        nav.pager aria-label="pages" {
            span { (total) " matching · page " (page) " of " (pages) }
            @if page > 1 { a rel="prev" href=(to(page - 1)) { "← Previous" } }
            @if page < pages { a rel="next" href=(to(page + 1)) { "Next →" } }
        }
    }
}
