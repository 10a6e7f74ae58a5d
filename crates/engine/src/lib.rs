//! Capstan's GitOps engine: the stages every delivery goes through, used unchanged by
//! the push-based CLI and the pull-based controller.
//!
//! ```text
//! source ──fetch──▶ revision ──render──▶ desired set ──plan──▶ change set
//!        ──sync (phases, waves, prune)──▶ cluster ──health──▶ status
//! ```
//!
//! - [`source`]: Git (gix, cached per URL) or a local directory, confined to its root.
//! - [`health`]: one module per kind, rolled up worst-first.

pub mod health;
pub mod source;
