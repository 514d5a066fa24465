//! Inputs shared by ao-cu's benchmarks: a realistic message (about 1 KB of JSON with ten tags), its env,
//! and a module whose `handle` does nothing, to measure the host's own per-message overhead.
//!
//! Benchmarks accept a real module through `AO_CU_BENCH_MODULE=PATH` and `AO_CU_BENCH_FORMAT=FORMAT`
//! (e.g. the aos 2 module, measured locally and never committed).
//!
//! [`engine`] holds what the process-engine bench binaries (`src/bin/engine_*.rs`) share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod engine;

use cu_types::ModuleFormat;

/// A scheduled message as the reference CU builds it: about 1 KB of JSON with ten tags.
pub fn realistic_message() -> String {
    let tags: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"name":"Tag-Name-{i:02}","value":"tag value number {i} with some text"}}"#))
        .collect();
    format!(
        r#"{{"Id":"B0G6cUDEfdVmAcxVcLLs0slYeI8YQQzglwOeu59WJNc","Signature":"{sig}","Data":"1984","Owner":"vh-NTHVvlKZqRxc8LyyTNok65yQ55a_PJ1zWLb9G2JI","Target":"KzXTVvxEXQVVE1zx0T5N2TxZPG_ncoG6fjqyiIRKu_c","Anchor":"00000000000000000000000000000023","From":"vh-NTHVvlKZqRxc8LyyTNok65yQ55a_PJ1zWLb9G2JI","Tags":[{tags}],"Epoch":0,"Nonce":23,"Timestamp":1700000000123,"Block-Height":1393008,"Hash-Chain":"aGFzaC1jaGFpbi1vZi10aGUtbWVzc2FnZS1sb2c","Cron":false,"Read-Only":false}}"#,
        sig = "s".repeat(86),
        tags = tags.join(",")
    )
}

/// The env of the realistic message.
pub fn realistic_env() -> String {
    r#"{"Process":{"Id":"KzXTVvxEXQVVE1zx0T5N2TxZPG_ncoG6fjqyiIRKu_c","Owner":"vh-NTHVvlKZqRxc8LyyTNok65yQ55a_PJ1zWLb9G2JI","Tags":[{"name":"Name","value":"bench"}]},"Module":{"Id":"ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s","Owner":"vh-NTHVvlKZqRxc8LyyTNok65yQ55a_PJ1zWLb9G2JI","Tags":[{"name":"Module-Format","value":"wasm32-unknown-emscripten2"}]}}"#.to_string()
}

/// An emscripten2-format module with a shadow stack and the stack helpers, whose `handle` runs `body`
/// and then returns a constant reply without looking at its input.
fn constant_reply_module(imports: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {imports}
            (memory (export "memory") 32 256)
            (global $sp (mut i32) (i32.const 1048576))
            (data (i32.const 1024) "{{\"ok\":true,\"response\":{{\"Output\":\"\",\"Messages\":[],\"Spawns\":[],\"Assignments\":[]}}}}\00")
            (func (export "stackSave") (result i32) global.get $sp)
            (func (export "stackRestore") (param i32) local.get 0 global.set $sp)
            (func (export "stackAlloc") (param i32) (result i32)
              global.get $sp local.get 0 i32.sub i32.const -16 i32.and global.set $sp global.get $sp)
            (func (export "handle") (param i32 i32) (result i32) (local $i i32)
              {body}
              i32.const 1024))"#
    ))
    .unwrap()
}

/// A module whose `handle` does nothing: everything measured on it is the host's marshalling, call and
/// parsing.
pub fn noop_module() -> Vec<u8> {
    constant_reply_module("", "")
}

/// Like [`noop_module`], but `handle` first calls `ao_tensor.relu_i8` on 64 bytes `calls` times: the
/// difference from the no-op module, divided by `calls`, is the per-call cost of the host tensor API.
pub fn tensor_module(calls: u32) -> Vec<u8> {
    constant_reply_module(
        r#"(import "ao_tensor" "relu_i8" (func $relu (param i32 i32 i32)))"#,
        &format!(
            "(loop $again
                (call $relu (i32.const 4096) (i32.const 8192) (i32.const 64))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const {calls}))))"
        ),
    )
}

/// The module given by `AO_CU_BENCH_MODULE`/`AO_CU_BENCH_FORMAT`, if set.
pub fn module_from_env() -> Option<(Vec<u8>, ModuleFormat, String)> {
    let path = std::env::var("AO_CU_BENCH_MODULE").ok()?;
    let format = std::env::var("AO_CU_BENCH_FORMAT").ok()?.parse().unwrap();
    Some((std::fs::read(&path).unwrap(), format, path))
}
