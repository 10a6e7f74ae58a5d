//! One Application: its state, the actions (for `operator`), its conditions, the
//! resource tree (its objects and what they own, found through owner references),
//! its history with rollback, dependsOn and recent Events; and one resource's diff,
//! desired and live manifest (Secret values masked by the controller, as everywhere).
//!
//! The live region's version is the Application's `resourceVersion` (with the stop
//! banner): the live script's poll costs a cache lookup until the controller writes a
//! new status, and only then is the tree read again.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use capstan_controller::Application;
use capstan_controller::audit::{self, AuditRecordSpec};
use capstan_controller::crd::HistoryEntry;
use capstan_controller::inspect::{ResourceView, TreeNode};
use capstan_core::ObjectRef;
use kube::ResourceExt;
use maud::{Markup, html};

use super::page::{self, Nav, age_of, ago, badge, short};
use super::{Session, UiError, View};
use crate::AppState;
use crate::api::app::{cached, event_rows, inspect_error};
use crate::api::list::row;
use crate::api::{ApiError, Role};

/// What an action's redirect says happened (fixed texts: nothing from the query is shown).
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "sync" => "Sync requested: the controller syncs on its next step.",
        "refresh" => "Refresh requested: the controller compares with Git now.",
        "rollback" => "Rollback requested; automated sync is off until you turn it back on.",
        "suspend" => "Suspended: no syncs until resumed (drift is still reported).",
        "resume" => "Resumed.",
        _ => return None,
    })
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> &'a str {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `GET /applications/{namespace}/{name}`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    session.require(Role::Viewer, "read Applications")?;
    let app = cached(&state, &namespace, &name)?;
    let banner = page::banner(&state, &session).await;
    let done = notice(param(&q, "done"));
    let version = app.resource_version().unwrap_or_default();
    let minute = minute();
    let etag = super::etag_of(&[
        version.as_str(),
        banner.0.as_str(),
        session.user.name.as_str(),
        session.csrf.as_str(),
        minute.as_str(),
        param(&q, "done"),
    ]);
    if let Some(r) = super::not_modified(&headers, &etag) {
        return Ok(r);
    }
    let tree = state.controller.tree(&app).await.map_err(inspect_error);
    let events = event_rows(&state, &namespace, &name).await;
    // the change summary of each sync is in its audit record
    let records = audit::list(
        &state.controller.client,
        Some(&namespace),
        Some(&format!("{namespace}/{name}")),
        None,
    )
    .await
    .unwrap_or_default();
    let live = html! {
        (summary(&state, &session, &app))
        section.tree {
            h2 { "Resources" }
            @match &tree {
                Ok(nodes) if nodes.is_empty() => p.empty { "No resources yet." },
                Ok(nodes) => {
                    (tree_counts(nodes))
                    ul.tree { @for n in nodes { (node(&namespace, &name, n)) } }
                }
                Err(e) => p.error { (e.message) },
            }
        }
        (history(&session, &app, &records))
        (conditions(&app))
        section.events {
            h2 { "Events" }
            @match &events {
                Ok(rows) if rows.is_empty() => p.empty { "No events." },
                Ok(rows) => table {
                    thead { tr { th { "Type" } th { "Reason" } th { "Message" } th { "Count" } th { "Last seen" } } }
                    tbody { @for e in rows.iter().take(20) { tr class=[(e.type_ == "Warning").then_some("warning")] {
                        td { (e.type_) } td { (e.reason) } td { (e.message) } td { (e.count) }
                        td { @if let Some(t) = &e.last_timestamp { (ago(age_of(t).unwrap_or(0))) " ago" } }
                    } } }
                },
                Err(e) => p.error { (e.message) },
            }
            p { a href={ "/audit?application=" (page::path_segment(&format!("{namespace}/{name}"))) } { "Audit log of this Application →" } }
        }
    };
    let fixed = html! {
        nav.crumbs { a href="/" { "Applications" } " / " (namespace) " / " b { (name) } }
        @if let Some(n) = done { p.notice role="status" { (n) } }
    };
    Ok(super::respond(
        &headers,
        &session,
        banner,
        View {
            title: format!("{namespace}/{name}"),
            nav: Nav::Applications,
            fixed,
            live,
            poll: true,
            etag: Some(etag),
        },
    ))
}

/// At most `n` characters of `s`.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The current minute: ages on the page move on even when nothing else changes.
fn minute() -> String {
    (jiff::Timestamp::now().as_second() / 60).to_string()
}

