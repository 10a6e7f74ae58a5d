//! One module per command.

pub mod apiserver;
pub mod apply;
pub mod diff;
pub mod render;
