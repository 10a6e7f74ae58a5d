//! The integration tests of `capstan-engine`, one module per area, linked into one test
//! binary: one link instead of one per file, so a fresh build is minutes faster and
//! gigabytes smaller. One area: `cargo nextest run -p capstan-engine -E 'test(/^AREA::/)'`.

mod argo_example_apps;
mod argo_health;
mod argo_hooks;
mod charts;
mod git;
mod image_edit;
mod image_policies;
mod jsonnet_runaway;
mod registry;
mod render;
mod ssh;
mod sync;
mod write;