fn summary(state: &AppState, session: &Session, app: &Application) -> Markup {
    let r = row(
        app,
        state.controller.stop.is_stopped(),
        jiff::Timestamp::now(),
    );
    let st = app.status.clone().unwrap_or_default();
    let op = st.operation_state.as_ref();
    let ns = r.namespace.clone();
    html! {
        section.summary {
            h1 { span.ns { (r.namespace) "/" } (r.name)
                " " (badge(&r.sync)) " " (badge(&r.health))
                @if r.suspended { " " span.chip.suspended { "suspended" } }
            }
            dl.facts {
                dt { "Repository" } dd { code { (r.repo_url) } " " span.path { (r.path) } }
                dt { "Target" } dd { @if r.target_revision.is_empty() { "HEAD" } @else { (r.target_revision) } }
                dt { "Revision" } dd {
                    @if r.revision.sha.is_empty() { span.dim { "—" } } @else {
                        code #revision title=(r.revision.sha) { (r.revision.short) }
                        @if !r.revision.message.is_empty() { " " (r.revision.message) }
                        @if !r.revision.author.is_empty() { " — " (r.revision.author) }
                    }
                }
                dt { "Destination" } dd { (app.spec.destination.namespace.clone().unwrap_or_else(|| ns.clone())) }
                @if !app.labels().is_empty() {
                    dt { "Labels" } dd { @for (k, v) in app.labels() { span.chip { (k) "=" (v) } " " } }
                }
                @let notes: Vec<(&String, &String)> = app.annotations().iter()
                    .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
                    .collect();
                @if !notes.is_empty() {
                    dt { "Annotations" } dd.annotations {
                        @for (k, v) in notes { div { code { (k) } ": " (clip(v, 300)) } }
                    }
                }
                dt { "Automated sync" } dd {
                    @match &app.spec.sync_policy.automated {
                        Some(a) => { "on" @if a.prune { ", prune" } @if a.self_heal { ", self-heal" } },
                        None => "off",
                    }
                }
                @if !app.spec.depends_on.is_empty() {
                    dt { "Depends on" } dd.depends {
                        @for d in &app.spec.depends_on {
                            @let dep = state.controller.applications.get(
                                &kube::runtime::reflector::ObjectRef::new(d).within(&ns));
                            a href=(page::app_href(&ns, d)) { (d) }
                            " "
                            @match dep.as_ref().and_then(|a| a.status.as_ref()).and_then(|s| s.health.as_ref()) {
                                Some(h) => (badge(&h.status)),
                                None => span.dim { "(not found)" },
                            }
                            " "
                        }
                    }
                }
                @if !r.health_message.is_empty() { dt { "Health" } dd { (r.health_message) } }
                @if let Some(op) = op {
                    dt { "Last sync" } dd #last-sync {
                        (badge(&op.phase)) " " (op.trigger)
                        @if let Some(a) = op.finished_at.as_deref().or(op.started_at.as_deref()).and_then(age_of) {
                            " · " (ago(a)) " ago"
                        }
                        @if !op.revision.is_empty() { " · " code { (short(&op.revision)) } }
                        @if !op.message.is_empty() { div.sub { (op.message) } }
                        @if !op.summary.is_empty() {
                            div.sub { @for (k, v) in &op.summary { (k) ": " (v) " " } }
                        }
                    }
                }
            }
            @if session.can(Role::Operator) { (actions(session, app)) }
        }
    }
}

fn action_form(
    session: &Session,
    app: &Application,
    action: &str,
    label: &str,
    body: Markup,
) -> Markup {
    let href = format!(
        "{}/{action}",
        page::app_href(&app.namespace().unwrap_or_default(), &app.name_any())
    );
    html! {
        details.action id={ "act-" (action) } {
            summary { (label) "…" }
            form method="post" action=(href) {
                input type="hidden" name="_csrf" value=(session.csrf);
                (body)
                button type="submit" name="confirm" value="yes" { "Confirm " (label.to_lowercase()) }
            }
        }
    }
}

fn actions(session: &Session, app: &Application) -> Markup {
    html! {
        div.actions {
            (action_form(session, app, "sync", "Sync", html! {
                label { "Revision " input type="text" name="revision" placeholder="the spec's"; }
                label { input type="checkbox" name="prune" value="true"; " prune objects that left Git" }
            }))
            (action_form(session, app, "refresh", "Refresh", html! {
                span.sub { "Compare with Git now." }
            }))
            @if app.spec.suspend {
                (action_form(session, app, "resume", "Resume", html! { span.sub { "Sync this Application again." } }))
            } @else {
                (action_form(session, app, "suspend", "Suspend", html! { span.sub { "No syncs until resumed; drift is still reported." } }))
            }
        }
    }
}

