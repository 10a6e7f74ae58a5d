//! The integration tests of `capstan-server`, one module per area, linked into one test
//! binary. One area: `cargo nextest run -p capstan-server -E 'test(/^AREA::/)'`.

mod api;
mod support;
mod ui;
mod webhooks;
