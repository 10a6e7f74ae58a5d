//! The integration tests of `capstan`, one module per area, linked into one test
//! binary: one link instead of one per file, so a fresh build is minutes faster and
//! gigabytes smaller. One area: `cargo nextest run -p capstan -E 'test(/^AREA::/)'`.

mod apiserver_restart;
mod charts;
mod cli;
mod controller;
mod deploy;
mod faults;
mod health;
mod images;
mod import;
mod metrics;
mod notify;
mod preview;
mod stopping;
mod up;
mod writeback;
