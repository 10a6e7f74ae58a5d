//! Output for people (kubectl-like lines, coloured on a terminal), scripts (JSON) and
//! pull requests (Markdown).

use std::io::IsTerminal;

use capstan_core::{ChangeSet, Health, HealthState, ObjectRef, Outcome, Revision};

/// Whether to colour stdout (asked once per process).
pub fn color() -> bool {
    static COLOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COLOR.get_or_init(|| std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}

fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `deployment.apps/web`, `configmap/settings`, as kubectl names objects.
pub fn kubectl_name(id: &ObjectRef) -> String {
    let kind = id.kind.to_lowercase();
    if id.group.is_empty() {
        format!("{kind}/{}", id.name)
    } else {
        format!("{kind}.{}/{}", id.group, id.name)
    }
}

/// One line per object of a sync: `deployment.apps/web configured`.
pub fn outcome_line(id: &ObjectRef, outcome: &Outcome, dry_run: bool) -> String {
    let c = color();
    let ns = id
        .namespace
        .as_deref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let suffix = if dry_run { " (dry run)" } else { "" };
    let verb = outcome.verb();
    let verb = match outcome {
        Outcome::Created => paint(c, "32", verb),
        Outcome::Configured => paint(c, "33", verb),
        Outcome::Pruned => paint(c, "35", verb),
        Outcome::Failed { .. } => paint(c, "31;1", verb),
        _ => verb.to_string(),
    };
    let detail = match outcome {
        Outcome::Skipped { reason } | Outcome::Failed { reason } => format!(": {reason}"),
        _ => String::new(),
    };
    format!("{}{ns} {verb}{suffix}{detail}", kubectl_name(id))
}

/// A health state, coloured on a terminal: green, red when failing, yellow otherwise.
pub fn health_state(state: HealthState) -> String {
    let c = color();
    match state {
        HealthState::Healthy => paint(c, "32", state.as_str()),
        HealthState::Degraded | HealthState::Missing => paint(c, "31;1", state.as_str()),
        _ => paint(c, "33", state.as_str()),
    }
}

/// The line of a hook run: `job.batch/migrate-x (PreSync hook) succeeded: job/migrate-x created`.
pub fn hook_line(run: &capstan_engine::sync::HookRun, with_color: bool) -> String {
    use capstan_core::HookPhase;
    let c = with_color && color();
    let ns = run
        .object
        .namespace
        .as_deref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let verb = match run.result.phase {
        HookPhase::Pending => "would run".to_string(),
        HookPhase::Running => "running".to_string(),
        HookPhase::Succeeded => paint(c, "32", "succeeded"),
        HookPhase::Failed => paint(c, "31;1", "failed"),
        HookPhase::Terminated => paint(c, "31;1", "terminated"),
    };
    let message = if run.result.message.is_empty() || run.result.phase == HookPhase::Pending {
        String::new()
    } else {
        format!(": {}", run.result.message)
    };
    format!(
        "{}{ns} ({} hook) {verb}{message}",
        kubectl_name(&run.object),
        run.result.hook_type
    )
}

/// The health line of an object after a wait.
pub fn health_line(id: &ObjectRef, health: &Health) -> String {
    let state = health_state(health.state);
    if health.message.is_empty() {
        format!("  {} {state}", kubectl_name(id))
    } else {
        format!("  {} {state}: {}", kubectl_name(id), health.message)
    }
}

/// `3 created, 1 configured, …` for the outcomes that occurred.
pub fn summary(changes: &ChangeSet) -> String {
    let parts: Vec<String> = changes
        .outcome_counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(verb, n)| format!("{n} {verb}"))
        .collect();
    if parts.is_empty() {
        "nothing to do".into()
    } else {
        parts.join(", ")
    }
}

/// `abc123def456 (Ada <ada@example.com>: "fix the port")`.
pub fn revision_line(rev: &Revision) -> String {
    if rev.author.is_empty() {
        rev.short().to_string()
    } else {
        format!("{} ({}: {:?})", rev.short(), rev.author, rev.message)
    }
}

/// A unified diff, coloured on a terminal.
pub fn colored_diff(diff: &str) -> String {
    if !color() {
        return diff.to_string();
    }
    diff.lines()
        .map(|l| {
            if l.starts_with("+++") || l.starts_with("---") {
                paint(true, "1", l)
            } else if l.starts_with('+') {
                paint(true, "32", l)
            } else if l.starts_with('-') {
                paint(true, "31", l)
            } else if l.starts_with("@@") {
                paint(true, "36", l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Write to stdout. When the reader has gone (`capstan render | head`), exit quietly
/// with the status a process killed by SIGPIPE has, instead of panicking.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(2);
    }
}

/// `println!` through [`out`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::print::out(&format!("{}\n", format_args!($($arg)*))) };
}

/// Write JSON to stdout.
pub fn json(value: &serde_json::Value) {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ));
}
