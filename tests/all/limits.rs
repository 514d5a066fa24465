//! Limits and traps: Memory-Limit on heap growth, deep recursion, and traps becoming the message's Error.

use cu_tests::*;
use cu_types::{Limits, ModuleFormat};

fn probe_log(commands: &[&str]) -> Vec<(String, String)> {
    let env = r#"{"Process":{"Id":"p","Owner":"o","Tags":[]},"Module":{"Id":"m","Owner":"o","Tags":[]}}"#;
    commands
        .iter()
        .map(|c| {
            (
                format!(r#"{{"Id":"i","Data":"{c}","Owner":"o","Target":"p","From":"o","Tags":[],"Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":false}}"#),
                env.to_string(),
            )
        })
        .collect()
}

#[test]
fn memory_limit_stops_heap_growth_below_the_declared_maximum() {
    for (stem, format) in WAT_MODULES {
        let unlimited = run_ours(wat_module(stem), format, probe_log(&["bomb"]), Limits::default());
        let limited = run_ours(
            wat_module(stem),
            format,
            probe_log(&["bomb", "count"]),
            Limits {
                memory_limit: Some(8 << 20),
                ..Limits::default()
            },
        );
        let pages = |v: &serde_json::Value| -> u64 {
            v["Output"]
                .as_str()
                .unwrap()
                .rsplit("pages=")
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(pages(&limited[0]) <= 128, "{stem}: {}", limited[0]["Output"]);
        assert!(pages(&unlimited[0]) > pages(&limited[0]), "{stem}");
        assert_eq!(limited[1]["Output"], "count=1", "{stem}");
    }
}

#[test]
fn traps_name_themselves_and_the_process_continues() {
    let cases = [
        ("unreachable", "RuntimeError: unreachable"),
        ("oob", "RuntimeError: memory access out of bounds"),
        ("recurse", "RangeError: Maximum call stack size exceeded"),
        ("abort", "RuntimeError: Aborted(native code called abort())"),
    ];
    for (command, error) in cases {
        let out = run_ours(
            wat_module("wasm64"),
            ModuleFormat::Wasm64,
            probe_log(&["count", command, "count"]),
            Limits::default(),
        );
        assert_eq!(out[1]["Error"], error);
        assert_eq!(out[2]["Output"], "count=2");
    }
}

#[test]
fn huge_outputs_are_returned_whole() {
    let out = run_ours(
        wat_module("emscripten4"),
        ModuleFormat::Emscripten4,
        probe_log(&["big 5000000"]),
        Limits::default(),
    );
    assert_eq!(out[0]["Output"].as_str().unwrap().len(), 5_000_000);
}