/// Whether a condition says something is wrong: Ready, Synced or Healthy not True, or
/// Stalled True.
fn bad_condition(type_: &str, status: &str) -> bool {
    match type_ {
        "Ready" | "Synced" | "Healthy" => status != "True",
        "Stalled" => status == "True",
        _ => false,
    }
}

fn conditions(app: &Application) -> Markup {
    let st = app.status.clone().unwrap_or_default();
    html! {
        @if !st.conditions.is_empty() {
            section.conditions {
                h2 { "Conditions" }
                table {
                    thead { tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } th { "Since" } } }
                    tbody { @for c in &st.conditions { tr class=[bad_condition(&c.type_, &c.status).then_some("warning")] {
                        td { (c.type_) } td { (c.status) } td { (c.reason) } td { (c.message) }
                        td { @if let Some(t) = c.last_transition_time.as_deref().and_then(age_of) { (ago(t)) " ago" } }
                    } } }
                }
            }
        }
    }
}

fn count_nodes(
    nodes: &[TreeNode],
    total: &mut usize,
    missing: &mut usize,
    out_of_sync: &mut usize,
) {
    for n in nodes {
        *total += 1;
        *missing += usize::from(!n.exists);
        *out_of_sync += usize::from(n.sync.as_deref() == Some("OutOfSync"));
        count_nodes(&n.children, total, missing, out_of_sync);
    }
}

fn tree_counts(nodes: &[TreeNode]) -> Markup {
    let (mut total, mut missing, mut oos) = (0, 0, 0);
    count_nodes(nodes, &mut total, &mut missing, &mut oos);
    html! {
        p.sub { (nodes.len()) " managed objects, " (total) " with what they own"
            @if oos > 0 { " · " b { (oos) " out of sync" } }
            @if missing > 0 { " · " b { (missing) " missing" } } }
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

fn node(app_ns: &str, app_name: &str, n: &TreeNode) -> Markup {
    let q = page::query(&[
        ("group".into(), group_of(&n.api_version).to_string()),
        ("kind".into(), n.kind.clone()),
        ("namespace".into(), n.namespace.clone().unwrap_or_default()),
        ("name".into(), n.name.clone()),
    ]);
    let href = format!("{}/resource{q}", page::app_href(app_ns, app_name));
    html! {
        li data-kind=(n.kind) data-name=(n.name) {
            span.node {
                span.kind { (n.kind) }
                " "
                @if n.sync.is_some() { a href=(href) { (n.name) } } @else { (n.name) }
                @if let Some(ns) = &n.namespace { " " span.dim { (ns) } }
                @if let Some(s) = &n.sync { " " (badge(s)) }
                @if !n.exists { " " span.chip.missing { "missing" } }
                @if n.requires_pruning { " " span.chip { "to prune" } }
                @if let Some(h) = &n.health {
                    " " (badge(&h.status))
                    @if !h.message.is_empty() { " " span.msg { (h.message) } }
                }
            }
            @if !n.children.is_empty() {
                ul { @for c in &n.children { (node(app_ns, app_name, c)) } }
            }
        }
    }
}

/// The audit record of the sync `h` recorded: the same revision, the nearest time
/// (within a minute).
fn record_of<'a>(h: &HistoryEntry, records: &'a [AuditRecordSpec]) -> Option<&'a AuditRecordSpec> {
    let at: jiff::Timestamp = h.deployed_at.parse().ok()?;
    records
        .iter()
        .filter(|r| matches!(r.action.as_str(), "sync" | "rollback") && r.to_revision == h.revision)
        .filter_map(|r| {
            let t: jiff::Timestamp = r.time.parse().ok()?;
            let apart = (t - at).get_seconds().abs();
            (apart <= 60).then_some((apart, r))
        })
        .min_by_key(|(apart, _)| *apart)
        .map(|(_, r)| r)
}

