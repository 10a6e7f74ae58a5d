//! Capstan's GitOps engine: the stages every delivery goes through, used unchanged by
//! the push-based CLI and the pull-based controller.
//!
//! ```text
//! source ──fetch──▶ revision ──render──▶ desired set ──plan──▶ change set
//!        ──sync (phases, waves, prune)──▶ cluster ──health──▶ status
//! ```
//!
//! - [`source`]: Git (gix, cached per URL) or a local directory, confined to its root.
//! - [`render`]: directory, Kustomize, Helm; normalized into the desired set.
//! - [`plan`]: live state vs desired, by server-side dry run where needed ([`diff`]).
//! - [`sync`]: waves, phases, kind order, bounded concurrency, health waits, prune.
//! - [`inventory`]: what an Application applied, kept in the cluster for pruning.
//! - [`health`]: one module per kind, rolled up worst-first.
//! - [`destination`]: the cluster delivered to.

pub mod destination;
pub mod diff;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod images;
pub mod inventory;
pub mod plan;
pub mod render;
pub mod retry;
pub mod source;
pub mod sync;
