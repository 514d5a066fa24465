//! Criterion benchmarks of the evaluator's hot paths:
//! - `instantiate_from_cache`: a fresh instance from the AOT cache, before constructors and `main`;
//! - `boot`: constructors and `main`, reported separately;
//! - `handle_noop_1kb`: per-message host overhead (1 KB message, ten tags, a `handle` that does nothing);
//! - `handle_1kb_with_100_relu64_tensor_calls`: the same plus 100 `ao_tensor.relu_i8` calls (host API cost);
//! - `lua_eval`: an Eval-like Lua message on a hot Lua process;
//! - `lua_dry_run_*`: a dry-run on that process, one-copy fork against copy-on-write image, and making
//!   the image;
//! - `encode_message` / `parse_result`: msg/env encoding and result parsing;
//! - `snapshot_encode` / `snapshot_decode`.
//!
//! `cargo bench -p cu-bench --bench evaluator`; quick smoke run: `-- --quick` (CI).
//! `AO_CU_BENCH_MODULE=aos.wasm AO_CU_BENCH_FORMAT=wasm32-unknown-emscripten4` adds that module's rows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group};
use cu_bench::*;
use cu_types::{EvalOutput, ModuleFormat};
use cu_wasm::{
    Allocation, AotCache, DryRunner, ForkImage, Loader, Metering, Process, ProcessConfig, Snapshot,
};

fn lua_message(code: &str) -> String {
    format!(
        r#"{{"Id":"m","Owner":"o","Target":"p","From":"o","Tags":[{{"name":"Action","value":"Eval"}}],"Data":"{code}","Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":false}}"#
    )
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let loader = Loader::new(Some(AotCache::new(dir.path()))).unwrap();
    let pooling = Loader::with_allocation(None, Allocation::Pooling { slots: 8 }).unwrap();

    let mut modules: Vec<(String, Vec<u8>, ModuleFormat)> =
        vec![("noop".into(), noop_module(), ModuleFormat::Emscripten2)];
    if let Ok(lua) = std::fs::read(cu_tests::repo().join("tests/modules/build/lua-process.wasm")) {
        modules.push(("lua".into(), lua, ModuleFormat::Emscripten2));
    }
    if let Some((wasm, format, path)) = module_from_env() {
        modules.push((path, wasm, format));
    }
    for (name, wasm, format) in &modules {
        loader.load(wasm, *format).unwrap();
        let module = loader.load(wasm, *format).unwrap();
        c.bench_function(&format!("load_from_aot_cache/{name}"), |b| {
            b.iter(|| black_box(loader.load(wasm, *format).unwrap()))
        });
        c.bench_function(&format!("instantiate/{name}"), |b| {
            b.iter(|| black_box(Process::instantiate(Arc::clone(&module), ProcessConfig::default()).unwrap()))
        });
        let pooled = pooling.load(wasm, *format).unwrap();
        c.bench_function(&format!("instantiate_pooling/{name}"), |b| {
            b.iter(|| black_box(Process::instantiate(Arc::clone(&pooled), ProcessConfig::default()).unwrap()))
        });
        c.bench_function(&format!("boot/{name}"), |b| {
            b.iter(|| black_box(Process::boot(Arc::clone(&module), ProcessConfig::default()).unwrap()))
        });
    }

    let noop = loader.load(&noop_module(), ModuleFormat::Emscripten2).unwrap();
    let mut process = Process::boot(noop, ProcessConfig::default()).unwrap();
    let (msg, env) = (realistic_message(), realistic_env());
    c.bench_function("handle_noop_1kb", |b| {
        b.iter(|| black_box(process.handle(&msg, &env).unwrap()))
    });

    // Per-call cost of the `ao_tensor` host API (CPU twin): this minus `handle_noop_1kb`, over 100.
    let tensor = loader
        .load(&tensor_module(100), ModuleFormat::Emscripten2)
        .unwrap();
    let mut tp = Process::boot(tensor, ProcessConfig::default()).unwrap();
    c.bench_function("handle_1kb_with_100_relu64_tensor_calls", |b| {
        b.iter(|| black_box(tp.handle(&msg, &env).unwrap()))
    });

    if let Some((_, lua, format)) = modules.iter().find(|m| m.0 == "lua") {
        let module = loader.load(lua, *format).unwrap();
        let mut p = Process::boot(module, ProcessConfig::default()).unwrap();
        let env = realistic_env();
        let m = lua_message("x = (x or 0) + 1");
        p.handle(&m, &env).unwrap();
        c.bench_function("lua_eval", |b| b.iter(|| black_box(p.handle(&m, &env).unwrap())));
        // The same module without fuel (no compute bound): what fuel costs.
        let unfueled = loader.load_on(lua, *format, Metering::Gas).unwrap();
        let mut q = Process::boot(unfueled, ProcessConfig::default()).unwrap();
        q.handle(&m, &env).unwrap();
        c.bench_function("lua_eval_without_fuel", |b| {
            b.iter(|| black_box(q.handle(&m, &env).unwrap()))
        });
        let loop_msg = lua_message("local s = 0 for i = 1, 100000 do s = s + i end return s");
        c.bench_function("lua_loop_100k", |b| {
            b.iter(|| black_box(p.handle(&loop_msg, &env).unwrap()))
        });
        c.bench_function("lua_loop_100k_without_fuel", |b| {
            b.iter(|| black_box(q.handle(&loop_msg, &env).unwrap()))
        });
        // A dry-run on the hot Lua process: a one-copy fork (fresh instance, memory copied) against the
        // copy-on-write runner on an image made once for the state.
        let probe = lua_message("return (x or 0) + 1");
        c.bench_function("lua_dry_run_one_copy_fork", |b| {
            b.iter(|| black_box(p.fork().unwrap().handle(&probe, &env).unwrap()))
        });
        let image = ForkImage::of(&mut p).unwrap();
        let mut runner = DryRunner::new(p.module().clone(), p.config().clone()).unwrap();
        c.bench_function("lua_dry_run_copy_on_write", |b| {
            b.iter(|| black_box(runner.run(&image, &probe, &env).unwrap()))
        });
        c.bench_function("lua_dry_run_image", |b| {
            b.iter(|| black_box(ForkImage::of(&mut p).unwrap()))
        });
    }

    let value: serde_json::Value = serde_json::from_str(&msg).unwrap();
    c.bench_function("encode_message", |b| {
        b.iter(|| black_box(cu_types::result::to_js_json(&value)))
    });
    let reply = r#"{"ok":true,"response":{"Output":{"data":"1","prompt":"aos> "},"Messages":[{"Target":"x","Data":"y","Tags":[{"name":"Action","value":"Credit-Notice"}]}],"Spawns":[],"Assignments":[]}}"#;
    c.bench_function("parse_result", |b| {
        b.iter(|| {
            let v = cu_types::result::parse_json_like_js(reply).unwrap();
            black_box(EvalOutput::from_response(&v["response"], 0))
        })
    });

    let snap: Snapshot = process.snapshot().unwrap();
    let bytes = snap.encode().unwrap();
    c.bench_function("snapshot_encode_2mib", |b| {
        b.iter(|| black_box(snap.encode().unwrap()))
    });
    c.bench_function("snapshot_decode_2mib", |b| {
        b.iter(|| black_box(Snapshot::decode(&bytes).unwrap()))
    });
}

criterion_group!(group, benches);

fn main() {
    // Evaluation needs a large native stack (the wasm stack limit is fixed by the engine), so the
    // whole criterion run happens on a thread with the evaluator's stack size.
    cu_tests::on_eval_thread(|| {
        group();
        Criterion::default().configure_from_args().final_summary();
    });
}
