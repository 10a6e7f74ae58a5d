//! Jsonnet in directory sources, as Argo CD evaluates it.
//!
//! Every `*.jsonnet` file the directory renderer finds is evaluated (`*.libsonnet` files
//! are only imported) with the top-level arguments and external variables of
//! [`JsonnetOptions`]; its output — an object, an array of objects (nested arrays are
//! flattened), or a `List` — becomes raw objects attributed to the file. Imports are
//! searched as go-jsonnet does with Argo CD's library paths: the importing file's
//! directory, then the `libs` (last first), then the rendered directory.
//!
//! A repository is untrusted input, so the import resolver (jrsonnet's hook, not a
//! check on the strings beforehand) confines every `import`, `importstr` and
//! `importbin` to the repository: `..` that climbs out, an absolute path, or a symlink
//! that points out is a [`RenderError::JsonnetImport`] naming the importing file and the
//! path. Evaluation is bounded by a call-depth limit and a time limit, and runs on a
//! thread of its own (jrsonnet's values are not `Send`, and its parser recurses on the
//! native stack, so the thread gets a large one).

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jrsonnet_evaluator::error::ErrorKind;
use jrsonnet_evaluator::function::{CallLocation, TlaArg};
use jrsonnet_evaluator::gc::GcHashMap;
use jrsonnet_evaluator::manifest::JsonFormat;
use jrsonnet_evaluator::parser::{ParserSettings, Source, SourceFile, SourcePath};
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{Error as JsonnetError, IStr, ImportResolver, State};
use serde_json::Value;

use super::{Origin, RawObject, RenderError, display_rel};
use crate::source::{ConfineError, confine};

/// A top-level argument or an external variable, as Argo CD's
/// `spec.source.directory.jsonnet.tlas[]` / `extVars[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonnetVar {
    /// The name (`std.extVar(name)`, or the top-level function's parameter).
    pub name: String,
    /// A string, or Jsonnet code when `code` is set.
    pub value: String,
    /// Whether `value` is Jsonnet code (`--tla-code`, `--ext-code`) rather than a string.
    pub code: bool,
}

/// How Jsonnet files are evaluated.
#[derive(Debug, Clone)]
pub struct JsonnetOptions {
    /// Top-level arguments, passed when a file evaluates to a function (ignored otherwise).
    pub tlas: Vec<JsonnetVar>,
    /// External variables, read with `std.extVar`.
    pub ext_vars: Vec<JsonnetVar>,
    /// Library directories searched by imports, relative to the repository root.
    pub libs: Vec<String>,
    /// How deep calls may nest before evaluation fails (go-jsonnet's default, 500).
    pub max_stack: usize,
    /// How long evaluating all the Jsonnet files of one render may take.
    pub timeout: Duration,
}

impl Default for JsonnetOptions {
    fn default() -> Self {
        JsonnetOptions {
            tlas: Vec::new(),
            ext_vars: Vec::new(),
            libs: Vec::new(),
            max_stack: 500,
            timeout: Duration::from_secs(90),
        }
    }
}

/// A place in Jsonnet source: a file of the repository, or `<extvar:NAME>` /
/// `<tla:NAME>` for code given as a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonnetLocation {
    /// The file, relative to the repository root.
    pub file: String,
    /// The line, counting from 1.
    pub line: usize,
    /// The column, counting from 1.
    pub column: usize,
}

impl fmt::Display for JsonnetLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The text of a [`RenderError::Jsonnet`]: `file:line:column: message` when the error
/// is in the evaluated file itself, `file: lib:line:column: message` when in another.
pub(super) fn error_text(file: &str, at: Option<&JsonnetLocation>, message: &str) -> String {
    match at {
        Some(at) if at.file == file => format!("{at}: {message}"),
        Some(at) => format!("{file}: {at}: {message}"),
        None => format!("{file}: {message}"),
    }
}

/// The native stack of the evaluation thread: jrsonnet grows its own for evaluation,
/// but parsing deeply nested source recurses on this one (reserved, not committed).
const THREAD_STACK: usize = 256 * 1024 * 1024;

/// How many evaluations may be left running after their render gave up on them.
///
/// jrsonnet cannot be interrupted: an evaluation past its time limit (or whose render
/// was dropped) keeps its thread and a core until it ends on its own, and a repository
/// can make that never. Past this many, Jsonnet renders fail at once instead of
/// starting another, so a runaway repository costs a bounded number of cores and not a
/// new thread on every retry.
pub const MAX_ABANDONED: usize = 4;

/// The evaluations now running that their render gave up on.
static ABANDONED: Mutex<usize> = Mutex::new(0);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where an evaluation thread is, as its render sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Ended,
    /// Still running, with no render waiting for it (counted in [`ABANDONED`]).
    Abandoned,
}

