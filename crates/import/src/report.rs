//! The output: Capstan objects, warnings (a field without a Capstan equivalent, or a
//! difference in behaviour), notes (input objects that make nothing on their own), and
//! errors (bad input) — each naming the file, the object and the field.

use std::fmt;

use capstan_controller::crd::Application;

use crate::manifest::{Location, ObjectId};

/// A Capstan object made from one input object.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The Application.
    pub application: Application,
    /// The input object it was made from.
    pub from: ObjectId,
    /// Where that object was.
    pub location: Location,
}

/// Something the conversion could not carry over as it was, or that behaves differently
/// in Capstan. Never fatal (unless the caller is strict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where the input object was.
    pub location: Location,
    /// The input object.
    pub object: ObjectId,
    /// The field, as a path (`spec.source.plugin`, `spec.sources[1].helm.fileParameters`).
    pub field: String,
    /// What happened to it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}: {}", self.location, self.object, self.message)
        } else {
            write!(
                f,
                "{}: {}: {}: {}",
                self.location, self.object, self.field, self.message
            )
        }
    }
}

/// An input object that makes no Capstan object on its own: a source folded into the
/// Applications that use it, or a kind import does not handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where it was.
    pub location: Location,
    /// The object.
    pub object: ObjectId,
    /// Why it made nothing.
    pub reason: NoteReason,
    /// What became of it.
    pub message: String,
}

/// Why an input object made no Capstan object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteReason {
    /// A Flux source, folded into the Applications that use it (or used by none).
    Source,
    /// A Secret: its key names are checked, its values never read.
    Secret,
    /// Neither an Argo CD nor a Flux object (a Namespace, a kustomization.yaml, …).
    Foreign,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.object, self.message)
    }
}

/// The input object an error is about, and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// Where the object was.
    pub location: Location,
    /// The object.
    pub object: ObjectId,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.object)
    }
}

/// Bad input. Every variant names the file, and where it applies the object and field.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("reading {file}")]
    Read {
        /// The file.
        file: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not YAML (or JSON), or a document is not a mapping.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field is missing, of the wrong type, or holds a value that cannot be converted.
    #[error("{at}: {field}: {message}")]
    Invalid {
        /// The object and where it was.
        at: Box<At>,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A reference to an object that is not in the input.
    #[error("{at}: {field}: {target} is not in the input{hint}")]
    MissingReference {
        /// The referring object and where it was.
        at: Box<At>,
        /// The field holding the reference.
        field: String,
        /// The object referred to.
        target: Box<ObjectId>,
        /// What to do about it (empty, or starting with "; ").
        hint: String,
    },
    /// A repository named by `--repo-dir` (or a local repoURL) could not be read.
    #[error("{at}: {field}: reading the repository {url}: {message}")]
    Repository {
        /// The object and where it was.
        at: Box<At>,
        /// The field naming the repository.
        field: String,
        /// The repository.
        url: String,
        /// What failed.
        message: String,
    },
}

impl ImportError {
    /// The input object the error is about, when it is about one (not a whole file).
    pub fn at(&self) -> Option<&At> {
        match self {
            ImportError::Invalid { at, .. }
            | ImportError::MissingReference { at, .. }
            | ImportError::Repository { at, .. } => Some(at),
            ImportError::Read { .. } | ImportError::Parse { .. } => None,
        }
    }
}

/// The result of an import: what was made, and what the user must know about it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The Capstan objects, in input order.
    pub objects: Vec<Imported>,
    /// Fields without a Capstan equivalent and differences in behaviour.
    pub warnings: Vec<Warning>,
    /// Input objects that make nothing on their own.
    pub notes: Vec<Note>,
    /// Bad input: the objects concerned were not converted.
    pub errors: Vec<ImportError>,
}
