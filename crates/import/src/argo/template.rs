//! ApplicationSet templates: the parameters of one generated element put into every
//! string of the template, in Argo CD's two syntaxes.
//!
//! - fasttemplate (the default): `{{name}}`, `{{ path.basename }}`, `{{path[1]}}` —
//!   parameters flattened with dots; an unknown one is left as written (as Argo CD
//!   does) and reported.
//! - Go templates (`goTemplate: true`): `{{.name}}`, `{{ .path.basename }}`,
//!   `{{ index .path.segments 1 }}`, pipelines through the common Sprig functions
//!   (`lower`, `upper`, `title`, `trim`, `quote`, `default`, `replace`, `trunc`, `join`,
//!   `toString`, `normalize`). `if`/`range` blocks and other functions are an error
//!   naming them, never a silent wrong result. A missing key gives `<no value>` as in
//!   Go, or an error with `missingkey=error`.

use serde_json::{Map, Value};

/// Which syntax the ApplicationSet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// `{{name}}`.
    Fast,
    /// `{{.name}}`; `strict` for `missingkey=error`.
    Go { strict: bool },
}

/// What rendering one string found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// A parameter the element does not have (fasttemplate: left as written).
    Unresolved(String),
    /// A template Capstan cannot evaluate.
    Unsupported(String),
}

/// Render every string value of `template` with `params`; problems are collected with
/// the field path they were found at.
pub(crate) fn render(
    template: &Value,
    params: &Map<String, Value>,
    syntax: Syntax,
    problems: &mut Vec<(String, Problem)>,
) -> Value {
    walk(template, params, syntax, &mut String::new(), problems)
}

fn walk(
    v: &Value,
    params: &Map<String, Value>,
    syntax: Syntax,
    path: &mut String,
    problems: &mut Vec<(String, Problem)>,
) -> Value {
    match v {
        Value::String(s) => {
            let (out, found) = render_str(s, params, syntax);
            problems.extend(found.into_iter().map(|p| (path.clone(), p)));
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let r = walk(item, params, syntax, path, problems);
                    path.truncate(len);
                    r
                })
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, item)| {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    let r = walk(item, params, syntax, path, problems);
                    path.truncate(len);
                    (k.clone(), r)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Render one string.
pub(crate) fn render_str(
    s: &str,
    params: &Map<String, Value>,
    syntax: Syntax,
) -> (String, Vec<Problem>) {
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let mut before = &rest[..start];
        let mut inner = &rest[start + 2..start + len];
        let mut after = &rest[start + len + 2..];
        if syntax != Syntax::Fast {
            // Go's trim markers: `{{- x -}}` eats the white space around the action.
            if let Some(i) = inner.strip_prefix("- ") {
                before = before.trim_end();
                inner = i;
            }
            if let Some(i) = inner.strip_suffix(" -") {
                after = after.trim_start();
                inner = i;
            }
        }
        out.push_str(before);
        match syntax {
            Syntax::Fast => {
                let key = inner.trim();
                match flat_lookup(params, key) {
                    Some(v) => out.push_str(&v),
                    None => {
                        problems.push(Problem::Unresolved(key.to_string()));
                        out.push_str(&rest[start..start + len + 2]);
                    }
                }
            }
            Syntax::Go { strict } => match go_action(inner.trim(), params, strict) {
                Ok(v) => out.push_str(&v),
                Err(p) => {
                    problems.push(p);
                    out.push_str(&rest[start..start + len + 2]);
                }
            },
        }
        rest = after;
    }
    out.push_str(rest);
    (out, problems)
}

/// fasttemplate: `a.b` and `a[1]` over the nested parameters, scalars only.
fn flat_lookup(params: &Map<String, Value>, key: &str) -> Option<String> {
    if let Some(v) = params.get(key) {
        return scalar(v);
    }
    let mut cur: &Value = params.get(key.split(['.', '[']).next()?)?;
    let mut rest = &key[key.find(['.', '[']).unwrap_or(key.len())..];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].trim().parse().ok()?;
            cur = match cur {
                Value::Array(a) => a.get(i)?,
                Value::Object(o) => o.get("segments").and_then(|s| s.get(i))?,
                _ => return None,
            };
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    scalar(cur)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // `{{path}}` is the path itself in the fasttemplate form.
        Value::Object(o) => o.get("path").and_then(scalar),
        _ => None,
    }
}

/// One Go template action: a pipeline of commands.
fn go_action(action: &str, params: &Map<String, Value>, strict: bool) -> Result<String, Problem> {
    let first = action.split_whitespace().next().unwrap_or_default();
    if matches!(
        first,
        "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block"
    ) || action.starts_with("/*")
    {
        return Err(Problem::Unsupported(format!(
            "{{{{ {action} }}}}: Go template blocks ({first}) are not supported by capstan import"
        )));
    }
    let mut value: Option<Value> = None;
    for command in split_pipeline(action) {
        let words = tokens(&command)?;
        value = Some(go_command(&words, value, params, strict)?);
    }
    Ok(value.map(|v| text(&v)).unwrap_or_default())
}

