//! Fuzz targets for ao-cu's parsers of outside input (issue 16): the ANS-104 data item ([`targets::ans104`]),
//! the GraphQL subset ([`targets::graphql`]), SU pages posted in hbu mode ([`targets::su_page`]), process
//! snapshots ([`targets::snapshot`]), checkpoint files ([`targets::checkpoint`]) and HTTP query strings
//! ([`targets::http_query`]).
//!
//! Each target is a `fn(&[u8])` that panics when a property fails: errors must be values, round trips must
//! hold where they are defined, and no single allocation may follow an untrusted length beyond what the
//! input really yields ([`alloc`] measures it). The same functions run two ways:
//!
//! * as ordinary tests (`cargo test -p cu-fuzz`, part of `tests/run.sh`): [`driver`] runs each target, on a
//!   thread with a [`driver::STACK`] stack (so runaway recursion is caught), over its seed corpus
//!   (`fuzz/corpus/<target>/`) plus a bounded number of deterministic mutations of it;
//! * coverage-guided under cargo-fuzz (libFuzzer), from `fuzz_targets/` with the `libfuzzer` feature, on
//!   stable Rust with `RUSTC_BOOTSTRAP=1` and `--sanitizer none` (docs/ARCHITECTURE.md, "Fuzzing").
//!
//! The seed corpus is made by our own code (`write_seed_corpus` in the tests below): signed items from
//! cu-ans104's wallets, the queries aoconnect sends, an SU page from cu-scheduler's wire format, a snapshot
//! cu-wasm takes of a WAT probe, and a checkpoint cu-engine encodes from it.

#![allow(clippy::panic)] // A fuzz target reports a failed property by panicking; nothing here is production.

pub mod alloc;
pub mod driver;
pub mod targets;

#[cfg(test)]
mod tests;
