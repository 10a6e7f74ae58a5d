//! The directory renderer: every `*.yaml`, `*.yml`, `*.json` and `*.jsonnet` file below
//! the path, recursively and in name order, filtered by include/exclude globs. YAML is
//! multi-document; Jsonnet files are evaluated ([`super::jsonnet`]), as Argo CD does in
//! a directory source.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Origin, RawObject, RenderError, RenderOptions, jsonnet, parse_documents};

fn globs(patterns: &[String]) -> Result<Option<GlobSet>, RenderError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|source| RenderError::Glob {
            glob: p.clone(),
            source,
        })?);
    }
    b.build().map(Some).map_err(|source| RenderError::Glob {
        glob: patterns.join(","),
        source,
    })
}

/// A file's objects: parsed, or a Jsonnet file still to evaluate.
enum Slot {
    Parsed(Vec<RawObject>),
    Jsonnet,
}

pub(super) async fn render(
    root: &Path,
    dir: &Path,
    opts: &RenderOptions,
) -> Result<Vec<RawObject>, RenderError> {
    let files = manifest_files(dir, opts)?;
    let mut slots = Vec::with_capacity(files.len());
    let mut jsonnet_files = Vec::new();
    for file in files {
        if is_jsonnet(&file) {
            slots.push(Slot::Jsonnet);
            jsonnet_files.push(file);
        } else {
            slots.push(Slot::Parsed(read_manifest(root, &file)?));
        }
    }
    let mut evaluated = jsonnet::evaluate(root, dir, jsonnet_files, &opts.jsonnet)
        .await?
        .into_iter();
    let mut out = Vec::new();
    for slot in slots {
        match slot {
            Slot::Parsed(objs) => out.extend(objs),
            Slot::Jsonnet => out.extend(evaluated.next().unwrap_or_default()),
        }
    }
    Ok(out)
}

/// The manifest files under `dir` that the globs let through, in name order.
fn manifest_files(dir: &Path, opts: &RenderOptions) -> Result<Vec<PathBuf>, RenderError> {
    let include = globs(&opts.include)?;
    let exclude = globs(&opts.exclude)?;
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    files.retain(|file| {
        let within = file.strip_prefix(dir).unwrap_or(file);
        !(include.as_ref().is_some_and(|g| !g.is_match(within))
            || exclude.as_ref().is_some_and(|g| g.is_match(within)))
    });
    Ok(files)
}

/// The objects of one YAML or JSON file.
fn read_manifest(root: &Path, file: &Path) -> Result<Vec<RawObject>, RenderError> {
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let text = std::fs::read_to_string(file).map_err(|source| RenderError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_manifest(&text, &shown, file.extension().is_some_and(|e| e == "json"))
}

/// The objects of one manifest file's text: one JSON object, or YAML documents.
pub(crate) fn parse_manifest(
    text: &str,
    shown: &str,
    json: bool,
) -> Result<Vec<RawObject>, RenderError> {
    if json {
        let object = serde_json::from_str(text).map_err(|e| RenderError::Parse {
            path: shown.to_string(),
            message: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
        Ok(vec![RawObject {
            object,
            origin: Origin {
                file: shown.to_string(),
                document: 1,
            },
        }])
    } else {
        parse_documents(text, shown)
    }
}

fn is_jsonnet(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "jsonnet")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RenderError> {
    let io = |source| RenderError::Read {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json" || e == "jsonnet")
        {
            out.push(path);
        }
    }
    Ok(())
}
