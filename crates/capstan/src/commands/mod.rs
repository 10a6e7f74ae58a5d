//! One module per command.

pub mod apiserver;
pub mod apply;
pub mod apps;
pub mod controller;
pub mod diff;
pub mod health;
pub mod images;
pub mod import;
pub mod preview;
pub mod promote;
pub mod render;
pub mod revert;
pub mod set_image;
pub mod stopping;
pub mod up;