fn split_pipeline(action: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in action.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.last_mut().expect("not empty").push(c);
            }
            '|' if !quoted => out.push(String::new()),
            _ => out.last_mut().expect("not empty").push(c),
        }
    }
    out
}

/// A command's words: `.a.b`, `"text"`, numbers, function names.
fn tokens(command: &str) -> Result<Vec<String>, Problem> {
    let mut out = Vec::new();
    let mut chars = command.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::from('"');
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            s.push(match n {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    other => s.push(other),
                }
            }
            if !closed {
                return Err(Problem::Unsupported(format!(
                    "{command}: an unterminated string"
                )));
            }
            out.push(s);
        } else if c == '(' || c == ')' {
            return Err(Problem::Unsupported(format!(
                "{command}: parenthesized Go template expressions are not supported by capstan import"
            )));
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

/// The value of one argument: a field chain, a string or a number.
fn operand(word: &str, params: &Map<String, Value>, strict: bool) -> Result<Value, Problem> {
    if let Some(s) = word.strip_prefix('"') {
        return Ok(Value::String(s.to_string()));
    }
    if let Ok(n) = word.parse::<i64>() {
        return Ok(Value::from(n));
    }
    if word == "." {
        return Ok(Value::Object(params.clone()));
    }
    if let Some(chain) = word.strip_prefix('.') {
        let mut cur = params.get(chain.split('.').next().unwrap_or_default());
        for key in chain.split('.').skip(1) {
            cur = cur.and_then(|v| v.get(key));
        }
        return match cur {
            Some(v) => Ok(v.clone()),
            None if strict => Err(Problem::Unresolved(word.to_string())),
            None => Ok(Value::Null),
        };
    }
    Err(Problem::Unsupported(format!(
        "{word}: only .fields, \"strings\" and numbers are supported as arguments by capstan import"
    )))
}

fn go_command(
    words: &[String],
    piped: Option<Value>,
    params: &Map<String, Value>,
    strict: bool,
) -> Result<Value, Problem> {
    let Some(head) = words.first() else {
        return Err(Problem::Unsupported("an empty Go template action".into()));
    };
    if head.starts_with('.') || head.starts_with('"') || head.parse::<i64>().is_ok() {
        if words.len() > 1 {
            return Err(Problem::Unsupported(format!(
                "{}: a value cannot take arguments",
                words.join(" ")
            )));
        }
        return operand(head, params, strict);
    }
    let mut args = Vec::new();
    for w in &words[1..] {
        args.push(operand(w, params, strict)?);
    }
    if let Some(p) = piped {
        args.push(p);
    }
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    let last = || args.last().map(text).unwrap_or_default();
    let arity = |n: usize| -> Result<(), Problem> {
        if args.len() == n {
            Ok(())
        } else {
            Err(Problem::Unsupported(format!(
                "{head} takes {n} argument(s), got {}",
                args.len()
            )))
        }
    };
    let v = match head.as_str() {
        "index" => {
            let mut cur = args.first().cloned().unwrap_or(Value::Null);
            for k in &args[1..] {
                cur = match (cur, k) {
                    (Value::Array(a), Value::Number(n)) => n
                        .as_u64()
                        .and_then(|i| a.get(i as usize).cloned())
                        .unwrap_or(Value::Null),
                    (Value::Object(o), Value::String(key)) => {
                        o.get(key).cloned().unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
            }
            cur
        }
        "lower" => {
            arity(1)?;
            Value::String(s(0).to_lowercase())
        }
        "upper" => {
            arity(1)?;
            Value::String(s(0).to_uppercase())
        }
        "title" => {
            arity(1)?;
            Value::String(title(&s(0)))
        }
        "trim" => {
            arity(1)?;
            Value::String(s(0).trim().to_string())
        }
        "quote" => Value::String(format!("{:?}", last())),
        "toString" => {
            arity(1)?;
            Value::String(s(0))
        }
        "default" => {
            arity(2)?;
            let given = &args[1];
            let empty = match given {
                Value::Null => true,
                Value::String(x) => x.is_empty(),
                Value::Bool(b) => !b,
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Number(n) => n.as_f64() == Some(0.0),
            };
            if empty {
                args[0].clone()
            } else {
                given.clone()
            }
        }
        "replace" => {
            arity(3)?;
            Value::String(s(2).replace(&s(0), &s(1)))
        }
        "trunc" => {
            arity(2)?;
            let n = args[0].as_i64().unwrap_or(0);
            let text = s(1);
            let chars: Vec<char> = text.chars().collect();
            let cut: String = if n >= 0 {
                chars.iter().take(n as usize).collect()
            } else {
                chars[chars.len().saturating_sub(n.unsigned_abs() as usize)..]
                    .iter()
                    .collect()
            };
            Value::String(cut)
        }
        "join" => {
            arity(2)?;
            let sep = s(0);
            let items: Vec<String> = args[1]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            Value::String(items.join(&sep))
        }
        "normalize" => {
            arity(1)?;
            Value::String(normalize_name(&s(0)))
        }
        other => {
            return Err(Problem::Unsupported(format!(
                "the Go template function {other:?} is not supported by capstan import"
            )));
        }
    };
    Ok(v)
}

fn title(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How Go prints a value in a template.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(text).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// A name as Argo CD normalizes it (`basenameNormalized`, `normalize`): lower case,
/// characters other than letters, digits, `-` and `.` replaced by `-`, at most 253.
pub(crate) fn normalize_name(s: &str) -> String {
    let mapped: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c| c == '-' || c == '.');
    trimmed.chars().take(253).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Map<String, Value> {
        json!({
            "name": "web", "cluster": "prod",
            "path": {"path": "apps/web_ui", "basename": "web_ui", "basenameNormalized": "web-ui", "segments": ["apps", "web_ui"]},
            "values": {"env": "Prod"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn flat() -> Map<String, Value> {
        json!({"name": "web", "path": "apps/web_ui", "path.basename": "web_ui", "path[0]": "apps", "path[1]": "web_ui", "values.env": "Prod"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn fasttemplate_replaces_known_parameters_and_keeps_the_others() {
        let (out, problems) = render_str(
            "{{name}}-{{ path.basename }}-{{path[0]}}-{{values.env}}-{{nope}}",
            &flat(),
            Syntax::Fast,
        );
        assert_eq!(out, "web-web_ui-apps-Prod-{{nope}}");
        assert_eq!(problems, [Problem::Unresolved("nope".into())]);
    }

    #[test]
    fn go_templates_read_fields_index_and_pipelines() {
        let go = Syntax::Go { strict: false };
        let r = |s: &str| render_str(s, &params(), go);
        assert_eq!(r("{{.path.basename}}").0, "web_ui");
        assert_eq!(r("{{ .path.path }}").0, "apps/web_ui");
        assert_eq!(r("{{ index .path.segments 1 }}").0, "web_ui");
        assert_eq!(r("{{ .values.env | lower }}-{{.name|upper}}").0, "prod-WEB");
        assert_eq!(r("{{ .missing | default \"x\" }}").0, "x");
        assert_eq!(r("{{ .path.basename | replace \"_\" \"-\" }}").0, "web-ui");
        assert_eq!(r("a {{- .name -}} b").0, "awebb");
        assert_eq!(r("{{.missing}}").0, "<no value>");
        assert_eq!(r("{{ normalize .path.basename }}").0, "web-ui");
    }

    #[test]
    fn go_template_blocks_and_unknown_functions_are_problems_not_silence() {
        let go = Syntax::Go { strict: true };
        let (out, p) = render_str("{{ if .name }}x{{ end }}", &params(), go);
        assert!(out.contains("{{ if .name }}"), "{out}");
        assert!(
            matches!(&p[0], Problem::Unsupported(m) if m.contains("blocks")),
            "{p:?}"
        );
        let (_, p) = render_str("{{ .name | sha256sum }}", &params(), go);
        assert!(
            matches!(&p[0], Problem::Unsupported(m) if m.contains("sha256sum")),
            "{p:?}"
        );
        let (_, p) = render_str("{{ .nope }}", &params(), go);
        assert_eq!(p, [Problem::Unresolved(".nope".into())]);
    }

    #[test]
    fn a_whole_template_is_rendered_with_paths_of_its_problems() {
        let t = json!({"metadata": {"name": "{{name}}"}, "spec": {"source": {"path": "{{path}}", "x": ["{{bad}}"]}}});
        let mut problems = Vec::new();
        let out = render(&t, &flat(), Syntax::Fast, &mut problems);
        assert_eq!(out["metadata"]["name"], "web");
        assert_eq!(out["spec"]["source"]["path"], "apps/web_ui");
        assert_eq!(
            problems,
            [(
                "spec.source.x[0]".to_string(),
                Problem::Unresolved("bad".into())
            )]
        );
    }

    #[test]
    fn names_are_normalized_as_argo_cd_does() {
        assert_eq!(normalize_name("Directory_2"), "directory-2");
        assert_eq!(normalize_name("_a.b_"), "a.b");
    }
}
