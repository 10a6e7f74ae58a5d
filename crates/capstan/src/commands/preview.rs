//! `capstan diff --repo R --from BASE --to HEAD --all`: the pull-request preview of a
//! whole repository (every Application it defines, those whose inputs changed
//! rendered at both revisions), printed as text, JSON or Markdown.

use std::process::ExitCode;

use anyhow::Context;
use capstan_preview::{AppReport, PreviewOptions, Report, Status, Tools};

use crate::args::{Format, SourceArgs};
use crate::print;

/// Preview `source.repo` from `from` to `to`.
pub async fn run(
    source: &SourceArgs,
    from: &str,
    to: &str,
    aliases: &[String],
    output: Format,
) -> anyhow::Result<ExitCode> {
    let repo = crate::source::git_source(source)?
        .context("--all previews a repository: give --repo URL")?;
    let opts = PreviewOptions {
        repo,
        aliases: aliases.to_vec(),
        from: from.to_string(),
        to: to.to_string(),
        cache_dir: crate::source::cache(source.cache_dir.as_deref())
            .root()
            .to_path_buf(),
        tools: Tools {
            helm: source.render.helm.clone(),
            kustomize: source.render.kustomize.clone(),
            timeout: source.render.render_timeout,
        },
        namespace: capstan_import::DEFAULT_NAMESPACE.to_string(),
        concurrency: 4,
    };
    let report = capstan_preview::preview(&opts).await?;
    match output {
        Format::Json | Format::Yaml => print::json(&serde_json::to_value(&report)?),
        Format::Markdown => print::out(&markdown(&report)),
        Format::Text => print::out(&text(&report)),
    }
    eprintln!("{}", summary(&report));
    let code = if report
        .applications
        .iter()
        .any(|a| a.status == Status::Error)
    {
        2
    } else if report.applications.iter().any(differs) {
        1
    } else {
        0
    };
    Ok(ExitCode::from(code))
}

/// Whether the change does anything to the Application.
fn differs(a: &AppReport) -> bool {
    matches!(a.status, Status::Changed | Status::New | Status::Removed) || !a.objects.is_empty()
}

/// `100 Applications: 3 changed, 95 unchanged, …; 5 rendered; 12 files changed`.
fn summary(r: &Report) -> String {
    let counts: Vec<String> = r
        .counts()
        .iter()
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    format!(
        "{} Application{}: {}; {} rendered; {} file{} changed ({} → {})",
        r.applications.len(),
        if r.applications.len() == 1 { "" } else { "s" },
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        },
        r.rendered(),
        r.changed_files.len(),
        if r.changed_files.len() == 1 { "" } else { "s" },
        r.from.short(),
        r.to.short(),
    )
}

/// The Applications in report order: what changed first, then by name.
fn ordered(r: &Report) -> Vec<&AppReport> {
    let mut apps: Vec<&AppReport> = r.applications.iter().collect();
    apps.sort_by(|a, b| (a.status, &a.namespace, &a.name).cmp(&(b.status, &b.namespace, &b.name)));
    apps
}

fn why(a: &AppReport) -> String {
    match &a.error {
        Some(e) => e.clone(),
        None => a.reasons.join("; "),
    }
}

fn text(r: &Report) -> String {
    let mut out = String::new();
    for a in ordered(r) {
        let (plus, minus) = a.counts();
        out.push_str(&format!(
            "{}/{}: {} (+{plus} -{minus}): {}\n",
            a.namespace,
            a.name,
            a.status.as_str(),
            why(a)
        ));
        for n in &a.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        for o in &a.objects {
            out.push_str(&format!(
                "  {} {}\n",
                o.action.as_str(),
                print::kubectl_name(&o.object)
            ));
            out.push_str(&print::colored_diff(&o.diff));
        }
    }
    out
}

/// A table cell: no line breaks, no column separators.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(r: &Report) -> String {
    let mut out = format!(
        "### Capstan preview of `{}`: `{}` → `{}`\n\n**{}**\n\n",
        r.repository,
        r.from.short(),
        r.to.short(),
        summary(r)
    );
    out.push_str("| Application | Status | + | − | Why |\n| --- | --- | ---: | ---: | --- |\n");
    for a in ordered(r) {
        let (plus, minus) = a.counts();
        out.push_str(&format!(
            "| `{}/{}` | {} | {plus} | {minus} | {} |\n",
            a.namespace,
            a.name,
            a.status.as_str(),
            cell(&why(a))
        ));
    }
    out.push('\n');
    for a in ordered(r)
        .into_iter()
        .filter(|a| !a.objects.is_empty() || a.error.is_some())
    {
        let (plus, minus) = a.counts();
        out.push_str(&format!(
            "<details><summary><b>{}/{}</b>: {} (+{plus} −{minus})</summary>\n\n",
            a.namespace,
            a.name,
            a.status.as_str()
        ));
        out.push_str(&format!("Defined by {}.", a.defined_by));
        if let Some(p) = &a.parent {
            if p.starts_with("the chart ") {
                out.push_str(&format!(" Rendered from {p}."));
            } else {
                out.push_str(&format!(" Rendered by the Application `{p}`."));
            }
        }
        out.push_str("\n\n");
        if let Some(e) = &a.error {
            out.push_str(&format!("Error: {e}\n\n"));
        }
        for n in &a.notes {
            out.push_str(&format!("Note: {n}\n\n"));
        }
        for o in &a.objects {
            out.push_str(&format!(
                "`{}` ({})\n\n```diff\n{}```\n\n",
                o.object,
                o.action.as_str(),
                o.diff
            ));
        }
        out.push_str("</details>\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_cell_keeps_the_table_whole() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
