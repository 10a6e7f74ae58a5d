//! Commit message and branch name templates of write-backs, in Jinja syntax
//! (minijinja): `capstan/{{ app }}-{{ tag }}`, or a message listing the changes:
//!
//! ```text
//! Update {{ app }} to {{ tag }}
//!
//! {% for c in changes %}- {{ c.file }}: {{ c.field }}: {{ c.old }} -> {{ c.new }}
//! {% endfor %}
//! ```
//!
//! A template is checked when it is read, so a typo is an error before anything is
//! fetched; a variable it names that the write does not have is an error too, not an
//! empty string.

use serde::Serialize;

/// A template that did not parse or render.
#[derive(Debug, thiserror::Error)]
#[error("template {template:?}: {message}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong (with the line).
    pub message: String,
}

/// A message or branch name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Parse `text`; a syntax error names the template.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let env = environment();
        env.template_from_str(text).map_err(|e| TemplateError {
            template: text.to_string(),
            message: describe(&e),
        })?;
        Ok(Template(text.to_string()))
    }

    /// The template's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Render with `values` (a struct or map of the variables).
    pub fn render(&self, values: &impl Serialize) -> Result<String, TemplateError> {
        let env = environment();
        let err = |e: minijinja::Error| TemplateError {
            template: self.0.clone(),
            message: describe(&e),
        };
        let t = env.template_from_str(&self.0).map_err(err)?;
        t.render(minijinja::value::Serde(values)).map_err(err)
    }
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

fn describe(e: &minijinja::Error) -> String {
    let mut text = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    if let Some(line) = e.line() {
        text = format!("line {line}: {text}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_template_fills_in_the_variables() {
        let t = Template::parse("capstan/{{app}}-{{ tag }}").unwrap();
        let out = t
            .render(&serde_json::json!({"app": "web", "tag": "1.5.0"}))
            .unwrap();
        assert_eq!(out, "capstan/web-1.5.0");
    }

    #[test]
    fn a_syntax_error_or_an_unknown_variable_is_an_error() {
        let e = Template::parse("Update {{ app").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("template \"Update {{ app\": line 1"),
            "{e}"
        );
        let t = Template::parse("Update {{ aap }}").unwrap();
        let e = t.render(&serde_json::json!({"app": "web"})).unwrap_err();
        assert!(e.to_string().contains("undefined"), "{e}");
    }

    #[test]
    fn a_message_lists_the_changes() {
        let t = Template::parse(
            "Update images\n\n{% for c in changes %}- {{ c.file }}: {{ c.old }} -> {{ c.new }}\n{% endfor %}",
        )
        .unwrap();
        let out = t
            .render(&serde_json::json!({"changes": [
                {"file": "a.yaml", "old": "1", "new": "2"},
                {"file": "b.yaml", "old": "3", "new": "4"}]}))
            .unwrap();
        assert_eq!(out, "Update images\n\n- a.yaml: 1 -> 2\n- b.yaml: 3 -> 4\n");
    }
}
