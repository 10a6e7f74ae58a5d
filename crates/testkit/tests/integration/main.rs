//! The integration tests of `capstan-testkit`, one module per area, linked into one test
//! binary: one link instead of one per file, so a fresh build is minutes faster and
//! gigabytes smaller. One area: `cargo nextest run -p capstan-testkit -E 'test(/^AREA::/)'`.

mod cluster;
mod git_server;
mod registry;
mod tools;
