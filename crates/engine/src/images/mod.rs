//! Images: the registry side of image automation and the editors that write a chosen
//! image back into a source tree.
//!
//! ```text
//! registry ──scan──▶ tags ──policy──▶ latest image ──edit──▶ source tree
//! ```
//!
//! - [`policy`]: the rules that pick one tag from a list (semver, alphabetical,
//!   numerical, with an optional filter and extract), as Flux's ImagePolicy does.

pub mod policy;