/// The render's side of an evaluation: dropped before the evaluation ended (a timeout,
/// or the render future dropped), it counts the evaluation as abandoned.
struct Waiting {
    phase: Arc<Mutex<Phase>>,
    dir: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut phase = lock(&self.phase);
        if *phase == Phase::Running {
            *phase = Phase::Abandoned;
            *lock(&ABANDONED) += 1;
            tracing::warn!(
                path = %self.dir,
                "a Jsonnet evaluation was given up on while running; its thread runs on until it ends"
            );
        }
    }
}

/// The thread's side: the evaluation ended, and no longer counts as abandoned.
fn ended(phase: &Mutex<Phase>) {
    let mut phase = lock(phase);
    if *phase == Phase::Abandoned {
        *lock(&ABANDONED) -= 1;
    }
    *phase = Phase::Ended;
}

/// Evaluate `files` (paths under `dir`, inside `root`), each into its objects, in the
/// order given; all of them within `opts.timeout`.
pub(super) async fn evaluate(
    root: &Path,
    dir: &Path,
    files: Vec<PathBuf>,
    opts: &JsonnetOptions,
) -> Result<Vec<Vec<RawObject>>, RenderError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    // All three absolute alike (a local source may be given as a relative path), so
    // that files and imports are shown and searched relative to the repository root.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let job = Job {
        root: absolute(root),
        dir: absolute(dir),
        files: files.iter().map(|f| absolute(f)).collect(),
        opts: opts.clone(),
    };
    let rel = display_rel(&job.root, &job.dir);
    let abandoned = *lock(&ABANDONED);
    if abandoned >= MAX_ABANDONED {
        return Err(RenderError::Jsonnet {
            file: rel,
            at: None,
            message: format!(
                "{abandoned} Jsonnet evaluations that ran past their time limit are still running; no other starts until they end"
            ),
        });
    }
    let phase = Arc::new(Mutex::new(Phase::Running));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_phase = phase.clone();
    std::thread::Builder::new()
        .name("capstan-jsonnet".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let result = job.run_guarded();
            ended(&thread_phase);
            let _ = tx.send(result);
        })
        .map_err(|source| RenderError::Read {
            path: format!("{rel} (starting the Jsonnet thread)"),
            source,
        })?;
    let _waiting = Waiting {
        phase,
        dir: rel.clone(),
    };
    // A runaway evaluation cannot be interrupted (jrsonnet has no hook for it): on the
    // timeout the render fails at once and the thread is left to finish on its own,
    // counted against [`MAX_ABANDONED`] until it does.
    match tokio::time::timeout(opts.timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(RenderError::Jsonnet {
            file: rel,
            at: None,
            message: "the Jsonnet evaluator stopped without a result".into(),
        }),
        Err(_) => Err(RenderError::Timeout {
            tool: "jsonnet",
            path: rel,
            timeout: opts.timeout,
        }),
    }
}

/// One render's Jsonnet work, moved onto the evaluation thread.
struct Job {
    /// The repository root (absolute, as given: not resolved through symlinks).
    root: PathBuf,
    /// The rendered directory (absolute).
    dir: PathBuf,
    /// The files to evaluate.
    files: Vec<PathBuf>,
    /// Variables, libraries, limits.
    opts: JsonnetOptions,
}

