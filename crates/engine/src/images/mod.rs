//! Images: the registry side of image automation and the editors that write a chosen
//! image back into a source tree.
//!
//! ```text
//! registry ──scan──▶ tags ──policy──▶ latest image ──edit──▶ source tree
//! ```
//!
//! - [`reference`]: image references as written (`name[:tag][@digest]`);
//! - [`registry`]: a repository's tags (every page) and a tag's digest from a registry;
//! - [`policy`]: the rules that pick one tag from a list (semver, alphabetical,
//!   numerical, with an optional filter and extract), as Flux's ImagePolicy does;
//! - [`edit`]: writing images into Kustomize `images:`, Helm values, plain manifests
//!   and Flux setter markers, changing nothing else in the files;
//! - [`update`]: edit plans for paths of a repository, committed and pushed as one
//!   commit through the Git write path.

pub mod edit;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod update;

pub use reference::ImageRef;
