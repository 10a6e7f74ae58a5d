//! Fleet-wide pages: the audit log (who did what to which Application, when) and image
//! automation (the ImageRepositories scanned, the ImagePolicies' choices and the
//! ImageUpdates' last write-back to Git).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use capstan_controller::audit::{self, AuditRecordSpec};
use capstan_controller::crd::Condition;
use capstan_controller::images::{ImagePolicy, ImageRepository, ImageUpdate};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use maud::{Markup, html};

use super::page::{self, Nav, age_of, ago, badge, short};
use super::{Session, UiError, View};
use crate::AppState;
use crate::api::{ApiError, Role};

/// Rows the audit page shows at most (the newest).
pub const AUDIT_ROWS: usize = 500;

fn param<'a>(q: &'a [(String, String)], key: &str) -> &'a str {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}

/// `30m`, `2h`, `7d`, or an RFC 3339 time.
fn since(v: &str) -> Result<Option<jiff::Timestamp>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(Some(t));
    }
    let bad = || {
        ApiError::bad_request(
            "since",
            format!("since={v:?}: expected an RFC 3339 time or a duration such as 30m, 2h, 7d"),
        )
    };
    let at = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = v[..at].parse().map_err(|_| bad())?;
    let unit = match &v[at..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit).ok_or_else(bad)?;
    Ok(Some(
        jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs),
    ))
}

/// `GET /audit?application=&actor=&action=&since=`: newest first.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    session.require(Role::Viewer, "read the audit log")?;
    let banner = page::banner(&state, &session).await;
    let application = param(&q, "application");
    let actor = param(&q, "actor").to_lowercase();
    let action = param(&q, "action");
    let live = match since(param(&q, "since")) {
        Err(e) => html! { p.error role="alert" { (e.message) } },
        Ok(since) => match audit::list(
            &state.controller.client,
            None,
            Some(application).filter(|a| !a.is_empty()),
            since,
        )
        .await
        {
            Err(e) => {
                html! { p.error role="alert" { (ApiError::kube("reading the audit log", &e).message) } }
            }
            Ok(records) => {
                let mut rows: Vec<&AuditRecordSpec> = records
                    .iter()
                    .filter(|r| {
                        actor.is_empty()
                            || r.actor.to_lowercase().contains(&actor)
                            || r.trigger.to_lowercase().contains(&actor)
                    })
                    .filter(|r| action.is_empty() || r.action == action)
                    .collect();
                rows.reverse();
                audit_table(&rows)
            }
        },
    };
    let fixed = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/audit" {
            input type="text" name="application" value=(application) placeholder="namespace/name" aria-label="application";
            input type="text" name="actor" value=(param(&q, "actor")) placeholder="actor" aria-label="actor";
            input type="text" name="action" value=(action) placeholder="action (sync, rollback, stop, …)" aria-label="action";
            input type="text" name="since" value=(param(&q, "since")) placeholder="since: 2h, 7d, RFC 3339" aria-label="since";
            button type="submit" { "Filter" }
            a.clear href="/audit" { "Clear" }
        }
    };
    Ok(super::respond(
        &headers,
        &session,
        banner,
        View {
            title: "Audit log".into(),
            nav: Nav::Audit,
            fixed,
            live,
            poll: true,
            etag: None,
        },
    ))
}

fn audit_table(rows: &[&AuditRecordSpec]) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "No record matches." } } @else {
            p.sub { (rows.len()) " records"
                @if rows.len() > AUDIT_ROWS { ", the newest " (AUDIT_ROWS) " shown" } }
            table.audit {
                thead { tr { th { "When" } th { "Application" } th { "Action" } th { "By" } th { "Change" } th { "Result" } th { "Details" } } }
                tbody { @for r in rows.iter().take(AUDIT_ROWS) { tr {
                    td { time datetime=(r.time) { (r.time.get(..19).unwrap_or(&r.time).replace('T', " ")) } }
                    td {
                        @match r.application.split_once('/') {
                            Some((ns, name)) if r.action != "image-update" => a href=(page::app_href(ns, name)) { (r.application) },
                            _ => (r.application),
                        }
                    }
                    td { (r.action) }
                    td { (r.actor) @if r.actor != r.trigger && !r.trigger.is_empty() { div.sub { (r.trigger) } } }
                    td {
                        @if !r.from_revision.is_empty() || !r.to_revision.is_empty() {
                            code { (short(&r.from_revision)) } " → " code { (short(&r.to_revision)) }
                        }
                        @if !r.message.is_empty() { div.sub { (r.message) @if !r.author.is_empty() { " — " (r.author) } } }
                        @if !r.summary.is_empty() { div.sub { @for (k, v) in &r.summary { (k) ": " (v) " " } } }
                    }
                    td { @if !r.result.is_empty() { (badge(&r.result)) } }
                    td { (r.details) }
                } } }
            }
        }
    }
}

fn key(o: &impl ResourceExt) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

