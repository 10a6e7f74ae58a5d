//! The directory renderer: every `*.yaml`, `*.yml` and `*.json` file below the path,
//! recursively and in name order, multi-document, filtered by include/exclude globs.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Origin, RawObject, RenderError, RenderOptions, parse_documents};

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

pub(super) fn render(
    root: &Path,
    dir: &Path,
    opts: &RenderOptions,
) -> Result<Vec<RawObject>, RenderError> {
    let include = globs(&opts.include)?;
    let exclude = globs(&opts.exclude)?;
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let within = file.strip_prefix(dir).unwrap_or(&file);
        if include.as_ref().is_some_and(|g| !g.is_match(within))
            || exclude.as_ref().is_some_and(|g| g.is_match(within))
        {
            continue;
        }
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Read {
            path: shown.clone(),
            source,
        })?;
        if file.extension().is_some_and(|e| e == "json") {
            let object = serde_json::from_str(&text).map_err(|e| RenderError::Parse {
                path: shown.clone(),
                message: format!("line {} column {}: {e}", e.line(), e.column()),
            })?;
            out.push(RawObject {
                object,
                origin: Origin {
                    file: shown,
                    document: 1,
                },
            });
        } else {
            out.extend(parse_documents(&text, &shown)?);
        }
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), RenderError> {
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
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
    Ok(())
}
