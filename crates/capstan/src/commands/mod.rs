//! One module per command.

pub mod apiserver;
pub mod apply;
pub mod apps;
pub mod controller;
pub mod diff;
pub mod render;
pub mod up;