fn ready(conditions: &[Condition]) -> Markup {
    match conditions.iter().find(|c| c.type_ == "Ready") {
        None => html! { span.dim { "—" } },
        Some(c) => html! {
            span class={ "badge " @if c.status == "True" { "s-Healthy" } @else { "s-Degraded" } } { "Ready " (c.status) }
            @if !c.message.is_empty() { div.sub { (c.message) } }
        },
    }
}

/// `GET /images`: every ImageRepository, ImagePolicy and ImageUpdate.
pub async fn images(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    session.require(Role::Viewer, "read image automation")?;
    let banner = page::banner(&state, &session).await;
    let client = &state.controller.client;
    let lp = ListParams::default();
    let kube_err = |what: &str, e: kube::Error| ApiError::kube(what, &e);
    let (repo_api, policy_api, update_api) = (
        Api::<ImageRepository>::all(client.clone()),
        Api::<ImagePolicy>::all(client.clone()),
        Api::<ImageUpdate>::all(client.clone()),
    );
    let (repos, policies, updates) = futures::join!(
        repo_api.list(&lp),
        policy_api.list(&lp),
        update_api.list(&lp),
    );
    let repos = repos.map_err(|e| kube_err("listing ImageRepositories", e))?;
    let policies = policies.map_err(|e| kube_err("listing ImagePolicies", e))?;
    let updates = updates.map_err(|e| kube_err("listing ImageUpdates", e))?;
    let live = html! {
        section {
            h2 { "Image repositories" }
            @if repos.items.is_empty() { p.empty { "None." } } @else {
                table { thead { tr { th { "Name" } th { "Image" } th { "Tags" } th { "Latest tags" } th { "Last scan" } th { "Ready" } } }
                tbody { @for r in &repos.items {
                    @let st = r.status.clone().unwrap_or_default();
                    @let scan = st.last_scan_result.clone().unwrap_or_default();
                    tr {
                        td { (key(r)) }
                        td { code { (r.spec.image) } @if r.spec.suspend { " " span.chip.suspended { "suspended" } } }
                        td { (scan.tag_count) }
                        td { @for t in scan.latest_tags.iter().take(5) { code { (t) } " " } }
                        td { @if let Some(a) = scan.scan_time.as_deref().and_then(age_of) { (ago(a)) " ago" } }
                        td { (ready(&st.conditions)) }
                    }
                } } }
            }
        }
        section {
            h2 { "Image policies" }
            @if policies.items.is_empty() { p.empty { "None." } } @else {
                table { thead { tr { th { "Name" } th { "Repository" } th { "Rule" } th { "Latest" } th { "Ready" } } }
                tbody { @for p in &policies.items {
                    @let st = p.status.clone().unwrap_or_default();
                    tr {
                        td { (key(p)) }
                        td { (p.spec.image_repository_ref.name) }
                        td {
                            @if let Some(s) = &p.spec.policy.semver { "semver " code { (s.range) } }
                            @if let Some(o) = &p.spec.policy.alphabetical { "alphabetical " (o.order) }
                            @if let Some(o) = &p.spec.policy.numerical { "numerical " (o.order) }
                            @if let Some(f) = &p.spec.filter_tags { div.sub { "tags " code { (f.pattern) } } }
                        }
                        td { @if let Some(l) = &st.latest_ref { code { (l.name) ":" (l.tag) } } }
                        td { (ready(&st.conditions)) }
                    }
                } } }
            }
        }
        section {
            h2 { "Image updates (write-back to Git)" }
            @if updates.items.is_empty() { p.empty { "None." } } @else {
                table { thead { tr { th { "Name" } th { "Repository" } th { "Last commit" } th { "Written" } th { "Held back" } th { "Ready" } } }
                tbody { @for u in &updates.items {
                    @let st = u.status.clone().unwrap_or_default();
                    tr {
                        td { (key(u)) }
                        td { code { (u.spec.git.repo_url) } div.sub { (u.spec.git.push_branch.clone().or_else(|| u.spec.git.branch.clone()).unwrap_or_default()) " " (u.spec.update.path) } }
                        td {
                            @if !st.last_push_commit.is_empty() { code title=(st.last_push_commit) { (short(&st.last_push_commit)) } }
                            @if let Some(a) = st.last_push_time.as_deref().and_then(age_of) { " " (ago(a)) " ago" }
                        }
                        td { @for (policy, w) in &st.written { div { (policy) ": " code { (w.image) } } } }
                        td { @for h in &st.held_back { div { code { (h.image) } " " span.sub { (h.reason) } } } }
                        td { (ready(&st.conditions)) }
                    }
                } } }
            }
        }
    };
    Ok(super::respond(
        &headers,
        &session,
        banner,
        View {
            title: "Image automation".into(),
            nav: Nav::Images,
            fixed: html! { h1 { "Image automation" } },
            live,
            poll: true,
            etag: None,
        },
    ))
}
