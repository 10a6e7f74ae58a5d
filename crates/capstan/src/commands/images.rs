//! `capstan images`: the registry side of image automation from the command line —
//! which tag a policy would choose, for debugging policies before an ImagePolicy uses
//! them.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use capstan_engine::images::policy::{Order, PolicyError, TagFilter, TagPolicy};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;

use crate::args::Format;

/// `capstan images`.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Print the tag a policy chooses from an image's tags (exit 1 when none).
    Select(SelectCommand),
}

/// `capstan images select`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("policy").required(true).args(["semver", "alphabetical", "numerical"])))]
#[command(group(ArgGroup::new("tags").required(true).args(["image", "tags_file"])))]
pub struct SelectCommand {
    /// The highest version in a semver range (Masterminds syntax, as Flux: `1.2.x`,
    /// `~1.2`, `^0.3`, `>=1.0 <2`).
    #[arg(long, value_name = "RANGE")]
    semver: Option<String>,
    /// Byte-wise order: `asc` picks the last tag, `desc` the first.
    #[arg(long, value_name = "asc|desc")]
    alphabetical: Option<String>,
    /// Every tag as a number: `asc` picks the largest, `desc` the smallest.
    #[arg(long, value_name = "asc|desc")]
    numerical: Option<String>,
    /// Only tags this regular expression finds a match in.
    #[arg(long, value_name = "REGEX")]
    filter: Option<String>,
    /// What of the match the policy ranks (`$1`, `$name`); the tag is still printed.
    #[arg(long, value_name = "TEMPLATE", requires = "filter")]
    extract: Option<String>,
    /// Read the tags of this image from its registry (`host/repo`).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Read the tags from this file, one per line (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    tags_file: Option<PathBuf>,
    #[command(flatten)]
    registry: crate::args::RegistryArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Format,
}

/// Run `capstan images …`.
pub async fn run(cmd: ImagesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImagesCommand::Select(c) => select(c).await,
    }
}

async fn select(cmd: SelectCommand) -> anyhow::Result<ExitCode> {
    let order = |flag: &str, v: &str| -> anyhow::Result<Order> {
        v.parse::<Order>()
            .with_context(|| format!("--{flag} {v:?}"))
    };
    let policy = match (&cmd.semver, &cmd.alphabetical, &cmd.numerical) {
        (Some(range), _, _) => TagPolicy::semver(range)?,
        (_, Some(o), _) => TagPolicy::alphabetical(order("alphabetical", o)?),
        (_, _, Some(o)) => TagPolicy::numerical(order("numerical", o)?),
        _ => bail!("give --semver, --alphabetical or --numerical"),
    };
    let filter = match &cmd.filter {
        Some(pattern) => Some(TagFilter::new(
            pattern,
            cmd.extract.as_deref().unwrap_or(""),
        )?),
        None => None,
    };
    let tags = match (&cmd.tags_file, &cmd.image) {
        (Some(file), _) => read_tags(file)?,
        (None, Some(image)) => crate::registry::tags(image, &cmd.registry).await?,
        (None, None) => bail!("give --image or --tags-file"),
    };
    match policy.latest(&tags, filter.as_ref()) {
        Ok(tag) => {
            match cmd.output {
                Format::Json => crate::outln!(
                    "{}",
                    json!({"tag": tag, "policy": policy.to_string(), "tags": tags.len()})
                ),
                _ => crate::outln!("{tag}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (PolicyError::NoTags
            | PolicyError::NoTagInRange { .. }
            | PolicyError::NoTagPassesFilter { .. }),
        ) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn read_tags(file: &PathBuf) -> anyhow::Result<Vec<String>> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading tags from standard input")?;
    } else {
        text = std::fs::read_to_string(file)
            .with_context(|| format!("reading tags from {}", file.display()))?;
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}
