//! Differential test against the real `@permaweb/wasm-metering` 0.2.2 (run with node from
//! `tests/oracle`, installed with `npm ci` on first use).
//!
//! For every module of `tests/corpus`, several Emscripten builds of `tests/emscripten/prog.c`
//! (Debian's `emcc`), and any file listed in `CU_METERING_EXTRA_WASM` (colon separated), and for
//! both meter types:
//! * if the reference succeeds, our output must have the same types, imports, exports, start,
//!   elements, data, custom sections and, per function, the same operator sequence; executing
//!   every export of both outputs in node must report the same gas, results and traps;
//! * if the reference throws, `Compat::Reference` must refuse the module too (and
//!   `Compat::Extended` must still produce a valid module);
//! * if `Compat::Reference` refuses a module the reference accepts, the reference's output must
//!   demonstrably differ in meaning (invalid, or structurally different from ours).
//!
//! Without node/npm/emcc the test prints a skip reason, unless `CI` is set, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use common::{assert_same, corpus, func_sigs, js_type, summarize, try_summarize, validate};
use cu_metering::{Compat, MeterError, MeterOptions, MeterType, meter_inline, meter_with};
use wasmparser::{Parser, Payload, TypeRef};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Fails under CI, otherwise prints why the test does not run and returns false.
fn require(ok: bool, reason: &str) -> bool {
    if !ok {
        if in_ci() {
            panic!("CI is set but {reason}");
        }
        eprintln!("SKIP cu-metering differential: {reason}");
    }
    ok
}

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle")
}

fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the pinned oracle once (`npm ci`), returning an error text if impossible.
fn oracle_ready() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            if !runs("node", "--version") {
                return Err("node is not installed".into());
            }
            let dir = oracle_dir();
            let marker = dir.join("node_modules/@permaweb/wasm-metering/index.js");
            if !marker.exists() {
                if !runs("npm", "--version") {
                    return Err("npm is not installed".into());
                }
                let out = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .output()
                    .map_err(|e| format!("npm ci: {e}"))?;
                if !out.status.success() || !marker.exists() {
                    return Err(format!("npm ci failed: {}", String::from_utf8_lossy(&out.stderr)));
                }
            }
            Ok(())
        })
        .clone()
}

fn ty_name(ty: MeterType) -> &'static str {
    match ty {
        MeterType::I32 => "i32",
        MeterType::I64 => "i64",
    }
}

/// Meters every `(name, path)` with the reference; returns name → Ok(metered bytes) | Err(msg).
fn oracle_meter(
    ty: MeterType,
    inputs: &[(String, PathBuf)],
    out_dir: &Path,
) -> BTreeMap<String, Result<Vec<u8>, String>> {
    let mut cmd = Command::new("node");
    cmd.arg(oracle_dir().join("meter.cjs")).arg(ty_name(ty));
    let mut outs = BTreeMap::new();
    for (name, path) in inputs {
        let out = out_dir.join(format!("{name}.ref-{}.wasm", ty_name(ty)));
        cmd.arg(path).arg(&out);
        outs.insert(path.display().to_string(), (name.clone(), out));
    }
    let output = cmd.output().expect("run node meter.cjs");
    assert!(
        output.status.success(),
        "meter.cjs crashed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut results = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let (status, rest) = line.split_once(' ').unwrap();
        match status {
            "OK" => {
                let (ms, path) = rest.split_once(' ').unwrap();
                let (name, out) = &outs[path];
                eprintln!("reference meterWASM {name} ({}): {ms} ms", ty_name(ty));
                results.insert(name.clone(), Ok(std::fs::read(out).unwrap()));
            }
            "ERR" => {
                let (path, msg) = match rest.find(".wasm ") {
                    Some(i) => (&rest[..i + 5], &rest[i + 6..]),
                    None => (rest, ""),
                };
                let (name, _) = &outs[path];
                results.insert(name.clone(), Err(msg.to_string()));
            }
            other => panic!("unexpected meter.cjs output {other}"),
        }
    }
    assert_eq!(results.len(), inputs.len(), "meter.cjs skipped modules");
    results
}

