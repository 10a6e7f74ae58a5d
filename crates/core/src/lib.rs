//! Capstan's domain types, shared by the engine, the CLI and the controller.
//!
//! Types only, no I/O: what identifies an object ([`ObjectRef`]), what a plan or a
//! sync did to it ([`Change`], [`ChangeSet`]), how healthy it is ([`Health`]), in which
//! wave it is applied ([`SyncWave`]) and which commit it came from ([`Revision`]).

mod change;
mod health;
mod object_ref;
mod revision;
mod wave;

pub use change::{Change, ChangeSet, Entry, Outcome};
pub use health::{Health, HealthState};
pub use object_ref::{ObjectRef, ObjectRefError};
pub use revision::Revision;
pub use wave::{SYNC_WAVE_ANNOTATION, SyncWave, SyncWaveError};

/// The label every object Capstan applies carries, naming its Application.
pub const APPLICATION_LABEL: &str = "capstan.dev/application";

/// The annotation that keeps an object out of pruning (`"false"`).
pub const PRUNE_ANNOTATION: &str = "capstan.dev/prune";

/// The field manager Capstan applies with.
pub const FIELD_MANAGER: &str = "capstan";
