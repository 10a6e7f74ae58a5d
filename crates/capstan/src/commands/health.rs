//! `capstan health`: judge the objects of a file as the controller would, with the
//! built-in rules and, optionally, custom ones (no cluster needed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use capstan_core::Health;
use capstan_engine::health::{self, CustomHealth};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

/// Print the health of every object in a file (no cluster needed).
#[derive(Debug, Args)]
pub struct HealthCommand {
    /// The objects: multi-document YAML or JSON, a `List` included (`-` for stdin).
    #[arg(long, short = 'f', value_name = "FILE")]
    file: PathBuf,
    /// Custom health rules (a YAML list in Flux's healthCheckExprs shape), taking
    /// precedence over the built-in rules for their kinds.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
}

/// How to print the verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// `Deployment default/web: Healthy`, one line per object.
    Text,
    /// A list of `{apiVersion, kind, namespace, name, status, message}`.
    Json,
}

/// Exit 0 whatever the verdicts; 2 (through the error) when a file cannot be read.
pub async fn run(args: HealthCommand) -> anyhow::Result<ExitCode> {
    let custom = match &args.rules {
        Some(path) => CustomHealth::from_yaml(&read(path)?, &path.display().to_string())?,
        None => CustomHealth::default(),
    };
    let objects = objects(&read(&args.file)?, &args.file.display().to_string())?;
    let verdicts: Vec<(Value, Health)> = objects
        .into_iter()
        .map(|obj| {
            let health = health::assess_with(&obj, &custom);
            (obj, health)
        })
        .collect();
    match args.output {
        Output::Text => {
            let lines: String = verdicts.iter().map(|(obj, h)| text_line(obj, h)).collect();
            crate::print::out(&lines);
        }
        Output::Json => {
            let list: Vec<Value> = verdicts.iter().map(|(obj, h)| json_entry(obj, h)).collect();
            crate::print::json(&Value::Array(list));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).context("reading standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The objects of a multi-document YAML (or JSON) text, `List`s flattened; every
/// document must be an object with a `kind`.
fn objects(text: &str, file: &str) -> anyhow::Result<Vec<Value>> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 50_000_000,
            max_events: 200_000_000,
        },
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| anyhow::anyhow!("{file}: {}", yaml_error(&e)))?;
    let mut objects = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let place = format!("{file}: document {}", i + 1);
        match document {
            Value::Null => {}
            Value::Array(items) => items.into_iter().enumerate().try_for_each(|(j, item)| {
                push(&mut objects, item, &format!("{place}, item {}", j + 1))
            })?,
            object => push(&mut objects, object, &place)?,
        }
    }
    Ok(objects)
}

/// The YAML reader's error as one line: `line 5 column 3: duplicate mapping key: name`,
/// without its prefix and its advice on its own options.
fn yaml_error(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    let line = line.trim_start_matches("error: ");
    line.split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(line)
        .to_string()
}

/// Adds an object, or the items of a `List`; an object needs `apiVersion` and `kind`
/// strings, as the API server would ask.
fn push(objects: &mut Vec<Value>, obj: Value, place: &str) -> anyhow::Result<()> {
    if !obj.is_object() {
        bail!(
            "{place}: not a Kubernetes object (a mapping with apiVersion and kind), but {}",
            type_name(&obj)
        );
    }
    let kind = required_text(&obj, "kind", place)?.to_string();
    required_text(&obj, "apiVersion", place)?;
    if kind.ends_with("List")
        && let Some(items) = obj.get("items")
    {
        let Value::Array(items) = items.clone() else {
            bail!(
                "{place}: field items of the {kind} is {}, not a list",
                type_name(items)
            );
        };
        for (j, item) in items.into_iter().enumerate() {
            push(objects, item, &format!("{place}, item {}", j + 1))?;
        }
        return Ok(());
    }
    objects.push(obj);
    Ok(())
}

/// The string field `name` of an object, or an error naming the place and the field.
fn required_text<'a>(obj: &'a Value, name: &str, place: &str) -> anyhow::Result<&'a str> {
    match obj.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => bail!("{place}: field {name} is empty"),
        Some(other) => bail!(
            "{place}: field {name} is {}, not a string",
            type_name(other)
        ),
        None => bail!("{place}: field {name} is missing"),
    }
}

/// `a list`, `a number`, …: what a JSON value is, for errors.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn field<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// `Deployment default/web: Progressing: 1 of 3 replicas updated`.
fn text_line(obj: &Value, health: &Health) -> String {
    let kind = field(obj, "/kind").unwrap_or_default();
    let name = field(obj, "/metadata/name").unwrap_or("(no name)");
    let id = match field(obj, "/metadata/namespace") {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    };
    let state = crate::print::health_state(health.state);
    match health.message.as_str() {
        "" => format!("{id}: {state}\n"),
        message => format!("{id}: {state}: {message}\n"),
    }
}

fn json_entry(obj: &Value, health: &Health) -> Value {
    json!({
        "apiVersion": field(obj, "/apiVersion"),
        "kind": field(obj, "/kind"),
        "namespace": field(obj, "/metadata/namespace"),
        "name": field(obj, "/metadata/name"),
        "status": health.state.as_str(),
        "message": health.message,
    })
}
