//! Generative tests ("fuzzing" on stable Rust) of every parser Capstan points at
//! untrusted text: manifests, Kustomization files, Helm values, webhook payloads and
//! signatures, label and field selectors, and the embedded API server's request
//! bodies, query parameters, patches and managed fields.
//!
//! Each target in [`targets`] is one function that feeds an input to the crate's own
//! entry point (the `fuzzing` facade of `capstan-engine`, or the public modules of
//! `capstan-apiserver` and `capstan-server`) and returns nothing: the input passes when
//! the call returns — `Ok` or a clean `Err` — within a second. The generators in
//! [`inputs`] give both random bytes and inputs built from the format's structure
//! (Kubernetes-shaped objects written as YAML and then mutated, selectors from their
//! grammar, JSON patches, webhook bodies with the fields the providers read), and
//! [`driver`] runs them through proptest, timing every input and shrinking a failure to
//! a small one.
//!
//! ```text
//! cargo test -p capstan-fuzz                                   # CI: 2,000 inputs per target
//! CAPSTAN_FUZZ_CASES=1000000 cargo test -p capstan-fuzz --release -- --nocapture
//! ```
//!
//! Inputs that once failed are kept in `regressions/<target>/` and run by every
//! `cargo test`; `docs/fuzzing.md` has the figures of the last long run.

pub mod driver;
pub mod inputs;
pub mod replay;
pub mod targets;
