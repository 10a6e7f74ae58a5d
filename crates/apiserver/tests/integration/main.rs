//! The integration tests of `capstan-apiserver`, one module per area, linked into one test
//! binary: one link instead of one per file, so a fresh build is minutes faster and
//! gigabytes smaller. One area: `cargo nextest run -p capstan-apiserver -E 'test(/^AREA::/)'`.

mod faults;
mod kube_client;
mod kube_client_more;
mod kubectl;
mod kubectl_imperative;
mod util;
mod workloads;
