//! Test support for Capstan: real servers on loopback, started and stopped by the test.
//!
//! - [`browser`] — Debian's headless `chromium` driven over WebDriver by its
//!   `chromedriver`, through `fantoccini`, for the web UI's tests.
//! - [`charts`] — Helm charts built with the real `helm package`, a chart repository
//!   (`helm repo index` behind a small HTTP server, optional basic auth) on loopback,
//!   `helm push` into the registry, and crafted chart archives.
//! - [`git`] — a git server over HTTP (`git http-backend` behind a small HTTP/1.1
//!   server) with optional basic auth and transfer counters.
//! - [`repo`] — test repositories built with the git CLI, with a fixed identity and
//!   fixed dates so commit ids are the same on every run.
//! - [`cluster`] — the embedded Kubernetes API server on its own runtime, with the
//!   real `kubectl` and a kube-rs client pointed at it.
//! - [`process`] — running child processes bounded in time.
//! - [`receiver`] — an HTTP receiver on loopback that records what arrives and answers
//!   `200`, fails the first requests, or hangs (webhook, Slack, Teams, forge APIs).
//! - [`prometheus`] — Debian's `prometheus` on loopback scraping given targets, with
//!   its storage in a temporary directory, queried through its HTTP API.
//! - [`registry`] — Debian's `docker-registry` (distribution 2.8) on loopback with
//!   anonymous, basic or bearer-token auth (token server in process), image pushes, and
//!   a paging front that serves tag lists in pages with `Link` headers.
//! - [`signing`] — SSH and OpenPGP keys to sign commits with, and `git
//!   verify-commit` set up to check them.
//! - [`ssh`] — OpenSSH's `sshd` on loopback with generated keys, for git over SSH.
//! - [`tools`] — locating helper binaries the tests need (helm).
//!
//! Everything panics with a clear message when the environment is not what the tests
//! need (no `git`, no `kubectl`, no `docker-registry`): the tests never skip silently.

pub mod browser;
pub mod charts;
pub mod client;
pub mod cluster;
pub mod git;
pub mod https;
pub mod process;
pub mod prometheus;
pub mod receiver;
pub mod registry;
pub mod repo;
pub mod signing;
pub mod ssh;
pub mod tools;

pub use browser::Browser;
pub use cluster::TestCluster;
pub use git::{BasicAuth, GitServer};
pub use https::HttpsFront;
pub use prometheus::Prometheus;
pub use receiver::Receiver;
pub use registry::{RegistryAuth, RegistryServer};
pub use repo::{TestRepo, copy_tree};
pub use ssh::SshServer;
