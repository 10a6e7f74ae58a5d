//! From write-back flags to the engine's write options, and the printing that
//! `set-image`, `promote` and `revert` share.

use std::path::Path;

use anyhow::{Context, bail};
use capstan_engine::images::edit::FieldChange;
use capstan_engine::source::template::Template;
use capstan_engine::source::{GitSource, Identity, SigningKey, WriteOptions, Written};
use serde::Serialize;

use crate::args::{CommitArgs, WriteArgs};

/// The repository, and the write options without the push branch (a template the
/// caller renders once it knows the values).
pub fn target(args: &WriteArgs) -> anyhow::Result<(GitSource, WriteOptions)> {
    let repo = args.repo.as_deref().context("--repo is needed to commit")?;
    let src = crate::source::repository(repo, &args.commit.credentials)?;
    let opts = WriteOptions {
        branch: args.branch.clone().unwrap_or_default(),
        ..options(&args.commit)?
    };
    Ok((src, opts))
}

/// Author and signing key of a commit.
pub fn options(args: &CommitArgs) -> anyhow::Result<WriteOptions> {
    let author = match &args.author {
        Some(a) => Identity::parse(a)?,
        None => Identity::capstan(),
    };
    let signing = match &args.sign_key {
        None => None,
        Some(key) => Some(signing_key(key, args.sign_passphrase.clone())?),
    };
    Ok(WriteOptions {
        author,
        signing,
        ..Default::default()
    })
}

/// An SSH or OpenPGP key, told apart by its armor.
fn signing_key(path: &Path, passphrase: Option<String>) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signing key {}", path.display()))?;
    if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
        Ok(SigningKey::OpenPgp {
            key: path.to_path_buf(),
            passphrase,
        })
    } else if text.contains("PRIVATE KEY-----") {
        if passphrase.is_some() {
            bail!(
                "the SSH signing key {} must not need a passphrase (--sign-passphrase is for OpenPGP keys)",
                path.display()
            );
        }
        Ok(SigningKey::Ssh {
            key: path.to_path_buf(),
        })
    } else {
        bail!(
            "{} is neither an SSH private key nor an armored OpenPGP secret key",
            path.display()
        )
    }
}

/// Parse a template given on the command line, naming the flag.
pub fn template(flag: &str, text: &str) -> anyhow::Result<Template> {
    Template::parse(text).with_context(|| flag.to_string())
}

/// The lines that say what changed: `FILE OBJECT FIELD: OLD -> NEW`.
pub fn change_lines(changes: &[FieldChange]) -> String {
    let mut out = String::new();
    for c in changes {
        let old = if c.old.is_empty() { "(none)" } else { &c.old };
        let new = if c.new.is_empty() {
            "(removed)"
        } else {
            &c.new
        };
        out.push_str(&format!(
            "{}: {} {}: {old} -> {new}\n",
            c.file, c.object, c.field
        ));
    }
    out
}

/// The result of a write-back for `-o json`.
#[derive(Debug, Serialize)]
pub struct JsonResult<'a> {
    /// Every changed field.
    pub changes: &'a [FieldChange],
    /// Files written.
    pub files: &'a [String],
    /// The pushed commit, if any.
    pub commit: Option<&'a str>,
    /// The branch it went to.
    pub branch: Option<&'a str>,
    /// Whether anything changed.
    pub changed: bool,
}

/// A one-line summary of what a write did.
pub fn written_line(written: &Written, files: usize, fields: usize) -> String {
    match written {
        Written::Pushed { commit, branch, .. } => format!(
            "pushed {} to {branch} ({fields} field(s) in {files} file(s))",
            &commit[..commit.len().min(12)]
        ),
        Written::NoChange { head } => format!(
            "no change: {} already says so; nothing committed",
            &head[..head.len().min(12)]
        ),
    }
}

/// Print what a write-back changed: one line per field and the summary, or JSON.
pub fn print(
    output: &crate::args::Format,
    changes: &[FieldChange],
    files: &[String],
    pushed: Option<(&str, &str)>,
    summary: String,
) {
    match output {
        crate::args::Format::Json => {
            let r = JsonResult {
                changes,
                files,
                commit: pushed.map(|p| p.0),
                branch: pushed.map(|p| p.1),
                changed: !changes.is_empty(),
            };
            crate::outln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        }
        _ => {
            let mut text = change_lines(changes);
            text.push_str(&summary);
            crate::outln!("{text}");
        }
    }
}