impl Job {
    /// [`Job::run`], with a panic inside jrsonnet turned into an error naming the files.
    fn run_guarded(self) -> Result<Vec<Vec<RawObject>>, RenderError> {
        let files = self.files.clone();
        let root = self.root.clone();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())).unwrap_or_else(
            |panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(RenderError::Jsonnet {
                    file: files
                        .iter()
                        .map(|f| display_rel(&root, f))
                        .collect::<Vec<_>>()
                        .join(", "),
                    at: None,
                    message: format!("the Jsonnet evaluator failed: {what}"),
                })
            },
        )
    }

    fn run(self) -> Result<Vec<Vec<RawObject>>, RenderError> {
        let _depth = jrsonnet_evaluator::stack::limit_stack_depth(self.opts.max_stack);
        let refused = Rc::new(RefCell::new(None));
        let resolver = RepoImports::new(&self, refused.clone())?;
        let first = self.files.first().map(|f| self.rel(f)).unwrap_or_default();
        let state = self.state(resolver, &first)?;
        let tlas = self.tla_args(&first)?;
        let mut out = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let shown = self.rel(file);
            let result = self.evaluate_file(&state, &tlas, file, &shown);
            // A refused import is the cause of whatever evaluation made of it; and
            // should evaluation have got past it, the render still fails closed.
            if let Some(refusal) = refused.borrow_mut().take() {
                return Err(refusal);
            }
            out.push(result?);
        }
        Ok(out)
    }

    /// The evaluation state: the confining resolver, the standard library and the
    /// external variables.
    fn state(&self, resolver: RepoImports, first: &str) -> Result<State, RenderError> {
        let std =
            jrsonnet_stdlib::ContextInitializer::new(PathResolver::Relative(self.root.clone()));
        std.settings_mut().trace_printer = Box::new(QuietTrace);
        for var in &self.opts.ext_vars {
            if var.code {
                std.add_ext_code(&var.name, var.value.as_str())
                    .map_err(|e| self.describe(&e, first))?;
            } else {
                std.add_ext_str(var.name.as_str().into(), var.value.as_str().into());
            }
        }
        let mut builder = State::builder();
        builder.import_resolver(resolver).context_initializer(std);
        Ok(builder.build())
    }

    /// The top-level arguments, code parsed once for all files.
    fn tla_args(&self, first: &str) -> Result<GcHashMap<IStr, TlaArg>, RenderError> {
        let mut args = GcHashMap::new();
        for var in &self.opts.tlas {
            let arg = if var.code {
                let source = Source::new_virtual(
                    format!("<tla:{}>", var.name).into(),
                    var.value.as_str().into(),
                );
                let parsed = jrsonnet_evaluator::parser::parse(
                    &var.value,
                    &ParserSettings {
                        source: source.clone(),
                    },
                )
                .map_err(|error| {
                    let e = JsonnetError::from(ErrorKind::ImportSyntaxError {
                        path: source,
                        error: Box::new(error),
                    });
                    self.describe(&e, first)
                })?;
                TlaArg::Code(parsed)
            } else {
                TlaArg::String(var.value.as_str().into())
            };
            args.insert(IStr::from(var.name.as_str()), arg);
        }
        Ok(args)
    }

    /// Evaluate one file (applying the top-level arguments when it is a function) into
    /// its objects.
    fn evaluate_file(
        &self,
        state: &State,
        tlas: &GcHashMap<IStr, TlaArg>,
        file: &Path,
        shown: &str,
    ) -> Result<Vec<RawObject>, RenderError> {
        let path = SourcePath::new(SourceFile::new(file.to_path_buf()));
        let json = state
            .import_resolved(path)
            .and_then(|val| jrsonnet_evaluator::apply_tla(state.clone(), tlas, val))
            .and_then(|val| val.manifest(JsonFormat::minify()))
            .map_err(|e| self.describe(&e, shown))?;
        let value: Value = serde_json::from_str(&json).map_err(|e| RenderError::Jsonnet {
            file: shown.to_string(),
            at: None,
            message: format!("the output is not a manifest: {e}"),
        })?;
        objects(value, shown)
    }

    /// A jrsonnet error as a render error naming `file` and, when known, the line.
    fn describe(&self, error: &JsonnetError, file: &str) -> RenderError {
        let (at, message) = match error.error() {
            kind @ ErrorKind::ImportSyntaxError { path, error: parse } => (
                Some(self.location(path, parse.location.offset)),
                kind.to_string(),
            ),
            ErrorKind::StackOverflow => (
                self.innermost(error),
                format!(
                    "calls nest deeper than {} (the Jsonnet stack limit): runaway recursion?",
                    self.opts.max_stack
                ),
            ),
            other => (self.innermost(error), other.to_string()),
        };
        RenderError::Jsonnet {
            file: file.to_string(),
            at,
            message,
        }
    }

    /// The innermost frame of an error's trace that has a place in the source.
    fn innermost(&self, error: &JsonnetError) -> Option<JsonnetLocation> {
        error
            .trace()
            .0
            .iter()
            .find_map(|frame| frame.location.as_ref())
            .map(|span| self.location(&span.0, span.1 as usize))
    }

    /// Line and column of a byte offset in a source.
    fn location(&self, source: &Source, offset: usize) -> JsonnetLocation {
        let code = source.code().as_bytes();
        let before = &code[..offset.min(code.len())];
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        let path = source.source_path();
        JsonnetLocation {
            file: path
                .path()
                .map_or_else(|| path.to_string(), |p| self.rel(p)),
            line: before.iter().filter(|b| **b == b'\n').count() + 1,
            column,
        }
    }

    fn rel(&self, path: &Path) -> String {
        display_rel(&self.root, path)
    }
}

