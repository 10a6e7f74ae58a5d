//! Argo CD `ApplicationSet` → one Capstan `Application` per generated element.
//!
//! Generators: `list` (its `elements`), `git` with `directories` (the repository read
//! from a local copy, at the generator's revision), and `matrix` of those (every
//! combination). Each element's parameters go into the template (`{{name}}`,
//! `{{path}}`, `{{path.basename}}`, `{{path[0]}}` …, or `{{.path.basename}}` with
//! `goTemplate`), and the result is converted as an Argo CD Application, its fields
//! named under `spec.template`. Other generators, selectors and per-generator
//! templates are named in warnings.

use capstan_controller::crd::Application;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value, json};

use super::template::{self, Problem, Syntax};
use crate::Ctx;
use crate::argo::application;
use crate::fields::Doc;
use crate::report::ImportError;

type Params = Map<String, Value>;

/// Convert the ApplicationSet read by `doc`; the warnings about its template go to
/// `ctx`.
pub(crate) fn convert(doc: &mut Doc, ctx: &mut Ctx) -> Result<Vec<Application>, ImportError> {
    doc.required_str("metadata.name")?;
    doc.mark("metadata");
    let syntax = syntax(doc)?;
    let generators = doc.list("spec.generators")?;
    if generators.is_empty() {
        return Err(doc.invalid("spec.generators", "is required"));
    }
    let Some(template) = doc.get("spec.template") else {
        return Err(doc.invalid("spec.template", "is required"));
    };
    let mut elements = Vec::new();
    for i in 0..generators.len() {
        elements.extend(generator(
            doc,
            ctx,
            &format!("spec.generators[{i}]"),
            syntax,
        )?);
    }
    let mut apps = Vec::new();
    for params in &elements {
        let mut problems = Vec::new();
        let rendered = template::render(template, params, syntax, &mut problems);
        for (path, problem) in problems {
            let field = format!("spec.template.{path}");
            match problem {
                Problem::Unresolved(key) => doc.warn(
                    &field,
                    format!("the parameter {key:?} is not set by the generators; left as written"),
                ),
                Problem::Unsupported(message) => return Err(doc.invalid(&field, message)),
            }
        }
        let app = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": rendered.get("metadata").cloned().unwrap_or(Value::Null),
            "spec": rendered.get("spec").cloned().unwrap_or(Value::Null),
        });
        let mut inner = Doc::over(
            &app,
            doc.location().clone(),
            doc.id().clone(),
            "spec.template",
        );
        let converted = application::convert(&mut inner, ctx)?;
        for w in inner.finish() {
            if !ctx.warnings.contains(&w) {
                ctx.warnings.push(w);
            }
        }
        apps.push(converted);
    }
    if apps.is_empty() {
        doc.warn(
            "spec.generators",
            "made no Applications (see the warnings about its generators)",
        );
    }
    Ok(apps)
}

fn syntax(doc: &mut Doc) -> Result<Syntax, ImportError> {
    let go = doc.bool("spec.goTemplate")?.unwrap_or(false);
    let mut strict = false;
    for (i, opt) in doc
        .strings("spec.goTemplateOptions")?
        .into_iter()
        .enumerate()
    {
        match opt.as_str() {
            "missingkey=error" => strict = true,
            "missingkey=default" | "missingkey=invalid" | "missingkey=zero" => {}
            other => doc.warn(
                &format!("spec.goTemplateOptions[{i}]"),
                format!("{other:?} is not a Go template option capstan import knows; left out"),
            ),
        }
    }
    Ok(if go {
        Syntax::Go { strict }
    } else {
        Syntax::Fast
    })
}

/// The elements one generator makes.
fn generator(
    doc: &mut Doc,
    ctx: &mut Ctx,
    at: &str,
    syntax: Syntax,
) -> Result<Vec<Params>, ImportError> {
    let Some(g) = doc.map(at)? else {
        return Err(doc.invalid(at, "must be a generator"));
    };
    for key in ["selector", "template"] {
        doc.warn_if_present(
            &format!("{at}.{key}"),
            match key {
                "selector" => "post-selectors are not applied by capstan import: every element makes an Application",
                _ => "a generator's own template is not applied by capstan import: the ApplicationSet's template is used",
            },
        );
    }
    let mut out = Vec::new();
    for key in g.keys() {
        let path = format!("{at}.{key}");
        match key.as_str() {
            "selector" | "template" => {}
            "list" => out.extend(list(doc, &path)?),
            "git" => out.extend(git(doc, ctx, &path, syntax)?),
            "matrix" => out.extend(matrix(doc, ctx, &path, syntax)?),
            other => doc.warn(
                &path,
                format!(
                    "the {other} generator has no Capstan equivalent: the Applications it would make are not imported"
                ),
            ),
        }
    }
    Ok(out)
}

