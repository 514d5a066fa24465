//! The seven formats' ABI probes (`tests/modules/wat`), run through ao-cu and through the reference
//! loader side by side.

use cu_tests::*;
use cu_types::{Limits, ModuleFormat};

fn log(name: &str) -> std::path::PathBuf {
    repo()
        .join("tests/modules/wat/messages")
        .join(format!("{name}.jsonl"))
}

/// Differences from the reference that are deliberate (docs/determinism.md).
fn allowed(stem: &str, format: ModuleFormat, name: &str) -> Vec<Allowed> {
    let mut out = Vec::new();
    if name == "main" && format.clock_ticks_at_start() > 0 {
        // Message 17 reads the clock after two failed messages: the reference restarted its instance (and
        // its clock) after the failures, ao-cu's clock is process state and was rolled back to before them.
        out.push(Allowed {
            index: 17,
            field: "Output",
            reason: "per-process clock",
        });
    }
    if name == "system"
        && matches!(
            format,
            ModuleFormat::Emscripten4 | ModuleFormat::Emscripten4Metering
        )
    {
        // The reference's emscripten4 glue runs the command in a host shell (the oracle refuses it).
        out.push(Allowed {
            index: 1,
            field: "Output",
            reason: "no host shell",
        });
        out.push(Allowed {
            index: 1,
            field: "Error",
            reason: "no host shell",
        });
    }
    let _ = stem;
    out
}

#[test]
fn every_format_matches_the_reference_loader() {
    if !oracle_available() {
        return;
    }
    let mut compared = 0;
    for (stem, format) in WAT_MODULES {
        let wasm = wat_module(stem);
        for name in [
            "main",
            "recurse",
            "unreachable",
            "oob",
            "bomb",
            "abort",
            "system",
            "weavedrive",
        ] {
            let path = log(name);
            let reference = run_reference(&wasm, format, &path, None);
            let ours = run_ours(wasm.clone(), format, read_log(&path), Limits::default());
            compared += compare(
                &format!("{stem} {name}"),
                &ours,
                &reference,
                &allowed(stem, format, name),
            );
        }
    }
    // 7 modules × (20 + 7 logs × 3) messages.
    assert_eq!(compared, 7 * (20 + 7 * 3));
}

#[test]
fn metered_formats_run_out_of_gas_like_the_reference() {
    if !oracle_available() {
        return;
    }
    let mut compared = 0;
    let limit = 10_000_000;
    for (stem, format) in WAT_MODULES {
        // Formats without metering never stop in the reference (no compute limit): see below.
        if matches!(format, ModuleFormat::Emscripten4 | ModuleFormat::Wasm64) {
            continue;
        }
        let wasm = wat_module(stem);
        let path = log("loop");
        let reference = run_reference(&wasm, format, &path, Some(limit));
        let ours = run_ours(
            wasm,
            format,
            read_log(&path),
            Limits {
                compute_limit: Some(limit),
                ..Limits::default()
            },
        );
        assert_eq!(ours[1]["Error"], "out of gas!", "{stem}");
        compared += compare(&format!("{stem} loop"), &ours, &reference, &[]);
    }
    assert_eq!(compared, 5 * 3);
}

#[test]
fn unmetered_infinite_loops_end_with_out_of_gas_through_fuel() {
    for (stem, format) in [
        ("emscripten4", ModuleFormat::Emscripten4),
        ("wasm64", ModuleFormat::Wasm64),
    ] {
        let ours = run_ours(
            wat_module(stem),
            format,
            read_log(&log("loop")),
            Limits {
                compute_limit: Some(50_000_000),
                ..Limits::default()
            },
        );
        assert_eq!(ours[0]["Output"], "count=1", "{stem}");
        assert_eq!(ours[1]["Error"], "out of gas!", "{stem}");
        // Parity with the reference: unmetered modules report no gas.
        assert_eq!(ours[1]["GasUsed"], 0, "{stem}");
        assert_eq!(
            ours[2]["Output"], "count=2",
            "{stem}: the process continues from before the loop"
        );
    }
}

#[test]
fn weavedrive_open_suspends_like_the_reference_and_answers_null() {
    for (stem, format) in [
        ("emscripten4", ModuleFormat::Emscripten4),
        ("emscripten-metering", ModuleFormat::Emscripten4Metering),
        ("wasm64", ModuleFormat::Wasm64),
        ("wasm64-metering", ModuleFormat::Wasm64Metering),
    ] {
        let ours = run_ours(
            wat_module(stem),
            format,
            read_log(&log("weavedrive")),
            Limits::default(),
        );
        assert_eq!(ours[1]["Output"], "weavedrive_open=0", "{stem}");
        assert!(ours[1].get("Error").is_none(), "{stem}");
        assert_eq!(ours[2]["Output"], "count=2", "{stem}");
    }
    // The emulated Asyncify data area (header + 40 MiB) grew memory as it does under the reference.
    let pages = on_eval_thread(|| {
        let module = compile(&wat_module("wasm64"), ModuleFormat::Wasm64);
        let mut p = boot(&module, Limits::default());
        for (m, e) in read_log(&log("weavedrive")) {
            p.handle(&m, &e).unwrap();
        }
        p.memory_size() / 65536
    });
    assert_eq!(pages, 658);
}

#[test]
fn a_failed_message_leaves_memory_exactly_as_before() {
    let wasm = wat_module("emscripten2");
    let ours = run_ours(
        wasm,
        ModuleFormat::Emscripten2,
        read_log(&log("main")),
        Limits::default(),
    );
    // Messages 14 (`fail`) and 15 (`error-field`) fail after 13 (`fs`) succeeded.
    assert!(ours[14]["Error"].is_string() && ours[15]["Error"].is_string());
    assert_eq!(ours[13]["MemoryHash"], ours[14]["MemoryHash"]);
    assert_eq!(ours[13]["MemoryHash"], ours[15]["MemoryHash"]);
    assert_ne!(ours[15]["MemoryHash"], ours[16]["MemoryHash"]);
}
