//! CEL expressions over live objects: compiled once, evaluated for each object.
//!
//! The object is bound as `self`, and each of its top-level fields (`apiVersion`,
//! `kind`, `metadata`, `spec`, `status`, …) under its own name too, so an expression
//! written for Flux's `healthCheckExprs` (`status.conditions.exists(...)`) works as it
//! is, and so does one in the Kubernetes style (`self.status.conditions...`). The
//! standard library is there, with CEL's optional values (`self.status.?phase`) and the
//! strings extension (`join`, `lowerAscii`, …).
//!
//! The interpreter is third-party code run on input from users: a failure inside it is
//! caught here and reported as an evaluation error, never a crash of the caller.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use serde_json::Value;

/// The longest expression accepted, in bytes: a health check is a line or two.
const MAX_SOURCE_LEN: usize = 16 * 1024;

/// The environment every expression is compiled and evaluated in.
static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // Registering a bundled extension on a fresh environment cannot conflict; should a
    // later crate version disagree, expressions using it fail to evaluate, nothing more.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// A compiled CEL expression and the text it was compiled from.
#[derive(Debug)]
pub(super) struct Expression {
    source: String,
    program: cel::Program,
}

/// Why an expression could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The expression is not valid CEL.
    #[error("not valid CEL")]
    Syntax(#[source] cel::ParseErrors),
    /// The expression is longer than [`MAX_SOURCE_LEN`].
    #[error("longer than {MAX_SOURCE_LEN} bytes")]
    TooLong,
    /// The parser itself failed on this text.
    #[error("the CEL parser failed on it")]
    ParserFailed,
}

/// Why an expression gave no usable value for an object.
#[derive(Debug, thiserror::Error)]
pub(super) enum EvalError {
    /// The evaluation failed (a missing field, a function applied to the wrong type).
    #[error("{0}")]
    Failed(String),
    /// The expression gave a value of another type than the one asked for.
    #[error("gave a {found}, not a {wanted}")]
    WrongType {
        /// The type of the value it gave.
        found: String,
        /// The type asked for.
        wanted: &'static str,
    },
    /// The interpreter itself failed on this expression and object.
    #[error("the CEL interpreter failed")]
    InterpreterFailed,
}

impl Expression {
    /// Compiles `source`.
    pub(super) fn compile(source: &str) -> Result<Expression, CompileError> {
        if source.len() > MAX_SOURCE_LEN {
            return Err(CompileError::TooLong);
        }
        let compiled =
            catch_unwind(|| ENV.compile(source)).map_err(|_| CompileError::ParserFailed)?;
        let program = compiled.map_err(CompileError::Syntax)?;
        Ok(Expression {
            source: source.to_string(),
            program,
        })
    }

    /// The text the expression was compiled from.
    pub(super) fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression for an object, expecting a boolean.
    pub(super) fn boolean(&self, object: &Bindings) -> Result<bool, EvalError> {
        match self.evaluate(object)? {
            cel::Value::Bool(value) => Ok(value),
            other => Err(wrong_type(&other, "bool")),
        }
    }

    /// Evaluates the expression for an object, expecting a string.
    pub(super) fn string(&self, object: &Bindings) -> Result<String, EvalError> {
        match self.evaluate(object)? {
            cel::Value::String(value) => Ok(value.to_string()),
            other => Err(wrong_type(&other, "string")),
        }
    }

    fn evaluate(&self, object: &Bindings) -> Result<cel::Value, EvalError> {
        let context = object
            .context
            .as_ref()
            .ok_or(EvalError::InterpreterFailed)?;
        catch_unwind(AssertUnwindSafe(|| self.program.execute(context)))
            .map_err(|_| EvalError::InterpreterFailed)?
            .map_err(|e| EvalError::Failed(e.to_string()))
    }
}

fn wrong_type(value: &cel::Value, wanted: &'static str) -> EvalError {
    EvalError::WrongType {
        found: value.type_of().to_string(),
        wanted,
    }
}

/// An object converted once into CEL values, for every expression evaluated on it.
pub(super) struct Bindings {
    /// The object bound as `self` and by its top-level fields; `None` if the interpreter
    /// failed to take them.
    context: Option<cel::Context<'static, 'static>>,
}

impl Bindings {
    /// Converts an object.
    pub(super) fn new(obj: &Value) -> Bindings {
        let bind = AssertUnwindSafe(|| {
            let mut context = cel::Context::with_env(Arc::clone(&ENV));
            if let Value::Object(fields) = obj {
                for (name, value) in fields {
                    context.add_variable_from_value(name.as_str(), to_cel(value));
                }
            }
            context.add_variable_from_value("self", to_cel(obj));
            context
        });
        Bindings {
            context: catch_unwind(bind).ok(),
        }
    }
}

/// JSON into CEL: integers that fit are `int` (as Kubernetes counts are), larger ones
/// `uint`, other numbers `double`.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            (None, None) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => {
            let map = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Bindings, CompileError, EvalError, Expression};

    fn evaluate(source: &str, obj: serde_json::Value) -> Result<bool, EvalError> {
        Expression::compile(source)
            .expect("the expression compiles")
            .boolean(&Bindings::new(&obj))
    }

    #[test]
    fn the_object_is_bound_as_self_and_by_its_top_level_fields() {
        let obj = json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 3}});
        assert!(
            evaluate(
                "self.spec.replicas == self.status.readyReplicas",
                obj.clone()
            )
            .unwrap()
        );
        assert!(evaluate("spec.replicas == status.readyReplicas", obj).unwrap());
    }

    #[test]
    fn optional_fields_and_the_strings_extension_are_available() {
        let obj = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(
            evaluate(
                "self.status.?conditions.orValue([]).exists(c, c.type == 'Ready' && c.status == 'True')",
                obj.clone()
            )
            .unwrap()
        );
        assert!(
            evaluate(
                "!has(self.spec) && self.?spec.?suspend.orValue(false) == false",
                obj.clone()
            )
            .unwrap()
        );
        let message = Expression::compile("['a', 'b'].join(', ')").unwrap();
        assert_eq!(message.string(&Bindings::new(&obj)).unwrap(), "a, b");
    }

    #[test]
    fn a_missing_field_is_an_evaluation_error() {
        let err =
            evaluate("self.status.phase == 'Running'", json!({"kind": "Widget"})).unwrap_err();
        assert!(matches!(err, EvalError::Failed(_)), "{err:?}");
    }

    #[test]
    fn a_value_of_another_type_is_an_error_naming_both_types() {
        let err = evaluate("self.kind", json!({"kind": "Widget"})).unwrap_err();
        assert_eq!(err.to_string(), "gave a string, not a bool");
    }

    #[test]
    fn invalid_or_overlong_expressions_do_not_compile() {
        for source in ["status.(", "", "a ? b", &"(".repeat(500), "'unterminated"] {
            assert!(Expression::compile(source).is_err(), "{source:?} compiled");
        }
        assert!(matches!(
            Expression::compile(&"a || ".repeat(10_000)),
            Err(CompileError::TooLong)
        ));
    }
}