fn list(doc: &mut Doc, at: &str) -> Result<Vec<Params>, ImportError> {
    let elements = doc.list(&format!("{at}.elements"))?;
    let mut out = Vec::new();
    for (i, e) in elements.iter().enumerate() {
        match e {
            Value::Object(m) => out.push(m.clone()),
            _ => {
                return Err(doc.invalid(&format!("{at}.elements[{i}]"), "must be a mapping"));
            }
        }
    }
    doc.mark(&format!("{at}.elements"));
    Ok(out)
}

fn matrix(
    doc: &mut Doc,
    ctx: &mut Ctx,
    at: &str,
    syntax: Syntax,
) -> Result<Vec<Params>, ImportError> {
    let children = doc.list(&format!("{at}.generators"))?;
    if children.len() != 2 {
        return Err(doc.invalid(
            &format!("{at}.generators"),
            format!(
                "a matrix takes exactly two generators, not {}",
                children.len()
            ),
        ));
    }
    let a = generator(doc, ctx, &format!("{at}.generators[0]"), syntax)?;
    let b = generator(doc, ctx, &format!("{at}.generators[1]"), syntax)?;
    let mut out = Vec::new();
    for x in &a {
        for y in &b {
            let mut m = x.clone();
            m.extend(y.clone());
            out.push(m);
        }
    }
    Ok(out)
}

fn git(doc: &mut Doc, ctx: &mut Ctx, at: &str, syntax: Syntax) -> Result<Vec<Params>, ImportError> {
    let f = |name: &str| format!("{at}.{name}");
    let url = doc.required_str(&f("repoURL"))?;
    let revision = doc.text(&f("revision"))?.unwrap_or_default();
    let prefix = doc.str(&f("pathParamPrefix"))?.map(str::to_string);
    let values = doc.get(&f("values")).cloned();
    doc.warn_if_present(
        &f("files"),
        "the Git files generator is not supported by capstan import: no Applications are made from it",
    );
    let dirs = doc.list(&f("directories"))?;
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let mut include = GlobSetBuilder::new();
    let mut exclude = GlobSetBuilder::new();
    for i in 0..dirs.len() {
        let d = format!("{at}.directories[{i}]");
        let pattern = doc.required_str(&format!("{d}.path"))?;
        let glob = GlobBuilder::new(pattern.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| doc.invalid(&format!("{d}.path"), format!("not a glob: {e}")))?;
        if doc.bool(&format!("{d}.exclude"))?.unwrap_or(false) {
            exclude.add(glob);
        } else {
            include.add(glob);
        }
    }
    let build = |b: GlobSetBuilder, doc: &Doc| -> Result<GlobSet, ImportError> {
        b.build()
            .map_err(|e| doc.invalid(&f("directories"), format!("not a glob: {e}")))
    };
    let (include, exclude) = (build(include, doc)?, build(exclude, doc)?);
    let root = match ctx.repos.tree(url, &revision) {
        None => {
            doc.warn(
                &f("repoURL"),
                format!(
                    "no local copy of {url} to read its directories: give --repo-dir {url}=DIR (or --repo-map {url}=PATH); no Applications are made from this generator"
                ),
            );
            return Ok(Vec::new());
        }
        Some(Err(message)) => {
            return Err(ImportError::Repository {
                at: doc.at(),
                field: f("repoURL"),
                url: url.to_string(),
                message,
            });
        }
        Some(Ok(tree)) => tree.root.to_path_buf(),
    };
    let mut all = Vec::new();
    directories(&root, "", &mut all);
    all.sort();
    let mut out = Vec::new();
    for dir in all
        .into_iter()
        .filter(|d| include.is_match(d) && !exclude.is_match(d))
    {
        let mut params = Params::new();
        let segments: Vec<Value> = dir.split('/').map(|s| Value::String(s.into())).collect();
        let basename = dir.rsplit('/').next().unwrap_or(&dir).to_string();
        let path = json!({
            "path": dir,
            "basename": basename,
            "basenameNormalized": template::normalize_name(&basename),
            "segments": segments,
        });
        match &prefix {
            Some(p) => {
                params.insert(p.clone(), json!({ "path": path }));
            }
            None => {
                params.insert("path".into(), path);
            }
        }
        if let Some(v) = &values {
            let mut problems = Vec::new();
            let rendered = template::render(v, &params, syntax, &mut problems);
            for (p, problem) in problems {
                let field = format!("{at}.values.{p}");
                match problem {
                    Problem::Unresolved(key) => doc.warn(
                        &field,
                        format!("the parameter {key:?} is not set; left as written"),
                    ),
                    Problem::Unsupported(m) => return Err(doc.invalid(&field, m)),
                }
            }
            params.insert("values".into(), rendered);
        }
        out.push(params);
    }
    Ok(out)
}

/// Every directory below `root` (`a`, `a/b`, …), hidden ones left out.
fn directories(root: &std::path::Path, rel: &str, out: &mut Vec<String>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        directories(root, &child, out);
        out.push(child);
    }
}
