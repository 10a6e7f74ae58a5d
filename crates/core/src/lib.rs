//! Capstan's domain types, shared by the engine, the CLI and the controller.
//!
//! Types only, no I/O: what identifies an object ([`ObjectRef`]), what a plan or a
//! sync did to it ([`Change`], [`ChangeSet`]), how healthy it is ([`Health`]), in which
//! wave it is applied ([`SyncWave`]), whether it is a hook ([`Role`]), how it is
//! synced ([`SyncOptionSet`]) and which commit it came from ([`Revision`]).

mod change;
mod health;
pub mod hook;
mod object_ref;
mod revision;
pub mod sync_options;
mod wave;

pub use change::{Change, ChangeSet, Entry, Outcome};
pub use health::{Health, HealthState};
pub use hook::{DeletePolicy, Hook, HookPhase, HookResult, HookType, Role};
pub use object_ref::{ObjectRef, ObjectRefError};
pub use revision::Revision;
pub use sync_options::{Permission, Propagation, SyncOptionError, SyncOptionSet};
pub use wave::{
    ARGO_SYNC_WAVE_ANNOTATION, HELM_HOOK_WEIGHT_ANNOTATION, SYNC_WAVE_ANNOTATION, SyncWave,
    SyncWaveError,
};

/// The label every object Capstan applies carries, naming its Application.
pub const APPLICATION_LABEL: &str = "capstan.dev/application";

/// The annotation that keeps an object out of pruning (`"false"`).
pub const PRUNE_ANNOTATION: &str = "capstan.dev/prune";

/// The field manager Capstan applies with.
pub const FIELD_MANAGER: &str = "capstan";
