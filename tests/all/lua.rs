//! The aos-like Lua 5.3 process built from source with Debian's emscripten (format emscripten2), plain and
//! pre-metered, through ao-cu and through the reference loader.

use cu_tests::*;
use cu_types::{Limits, ModuleFormat};

fn log(name: &str) -> std::path::PathBuf {
    repo().join("tests/modules/lua").join(format!("{name}.jsonl"))
}

fn differential(module: &str, name: &str, compute_limit: Option<u64>) -> usize {
    let Some(wasm) = built_module(module) else {
        return 0;
    };
    if !oracle_available() {
        return 0;
    }
    let path = log(name);
    let reference = run_reference(&wasm, ModuleFormat::Emscripten2, &path, compute_limit);
    let limits = Limits {
        compute_limit,
        ..Limits::default()
    };
    let ours = run_ours(wasm, ModuleFormat::Emscripten2, read_log(&path), limits);
    compare(&format!("{module} {name}"), &ours, &reference, &[])
}

#[test]
fn lua_process_matches_the_reference() {
    let n = differential("lua-process.wasm", "messages", None);
    if n > 0 {
        assert_eq!(n, 43);
    }
}

#[test]
fn lua_process_recursion_and_out_of_memory_match_the_reference() {
    let n = differential("lua-process.wasm", "recurse", None) + differential("lua-process.wasm", "oom", None);
    if n > 0 {
        assert_eq!(n, 6 + 5);
    }
}

#[test]
fn premetered_lua_process_gas_matches_the_reference() {
    let n = differential("lua-process-metered.wasm", "messages", None)
        + differential("lua-process-metered.wasm", "loop", Some(9_000_000_000));
    if n > 0 {
        assert_eq!(n, 43 + 4);
    }
}

#[test]
fn memory_limit_makes_lua_run_out_of_memory_and_continue() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let msg = |action: &str, extra: &str| {
        format!(
            r#"{{"Id":"m","Owner":"o","Target":"p","From":"o","Tags":[{{"name":"Action","value":"{action}"}}{extra}],"Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":false}}"#
        )
    };
    let env = r#"{"Process":{"Id":"p","Owner":"o","Tags":[]},"Module":{"Id":"m","Owner":"o","Tags":[]}}"#
        .to_string();
    let log = vec![
        (msg("Count", ""), env.clone()),
        (msg("Grow", r#",{"name":"MB","value":"100"}"#), env.clone()),
        (msg("Count", ""), env.clone()),
    ];
    let ours = run_ours(
        wasm,
        ModuleFormat::Emscripten2,
        log,
        Limits {
            memory_limit: Some(64 << 20),
            ..Limits::default()
        },
    );
    let error = ours[1]["Error"].to_string();
    assert!(error.contains("not enough memory"), "{error}");
    assert_eq!(ours[0]["Output"], "1");
    assert_eq!(
        ours[0]["MemoryHash"], ours[1]["MemoryHash"],
        "the failed Grow is rolled back"
    );
    assert_eq!(ours[2]["Output"], "2");
}
