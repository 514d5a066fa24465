//! ao-cu's integration tests, one binary (see `tests/lib.rs` for the shared helpers).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod abi;
mod engine;
mod fork;
mod limits;
mod llm;
mod loading;
mod lua;
mod restore;
mod starve;
mod tensor;