/// Emscripten builds of `tests/emscripten/prog.c`, if `emcc` works.
fn emscripten_builds(dir: &Path) -> Vec<(String, PathBuf)> {
    let emcc_ok = Command::new("emcc")
        .arg("--version")
        .env("NODE_PATH", "/usr/share/nodejs")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(emcc_ok, "emcc (Debian package emscripten) is not installed") {
        return Vec::new();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emscripten/prog.c");
    let variants: &[(&str, &[&str])] = &[
        ("emcc_O0", &["-O0"]),
        ("emcc_O2", &["-O2"]),
        ("emcc_O2_g", &["-O2", "-g"]),
        (
            "emcc_Oz_simd_bulk",
            &["-Oz", "-msimd128", "-mbulk-memory", "-mnontrapping-fptoint"],
        ),
    ];
    let mut builds = Vec::new();
    for (name, flags) in variants {
        let js = dir.join(format!("{name}.js"));
        let out = Command::new("emcc")
            .args(*flags)
            .arg(&src)
            .arg("-o")
            .arg(&js)
            .arg("-sEXPORTED_FUNCTIONS=_main,_compute,_mix64")
            .env("NODE_PATH", "/usr/share/nodejs")
            .output()
            .expect("run emcc");
        assert!(
            out.status.success(),
            "emcc {flags:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        builds.push((name.to_string(), dir.join(format!("{name}.wasm"))));
    }
    builds
}

/// Runs all exports of `wasm` in node (all imports stubbed), returning per-call lines without
/// the file name: "INST <gas> <status>" / "CALL <name> <gas> <status> <result>".
fn node_run(modules: &[(PathBuf, &[u8])], calls_for: &dyn Fn(&str) -> bool) -> Vec<Vec<String>> {
    let mut spec = String::from("[");
    for (i, (path, wasm)) in modules.iter().enumerate() {
        if i > 0 {
            spec.push(',');
        }
        let sigs = func_sigs(wasm);
        let mut imports = Vec::new();
        let mut exports = Vec::new();
        let mut func = 0usize;
        let mut parser = Parser::new(0);
        parser.set_features(wasmparser::WasmFeatures::all());
        for payload in parser.parse_all(wasm) {
            match payload.unwrap() {
                Payload::ImportSection(r) => {
                    for imp in r.into_imports() {
                        let imp = imp.unwrap();
                        let entry = match imp.ty {
                            TypeRef::Func(_) => {
                                let result = sigs[func].1.first().map(js_type);
                                func += 1;
                                format!(
                                    r#"{{"module":{:?},"name":{:?},"kind":"func","result":{}}}"#,
                                    imp.module,
                                    imp.name,
                                    result.map_or("null".into(), |r| format!("{r:?}"))
                                )
                            }
                            TypeRef::Memory(m) => format!(
                                r#"{{"module":{:?},"name":{:?},"kind":"memory","min":{},"max":{}}}"#,
                                imp.module,
                                imp.name,
                                m.initial,
                                m.maximum.map_or("null".into(), |x| x.to_string())
                            ),
                            TypeRef::Table(t) => format!(
                                r#"{{"module":{:?},"name":{:?},"kind":"table","min":{}}}"#,
                                imp.module, imp.name, t.initial
                            ),
                            TypeRef::Global(g) => format!(
                                r#"{{"module":{:?},"name":{:?},"kind":"global","result":{:?},"mutable":{}}}"#,
                                imp.module,
                                imp.name,
                                js_type(&g.content_type),
                                g.mutable
                            ),
                            other => panic!("unsupported import {other:?}"),
                        };
                        imports.push(entry);
                    }
                }
                Payload::ExportSection(r) => {
                    for e in r {
                        let e = e.unwrap();
                        if e.kind == wasmparser::ExternalKind::Func && calls_for(e.name) {
                            let (params, _) = &sigs[e.index as usize];
                            let args: Vec<String> = params
                                .iter()
                                .enumerate()
                                .map(|(k, t)| {
                                    let v = match js_type(t) {
                                        "f32" | "f64" => format!("{}.5", k + 2),
                                        _ => format!("{}", k * 7 + 11),
                                    };
                                    format!("[{:?},{v}]", js_type(t))
                                })
                                .collect();
                            exports.push(format!(r#"{{"name":{:?},"args":[{}]}}"#, e.name, args.join(",")));
                        }
                    }
                }
                _ => {}
            }
        }
        write!(
            spec,
            r#"{{"wasm":{:?},"imports":[{}],"calls":[{}]}}"#,
            path.display().to_string(),
            imports.join(","),
            exports.join(",")
        )
        .unwrap();
    }
    spec.push(']');
    let dir = modules[0].0.parent().unwrap();
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec).unwrap();
    let output = Command::new("node")
        .arg("--experimental-wasm-memory64")
        .arg(oracle_dir().join("run.cjs"))
        .arg(&spec_path)
        .output()
        .expect("run node run.cjs");
    assert!(
        output.status.success(),
        "run.cjs crashed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    modules
        .iter()
        .map(|(path, _)| {
            let p = path.display().to_string();
            stdout
                .lines()
                .filter_map(|l| {
                    let (kind, rest) = l.split_once(' ')?;
                    let rest = rest.strip_prefix(&p).filter(|r| r.starts_with(' '))?;
                    Some(format!("{kind}{rest}"))
                })
                .collect()
        })
        .collect()
}

/// (name, input, our output, the reference's output) of a module both metered identically.
type Runnable = (String, Vec<u8>, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct Tally {
    modules_identical: usize,
    bytes_identical: usize,
    functions_compared: usize,
    calls_compared: usize,
    reference_throws: usize,
    reference_corrupts: usize,
    pre_metered: usize,
}

#[test]
fn differential_against_npm_package() {
    if let Err(reason) = oracle_ready() {
        require(false, &reason);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let mut inputs: Vec<(String, PathBuf)> = Vec::new();
    for (name, bytes) in corpus() {
        validate(&bytes).unwrap_or_else(|e| panic!("corpus {name} is invalid: {e}"));
        let path = dir.join(format!("{name}.wasm"));
        std::fs::write(&path, bytes).unwrap();
        inputs.push((name, path));
    }
    let emscripten = emscripten_builds(dir);
    inputs.extend(emscripten);
    if let Ok(extra) = std::env::var("CU_METERING_EXTRA_WASM") {
        for (i, p) in extra.split(':').filter(|p| !p.is_empty()).enumerate() {
            let path = PathBuf::from(p);
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            inputs.push((format!("extra{i}_{stem}"), path));
        }
    }

    let mut tally = Tally::default();
    for ty in [MeterType::I32, MeterType::I64] {
        let reference = oracle_meter(ty, &inputs, dir);
        let mut runnable: Vec<Runnable> = Vec::new();
        for (name, path) in &inputs {
            let what = format!("{name} ({})", ty_name(ty));
            let input = std::fs::read(path).unwrap();
            let t0 = Instant::now();
            let ext = meter_with(&input, &MeterOptions::new(ty));
            let elapsed = t0.elapsed();
            let strict = meter_with(
                &input,
                &MeterOptions {
                    compat: Compat::Reference,
                    ..MeterOptions::new(ty)
                },
            );
            if validate(&input).is_ok() {
                // The inline variant handles every valid module, pre-metered ones included.
                let inline = meter_inline(&input, &MeterOptions::new(ty))
                    .unwrap_or_else(|e| panic!("{what}: meter_inline: {e}"));
                validate(&inline).unwrap_or_else(|e| panic!("{what}: meter_inline output: {e}"));
            }
            match &reference[name] {
                Err(msg) if msg.contains("importing metering function is not allowed") => {
                    assert!(matches!(ext, Err(MeterError::AlreadyMetered)), "{what}: {ext:?}");
                    assert!(
                        matches!(strict, Err(MeterError::AlreadyMetered)),
                        "{what}: {strict:?}"
                    );
                    tally.pre_metered += 1;
                }
                Err(msg) => {
                    assert!(
                        matches!(strict, Err(MeterError::Unsupported { .. })),
                        "{what}: reference throws ({msg}) but Compat::Reference gives {:?}",
                        strict.as_ref().map(|_| "a module")
                    );
                    let ours = ext.unwrap_or_else(|e| panic!("{what}: extended mode: {e}"));
                    if validate(&input).is_ok() {
                        validate(&ours).unwrap_or_else(|e| panic!("{what}: invalid output: {e}"));
                    }
                    eprintln!(
                        "{what}: reference throws ({msg}); extended metering ok; strict: {}",
                        strict.err().unwrap()
                    );
                    tally.reference_throws += 1;
                }
                Ok(theirs) => {
                    let ours = ext.unwrap_or_else(|e| panic!("{what}: extended mode: {e}"));
                    match strict {
                        Err(MeterError::Unsupported { offset, what: why }) => {
                            // The reference "succeeded" but must have changed the module.
                            let corrupted = validate(theirs).is_err()
                                || try_summarize(theirs).map_or(true, |t| t != summarize(&ours));
                            assert!(
                                corrupted,
                                "{what}: Compat::Reference refused ({why} at {offset:#x}) \
                                 but the reference output is equivalent to ours"
                            );
                            eprintln!(
                                "{what}: reference silently rewrites the module ({why}); \
                                 reference output valid: {}",
                                validate(theirs).is_ok()
                            );
                            tally.reference_corrupts += 1;
                        }
                        Err(e) => panic!("{what}: strict mode failed: {e}"),
                        Ok(strict) => {
                            assert_eq!(strict, ours, "{what}: strict and extended outputs differ");
                            validate(&ours).unwrap_or_else(|e| panic!("{what}: our output is invalid: {e}"));
                            validate(theirs)
                                .unwrap_or_else(|e| panic!("{what}: reference output is invalid: {e}"));
                            let n = assert_same(&summarize(&ours), &summarize(theirs), &what, true);
                            eprintln!(
                                "{what}: identical ({n} functions; {} -> {} bytes, ours {} bytes, \
                                 cu-metering {:.2} ms)",
                                input.len(),
                                theirs.len(),
                                ours.len(),
                                elapsed.as_secs_f64() * 1e3
                            );
                            tally.functions_compared += n;
                            tally.modules_identical += 1;
                            if ours == *theirs {
                                tally.bytes_identical += 1;
                            }
                            if !name.starts_with("extra") {
                                runnable.push((name.clone(), input.clone(), ours, theirs.clone()));
                            }
                        }
                    }
                }
            }
        }

        // Execute our output, the reference's, and the two `meter_inline` variants (fresh, and
        // applied to the reference's pre-metered output) and compare gas, results and traps.
        let mut modules = Vec::new();
        for (name, input, ours, theirs) in &runnable {
            let fresh = meter_inline(input, &MeterOptions::new(ty))
                .unwrap_or_else(|e| panic!("{name}: meter_inline: {e}"));
            let pre = meter_inline(theirs, &MeterOptions::new(ty))
                .unwrap_or_else(|e| panic!("{name}: meter_inline on pre-metered: {e}"));
            validate(&fresh).unwrap_or_else(|e| panic!("{name}: inline output invalid: {e}"));
            validate(&pre).unwrap_or_else(|e| panic!("{name}: inline output invalid: {e}"));
            for (flavor, bytes) in [
                ("ours", ours.clone()),
                ("theirs", theirs.clone()),
                ("inline", fresh),
                ("inline-pre", pre),
            ] {
                let path = dir.join(format!("{name}.{flavor}-{}.wasm", ty_name(ty)));
                std::fs::write(&path, &bytes).unwrap();
                modules.push((path, bytes));
            }
        }
        if modules.is_empty() {
            continue;
        }
        let modules: Vec<(PathBuf, &[u8])> = modules.iter().map(|(p, b)| (p.clone(), b.as_slice())).collect();
        // Emscripten builds: only the pure-computation exports (the rest needs a real host).
        let calls_for = |export: &str| -> bool {
            !matches!(export, "main" | "_start" | "__main_argc_argv")
                && !export.starts_with("emscripten_")
                && !export.starts_with("stack")
                && !export.starts_with("__")
                && !export.starts_with("_emscripten")
                && !export.starts_with("dynCall")
                && export != "malloc"
                && export != "free"
                && export != "fflush"
        };
        let runs = node_run(&modules, &calls_for);
        for (k, (name, _, _, _)) in runnable.iter().enumerate() {
            let ours = &runs[4 * k];
            assert!(!ours.is_empty(), "{name}: node produced no output");
            for (flavor, other) in [
                ("reference", &runs[4 * k + 1]),
                ("meter_inline", &runs[4 * k + 2]),
                (
                    "meter_inline of the pre-metered reference output",
                    &runs[4 * k + 3],
                ),
            ] {
                assert_eq!(
                    ours,
                    other,
                    "{name} ({}): execution differs between our output and {flavor}",
                    ty_name(ty)
                );
            }
            let calls = ours.iter().filter(|l| l.starts_with("CALL")).count();
            let gas: u64 = ours
                .iter()
                .filter_map(|l| l.split(' ').nth(if l.starts_with("CALL") { 2 } else { 1 }))
                .filter_map(|g| g.parse::<u64>().ok())
                .sum();
            eprintln!(
                "{name} ({}): {calls} calls executed, total gas {gas}, identical for the \
                 reference, ours and both inline variants",
                ty_name(ty)
            );
            tally.calls_compared += calls;
        }
    }

    eprintln!(
        "summary: {} module outputs identical ({} even byte for byte), {} functions compared, {} \
         export calls with identical gas, {} reference throws, {} reference corruptions, {} \
         pre-metered refusals",
        tally.modules_identical,
        tally.bytes_identical,
        tally.functions_compared,
        tally.calls_compared,
        tally.reference_throws,
        tally.reference_corrupts,
        tally.pre_metered
    );
    assert!(tally.functions_compared > 0, "no function was compared");
    assert!(tally.calls_compared > 0, "no export was executed");
    assert!(
        tally.reference_throws > 0,
        "the corpus must exercise reference failures"
    );
}