fn history(session: &Session, app: &Application, records: &[AuditRecordSpec]) -> Markup {
    let st = app.status.clone().unwrap_or_default();
    let current = st
        .sync
        .as_ref()
        .map(|s| s.revision.clone())
        .unwrap_or_default();
    let mut entries: Vec<&HistoryEntry> = st.history.iter().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.id));
    let href = format!(
        "{}/rollback",
        page::app_href(&app.namespace().unwrap_or_default(), &app.name_any())
    );
    html! {
        section.history {
            h2 { "History" }
            @if entries.is_empty() { p.empty { "No syncs yet." } } @else {
                table {
                    thead { tr { th { "#" } th { "Revision" } th { "Commit" } th { "Author" } th { "Trigger" } th { "Result" } th { "Changes" } th { "Deployed" } th {} } }
                    tbody { @for h in &entries { tr {
                        td { (h.id) }
                        td { code title=(h.revision) { (short(&h.revision)) } }
                        td { (h.message) }
                        td { (h.author) }
                        td { (h.trigger) }
                        td { (badge(&h.result)) }
                        td.sub { @if let Some(r) = record_of(h, records) {
                            @for (k, v) in &r.summary { (k) ": " (v) " " }
                            @if !r.actor.is_empty() { div { "by " (r.actor) } }
                        } }
                        td { @if let Some(a) = age_of(&h.deployed_at) { (ago(a)) " ago" } }
                        td {
                            @if session.can(Role::Operator) && h.result == "Succeeded" && h.revision != current {
                                details.action id={ "rollback-" (h.id) } {
                                    summary { "Roll back…" }
                                    form method="post" action=(href) {
                                        input type="hidden" name="_csrf" value=(session.csrf);
                                        input type="hidden" name="id" value=(h.id);
                                        span.sub { "Sync " (short(&h.revision)) " again; automated sync goes off." }
                                        button type="submit" name="confirm" value="yes" { "Confirm rollback to #" (h.id) }
                                    }
                                }
                            }
                        }
                    } } }
                }
            }
        }
    }
}

/// `GET /applications/{namespace}/{name}/resource?group=&kind=&namespace=&name=`.
pub async fn resource_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let session = Session::of(&state, &headers, &uri).await?;
    session.require(Role::Viewer, "read Applications")?;
    let required = |k: &str| {
        Some(param(&q, k))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(k, format!("the parameter {k:?} is required")))
    };
    let id = ObjectRef {
        group: param(&q, "group").to_string(),
        kind: required("kind")?,
        namespace: Some(param(&q, "namespace").to_string()).filter(|n| !n.is_empty()),
        name: required("name")?,
    };
    let app = cached(&state, &namespace, &name)?;
    let banner = page::banner(&state, &session).await;
    let view = state.controller.resource(&app, &id).await;
    let title = format!("{} {}", id.kind, id.name);
    let live = match view {
        Ok(v) => resource_view(&v),
        Err(e) => html! { p.error role="alert" { (inspect_error(e).message) } },
    };
    let fixed = html! {
        nav.crumbs {
            a href="/" { "Applications" } " / "
            a href=(page::app_href(&namespace, &name)) { (namespace) "/" (name) } " / "
            b { (id.kind) " " (id.name) }
        }
    };
    Ok(super::respond(
        &headers,
        &session,
        banner,
        View {
            title,
            nav: Nav::Applications,
            fixed,
            live,
            poll: false,
            etag: None,
        },
    )
    .into_response())
}

fn yaml(v: &serde_json::Value) -> String {
    serde_saphyr::to_string(v)
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default())
}

fn resource_view(v: &ResourceView) -> Markup {
    html! {
        section.resource {
            h1 { (v.object.kind) " " (v.object.name)
                @if let Some(ns) = &v.object.namespace { " " span.dim { (ns) } } }
            p { "A sync of " code { (short(&v.revision)) } " would " b #change { (v.change) } " it." }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            h2 { "Diff (live → desired)" }
            @if v.diff.is_empty() { p.empty { "No difference." } } @else {
                pre.diff #diff { @for line in v.diff.lines() {
                    @let class = if line.starts_with("+++") || line.starts_with("---") { "hdr" }
                        else if line.starts_with('+') { "add" }
                        else if line.starts_with('-') { "del" }
                        else if line.starts_with("@@") { "hunk" } else { "ctx" };
                    span class=(class) { (line) } "\n"
                } }
            }
            div.manifests {
                div { h2 { "Desired" }
                    @match &v.desired { Some(d) => pre #desired { (yaml(d)) }, None => p.empty { "Not in Git (pruned on sync with prune)." } } }
                div { h2 { "Live" }
                    @match &v.live { Some(l) => pre #live-manifest { (yaml(l)) }, None => p.empty { "Not in the cluster." } } }
            }
        }
    }
}
