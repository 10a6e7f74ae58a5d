//! The frame of every page: navigation, who is logged in, the emergency-stop banner
//! and the live region; and the small pieces pages share (badges, ages, links).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use capstan_controller::stop::{self, StopState};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Session, View};
use crate::AppState;
use crate::api::Role;
use crate::api::list::{HEALTH_STATES, SYNC_STATES};

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The list and the Application pages.
    Applications,
    /// The audit log.
    Audit,
    /// Image automation.
    Images,
}

/// The whole document of `view`, with `live` (its banner and live region) rendered.
pub fn document(session: &Session, view: &View, live: PreEscaped<String>, etag: &str) -> Markup {
    let nav = |n: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(view.nav == n).then_some("current")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (view.title) " · Capstan" }
                link rel="stylesheet" href="/ui/app.css";
                script src="/ui/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "Capstan" }
                    nav {
                        (nav(Nav::Applications, "/", "Applications"))
                        (nav(Nav::Audit, "/audit", "Audit log"))
                        (nav(Nav::Images, "/images", "Image automation"))
                    }
                    div.who {
                        span.user title=(format!("authenticated by {}", session.user.via)) {
                            (session.user.name)
                        }
                        " "
                        span.role { (session.user.role.map(|r| r.to_string()).unwrap_or_default()) }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="_csrf" value=(session.csrf);
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    (view.fixed)
                    div #live data-live=[view.poll.then_some(super::POLL.as_millis())] data-etag=(etag) {
                        (live)
                    }
                }
            }
        }
    }
}

/// A page outside a session (login, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Capstan" }
                link rel="stylesheet" href="/ui/app.css";
            }
            body {
                header.top { a.brand href="/" { "Capstan" } }
                main { (body) }
            }
        }
    }
}

/// The last stop state read, for the banner (read again after a second).
#[derive(Default)]
pub struct StopCache(Mutex<Option<(Instant, StopState)>>);

impl StopCache {
    /// The stored switch when `stopped` (the controller's flag) agrees with what was
    /// read less than a second ago; otherwise read it again.
    async fn get(&self, state: &AppState, stopped: bool) -> Option<StopState> {
        {
            let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, s)) = c.as_ref()
                && at.elapsed() < Duration::from_secs(1)
                && s.stopped == stopped
            {
                return Some(s.clone());
            }
        }
        let s = stop::read(&state.controller.client, &state.controller.namespace)
            .await
            .ok()?;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), s.clone()));
        Some(s)
    }

    /// Forget what was read (after this server changed the switch).
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The emergency stop, on every page: a banner (who, when, why) while it holds, with
/// the form that lifts it for `admin`; for `admin`, the form that pulls it otherwise.
pub async fn banner(state: &AppState, session: &Session) -> Markup {
    let flag = &state.controller.stop;
    let admin = session.can(Role::Admin);
    if !flag.is_known() {
        return html! {
            div.banner.stopped role="alert" {
                strong { "Emergency stop not read yet" }
                " — the controller holds every sync until it has read the switch."
            }
        };
    }
    if !flag.is_stopped() {
        return html! {
            @if admin {
                div.fleet-bar {
                    details #pull-stop {
                        summary { "Emergency stop…" }
                        form method="post" action="/emergency-stop" {
                            input type="hidden" name="_csrf" value=(session.csrf);
                            input type="hidden" name="stop" value="true";
                            label { "Why " input type="text" name="reason" placeholder="incident, freeze, …"; }
                            button.danger type="submit" { "Stop every sync" }
                        }
                    }
                }
            }
        };
    }
    let s = state
        .ui_stop
        .get(state, true)
        .await
        .unwrap_or_else(|| StopState {
            stopped: true,
            ..Default::default()
        });
    html! {
        div.banner.stopped #emergency-stop role="alert" {
            strong { "Emergency stop: every sync is held." }
            " "
            @if !s.by.is_empty() { "Pulled by " b { (s.by) } }
            @if !s.at.is_empty() { " at " time datetime=(s.at) { (s.at) } }
            @if !s.reason.is_empty() { ": " q { (s.reason) } }
            "."
            @if admin {
                details #lift-stop {
                    summary { "Lift the emergency stop…" }
                    form method="post" action="/emergency-stop" {
                        input type="hidden" name="_csrf" value=(session.csrf);
                        input type="hidden" name="stop" value="false";
                        label { "Why " input type="text" name="reason"; }
                        button type="submit" { "Resume syncing" }
                    }
                }
            }
        }
    }
}

/// A known state as a CSS class; anything else is `Unknown` (the text shows as is).
fn state_class(s: &str) -> &'static str {
    SYNC_STATES
        .iter()
        .chain(HEALTH_STATES)
        .chain(&["Succeeded", "Failed", "Running", "Stopped", "Terminating"])
        .find(|k| **k == s)
        .copied()
        .unwrap_or("Unknown")
}

/// A sync or health state.
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge s-" (state_class(state)) } { (state) } }
}

/// `45s`, `12m`, `3h`, `2d`.
pub fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Seconds since the RFC 3339 time `at`.
pub fn age_of(at: &str) -> Option<i64> {
    let t: jiff::Timestamp = at.parse().ok()?;
    Some((jiff::Timestamp::now() - t).get_seconds().max(0))
}

/// The first 7 characters of a SHA.
pub fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// The page of one Application.
pub fn app_href(namespace: &str, name: &str) -> String {
    format!(
        "/applications/{}/{}",
        path_segment(namespace),
        path_segment(name)
    )
}

/// `s` as one path segment.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `?k=v&…` of the non-empty `params`.
pub fn query(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    let q = s.finish();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{q}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_outside_the_known_ones_get_no_class_of_their_own() {
        assert_eq!(
            badge("Healthy").into_string(),
            r#"<span class="badge s-Healthy">Healthy</span>"#
        );
        assert_eq!(
            badge("x\" onmouseover=\"alert(1)").into_string(),
            r#"<span class="badge s-Unknown">x&quot; onmouseover=&quot;alert(1)</span>"#
        );
    }

    #[test]
    fn links_and_queries_are_encoded() {
        assert_eq!(app_href("a b", "c/d"), "/applications/a%20b/c%2Fd");
        assert_eq!(
            query(&[("q".into(), "a&b".into()), ("sync".into(), String::new())]),
            "?q=a%26b"
        );
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(3600 * 5), "5h");
    }
}
