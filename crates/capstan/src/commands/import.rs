//! `capstan import`: Argo CD and Flux manifests in, Capstan Applications out (stdout
//! or one file per object), every field without a Capstan equivalent named in a
//! warning on stderr. Exit codes: 0 converted (warnings or not), 1 warnings with
//! `--strict` (nothing written), 2 errors (nothing written).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use capstan_import::{ImportOptions, Manifest, NoteReason, Outcome, RepoMap, manifest};
use clap::{Args, ValueEnum};
use kube::ResourceExt;
use serde_json::{Value, json};

/// Convert Argo CD and Flux manifests into Capstan Applications.
#[derive(Debug, Args)]
pub struct ImportCommand {
    /// A file or a directory (read recursively: *.yaml, *.yml, *.json) of manifests, or
    /// `-` for stdin; repeatable. Render Helm charts and Kustomizations first (`capstan
    /// render DIR | capstan import -f -`).
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<PathBuf>,
    /// Namespace of the Capstan objects.
    #[arg(long, short = 'n', default_value = capstan_import::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "yaml")]
    output: Output,
    /// Write one file per object into DIR (created if missing) instead of stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Treat warnings as errors: nothing is written when there is any (exit 1).
    #[arg(long)]
    strict: bool,
    /// Write TO wherever a source names the repository FROM (compared without `.git`,
    /// trailing `/` and case of the host); repeatable. TO may be a local path, written
    /// as a file:// URL and read like --repo-dir.
    #[arg(long = "repo-map", value_name = "FROM=TO")]
    repo_map: Vec<String>,
    /// The files of the repository URL are in DIR (a Git repository, read at the
    /// revision asked for, or a plain directory): ApplicationSet Git directory
    /// generators are expanded from it and Application paths are checked in it;
    /// repeatable.
    #[arg(long = "repo-dir", value_name = "URL=DIR")]
    repo_dir: Vec<String>,
}

/// Output formats of `import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// YAML documents.
    Yaml,
    /// A JSON `List`.
    Json,
}

pub async fn run(args: ImportCommand) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let files = args.files.clone();
    let (manifests, outcome) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, Outcome)> {
            let manifests = read(&files)?;
            let outcome = capstan_import::import(&manifests, &opts);
            Ok((manifests.len(), outcome))
        })
        .await
        .context("the import task panicked")??;
    report(&outcome, manifests);
    if !outcome.errors.is_empty() {
        eprintln!(
            "error: {} of the input could not be converted; nothing written",
            plural(outcome.errors.len(), "object")
        );
        return Ok(ExitCode::from(2));
    }
    if args.strict && !outcome.warnings.is_empty() {
        eprintln!(
            "error: --strict: {}; nothing written",
            plural(outcome.warnings.len(), "warning")
        );
        return Ok(ExitCode::from(1));
    }
    let objects: Vec<Value> = outcome
        .objects
        .iter()
        .map(|o| serde_json::to_value(&o.application))
        .collect::<Result<_, _>>()
        .context("serializing the Applications")?;
    match &args.out_dir {
        Some(dir) => write_files(dir, &outcome, &objects, args.output)?,
        None => match args.output {
            Output::Json => crate::print::json(&json!({
                "apiVersion": "v1", "kind": "List", "items": objects,
            })),
            Output::Yaml => {
                for (o, v) in outcome.objects.iter().zip(&objects) {
                    crate::print::out(&format!(
                        "---\n# Imported from {} ({})\n{}",
                        o.from,
                        o.location,
                        capstan_engine::diff::to_yaml(v)
                    ));
                }
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn options(args: &ImportCommand) -> anyhow::Result<ImportOptions> {
    let mut repos = RepoMap::default();
    for m in &args.repo_map {
        let (from, to) = m
            .split_once('=')
            .with_context(|| format!("--repo-map {m:?}: give FROM=TO"))?;
        repos.rewrites.push((from.to_string(), as_url(to)?));
    }
    for d in &args.repo_dir {
        let (url, dir) = d
            .split_once('=')
            .with_context(|| format!("--repo-dir {d:?}: give URL=DIR"))?;
        let dir = Path::new(dir)
            .canonicalize()
            .with_context(|| format!("--repo-dir {d:?}: {dir} is not a directory"))?;
        repos.dirs.push((url.to_string(), dir));
    }
    Ok(ImportOptions {
        namespace: args.namespace.clone(),
        repos,
    })
}

/// A URL as given, or a local path as a `file://` URL.
fn as_url(to: &str) -> anyhow::Result<String> {
    if to.contains("://") || (to.contains('@') && to.contains(':')) {
        return Ok(to.to_string());
    }
    let abs = Path::new(to).canonicalize().with_context(|| {
        format!("--repo-map target {to:?} is neither a URL nor an existing path")
    })?;
    Ok(format!("file://{}", abs.display()))
}

fn read(files: &[PathBuf]) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for f in files {
        if f.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading stdin")?;
            out.extend(manifest::parse(&text, "<stdin>")?);
        } else {
            out.extend(manifest::read_path(f)?);
        }
    }
    Ok(out)
}

/// Warnings, notes and errors on stderr, then one summary line.
fn report(outcome: &Outcome, manifests: usize) {
    for n in outcome
        .notes
        .iter()
        .filter(|n| n.reason != NoteReason::Foreign)
    {
        eprintln!("note: {n}");
    }
    let foreign: Vec<String> = outcome
        .notes
        .iter()
        .filter(|n| n.reason == NoteReason::Foreign)
        .map(|n| format!("{} ({})", n.object, n.location.file))
        .collect();
    if !foreign.is_empty() {
        let shown = foreign
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = foreign.len().saturating_sub(5);
        eprintln!(
            "note: left out {} of neither Argo CD nor Flux: {shown}{}",
            plural(foreign.len(), "object"),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    for e in &outcome.errors {
        eprintln!("error: {e}");
    }
    eprintln!(
        "imported {} from {}: {}, {}",
        plural(outcome.objects.len(), "Application"),
        plural(manifests, "object"),
        plural(outcome.warnings.len(), "warning"),
        plural(outcome.errors.len(), "error"),
    );
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn write_files(
    dir: &Path,
    outcome: &Outcome,
    objects: &[Value],
    format: Output,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ext = match format {
        Output::Yaml => "yaml",
        Output::Json => "json",
    };
    let mut used = std::collections::HashSet::new();
    for (o, v) in outcome.objects.iter().zip(objects) {
        let name = o.application.name_any();
        let ns = o.application.namespace().unwrap_or_default();
        let mut file = format!("{name}.{ext}");
        if !used.insert(file.clone()) {
            file = format!("{ns}-{name}.{ext}");
            if !used.insert(file.clone()) {
                bail!("two Applications named {ns}/{name}");
            }
        }
        let text = match format {
            Output::Yaml => format!(
                "# Imported from {} ({})\n{}",
                o.from,
                o.location,
                capstan_engine::diff::to_yaml(v)
            ),
            Output::Json => format!("{}\n", serde_json::to_string_pretty(v)?),
        };
        let path = dir.join(&file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "wrote {} into {}",
        plural(outcome.objects.len(), "file"),
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(plural(1, "warning"), "1 warning");
        assert_eq!(plural(3, "warning"), "3 warnings");
    }
}