/// The objects of a file's output: an object, or an array of objects (nested arrays
/// flattened), numbered as documents in output order.
fn objects(value: Value, file: &str) -> Result<Vec<RawObject>, RenderError> {
    fn flatten(value: Value, out: &mut Vec<Value>, file: &str) -> Result<(), RenderError> {
        match value {
            Value::Object(_) => out.push(value),
            Value::Array(items) => {
                for item in items {
                    flatten(item, out, file)?;
                }
            }
            other => {
                return Err(RenderError::Jsonnet {
                    file: file.to_string(),
                    at: None,
                    message: format!(
                        "the output holds {}, where an object or an array of objects belongs",
                        kind_of(&other)
                    ),
                });
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    flatten(value, &mut found, file)?;
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(i, object)| RawObject {
            object,
            origin: Origin {
                file: file.to_string(),
                document: i + 1,
            },
        })
        .collect())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `std.trace` output is dropped: it may print any value, secrets included, and
/// Capstan logs no secret value.
struct QuietTrace;

impl jrsonnet_stdlib::TracePrinter for QuietTrace {
    fn print_trace(&self, _loc: CallLocation, _value: IStr) {
        tracing::debug!("std.trace called while rendering Jsonnet (its value is not logged)");
    }
}

/// The import resolver: go-jsonnet's search order over Argo CD's library paths, every
/// candidate confined to the repository.
struct RepoImports {
    /// The repository root (absolute).
    root: PathBuf,
    /// Where to look after the importing file's directory, repository-relative: the
    /// libraries last first, then the rendered directory.
    search: Vec<PathBuf>,
    /// The first import refused, for [`Job::run`] to return as the error.
    refused: Rc<RefCell<Option<RenderError>>>,
}

impl RepoImports {
    fn new(job: &Job, refused: Rc<RefCell<Option<RenderError>>>) -> Result<Self, RenderError> {
        let mut search = Vec::new();
        for lib in job.opts.libs.iter().rev() {
            let full = confine::check_tree(&job.root, Path::new(lib))?;
            search.push(full.strip_prefix(&job.root).unwrap_or(&full).to_path_buf());
        }
        search.push(
            job.dir
                .strip_prefix(&job.root)
                .unwrap_or(&job.dir)
                .to_path_buf(),
        );
        Ok(RepoImports {
            root: job.root.clone(),
            search,
            refused,
        })
    }

    /// Record a refused import and give jrsonnet an error to unwind with.
    fn refuse(&self, file: String, import: &str, source: ConfineError) -> JsonnetError {
        let message = format!("import {import:?} leaves the repository: {source}");
        self.refused
            .borrow_mut()
            .get_or_insert(RenderError::JsonnetImport {
                file,
                import: import.to_string(),
                source,
            });
        ErrorKind::ImportCallbackError(message).into()
    }

    /// `import` in `dir` (repository-relative): the file when it exists there inside
    /// the repository, `None` when it does not exist there.
    fn candidate(&self, dir: &Path, import: &str) -> Result<Option<PathBuf>, ConfineError> {
        match confine::check_tree(&self.root, &dir.join(import)) {
            Ok(full) => Ok(Some(full)),
            Err(ConfineError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl ImportResolver for RepoImports {
    fn resolve_from(
        &self,
        from: &SourcePath,
        import: &str,
    ) -> jrsonnet_evaluator::Result<SourcePath> {
        let importer = from.downcast_ref::<SourceFile>().map(|f| {
            f.path()
                .strip_prefix(&self.root)
                .unwrap_or(f.path())
                .to_path_buf()
        });
        let shown = importer
            .as_ref()
            .map_or_else(|| from.to_string(), |p| p.display().to_string());
        if Path::new(import).is_absolute() {
            let source = ConfineError::Escapes {
                path: import.to_string(),
            };
            return Err(self.refuse(shown, import, source));
        }
        let own = importer
            .as_ref()
            .map(|p| p.parent().unwrap_or(Path::new("")));
        for dir in own
            .into_iter()
            .chain(self.search.iter().map(PathBuf::as_path))
        {
            match self.candidate(dir, import) {
                Ok(Some(full)) if full.is_file() => {
                    return Ok(SourcePath::new(SourceFile::new(full)));
                }
                Ok(Some(full)) => {
                    let what = format!("{} is not a file", display_rel(&self.root, &full));
                    return Err(ErrorKind::ImportCallbackError(what).into());
                }
                Ok(None) => {}
                Err(source) => return Err(self.refuse(shown, import, source)),
            }
        }
        Err(ErrorKind::ImportCallbackError(format!(
            "cannot find {import:?} (imported by {shown}) beside it, in the libraries or in the rendered directory"
        ))
        .into())
    }

    fn load_file_contents(&self, resolved: &SourcePath) -> jrsonnet_evaluator::Result<Vec<u8>> {
        let Some(file) = resolved.downcast_ref::<SourceFile>() else {
            return Err(ErrorKind::ImportCallbackError(format!("cannot read {resolved}")).into());
        };
        std::fs::read(file.path()).map_err(|e| {
            let shown = display_rel(&self.root, file.path());
            ErrorKind::ImportCallbackError(format!("reading {shown}: {e}")).into()
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl jrsonnet_gcmodule::Trace for RepoImports {
    fn is_type_tracked() -> bool {
        // Holds no jrsonnet values, so it can be part of no cycle.
        false
    }
}
